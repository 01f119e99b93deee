//! The scale workload (`--scale-sessions N --scale-streams M`): this process opens N smux
//! sessions of M streams each to one echo server process (`rsmux echo`, then Go's echo), then
//! runs 1 KiB echo rounds on every stream at once. Reported per server: rounds per second,
//! and the server process's resident memory with every stream open and idle, while busy,
//! and at its peak; and rsmux's rounds per second over Go's, run by run.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use rsmux::{Config, Session};
use serde::Serialize;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
    sync::Semaphore,
    task::JoinSet,
};

use super::{
    args::{ScaleClient, GRACE},
    peers::Peer,
    procfs,
    runner::{bounded, Ctx},
    stats::{r1, r2, r3, Stat},
};

/// Bytes per echo round.
pub const MESSAGE: usize = 1024;
/// Sessions being set up at once.
const CONNECTING: usize = 64;
/// File descriptors kept free for everything else of a process.
const FD_SPARE: u64 = 200;

/// The scale workload's results.
#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub sessions: u32,
    pub streams_per_session: u32,
    pub seconds: f64,
    pub message_bytes: usize,
    pub version: u8,
    /// `"rsmux"` (sessions of this process) or `"go"` (the Go peer's scale-client).
    pub client: &'static str,
    /// This process's open-files limit after raising it (children inherit it).
    pub fd_limit: Option<u64>,
    pub servers: Vec<ScaleServer>,
    /// Rounds per second of `rsmux echo` over Go's echo, computed within each run (the two
    /// servers ran one after the other), min/median/max.
    pub rounds_ratio_rsmux_to_go: Stat,
}

/// One echo server's figures, over the repetitions.
#[derive(Debug, Serialize)]
pub struct ScaleServer {
    pub id: &'static str,
    pub name: &'static str,
    pub skipped: Option<String>,
    pub errors: Vec<String>,
    /// Echo rounds (1 KiB there and back) per second, all streams together.
    pub rounds_per_s: Stat,
    /// Seconds to open every session and stream (each carrying one round).
    pub setup_seconds: Stat,
    /// Server `VmRSS` with every stream open and idle.
    pub rss_idle_bytes: Stat,
    /// Highest server `VmRSS` sampled during the rounds.
    pub rss_busy_bytes: Stat,
    /// Server `VmHWM` at the end, or a `VmRSS` sample if larger (the kernel updates the
    /// high-water mark lazily, so a sample can exceed it by a few pages).
    pub rss_peak_bytes: Stat,
    /// Server CPU seconds (user + system) during the rounds.
    pub server_cpu_seconds: Stat,
    /// The Go scale-client's CPU seconds during the rounds (its own getrusage); null with an
    /// rsmux client (this process, which does other work too).
    pub client_cpu_seconds: Stat,
    /// Server and client CPU microseconds per round, together (null without the client's).
    pub cpu_us_per_round: Stat,
}

/// One run against one server.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    rounds_per_s: f64,
    setup: f64,
    idle: Option<u64>,
    busy: Option<u64>,
    peak: Option<u64>,
    cpu: Option<f64>,
    /// The Go client's CPU seconds during the rounds.
    client_cpu: Option<f64>,
    /// Seconds the rounds ran.
    secs: f64,
}

/// The peak resident memory: `VmHWM`, or the largest `VmRSS` seen if larger.
fn peak_of(hwm: Option<u64>, idle: Option<u64>, busy: Option<u64>) -> Option<u64> {
    [hwm, idle, busy].into_iter().flatten().max()
}

/// The servers compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Rsmux,
    Go,
}

/// Runs the scale workload `--repeat` times against each server, alternating.
pub async fn run(ctx: &Ctx, fd_limit: Option<u64>) -> ScaleReport {
    let a = &ctx.args;
    let version = if a.smux.smuxver == 1 { 1 } else { 2 };
    let servers = [Server::Rsmux, Server::Go];
    let mut runs: Vec<Vec<Option<Run>>> = vec![Vec::new(); servers.len()];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); servers.len()];
    let need = u64::from(a.scale_sessions) + FD_SPARE;
    let too_few = fd_limit
        .filter(|l| *l < need)
        .map(|l| format!("open-files limit {l} < {need} needed (raise ulimit -n)"));
    for rep in 0..a.repeat as usize {
        for (i, server) in servers.iter().enumerate() {
            ctx.step(format!(
                "scale, run {}: {} sessions x {} streams, {}",
                rep + 1,
                a.scale_sessions,
                a.scale_streams,
                name(*server)
            ));
            let go_needed = *server == Server::Go || a.scale_client == ScaleClient::Go;
            let res = match (&too_few, go_needed, &ctx.go) {
                (Some(e), _, _) => Err(e.clone()),
                (_, true, Err(e)) => Err(format!("skipped: {e}")),
                _ => run_once(ctx, *server, version).await,
            };
            match res {
                Ok(r) => runs[i].push(Some(r)),
                Err(e) => {
                    runs[i].push(None);
                    errors[i].push(format!("run {}: {e}", rep + 1));
                }
            }
            ctx.done();
        }
    }
    let rounds_ratio = Stat::new(per_run_ratio(&runs[0], &runs[1], a.repeat as usize), r3);
    let report = servers
        .iter()
        .zip(runs)
        .zip(errors)
        .map(|((server, runs), errors)| {
            let stat = |f: fn(&Run) -> Option<f64>, round: fn(f64) -> f64| {
                Stat::new(runs.iter().map(|r| r.as_ref().and_then(f)).collect(), round)
            };
            let go_needed = *server == Server::Go || a.scale_client == ScaleClient::Go;
            let skipped = match (go_needed, &ctx.go) {
                (true, Err(e)) => Some(e.clone()),
                _ => None,
            };
            ScaleServer {
                id: match server {
                    Server::Rsmux => "rsmux-echo",
                    Server::Go => "go-echo",
                },
                name: name(*server),
                errors: if skipped.is_some() {
                    Vec::new()
                } else {
                    errors
                },
                skipped,
                rounds_per_s: stat(|r| Some(r.rounds_per_s), r1),
                setup_seconds: stat(|r| Some(r.setup), r3),
                rss_idle_bytes: stat(|r| r.idle.map(|b| b as f64), |x| x),
                rss_busy_bytes: stat(|r| r.busy.map(|b| b as f64), |x| x),
                rss_peak_bytes: stat(|r| r.peak.map(|b| b as f64), |x| x),
                server_cpu_seconds: stat(|r| r.cpu, r3),
                client_cpu_seconds: stat(|r| r.client_cpu, r3),
                cpu_us_per_round: stat(
                    |r| {
                        let rounds = r.rounds_per_s * r.secs;
                        let both = r.cpu? + r.client_cpu?;
                        (rounds > 0.0).then(|| both * 1e6 / rounds)
                    },
                    r2,
                ),
            }
        })
        .collect();
    ScaleReport {
        sessions: a.scale_sessions,
        streams_per_session: a.scale_streams,
        seconds: a.scale_dur().as_secs_f64(),
        message_bytes: MESSAGE,
        version,
        client: match a.scale_client {
            ScaleClient::Rsmux => "rsmux",
            ScaleClient::Go => "go",
        },
        fd_limit,
        servers: report,
        rounds_ratio_rsmux_to_go: rounds_ratio,
    }
}

/// Rounds per second of `num` over `den`, run by run (`None` where either failed).
fn per_run_ratio(num: &[Option<Run>], den: &[Option<Run>], n: usize) -> Vec<Option<f64>> {
    (0..n)
        .map(|i| {
            let (a, b) = (
                num.get(i).copied().flatten()?,
                den.get(i).copied().flatten()?,
            );
            (b.rounds_per_s > 0.0).then(|| a.rounds_per_s / b.rounds_per_s)
        })
        .collect()
}

fn name(s: Server) -> &'static str {
    match s {
        Server::Rsmux => "rsmux echo",
        Server::Go => "Go smux echo",
    }
}

async fn start(ctx: &Ctx, server: Server, version: u8) -> Result<Peer, String> {
    let s = &ctx.args.smux;
    match server {
        Server::Rsmux => {
            let mut a: Vec<String> = vec!["echo".into(), "--listen".into(), "127.0.0.1:0".into()];
            a.extend(s.cli_flags(version));
            Peer::start(&ctx.exe, &a).await
        }
        Server::Go => {
            let go: &Path = ctx.go.as_ref().map_err(Clone::clone)?;
            let mut a: Vec<String> = ["echo", "-listen", "127.0.0.1:0", "-quiet"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            a.extend(s.go_flags(version));
            Peer::start(go, &a).await
        }
    }
}

/// One echo round on a stream.
async fn round(s: &mut rsmux::Stream, buf: &mut [u8; MESSAGE]) -> std::io::Result<()> {
    s.write_all(&[0x5a; MESSAGE]).await?;
    s.read_exact(buf).await?;
    Ok(())
}

/// A session with its streams open, each having carried one round.
async fn open_session(
    addr: std::net::SocketAddr,
    config: Config,
    streams: u32,
) -> std::io::Result<(Session, Vec<rsmux::Stream>)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let session = Session::client(tcp, config)?;
    let mut v = Vec::with_capacity(streams as usize);
    let mut buf = [0u8; MESSAGE];
    for _ in 0..streams {
        let mut s = session.open_stream().await.map_err(std::io::Error::other)?;
        round(&mut s, &mut buf).await?;
        v.push(s);
    }
    Ok((session, v))
}

async fn run_once(ctx: &Ctx, server: Server, version: u8) -> Result<Run, String> {
    let config = ctx.args.smux.config_with_version(version)?;
    let peer = start(ctx, server, version).await?;
    let pid = peer.pid().ok_or("the server exited")?;
    let res = match ctx.args.scale_client {
        ScaleClient::Rsmux => drive(ctx, peer.addr, pid, config).await,
        ScaleClient::Go => drive_go(ctx, peer.addr, pid, version).await,
    };
    let res = res.map_err(|e| match peer.last_error() {
        l if l.is_empty() => e,
        l => format!("{e} (server said: {l})"),
    });
    peer.stop().await;
    res
}

async fn drive(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    pid: u32,
    config: Config,
) -> Result<Run, String> {
    let a = &ctx.args;
    let dur = a.scale_dur();
    // Set up every session, a few at a time.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut set = JoinSet::new();
    for _ in 0..a.scale_sessions {
        let (gate, config) = (gate.clone(), config.clone());
        let streams = a.scale_streams;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            open_session(addr, config, streams).await
        });
    }
    let setup_limit = GRACE + Duration::from_millis(u64::from(a.scale_sessions));
    let opened = bounded(
        async {
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                all.push(r.map_err(std::io::Error::other)??);
            }
            Ok::<_, std::io::Error>(all)
        },
        setup_limit,
    )
    .await
    .map_err(|e| format!("opening sessions: {e}"))?;
    let setup = started.elapsed().as_secs_f64();
    let idle = procfs::rss(pid).map(|r| r.now);

    // Echo rounds on every stream at once.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut sessions = Vec::with_capacity(opened.len());
    let mut tasks = JoinSet::new();
    let cpu_before = procfs::cpu_time(pid);
    let t0 = Instant::now();
    for (session, streams) in opened {
        sessions.push(session);
        for mut s in streams {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            tasks.spawn(async move {
                let mut buf = [0u8; MESSAGE];
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    round(&mut s, &mut buf).await?;
                    n += 1;
                }
                rounds.fetch_add(n, Relaxed);
                Ok::<_, std::io::Error>(())
            });
        }
    }
    let (busy, ()) = sample_rss(pid, tokio::time::sleep(dur)).await;
    stop.store(true, Relaxed);
    let joined = bounded(
        async {
            while let Some(r) = tasks.join_next().await {
                r.map_err(std::io::Error::other)??;
            }
            Ok::<_, std::io::Error>(())
        },
        GRACE,
    )
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu_after = procfs::cpu_time(pid);
    let peak = procfs::rss(pid).map(|r| r.peak);
    joined.map_err(|e| format!("echo rounds: {e}"))?;
    // The server is killed next; the sessions just go.
    drop(sessions);
    Ok(Run {
        rounds_per_s: rounds.load(Relaxed) as f64 / secs,
        secs,
        client_cpu: None,
        setup,
        idle,
        busy,
        peak: peak_of(peak, idle, busy),
        cpu: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
    })
}

/// The largest `VmRSS` of a process sampled every 200 ms while `f` runs, and `f`'s result.
async fn sample_rss<T>(pid: u32, f: impl std::future::Future<Output = T>) -> (Option<u64>, T) {
    let mut busy = None::<u64>;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return (busy, out),
            _ = tick.tick() => {
                if let Some(r) = procfs::rss(pid) {
                    busy = Some(busy.map_or(r.now, |b| b.max(r.now)));
                }
            }
        }
    }
}

/// The scale workload with the Go peer's `scale-client` as the client: it sets up every
/// session, says `ready`, waits for a line on stdin, runs the rounds and prints a JSON line.
async fn drive_go(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    pid: u32,
    version: u8,
) -> Result<Run, String> {
    let a = &ctx.args;
    let go = ctx.go.as_ref().map_err(Clone::clone)?;
    let mut args: Vec<String> = vec![
        "scale-client".into(),
        "-connect".into(),
        addr.to_string(),
        "-sessions".into(),
        a.scale_sessions.to_string(),
        "-streams".into(),
        a.scale_streams.to_string(),
        "-seconds".into(),
        crate::common::secs(a.scale_dur()),
        "-size".into(),
        MESSAGE.to_string(),
        "-quiet".into(),
    ];
    args.extend(a.smux.go_flags(version));
    let mut child = Command::new(go)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", go.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let fail = |what: String| async move {
        let mut err = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err)).await;
        format!("{what}: {}", super::peers::last_line(&err))
    };
    let setup_limit = GRACE + Duration::from_millis(u64::from(a.scale_sessions));
    let ready = tokio::time::timeout(setup_limit, lines.next_line()).await;
    let setup: f64 = match ready {
        Ok(Ok(Some(l))) if l.starts_with("ready ") => l[6..].trim().parse().unwrap_or(f64::NAN),
        Ok(_) => return Err(fail("Go scale-client: no ready line".into()).await),
        Err(_) => {
            return Err(format!(
                "Go scale-client: setup timed out after {setup_limit:?}"
            ))
        }
    };
    let idle = procfs::rss(pid).map(|r| r.now);
    let cpu_before = procfs::cpu_time(pid);
    stdin
        .write_all(b"go\n")
        .await
        .map_err(|e| format!("Go scale-client stdin: {e}"))?;
    let (busy, line) = sample_rss(
        pid,
        tokio::time::timeout(a.scale_dur() + GRACE, lines.next_line()),
    )
    .await;
    let cpu_after = procfs::cpu_time(pid);
    let peak = procfs::rss(pid).map(|r| r.peak);
    let line = match line {
        Ok(Ok(Some(l))) => l,
        Ok(_) => return Err(fail("Go scale-client: no result".into()).await),
        Err(_) => return Err("Go scale-client: rounds timed out".into()),
    };
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("Go scale-client JSON: {e}"))?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let rounds = f("rounds").ok_or("Go scale-client JSON lacks 'rounds'")?;
    let secs = f("seconds").ok_or("Go scale-client JSON lacks 'seconds'")?;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(Run {
        rounds_per_s: rounds / secs,
        secs,
        client_cpu: f("cpu_s").filter(|c| *c >= 0.0),
        setup,
        idle,
        busy,
        peak: peak_of(peak, idle, busy),
        cpu: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rounds_per_s: f64) -> Option<Run> {
        Some(Run {
            rounds_per_s,
            ..Run::default()
        })
    }

    #[test]
    fn the_ratio_pairs_the_servers_run_by_run() {
        let rsmux = [run(300.0), None, run(100.0)];
        let go = [run(100.0), run(50.0), run(200.0)];
        assert_eq!(
            per_run_ratio(&rsmux, &go, 3),
            vec![Some(3.0), None, Some(0.5)]
        );
        // A run that never happened (fewer entries than runs) has no ratio either.
        assert_eq!(per_run_ratio(&rsmux[..1], &go, 2), vec![Some(3.0), None]);
    }
}
