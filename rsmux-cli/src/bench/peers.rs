//! Child processes of the benchmark: `rsmux __bench-server`, `rsmux echo`, and the Go peer
//! (`interop/go/bin/smuxpeer`), and the workloads its bench-client runs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader},
    process::{Child, Command},
};

use super::{
    args::{ECHO_STREAMS, MANY_STREAMS},
    rows::{Figure, Row, Workload},
    runner::Ctx,
    workload::{Ops, Rate},
};
use crate::common;

/// A child process that is killed when dropped. Its stderr is kept (the last few KiB) for
/// error messages.
pub struct Peer {
    child: Child,
    stderr: Arc<Mutex<String>>,
    pub addr: SocketAddr,
}

const STDERR_KEEP: usize = 4096;

fn keep_tail(stderr: Option<impl AsyncRead + Unpin + Send + 'static>) -> Arc<Mutex<String>> {
    let tail = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = stderr {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
                if t.len() > STDERR_KEEP {
                    let mut cut = t.len() - STDERR_KEEP;
                    while !t.is_char_boundary(cut) {
                        cut += 1;
                    }
                    t.drain(..cut);
                }
            }
        });
    }
    tail
}

/// The last non-empty line of a text, for one-line error messages.
pub fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

impl Peer {
    /// Starts a server and waits for its `listening on ADDR` line.
    pub async fn start(program: &Path, args: &[String]) -> Result<Peer, String> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stderr = keep_tail(child.stderr.take());
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = line.trim().strip_prefix("listening on ") {
                    return a.parse::<SocketAddr>().ok();
                }
            }
            None
        };
        let addr = tokio::time::timeout(Duration::from_secs(10), wait).await;
        match addr {
            Ok(Some(addr)) => {
                // Keep draining stdout so the child never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(Peer {
                    child,
                    stderr,
                    addr,
                })
            }
            _ => {
                let _ = child.start_kill();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                Err(format!(
                    "{name} {} did not report 'listening on': {}",
                    args.first().map(String::as_str).unwrap_or(""),
                    last_line(&err)
                ))
            }
        }
    }

    /// The child's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last line the child wrote on stderr.
    pub fn last_error(&self) -> String {
        last_line(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Kills the child and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }
}

/// Runs a program to completion with a time limit; returns its stdout, or an error with the
/// last line of its stderr.
pub async fn run_to_end(
    program: &Path,
    args: &[String],
    limit: Duration,
) -> Result<String, String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => Err(format!("{} timed out after {limit:?}", program.display())),
        Ok(Err(e)) => Err(format!("{}: {e}", program.display())),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            last_line(&String::from_utf8_lossy(&out.stderr))
        )),
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}

/// Where the Go peer is, or why there is none.
pub async fn find_go_peer(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let Some(root) = workspace_root() else {
        return Err(
            "Go peer not found: no interop/ directory above the current directory \
             (use --go-peer PATH)"
                .into(),
        );
    };
    let bin = root.join("interop/go/bin/smuxpeer");
    if bin.is_file() {
        return Ok(bin);
    }
    let script = root.join("interop/build.sh");
    if !script.is_file() {
        return Err(format!(
            "Go peer not found: {} is missing and so is {}",
            bin.display(),
            script.display()
        ));
    }
    if !in_path("go") {
        return Err(format!(
            "Go peer not built ({} is missing) and `go` is not installed \
             (apt-get install golang-go golang-github-xtaci-smux-dev, then interop/build.sh)",
            bin.display()
        ));
    }
    run_to_end(&script, &[], Duration::from_secs(300))
        .await
        .map_err(|e| format!("building the Go peer failed: {e}"))?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "interop/build.sh succeeded but {} is missing",
            bin.display()
        ))
    }
}

/// The directory with `interop/`: searched upward from the current directory, then the
/// workspace this binary was built from.
fn workspace_root() -> Option<PathBuf> {
    let has_interop = |d: &Path| {
        d.join("interop/build.sh").is_file() || d.join("interop/go/bin/smuxpeer").is_file()
    };
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().find(|d| has_interop(d)) {
            return Some(d.to_path_buf());
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    has_interop(built).then(|| built.to_path_buf())
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Which hashicorp/yamux the Go peer was built with (its `features` role), or why it has
/// none.
pub async fn go_yamux(go: &Path) -> Result<String, String> {
    let out = run_to_end(go, &["features".to_string()], Duration::from_secs(10))
        .await
        .map_err(|e| {
            format!("the Go peer cannot say whether it has yamux (an old build? run interop/build.sh --force): {e}")
        })?;
    let v: Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("the Go peer's 'features' printed no JSON: {e}"))?;
    match v.get("yamux").and_then(Value::as_str) {
        Some(lib) => Ok(lib.to_string()),
        None => Err(
            "the Go peer was built without hashicorp/yamux (install golang-github-hashicorp-yamux-dev, \
             then interop/build.sh --force)"
                .into(),
        ),
    }
}

/// What a run of the Go peer's bench-client measured: the figure and its own CPU seconds.
pub struct GoRun {
    pub figure: Figure,
    /// The client process's user + system CPU seconds (`cpu_s`), if it said.
    pub cpu: Option<f64>,
}

/// Runs the Go peer's `bench-client` for one workload and reads its JSON line: one way and
/// open/close against a bench server (smux, or yamux for the yamux row), echo (`-mode echo`,
/// 1 or [`ECHO_STREAMS`] streams of one session) straight against an echo server.
pub async fn go_client_workload(
    ctx: &Ctx,
    row: &Row,
    addr: SocketAddr,
    w: Workload,
) -> std::result::Result<GoRun, String> {
    let go = ctx.go.as_ref().map_err(Clone::clone)?;
    let (mode, streams) = match w {
        Workload::One => ("one", None),
        Workload::Many => ("many", Some(MANY_STREAMS)),
        Workload::OpenClose => ("openclose", None),
        Workload::EchoOne => ("echo", Some(1)),
        Workload::EchoMany => ("echo", Some(ECHO_STREAMS)),
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
    if let Some(n) = streams {
        a.extend(["-streams".to_string(), n.to_string()]);
    }
    if row.yamux {
        a.extend(["-mux".to_string(), "yamux".to_string()]);
    } else {
        a.extend(ctx.smux(row).go_flags(row.version.unwrap_or(1)));
    }
    let out = run_to_end(go, &a, ctx.limit(row)).await?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("Go bench-client printed no JSON: {}", last_line(&out)))?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("Go bench-client JSON: {e}"))?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let secs = f("seconds").ok_or("Go bench-client JSON lacks 'seconds'")?;
    let figure = match w {
        Workload::OpenClose => Figure::Ops(Ops {
            ops: f("ops").ok_or("Go bench-client JSON lacks 'ops'")? as u64,
            secs,
        }),
        _ => Figure::Rate(Rate {
            bytes: f("bytes").ok_or("Go bench-client JSON lacks 'bytes'")? as u64,
            secs,
        }),
    };
    Ok(GoRun {
        figure,
        cpu: f("cpu_s").filter(|c| *c >= 0.0),
    })
}
