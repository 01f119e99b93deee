//! Graceful stop of `rsmux echo` and `rsmux tunnel server|client`: the first SIGINT stops
//! the listener and drains (open streams go on to their end, new connections are refused,
//! exit 0 once drained); a second one stops at once; `--drain-timeout` bounds the wait.

mod common;

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use common::{pattern, runtime, tcp_echo_target, tunnel_client, tunnel_server, within, Proc};
use rsmux::{Config, Session, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Writes `data` on `io` and reads the same number of bytes back, checking them.
async fn echoed<T: AsyncReadExt + AsyncWriteExt + Unpin>(io: &mut T, data: &[u8]) {
    io.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    io.read_exact(&mut back).await.expect("the echo");
    assert!(back == data, "echo differs");
}

/// Connecting to `addr` is refused: nothing listens there any more.
async fn refused(addr: SocketAddr) {
    match TcpStream::connect(addr).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr} still accepts connections while draining"),
    }
}

/// Sends SIGINT to `p` and waits until it drains its one session.
fn starts_draining(p: &Proc) {
    p.signal("INT");
    assert!(p.wait_stderr("draining 1 session", LIMIT), "{}", p.stderr());
}

/// `draining` still runs while `io`, its last stream, is open; `io` echoes once more and
/// ends with a clean EOF after our shutdown; then `draining` exits 0, every session drained.
fn exits_once_the_last_stream_ends<T>(rt: &tokio::runtime::Runtime, draining: &mut Proc, mut io: T)
where
    T: AsyncReadExt + AsyncWriteExt + Unpin + Send + 'static,
{
    assert!(draining.is_running(), "{}", draining.stderr());
    rt.block_on(within(LIMIT, "last echo and EOF", async move {
        echoed(&mut io, b"still here").await;
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }));
    assert_eq!(draining.wait_exit(LIMIT), Some(0), "{}", draining.stderr());
    assert!(draining.stderr().contains("drained: every session closed"));
}

/// `rsmux echo` and one smux session to it with one stream that has echoed something.
fn echo_with_a_stream(rt: &tokio::runtime::Runtime, extra: &[&str]) -> (Proc, Session, Stream) {
    let mut args = vec!["echo", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let echo = Proc::rsmux(&args);
    let addr = echo.addr;
    let (session, stream) = rt.block_on(within(LIMIT, "first stream", async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let session = Session::client(tcp, Config::default()).unwrap();
        let mut stream = session.open_stream().await.unwrap();
        echoed(&mut stream, b"before the signal").await;
        (session, stream)
    }));
    (echo, session, stream)
}

#[test]
fn echo_drains_on_the_first_signal() {
    let rt = runtime();
    let (mut echo, session, mut stream) = echo_with_a_stream(&rt, &[]);
    starts_draining(&echo);
    let addr = echo.addr;
    let stream = rt.block_on(within(LIMIT, "while draining", async move {
        // The open stream keeps working.
        echoed(&mut stream, &pattern(1, 200_000)).await;
        // A new connection is refused, and a new stream on the session is closed at once.
        refused(addr).await;
        let mut late = session.open_stream().await.unwrap();
        let _ = late.write_all(b"too late").await;
        let mut buf = [0u8; 16];
        assert!(
            !matches!(late.read(&mut buf).await, Ok(n) if n > 0),
            "a stream opened while draining was echoed"
        );
        stream
    }));
    // Still running: the first stream is open.
    exits_once_the_last_stream_ends(&rt, &mut echo, stream);
}

#[test]
fn a_second_signal_stops_at_once() {
    let rt = runtime();
    let (mut echo, _session, _stream) = echo_with_a_stream(&rt, &[]);
    echo.signal("INT");
    assert!(echo.wait_stderr("draining", LIMIT), "{}", echo.stderr());
    echo.signal("TERM");
    // The stream is still open, and the drain timeout is 30 s.
    assert_eq!(echo.wait_exit(LIMIT), Some(0), "{}", echo.stderr());
    assert!(
        echo.stderr()
            .contains("SIGTERM received again: stopping at once"),
        "{}",
        echo.stderr()
    );
}

#[test]
fn the_drain_timeout_bounds_the_wait() {
    let rt = runtime();
    let (mut echo, _session, _stream) = echo_with_a_stream(&rt, &["--drain-timeout", "0.5"]);
    echo.signal("TERM");
    // The stream stays open: the process ends by itself after the grace.
    assert_eq!(echo.wait_exit(LIMIT), Some(0), "{}", echo.stderr());
    assert!(
        echo.stderr()
            .contains("1 session(s) still had open streams after 0.5s"),
        "{}",
        echo.stderr()
    );
}

/// A tunnel (server and client) to an echo target, and one connection through it that has
/// echoed something.
fn tunnel_with_a_connection(rt: &tokio::runtime::Runtime) -> (Proc, Proc, TcpStream) {
    let target = rt.block_on(tcp_echo_target()).to_string();
    let server = tunnel_server(&target, &[]);
    let client = tunnel_client(&server, &[]);
    let addr = client.addr;
    let tcp = rt.block_on(within(LIMIT, "first connection", async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        echoed(&mut tcp, b"before the signal").await;
        tcp
    }));
    (server, client, tcp)
}

/// The connection goes on while `draining` drains, new connections to it are refused, and
/// once the connection ends it exits 0.
fn connection_outlives_the_drain(
    rt: &tokio::runtime::Runtime,
    draining: &mut Proc,
    tcp: TcpStream,
) {
    let addr = draining.addr;
    let tcp = rt.block_on(within(LIMIT, "while draining", async move {
        let mut tcp = tcp;
        echoed(&mut tcp, &pattern(2, 300_000)).await;
        refused(addr).await;
        tcp
    }));
    exits_once_the_last_stream_ends(rt, draining, tcp);
}

#[test]
fn tunnel_server_drains_on_the_first_signal() {
    let rt = runtime();
    let (mut server, _client, tcp) = tunnel_with_a_connection(&rt);
    starts_draining(&server);
    connection_outlives_the_drain(&rt, &mut server, tcp);
}

#[test]
fn tunnel_client_drains_on_the_first_signal() {
    let rt = runtime();
    let (_server, mut client, tcp) = tunnel_with_a_connection(&rt);
    starts_draining(&client);
    connection_outlives_the_drain(&rt, &mut client, tcp);
}
