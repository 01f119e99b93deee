//! Helpers shared by the CLI integration tests: child processes that are killed on drop,
//! readiness lines, time limits, the Go peer.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The `rsmux` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rsmux")
}

/// A child process killed (and reaped) when dropped; its stderr is collected.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `program args` and waits (at most 20 s) for its `listening on ADDR` line.
    pub fn start(program: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if !sent {
                    if let Some(a) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(a.to_string());
                        sent = true;
                    }
                }
            }
        });
        let mut p = Proc {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => p.addr = a.parse().expect("listening address"),
            Err(_) => panic!(
                "{program} {args:?} did not print 'listening on'; stderr: {}",
                p.stderr()
            ),
        }
        p
    }

    /// Starts `rsmux args`.
    pub fn rsmux(args: &[&str]) -> Proc {
        Proc::start(bin(), args)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (at most `limit`).
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal (unix `kill -SIG pid`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit (at most `limit`), returning its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program args` to completion, killing it after `limit`.
pub fn run(program: &str, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs `rsmux args` (limit 60 s).
pub fn rsmux(args: &[&str]) -> Output {
    run(bin(), args, Duration::from_secs(60))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Go peer, built with `interop/build.sh` (which installs Go and Debian's smux when
/// missing). Interop is tested for real: a failed build fails the test, it never skips.
pub fn go_peer() -> String {
    static PEER: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PEER.get_or_init(|| {
        let script = workspace().join("interop/build.sh");
        let out = run(script.to_str().unwrap(), &[], Duration::from_secs(600));
        if !out.status.success() {
            return Err(format!(
                "interop/build.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if Path::new(&path).is_file() {
            Ok(path)
        } else {
            Err(format!("interop/build.sh printed {path:?}, not a file"))
        }
    })
    .clone()
    .unwrap_or_else(|e| panic!("Go peer unavailable: {e}"))
}

/// Deterministic test bytes.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A multi-threaded runtime for the async parts of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fails the test if `f` takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out after {limit:?}"))
}

/// A plain TCP echo target: echoes until EOF, then half-closes.
pub async fn tcp_echo_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = tokio::io::BufReader::with_capacity(64 * 1024, r);
                if tokio::io::copy_buf(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A request-then-EOF target (like an HTTP/1.0 server or `nc -q`): reads the whole request
/// until EOF, then answers u64 LE request length followed by `pattern(len, response)` bytes,
/// and closes.
pub async fn request_eof_target(response: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                if tcp.read_to_end(&mut req).await.is_err() {
                    return;
                }
                let n = req.len() as u64;
                let _ = tcp.write_all(&n.to_le_bytes()).await;
                let _ = tcp.write_all(&pattern(n, response)).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// When [`echo_through`] shuts down writing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Right after the last byte is written, while the echo is still on its way.
    AfterWriting,
    /// Only once the whole echo was received.
    AfterEcho,
}

/// Sends `data` through `addr` while reading the echo concurrently; checks it byte for byte
/// and that EOF follows our shutdown.
pub async fn echo_through(addr: SocketAddr, data: Vec<u8>, when: Shutdown) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let len = data.len();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(50_000) {
            w.write_all(chunk).await.unwrap();
        }
        if when == Shutdown::AfterWriting {
            w.shutdown().await.unwrap();
        }
        (data, w)
    });
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).await.expect("the whole echo");
    let (data, mut w) = writer.await.unwrap();
    assert!(got == data, "tunnel corrupted the data");
    if when == Shutdown::AfterEcho {
        w.shutdown().await.unwrap();
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)
        .await
        .expect("EOF after our shutdown");
    assert!(rest.is_empty(), "{} bytes too many", rest.len());
}

/// nc-style: write a request, shut down writing, still receive the whole response of a
/// [`request_eof_target`].
pub async fn request_response(addr: SocketAddr, request_len: usize, response: usize) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = pattern(request_len as u64 + 1, request_len);
    tcp.write_all(&req).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await.unwrap();
    assert_eq!(resp.len(), 8 + response, "response length");
    let n = u64::from_le_bytes(resp[..8].try_into().unwrap());
    assert_eq!(n, request_len as u64, "the target saw the whole request");
    assert!(resp[8..] == pattern(n, response)[..], "response corrupted");
}
