//! Helpers for the Go interoperability tests: the Go reference peer (`interop/go/src/smuxpeer`,
//! built by `interop/build.sh` against Debian's xtaci/smux v1.5.16) as a listening child or a
//! client run, the data of its `bigstream` role, and a byte-counting I/O wrapper. The shared
//! pieces (child processes, the Go build, the data pattern, time limits) are in
//! `rsmux-test-support`.
#![allow(dead_code)]

use std::{
    io,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    pin::Pin,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use rsmux_test_support::{go::peer_binary, process::Child};
#[allow(unused_imports)] // each test binary uses a different part
pub use rsmux_test_support::{
    pattern::{fnv1a64, go_pattern as pattern},
    time::within,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A running Go peer in a listening role, its output captured (see [`Child`], whose methods
/// it has). Killed when dropped.
pub struct GoPeer {
    child: Child,
    /// Where it listens (always on 127.0.0.1).
    pub addr: SocketAddr,
}

impl GoPeer {
    /// Starts `smuxpeer ROLE -listen 127.0.0.1:0 ARGS...` and waits (10 s at most) for its
    /// `listening on` line, which must be its first.
    pub async fn start(role: &str, args: &[&str]) -> GoPeer {
        let mut cmd = Command::new(peer_binary());
        cmd.arg(role).args(["-listen", "127.0.0.1:0"]).args(args);
        let mut child = Child::spawn_command(cmd);
        let Some(line) = child.next_line(Duration::from_secs(10)).await else {
            let running = child.is_running();
            panic!(
                "{}: no `listening on` line within 10 s (running: {running})",
                child.desc()
            );
        };
        let addr: SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", child.desc()));
        assert!(
            addr.ip().is_loopback(),
            "{} listens on {addr}",
            child.desc()
        );
        GoPeer { child, addr }
    }
}

impl Deref for GoPeer {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for GoPeer {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
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
    let bin = peer_binary();
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
