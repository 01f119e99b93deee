//! Loopback throughput of one tunnelled TCP connection, kcptun's defaults everywhere (aes,
//! fast, FEC 10/3, snappy, smux v1), for the four pairings of kcptun and rsmux:
//!
//! ```sh
//! cargo run --release -p rsmux-kcp --example throughput -- [MiB per transfer, default 16]
//! ```
//!
//! "up" moves bytes client → server (bounded by the client's sndwnd 128), "down" server →
//! client (the server's sndwnd 1024 against the client's rcvwnd 512). The payload is
//! incompressible, so snappy cannot flatter anyone. Needs `kcptun-client` and
//! `kcptun-server` (Debian's `kcptun`).
//!
//! `WND=N` sets sndwnd and rcvwnd to N on both ends and `MODE=fast3` (etc.) the mode, to see
//! past kcptun's default windows.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsmux_kcp::{KcpConfig, KcpListener, KcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smux() -> rsmux::Config {
    rsmux::Config::default()
        .with_version(rsmux::Version::V1)
        .with_max_receive_buffer(4 << 20)
        .with_max_stream_buffer(2 << 20)
        .with_keep_alive_interval(Duration::from_secs(10))
}

fn free_port(udp: bool) -> SocketAddr {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }
}

/// Window and mode overrides from the environment (`WND`, `MODE`).
fn tuning() -> (Option<u16>, Option<String>) {
    let wnd = std::env::var("WND").ok().map(|w| w.parse().expect("WND"));
    (wnd, std::env::var("MODE").ok())
}

fn tuned(mut config: KcpConfig) -> KcpConfig {
    let (wnd, mode) = tuning();
    if let Some(w) = wnd {
        (config.snd_wnd, config.rcv_wnd) = (w, w);
    }
    if let Some(m) = mode {
        config.mode = m.parse().expect("MODE");
    }
    config
}

fn kcptun(bin: &str, args: &[&str]) -> Kill {
    let (wnd, mode) = tuning();
    let mut extra = Vec::new();
    if let Some(w) = wnd {
        extra.extend([
            "--sndwnd".to_string(),
            w.to_string(),
            "--rcvwnd".into(),
            w.to_string(),
        ]);
    }
    if let Some(m) = mode {
        extra.extend(["--mode".to_string(), m]);
    }
    let child = Command::new(bin)
        .args(args)
        .args(extra)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (apt-get install -y kcptun)"));
    // kcptun derives its key (a few ms) before it binds; KCP resends what arrives earlier.
    Kill(child)
}

/// A TCP target: "up" reads `total` bytes then reports; "down" writes `total` bytes.
async fn target(up: bool, total: usize) -> (SocketAddr, tokio::sync::oneshot::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        if up {
            let mut buf = vec![0u8; 64 << 10];
            let mut n = 0;
            while n < total {
                n += tcp.read(&mut buf).await.unwrap();
            }
            let _ = tx.send(Instant::now());
        } else {
            tcp.write_all(&data(total)).await.unwrap();
            let _ = tx.send(Instant::now());
            let _ = tcp.read(&mut [0u8; 1]).await;
        }
    });
    (addr, rx)
}

fn data(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs one transfer over `io` (a stream into the tunnel's client end); returns its start
/// and, for "down", MB/s.
async fn transfer<S>(mut io: S, up: bool, total: usize) -> (Instant, f64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    if up {
        io.write_all(&data(total)).await.unwrap();
        // Completion is the target's count, awaited by the caller.
    } else {
        let mut buf = vec![0u8; 64 << 10];
        let mut n = 0;
        while n < total {
            n += io.read(&mut buf).await.unwrap();
        }
    }
    std::mem::forget(io); // keep the tunnel open until the caller measured
    (start, total as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn run(pair: &str, up: bool, total: usize) -> f64 {
    let (target_addr, done) = target(up, total).await;
    let t = target_addr.to_string();
    let mut children = Vec::new();
    let server_rsmux = pair.ends_with("rsmux");
    let client_rsmux = pair.starts_with("rsmux");
    let udp = if server_rsmux {
        let listener = KcpListener::bind("127.0.0.1:0", &tuned(KcpConfig::kcptun_server()))
            .await
            .unwrap();
        let udp = listener.local_addr();
        tokio::spawn(async move {
            let (kcp, _) = listener.accept().await.unwrap();
            let session = rsmux::Session::server(kcp, smux()).unwrap();
            let stream = session.accept_stream().await.unwrap();
            let tcp = TcpStream::connect(target_addr).await.unwrap();
            let (mut tr, mut tw) = tcp.into_split();
            let (mut sr, mut sw) = tokio::io::split(stream);
            tokio::select! {
                _ = tokio::io::copy(&mut sr, &mut tw) => {}
                _ = tokio::io::copy(&mut tr, &mut sw) => {}
            }
            drop(session);
        });
        udp
    } else {
        let udp = free_port(true);
        children.push(kcptun("kcptun-server", &["-l", &udp.to_string(), "-t", &t]));
        udp
    };
    let (start, rate) = if client_rsmux {
        let kcp = KcpStream::connect(udp, &tuned(KcpConfig::default()))
            .await
            .unwrap();
        let stats = kcp.stats_handle();
        let session = rsmux::Session::client(kcp, smux()).unwrap();
        let stream = session.open_stream().await.unwrap();
        let r = transfer(stream, up, total).await;
        if std::env::var_os("STATS").is_some() {
            eprintln!("{pair} up={up}: rsmux client {:?}", stats.get());
        }
        std::mem::forget(session);
        r
    } else {
        let tcp_port = free_port(false);
        children.push(kcptun(
            "kcptun-client",
            &["-l", &tcp_port.to_string(), "-r", &udp.to_string()],
        ));
        let tcp = loop {
            match TcpStream::connect(tcp_port).await {
                Ok(t) => break t,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        transfer(tcp, up, total).await
    };
    let rate = if up {
        let end = done.await.unwrap();
        total as f64 / (end - start).as_secs_f64() / 1e6
    } else {
        rate
    };
    drop(children);
    rate
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(16, |a| a.parse().expect("MiB"));
    let total = mib << 20;
    println!(
        "{:<18} {:>10} {:>10}",
        "client→server", "up MB/s", "down MB/s"
    );
    for pair in [
        "kcptun→kcptun",
        "rsmux→kcptun",
        "kcptun→rsmux",
        "rsmux→rsmux",
    ] {
        let up = run(pair, true, total).await;
        let down = run(pair, false, total).await;
        println!("{pair:<18} {up:>10.1} {down:>10.1}");
    }
}
