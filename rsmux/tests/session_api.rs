//! The public async API over real transports (tokio duplex pipes and loopback TCP).
//! Timer-driven behaviour runs on tokio's paused clock: no sleeps wait for state.

use std::time::Duration;

use rsmux::{Config, Error, Session, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    net::{TcpListener, TcpStream},
    time::{timeout, Instant},
};

const LIMIT: Duration = Duration::from_secs(20);

fn v(version: u8) -> Config {
    Config::default().with_version(rsmux::Version::try_from(version).unwrap())
}

fn duplex_pair(config: Config) -> (Session, Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    (
        Session::client(a, config.clone()).unwrap(),
        Session::server(b, config).unwrap(),
    )
}

async fn tcp_pair(config: Config) -> (Session, Session) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    (
        Session::client(c.unwrap(), config.clone()).unwrap(),
        Session::server(s.unwrap().0, config).unwrap(),
    )
}

/// Echoes every accepted stream until FIN, then half-closes.
fn spawn_echo(server: Session) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(s) = server.accept_stream().await {
            tokio::spawn(echo(s));
        }
    })
}

async fn echo(mut s: Stream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown().await;
}

/// Reads `r` to EOF within the test limit.
async fn read_to_end<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(LIMIT, r.read_to_end(&mut out))
        .await
        .expect("no EOF within the limit")
        .expect("read failed");
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    rsmux_test_support::pattern::bytes(seed.into(), len)
}

#[tokio::test]
async fn echo_many_streams_v1_and_v2_over_tcp() {
    for version in [1, 2] {
        let (client, server) = tcp_pair(v(version)).await;
        spawn_echo(server);
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = client.open_stream().await.unwrap();
                let data = pattern(100_000 + i as usize * 997, i);
                let (mut r, mut w) = s_split(&mut s);
                let expect = data.clone();
                let writer = async move {
                    w.write_all(&data).await.unwrap();
                };
                let reader = async move {
                    let mut got = vec![0u8; expect.len()];
                    r.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, expect);
                };
                tokio::join!(writer, reader);
                s.shutdown().await.unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
            }));
        }
        for t in tasks {
            timeout(LIMIT, t).await.unwrap().unwrap();
        }
        client.close().await.unwrap();
    }
}

/// Borrowed split for tests that keep the stream afterwards.
fn s_split(
    s: &mut Stream,
) -> (
    tokio::io::ReadHalf<&mut Stream>,
    tokio::io::WriteHalf<&mut Stream>,
) {
    tokio::io::split(s)
}

#[tokio::test]
async fn first_ids_are_3_and_2() {
    let (client, server) = duplex_pair(Config::default());
    let a = client.open_stream().await.unwrap();
    let b = client.open_stream().await.unwrap();
    let c = server.open_stream().await.unwrap();
    assert_eq!((a.id().get(), b.id().get(), c.id().get()), (3, 5, 2));
    let accepted = timeout(LIMIT, client.accept_stream())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(accepted.id(), 2);
}

#[tokio::test]
async fn half_close_then_read_the_reply() {
    let (client, server) = duplex_pair(v(2));
    spawn_echo(server);
    let mut s = client.open_stream().await.unwrap();
    s.write_all(b"request").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(
        s.write(b"more").await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
    let reply = read_to_end(&mut s).await;
    assert_eq!(reply, b"request");
}

#[tokio::test]
async fn split_halves_work_from_different_tasks_and_reunite() {
    let (client, server) = duplex_pair(Config::default());
    spawn_echo(server);
    let s = client.open_stream().await.unwrap();
    let id = s.id();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&pattern(300_000, 1)).await.unwrap();
        w
    });
    let mut got = vec![0u8; 300_000];
    timeout(LIMIT, r.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, pattern(300_000, 1));
    let w = writer.await.unwrap();
    let mut s = r.reunite(w).unwrap();
    assert_eq!(s.id(), id);
    s.write_all(b"again").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
}

#[tokio::test]
async fn dropping_the_write_half_sends_fin() {
    let (client, server) = duplex_pair(Config::default());
    let s = client.open_stream().await.unwrap();
    let (_r, mut w) = s.into_split();
    w.write_all(b"last words").await.unwrap();
    drop(w);
    let mut peer = server.accept_stream().await.unwrap();
    let got = read_to_end(&mut peer).await;
    assert_eq!(got, b"last words");
}

#[tokio::test]
async fn dropping_a_stream_delivers_what_was_written_then_eof() {
    let (client, server) = tcp_pair(Config::default()).await;
    let mut s = client.open_stream().await.unwrap();
    let data = pattern(3 * 1024 * 1024, 9);
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            s.write_all(&data).await.unwrap();
            drop(s); // no flush, no shutdown: the FIN still follows all data
        })
    };
    let mut peer = server.accept_stream().await.unwrap();
    let got = read_to_end(&mut peer).await;
    writer.await.unwrap();
    assert!(got == data, "data lost or reordered");
}

#[tokio::test]
async fn session_close_delivers_data_written_before_it() {
    // Large writes racing a graceful session close: every byte accepted before close()
    // reaches the peer before the connection ends.
    let (client, server) = tcp_pair(Config::default()).await;
    let mut s = client.open_stream().await.unwrap();
    let data = pattern(2 * 1024 * 1024, 3);
    let mut written = 0;
    while written < data.len() {
        match timeout(Duration::from_millis(50), s.write(&data[written..])).await {
            Ok(Ok(n)) => written += n,
            _ => break,
        }
    }
    assert!(written > 0);
    let closer = tokio::spawn({
        let client = client.clone();
        async move { client.close().await }
    });
    let mut peer = server.accept_stream().await.unwrap();
    let mut got = Vec::new();
    let err = timeout(LIMIT, peer.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap_err();
    // Go sends no FIN on session close: the stream ends with the connection.
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(got.len(), written);
    assert!(got[..] == data[..written]);
    timeout(LIMIT, closer).await.unwrap().unwrap().unwrap();
    assert!(client.is_closed());
    assert!(matches!(client.close().await, Err(Error::Closed)));
    assert!(matches!(client.open_stream().await, Err(Error::Closed)));
    timeout(LIMIT, server.closed()).await.unwrap();
    assert!(matches!(
        server.close_reason(),
        Some(Error::ConnectionClosed)
    ));
    assert_eq!(server.num_streams(), 0);
}

#[tokio::test]
async fn peer_close_is_seen_by_accept_and_readers() {
    let (client, server) = duplex_pair(Config::default());
    let mut s = client.open_stream().await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut peer = server.accept_stream().await.unwrap();
    let mut one = [0u8; 1];
    peer.read_exact(&mut one).await.unwrap();
    let reader = tokio::spawn(async move { s.read(&mut [0u8; 8]).await });
    server.close().await.unwrap();
    let err = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    // The server never sent a frame before hanging up, so the client's error says so (and
    // hints at a version mismatch, the usual cause).
    assert!(matches!(
        timeout(LIMIT, client.accept_stream()).await.unwrap(),
        Err(Error::ClosedBeforeFirstFrame)
    ));
    timeout(LIMIT, client.closed()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn read_deadline_times_out_deterministically() {
    let (client, server) = duplex_pair(Config::default());
    let mut s = client.open_stream().await.unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut peer = server.accept_stream().await.unwrap();
    let start = Instant::now();
    s.set_read_deadline(Some(start + Duration::from_secs(5)));
    let err = s.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    // A past deadline fails every time, never at random.
    for _ in 0..100 {
        assert!(s.read(&mut [0u8; 4]).await.is_err());
    }
    // Buffered data is still returned past the deadline, as in Go.
    peer.write_all(b"ok").await.unwrap();
    tokio::task::yield_now().await;
    let mut got = [0u8; 2];
    timeout(LIMIT, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"ok");
    s.set_read_deadline(None);
    peer.write_all(b"!").await.unwrap();
    assert_eq!(s.read(&mut got).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn changing_a_deadline_wakes_the_blocked_operation() {
    let (client, _server) = duplex_pair(Config::default());
    let s = client.open_stream().await.unwrap();
    let deadlines = s.deadline_handle();
    let (mut r, _w) = s.into_split();
    let start = Instant::now();
    r.set_read_deadline(Some(start + Duration::from_secs(1000)));
    let reader = tokio::spawn(async move { r.read(&mut [0u8; 1]).await });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!reader.is_finished());
    // Another task moves the deadline closer while the read is parked: it applies at once.
    deadlines.set_read_deadline(Some(start + Duration::from_secs(12)));
    let err = timeout(LIMIT, reader).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(Instant::now() - start, Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn write_deadline_applies_to_a_writer_blocked_on_the_v2_window() {
    let (client, server) = duplex_pair(v(2));
    let mut s = client.open_stream().await.unwrap();
    let _peer = server.accept_stream(); // never read: the window closes
    let chunk = vec![0u8; 64 * 1024];
    let start = Instant::now();
    s.set_write_deadline(Some(start + Duration::from_secs(3)));
    let mut written = 0usize;
    let err = loop {
        match s.write(&chunk).await {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(
            written < 10 * 1024 * 1024,
            "the window must stop the writer"
        );
    };
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
    // The 256 KiB initial window; nothing is buffered beyond what the window allows.
    assert_eq!(written, 256 * 1024);
}

#[tokio::test(start_paused = true)]
async fn cancelled_reads_and_writes_lose_nothing() {
    let (client, server) = duplex_pair(Config::default());
    spawn_echo(server);
    let mut s = client.open_stream().await.unwrap();
    let data = pattern(1_000_000, 5);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 10_000];
    for _ in 0..100_000 {
        if sent < data.len() {
            if let Ok(Ok(n)) = timeout(Duration::from_micros(1), s.write(&data[sent..])).await {
                sent += n;
            }
        }
        if let Ok(Ok(n)) = timeout(Duration::from_micros(1), s.read(&mut buf)).await {
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[tokio::test(start_paused = true)]
async fn idle_session_with_keepalive_stays_up() {
    let cfg = Config::default()
        .with_keep_alive_interval(Duration::from_secs(1))
        .with_keep_alive_timeout(Duration::from_secs(2));
    let (client, server) = duplex_pair(cfg);
    let mut s = client.open_stream().await.unwrap();
    let mut peer = server.accept_stream().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!client.is_closed() && !server.is_closed());
    s.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    peer.read_exact(&mut buf).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_timed_out_by_keepalive() {
    let cfg = Config::default()
        .with_keep_alive_interval(Duration::from_secs(1))
        .with_keep_alive_timeout(Duration::from_secs(2));
    // The other end of the pipe never says anything (and never reads).
    let (a, _silent): (DuplexStream, DuplexStream) = tokio::io::duplex(1024);
    let session = Session::client(a, cfg).unwrap();
    let start = Instant::now();
    timeout(Duration::from_secs(10), session.closed())
        .await
        .unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    assert!(matches!(
        session.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
    assert!(matches!(
        session.accept_stream().await,
        Err(Error::KeepaliveTimeout(_))
    ));
    assert_eq!(session.stats().keepalive_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_still_fires_while_the_socket_write_blocks() {
    // Upstream TestKeepAliveBlockWriteTimeout: our writes never drain, the peer is silent.
    let cfg = Config::default()
        .with_keep_alive_interval(Duration::from_secs(1))
        .with_keep_alive_timeout(Duration::from_secs(2));
    let (a, _stuck) = tokio::io::duplex(16);
    let session = Session::client(a, cfg).unwrap();
    let mut s = session.open_stream().await.unwrap();
    let _ = timeout(Duration::from_millis(10), s.write_all(&[0u8; 100_000])).await;
    timeout(Duration::from_secs(10), session.closed())
        .await
        .unwrap();
    assert!(matches!(
        session.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
}

#[tokio::test]
async fn bulk_stream_does_not_starve_ping_pong() {
    let (client, server) = tcp_pair(Config::default()).await;
    spawn_echo(server);
    let mut bulk = client.open_stream().await.unwrap();
    let bulk_task = tokio::spawn(async move {
        let chunk = vec![7u8; 128 * 1024];
        let (mut r, mut w) = tokio::io::split(&mut bulk);
        let drain = async {
            let mut buf = vec![0u8; 128 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let pump = async {
            for _ in 0..400 {
                w.write_all(&chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        };
        tokio::join!(drain, pump);
    });
    let mut ping = client.open_stream().await.unwrap();
    let mut rounds = 0;
    while !bulk_task.is_finished() && rounds < 200 {
        ping.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        timeout(Duration::from_secs(5), ping.read_exact(&mut buf))
            .await
            .expect("ping-pong starved by the bulk stream")
            .unwrap();
        rounds += 1;
    }
    assert!(rounds > 0);
    timeout(LIMIT, bulk_task).await.unwrap().unwrap();
}

#[tokio::test]
async fn version_mismatch_is_a_clear_protocol_error() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Session::client(a, v(2)).unwrap();
    let server = Session::server(b, v(1)).unwrap();
    let mut s = client.open_stream().await.unwrap();
    s.write_all(b"x").await.unwrap();
    let err = timeout(LIMIT, server.accept_stream())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(rsmux::ProtocolError::VersionMismatch {
                got: 2,
                expected: 1
            })
        ),
        "{err}"
    );
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidData
    );
    // The client only sees the server hang up before any reply: its error says what that
    // usually means.
    timeout(LIMIT, client.closed()).await.unwrap();
    let err = client.close_reason().unwrap();
    assert!(matches!(err, Error::ClosedBeforeFirstFrame), "{err}");
    assert!(err.to_string().contains("same smux version"), "{err}");
}

#[tokio::test]
async fn a_peer_hanging_up_after_replying_is_a_plain_connection_close() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Session::client(a, Config::default()).unwrap();
    let server = Session::server(b, Config::default()).unwrap();
    let mut s = client.open_stream().await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut peer = server.accept_stream().await.unwrap();
    peer.write_all(b"y").await.unwrap();
    let mut got = [0u8; 1];
    s.read_exact(&mut got).await.unwrap();
    drop((peer, server)); // the server's transport goes away without a close
    timeout(LIMIT, client.closed()).await.unwrap();
    let err = client.close_reason().unwrap();
    assert!(matches!(err, Error::ConnectionClosed), "{err}");
}

#[tokio::test]
async fn bad_config_is_rejected_naming_the_field() {
    let (a, _b) = tokio::io::duplex(64);
    let err = Session::client(a, Config::default().with_max_frame_size(70_000)).unwrap_err();
    match err {
        Error::Config(e) => assert_eq!(e.field, rsmux::ConfigField::MaxFrameSize),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn session_ends_when_every_handle_is_dropped() {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let client = Session::client(a, Config::default()).unwrap();
    let mut s = client.open_stream().await.unwrap();
    drop(client);
    s.write_all(b"abc").await.unwrap();
    drop(s);
    // The peer sees SYN, PSH "abc", FIN, then end-of-file.
    let wire = read_to_end(&mut b).await;
    assert_eq!(
        wire,
        [
            &[1, 0, 0, 0, 3, 0, 0, 0][..],
            &[1, 2, 3, 0, 3, 0, 0, 0],
            b"abc",
            &[1, 1, 0, 0, 3, 0, 0, 0]
        ]
        .concat()
    );
}

#[tokio::test]
async fn num_streams_counts_open_streams() {
    let (client, server) = duplex_pair(Config::default());
    let a = client.open_stream().await.unwrap();
    let mut b = client.open_stream().await.unwrap();
    assert_eq!(client.num_streams(), 2);
    drop(a);
    assert_eq!(client.num_streams(), 1);
    // Both sides half-close: the stream no longer counts on either side.
    b.shutdown().await.unwrap();
    let _a = server.accept_stream().await.unwrap();
    let mut pb = server.accept_stream().await.unwrap();
    pb.shutdown().await.unwrap();
    let mut rest = Vec::new();
    pb.read_to_end(&mut rest).await.unwrap();
    b.read_to_end(&mut rest).await.unwrap();
    assert_eq!(client.num_streams(), 0);
    client.close().await.unwrap();
    assert_eq!(client.num_streams(), 0);
}

#[tokio::test]
async fn frames_parked_by_a_full_backlog_or_budget_resume_without_new_traffic() {
    // Keepalive off: no NOP will come along to unstick a driver that forgot buffered frames.
    let cfg = Config::default()
        .with_keep_alive_disabled(true)
        .with_max_receive_buffer(64 * 1024);
    let (client, server) = duplex_pair(cfg);
    let mut opened = Vec::new();
    for _ in 0..1500 {
        opened.push(client.open_stream().await.unwrap());
    }
    // 1500 SYNs arrive at once; only 1024 fit the accept backlog.
    let mut accepted = Vec::new();
    for _ in 0..1500 {
        accepted.push(
            timeout(Duration::from_secs(5), server.accept_stream())
                .await
                .expect("stalled on frames already read")
                .unwrap(),
        );
    }
    // One burst larger than the whole budget, then silence.
    let mut s = opened.pop().unwrap();
    let mut peer = accepted.pop().unwrap();
    assert_eq!(peer.id(), s.id());
    s.write_all(&pattern(300_000, 4)).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
        .await
        .expect("stalled on frames already read")
        .unwrap();
    assert!(got == pattern(300_000, 4));
}

#[tokio::test]
async fn works_over_a_unix_socket() {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let client = Session::client(a, v(2)).unwrap();
    spawn_echo(Session::server(b, v(2)).unwrap());
    let mut s = client.open_stream().await.unwrap();
    let data = pattern(1 << 20, 8);
    let (mut r, mut w) = tokio::io::split(&mut s);
    let expect = data.clone();
    let write = async move { w.write_all(&data).await.unwrap() };
    let read = async move {
        let mut got = vec![0u8; expect.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == expect);
    };
    timeout(LIMIT, async { tokio::join!(write, read) })
        .await
        .unwrap();
}

/// Counts the write calls a session makes and the frames in them.
struct CountingIo {
    inner: DuplexStream,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Accept everything offered, as a roomy socket would.
        let mut n = 0;
        for b in bufs {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, b) {
                std::task::Poll::Ready(Ok(k)) => {
                    n += k;
                    if k < b.len() {
                        break;
                    }
                }
                other if n == 0 => return other,
                _ => break,
            }
        }
        std::task::Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn many_frames_leave_per_write_call() {
    let (a, b) = tokio::io::duplex(4 << 20);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let io = CountingIo {
        inner: a,
        calls: calls.clone(),
    };
    let client = Session::client(io, Config::default()).unwrap();
    let server = Session::server(b, Config::default()).unwrap();
    // 200 streams each send a SYN, a small PSH and a FIN: 600 frames.
    let mut streams = Vec::new();
    for i in 0..200u32 {
        let mut s = client.open_stream().await.unwrap();
        s.write_all(format!("message {i}").as_bytes())
            .await
            .unwrap();
        streams.push(s);
    }
    drop(streams);
    let mut received = 0;
    while received < 200 {
        let mut s = timeout(LIMIT, server.accept_stream())
            .await
            .unwrap()
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("message "));
        received += 1;
    }
    let calls = calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(calls * 10 <= 600, "{calls} write calls for 600 frames");
}

#[test]
fn outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let (a, _b) = tokio::io::duplex(64);
    let err = Session::client(a, Config::default()).unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

/// `stats()` counts frames and bytes both ways and streams opened and accepted, and shows what
/// is buffered; `Debug` of a session is a one-line summary, not its internal state.
#[tokio::test]
async fn stats_count_traffic_and_debug_is_a_summary() {
    let (client, server) = duplex_pair(Config::default());
    let mut a = client.open_stream().await.unwrap();
    a.write_all(&[7u8; 100_000]).await.unwrap();
    let mut b = server.accept_stream().await.unwrap();
    let mut got = vec![0u8; 100_000];
    b.read_exact(&mut got).await.unwrap();
    b.write_all(b"pong").await.unwrap();
    let mut reply = [0u8; 4];
    a.read_exact(&mut reply).await.unwrap();
    // Unread data shows as buffered on the server.
    a.write_all(b"unread").await.unwrap();
    a.flush().await.unwrap();
    let deadline = Instant::now() + LIMIT;
    while server.stats().buffered_receive_bytes < 6 {
        assert!(Instant::now() < deadline, "the 6 bytes never arrived");
        tokio::task::yield_now().await;
    }
    let (c, s) = (client.stats(), server.stats());
    assert_eq!((c.streams_opened, c.streams_accepted), (1, 0));
    assert_eq!((s.streams_opened, s.streams_accepted), (0, 1));
    assert_eq!((c.streams, s.streams, s.pending_accepts), (1, 1, 0));
    assert_eq!(s.buffered_receive_bytes, 6);
    // SYN + 100,006 bytes in frames of at most 32 KiB (4 + 1), each with its 8-byte header.
    assert!(c.frames_out >= 6, "{c:?}");
    assert!(c.bytes_out >= 100_006 + 6 * 8, "{c:?}");
    assert_eq!(s.frames_in, c.frames_out, "{s:?} {c:?}");
    assert_eq!(s.bytes_in, c.bytes_out);
    assert!(s.bytes_out >= 4 + 8 && c.bytes_in == s.bytes_out);
    let shown = format!("{client:?}");
    assert_eq!(
        shown,
        "Session { role: Client, version: Some(V1), streams: 1, closed: false }"
    );
    assert_eq!((c.streams_closed, s.streams_closed), (0, 0));
    assert_eq!((c.keepalive_timeouts, s.keepalive_timeouts), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn timers_too_far_away_for_an_instant_never_fire_and_never_panic() {
    // Keepalive durations whose deadlines overflow `Instant`, and a read deadline centuries
    // away: the session works, nothing fires, nothing panics.
    let config = Config::default()
        .with_keep_alive_interval(Duration::MAX)
        .with_keep_alive_timeout(Duration::MAX);
    let (client, server) = duplex_pair(config);
    let _echo = spawn_echo(server);
    let mut s = client.open_stream().await.unwrap();
    s.set_read_deadline(Some(Instant::now() + Duration::from_secs(1 << 34)));
    s.write_all(b"far").await.unwrap();
    let mut got = [0u8; 3];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"far");
    // A year of silence on the paused clock: the read is still waiting, the session alive.
    let pending = timeout(Duration::from_secs(365 * 86400), s.read(&mut got)).await;
    assert!(
        pending.is_err(),
        "the far deadline or keepalive fired: {pending:?}"
    );
    assert!(!client.is_closed());
}

#[tokio::test]
async fn a_detecting_server_reports_the_version_its_client_speaks() {
    for version in [1u8, 2] {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = Session::client(a, v(version)).unwrap();
        let server = Session::server(b, Config::default().with_detect_version(true)).unwrap();
        assert_eq!(server.version(), None);
        let _echo = spawn_echo(server.clone());
        let mut s = client.open_stream().await.unwrap();
        s.write_all(b"which version?").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut s).await, b"which version?");
        assert_eq!(server.version().map(u8::from), Some(version));
        assert_eq!(client.version().map(u8::from), Some(version));
    }
    // A client cannot detect: it speaks first.
    let (a, _b) = tokio::io::duplex(64);
    let e = Session::client(a, Config::default().with_detect_version(true)).unwrap_err();
    assert!(e.to_string().contains("detect_version"), "{e}");
}

/// A zero-copy echo (`read_chunk` + `write_chunk`, as `rsmux echo` does) returns every byte in
/// order, v1 and v2, with chunks larger than a stream's send buffer (the writer waits for
/// room) and from the write half of a split stream.
#[tokio::test]
async fn read_chunk_and_write_chunk_echo_byte_exact() {
    for version in [1, 2] {
        let (client, server) = tcp_pair(v(version)).await;
        tokio::spawn(async move {
            while let Ok(mut s) = server.accept_stream().await {
                tokio::spawn(async move {
                    while let Some(chunk) = s.read_chunk(usize::MAX).await.unwrap() {
                        s.write_chunk(chunk).await.unwrap();
                    }
                });
            }
        });
        let s = client.open_stream().await.unwrap();
        let (r, mut w) = s.into_split();
        let data = bytes::Bytes::from(pattern(3_000_000, version));
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            // One chunk far larger than the send buffer, then many small ones.
            w.write_chunk(sent.slice(..2_000_000)).await.unwrap();
            for piece in sent.slice(2_000_000..).chunks(777) {
                w.write_chunk(bytes::Bytes::copy_from_slice(piece))
                    .await
                    .unwrap();
            }
            drop(w);
        });
        assert_eq!(read_to_end(r).await, data, "v{version}");
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn drain_lets_open_streams_finish_refuses_new_ones_then_closes() {
    let (client, server) = tcp_pair(Config::default()).await;
    let mut open = client.open_stream().await.unwrap();
    open.write_all(b"request").await.unwrap();
    let mut served = server.accept_stream().await.unwrap();

    let drain = tokio::spawn({
        let server = server.clone();
        async move { server.drain(LIMIT).await }
    });
    // The server refuses what comes after: a new stream reads EOF at once.
    let mut late = client.open_stream().await.unwrap();
    late.write_all(b"late").await.unwrap();
    assert_eq!(read_to_end(&mut late).await, b"");
    assert!(matches!(server.accept_stream().await, Err(Error::Draining)));
    assert!(matches!(server.open_stream().await, Err(Error::Draining)));
    assert!(!drain.is_finished(), "a stream is still open");

    // The open stream still works both ways until it ends.
    let mut buf = [0u8; 7];
    served.read_exact(&mut buf).await.unwrap();
    served.write_all(b"reply").await.unwrap();
    drop(served);
    open.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut open).await, b"reply");
    timeout(LIMIT, drain).await.unwrap().unwrap().unwrap();
    assert!(server.is_closed());
    assert!(server.stats().streams_refused >= 1);
    timeout(LIMIT, client.closed()).await.unwrap();
}

#[tokio::test]
async fn drain_starts_when_called_not_when_polled() {
    let (_client, server) = duplex_pair(Config::default());
    let drained = server.drain(LIMIT);
    // Not polled yet: new streams are refused already.
    assert!(matches!(server.open_stream().await, Err(Error::Draining)));
    // The future holds its own handle: it runs to the end on another task.
    timeout(LIMIT, tokio::spawn(drained))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(server.is_closed());
}

#[tokio::test(start_paused = true)]
async fn drain_closes_anyway_once_the_grace_runs_out() {
    let (client, server) = duplex_pair(Config::default());
    let _open = client.open_stream().await.unwrap();
    let _served = server.accept_stream().await.unwrap();
    let started = Instant::now();
    let res = server.drain(Duration::from_secs(5)).await;
    assert!(matches!(res, Err(Error::Timeout)), "{res:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(server.is_closed());
    assert!(matches!(server.drain(LIMIT).await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn deadlines_take_a_duration_or_either_instant() {
    let (client, _server) = duplex_pair(Config::default());
    let mut s = client.open_stream().await.unwrap();
    // A duration counts from now, on tokio's (here paused) clock.
    let start = Instant::now();
    s.set_read_deadline(Duration::from_secs(3));
    let err = s.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
    // A std instant and a tokio instant name the same moment.
    let start = Instant::now();
    s.set_read_deadline((start + Duration::from_secs(2)).into_std());
    let err = s.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    let start = Instant::now();
    s.set_write_deadline(start + Duration::from_secs(1));
    s.set_read_deadline(None);
    let waited = timeout(Duration::from_secs(10), s.read(&mut [0u8; 4])).await;
    assert!(
        waited.is_err(),
        "no read deadline: the read waits, {waited:?}"
    );
}
