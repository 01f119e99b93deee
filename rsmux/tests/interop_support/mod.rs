//! Helpers for the Go interoperability tests: building and running the Go reference peer
//! (`interop/go/src/smuxpeer`, built by `interop/build.sh` against Debian's xtaci/smux
//! v1.5.16), the shared deterministic data pattern, and a byte-counting I/O wrapper.
#![allow(dead_code)]

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::mpsc,
};

/// Root of the workspace (parent of the `rsmux` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rsmux crate has a parent directory")
        .to_path_buf()
}

/// Builds the Go peer once per test process (nextest runs every test in its own process, so
/// `interop/build.sh` is a quick, flock-protected no-op when the binary is up to date).
/// Panics with the build output if the build fails: these tests never skip.
pub fn go_peer_binary() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = BIN.get_or_init(|| {
        let script = workspace_root().join("interop").join("build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                script.display(),
                out.status
            ));
        }
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        if !path.is_file() {
            return Err(format!(
                "{} did not produce a binary (stdout: {stdout:?}, stderr: {stderr:?})",
                script.display()
            ));
        }
        Ok(path)
    });
    match res {
        Ok(p) => p,
        Err(msg) => panic!("building the Go smux peer failed — interop tests cannot run:\n{msg}"),
    }
}

/// A running Go peer in a listening role. Killed when dropped.
pub struct GoPeer {
    child: Child,
    /// Where it listens (always on 127.0.0.1).
    pub addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    desc: String,
}

impl GoPeer {
    /// Starts `smuxpeer ROLE -listen 127.0.0.1:0 ARGS...` and waits (10 s at most) for its
    /// `listening on` line.
    pub async fn start(role: &str, args: &[&str]) -> GoPeer {
        let bin = go_peer_binary();
        let desc = format!("smuxpeer {role} {}", args.join(" "));
        let mut child = Command::new(bin)
            .arg(role)
            .args(["-listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer_child = Some(child);
        let first = tokio::time::timeout(Duration::from_secs(10), lines.recv()).await;
        let line = match first {
            Ok(Some(l)) => l,
            other => {
                let mut c = peer_child.take().unwrap();
                let _ = c.kill();
                let status = c.wait();
                panic!("{desc}: no `listening on` line within 10 s ({other:?}, exit: {status:?})");
            }
        };
        let addr: SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("{desc}: unexpected first line {line:?}"));
        assert!(addr.ip().is_loopback(), "{desc} listens on {addr}");
        GoPeer {
            child: peer_child.take().unwrap(),
            addr,
            lines,
            desc,
        }
    }

    /// Next stdout line, waiting at most `wait`.
    pub async fn next_line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits (at most `wait`) for a stdout line starting with `prefix`; earlier lines are
    /// skipped. Panics on timeout.
    pub async fn expect_line(&mut self, prefix: &str, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) if l.starts_with(prefix) => return l,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{}: exited before printing {prefix:?}", self.desc),
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?} within {wait:?}",
                    self.desc
                ),
            }
        }
    }

    /// Stdout lines printed so far (does not wait).
    pub fn lines_so_far(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            v.push(l);
        }
        v
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Result of a Go client run.
#[derive(Debug)]
pub struct GoRun {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
}

/// Runs `smuxpeer client ARGS...` to completion (killed after `wait`; that is a failure).
pub async fn run_go(args: &[&str], wait: Duration) -> GoRun {
    let bin = go_peer_binary();
    let desc = format!("smuxpeer {}", args.join(" "));
    let child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    match tokio::time::timeout(wait, child.wait_with_output()).await {
        Ok(Ok(out)) => GoRun {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        },
        Ok(Err(e)) => panic!("{desc}: waiting: {e}"),
        Err(_) => panic!("{desc}: still running after {wait:?} (killed)"),
    }
}

/// Awaits `fut`, panicking with `what` if it takes longer than `wait`.
pub async fn within<F: Future>(wait: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(wait, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {wait:?}: {what}"),
    }
}

/// The deterministic test pattern shared with the Go peer (`pattern` in main.go): an
/// xorshift32 sequence seeded from `seed`, each state emitted little-endian.
pub fn pattern(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) ^ 0x6d2b_79f5;
    if x == 0 {
        x = 1;
    }
    let mut v = Vec::with_capacity(n + 4);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// 64-bit FNV-1a, as computed by the Go `slowreader` role.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for &c in data {
        h ^= u64::from(c);
        h = h.wrapping_mul(1_099_511_628_211);
    }
    h
}

/// Byte counters of a [`Counting`] wrapper.
#[derive(Clone, Default, Debug)]
pub struct Counters {
    /// Bytes read from the wrapped connection (i.e. received from the peer).
    pub read: Arc<AtomicU64>,
    /// Bytes written to the wrapped connection (i.e. sent to the peer).
    pub written: Arc<AtomicU64>,
}

impl Counters {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::SeqCst)
    }
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

/// Wraps a connection and counts the bytes going through it (to observe the wire).
pub struct Counting<T> {
    inner: T,
    counters: Counters,
}

impl<T> Counting<T> {
    pub fn new(inner: T) -> (Self, Counters) {
        let counters = Counters::default();
        (
            Counting {
                inner,
                counters: counters.clone(),
            },
            counters,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = (buf.filled().len() - before) as u64;
            this.counters.read.fetch_add(n, Ordering::SeqCst);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.counters.written.fetch_add(n as u64, Ordering::SeqCst);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.counters.written.fetch_add(n as u64, Ordering::SeqCst);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Period of the data of the Go `bigstream` role (`periodLen` in bigstream.go): a prime, so
/// no read, write, frame or window size lines up with it.
pub const BIG_PERIOD: usize = 1_000_003;

/// The Go `bigstream` role's data for stream `seed`: `pattern(seed, BIG_PERIOD)` repeated up
/// to `BIG_PERIOD + extra` bytes, so that the bytes at stream offset `o`, up to `extra` of
/// them, are `table[o % BIG_PERIOD..]` (a memcmp checks them).
pub fn periodic_table(seed: u32, extra: usize) -> Vec<u8> {
    let one = pattern(seed, BIG_PERIOD);
    let len = BIG_PERIOD + extra;
    let mut table = Vec::with_capacity(len);
    while table.len() < len {
        let n = (len - table.len()).min(BIG_PERIOD);
        table.extend_from_slice(&one[..n]);
    }
    table
}
