//! Interoperability of rsmux with Go's `github.com/xtaci/smux` (the version Debian ships,
//! v1.5.16), over real loopback TCP, for protocol versions 1 and 2.
//!
//! The Go side is `interop/go/src/smuxpeer`, built by `interop/build.sh` (needs
//! `apt-get install golang-go golang-github-xtaci-smux-dev`). If the build fails, every test
//! here fails with the build output; nothing is skipped.
//!
//! Run: `cargo test -p rsmux --test interop_go` (or `cargo nextest run -p rsmux --test
//! interop_go`). Test names are `<scenario>::v1` / `<scenario>::v2`.
//!
//! Go 1.5.16 quirks these tests respect (SPEC §17): it has no `CloseWrite`, and a v2 Go
//! writer that is blocked on its window gives up with EOF when the peer's FIN arrives — so
//! rsmux only half-closes a stream towards a Go echo server after it has read the whole echo.

mod interop_support;

use std::{collections::BTreeSet, io, net::SocketAddr, sync::Arc, time::Duration};

use interop_support::{fnv1a64, pattern, run_go, within, Counting, GoPeer, GoRun};
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use rsmux::{Config, Error, Session, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinSet,
    time::Instant,
};

const SHORT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(90);

/// Go's initial v2 peer window (SPEC §5): what a v2 sender may have in flight before the
/// first UPD.
const INITIAL_WINDOW: u64 = 262_144;

fn cfg(version: u8) -> Config {
    Config::default().with_version(rsmux::Version::try_from(version).unwrap())
}

fn v(version: u8) -> &'static str {
    match version {
        1 => "1",
        2 => "2",
        _ => unreachable!(),
    }
}

async fn dial(peer: &GoPeer) -> TcpStream {
    let tcp = within(
        SHORT,
        "TCP connect to the Go peer",
        TcpStream::connect(peer.addr),
    )
    .await
    .expect("TCP connect to the Go peer");
    tcp.set_nodelay(true).unwrap();
    tcp
}

async fn client(peer: &GoPeer, config: Config) -> Session {
    Session::client(dial(peer).await, config).expect("Session::client")
}

async fn open(session: &Session) -> Stream {
    within(SHORT, "open_stream", session.open_stream())
        .await
        .expect("open_stream")
}

/// Writes `msg`, reads the same number of bytes back and compares.
async fn echo_once(s: &mut Stream, msg: &[u8]) {
    within(SHORT, "echo write", s.write_all(msg))
        .await
        .expect("echo write");
    let mut buf = vec![0u8; msg.len()];
    within(SHORT, "echo read", s.read_exact(&mut buf))
        .await
        .expect("echo read");
    assert_eq!(buf, msg, "echo mismatch");
}

/// Half-closes `s` and expects the peer to answer with EOF and nothing else.
async fn finish(s: &mut Stream) {
    within(SHORT, "stream shutdown (FIN)", s.shutdown())
        .await
        .expect("shutdown");
    let mut rest = Vec::new();
    within(SHORT, "EOF after our FIN", s.read_to_end(&mut rest))
        .await
        .expect("read_to_end after FIN");
    assert!(
        rest.is_empty(),
        "{} unexpected bytes before EOF",
        rest.len()
    );
}

/// Polls `num_streams()` until it is 0 (2 s at most).
async fn assert_no_streams_left(session: &Session) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while session.num_streams() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(session.num_streams(), 0, "streams left in the session");
}

/// Declares `NAME::v1` and `NAME::v2` tests calling `async fn NAME(version: u8)`.
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v1() {
                super::$name(1).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v2() {
                super::$name(2).await
            }
        }
    )*};
}

both_versions!(
    client_echo,
    client_parallel,
    client_bulk,
    client_bulk_tuned,
    client_accepts_server_opened_streams,
    client_writer_vs_slow_go_reader,
    client_slow_reader_vs_go_writer,
    client_idle_survives_go_keepalive,
    go_keepalive_closes_silent_rsmux,
    go_closes_session,
    server_echo,
    server_parallel,
    server_bulk,
    server_bulk_tuned,
    server_halfclose,
);

// ---------------------------------------------------------------------------------------
// rsmux client vs Go server

/// One stream, 100 "helloN" round trips (upstream TestEcho).
async fn client_echo(ver: u8) {
    let peer = GoPeer::start("echo", &["-ver", v(ver), "-quiet"]).await;
    let session = client(&peer, cfg(ver)).await;
    let mut s = open(&session).await;
    assert_eq!(s.id(), 3, "first client stream id");
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let msg = format!("hello{i}");
        within(SHORT, "write", s.write_all(msg.as_bytes()))
            .await
            .unwrap();
        let mut buf = vec![0u8; msg.len()];
        within(SHORT, "read echo", s.read_exact(&mut buf))
            .await
            .unwrap();
        sent.extend_from_slice(msg.as_bytes());
        got.extend_from_slice(&buf);
    }
    assert_eq!(sent, got);
    // the Go echo loop sees EOF after our FIN and closes its stream: we see EOF
    finish(&mut s).await;
    drop(s);
    assert_no_streams_left(&session).await;
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
    assert!(session.is_closed());
}

/// 1000 streams x 100 messages concurrently (upstream TestParallel).
async fn client_parallel(ver: u8) {
    const STREAMS: u32 = 1000;
    const MSGS: u32 = 100;
    let peer = GoPeer::start("echo", &["-ver", v(ver), "-quiet"]).await;
    let session = client(&peer, cfg(ver)).await;
    let mut set = JoinSet::new();
    for i in 0..STREAMS {
        let session = session.clone();
        set.spawn(async move {
            let mut s = session
                .open_stream()
                .await
                .map_err(|e| format!("stream #{i}: open: {e}"))?;
            let id = s.id().get();
            let mut buf = [0u8; 64];
            for j in 0..MSGS {
                let msg = format!("stream {i} message {j}");
                let len = msg.len();
                s.write_all(msg.as_bytes())
                    .await
                    .map_err(|e| format!("stream {id}: write {j}: {e}"))?;
                s.read_exact(&mut buf[..len])
                    .await
                    .map_err(|e| format!("stream {id}: read {j}: {e}"))?;
                if &buf[..len] != msg.as_bytes() {
                    return Err(format!(
                        "stream {id}: message {j}: got {:?}",
                        String::from_utf8_lossy(&buf[..len])
                    ));
                }
            }
            s.shutdown()
                .await
                .map_err(|e| format!("stream {id}: shutdown: {e}"))?;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .await
                .map_err(|e| format!("stream {id}: read to EOF: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("stream {id}: {} extra bytes", rest.len()));
            }
            Ok::<u32, String>(id)
        });
    }
    let ids = within(LONG, "1000 streams x 100 echo messages", async {
        let mut ids = BTreeSet::new();
        while let Some(r) = set.join_next().await {
            let id = r
                .expect("stream task panicked")
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(ids.insert(id), "stream id {id} used twice");
        }
        ids
    })
    .await;
    assert_eq!(ids.len(), STREAMS as usize);
    assert!(ids.iter().all(|id| id % 2 == 1), "client ids must be odd");
    assert_no_streams_left(&session).await;
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// 64 MiB of random data in random-size writes (1..=1 MiB), echoed back and read in
/// random-size reads concurrently, byte-exact (upstream TestRandomLengthRandomDataTransfer,
/// scaled down).
async fn client_bulk(ver: u8) {
    bulk_via_go_echo(ver, 64 << 20, cfg(ver), &[]).await;
}

/// Like `client_bulk` (16 MiB) with non-default, mismatched settings on both sides: rsmux
/// sends 65535-byte frames and advertises a 1 MiB stream window (8 MiB budget); Go sends
/// 4 KiB frames, advertises a 128 KiB window and has a 1 MiB receive budget.
async fn client_bulk_tuned(ver: u8) {
    let config = Config::default()
        .with_version(rsmux::Version::try_from(ver).unwrap())
        .with_max_frame_size(65535)
        .with_max_stream_buffer(1 << 20)
        .with_max_receive_buffer(8 << 20);
    let go = [
        "-framesize",
        "4096",
        "-streambuf",
        "131072",
        "-smuxbuf",
        "1048576",
    ];
    bulk_via_go_echo(ver, 16 << 20, config, &go).await;
}

async fn bulk_via_go_echo(ver: u8, total: usize, config: Config, go_args: &[&str]) {
    let mut args = vec!["-ver", v(ver), "-quiet"];
    args.extend_from_slice(go_args);
    let peer = GoPeer::start("echo", &args).await;
    let session = client(&peer, config).await;
    let mut data = vec![0u8; total];
    StdRng::seed_from_u64(0xb01c + u64::from(ver) + total as u64).fill_bytes(&mut data);
    let data = Arc::new(data);
    let (mut r, mut w) = open(&session).await.into_split();

    let wdata = data.clone();
    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(7 * u64::from(ver) + 1);
        let (mut off, mut writes) = (0usize, 0u32);
        while off < total {
            let n = rng.gen_range(1..=1usize << 20).min(total - off);
            w.write_all(&wdata[off..off + n]).await?;
            off += n;
            writes += 1;
        }
        // keep `w` (dropping it would send FIN; see the module docs)
        Ok::<_, io::Error>((w, writes))
    });

    let mut got = vec![0u8; total];
    let started = Instant::now();
    within(LONG, "reading back the echoed random data", async {
        let mut rng = StdRng::seed_from_u64(13 * u64::from(ver) + 5);
        let mut off = 0usize;
        while off < total {
            let n = rng.gen_range(1..=1usize << 20).min(total - off);
            r.read_exact(&mut got[off..off + n])
                .await
                .unwrap_or_else(|e| panic!("read at offset {off}: {e}"));
            off += n;
        }
    })
    .await;
    let (mut w, writes) = within(SHORT, "writer task", writer)
        .await
        .expect("writer task panicked")
        .expect("write");
    eprintln!(
        "v{ver}: {} MiB echoed in {writes} writes in {:?}",
        total >> 20,
        started.elapsed()
    );
    if got != *data {
        let at = got.iter().zip(data.iter()).position(|(a, b)| a != b);
        panic!("echoed data differs from sent data, first at byte {at:?}");
    }
    within(SHORT, "shutdown", w.shutdown()).await.unwrap();
    let mut rest = Vec::new();
    within(SHORT, "EOF", r.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// The Go server opens 20 streams itself, writes 1 MiB of pattern(id) on each and closes
/// them: rsmux accepts them (ids 2, 4, ..., 40) and reads every byte and then EOF.
async fn client_accepts_server_opened_streams(ver: u8) {
    const N: u32 = 20;
    const M: usize = 1 << 20;
    let mut peer = GoPeer::start(
        "opener",
        &[
            "-ver",
            v(ver),
            "-quiet",
            "-streams",
            "20",
            "-bytes",
            "1048576",
        ],
    )
    .await;
    let session = client(&peer, cfg(ver)).await;
    let mut set = JoinSet::new();
    for i in 0..N {
        let mut s = within(
            SHORT,
            "accept_stream (server-opened)",
            session.accept_stream(),
        )
        .await
        .unwrap_or_else(|e| panic!("accept_stream #{i}: {e}"));
        set.spawn(async move {
            let mut buf = Vec::with_capacity(M);
            let res = s.read_to_end(&mut buf).await;
            (s.id().get(), res.map(|_| buf))
        });
    }
    let ids = within(LONG, "reading the server-opened streams to EOF", async {
        let mut ids = BTreeSet::new();
        while let Some(r) = set.join_next().await {
            let (id, res) = r.expect("reader task panicked");
            let buf = res.unwrap_or_else(|e| panic!("stream {id}: read: {e}"));
            assert_eq!(buf.len(), M, "stream {id}: byte count");
            assert!(buf == pattern(id, M), "stream {id}: data differs");
            ids.insert(id);
        }
        ids
    })
    .await;
    let want: BTreeSet<u32> = (1..=N).map(|i| 2 * i).collect();
    assert_eq!(ids, want, "server stream ids");
    let line = peer.expect_line("opener done", SHORT).await;
    assert!(line.ends_with(" 0 failed"), "Go opener: {line}");
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// rsmux writes 2 MiB to a Go reader that first pauses 1.5 s and then reads 4 KiB per ms.
/// v2: during the pause at most the initial window (256 KiB) may be on the wire; the writer
/// must then complete, and Go must count exactly the bytes sent (count + FNV-1a answer).
async fn client_writer_vs_slow_go_reader(ver: u8) {
    const TOTAL: usize = 2 << 20;
    let peer = GoPeer::start(
        "slowreader",
        &[
            "-ver",
            v(ver),
            "-quiet",
            "-pause-ms",
            "1500",
            "-chunk",
            "4096",
            "-delay-ms",
            "1",
        ],
    )
    .await;
    let (io, wire) = Counting::new(dial(&peer).await);
    let session = Session::client(io, cfg(ver)).expect("Session::client");
    let s = open(&session).await;
    let data = pattern(s.id().get(), TOTAL);
    let hash = fnv1a64(&data);
    let (mut r, mut w) = s.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        let wrote = started.elapsed();
        w.shutdown().await?;
        Ok::<_, io::Error>((w, wrote))
    });

    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent = wire.written();
    eprintln!("v{ver}: {sent} bytes on the wire while the Go reader pauses");
    if ver == 2 {
        assert!(
            (INITIAL_WINDOW..=INITIAL_WINDOW + 1024).contains(&sent),
            "v2 writer put {sent} bytes on the wire before the Go reader read anything; \
             expected the initial window {INITIAL_WINDOW} plus frame headers"
        );
    }
    let (_w, wrote) = within(
        Duration::from_secs(30),
        "rsmux writer facing a slow Go reader",
        writer,
    )
    .await
    .expect("writer task panicked")
    .expect("write to slow Go reader");
    eprintln!("v{ver}: 2 MiB written in {wrote:?}");
    let mut answer = [0u8; 16];
    within(SHORT, "Go slowreader's count", r.read_exact(&mut answer))
        .await
        .expect("reading Go's answer");
    let count = u64::from_le_bytes(answer[..8].try_into().unwrap());
    let got_hash = u64::from_le_bytes(answer[8..].try_into().unwrap());
    assert_eq!(count, TOTAL as u64, "bytes counted by the Go reader");
    assert_eq!(got_hash, hash, "FNV-1a of the bytes the Go reader saw");
    let mut rest = Vec::new();
    within(SHORT, "EOF", r.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// A Go writer sends 2 MiB on a stream rsmux opened; rsmux does not read for 800 ms, then
/// reads 4 KiB per ms. v2: only the initial window may arrive while rsmux does not read, and
/// rsmux's UPDs must keep the Go writer going until it is done.
async fn client_slow_reader_vs_go_writer(ver: u8) {
    const TOTAL: usize = 2 << 20;
    let mut peer = GoPeer::start(
        "slowwriter",
        &["-ver", v(ver), "-quiet", "-bytes", "2097152"],
    )
    .await;
    let (io, wire) = Counting::new(dial(&peer).await);
    let session = Session::client(io, cfg(ver)).expect("Session::client");
    let mut s = open(&session).await;
    let id = s.id().get();
    // the SYN alone makes the Go side accept and start writing
    tokio::time::sleep(Duration::from_millis(800)).await;
    let received = wire.read();
    eprintln!("v{ver}: {received} bytes received while not reading");
    if ver == 2 {
        assert!(
            (INITIAL_WINDOW..=INITIAL_WINDOW + 1024).contains(&received),
            "Go v2 writer sent {received} bytes before rsmux read anything; expected the \
             initial window {INITIAL_WINDOW} plus frame headers (did rsmux send an early UPD?)"
        );
    }
    let started = Instant::now();
    let mut got = Vec::with_capacity(TOTAL);
    within(
        Duration::from_secs(30),
        "slowly reading 2 MiB from a Go writer",
        async {
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.expect("slow read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                assert!(got.len() <= TOTAL, "more data than the Go writer sent");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        },
    )
    .await;
    eprintln!("v{ver}: read 2 MiB slowly in {:?}", started.elapsed());
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern(id, TOTAL), "data differs");
    let line = peer.expect_line("wrote", SHORT).await;
    assert_eq!(
        line.split(" in ").next().unwrap(),
        format!("wrote {TOTAL} bytes on stream {id}")
    );
    drop(s);
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// Go peer: keepalive interval 1 s, timeout 2 s. rsmux (NOP every 1 s, timeout 3 s) stays
/// idle for 6.5 s (> 3x Go's timeout); the session must survive on both sides.
async fn client_idle_survives_go_keepalive(ver: u8) {
    let mut peer = GoPeer::start(
        "idle",
        &["-ver", v(ver), "-keepalive", "1", "-keepalive-timeout", "2"],
    )
    .await;
    let config = Config::default()
        .with_version(rsmux::Version::try_from(ver).unwrap())
        .with_keep_alive_interval(Duration::from_secs(1))
        .with_keep_alive_timeout(Duration::from_secs(3));
    let session = client(&peer, config).await;
    let mut s = open(&session).await;
    echo_once(&mut s, b"before idle").await;
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let lines = peer.lines_so_far();
    assert!(
        !lines.iter().any(|l| l.starts_with("closed")),
        "the Go peer closed the idle session: {lines:?}"
    );
    assert!(
        !session.is_closed(),
        "the rsmux session died while idle: {:?}",
        session.close_reason()
    );
    echo_once(&mut s, b"after idle").await;
    finish(&mut s).await;
    within(SHORT, "session close", session.close())
        .await
        .expect("close");
}

/// Control for the test above: with rsmux keepalive disabled, the Go peer (timeout 2 s)
/// closes the idle session, and rsmux notices through the socket EOF.
async fn go_keepalive_closes_silent_rsmux(ver: u8) {
    let mut peer = GoPeer::start(
        "idle",
        &["-ver", v(ver), "-keepalive", "1", "-keepalive-timeout", "2"],
    )
    .await;
    let config = Config::default()
        .with_version(rsmux::Version::try_from(ver).unwrap())
        .with_keep_alive_disabled(true);
    let session = client(&peer, config).await;
    let mut s = open(&session).await;
    echo_once(&mut s, b"ping").await;
    let started = Instant::now();
    within(
        Duration::from_secs(8),
        "rsmux noticing that the Go peer closed the session on keepalive timeout",
        session.closed(),
    )
    .await;
    eprintln!(
        "v{ver}: session ended after {:?}: {:?}",
        started.elapsed(),
        session.close_reason()
    );
    let line = peer.expect_line("closed", SHORT).await;
    assert!(line.contains("closed pipe"), "Go peer: {line}");
    assert!(session.is_closed());
    let accepted = within(
        SHORT,
        "accept_stream on a dead session",
        session.accept_stream(),
    )
    .await;
    assert!(
        accepted.is_err(),
        "accept_stream succeeded on a dead session"
    );
}

/// The Go server closes the whole session after 300 ms (no FIN, just the TCP close): rsmux
/// must notice — accept_stream fails, closed() completes, reads end, open fails.
async fn go_closes_session(ver: u8) {
    let mut peer = GoPeer::start("closer", &["-ver", v(ver), "-quiet", "-after-ms", "300"]).await;
    let session = client(&peer, cfg(ver)).await;
    let mut s = open(&session).await;
    echo_once(&mut s, b"ping").await;
    let err = within(
        SHORT,
        "accept_stream after the Go peer closed the session",
        session.accept_stream(),
    )
    .await
    .expect_err("accept_stream must fail once the Go peer closed the session");
    eprintln!("v{ver}: accept_stream: {err}");
    within(
        SHORT,
        "session.closed() after the Go peer closed",
        session.closed(),
    )
    .await;
    assert!(session.is_closed());
    assert!(session.close_reason().is_some());
    let mut buf = [0u8; 16];
    let read = within(SHORT, "stream read on a dead session", s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "read on a dead session returned data: {read:?}"
    );
    let reopened = within(
        SHORT,
        "open_stream on a dead session",
        session.open_stream(),
    )
    .await;
    assert!(reopened.is_err(), "open_stream succeeded on a dead session");
    peer.expect_line("closed session", SHORT).await;
}

// ---------------------------------------------------------------------------------------
// version mismatch

mod version_mismatch {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rsmux_v2_vs_go_v1() {
        super::version_mismatch(2, 1).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rsmux_v1_vs_go_v2() {
        super::version_mismatch(1, 2).await
    }
}

async fn version_mismatch(ours: u8, theirs: u8) {
    // (a) The Go server opens a stream: its first frame (SYN, VERSION=theirs) must make the
    //     rsmux client fail with a protocol error.
    {
        let peer = GoPeer::start(
            "opener",
            &["-ver", v(theirs), "-quiet", "-streams", "1", "-bytes", "16"],
        )
        .await;
        let session = client(&peer, cfg(ours)).await;
        let err = within(
            SHORT,
            "accept_stream on a version-mismatched session",
            session.accept_stream(),
        )
        .await
        .expect_err("accept_stream must fail when the versions differ");
        assert!(
            matches!(err, Error::Protocol(_)),
            "expected Error::Protocol, got {err:?}"
        );
        assert_eq!(
            io::Error::from(err.clone()).kind(),
            io::ErrorKind::InvalidData
        );
        eprintln!("rsmux v{ours} vs Go v{theirs} (server-opened stream): {err}");
        within(SHORT, "closed() after the protocol error", session.closed()).await;
    }
    // (b) rsmux opens a stream and talks: the Go session's receive loop stops at our first
    //     frame, but the session stays open (smux does not close on protocol errors; the
    //     Go echo role is told to hold it instead of closing at once, which would only show
    //     up here as a connection reset) and keeps sending NOPs every 1 s, which must fail
    //     our read with io::ErrorKind::InvalidData.
    {
        let peer = GoPeer::start(
            "echo",
            &[
                "-ver",
                v(theirs),
                "-quiet",
                "-keepalive",
                "1",
                "-keepalive-timeout",
                "30",
                "-hold-on-error",
                "10",
            ],
        )
        .await;
        let session = client(&peer, cfg(ours)).await;
        let mut s = open(&session).await;
        let res = within(SHORT, "stream I/O on a version-mismatched session", async {
            s.write_all(b"hello").await?;
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await?;
            Ok::<_, io::Error>(b)
        })
        .await;
        let e = res.expect_err("echo must fail when the versions differ");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "stream error: {e}");
        assert!(
            matches!(session.close_reason(), Some(Error::Protocol(_))),
            "close reason: {:?}",
            session.close_reason()
        );
        eprintln!("rsmux v{ours} vs Go v{theirs} (stream read): {e}");
    }
    // (c) rsmux server, Go client: the Go client's SYN must make accept_stream fail with a
    //     protocol error, and the Go client must fail.
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let session = Session::server(tcp, cfg(ours)).unwrap();
            let res = session.accept_stream().await;
            (session, res.map(|s| s.id()))
        });
        let go = run_go(
            &[
                "client",
                "-ver",
                v(theirs),
                "-connect",
                &addr,
                "-scenario",
                "echo",
                "-timeout",
                "5",
            ],
            Duration::from_secs(20),
        )
        .await;
        assert!(
            !go.success,
            "the Go client must fail against a v{ours} server: {go:?}"
        );
        let (_session, res) = within(SHORT, "rsmux server accept", server)
            .await
            .expect("server task panicked");
        let err = res.expect_err("accept_stream must fail when the versions differ");
        assert!(
            matches!(err, Error::Protocol(_)),
            "expected Error::Protocol, got {err:?}"
        );
        eprintln!(
            "rsmux server v{ours} vs Go client v{theirs}: {err}; Go: {}",
            go.stdout.trim()
        );
    }
}

// ---------------------------------------------------------------------------------------
// rsmux server vs Go client

#[derive(Clone)]
enum Handler {
    /// Echo until EOF, then half-close.
    Echo,
    /// Read u64 LE N, write N bytes of pattern(id), half-close, read to EOF and report.
    HalfClose(mpsc::UnboundedSender<Result<(u32, Vec<u8>), String>>),
}

/// An in-process rsmux server on 127.0.0.1:0; everything is aborted when it is dropped.
struct RustServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn rust_server(config: Config, handler: Handler) -> RustServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut sessions = JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).ok();
            let session = Session::server(tcp, config.clone()).expect("Session::server");
            let handler = handler.clone();
            sessions.spawn(async move {
                let mut streams = JoinSet::new();
                while let Ok(s) = session.accept_stream().await {
                    streams.spawn(handle_stream(s, handler.clone()));
                    while streams.try_join_next().is_some() {}
                }
                while streams.join_next().await.is_some() {}
            });
            while sessions.try_join_next().is_some() {}
        }
    });
    RustServer { addr, task }
}

async fn handle_stream(mut s: Stream, handler: Handler) {
    match handler {
        Handler::Echo => {
            let mut buf = vec![0u8; 65536];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            let _ = s.shutdown().await;
        }
        Handler::HalfClose(tx) => {
            let res = async {
                let id = s.id().get();
                let mut req = [0u8; 8];
                s.read_exact(&mut req)
                    .await
                    .map_err(|e| format!("reading the request: {e}"))?;
                let n = u64::from_le_bytes(req);
                if n > 64 << 20 {
                    return Err(format!("absurd request {n}"));
                }
                s.write_all(&pattern(id, n as usize))
                    .await
                    .map_err(|e| format!("writing {n} bytes: {e}"))?;
                s.shutdown()
                    .await
                    .map_err(|e| format!("shutdown (FIN): {e}"))?;
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.map_err(|e| {
                    format!("reading after our FIN ({} bytes so far): {e}", rest.len())
                })?;
                Ok((id, rest))
            }
            .await;
            let _ = tx.send(res);
        }
    }
}

/// Runs the Go client `scenario` against an rsmux echo server.
async fn go_client_vs_rsmux(ver: u8, config: Config, scenario: &str, extra: &[&str]) -> GoRun {
    let server = rust_server(config, Handler::Echo).await;
    let addr = server.addr.to_string();
    let mut args = vec![
        "client",
        "-ver",
        v(ver),
        "-quiet",
        "-connect",
        &addr,
        "-scenario",
        scenario,
        "-timeout",
        "80",
    ];
    args.extend_from_slice(extra);
    let go = run_go(&args, Duration::from_secs(100)).await;
    assert!(
        go.success && go.stdout.lines().any(|l| l == format!("OK {scenario}")),
        "Go client scenario {scenario} (v{ver}) against the rsmux server failed: {go:?}"
    );
    go
}

async fn server_echo(ver: u8) {
    go_client_vs_rsmux(ver, cfg(ver), "echo", &[]).await;
}

async fn server_parallel(ver: u8) {
    go_client_vs_rsmux(
        ver,
        cfg(ver),
        "parallel",
        &["-streams", "1000", "-msgs", "100"],
    )
    .await;
}

async fn server_bulk(ver: u8) {
    let seed = if ver == 1 { "11" } else { "22" };
    go_client_vs_rsmux(
        ver,
        cfg(ver),
        "bulk",
        &["-bytes", "67108864", "-seed", seed],
    )
    .await;
}

/// 16 MiB bulk with mismatched settings: the Go client sends 65535-byte frames and
/// advertises a 1 MiB window; the rsmux server sends 4 KiB frames, advertises 128 KiB and
/// has a 1 MiB receive budget.
async fn server_bulk_tuned(ver: u8) {
    let config = Config::default()
        .with_version(rsmux::Version::try_from(ver).unwrap())
        .with_max_frame_size(4096)
        .with_max_stream_buffer(128 << 10)
        .with_max_receive_buffer(1 << 20);
    let go = [
        "-bytes",
        "16777216",
        "-seed",
        "33",
        "-framesize",
        "65535",
        "-streambuf",
        "1048576",
        "-smuxbuf",
        "8388608",
    ];
    go_client_vs_rsmux(ver, config, "bulk", &go).await;
}

/// Go 1.5.16 cannot half-close, so the half-close is rsmux's: the server writes 1 MiB,
/// sends FIN and keeps reading; the Go client reads to EOF, then still writes 16 KiB, which
/// the rsmux server must receive before the Go FIN.
async fn server_halfclose(ver: u8) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = rust_server(cfg(ver), Handler::HalfClose(tx)).await;
    let addr = server.addr.to_string();
    let go = run_go(
        &[
            "client",
            "-ver",
            v(ver),
            "-quiet",
            "-connect",
            &addr,
            "-scenario",
            "halfclose",
            "-bytes",
            "1048576",
            "-trailer",
            "16384",
            "-timeout",
            "30",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(
        go.success && go.stdout.lines().any(|l| l == "OK halfclose"),
        "Go client halfclose (v{ver}) against the rsmux server failed: {go:?}"
    );
    let (id, trailer) = within(SHORT, "the rsmux half-close handler", rx.recv())
        .await
        .expect("the half-close handler did not run")
        .unwrap_or_else(|e| panic!("rsmux half-close handler: {e}"));
    assert_eq!(trailer.len(), 16384, "bytes received after our FIN");
    assert!(trailer == pattern(id + 1, 16384), "trailer data differs");
    drop(server);
}
