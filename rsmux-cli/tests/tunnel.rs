//! `rsmux tunnel client` → `rsmux tunnel server` → a TCP target, with real TCP connections.

mod common;

use std::time::Duration;

use common::{
    dead_addr, echo_through, only_the_stream_was_refused, pattern, request_eof_target,
    request_response, runtime, tcp_echo_target, tunnel, within, Proc, Shutdown,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Response size of the request-then-EOF target.
const RESPONSE: usize = 2 << 20;

#[test]
fn sixteen_mib_byte_exact_v1_and_v2() {
    let rt = runtime();
    for version in ["1", "2"] {
        let target = rt.block_on(tcp_echo_target());
        let flags = ["--smuxver", version];
        let (_server, client) = tunnel(target, &flags, &flags);
        let addr = client.addr;
        rt.block_on(within(Duration::from_secs(60), "16 MiB", async move {
            echo_through(addr, pattern(16, 16 << 20), Shutdown::AfterWriting).await;
        }));
    }
}

#[test]
fn half_close_crosses_the_tunnel() {
    let rt = runtime();
    for version in ["1", "2"] {
        let target = rt.block_on(request_eof_target(RESPONSE));
        let flags = ["--smuxver", version];
        let (server, client) = tunnel(target, &flags, &["--smuxver", version, "--conns", "3"]);
        let addr = client.addr;
        // The client keeps three sessions to the server.
        assert!(
            client.wait_stderr("session 2: connected", Duration::from_secs(5)),
            "{}",
            client.stderr()
        );
        server.wait_stderr_count("session from", 3, Duration::from_secs(5));
        assert_eq!(server.stderr().matches("session from").count(), 3);
        rt.block_on(within(Duration::from_secs(60), "half-close", async move {
            // Several at once, spread over the three sessions; one with an empty request.
            let mut tasks = Vec::new();
            for i in 0..6usize {
                tasks.push(tokio::spawn(request_response(addr, i * 70_001, RESPONSE)));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }));
    }
}

#[test]
fn unreachable_target_closes_the_stream_promptly() {
    let rt = runtime();
    let dead = rt.block_on(dead_addr());
    let (server, client) = tunnel(dead, &[], &[]);
    let addr = client.addr;
    rt.block_on(within(
        Duration::from_secs(5),
        "closed stream",
        async move {
            // The reset may come before connect() returns.
            if let Ok(mut tcp) = TcpStream::connect(addr).await {
                let _ = tcp.write_all(b"hello?").await;
                let mut buf = [0u8; 16];
                // EOF (or a reset): the connection must not hang.
                assert!(!matches!(tcp.read(&mut buf).await, Ok(n) if n > 0));
            }
        },
    ));
    // Only the stream was closed: the session itself survives.
    only_the_stream_was_refused(&server, &client);
}

#[test]
fn client_reconnects_after_the_server_dies() {
    let rt = runtime();
    let target = rt.block_on(tcp_echo_target());
    let t = target.to_string();
    let (server, client) = tunnel(target, &[], &[]);
    let server_addr = server.addr.to_string();
    let addr = client.addr;
    rt.block_on(within(
        Duration::from_secs(10),
        "before",
        echo_through(addr, pattern(1, 100_000), Shutdown::AfterWriting),
    ));
    drop(server);
    assert!(
        client.wait_stderr("reconnecting", Duration::from_secs(10)),
        "{}",
        client.stderr()
    );
    // Same address again.
    let _server = Proc::rsmux(&["tunnel", "server", "--listen", &server_addr, "--target", &t]);
    rt.block_on(within(
        Duration::from_secs(20),
        "after",
        echo_through(addr, pattern(2, 100_000), Shutdown::AfterWriting),
    ));
}

/// `--max-streams 2`: two connections through the tunnel are served at once; a third, opened
/// while they are held, is refused at once (its connection ends, nothing comes back); once one
/// of the two ends, a new connection goes through again.
#[test]
fn max_streams_refuses_the_extra_stream_at_once() {
    let rt = runtime();
    let target = rt.block_on(tcp_echo_target());
    let (_server, client) = tunnel(target, &["--max-streams", "2"], &[]);
    let addr = client.addr;
    rt.block_on(within(Duration::from_secs(30), "max streams", async move {
        let mut held = Vec::new();
        for i in 0..2u8 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&[i; 10]).await.unwrap();
            let mut back = [0u8; 10];
            tcp.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [i; 10]);
            held.push(tcp);
        }
        let mut buf = [0u8; 16];
        // The refused connection is reset, maybe before connect() returns.
        let got = match TcpStream::connect(addr).await {
            Ok(mut extra) => {
                let _ = extra.write_all(b"refused?").await;
                extra.read(&mut buf).await
            }
            Err(e) => Err(e),
        };
        assert!(
            !matches!(got, Ok(n) if n > 0),
            "a stream beyond --max-streams was served"
        );
        drop(held.pop());
        // The server frees the slot once the stream's close has crossed the tunnel.
        let mut served = false;
        for _ in 0..100 {
            let Ok(mut tcp) = TcpStream::connect(addr).await else {
                continue;
            };
            let _ = tcp.write_all(b"again").await;
            let mut back = [0u8; 5];
            if tcp.read_exact(&mut back).await.is_ok() {
                assert_eq!(&back, b"again");
                served = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(served, "no stream was served after one of the two closed");
    }));
}

/// A client speaking another smux version than the server is told which flag to check: the
/// server hangs up at its first frame, before sending any.
#[test]
fn a_version_mismatch_names_the_flag_on_the_client() {
    let rt = runtime();
    let target = rt.block_on(tcp_echo_target());
    let (server, client) = tunnel(target, &["--smuxver", "2"], &["--smuxver", "1"]);
    let addr = client.addr;
    rt.block_on(within(
        LIMIT_MISMATCH,
        "a connection through the tunnel",
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 8];
            // Refused or reset: nothing comes back.
            assert!(!matches!(tcp.read(&mut buf).await, Ok(n) if n > 0));
        },
    ));
    assert!(
        client.wait_stderr("both ends need the same --smuxver", LIMIT_MISMATCH),
        "client: {}\nserver: {}",
        client.stderr(),
        server.stderr()
    );
}

const LIMIT_MISMATCH: Duration = Duration::from_secs(10);
