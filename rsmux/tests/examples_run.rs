//! Every example in `examples/` runs here, on loopback, so one that breaks fails the tests
//! (CI's clippy only builds them). Each example file is compiled into this test as a module
//! and its entry points are called; their `main`s stay for `cargo run --example`.

mod interop_support;

#[allow(dead_code)]
#[path = "../examples/go_client.rs"]
mod go_client;
#[allow(dead_code)]
#[path = "../examples/hyper_over_rsmux.rs"]
mod hyper_over_rsmux;
#[allow(dead_code)]
#[path = "../examples/server_ops.rs"]
mod server_ops;
#[allow(dead_code)]
#[path = "../examples/tcp_tunnel.rs"]
mod tcp_tunnel;
#[allow(dead_code)]
#[path = "../examples/tls_session.rs"]
mod tls_session;

use std::time::Duration;

use interop_support::{within, GoPeer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn hyper_over_rsmux_answers_every_request() {
    let answered = within(LIMIT, "hyper_over_rsmux", hyper_over_rsmux::run())
        .await
        .expect("the example failed");
    assert_eq!(answered, 9, "3 streams with 3 requests each");
}

#[tokio::test]
async fn server_ops_refuses_beyond_the_limit_then_drains() {
    let stats = within(LIMIT, "server_ops", server_ops::run())
        .await
        .expect("the example failed");
    assert_eq!(stats.streams_refused, 1);
    assert_eq!(stats.streams_accepted, server_ops::MAX_STREAMS as u64);
}

#[tokio::test]
async fn tls_session_echoes_every_byte() {
    let echoed = within(LIMIT, "tls_session", tls_session::run())
        .await
        .expect("the example failed");
    assert_eq!(echoed, 4 * 300_000);
}

#[tokio::test]
async fn go_client_talks_to_the_go_echo_server_v1_and_v2() {
    for (flag, version) in [("1", rsmux::Version::V1), ("2", rsmux::Version::V2)] {
        let peer = GoPeer::start("echo", &["-ver", flag, "-quiet"]).await;
        let (replies, stats) = within(
            LIMIT,
            "go_client",
            go_client::run(&peer.addr.to_string(), version),
        )
        .await
        .expect("the example failed");
        assert_eq!(replies.len(), 4);
        for reply in &replies {
            assert!(reply.starts_with("hello from stream "), "{reply:?}");
        }
        let mut distinct = replies.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "each stream has its own id: {replies:?}");
        assert_eq!(stats.streams_opened, 4, "{stats:?}");
    }
}

#[tokio::test]
async fn tcp_tunnel_carries_a_connection_both_ways() {
    // An echo target that half-closes after the client's FIN.
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = target.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let far = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far_addr = far.local_addr().unwrap().to_string();
    let far_end = tokio::spawn(tcp_tunnel::server(far, target_addr));
    let near = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let near_addr = near.local_addr().unwrap();
    let near_end = tokio::spawn(async move { tcp_tunnel::client(near, &far_addr).await });

    within(LIMIT, "through the tunnel", async {
        for round in 0..3usize {
            let sent: Vec<u8> = (0..200_000 + round)
                .map(|i| (i * 3 + round) as u8)
                .collect();
            let tcp = TcpStream::connect(near_addr).await.unwrap();
            let (mut r, mut w) = tcp.into_split();
            let data = sent.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert!(got == sent, "round {round}: the echo differs");
        }
    })
    .await;
    // Both ends serve until stopped; neither failed meanwhile.
    assert!(!far_end.is_finished() && !near_end.is_finished());
    far_end.abort();
    near_end.abort();
}
