//! `rsmux bench`: raw TCP, rsmux v1 and v2, and Go smux side by side on loopback.

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
    memory::Memory,
    peers::Peer,
    plot::Panel,
    workload::{Opener, Ops, Rate},
};
use crate::common::{self, Failure, Result, SmuxOpts};

pub const EXAMPLES: &str = "\
Examples:
  rsmux bench                                  full comparison (about half a minute)
  rsmux bench --quick                          the same in under 15 s
  rsmux bench --quick --json > bench.json      one JSON object with every figure
  rsmux bench --plot fairness.svg              also draw per-stream throughput over time
  rsmux bench --connect 127.0.0.1:7000 --smuxver 2
                                               drive an external smux echo server

Rows (local comparison; every client talks to a server process over loopback TCP):
  raw TCP         one TCP connection per stream (this process <-> rsmux server process)
  rsmux v1/v2     this process <-> `rsmux __bench-server` child, one smux session
  Go smux v1/v2   Go client <-> Go server (interop/go/bin/smuxpeer, xtaci/smux)
  without --quick also the mixed pairs: rsmux client <-> Go server, Go client <-> rsmux server
Workloads:
  1 stream        one stream, one way (client to server), 128 KiB writes and 128 KiB reads
  100 streams     100 streams at once, same, aggregate
  open/close      open a stream, write 1 byte, read the 1-byte answer, close; repeated
  idle stream     heap bytes per idle open stream, client + server sessions together,
                  10,000 streams (rsmux only; counted by this binary's allocator)
MB = 10^6 bytes. With --connect the stream workloads use an echo design instead: each
stream writes 128 KiB chunks while reading the echo, half-closes once everything came back
and expects EOF; the figure is bytes echoed per second (each direction carries that much).
Rows then: raw TCP echo (in this process), `rsmux echo` (child process), the server given.";

/// Arguments of `rsmux bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object with every figure instead of the table
    #[arg(long)]
    pub json: bool,
    /// Short run, under 15 s: 0.3 s per workload, no mixed Rust/Go rows
    #[arg(long)]
    pub quick: bool,
    /// Seconds per timed workload [default: 1, or 0.3 with --quick]
    #[arg(long, value_name = "SECS", value_parser = common::parse_secs)]
    pub seconds: Option<Duration>,
    /// Also write an SVG of per-stream throughput over time, several streams sharing one
    /// session (the fairness picture)
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

impl BenchArgs {
    /// Usage checks done before anything runs (exit 2 on failure).
    pub fn check(&self) -> std::result::Result<(), String> {
        self.smux.config()?;
        if self.seconds.is_some_and(|s| s.is_zero()) {
            return Err("--seconds 0: must be more than zero".into());
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
}

/// Idle streams in the memory workload.
const IDLE_STREAMS: usize = 10_000;
/// Streams in the "many" workload.
const MANY_STREAMS: usize = 100;
/// Bytes per `S` request: one stream, and each of the many streams (as the Go peer).
const ONE_ROUND: u64 = 16 << 20;
const MANY_ROUND: u64 = 1 << 20;
/// Extra time a workload may take beyond its duration before it counts as hung.
const GRACE: Duration = Duration::from_secs(30);

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
    /// The benchmark protocol, against a server process of this kind.
    Bench { client: Side, server: Side },
    /// The echo design, against an in-process raw TCP echo.
    TcpEcho,
    /// The echo design, against a `rsmux echo` child process.
    LocalEcho,
    /// The echo design, against an external server.
    Remote(String),
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    id: String,
    name: String,
    /// `None` for raw TCP.
    version: Option<u8>,
    target: Target,
    skipped: Option<String>,
    one: Option<Rate>,
    many: Option<Rate>,
    open_close: Option<Ops>,
    idle: Option<Memory>,
    errors: Vec<String>,
}

impl Row {
    fn new(id: &str, name: &str, version: Option<u8>, target: Target) -> Row {
        Row {
            id: id.into(),
            name: name.into(),
            version,
            target,
            skipped: None,
            one: None,
            many: None,
            open_close: None,
            idle: None,
            errors: Vec::new(),
        }
    }

    fn needs_go(&self) -> bool {
        matches!(self.target, Target::Bench { client, server } if client == Side::Go || server == Side::Go)
    }

    fn client(&self) -> &'static str {
        match self.target {
            Target::Bench { client, .. } => client.name(),
            _ => "rsmux",
        }
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
}

/// Everything a run needs.
struct Ctx {
    args: BenchArgs,
    dur: Duration,
    exe: PathBuf,
    go: std::result::Result<PathBuf, String>,
    progress: ProgressBar,
}

impl Ctx {
    fn step(&self, msg: String) {
        tracing::debug!("bench: {msg}");
        self.progress.set_message(msg);
    }

    fn done(&self) {
        self.progress.inc(1);
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
        .unwrap_or(Duration::from_millis(if args.quick { 300 } else { 1000 }));
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find this program's path: {e}")))?;

    let mut rows = match &args.connect {
        Some(addr) => connect_rows(addr, args.smux.smuxver),
        None => local_rows(args.quick),
    };
    let local = args.connect.is_none();
    let plot_panels = match (&args.plot, local) {
        (None, _) => 0,
        (Some(_), true) => 4,
        (Some(_), false) => 1,
    };
    let steps = rows.len() as u64 * 3 + if local { 2 } else { 0 } + plot_panels;
    let mut ctx = Ctx {
        dur,
        exe,
        go: Err(String::new()),
        progress: progress_bar(steps),
        args,
    };
    ctx.go = if !local {
        Err("not used with --connect".into())
    } else if ctx.args.no_go {
        Err("--no-go given".into())
    } else {
        ctx.step("looking for the Go peer".into());
        peers::find_go_peer(ctx.args.go_peer.as_deref()).await
    };

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
        if row.needs_go() {
            if let Err(reason) = &ctx.go {
                row.skipped = Some(reason.clone());
                ctx.progress.inc(3);
                continue;
            }
        }
        run_row(&ctx, row, tcp_echo.as_ref().map(|t| t.addr)).await;
    }
    if local {
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
            if let Some(row) = rows.iter_mut().find(|r| {
                r.version == Some(version)
                    && matches!(
                        r.target,
                        Target::Bench {
                            client: Side::Rust,
                            server: Side::Rust
                        }
                    )
            }) {
                match res {
                    Ok(m) => row.idle = Some(m),
                    Err(e) => row.errors.push(format!("idle streams: {e}")),
                }
            }
            ctx.done();
        }
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
        .flat_map(|r| r.errors.iter().map(move |e| format!("{}: {e}", r.name)))
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

fn local_rows(quick: bool) -> Vec<Row> {
    let bench = |client, server| Target::Bench { client, server };
    let mut rows = vec![
        Row::new("tcp", "raw TCP", None, bench(Side::Rust, Side::Rust)),
        Row::new(
            "rsmux-v1",
            "rsmux v1",
            Some(1),
            bench(Side::Rust, Side::Rust),
        ),
        Row::new(
            "rsmux-v2",
            "rsmux v2",
            Some(2),
            bench(Side::Rust, Side::Rust),
        ),
        Row::new("go-v1", "Go smux v1", Some(1), bench(Side::Go, Side::Go)),
        Row::new("go-v2", "Go smux v2", Some(2), bench(Side::Go, Side::Go)),
    ];
    if !quick {
        for v in [1u8, 2] {
            rows.push(Row::new(
                &format!("rsmux-to-go-v{v}"),
                &format!("rsmux→Go v{v}"),
                Some(v),
                bench(Side::Rust, Side::Go),
            ));
        }
        for v in [1u8, 2] {
            rows.push(Row::new(
                &format!("go-to-rsmux-v{v}"),
                &format!("Go→rsmux v{v}"),
                Some(v),
                bench(Side::Go, Side::Rust),
            ));
        }
    }
    rows
}

fn connect_rows(addr: &str, version: u8) -> Vec<Row> {
    vec![
        Row::new("tcp-echo", "raw TCP echo", None, Target::TcpEcho),
        Row::new(
            "local-echo",
            &format!("rsmux echo v{version}"),
            Some(version),
            Target::LocalEcho,
        ),
        Row::new(
            "remote",
            &format!("{addr} v{version}"),
            Some(version),
            Target::Remote(addr.to_string()),
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

/// A server process for a row, when it needs one.
async fn start_server(ctx: &Ctx, row: &Row) -> std::result::Result<Option<Peer>, String> {
    let version = row.version.unwrap_or(1);
    match &row.target {
        Target::Bench {
            server: Side::Rust, ..
        } => {
            let mut a: Vec<String> = vec![
                "__bench-server".into(),
                "--transport".into(),
                row.transport().into(),
            ];
            a.extend(ctx.args.smux.cli_flags(version));
            Peer::start(&ctx.exe, &a).await.map(Some)
        }
        Target::Bench {
            server: Side::Go, ..
        } => {
            let go = ctx.go.as_ref().map_err(Clone::clone)?;
            let mut a: Vec<String> = vec![
                "bench-server".into(),
                "-listen".into(),
                "127.0.0.1:0".into(),
                "-quiet".into(),
            ];
            a.extend(ctx.args.smux.go_flags(version));
            Peer::start(go, &a).await.map(Some)
        }
        Target::LocalEcho => {
            let mut a: Vec<String> = vec!["echo".into(), "--listen".into(), "127.0.0.1:0".into()];
            a.extend(ctx.args.smux.cli_flags(version));
            Peer::start(&ctx.exe, &a).await.map(Some)
        }
        Target::TcpEcho | Target::Remote(_) => Ok(None),
    }
}

async fn run_row(ctx: &Ctx, row: &mut Row, tcp_echo: Option<SocketAddr>) {
    ctx.step(format!("{}: starting", row.name));
    let server = match start_server(ctx, row).await {
        Ok(s) => s,
        Err(e) => {
            row.errors.push(format!("server: {e}"));
            ctx.progress.inc(3);
            return;
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
            row.errors.push(e);
            ctx.progress.inc(3);
            return;
        }
    };
    let echo = !matches!(row.target, Target::Bench { .. });
    let go_client = matches!(
        row.target,
        Target::Bench {
            client: Side::Go,
            ..
        }
    );

    for w in [Workload::One, Workload::Many, Workload::OpenClose] {
        ctx.step(format!("{}: {}", row.name, w.label()));
        let res = if go_client {
            go_client_workload(ctx, row, addr, w).await
        } else {
            rust_workload(ctx, row, addr, w, echo).await
        };
        match res {
            Ok(Figure::Rate(r)) if w == Workload::One => row.one = Some(r),
            Ok(Figure::Rate(r)) => row.many = Some(r),
            Ok(Figure::Ops(o)) => row.open_close = Some(o),
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
    if let Some(s) = server {
        s.stop().await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    One,
    Many,
    OpenClose,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::One => "1 stream",
            Workload::Many => "100 streams",
            Workload::OpenClose => "open/close",
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
    echo: bool,
) -> std::result::Result<Figure, String> {
    let config = match row.version {
        Some(v) => Some(ctx.args.smux.config_with_version(v)?),
        None => None,
    };
    let opener = bounded(Opener::connect(addr, config), Duration::from_secs(10)).await?;
    let limit = ctx.dur + GRACE;
    let dur = ctx.dur;
    let res = match (w, echo) {
        (Workload::One, false) => bounded(workload::upload(&opener, 1, ONE_ROUND, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::Many, false) => bounded(
            workload::upload(&opener, MANY_STREAMS, MANY_ROUND, dur),
            limit,
        )
        .await
        .map(Figure::Rate),
        (Workload::One, true) => bounded(workload::echo(&opener, 1, dur), limit)
            .await
            .map(Figure::Rate),
        (Workload::Many, true) => bounded(workload::echo(&opener, MANY_STREAMS, dur), limit)
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
        &common::secs(ctx.dur),
        "-json",
        "-quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if w == Workload::Many {
        a.extend(["-streams".to_string(), MANY_STREAMS.to_string()]);
    }
    a.extend(ctx.args.smux.go_flags(row.version.unwrap_or(1)));
    let out = peers::run_to_end(go, &a, ctx.dur + GRACE).await?;
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
                tokio::spawn(async move {
                    let (r, mut w) = tcp.into_split();
                    let mut r = tokio::io::BufReader::with_capacity(server::IO_SIZE, r);
                    if tokio::io::copy_buf(&mut r, &mut w).await.is_ok() {
                        use tokio::io::AsyncWriteExt;
                        let _ = w.shutdown().await;
                    }
                });
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
        let row = Row::new("plot", &title, Some(version), target);
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
    let server = start_server(ctx, row).await?;
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

/// Throughput of a row divided by the raw TCP row's.
fn ratio(rows: &[Row], pick: impl Fn(&Row) -> Option<Rate>, row: &Row) -> Option<f64> {
    let base = rows.iter().find(|r| r.version.is_none()).and_then(&pick)?;
    Some(pick(row)?.mb_s() / base.mb_s())
}

fn to_json(ctx: &Ctx, rows: &[Row], plot: Option<&PlotResult>, total: f64) -> Value {
    let s = &ctx.args.smux;
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "transport": r.transport(),
                "version": r.version,
                "client": r.client(),
                "server": r.server(),
                "skipped": r.skipped,
                "errors": r.errors,
                "one_stream_mb_s": r.one.map(|x| r1(x.mb_s())),
                "one_stream_ratio": ratio(rows, |r| r.one, r).map(r3),
                "one_stream_bytes": r.one.map(|x| x.bytes),
                "one_stream_seconds": r.one.map(|x| r3(x.secs)),
                "many_streams": MANY_STREAMS,
                "many_streams_mb_s": r.many.map(|x| r1(x.mb_s())),
                "many_streams_ratio": ratio(rows, |r| r.many, r).map(r3),
                "many_streams_bytes": r.many.map(|x| x.bytes),
                "many_streams_seconds": r.many.map(|x| r3(x.secs)),
                "open_close_us": r.open_close.map(|x| (x.us_per_op() * 100.0).round() / 100.0),
                "open_close_ops": r.open_close.map(|x| x.ops),
                "idle_streams": r.idle.map(|m| m.streams),
                "idle_bytes_per_stream": r.idle.map(|m| m.bytes_per_stream.round()),
            })
        })
        .collect();
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
        "mode": if ctx.args.connect.is_some() { "connect" } else { "local" },
        "connect": ctx.args.connect,
        "quick": ctx.args.quick,
        "seconds_per_workload": ctx.dur.as_secs_f64(),
        "config": {
            "smuxver": s.smuxver,
            "smuxbuf": s.smuxbuf,
            "streambuf": s.streambuf,
            "framesize": s.framesize,
            "keepalive_seconds": s.keepalive.as_secs_f64(),
            "keepalive_timeout_seconds": s.keepalive_timeout.as_secs_f64(),
        },
        "go": {
            "available": ctx.go.is_ok(),
            "peer": ctx.go.as_ref().ok(),
            "skip_reason": ctx.go.as_ref().err(),
        },
        "rows": rows_json,
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
        "rsmux bench — {}, {} s per workload{}; smuxbuf {}, streambuf {}, framesize {}, keepalive {}",
        if local { "loopback TCP".to_string() } else { format!("echo server {}", ctx.args.connect.as_deref().unwrap_or("")) },
        common::secs(ctx.dur),
        if ctx.args.quick { " (--quick)" } else { "" },
        size(s.smuxbuf),
        size(s.streambuf),
        size(s.framesize),
        keepalive,
    );
    let _ = writeln!(out);
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(8)
        .max(8)
        + 2;
    let (h1, h2) = if local {
        ("1 stream, one way", "100 streams, one way")
    } else {
        ("1 stream, echoed", "100 streams, echoed")
    };
    let _ = writeln!(
        out,
        "{:name_w$}{:>20}{:>22}{:>14}{:>14}",
        "", h1, h2, "open+close", "idle stream"
    );
    let _ = writeln!(
        out,
        "{:name_w$}{:>11}{:>9}{:>13}{:>9}{:>14}{:>14}",
        "", "MB/s", "vs TCP", "MB/s", "vs TCP", "µs/op", "bytes"
    );
    for r in rows {
        let _ = write!(out, "{:name_w$}", r.name);
        if let Some(reason) = &r.skipped {
            let _ = writeln!(out, "skipped: {reason}");
            continue;
        }
        let rate = |x: Option<Rate>| x.map_or("-".into(), |x| format!("{:.0}", x.mb_s()));
        let rat = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "{:>11}{:>9}{:>13}{:>9}{:>14}{:>14}",
            rate(r.one),
            rat(ratio(rows, |r| r.one, r)),
            rate(r.many),
            rat(ratio(rows, |r| r.many, r)),
            r.open_close
                .map_or("-".into(), |x| format!("{:.1}", x.us_per_op())),
            r.idle
                .map_or("-".into(), |m| format!("{:.0}", m.bytes_per_stream)),
        );
        for e in &r.errors {
            let _ = writeln!(out, "{:name_w$}FAILED {e}", "");
        }
    }
    let _ = writeln!(out);
    if local {
        let _ = writeln!(out, "raw TCP: a TCP connection per stream. rsmux: this process <-> an `rsmux` server process, one session.");
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
            }
            Err(e) => {
                let _ = writeln!(out, "Go smux rows skipped: {e}");
            }
        }
        let _ = writeln!(out, "One way: client to server, 128 KiB writes and reads. open+close: open, write 1 B, read 1 B, close.");
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
