//! Hostile peers over real TCP against an in-process rsmux echo server. For each attack: no
//! panic, a clear error, bounded memory (counting allocator), other sessions on the same server
//! keep working, and the attacked session ends within its keepalive timeout once the peer goes
//! silent.
//!
//! SYN-flood policy: as in Go, reading pauses while 1024 peer-opened streams wait to be
//! accepted (about 200 bytes each). A peer that floods SYNs the application never accepts is
//! throttled by TCP backpressure, and the session, which then reads nothing, ends at its
//! keepalive timeout.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rsmux::{
    frame::{Cmd, Header},
    proto::internals::SESSION_SEND_BUFFER,
    Config, Error, Session,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::timeout,
};

use rsmux_test_support::counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// Tests measure process-wide memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BUDGET: usize = 1 << 20;
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

fn config() -> Config {
    Config::default()
        .with_keep_alive_interval(Duration::from_secs(1))
        .with_keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .with_max_receive_buffer(BUDGET)
}

/// What the server does with the next connection.
enum Policy {
    /// Echo every accepted stream.
    Echo,
    /// Never accept a stream.
    NeverAccept,
    /// Accept one stream and report how reading it to the end went.
    ReportRead(mpsc::UnboundedSender<io::Result<Vec<u8>>>),
}

struct Server {
    addr: std::net::SocketAddr,
    sessions: Arc<Mutex<Vec<Session>>>,
    /// Counts sessions started, so a test can wait for the server to see its connection.
    started: tokio::sync::watch::Receiver<usize>,
    policies: Arc<Mutex<VecDeque<Policy>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let policies: Arc<Mutex<VecDeque<Policy>>> = Arc::default();
        let (s, p) = (sessions.clone(), policies.clone());
        let (count, started) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let session = Session::server(tcp, config()).unwrap();
                s.lock().unwrap().push(session.clone());
                count.send_modify(|n| *n += 1);
                let policy = p.lock().unwrap().pop_front().unwrap_or(Policy::Echo);
                tokio::spawn(serve(session, policy));
            }
        });
        Server {
            addr,
            sessions,
            started,
            policies,
        }
    }

    fn next(&self, policy: Policy) {
        self.policies.lock().unwrap().push_back(policy);
    }

    /// The server-side session of the `n`th connection, once the server has started it.
    async fn session(&self, n: usize) -> Session {
        let mut started = self.started.clone();
        timeout(Duration::from_secs(5), started.wait_for(|&count| count > n))
            .await
            .expect("the server never started the session")
            .unwrap();
        self.sessions.lock().unwrap()[n].clone()
    }

    /// A well-behaved client on the same server still gets its echo.
    async fn assert_serves_others(&self) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let client = Session::client(tcp, config()).unwrap();
        let mut s = client.open_stream().await.unwrap();
        s.write_all(b"still serving").await.unwrap();
        let mut buf = [0u8; 13];
        timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .expect("server stopped serving other sessions")
            .unwrap();
        assert_eq!(&buf, b"still serving");
        client.close().await.unwrap();
    }
}

async fn serve(session: Session, policy: Policy) {
    match policy {
        Policy::NeverAccept => session.closed().await,
        Policy::ReportRead(tx) => {
            if let Ok(mut s) = session.accept_stream().await {
                let mut got = Vec::new();
                let res = s.read_to_end(&mut got).await.map(|_| got);
                let _ = tx.send(res);
            }
        }
        Policy::Echo => {
            while let Ok(mut s) = session.accept_stream().await {
                tokio::spawn(async move {
                    while let Ok(Some(chunk)) = s.read_chunk(64 * 1024).await {
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        }
    }
}

fn frame(cmd: Cmd, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::new(1, cmd, payload.len() as u16, sid)
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads frames from a raw connection until one that is not a NOP; returns it whole.
async fn next_data_frame(tcp: &mut TcpStream) -> Vec<u8> {
    loop {
        let mut header = [0u8; 8];
        tcp.read_exact(&mut header).await.unwrap();
        let len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let mut f = header.to_vec();
        f.resize(8 + len, 0);
        tcp.read_exact(&mut f[8..]).await.unwrap();
        if header[1] != Cmd::Nop as u8 {
            return f;
        }
    }
}

/// Waits until the server session ends; returns how long that took.
async fn ended_within(session: &Session, limit: Duration) -> Duration {
    let start = Instant::now();
    timeout(limit, session.closed())
        .await
        .unwrap_or_else(|_| panic!("session still open after {limit:?}"));
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_ends_the_session_with_a_protocol_error() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let mut garbage = vec![0xEEu8; 4096]; // bad version byte first
    StdRng::seed_from_u64(7).fill(&mut garbage[1..]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", garbage),
        ("bad version", vec![9, 0, 0, 0, 3, 0, 0, 0]),
        ("unknown command", vec![1, 7, 0, 0, 3, 0, 0, 0]),
        ("NOP with payload", frame(Cmd::Nop, 0, b"abc")),
        ("SYN with payload", frame(Cmd::Syn, 3, b"abc")),
        ("FIN with payload", frame(Cmd::Fin, 3, b"abc")),
        ("UPD in v1", frame(Cmd::Upd, 3, &[0; 8])),
    ];
    for (n, (name, bytes)) in cases.into_iter().enumerate() {
        counting::reset_peak();
        let before = counting::live();
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        // The server drops the connection: we read EOF (or a reset).
        let mut sink = Vec::new();
        let _ = timeout(Duration::from_secs(2), tcp.read_to_end(&mut sink))
            .await
            .unwrap_or_else(|_| panic!("{name}: server kept the connection"));
        // Sessions alternate: this case's attacker, then the well-behaved client's.
        let session = server.session(2 * n).await;
        ended_within(&session, Duration::from_secs(2)).await;
        assert!(
            matches!(session.close_reason(), Some(Error::Protocol(_))),
            "{name}: {:?}",
            session.close_reason()
        );
        let grown = counting::peak() - before;
        assert!(grown < 2 << 20, "{name}: {grown} bytes");
        server.assert_serves_others().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syn_flood_is_throttled_by_the_accept_backlog() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    server.next(Policy::NeverAccept);
    counting::reset_peak();
    let before = counting::live();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut wire = Vec::with_capacity(100_000 * 8);
    for i in 0..100_000u32 {
        wire.extend_from_slice(&Header::new(1, Cmd::Syn, 0, 1 + 2 * i).encode());
    }
    // Loopback buffers may take it all or stall part of it; either way we stop sending.
    let _ = timeout(Duration::from_secs(2), tcp.write_all(&wire)).await;
    let session = server.session(0).await;
    assert!(session.num_streams() <= Config::default().accept_backlog);
    let took = ended_within(&session, 3 * KEEPALIVE_TIMEOUT).await;
    assert!(matches!(
        session.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
    let grown = counting::peak() - before - wire.capacity() as isize;
    eprintln!("SYN flood: peak {grown} B over baseline, session ended after {took:?}");
    assert!(grown < (BUDGET + (1 << 20)) as isize, "{grown} bytes");
    server.assert_serves_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_for_unknown_streams_costs_nothing() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    counting::reset_peak();
    let before = counting::live();
    let junk = frame(Cmd::Psh, 4001, &[0x55; 65535]);
    for _ in 0..500 {
        tcp.write_all(&junk).await.unwrap();
    }
    // The session is still fine: a real stream on it is echoed.
    tcp.write_all(&frame(Cmd::Syn, 3, b"")).await.unwrap();
    tcp.write_all(&frame(Cmd::Psh, 3, b"hello")).await.unwrap();
    let reply = timeout(Duration::from_secs(5), next_data_frame(&mut tcp))
        .await
        .unwrap();
    assert_eq!(reply, frame(Cmd::Psh, 3, b"hello"));
    let grown = counting::peak() - before;
    eprintln!("32 MiB to unknown streams: peak {grown} B over baseline");
    assert!(grown < 1 << 20, "{grown} bytes");
    assert!(server.session(0).await.close_reason().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_keepalive() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let header = frame(Cmd::Syn, 3, b"");
    let drip = tokio::spawn(async move {
        for b in header {
            if tcp.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let session = server.session(0).await;
    let took = ended_within(&session, 2 * KEEPALIVE_TIMEOUT + Duration::from_secs(1)).await;
    assert!(matches!(
        session.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
    eprintln!("slowloris cut off after {took:?}");
    drip.abort();
    server.assert_serves_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_frame_is_an_error_not_eof() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    server.next(Policy::ReportRead(tx));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut std_tcp = tcp.into_std().unwrap();
    std_tcp.set_nonblocking(false).unwrap();
    use std::io::Write;
    std_tcp.write_all(&frame(Cmd::Syn, 3, b"")).unwrap();
    std_tcp.write_all(&frame(Cmd::Psh, 3, b"complete")).unwrap();
    let mut partial = frame(Cmd::Psh, 3, &[1u8; 1000]);
    partial.truncate(500);
    std_tcp.write_all(&partial).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // SO_LINGER 0: closing sends a reset.
    socket2_reset(std_tcp);
    let res = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let err = res.expect_err("a truncated stream must not look like a clean EOF");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ),
        "{err}"
    );
    let session = server.session(0).await;
    ended_within(&session, Duration::from_secs(1)).await;
    server.assert_serves_others().await;
}

/// Closes a socket with a TCP reset (SO_LINGER with zero timeout).
fn socket2_reset(tcp: std::net::TcpStream) {
    let tcp = TcpStream::from_std({
        tcp.set_nonblocking(true).unwrap();
        tcp
    })
    .unwrap();
    tcp.set_zero_linger().unwrap();
    drop(tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_reads_cannot_grow_our_memory() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    counting::reset_peak();
    let before = counting::live();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (_read_half_never_read, mut w) = tcp.into_split();
    // 64 streams, 256 KiB each, echoed by the server into a socket nobody reads.
    let payload = frame(Cmd::Psh, 0, &[0x42; 32 * 1024]);
    let mut wire = Vec::new();
    for i in 0..64u32 {
        wire.extend(frame(Cmd::Syn, 3 + 2 * i, b""));
    }
    for _round in 0..8 {
        for i in 0..64u32 {
            let mut f = payload.clone();
            f[4..8].copy_from_slice(&(3 + 2 * i).to_le_bytes());
            wire.extend(f);
        }
    }
    let sent = timeout(Duration::from_secs(3), w.write_all(&wire)).await;
    eprintln!("never-reading peer: all 16 MiB written: {}", sent.is_ok());
    let session = server.session(0).await;
    // The peer is now silent and reads nothing: the session must not live on.
    let took = ended_within(&session, 3 * KEEPALIVE_TIMEOUT + Duration::from_secs(2)).await;
    let grown = counting::peak() - before - wire.capacity() as isize - payload.capacity() as isize;
    eprintln!("never-reading peer: peak {grown} B over baseline, ended after {took:?}");
    // Receive side: at most three budgets; send side: one budget (the session send cap is
    // the smaller of SESSION_SEND_BUFFER and the budget); the echo tasks each hold one chunk
    // of up to 64 KiB they could not write; plus 1 MiB for the read chunk, the transmit batch
    // and 64 tasks.
    let bound = 3 * BUDGET + BUDGET.min(SESSION_SEND_BUFFER) + 64 * 64 * 1024 + (1 << 20);
    assert!(grown < bound as isize, "{grown} bytes, bound {bound}");
    assert!(matches!(
        session.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
    server.assert_serves_others().await;
}
