//! `rsmux echo` driven by rsmux library clients, protocol versions 1 and 2.

mod common;

use std::time::Duration;

use common::{pattern, runtime, within, Proc};
use rsmux::{Config, Session};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends `data` on a new stream in uneven writes while reading the echo, half-closes, and
/// checks that exactly `data` comes back followed by EOF.
async fn echo_once(session: &Session, data: Vec<u8>) {
    let stream = session.open_stream().await.expect("open_stream");
    let (mut rd, mut wr) = stream.into_split();
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        let mut off = 0;
        let mut step = 1;
        while off < data.len() {
            let end = (off + step).min(data.len());
            wr.write_all(&data[off..end]).await.expect("write");
            off = end;
            step = step * 3 % 70_001 + 1;
        }
        wr.shutdown().await.expect("shutdown");
    });
    let mut got = Vec::with_capacity(expected.len());
    rd.read_to_end(&mut got).await.expect("read to EOF");
    writer.await.unwrap();
    assert_eq!(got.len(), expected.len(), "echo length");
    assert!(got == expected, "echo differs");
}

async fn client(addr: std::net::SocketAddr, version: u8) -> Session {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let config = Config::default().with_version(rsmux::Version::try_from(version).unwrap());
    Session::client(tcp, config).expect("session")
}

fn echo_roundtrips(version: u8) {
    let v = version.to_string();
    let mut server = Proc::rsmux(&["echo", "--listen", "127.0.0.1:0", "--smuxver", &v]);
    let addr = server.addr;
    runtime().block_on(within(Duration::from_secs(40), "echo", async move {
        // Two sessions at once, several streams each, plus an empty stream.
        let mut tasks = Vec::new();
        for s in 0..2u64 {
            let session = client(addr, version).await;
            for i in 0..6u64 {
                let session = session.clone();
                let len = 1 << 20 | (i as usize * 4099);
                tasks.push(tokio::spawn(async move {
                    echo_once(&session, pattern(s * 100 + i, len)).await;
                }));
            }
            let session2 = session.clone();
            tasks.push(tokio::spawn(async move {
                echo_once(&session2, Vec::new()).await;
            }));
        }
        for t in tasks {
            t.await.expect("echo task");
        }
        // An idle stream stays open; it still echoes afterwards.
        let session = client(addr, version).await;
        let mut st = session.open_stream().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        st.write_all(b"late").await.unwrap();
        let mut four = [0u8; 4];
        st.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"late");
        st.shutdown().await.unwrap();
        assert_eq!(st.read(&mut four).await.unwrap(), 0, "EOF after our FIN");
    }));
    // SIGTERM stops it gracefully.
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "exit status after SIGTERM; stderr: {}",
        server.stderr()
    );
}

#[test]
fn echo_v1() {
    echo_roundtrips(1);
}

#[test]
fn echo_v2() {
    echo_roundtrips(2);
}

#[test]
fn sigint_with_open_sessions_exits_zero() {
    // No grace: the first signal closes sessions with open streams at once.
    let mut server = Proc::rsmux(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--keepalive",
        "0",
        "--drain-timeout",
        "0",
    ]);
    let addr = server.addr;
    let rt = runtime();
    let session = rt.block_on(async {
        let s = client(addr, 1).await;
        let mut st = s.open_stream().await.unwrap();
        st.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        st.read_exact(&mut b).await.unwrap();
        (s, st)
    });
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    // The session was closed by the server.
    rt.block_on(within(Duration::from_secs(10), "session end", async {
        session.0.closed().await;
    }));
}

#[test]
fn version_mismatch_does_not_kill_the_server() {
    let server = Proc::rsmux(&["echo", "--listen", "127.0.0.1:0", "--smuxver", "2"]);
    let addr = server.addr;
    runtime().block_on(within(Duration::from_secs(20), "mismatch", async move {
        // A v1 client is refused (its session dies) ...
        let bad = client(addr, 1).await;
        let mut st = bad.open_stream().await.unwrap();
        let _ = st.write_all(b"hello").await;
        let mut buf = [0u8; 8];
        assert!(!matches!(st.read(&mut buf).await, Ok(n) if n > 0));
        // ... and a v2 client is served afterwards.
        let good = client(addr, 2).await;
        echo_once(&good, pattern(7, 100_000)).await;
    }));
    // The refusal is logged at the default level (warn), naming the mismatch.
    assert!(
        server.wait_stderr(
            "does not match the session's version",
            Duration::from_secs(10)
        ),
        "no warning about the version mismatch: {}",
        server.stderr()
    );
}
