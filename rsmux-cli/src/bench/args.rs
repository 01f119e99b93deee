//! The command line of `rsmux bench`: its flags, their checks, the help text, and the fixed
//! sizes of the workloads.

use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use super::{delay, rows::ms_text};
use crate::common::{self, SmuxOpts};

/// The text after the flags in `rsmux bench --help`.
pub const EXAMPLES: &str = "\
Examples:
  rsmux bench                                  full comparison, 3 runs of each (about a minute)
  rsmux bench --quick                          the same in under 10 s, fewer rows
  rsmux bench --repeat 5                       5 runs of every workload instead of 3
  rsmux bench --rtt 10ms,50ms                  over a link with 10 ms, then 50 ms round trips
  rsmux bench --quick --json > bench.json      one JSON object with every figure
  rsmux bench --plot fairness.svg              also draw per-stream throughput over time
  rsmux bench --connect 127.0.0.1:7000 --smuxver 2
                                               drive an external smux echo server
  rsmux bench --scale-sessions 9500 --scale-streams 10 --no-table
                                               only the many-sessions scale workload
  rsmux bench --kcp --no-table                 only rsmux kcptun vs Debian's kcptun over KCP

Rows (local comparison; every client talks to a server process over loopback TCP):
  raw TCP          one TCP connection per stream (this process <-> rsmux server process)
  rsmux v1/v2      this process <-> `rsmux` server process (`rsmux echo` for echo), one session
  rsmux v2 fixed window   the same with the window auto-tuning off (--fixed-streambuf,
                   Go's behaviour): the figure before auto-tuning, measured in the same run
  Go smux v1/v2    Go client <-> Go server (interop/go/bin/smuxpeer, xtaci/smux)
  Go yamux         Go client <-> Go server over hashicorp/yamux (DefaultConfig), one way only;
                   skipped when the Go peer was built without Debian's yamux
  without --quick also the mixed pairs: rsmux client <-> Go server, Go client <-> rsmux server
  (--quick: raw TCP, rsmux v1, rsmux v2, Go smux v2, Go yamux only)
Workloads:
  1 stream         one stream, one way (client to server), 128 KiB writes and 128 KiB reads
  100 streams      100 streams at once, same, aggregate
  echo 1, echo 16  1 or 16 streams, each writing 128 KiB chunks while reading the echo back
                   (duplex); MB/s of bytes echoed (each direction carries that much). A Go
                   client is the Go peer's bench-client, one session straight to the echo server
  open/close       open a stream, write 1 byte, read the 1-byte answer, close; repeated
  idle stream      heap bytes per idle open stream, client + server sessions together,
                   10,000 streams (rsmux only; counted by this binary's allocator)
Every workload runs --repeat times (3), round-robin over the rows, so noise hits every row
alike; the table shows the median and, under it, min-max. Below each table: ratios of speeds
(MB/s, or operations per second for open/close) computed within each repetition, shown as
min/median/max; above 1 means the first row is faster. Then the server processes' CPU time
(user + system) per GiB moved, and the Go client processes' (as they report it).
--scale-sessions N: N sessions x --scale-streams M streams from this process (or with
--scale-client go the Go peer) to one echo server process (`rsmux echo`, Go's echo), 1 KiB
echo rounds on every stream for --scale-seconds (5): rounds per second, rsmux echo / Go
echo within each run, and the server's resident memory (idle, busy, peak).
--kcp: kcptun-client <-> kcptun-server, rsmux client <-> kcptun-server, kcptun-client <->
rsmux server, rsmux <-> rsmux (`rsmux kcptun client|server`), the same flags on both ends
(kcptun's defaults: aes, mode fast, FEC 10/3, snappy, smux v1), on loopback through a UDP
relay in this process that drops --kcp-loss percent of the datagrams each way (seeded).
Per row: 1 TCP connection and 16 in parallel moving 32 MiB one way (client side -> tunnel
-> a sink in this process; at most 12 s; --quick: 2 MiB, 2 s), MB/s, CPU seconds per GiB of
each tunnel process, their peak resident memory; ratios rsmux / kcptun per replaced end.
Without kcptun-client/kcptun-server in PATH only the rsmux <-> rsmux rows run
(`apt-get install -y kcptun` as root installs them).
--rtt puts every measured connection (raw TCP too) through a proxy in this process that
delays each direction by RTT/2 (after one RTT for the handshake); 0 = direct. The proxy holds
at most 8 MiB per direction and connection, so a direction carries at most 8 MiB per RTT/2.
MB = 10^6 bytes. With --connect the stream workloads use the echo design with 1 and 100
streams. Rows then: raw TCP echo (in this process), `rsmux echo` (child process), the server
given.";

/// The client of the scale workload.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleClient {
    /// Sessions of this process
    Rsmux,
    /// The Go peer's `scale-client` role (a child process)
    Go,
}

/// Arguments of `rsmux bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object with every figure instead of the table
    #[arg(long)]
    pub json: bool,
    /// Short run, under 10 s: 0.08 s per workload, no mixed Rust/Go rows, no fixed-window
    /// row, no Go v1 row
    #[arg(long)]
    pub quick: bool,
    /// How many times every workload runs (round-robin over the rows)
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Seconds per timed workload [default: 0.3, or 0.08 with --quick; at a --rtt, at least
    /// 30 round trips]
    #[arg(long, value_name = "SECS", value_parser = common::parse_secs)]
    pub seconds: Option<Duration>,
    /// Round-trip times to measure at, comma-separated: each adds a table; `0` is direct
    /// loopback, otherwise every connection goes through a delay proxy (e.g. 0,10ms,50ms;
    /// from 2ms to 1s)
    #[arg(long, value_name = "RTT,...", value_delimiter = ',', allow_hyphen_values = true,
          value_parser = delay::parse_rtt)]
    pub rtt: Vec<Duration>,
    /// Also write an SVG of per-stream throughput over time, several streams sharing one
    /// session (the fairness picture; drawn on direct loopback)
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Number of streams in the --plot picture
    #[arg(long, value_name = "N", default_value_t = 6,
          value_parser = clap::value_parser!(u16).range(2..=16))]
    pub plot_streams: u16,
    /// Run the stream workloads against an external smux echo server (for example
    /// `rsmux echo` or a Go one) using --smuxver, instead of the local comparison
    #[arg(long, value_name = "ADDR", value_parser = common::parse_host_port)]
    pub connect: Option<String>,
    /// The Go smux peer [default: interop/go/bin/smuxpeer of this workspace, built with
    /// interop/build.sh if missing and Go is installed]
    #[arg(long, value_name = "PATH")]
    pub go_peer: Option<PathBuf>,
    /// Leave out the Go rows
    #[arg(long, conflicts_with = "go_peer")]
    pub no_go: bool,
    /// Also run the scale workload with this many sessions (0: off), each with
    /// --scale-streams streams, against one `rsmux echo` and one Go echo server process
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub scale_sessions: u32,
    /// Streams per session of the scale workload
    #[arg(long, value_name = "M", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub scale_streams: u32,
    /// Who runs the scale workload's sessions: this process (rsmux), or the Go peer's
    /// scale-client (a Go smux client, as the reference measurement of issue 9)
    #[arg(long, value_enum, value_name = "CLIENT", default_value_t = ScaleClient::Rsmux)]
    pub scale_client: ScaleClient,
    /// Seconds of echo rounds in the scale workload [default: 5, or 1 with --quick]
    #[arg(long, value_name = "SECS", value_parser = common::parse_secs)]
    pub scale_seconds: Option<Duration>,
    /// Skip the comparison table's workloads (with --scale-sessions or --kcp: only those)
    #[arg(long)]
    pub no_table: bool,
    /// Also compare `rsmux kcptun client|server` with Debian's kcptun-client/kcptun-server
    /// over KCP (each end swapped in turn) through a lossy UDP relay; needs the `kcptun`
    /// package for all but the rsmux <-> rsmux rows
    #[arg(long)]
    pub kcp: bool,
    /// Datagram loss rates of --kcp, percent, each way [default: 0,3]
    #[arg(long, value_name = "PCT,...", value_delimiter = ',', requires = "kcp")]
    pub kcp_loss: Vec<f64>,
    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// Most values `--rtt` takes (each is a whole run of the rows).
pub const MAX_RTTS: usize = 8;

impl BenchArgs {
    /// Usage checks done before anything runs (exit 2 on failure).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.connect.is_some() {
            // Against an external server this side is the client.
            self.smux.client_config()?;
        } else {
            self.smux.config()?;
        }
        if self.seconds.is_some_and(|s| s.is_zero()) {
            return Err("--seconds 0: must be more than zero".into());
        }
        if self.scale_seconds.is_some_and(|s| s.is_zero()) {
            return Err("--scale-seconds 0: must be more than zero".into());
        }
        if self.no_table && self.scale_sessions == 0 && !self.kcp {
            return Err(
                "--no-table: give --scale-sessions or --kcp too, or there is nothing to run".into(),
            );
        }
        if self.kcp && self.connect.is_some() {
            return Err("--kcp: not with --connect (it starts its own tunnels)".into());
        }
        for (i, l) in self.kcp_loss.iter().enumerate() {
            if !(0.0..=50.0).contains(l) {
                return Err(format!("--kcp-loss {l}: must be from 0 to 50 (percent)"));
            }
            if self.kcp_loss[..i].contains(l) {
                return Err(format!("--kcp-loss: {l} given twice"));
            }
        }
        if self.scale_sessions > 0 && self.connect.is_some() {
            return Err("--scale-sessions: not with --connect (it starts its own servers)".into());
        }
        if self.rtt.len() > MAX_RTTS {
            return Err(format!(
                "--rtt: {} values given, at most {MAX_RTTS}",
                self.rtt.len()
            ));
        }
        for (i, r) in self.rtt.iter().enumerate() {
            if self.rtt[..i].contains(r) {
                return Err(format!("--rtt: {} given twice", ms_text(*r)));
            }
        }
        if let Some(p) = &self.plot {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                return Err(format!("--plot {}: no such directory", p.display()));
            }
        }
        if let Some(p) = &self.go_peer {
            if !p.is_file() {
                return Err(format!("--go-peer {}: no such file", p.display()));
            }
        }
        Ok(())
    }

    /// Duration of a timed workload on direct loopback: `--seconds`, or the default.
    pub fn base_dur(&self) -> Duration {
        self.seconds
            .unwrap_or(Duration::from_millis(if self.quick { 80 } else { 300 }))
    }

    /// Duration of the scale workload's echo rounds.
    pub fn scale_dur(&self) -> Duration {
        self.scale_seconds
            .unwrap_or(Duration::from_secs(if self.quick { 1 } else { 5 }))
    }

    /// The loss rates of `--kcp`, percent.
    pub fn kcp_losses(&self) -> Vec<f64> {
        if self.kcp_loss.is_empty() {
            vec![0.0, 3.0]
        } else {
            self.kcp_loss.clone()
        }
    }

    /// The round-trip times to run at, in the order given (only 0 by default).
    pub fn rtts(&self) -> Vec<Duration> {
        if self.rtt.is_empty() {
            vec![Duration::ZERO]
        } else {
            self.rtt.clone()
        }
    }
}

/// Idle streams in the memory workload.
pub const IDLE_STREAMS: usize = 10_000;
/// Streams in the "many" one-way workload (and the `--connect` echo one).
pub const MANY_STREAMS: usize = 100;
/// Streams in the many-streams echo workload.
pub const ECHO_STREAMS: usize = 16;
/// Bytes per `S` request on the one stream (as the Go peer).
pub const ONE_ROUND: u64 = 16 << 20;
/// Bytes per `S` request on each of the many streams.
pub const MANY_ROUND: u64 = 1 << 20;
/// Extra time a workload may take beyond its duration before it counts as hung.
pub const GRACE: Duration = Duration::from_secs(30);
/// Round trips a workload lasts at least when `--seconds` is not given.
pub const MIN_RTTS_PER_WORKLOAD: u32 = 30;
