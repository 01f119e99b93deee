//! Running the rows: a server process per row and phase, one run of each workload per
//! repetition, the server's CPU time around each run.

use std::{
    future::Future,
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    args::{
        BenchArgs, ECHO_STREAMS, GRACE, MANY_ROUND, MANY_STREAMS, MIN_RTTS_PER_WORKLOAD, ONE_ROUND,
    },
    delay::{self, DelayProxy},
    peers::{self, Peer},
    procfs,
    rows::{rtt_suffix, Figure, Phase, Row, Sample, Side, Target, Workload},
    server,
    workload::{self, Opener},
};
use crate::common::SmuxOpts;

/// Everything a run needs: the flags, the programs, the progress bar and the probes.
pub struct Ctx {
    pub args: BenchArgs,
    /// Duration of a timed workload on direct loopback.
    pub dur: Duration,
    /// This program (servers are its subcommands).
    pub exe: PathBuf,
    /// The Go peer, or why there is none.
    pub go: std::result::Result<PathBuf, String>,
    /// The hashicorp/yamux the Go peer has, or why it has none.
    pub yamux: std::result::Result<String, String>,
    /// Hidden unless both outputs are terminals.
    pub progress: ProgressBar,
    /// Per `--rtt` value other than 0: a 1-byte round trip through the proxy, as measured.
    pub probes: Vec<(Duration, std::result::Result<Duration, String>)>,
}

impl Ctx {
    /// Shows what runs now (and logs it at debug level).
    pub fn step(&self, msg: String) {
        tracing::debug!("bench: {msg}");
        self.progress.set_message(msg);
    }

    /// One step done.
    pub fn done(&self) {
        self.progress.inc(1);
    }

    /// Duration of a timed workload at a round-trip time: `--seconds`, or the default but at
    /// least [`MIN_RTTS_PER_WORKLOAD`] round trips (window growth takes a few).
    pub fn dur(&self, rtt: Duration) -> Duration {
        self.args
            .seconds
            .unwrap_or_else(|| self.dur.max(rtt * MIN_RTTS_PER_WORKLOAD))
    }

    /// How long a workload of `row` may take before it counts as hung: its duration, plus
    /// [`GRACE`], plus at a round-trip time what finishing a last 16 MiB request at one
    /// `--streambuf` window per round trip takes (twice over).
    pub fn limit(&self, row: &Row) -> Duration {
        let windows = (ONE_ROUND / self.args.smux.streambuf.max(1) as u64).max(1);
        let finish = row
            .rtt
            .checked_mul(u32::try_from(windows * 2).unwrap_or(u32::MAX))
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600));
        self.dur(row.rtt) + GRACE + finish
    }

    /// The smux flags of a row: the command line's, with auto-tuning off for the fixed row.
    pub fn smux(&self, row: &Row) -> SmuxOpts {
        let mut s = self.args.smux.clone();
        s.fixed_streambuf |= row.fixed_window;
        s
    }

    /// Whether the rsmux ends of a v2 row auto-tune their window (None: no such end).
    pub fn auto_tune(&self, row: &Row) -> Option<bool> {
        (row.version == Some(2) && row.has_rsmux_end()).then(|| !self.smux(row).fixed_streambuf)
    }
}

/// A progress bar on stderr when both outputs are terminals, else a hidden one.
pub fn progress_bar(steps: u64) -> ProgressBar {
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

/// A 1-byte round trip through a delay proxy of `rtt` to an echo in this process.
pub async fn probe_rtt(rtt: Duration) -> std::result::Result<Duration, String> {
    let echo = TcpEcho::start().await.map_err(|e| e.to_string())?;
    let proxy = DelayProxy::start(echo.addr, rtt)
        .await
        .map_err(|e| e.to_string())?;
    bounded(delay::probe_rtt(proxy.addr(), 5), rtt * 10 + GRACE).await
}

/// Runs a future with a time limit, flattening errors to text.
pub async fn bounded<T, E: std::fmt::Display>(
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
pub async fn start_server(
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
                server: Side::Go, ..
            },
            _,
        ) if row.yamux => {
            let a = strings(&["yamux-bench-server", "-listen", "127.0.0.1:0", "-quiet"]);
            return Peer::start(go()?, &a).await.map(Some);
        }
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

/// Runs every workload of a row once, as repetition `rep` (counted from 0), starting the
/// server process of each phase and stopping it after. Failures go to the row's errors
/// (prefixed with the run number when there are several).
pub async fn run_row(ctx: &Ctx, row: &mut Row, rep: usize, tcp_echo: Option<SocketAddr>) {
    let workloads = row.workloads();
    let run = if ctx.args.repeat > 1 {
        format!("run {}: ", rep + 1)
    } else {
        String::new()
    };
    for phase in [Phase::Bench, Phase::Echo] {
        let ws: Vec<Workload> = workloads
            .iter()
            .copied()
            .filter(|w| row.phase(*w) == phase)
            .collect();
        if ws.is_empty() {
            continue;
        }
        ctx.step(format!(
            "{run}{}{}: starting",
            row.name,
            rtt_suffix(row.rtt)
        ));
        let skip = |row: &mut Row, e: String| {
            row.errors.push(format!("{run}{e}"));
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
                "{run}{}{}: {}",
                row.name,
                rtt_suffix(row.rtt),
                w.label()
            ));
            let pid = server.as_ref().and_then(Peer::pid);
            let cpu_before = pid.and_then(procfs::cpu_time);
            let res = match row.client_side() {
                Side::Go => peers::go_client_workload(ctx, row, addr, w)
                    .await
                    .map(|r| (r.figure, r.cpu)),
                Side::Rust => rust_workload(ctx, row, addr, w).await.map(|f| (f, None)),
            };
            let cpu_after = pid.and_then(procfs::cpu_time);
            let server_cpu = cpu_before
                .zip(cpu_after)
                .map(|(a, b)| b.saturating_sub(a).as_secs_f64());
            match res {
                Ok((figure, client_cpu)) => row.record(
                    rep,
                    w,
                    Sample {
                        figure,
                        server_cpu,
                        client_cpu,
                    },
                ),
                Err(e) => {
                    let hint = server
                        .as_ref()
                        .map(Peer::last_error)
                        .filter(|l| !l.is_empty())
                        .map(|l| format!(" (server said: {l})"))
                        .unwrap_or_default();
                    row.errors.push(format!("{run}{}: {e}{hint}", w.label()));
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
/// The first address a `host:port` resolves to.
pub async fn resolve(addr: &str) -> std::result::Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))
}

/// One run of a workload with this process as the client.
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

/// A raw TCP echo server in this process (reference row of `--connect`).
pub struct TcpEcho {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpEcho {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<TcpEcho> {
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
