//! Helpers shared by the CLI integration tests: the `rsmux` binary, local TCP targets and the
//! tunnel checks; child processes, the Go peer, data patterns and time limits come from
//! `rsmux-test-support`.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    ops::{Deref, DerefMut},
    process::Output,
    time::Duration,
};

use rsmux_test_support::process::Child;
#[allow(unused_imports)] // each test binary uses a different part
pub use rsmux_test_support::{process::run, time::within};
use tokio::{
    io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The `rsmux` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rsmux")
}

/// A server child process that printed `listening on ADDR`; killed (and reaped) when
/// dropped, its stdout and stderr captured (see [`Child`]).
pub struct Proc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts `program args` and waits (at most 20 s) for its `listening on ADDR` line.
    pub fn start(program: &str, args: &[&str]) -> Proc {
        let child = Child::spawn(program, args);
        let addr = child.listening_addr(Duration::from_secs(20));
        Proc { child, addr }
    }

    /// Starts `rsmux args`.
    pub fn rsmux(args: &[&str]) -> Proc {
        Proc::start(bin(), args)
    }
}

impl Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Runs `rsmux args` (limit 60 s).
pub fn rsmux(args: &[&str]) -> Output {
    run(bin(), args, Duration::from_secs(60))
}

/// The Go peer, built with `interop/build.sh` (which installs Go and Debian's smux when
/// missing). Interop is tested for real: a failed build fails the test, it never skips.
pub fn go_peer() -> String {
    rsmux_test_support::go::peer_binary()
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

/// Deterministic test bytes.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    rsmux_test_support::pattern::bytes(seed, n)
}

/// A multi-threaded runtime for the async parts of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A loopback address with nothing listening on it (a port bound and released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Copies `r` to `w` until EOF, then half-closes `w` (not after an error).
pub async fn echo_then_shutdown<R, W>(r: &mut R, w: &mut W)
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if tokio::io::copy_buf(r, w).await.is_ok() {
        let _ = w.shutdown().await;
    }
}

/// Echoes one connection until EOF, then half-closes it.
pub async fn echo_connection(tcp: TcpStream) {
    let (r, mut w) = tcp.into_split();
    let mut r = tokio::io::BufReader::with_capacity(64 * 1024, r);
    echo_then_shutdown(&mut r, &mut w).await;
}

/// A plain TCP echo target: echoes until EOF, then half-closes.
pub async fn tcp_echo_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(echo_connection(tcp));
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

/// A plaintext `rsmux tunnel server` on a free loopback port forwarding to `target`, and a
/// `rsmux tunnel client` on another one connected to it, each with its extra flags.
pub fn tunnel(target: SocketAddr, extra_server: &[&str], extra_client: &[&str]) -> (Proc, Proc) {
    let server = tunnel_server(&target.to_string(), extra_server);
    let client = tunnel_client(&server, extra_client);
    (server, client)
}

/// A plaintext `rsmux tunnel server` on a free loopback port forwarding to `target`.
pub fn tunnel_server(target: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        target,
    ];
    args.extend(extra);
    Proc::rsmux(&args)
}

/// A `rsmux tunnel client` on a free loopback port, connected to `server`.
pub fn tunnel_client(server: &Proc, extra: &[&str]) -> Proc {
    let s = server.addr.to_string();
    let mut args = vec![
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &s,
    ];
    args.extend(extra);
    Proc::rsmux(&args)
}

/// A tunnel whose target cannot be reached refused only that stream: the server logged it,
/// and the client's session did not end.
pub fn only_the_stream_was_refused(server: &Proc, client: &Proc) {
    assert!(
        server.wait_stderr("cannot reach target", Duration::from_secs(5)),
        "no log line: {}",
        server.stderr()
    );
    assert!(!client.stderr().contains("ended"), "{}", client.stderr());
}
