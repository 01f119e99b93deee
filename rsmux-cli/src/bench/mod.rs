//! `rsmux bench`: raw TCP, rsmux v1 and v2, and Go smux side by side on loopback, directly or
//! through an in-process delay proxy (`--rtt`).

mod delay;
mod memory;
mod peers;
mod plot;
pub mod server;
mod workload;

use std::{
    future::Future,
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use self::{
    delay::DelayProxy,
    memory::Memory,
    peers::Peer,
    plot::Panel,
    workload::{Opener, Ops, Rate},
};
use crate::common::{self, Failure, Result, SmuxOpts};

pub const EXAMPLES: &str = "\
Examples:
  rsmux bench                                  full comparison (about 40 s)
  rsmux bench --quick                          the same in under 15 s, fewer rows
  rsmux bench --rtt 10ms,50ms                  over a link with 10 ms, then 50 ms round trips
  rsmux bench --quick --json > bench.json      one JSON object with every figure
  rsmux bench --plot fairness.svg              also draw per-stream throughput over time
  rsmux bench --connect 127.0.0.1:7000 --smuxver 2
                                               drive an external smux echo server

Rows (local comparison; every client talks to a server process over loopback TCP):
  raw TCP          one TCP connection per stream (this process <-> rsmux server process)
  rsmux v1/v2      this process <-> `rsmux` server process (`rsmux echo` for echo), one session
  rsmux v2 fixed window   the same with the window auto-tuning off (--fixed-streambuf,
                   Go's behaviour): the figure before auto-tuning, measured in the same run
  Go smux v1/v2    Go client <-> Go server (interop/go/bin/smuxpeer, xtaci/smux)
  without --quick also the mixed pairs: rsmux client <-> Go server, Go client <-> rsmux server
Workloads:
  1 stream         one stream, one way (client to server), 128 KiB writes and 128 KiB reads
  100 streams      100 streams at once, same, aggregate
  echo 1, echo 16  1 or 16 streams, each writing 128 KiB chunks while reading the echo back
                   (duplex); MB/s of bytes echoed (each direction carries that much). A Go
                   client drives its streams through the Go peer's tunnel-client, one session
  open/close       open a stream, write 1 byte, read the 1-byte answer, close; repeated
  idle stream      heap bytes per idle open stream, client + server sessions together,
                   10,000 streams (rsmux only; counted by this binary's allocator)
Below each table: ratios of speeds (MB/s, or operations per second for open/close) from the
same run; above 1 means the first row is faster.
--rtt puts every measured connection (raw TCP too) through a proxy in this process that
delays each direction by RTT/2 (after one RTT for the handshake); 0 = direct. The proxy holds
at most 8 MiB per direction and connection, so a direction carries at most 8 MiB per RTT/2.
MB = 10^6 bytes. With --connect the stream workloads use the echo design with 1 and 100
streams. Rows then: raw TCP echo (in this process), `rsmux echo` (child process), the server
given.";

/// Arguments of `rsmux bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object with every figure instead of the table
    #[arg(long)]
    pub json: bool,
    /// Short run, under 15 s: 0.3 s per workload, no mixed Rust/Go rows
    #[arg(long)]
    pub quick: bool,
    /// Seconds per timed workload [default: 0.75, or 0.3 with --quick; at a --rtt, at least
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
    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// Most values `--rtt` takes (each is a whole run of the rows).
const MAX_RTTS: usize = 8;

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

    /// The round-trip times to run at, in the order given ([0] by default).
    fn rtts(&self) -> Vec<Duration> {
        if self.rtt.is_empty() {
            vec![Duration::ZERO]
        } else {
            self.rtt.clone()
        }
    }
}

/// Idle streams in the memory workload.
const IDLE_STREAMS: usize = 10_000;
/// Streams in the "many" one-way workload (and the `--connect` echo one).
const MANY_STREAMS: usize = 100;
/// Streams in the many-streams echo workload.
const ECHO_STREAMS: usize = 16;
/// Bytes per `S` request: one stream, and each of the many streams (as the Go peer).
const ONE_ROUND: u64 = 16 << 20;
const MANY_ROUND: u64 = 1 << 20;
/// Extra time a workload may take beyond its duration before it counts as hung.
const GRACE: Duration = Duration::from_secs(30);
/// Round trips a workload lasts at least when `--seconds` is not given.
const MIN_RTTS_PER_WORKLOAD: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Rust,
    Go,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Rust => "rsmux",
            Side::Go => "go",
        }
    }
}

/// Where a row's streams go.
#[derive(Clone, Debug)]
enum Target {
    /// Local comparison: the benchmark protocol (one way, open/close) against a benchmark
    /// server, and the echo workloads against an echo server, of this kind.
    Bench { client: Side, server: Side },
    /// The echo design, against an in-process raw TCP echo.
    TcpEcho,
    /// The echo design, against a `rsmux echo` child process.
    LocalEcho,
    /// The echo design, against an external server.
    Remote(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Local: one stream one way. `--connect`: one stream echoed.
    One,
    /// Local: [`MANY_STREAMS`] one way. `--connect`: as many echoed.
    Many,
    /// Local: one stream echoed.
    EchoOne,
    /// Local: [`ECHO_STREAMS`] echoed.
    EchoMany,
    OpenClose,
}

impl Workload {
    fn label(self) -> String {
        match self {
            Workload::One => "1 stream".into(),
            Workload::Many => format!("{MANY_STREAMS} streams"),
            Workload::EchoOne => "echo, 1 stream".into(),
            Workload::EchoMany => format!("echo, {ECHO_STREAMS} streams"),
            Workload::OpenClose => "open/close".into(),
        }
    }

    /// Key in the JSON output.
    fn key(self) -> &'static str {
        match self {
            Workload::One => "one_stream",
            Workload::Many => "many_streams",
            Workload::EchoOne => "echo_one_stream",
            Workload::EchoMany => "echo_many_streams",
            Workload::OpenClose => "open_close",
        }
    }
}

/// Which server a workload of a local row talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The benchmark protocol server (`rsmux __bench-server`, Go `bench-server`).
    Bench,
    /// An echo server (`rsmux echo`, Go `echo`, `rsmux __bench-server --echo` for raw TCP);
    /// every workload of a `--connect` row.
    Echo,
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    id: String,
    name: String,
    /// `None` for raw TCP.
    version: Option<u8>,
    target: Target,
    /// The extra row with window auto-tuning off, as before it existed.
    fixed_window: bool,
    /// Round-trip time added by the delay proxy; zero: direct.
    rtt: Duration,
    skipped: Option<String>,
    one: Option<Rate>,
    many: Option<Rate>,
    echo_one: Option<Rate>,
    echo_many: Option<Rate>,
    open_close: Option<Ops>,
    idle: Option<Memory>,
    errors: Vec<String>,
}

impl Row {
    fn new(id: &str, name: &str, version: Option<u8>, target: Target, rtt: Duration) -> Row {
        Row {
            id: id.into(),
            name: name.into(),
            version,
            target,
            fixed_window: false,
            rtt,
            skipped: None,
            one: None,
            many: None,
            echo_one: None,
            echo_many: None,
            open_close: None,
            idle: None,
            errors: Vec::new(),
        }
    }

    fn needs_go(&self) -> bool {
        matches!(self.target, Target::Bench { client, server } if client == Side::Go || server == Side::Go)
    }

    fn client_side(&self) -> Side {
        match self.target {
            Target::Bench { client, .. } => client,
            _ => Side::Rust,
        }
    }

    fn client(&self) -> &'static str {
        self.client_side().name()
    }

    fn server(&self) -> String {
        match &self.target {
            Target::Bench { server, .. } => server.name().into(),
            Target::TcpEcho => "tcp-echo".into(),
            Target::LocalEcho => "rsmux echo".into(),
            Target::Remote(a) => a.clone(),
        }
    }

    fn transport(&self) -> &'static str {
        if self.version.is_some() {
            "smux"
        } else {
            "tcp"
        }
    }

    /// Whether one end of the smux session is rsmux.
    fn has_rsmux_end(&self) -> bool {
        match self.target {
            Target::Bench { client, server } => client == Side::Rust || server == Side::Rust,
            Target::TcpEcho => false,
            Target::LocalEcho | Target::Remote(_) => true,
        }
    }

    /// The workloads the row runs, in table order.
    fn workloads(&self) -> Vec<Workload> {
        use Workload::*;
        match self.target {
            // Open/close moves one byte: the window cannot matter, it would repeat rsmux v2.
            Target::Bench { .. } if self.fixed_window => vec![One, Many, EchoOne, EchoMany],
            Target::Bench { .. } => vec![One, Many, EchoOne, EchoMany, OpenClose],
            _ => vec![One, Many, OpenClose],
        }
    }

    fn phase(&self, w: Workload) -> Phase {
        match (&self.target, w) {
            (Target::Bench { .. }, Workload::One | Workload::Many | Workload::OpenClose) => {
                Phase::Bench
            }
            _ => Phase::Echo,
        }
    }

    fn rate(&self, w: Workload) -> Option<Rate> {
        match w {
            Workload::One => self.one,
            Workload::Many => self.many,
            Workload::EchoOne => self.echo_one,
            Workload::EchoMany => self.echo_many,
            Workload::OpenClose => None,
        }
    }

    /// Speed in a workload: MB/s, or operations per second for open/close.
    fn speed(&self, w: Workload) -> Option<f64> {
        match w {
            Workload::OpenClose => self.open_close.map(|o| o.ops as f64 / o.secs),
            _ => self.rate(w).map(|r| r.mb_s()),
        }
    }

    fn record(&mut self, w: Workload, f: Figure) {
        match (w, f) {
            (Workload::One, Figure::Rate(r)) => self.one = Some(r),
            (Workload::Many, Figure::Rate(r)) => self.many = Some(r),
            (Workload::EchoOne, Figure::Rate(r)) => self.echo_one = Some(r),
            (Workload::EchoMany, Figure::Rate(r)) => self.echo_many = Some(r),
            (Workload::OpenClose, Figure::Ops(o)) => self.open_close = Some(o),
            (w, _) => self
                .errors
                .push(format!("{}: wrong kind of figure", w.label())),
        }
    }
}

/// Everything a run needs.
struct Ctx {
    args: BenchArgs,
    dur: Duration,
    exe: PathBuf,
    go: std::result::Result<PathBuf, String>,
    progress: ProgressBar,
    /// Per `--rtt` value other than 0: a 1-byte round trip through the proxy, as measured.
    probes: Vec<(Duration, std::result::Result<Duration, String>)>,
}

impl Ctx {
    fn step(&self, msg: String) {
        tracing::debug!("bench: {msg}");
        self.progress.set_message(msg);
    }

    fn done(&self) {
        self.progress.inc(1);
    }

    /// Duration of a timed workload at a round-trip time: `--seconds`, or the default but at
    /// least [`MIN_RTTS_PER_WORKLOAD`] round trips (window growth takes a few).
    fn dur(&self, rtt: Duration) -> Duration {
        self.args
            .seconds
            .unwrap_or_else(|| self.dur.max(rtt * MIN_RTTS_PER_WORKLOAD))
    }

    /// How long a workload of `row` may take before it counts as hung: its duration, plus
    /// [`GRACE`], plus at a round-trip time what finishing a last 16 MiB request at one
    /// `--streambuf` window per round trip takes (twice over).
    fn limit(&self, row: &Row) -> Duration {
        let windows = (ONE_ROUND / self.args.smux.streambuf.max(1) as u64).max(1);
        let finish = row
            .rtt
            .checked_mul(u32::try_from(windows * 2).unwrap_or(u32::MAX))
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600));
        self.dur(row.rtt) + GRACE + finish
    }

    /// The smux flags of a row: the command line's, with auto-tuning off for the fixed row.
    fn smux(&self, row: &Row) -> SmuxOpts {
        let mut s = self.args.smux.clone();
        s.fixed_streambuf |= row.fixed_window;
        s
    }

    /// Whether the rsmux ends of a v2 row auto-tune their window (None: no such end).
    fn auto_tune(&self, row: &Row) -> Option<bool> {
        (row.version == Some(2) && row.has_rsmux_end()).then(|| !self.smux(row).fixed_streambuf)
    }
}

fn progress_bar(steps: u64) -> ProgressBar {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

pub async fn run(args: BenchArgs) -> Result<()> {
    // On a signal the run is dropped, which kills every child process.
    tokio::select! {
        res = run_bench(args) => res,
        sig = common::shutdown_signal() => Err(Failure(format!("interrupted by {sig}"))),
    }
}

async fn run_bench(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let dur = args
        .seconds
        .unwrap_or(Duration::from_millis(if args.quick { 300 } else { 750 }));
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find this program's path: {e}")))?;

    let local = args.connect.is_none();
    let mut rows: Vec<Row> = Vec::new();
    for rtt in args.rtts() {
        rows.extend(match &args.connect {
            Some(addr) => connect_rows(addr, args.smux.smuxver, rtt),
            None => local_rows(args.quick, args.smux.fixed_streambuf, rtt),
        });
    }
    let plot_panels = match (&args.plot, local) {
        (None, _) => 0,
        (Some(_), true) => 4,
        (Some(_), false) => 1,
    };
    let workloads: usize = rows.iter().map(|r| r.workloads().len()).sum();
    let steps = workloads as u64 + if local { 2 } else { 0 } + plot_panels;
    let mut ctx = Ctx {
        dur,
        exe,
        go: Err(String::new()),
        progress: progress_bar(steps),
        args,
        probes: Vec::new(),
    };
    ctx.go = if !local {
        Err("not used with --connect".into())
    } else if ctx.args.no_go {
        Err("--no-go given".into())
    } else {
        ctx.step("looking for the Go peer".into());
        peers::find_go_peer(ctx.args.go_peer.as_deref()).await
    };

    if local {
        // First, while nothing else runs in this process: the allocator counts everything.
        let first_rtt = rows.first().map(|r| r.rtt);
        for version in [1u8, 2] {
            ctx.step(format!(
                "memory: {IDLE_STREAMS} idle streams, rsmux v{version}"
            ));
            let config = ctx
                .args
                .smux
                .config_with_version(version)
                .map_err(Failure)?;
            let res = bounded(memory::idle_streams(config, IDLE_STREAMS), GRACE).await;
            if let Some(row) = rows
                .iter_mut()
                .find(|r| r.id == format!("rsmux-v{version}") && Some(r.rtt) == first_rtt)
            {
                match res {
                    Ok(m) => row.idle = Some(m),
                    Err(e) => row.errors.push(format!("idle streams: {e}")),
                }
            }
            ctx.done();
        }
    }

    let tcp_echo = if local {
        None
    } else {
        Some(
            TcpEcho::start()
                .await
                .map_err(|e| Failure(format!("tcp echo: {e}")))?,
        )
    };
    for row in &mut rows {
        if !row.rtt.is_zero() && !ctx.probes.iter().any(|(r, _)| *r == row.rtt) {
            ctx.step(format!("RTT {}: probing the delay proxy", ms_text(row.rtt)));
            let probe = probe_rtt(row.rtt).await;
            ctx.probes.push((row.rtt, probe));
        }
        if row.needs_go() {
            if let Err(reason) = &ctx.go {
                row.skipped = Some(reason.clone());
                ctx.progress.inc(row.workloads().len() as u64);
                continue;
            }
        }
        run_row(&ctx, row, tcp_echo.as_ref().map(|t| t.addr)).await;
    }
    let plot = match ctx.args.plot.clone() {
        Some(path) => Some(draw_plot(&ctx, &path).await),
        None => None,
    };
    ctx.progress.finish_and_clear();

    let total = started.elapsed().as_secs_f64();
    if ctx.args.json {
        let v = to_json(&ctx, &rows, plot.as_ref(), total);
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", table(&ctx, &rows, plot.as_ref(), total));
    }
    let mut failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.errors
                .iter()
                .map(move |e| format!("{}{}: {e}", r.name, rtt_suffix(r.rtt)))
        })
        .collect();
    if let Some(Err(e)) = &plot {
        failures.push(format!("plot: {e}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure(format!(
            "{} workload(s) failed; first: {}",
            failures.len(),
            failures[0]
        )))
    }
}

/// A 1-byte round trip through a delay proxy of `rtt` to an echo in this process.
async fn probe_rtt(rtt: Duration) -> std::result::Result<Duration, String> {
    let echo = TcpEcho::start().await.map_err(|e| e.to_string())?;
    let proxy = DelayProxy::start(echo.addr, rtt)
        .await
        .map_err(|e| e.to_string())?;
    bounded(delay::probe_rtt(proxy.addr(), 5), rtt * 10 + GRACE).await
}

/// The measured round trip of a `--rtt` value, as text.
fn probe_text(ctx: &Ctx, rtt: Duration) -> String {
    match ctx.probes.iter().find(|(r, _)| *r == rtt).map(|(_, p)| p) {
        Some(Ok(d)) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        Some(Err(e)) => format!("failed: {e}"),
        None => "not measured".into(),
    }
}

/// " (RTT 10 ms)", or nothing for direct rows.
fn rtt_suffix(rtt: Duration) -> String {
    if rtt.is_zero() {
        String::new()
    } else {
        format!(" (RTT {})", ms_text(rtt))
    }
}

/// A round-trip time as text: "0", "10ms", "2.5ms".
fn ms_text(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        format!("{}ms", d.as_secs_f64() * 1000.0)
    }
}

fn local_rows(quick: bool, all_fixed: bool, rtt: Duration) -> Vec<Row> {
    let bench = |client, server| Target::Bench { client, server };
    let row = |id: &str, name: &str, v, t| Row::new(id, name, v, t, rtt);
    let mut rows = vec![
        row("tcp", "raw TCP", None, bench(Side::Rust, Side::Rust)),
        row(
            "rsmux-v1",
            "rsmux v1",
            Some(1),
            bench(Side::Rust, Side::Rust),
        ),
        row(
            "rsmux-v2",
            "rsmux v2",
            Some(2),
            bench(Side::Rust, Side::Rust),
        ),
    ];
    if !all_fixed {
        // The "before" figure, measured in the same run.
        let mut fixed = row(
            "rsmux-v2-fixed",
            "rsmux v2 fixed window",
            Some(2),
            bench(Side::Rust, Side::Rust),
        );
        fixed.fixed_window = true;
        rows.push(fixed);
    }
    rows.push(row(
        "go-v1",
        "Go smux v1",
        Some(1),
        bench(Side::Go, Side::Go),
    ));
    rows.push(row(
        "go-v2",
        "Go smux v2",
        Some(2),
        bench(Side::Go, Side::Go),
    ));
    if !quick {
        for v in [1u8, 2] {
            rows.push(row(
                &format!("rsmux-to-go-v{v}"),
                &format!("rsmux→Go v{v}"),
                Some(v),
                bench(Side::Rust, Side::Go),
            ));
        }
        for v in [1u8, 2] {
            rows.push(row(
                &format!("go-to-rsmux-v{v}"),
                &format!("Go→rsmux v{v}"),
                Some(v),
                bench(Side::Go, Side::Rust),
            ));
        }
    }
    rows
}

fn connect_rows(addr: &str, version: u8, rtt: Duration) -> Vec<Row> {
    vec![
        Row::new("tcp-echo", "raw TCP echo", None, Target::TcpEcho, rtt),
        Row::new(
            "local-echo",
            &format!("rsmux echo v{version}"),
            Some(version),
            Target::LocalEcho,
            rtt,
        ),
        Row::new(
            "remote",
            &format!("{addr} v{version}"),
            Some(version),
            Target::Remote(addr.to_string()),
            rtt,
        ),
    ]
}

/// Runs a future with a time limit, flattening errors to text.
async fn bounded<T, E: std::fmt::Display>(
    f: impl Future<Output = std::result::Result<T, E>>,
    limit: Duration,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// A server process for a row's phase, when it needs one.
async fn start_server(
    ctx: &Ctx,
    row: &Row,
    phase: Phase,
) -> std::result::Result<Option<Peer>, String> {
    let version = row.version.unwrap_or(1);
    let smux = ctx.smux(row);
    let go = || ctx.go.as_ref().map_err(Clone::clone);
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let (program, mut a): (&Path, Vec<String>) = match (&row.target, phase) {
        (
            Target::Bench {
                server: Side::Rust, ..
            },
            _,
        ) if row.version.is_none() => {
            let mut a = strings(&["__bench-server", "--transport", "tcp"]);
            if phase == Phase::Echo {
                a.push("--echo".into());
            }
            (&ctx.exe, a)
        }
        (
            Target::Bench {
                server: Side::Rust, ..
            },
            Phase::Bench,
        ) => (
            &ctx.exe,
            strings(&["__bench-server", "--transport", "smux"]),
        ),
        (
            Target::Bench {
                server: Side::Rust, ..
            },
            Phase::Echo,
        )
        | (Target::LocalEcho, _) => (&ctx.exe, strings(&["echo", "--listen", "127.0.0.1:0"])),
        (
            Target::Bench {
                server: Side::Go, ..
            },
            phase,
        ) => {
            let role = if phase == Phase::Bench {
                "bench-server"
            } else {
                "echo"
            };
            let mut a = strings(&[role, "-listen", "127.0.0.1:0", "-quiet"]);
            a.extend(smux.go_flags(version));
            return Peer::start(go()?, &a).await.map(Some);
        }
        (Target::TcpEcho | Target::Remote(_), _) => return Ok(None),
    };
    a.extend(smux.cli_flags(version));
    Peer::start(program, &a).await.map(Some)
}

async fn run_row(ctx: &Ctx, row: &mut Row, tcp_echo: Option<SocketAddr>) {
    let workloads = row.workloads();
    for phase in [Phase::Bench, Phase::Echo] {
        let ws: Vec<Workload> = workloads
            .iter()
            .copied()
            .filter(|w| row.phase(*w) == phase)
            .collect();
        if ws.is_empty() {
            continue;
        }
        ctx.step(format!("{}{}: starting", row.name, rtt_suffix(row.rtt)));
        let skip = |row: &mut Row, e: String| {
            row.errors.push(e);
            ctx.progress.inc(ws.len() as u64);
        };
        let server = match start_server(ctx, row, phase).await {
            Ok(s) => s,
            Err(e) => {
                skip(row, format!("server: {e}"));
                continue;
            }
        };
        let addr: std::result::Result<SocketAddr, String> = match (&row.target, &server) {
            (_, Some(p)) => Ok(p.addr),
            (Target::TcpEcho, None) => tcp_echo.ok_or_else(|| "no tcp echo".to_string()),
            (Target::Remote(a), None) => resolve(a).await,
            _ => Err("no server".into()),
        };
        let addr = match addr {
            Ok(a) => a,
            Err(e) => {
                skip(row, e);
                continue;
            }
        };
        // The delayed link, between every client and the server.
        let proxy = if row.rtt.is_zero() {
            None
        } else {
            match DelayProxy::start(addr, row.rtt).await {
                Ok(p) => Some(p),
                Err(e) => {
                    skip(row, format!("delay proxy: {e}"));
                    continue;
                }
            }
        };
        let addr = proxy.as_ref().map_or(addr, DelayProxy::addr);
        for w in ws {
            ctx.step(format!(
                "{}{}: {}",
                row.name,
                rtt_suffix(row.rtt),
                w.label()
            ));
            let res = match row.client_side() {
                Side::Go if phase == Phase::Echo => go_echo_workload(ctx, row, addr, w).await,
                Side::Go => go_client_workload(ctx, row, addr, w).await,
                Side::Rust => rust_workload(ctx, row, addr, w).await,
            };
            match res {
                Ok(f) => row.record(w, f),
                Err(e) => {
                    let hint = server
                        .as_ref()
                        .map(Peer::last_error)
                        .filter(|l| !l.is_empty())
                        .map(|l| format!(" (server said: {l})"))
                        .unwrap_or_default();
                    row.errors.push(format!("{}: {e}{hint}", w.label()));
                }
            }
            ctx.done();
        }
        drop(proxy);
        if let Some(s) = server {
            s.stop().await;
        }
    }
}

enum Figure {
    Rate(Rate),
    Ops(Ops),
}

async fn resolve(addr: &str) -> std::result::Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))
}

async fn rust_workload(
    ctx: &Ctx,
    row: &Row,
    addr: SocketAddr,
    w: Workload,
) -> std::result::Result<Figure, String> {
    let config = match row.version {
        Some(v) => Some(ctx.smux(row).config_with_version(v)?),
        None => None,
    };
    let opener = bounded(Opener::connect(addr, config), Duration::from_secs(10)).await?;
    let limit = ctx.limit(row);
    let dur = ctx.dur(row.rtt);
    let echo_design = !matches!(row.target, Target::Bench { .. });
    let res = match (w, echo_design) {
        (Workload::One, false) => bounded(workload::upload(&opener, 1, ONE_ROUND, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::Many, false) => bounded(
            workload::upload(&opener, MANY_STREAMS, MANY_ROUND, dur),
            limit,
        )
        .await
        .map(Figure::Rate),
        (Workload::One | Workload::EchoOne, _) => bounded(workload::echo(&opener, 1, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::Many, true) => bounded(workload::echo(&opener, MANY_STREAMS, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::EchoMany, _) => bounded(workload::echo(&opener, ECHO_STREAMS, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::OpenClose, _) => bounded(workload::open_close(&opener, dur), limit)
            .await
            .map(Figure::Ops),
    };
    opener.finish().await;
    res
}

/// Runs the Go peer's `bench-client` for one workload and reads its JSON line.
async fn go_client_workload(
    ctx: &Ctx,
    row: &Row,
    addr: SocketAddr,
    w: Workload,
) -> std::result::Result<Figure, String> {
    let go = ctx.go.as_ref().map_err(Clone::clone)?;
    let mode = match w {
        Workload::One => "one",
        Workload::Many => "many",
        Workload::OpenClose => "openclose",
        Workload::EchoOne | Workload::EchoMany => {
            return Err("the Go bench-client has no echo mode".into())
        }
    };
    let mut a: Vec<String> = [
        "bench-client",
        "-connect",
        &addr.to_string(),
        "-mode",
        mode,
        "-dir",
        "up",
        "-seconds",
        &common::secs(ctx.dur(row.rtt)),
        "-json",
        "-quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if w == Workload::Many {
        a.extend(["-streams".to_string(), MANY_STREAMS.to_string()]);
    }
    a.extend(ctx.smux(row).go_flags(row.version.unwrap_or(1)));
    let out = peers::run_to_end(go, &a, ctx.limit(row)).await?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            format!(
                "Go bench-client printed no JSON: {}",
                peers::last_line(&out)
            )
        })?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("Go bench-client JSON: {e}"))?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let secs = f("seconds").ok_or("Go bench-client JSON lacks 'seconds'")?;
    Ok(match w {
        Workload::OpenClose => Figure::Ops(Ops {
            ops: f("ops").ok_or("Go bench-client JSON lacks 'ops'")? as u64,
            secs,
        }),
        _ => Figure::Rate(Rate {
            bytes: f("bytes").ok_or("Go bench-client JSON lacks 'bytes'")? as u64,
            secs,
        }),
    })
}

/// An echo workload with a Go smux client: the Go peer's `tunnel-client` holds one session
/// to the echo server and carries each TCP connection this process makes to it as one
/// stream. The loopback hop to the tunnel costs the same for every server it is pointed at.
async fn go_echo_workload(
    ctx: &Ctx,
    row: &Row,
    addr: SocketAddr,
    w: Workload,
) -> std::result::Result<Figure, String> {
    let go = ctx.go.as_ref().map_err(Clone::clone)?;
    let streams = if w == Workload::EchoMany {
        ECHO_STREAMS
    } else {
        1
    };
    let mut a: Vec<String> = [
        "tunnel-client",
        "-listen",
        "127.0.0.1:0",
        "-server",
        &addr.to_string(),
        "-quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(ctx.smux(row).go_flags(row.version.unwrap_or(1)));
    let tunnel = Peer::start(go, &a).await?;
    let opener = Opener::Tcp(tunnel.addr);
    let res = bounded(
        workload::echo(&opener, streams, ctx.dur(row.rtt)),
        ctx.limit(row),
    )
    .await
    .map(Figure::Rate)
    .map_err(|e| match tunnel.last_error() {
        l if l.is_empty() => e,
        l => format!("{e} (Go tunnel-client said: {l})"),
    });
    tunnel.stop().await;
    res
}

/// A raw TCP echo server in this process (reference row of `--connect`).
struct TcpEcho {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpEcho {
    async fn start() -> std::io::Result<TcpEcho> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(server::echo_stream(tcp));
            }
        });
        Ok(TcpEcho { addr, task })
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Result of `--plot`: the panels drawn, or why not.
type PlotResult = std::result::Result<Vec<Panel>, String>;

async fn draw_plot(ctx: &Ctx, path: &Path) -> PlotResult {
    let n = usize::from(ctx.args.plot_streams);
    let secs = if ctx.args.quick { 1.0 } else { 3.0 };
    let interval = if ctx.args.quick { 0.05 } else { 0.1 };
    let mut panels = Vec::new();
    let mut skipped = Vec::new();
    let jobs: Vec<(String, Target, u8)> = match &ctx.args.connect {
        Some(a) => vec![(
            format!("{a} (echo) v{}", ctx.args.smux.smuxver),
            Target::Remote(a.clone()),
            ctx.args.smux.smuxver,
        )],
        None => {
            let b = |server| Target::Bench {
                client: Side::Rust,
                server,
            };
            vec![
                ("rsmux v1 server → rsmux client".into(), b(Side::Rust), 1),
                ("rsmux v2 server → rsmux client".into(), b(Side::Rust), 2),
                ("Go smux v1 server → rsmux client".into(), b(Side::Go), 1),
                ("Go smux v2 server → rsmux client".into(), b(Side::Go), 2),
            ]
        }
    };
    for (title, target, version) in jobs {
        ctx.step(format!("plot: {title}"));
        let row = Row::new("plot", &title, Some(version), target, Duration::ZERO);
        if row.needs_go() {
            if let Err(e) = &ctx.go {
                skipped.push(format!("{title}: {e}"));
                ctx.done();
                continue;
            }
        }
        let res = plot_panel(ctx, &row, n, secs, interval).await;
        ctx.done();
        match res {
            Ok(series) => panels.push(Panel {
                title,
                interval,
                series,
            }),
            Err(e) => return Err(format!("{title}: {e}")),
        }
    }
    let direction = if ctx.args.connect.is_some() {
        "echoed bytes per stream"
    } else {
        "each downloading from the server (G requests, 128 KiB reads)"
    };
    let mut subtitle = format!(
        "{n} streams, {direction}, sampled every {} ms\nsmuxbuf {}, streambuf {}, framesize {}",
        (interval * 1000.0) as u64,
        size(ctx.args.smux.smuxbuf),
        size(ctx.args.smux.streambuf),
        size(ctx.args.smux.framesize)
    );
    if !skipped.is_empty() {
        subtitle.push_str(&format!("; skipped: {}", skipped.join("; ")));
    }
    std::fs::write(path, plot::svg(&panels, &subtitle))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(panels)
}

async fn plot_panel(
    ctx: &Ctx,
    row: &Row,
    n: usize,
    secs: f64,
    interval: f64,
) -> std::result::Result<Vec<Vec<f64>>, String> {
    let server = start_server(ctx, row, Phase::Bench).await?;
    let addr = match (&server, &row.target) {
        (Some(p), _) => p.addr,
        (None, Target::Remote(a)) => resolve(a).await?,
        _ => return Err("no server".into()),
    };
    let config = ctx
        .args
        .smux
        .config_with_version(row.version.unwrap_or(1))?;
    let opener = bounded(Opener::connect(addr, Some(config)), Duration::from_secs(10)).await?;
    let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let set = if matches!(row.target, Target::Remote(_)) {
        workload::echo_streams(&opener, &counters, &stop).await
    } else {
        workload::downloads(&opener, &counters, &stop).await
    }
    .map_err(|e| e.to_string())?;

    let mut series = vec![Vec::new(); n];
    let mut last = vec![0u64; n];
    let start = Instant::now();
    let mut at = start;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(interval));
    tick.tick().await;
    while start.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        let now = Instant::now();
        let dt = (now - at).as_secs_f64();
        at = now;
        for (i, c) in counters.iter().enumerate() {
            let v = c.load(Relaxed);
            series[i].push((v - last[i]) as f64 / dt / 1e6);
            last[i] = v;
        }
    }
    stop.store(true, Relaxed);
    if matches!(row.target, Target::Remote(_)) {
        // Echo streams end by themselves after their FIN; wait for them politely.
        let mut set = set;
        let _ =
            tokio::time::timeout(GRACE, async { while set.join_next().await.is_some() {} }).await;
    } else {
        drop(set);
    }
    opener.finish().await;
    if let Some(s) = server {
        s.stop().await;
    }
    Ok(series)
}

fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn rtt_ms(d: Duration) -> f64 {
    r3(d.as_secs_f64() * 1000.0)
}

/// Throughput of a row divided by that of the raw TCP row at the same RTT.
fn tcp_ratio(rows: &[Row], row: &Row, w: Workload) -> Option<f64> {
    let base = rows
        .iter()
        .find(|r| r.version.is_none() && r.rtt == row.rtt)
        .and_then(|r| r.rate(w))?;
    Some(row.rate(w)?.mb_s() / base.mb_s())
}

/// A ratio of two rows' speeds, printed under each table.
struct RatioSpec {
    num: String,
    den: String,
    name: String,
}

fn ratio_specs(ctx: &Ctx) -> Vec<RatioSpec> {
    let spec = |num: &str, den: &str, name: &str| RatioSpec {
        num: num.into(),
        den: den.into(),
        name: name.into(),
    };
    match &ctx.args.connect {
        Some(a) => vec![
            spec("local-echo", "tcp-echo", "rsmux echo / raw TCP echo"),
            spec("remote", "tcp-echo", &format!("{a} / raw TCP echo")),
            spec("remote", "local-echo", &format!("{a} / rsmux echo")),
        ],
        None => vec![
            spec("rsmux-v2", "rsmux-v1", "rsmux v2 / rsmux v1"),
            spec("rsmux-v2", "rsmux-v2-fixed", "rsmux v2 / v2 fixed window"),
            spec("rsmux-v2", "go-v2", "rsmux v2 / Go v2"),
            spec("go-v2", "go-v1", "Go v2 / Go v1"),
            spec("rsmux-to-go-v2", "rsmux-to-go-v1", "rsmux→Go v2 / v1"),
            spec("go-to-rsmux-v2", "go-to-rsmux-v1", "Go→rsmux v2 / v1"),
            spec("go-to-rsmux-v2", "go-v2", "Go→rsmux v2 / Go v2"),
            spec("rsmux-v1", "tcp", "rsmux v1 / raw TCP"),
            spec("rsmux-v2", "tcp", "rsmux v2 / raw TCP"),
        ],
    }
}

/// A ratio at one RTT: the two rows, when both ran.
struct Ratio<'a> {
    spec: &'a RatioSpec,
    rtt: Duration,
    num: &'a Row,
    den: &'a Row,
}

impl Ratio<'_> {
    fn value(&self, w: Workload) -> Option<f64> {
        Some(self.num.speed(w)? / self.den.speed(w)?)
    }
}

fn ratios<'a>(specs: &'a [RatioSpec], rows: &'a [Row], rtt: Duration) -> Vec<Ratio<'a>> {
    let find = |id: &str| {
        rows.iter()
            .find(|r| r.id == id && r.rtt == rtt && r.skipped.is_none())
    };
    specs
        .iter()
        .filter_map(|spec| {
            Some(Ratio {
                spec,
                rtt,
                num: find(&spec.num)?,
                den: find(&spec.den)?,
            })
        })
        .collect()
}

/// The round-trip times of the rows, in run order.
fn row_rtts(rows: &[Row]) -> Vec<Duration> {
    let mut v: Vec<Duration> = Vec::new();
    for r in rows {
        if !v.contains(&r.rtt) {
            v.push(r.rtt);
        }
    }
    v
}

/// Workloads with a speed, in table order.
fn all_workloads(local: bool) -> Vec<Workload> {
    use Workload::*;
    if local {
        vec![One, Many, EchoOne, EchoMany, OpenClose]
    } else {
        vec![One, Many, OpenClose]
    }
}

fn to_json(ctx: &Ctx, rows: &[Row], plot: Option<&PlotResult>, total: f64) -> Value {
    let s = &ctx.args.smux;
    let local = ctx.args.connect.is_none();
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            let mut put = |k: &str, v: Value| {
                o.insert(k.to_string(), v);
            };
            put("id", json!(r.id));
            put("name", json!(r.name));
            put("rtt_ms", json!(rtt_ms(r.rtt)));
            put("seconds_per_workload", json!(ctx.dur(r.rtt).as_secs_f64()));
            put("transport", json!(r.transport()));
            put("version", json!(r.version));
            put("auto_tune", json!(ctx.auto_tune(r)));
            put("client", json!(r.client()));
            put("server", json!(r.server()));
            put("skipped", json!(r.skipped));
            put("errors", json!(r.errors));
            use Workload::*;
            for w in [One, Many, EchoOne, EchoMany] {
                let k = w.key();
                let rate = r.rate(w);
                put(&format!("{k}_mb_s"), json!(rate.map(|x| r1(x.mb_s()))));
                put(&format!("{k}_ratio"), json!(tcp_ratio(rows, r, w).map(r3)));
                put(&format!("{k}_bytes"), json!(rate.map(|x| x.bytes)));
                put(&format!("{k}_seconds"), json!(rate.map(|x| r3(x.secs))));
            }
            put("many_streams", json!(MANY_STREAMS));
            put("echo_many_streams", json!(ECHO_STREAMS));
            put(
                "open_close_us",
                json!(r
                    .open_close
                    .map(|x| (x.us_per_op() * 100.0).round() / 100.0)),
            );
            put("open_close_ops", json!(r.open_close.map(|x| x.ops)));
            put("idle_streams", json!(r.idle.map(|m| m.streams)));
            put(
                "idle_bytes_per_stream",
                json!(r.idle.map(|m| m.bytes_per_stream.round())),
            );
            Value::Object(o)
        })
        .collect();
    let specs = ratio_specs(ctx);
    let mut ratios_json = Vec::new();
    for rtt in row_rtts(rows) {
        for ratio in ratios(&specs, rows, rtt) {
            let mut o = serde_json::Map::new();
            o.insert(
                "id".into(),
                json!(format!("{}/{}", ratio.spec.num, ratio.spec.den)),
            );
            o.insert("name".into(), json!(ratio.spec.name));
            o.insert("rtt_ms".into(), json!(rtt_ms(ratio.rtt)));
            o.insert("numerator".into(), json!(ratio.spec.num));
            o.insert("denominator".into(), json!(ratio.spec.den));
            for w in [
                Workload::One,
                Workload::Many,
                Workload::EchoOne,
                Workload::EchoMany,
                Workload::OpenClose,
            ] {
                o.insert(w.key().into(), json!(ratio.value(w).map(r3)));
            }
            ratios_json.push(Value::Object(o));
        }
    }
    let plot_json = match plot {
        None => Value::Null,
        Some(Err(e)) => json!({ "file": ctx.args.plot, "error": e, "panels": [] }),
        Some(Ok(panels)) => json!({
            "file": ctx.args.plot,
            "error": null,
            "panels": panels.iter().map(|p| json!({
                "title": p.title,
                "interval_seconds": p.interval,
                "stream_mean_mb_s": p.means().into_iter().map(r1).collect::<Vec<_>>(),
                "jain_index": r3(p.jain()),
            })).collect::<Vec<_>>(),
        }),
    };
    json!({
        "tool": "rsmux bench",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": if local { "local" } else { "connect" },
        "connect": ctx.args.connect,
        "quick": ctx.args.quick,
        "seconds_per_workload": ctx.dur(Duration::ZERO).as_secs_f64(),
        "rtts_ms": ctx.args.rtts().into_iter().map(rtt_ms).collect::<Vec<_>>(),
        "rtts": ctx.args.rtts().into_iter().map(|rtt| {
            let probe = ctx.probes.iter().find(|(r, _)| *r == rtt).map(|(_, p)| p);
            json!({
                "rtt_ms": rtt_ms(rtt),
                "seconds_per_workload": ctx.dur(rtt).as_secs_f64(),
                "measured_ms": probe.and_then(|p| p.as_ref().ok()).map(|d| rtt_ms(*d)),
                "probe_error": probe.and_then(|p| p.as_ref().err()),
            })
        }).collect::<Vec<_>>(),
        "proxy_line_cap_bytes": delay::LINE_CAP,
        "config": {
            "smuxver": s.smuxver,
            "smuxbuf": s.smuxbuf,
            "streambuf": s.streambuf,
            "framesize": s.framesize,
            "keepalive_seconds": s.keepalive.as_secs_f64(),
            "keepalive_timeout_seconds": s.keepalive_timeout.as_secs_f64(),
            "fixed_streambuf": s.fixed_streambuf,
        },
        "go": {
            "available": ctx.go.is_ok(),
            "peer": ctx.go.as_ref().ok(),
            "skip_reason": ctx.go.as_ref().err(),
        },
        "rows": rows_json,
        "ratios": ratios_json,
        "plot": plot_json,
        "total_seconds": r3(total),
    })
}

fn size(b: usize) -> String {
    if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// Width of every figure column.
const COL: usize = 13;

/// The two header lines of a workload's column.
fn heading(w: Workload, local: bool) -> (String, String) {
    match (w, local) {
        (Workload::One, true) => ("1 stream".into(), "one way".into()),
        (Workload::Many, true) => (format!("{MANY_STREAMS} streams"), "one way".into()),
        (Workload::One, false) => ("1 stream".into(), "echoed".into()),
        (Workload::Many, false) => (format!("{MANY_STREAMS} streams"), "echoed".into()),
        (Workload::EchoOne, _) => ("echo".into(), "1 stream".into()),
        (Workload::EchoMany, _) => ("echo".into(), format!("{ECHO_STREAMS} streams")),
        (Workload::OpenClose, _) => ("open+close".into(), String::new()),
    }
}

fn table(ctx: &Ctx, rows: &[Row], plot: Option<&PlotResult>, total: f64) -> String {
    use std::fmt::Write;
    let s = &ctx.args.smux;
    let local = ctx.args.connect.is_none();
    let mut out = String::new();
    let keepalive = if s.keepalive.is_zero() {
        "off".to_string()
    } else {
        format!(
            "{}/{} s",
            common::secs(s.keepalive),
            common::secs(s.keepalive_timeout)
        )
    };
    let _ = writeln!(
        out,
        "rsmux bench — {}, {} s per workload{}; smuxbuf {}, streambuf {} ({}), framesize {}, keepalive {}",
        if local { "loopback TCP".to_string() } else { format!("echo server {}", ctx.args.connect.as_deref().unwrap_or("")) },
        common::secs(ctx.dur(Duration::ZERO)),
        if ctx.args.quick { " (--quick)" } else { "" },
        size(s.smuxbuf),
        size(s.streambuf),
        if s.fixed_streambuf { "fixed" } else { "v2: auto-tuned" },
        size(s.framesize),
        keepalive,
    );
    let specs = ratio_specs(ctx);
    let workloads = all_workloads(local);
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .chain(specs.iter().map(|r| r.name.chars().count()))
        .max()
        .unwrap_or(8)
        .max(22)
        + 2;
    for rtt in row_rtts(rows) {
        let _ = writeln!(out);
        if rtt.is_zero() {
            let _ = writeln!(out, "RTT 0: direct loopback");
        } else {
            let _ = writeln!(
                out,
                "RTT {}: every connection through the delay proxy ({} each way; a 1-byte round trip through it: {}), {} s per workload",
                ms_text(rtt),
                ms_text(rtt / 2),
                probe_text(ctx, rtt),
                common::secs(ctx.dur(rtt))
            );
        }
        // Headers: two lines of names, then units.
        let heads: Vec<(String, String)> = workloads.iter().map(|w| heading(*w, local)).collect();
        let mut h1 = format!("{:name_w$}", "");
        let mut h2 = h1.clone();
        let mut h3 = h1.clone();
        for (w, (a, b)) in workloads.iter().zip(&heads) {
            let _ = write!(h1, "{a:>COL$}");
            let _ = write!(h2, "{b:>COL$}");
            let unit = if *w == Workload::OpenClose {
                "µs/op"
            } else {
                "MB/s"
            };
            let _ = write!(h3, "{unit:>COL$}");
        }
        if local {
            let _ = write!(h1, "{:>COL$}", "idle stream");
            let _ = write!(h2, "{:>COL$}", "");
            let _ = write!(h3, "{:>COL$}", "bytes");
        }
        for h in [h1, h2, h3] {
            let _ = writeln!(out, "{}", h.trim_end());
        }
        for r in rows.iter().filter(|r| r.rtt == rtt) {
            let _ = write!(out, "{:name_w$}", r.name);
            if let Some(reason) = &r.skipped {
                let _ = writeln!(out, "skipped: {reason}");
                continue;
            }
            let mut line = String::new();
            for w in &workloads {
                let cell = match w {
                    Workload::OpenClose => r
                        .open_close
                        .map_or("-".into(), |x| format!("{:.1}", x.us_per_op())),
                    _ => r
                        .rate(*w)
                        .map_or("-".into(), |x| format!("{:.0}", x.mb_s())),
                };
                let _ = write!(line, "{cell:>COL$}");
            }
            if local {
                let idle = r
                    .idle
                    .map_or("-".into(), |m| format!("{:.0}", m.bytes_per_stream));
                let _ = write!(line, "{idle:>COL$}");
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for e in &r.errors {
                let _ = writeln!(out, "{:name_w$}FAILED {e}", "");
            }
        }
        let list = ratios(&specs, rows, rtt);
        if !list.is_empty() {
            let mut h = format!("{:name_w$}", "speed ratios, same run");
            for (a, b) in &heads {
                let short = if a == "echo" {
                    format!(
                        "echo {}",
                        b.trim_end_matches(" streams").trim_end_matches(" stream")
                    )
                } else {
                    a.clone()
                };
                let _ = write!(h, "{short:>COL$}");
            }
            let _ = writeln!(out);
            let _ = writeln!(out, "{}", h.trim_end());
            for ratio in list {
                let mut line = format!("{:name_w$}", ratio.spec.name);
                for w in &workloads {
                    let v = ratio.value(*w).map_or("-".into(), |x| format!("{x:.2}"));
                    let _ = write!(line, "{v:>COL$}");
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
    }
    let _ = writeln!(out);
    if local {
        let _ = writeln!(out, "raw TCP: a TCP connection per stream. rsmux: this process <-> an `rsmux` server process, one session.");
        if !s.fixed_streambuf {
            let _ = writeln!(out, "v2 fixed window: auto-tuning off on both ends (--fixed-streambuf), Go's behaviour: the figure before it.");
        }
        match &ctx.go {
            Ok(p) => {
                let _ = writeln!(
                    out,
                    "Go smux: Go client <-> Go server, both {} (xtaci/smux).",
                    p.display()
                );
                if !ctx.args.quick {
                    let _ = writeln!(out, "rsmux→Go: this process <-> Go server; Go→rsmux: Go client <-> `rsmux` server process.");
                }
                let _ = writeln!(out, "Echo with a Go client: through the Go peer's tunnel-client (one smux session, a TCP hop to this process).");
            }
            Err(e) => {
                let _ = writeln!(out, "Go smux rows skipped: {e}");
            }
        }
        let _ = writeln!(out, "One way: client to server, 128 KiB writes and reads. Echo: every stream writes 128 KiB chunks while reading");
        let _ = writeln!(out, "the echo; MB/s of bytes echoed (each direction carries that much). open+close: open, write 1 B, read 1 B, close.");
        let _ = writeln!(out, "idle stream: heap bytes per idle open stream, client + server sessions together, {IDLE_STREAMS} streams.");
    } else {
        let _ = writeln!(out, "Echoed: each stream writes 128 KiB chunks while reading the echo; when all came back it half-closes");
        let _ = writeln!(
            out,
            "and expects EOF. MB/s of bytes echoed (each direction carries that much)."
        );
        let _ = writeln!(
            out,
            "raw TCP echo: in this process; rsmux echo: an `rsmux echo` child process."
        );
    }
    let _ = writeln!(out, "Speed ratios: MB/s, or operations per second for open+close; above 1: the first row is faster.");
    if rows.iter().any(|r| !r.rtt.is_zero()) {
        let _ = writeln!(out, "Delay proxy: in this process, RTT/2 each way, one RTT before a new connection forwards (the handshake);");
        let _ = writeln!(
            out,
            "it holds at most {} per direction and connection.",
            size(delay::LINE_CAP)
        );
    }
    let _ = writeln!(out, "MB = 10^6 bytes. Total time {total:.1} s.");
    match plot {
        Some(Ok(panels)) => {
            let _ = writeln!(
                out,
                "Plot written to {}: {}",
                ctx.args.plot.as_deref().unwrap_or(Path::new("?")).display(),
                panels
                    .iter()
                    .map(|p| format!("{} (Jain {:.3})", p.title, p.jain()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "Plot FAILED: {e}");
        }
        None => {}
    }
    out
}
