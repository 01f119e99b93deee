//! Shared helpers: kcptun child processes, TCP echo targets, smux settings, a lossy relay,
//! connected pairs and forged first datagrams.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// kcptun's smux settings (`--smuxver`, `--smuxbuf 4 MiB`, `--streambuf 2 MiB`,
/// `--keepalive 10`).
pub fn kcptun_smux(version: u8) -> rsmux::Config {
    rsmux::Config::default()
        .with_version(rsmux::Version::try_from(version).unwrap())
        .with_max_receive_buffer(4 << 20)
        .with_max_stream_buffer(2 << 20)
        .with_keep_alive_interval(Duration::from_secs(10))
}

/// Path of a kcptun binary; fails the test with the fix if it is missing. On a fresh Debian
/// machine, running as root, it installs Debian's `kcptun` first (as `interop/build.sh` does
/// for Go), so the test command needs no setup; `RSMUX_NO_APT=1` turns that off.
pub fn kcptun_bin(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    if std::path::Path::new(&path).exists() {
        return path;
    }
    install_kcptun();
    if std::path::Path::new(&path).exists() {
        return path;
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
    {
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !found.is_empty() {
            return found;
        }
    }
    panic!(
        "{name} not found: these tests run against the real kcptun; install it with \
         `apt-get install -y kcptun` (Debian package, provides kcptun-client and kcptun-server; \
         .ci/run does this)"
    );
}

/// Installs Debian's kcptun with apt when running as root (one test process at a time: the
/// test runner starts many).
fn install_kcptun() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root || std::env::var_os("RSMUX_NO_APT").is_some() {
        return;
    }
    let script = "command -v kcptun-server >/dev/null 2>&1 || { command -v apt-get >/dev/null \
        && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcptun; }";
    let _ = Command::new("flock")
        .args(["/tmp/rsmux-kcptun-install.lock", "sh", "-c", script])
        .stdout(Stdio::null())
        .status();
}

/// A kcptun child process, killed on drop; with `KCPTUN_LOG` set its log is printed then
/// (it is printed anyway when the test fails).
pub struct Kcptun {
    child: rsmux_test_support::process::Child,
}

impl Drop for Kcptun {
    fn drop(&mut self) {
        if std::env::var_os("KCPTUN_LOG").is_some() {
            eprintln!("--- {} ---\n{}", self.child.desc(), self.child.stderr());
        }
    }
}

impl Kcptun {
    /// Starts `bin` with `args` and returns once it has logged "key derivation done" (after
    /// which it only binds its socket and serves).
    pub fn start(bin: &str, args: &[String]) -> Kcptun {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = rsmux_test_support::process::Child::spawn(kcptun_bin(bin), &args);
        assert!(
            child.wait_stderr("key derivation done", Duration::from_secs(20)),
            "{bin} {args:?} did not start"
        );
        Kcptun { child }
    }
}

/// A free UDP port on loopback (bound and released; kcptun binds it right after).
pub fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A TCP echo server on loopback; runs until the test ends.
pub async fn echo_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Deterministic test payload.
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Half compressible, half not: snappy sees both kinds of chunk.
            if (x >> 20) & 1 == 0 {
                b'a'
            } else {
                x as u8
            }
        })
        .collect()
}

/// Writes `data` to an echoing peer through `io` and checks the echo is byte-identical. Does
/// not half-close (kcptun closes both directions on the first FIN).
pub async fn echo_exact<S>(io: S, data: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(io);
    let out = data.to_vec();
    let writer = tokio::spawn(async move {
        for chunk in out.chunks(32 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut got = vec![0u8; data.len()];
    r.read_exact(&mut got).await.expect("echo");
    let _w = writer.await.unwrap();
    assert!(
        got == data,
        "echo differs from what was sent ({} bytes)",
        data.len()
    );
}

/// Serves an rsmux session: every stream is forwarded to a new TCP connection to `target`.
pub async fn forward_streams(session: rsmux::Session, target: SocketAddr) {
    while let Ok(stream) = session.accept_stream().await {
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
            let (mut tr, mut tw) = tcp.into_split();
            let (mut sr, mut sw) = tokio::io::split(stream);
            tokio::select! {
                _ = tokio::io::copy(&mut sr, &mut tw) => {}
                _ = tokio::io::copy(&mut tr, &mut sw) => {}
            }
        });
    }
}

/// Counters of a [`LossyRelay`].
#[derive(Default)]
pub struct RelayCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    /// Longest datagram seen client → server.
    pub max_up: AtomicU64,
    /// Longest datagram seen server → client.
    pub max_down: AtomicU64,
}

/// A UDP relay between one client and `server` that drops, duplicates and reorders a few
/// percent of datagrams in each direction (deterministic pseudo-random choices).
pub async fn lossy_relay(
    server: SocketAddr,
    drop_pct: u32,
    dup_pct: u32,
    reorder_pct: u32,
) -> (SocketAddr, Arc<RelayCounts>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let counts = Arc::new(RelayCounts::default());
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
    let decide = move |x: &mut u64| {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*x >> 33) % 100) as u32
    };
    // client -> server
    {
        let (front, back, counts, client) =
            (front.clone(), back.clone(), counts.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut held: Option<Vec<u8>> = None;
            let mut x = 1u64;
            loop {
                // Errors (ICMP port unreachable while kcptun is still starting) are transient.
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                *client.lock().unwrap() = Some(from);
                counts.max_up.fetch_max(n as u64, Ordering::Relaxed);
                relay_one(
                    &buf[..n],
                    &mut x,
                    &mut held,
                    drop_pct,
                    dup_pct,
                    reorder_pct,
                    &counts,
                    &decide,
                    |d| {
                        let _ = back.try_send(d);
                    },
                );
            }
        });
    }
    // server -> client
    {
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut held: Option<Vec<u8>> = None;
            let mut x = 2u64;
            loop {
                let Ok(n) = back.recv(&mut buf).await else {
                    continue;
                };
                let Some(to) = *client.lock().unwrap() else {
                    continue;
                };
                counts.max_down.fetch_max(n as u64, Ordering::Relaxed);
                relay_one(
                    &buf[..n],
                    &mut x,
                    &mut held,
                    drop_pct,
                    dup_pct,
                    reorder_pct,
                    &counts,
                    &decide,
                    |d| {
                        let _ = front.try_send_to(d, to);
                    },
                );
            }
        });
    }
    (addr, counts)
}

#[allow(clippy::too_many_arguments)]
fn relay_one(
    d: &[u8],
    x: &mut u64,
    held: &mut Option<Vec<u8>>,
    drop_pct: u32,
    dup_pct: u32,
    reorder_pct: u32,
    counts: &RelayCounts,
    decide: &impl Fn(&mut u64) -> u32,
    send: impl Fn(&[u8]),
) {
    let r = decide(x);
    if r < drop_pct {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
    } else if r < drop_pct + reorder_pct && held.is_none() {
        // Hold this one back and send it after the next datagram.
        counts.reordered.fetch_add(1, Ordering::Relaxed);
        *held = Some(d.to_vec());
        return;
    } else {
        send(d);
        counts.forwarded.fetch_add(1, Ordering::Relaxed);
        if r < drop_pct + reorder_pct + dup_pct {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            send(d);
        }
    }
    if let Some(h) = held.take() {
        send(&h);
    }
}

/// A client of `listener` connected with `config`, and its accepted server side: KCP has no
/// handshake, so the client's first bytes open the conversation and the server reads them.
pub async fn connected_pair(
    listener: &rsmux_kcp::KcpListener,
    config: &rsmux_kcp::KcpConfig,
) -> (rsmux_kcp::KcpStream, rsmux_kcp::KcpStream) {
    let mut client = rsmux_kcp::KcpStream::connect(listener.local_addr(), config)
        .await
        .unwrap();
    client.write_all(b"hello").await.unwrap();
    let (mut served, _) = listener.accept().await.unwrap();
    let mut hello = [0u8; 5];
    served.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    (client, served)
}

/// The first datagram of conversation `conv` as a client with `config` sends it after
/// writing `data` (a PUSH with sn 0), sealed with `crypt`: a forged peer's opening.
pub fn first_datagram(
    conv: u32,
    config: &rsmux_kcp::KcpConfig,
    crypt: &rsmux_kcp::crypt::Crypt,
    data: &[u8],
) -> Vec<u8> {
    let mut c = rsmux_kcp::conn::Connection::new(conv, config, crypt.clone());
    assert_eq!(c.send(data), data.len());
    c.flush(0);
    let mut out = rsmux_kcp::Datagrams::new();
    c.take_transmits(&mut out);
    let first = out.iter().next().expect("a datagram").to_vec();
    first
}
