//! A flood from thousands of source addresses against a `KcpListener`: garbage, and
//! well-formed datagrams that pass the crypt check (`--crypt none`: anyone can forge them)
//! but belong to no real client. The listener's per-peer state stays within `max_peers`, heap
//! growth stays within `max_peers` times a per-peer bound (a counting global allocator keeps
//! the live heap bytes), and a real session established before the flood moves 4 MiB each
//! way byte-exact while a second flood runs.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rsmux_kcp::crypt::Crypt;
use rsmux_kcp::{CryptKind, KcpConfig, KcpListener, ListenerStats};
use rsmux_test_support::counting::{live, Counting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// Counts the heap bytes in use by the whole test process.
#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peers the listener may track in this test.
const MAX_PEERS: usize = 64;
/// Source addresses per flood.
const SOURCES: usize = 2_000;
/// Heap one forged peer may cost: its KCP/FEC state, its stream and the test's accept loop
/// holding the stream (measured: about 25 KB; see the eprintln).
const PER_PEER_BOUND: i64 = 64 * 1024;

/// `count` sources, each on its own 127.x.y.z address, send one garbage datagram and one
/// forged first datagram; after every 50 sources, waits until the listener has dealt with
/// them. With `lossless` false (a transfer shares the socket, whose buffer may overflow and
/// drop some of them, as UDP may), a batch not fully accounted for after 200 ms is let go.
/// Returns how many sources the listener accounted for.
async fn flood(
    listener: &KcpListener,
    config: &KcpConfig,
    first_source: usize,
    count: usize,
    lossless: bool,
    max_peers_seen: &mut u64,
) -> u64 {
    let crypt = Crypt::new(config.crypt, &config.key);
    let target = listener.local_addr();
    let start = listener.stats();
    let mut seed = first_source as u64 * 0x9e37_79b9;
    for batch in (0..count).collect::<Vec<_>>().chunks(50) {
        for &i in batch {
            let n = first_source + i;
            let ip = Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
            let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).await.unwrap();
            let garbage: Vec<u8> = (0..40 + n % 300)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            socket.send_to(&garbage, target).await.unwrap();
            let forged =
                support::first_datagram(0x1000_0000 + n as u32, config, &crypt, &[0x5a; 200]);
            socket.send_to(&forged, target).await.unwrap();
        }
        let sent = (batch[batch.len() - 1] + 1) as u64;
        // Every garbage datagram is counted invalid; every forged one made a peer or was
        // refused (peers are not forgotten within this test: the idle timeout is longer).
        let accounted = |s: &ListenerStats| {
            s.invalid_datagrams - start.invalid_datagrams >= sent
                && (s.rejected_peers - start.rejected_peers) + (s.peers - start.peers) >= sent
        };
        let limit = if lossless {
            Duration::from_secs(20)
        } else {
            Duration::from_millis(200)
        };
        let waited = tokio::time::timeout(limit, listener.stats_reach(accounted)).await;
        if lossless {
            waited.unwrap_or_else(|_| {
                panic!(
                    "listener did not account for {sent} sources: {:?}",
                    listener.stats()
                )
            });
        }
        *max_peers_seen = (*max_peers_seen).max(listener.stats().peers);
    }
    let s = listener.stats();
    (s.invalid_datagrams - start.invalid_datagrams)
        .min((s.rejected_peers - start.rejected_peers) + s.peers.saturating_sub(start.peers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_from_many_addresses_keeps_memory_bounded_and_the_real_session_working() {
    let config = KcpConfig {
        crypt: CryptKind::None,
        max_peers: MAX_PEERS,
        accept_backlog: 16,
        ..KcpConfig::kcptun_server()
    };
    let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
    let (mut real, served) = support::connected_pair(&listener, &config).await;
    // The real server side echoes.
    let served_stats = served.stats_handle();
    let real_stats = real.stats_handle();
    let echo = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(served);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    // Like `rsmux kcptun server`, accept every connection and keep it.
    let listener = std::sync::Arc::new(listener);
    let accepting = {
        let listener = listener.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        })
    };

    let mut max_peers_seen = 0;
    let before = live() as i64;
    flood(&listener, &config, 0, SOURCES, true, &mut max_peers_seen).await;
    let grown = live() as i64 - before;
    let stats = listener.stats();
    eprintln!(
        "after {SOURCES} sources: {stats:?}; heap grew {grown} bytes, {} per peer",
        grown / stats.peers.max(1) as i64
    );
    assert_eq!(stats.peers, MAX_PEERS as u64, "{stats:?}");
    assert!(
        stats.rejected_peers >= (SOURCES - MAX_PEERS) as u64,
        "{stats:?}"
    );
    assert!(
        grown <= MAX_PEERS as i64 * PER_PEER_BOUND,
        "heap grew {grown} bytes for {MAX_PEERS} peers"
    );

    // A second flood from new addresses while the real session moves 4 MiB each way.
    let data = support::payload(4 << 20, 11);
    let transfer = async {
        let (mut r, mut w) = tokio::io::split(&mut real);
        let write = async {
            w.write_all(&data).await.unwrap();
            // Snappy may hold the last chunk until a flush, as any buffered writer.
            w.flush().await.unwrap();
        };
        let read = async {
            let mut got = vec![0u8; data.len()];
            r.read_exact(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(write, read);
        assert!(got == data, "echo differs");
    };
    let transfer = async {
        if tokio::time::timeout(Duration::from_secs(60), transfer)
            .await
            .is_err()
        {
            panic!(
                "the real session's echo during the flood timed out; client {:?}, server {:?}, \
                 listener {:?}",
                real_stats.get(),
                served_stats.get(),
                listener.stats()
            );
        }
    };
    // The flood is bounded by construction (at most 200 ms of waiting per batch).
    let second_flood = flood(
        &listener,
        &config,
        SOURCES,
        SOURCES,
        false,
        &mut max_peers_seen,
    );
    let ((), accounted) = tokio::join!(transfer, second_flood);
    assert!(max_peers_seen <= MAX_PEERS as u64, "{max_peers_seen} peers");
    assert!(
        accounted >= SOURCES as u64 / 2,
        "only {accounted} of {SOURCES} sources reached the listener"
    );
    assert_eq!(real.stats().crypt_errors, 0);
    echo.abort();
    accepting.abort();
}
