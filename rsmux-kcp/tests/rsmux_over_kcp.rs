//! rsmux to rsmux over KCP: KcpStream::connect against KcpListener, clean and lossy links,
//! plus the listener's bounds.

mod support;

use std::time::Duration;

use rsmux::Session;
use rsmux_kcp::{KcpConfig, KcpListener, KcpStream, StatsHandle};
use support::*;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);

/// A listener whose sessions forward streams to an echo target; also reports each accepted
/// connection's stats handle.
async fn server(
    config: &KcpConfig,
    smux: u8,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<StatsHandle>) {
    let target = echo_target().await;
    let listener = KcpListener::bind("127.0.0.1:0", config).await.unwrap();
    let addr = listener.local_addr();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((kcp, _)) = listener.accept().await {
            let _ = tx.send(kcp.stats_handle());
            let session = Session::server(kcp, kcptun_smux(smux)).unwrap();
            tokio::spawn(forward_streams(session, target));
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsmux_to_rsmux_defaults_v1_and_v2() {
    tokio::time::timeout(LIMIT, async {
        for smux in [1u8, 2] {
            let (addr, _) = server(&KcpConfig::kcptun_server(), smux).await;
            let kcp = KcpStream::connect(addr, &KcpConfig::default())
                .await
                .unwrap();
            let session = Session::client(kcp, kcptun_smux(smux)).unwrap();
            for (len, seed) in [(1, 1), (4 << 20, 2)] {
                let stream = session.open_stream().await.unwrap();
                echo_exact(stream, &payload(len, seed)).await;
            }
        }
    })
    .await
    .expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_stays_exact_and_fec_recovers_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let (addr, mut accepted) = server(&KcpConfig::kcptun_server(), 1).await;
        let (relay, counts) = lossy_relay(addr, 3, 1, 2).await;
        let kcp = KcpStream::connect(relay, &KcpConfig::default())
            .await
            .unwrap();
        let client_stats = kcp.stats_handle();
        let session = Session::client(kcp, kcptun_smux(1)).unwrap();
        let stream = session.open_stream().await.unwrap();
        echo_exact(stream, &payload(2 << 20, 5)).await;
        let server_stats = accepted.recv().await.unwrap();
        let (c, s) = (client_stats.get(), server_stats.get());
        eprintln!(
            "relay dropped {}, duplicated {}, reordered {}; client {c:?}; server {s:?}",
            counts.dropped.load(std::sync::atomic::Ordering::Relaxed),
            counts.duplicated.load(std::sync::atomic::Ordering::Relaxed),
            counts.reordered.load(std::sync::atomic::Ordering::Relaxed),
        );
        assert!(c.fec_recovered > 0, "client recovered nothing: {c:?}");
        assert!(s.fec_recovered > 0, "server recovered nothing: {s:?}");
    })
    .await
    .expect("timed out");
}

/// Datagrams from more source addresses than `max_peers`: the extra peers are refused and
/// counted, the admitted ones still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_bounds_peers() {
    tokio::time::timeout(LIMIT, async {
        let config = KcpConfig {
            max_peers: 4,
            accept_backlog: 2,
            ..KcpConfig::kcptun_server()
        };
        let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
        let addr = listener.local_addr();
        // Ten clients each send one segment; only `accept_backlog` wait for accept.
        let mut clients = Vec::new();
        for _ in 0..10 {
            let mut kcp = KcpStream::connect(addr, &KcpConfig::default())
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut kcp, b"x")
                .await
                .unwrap();
            clients.push(kcp);
        }
        let (first, _) = listener.accept().await.unwrap();
        let (_second, _) = listener.accept().await.unwrap();
        // Every client resends until acked, so refusals keep being counted: wait for them.
        listener.stats_reach(|s| s.rejected_peers >= 8).await;
        drop(first);
    })
    .await
    .expect("timed out");
}

/// Junk of every size, datagrams sealed with another key, and valid datagrams that cannot open
/// a conversation (a window probe, a parity shard) create no connection; a real client
/// afterwards is the first one accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_open_no_connection() {
    use rsmux_kcp::crypt::{Crypt, HEADER_SIZE};
    tokio::time::timeout(LIMIT, async {
        let config = KcpConfig::kcptun_server();
        let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
        let addr = listener.local_addr();
        let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sent = 0u64;
        let mut x = 12345u32;
        for len in (0..200).chain([1349, 1350, 1499, 1500, 1501, 2000]) {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            junk.send_to(&d, addr).await.unwrap();
            sent += 1;
        }
        let mut rng = rand::thread_rng();
        let seal = |crypt: &Crypt, body: &[u8], rng: &mut rand::rngs::ThreadRng| {
            let mut d = vec![0u8; HEADER_SIZE];
            d.extend_from_slice(body);
            crypt.seal(&mut d, rng);
            d
        };
        let mut push = vec![0u8; 24];
        push[..4].copy_from_slice(&7u32.to_le_bytes());
        push[4] = 81;
        let mut wask = push.clone();
        wask[4] = 83;
        let parity = [0, 0, 0, 0, 0xf2, 0, 1, 2, 3, 4];
        let right = Crypt::new(config.crypt, &config.key);
        let wrong = Crypt::new(config.crypt, "not the key");
        for d in [
            seal(&wrong, &push, &mut rng),
            seal(&right, &wask, &mut rng),
            seal(&right, &parity, &mut rng),
            seal(&right, &push[..20], &mut rng),
        ] {
            junk.send_to(&d, addr).await.unwrap();
            sent += 1;
        }
        listener.stats_reach(|s| s.invalid_datagrams >= sent).await;
        assert_eq!(listener.stats().invalid_datagrams, sent);
        let mut kcp = KcpStream::connect(addr, &KcpConfig::default())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut kcp, b"hello")
            .await
            .unwrap();
        let (_accepted, from) = listener.accept().await.unwrap();
        assert_eq!(from.port(), kcp.local_addr().port());
    })
    .await
    .expect("timed out");
}

/// kcp-go's rule for a known address: another conversation replaces the connection only with
/// its first segment (PUSH sn 0); the old connection then fails with ConnectionReset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_address_new_conversation_replaces_the_old_one() {
    use rsmux_kcp::crypt::Crypt;
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(LIMIT, async {
        let config = KcpConfig {
            compression: false,
            ..KcpConfig::kcptun_server()
        };
        let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(listener.local_addr()).await.unwrap();
        let crypt = Crypt::new(config.crypt, &config.key);
        // One datagram of a sans-IO client connection, sent from our fixed socket.
        let first_datagram = |conv: u32| first_datagram(conv, &KcpConfig::default(), &crypt, b"hi");
        socket.send(&first_datagram(1)).await.unwrap();
        let (mut old, _) = listener.accept().await.unwrap();
        assert_eq!(old.conv(), 1);
        socket.send(&first_datagram(2)).await.unwrap();
        let (new, _) = listener.accept().await.unwrap();
        assert_eq!(new.conv(), 2);
        let mut buf = [0u8; 16];
        assert_eq!(old.read(&mut buf).await.unwrap(), 2);
        let err = old.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await
    .expect("timed out");
}

/// KCP has no close: a silent peer ends in the idle timeout, on both sides. The client's read
/// fails with TimedOut once the server has gone; the listener forgets a client that went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_connections_and_frees_peers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(LIMIT, async {
        let short = |c: KcpConfig| KcpConfig {
            idle_timeout: Duration::from_millis(300),
            compression: false,
            ..c
        };
        // A server that never answers: the client gives up after the idle timeout.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut kcp =
            KcpStream::connect(silent.local_addr().unwrap(), &short(KcpConfig::default()))
                .await
                .unwrap();
        kcp.write_all(b"anyone?").await.unwrap();
        let err = kcp.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        // A client that leaves: once it is gone the listener forgets it.
        let listener = KcpListener::bind("127.0.0.1:0", &short(KcpConfig::kcptun_server()))
            .await
            .unwrap();
        let (client, mut accepted) = connected_pair(&listener, &short(KcpConfig::default())).await;
        let mut buf = [0u8; 5];
        assert_eq!(listener.stats().peers, 1);
        drop(client);
        listener.stats_reach(|s| s.peers == 0).await;
        let err = accepted.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn bad_config_is_a_clear_error() {
    let config = KcpConfig {
        mtu: 2000,
        ..KcpConfig::default()
    };
    let err = KcpStream::connect("127.0.0.1:9", &config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--mtu"), "{err}");
    let err = KcpListener::bind("127.0.0.1:0", &config).await.unwrap_err();
    assert!(err.to_string().contains("--mtu"), "{err}");
}

/// `--dscp`: both ends' UDP sockets carry it in their IP TOS byte (`dscp << 2`), read back from
/// the OS; the connection works as usual; 0 leaves the default and 64 is refused.
#[tokio::test]
async fn dscp_is_set_on_the_sockets() {
    tokio::time::timeout(LIMIT, async {
        let config = KcpConfig {
            dscp: 46, // EF
            ..KcpConfig::default()
        };
        let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
        assert_eq!(listener.dscp().unwrap(), 46);
        let mut client = KcpStream::connect(listener.local_addr(), &config)
            .await
            .unwrap();
        assert_eq!(client.dscp().unwrap(), 46);
        let sock =
            socket2::SockRef::from(&tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap())
                .tos_v4()
                .unwrap();
        assert_eq!(sock, 0, "a plain socket's TOS, for comparison");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        client.write_all(b"ef").await.unwrap();
        let (mut served, _) = listener.accept().await.unwrap();
        assert_eq!(served.dscp().unwrap(), 46);
        let mut buf = [0u8; 2];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ef");

        let plain = KcpStream::connect(listener.local_addr(), &KcpConfig::default())
            .await
            .unwrap();
        assert_eq!(plain.dscp().unwrap(), 0);
        let bad = KcpConfig {
            dscp: 64,
            ..KcpConfig::default()
        };
        let err = KcpListener::bind("127.0.0.1:0", &bad).await.unwrap_err();
        assert!(err.to_string().contains("--dscp"), "{err}");
    })
    .await
    .expect("timed out");
}

/// A full listener lets a peer that has been silent for half the idle timeout give way to a
/// new one: two forged one-datagram peers fill `max_peers` 2; a real client, sending every
/// 100 ms, is refused until the forged peers have been silent for 1.5 s (half the 3 s idle
/// timeout, before they would expire), then it is accepted and works; evictions are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_listener_evicts_a_long_silent_peer_for_a_new_one() {
    use rsmux_kcp::crypt::Crypt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(LIMIT, async {
        let config = KcpConfig {
            max_peers: 2,
            idle_timeout: Duration::from_secs(3),
            compression: false,
            ..KcpConfig::kcptun_server()
        };
        let listener = KcpListener::bind("127.0.0.1:0", &config).await.unwrap();
        let crypt = Crypt::new(config.crypt, &config.key);
        for conv in [1, 2] {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let forged = first_datagram(conv, &config, &crypt, b"forged");
            socket
                .send_to(&forged, listener.local_addr())
                .await
                .unwrap();
        }
        listener.stats_reach(|s| s.peers == 2).await;
        let started = tokio::time::Instant::now();
        let client_config = KcpConfig {
            compression: false,
            ..KcpConfig::default()
        };
        let mut real = KcpStream::connect(listener.local_addr(), &client_config)
            .await
            .unwrap();
        let conv = real.conv();
        real.write_all(b"real").await.unwrap();
        // Keep talking (each write sends a new segment at once), as a client with traffic does.
        let talking = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if real.write_all(b"r").await.is_err() {
                    break;
                }
            }
        });
        // The forged ones come first out of accept; then the real one.
        let mut served = loop {
            let (kcp, _) = listener.accept().await.unwrap();
            if kcp.conv() == conv {
                break kcp;
            }
        };
        let waited = started.elapsed();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"real");
        let stats = listener.stats();
        assert!(stats.rejected_peers >= 1, "{stats:?}");
        assert!(stats.evicted_peers >= 1, "{stats:?}");
        assert!(stats.peers <= 2, "{stats:?}");
        assert!(waited < Duration::from_secs(3), "accepted after {waited:?}");
        talking.abort();
    })
    .await
    .expect("timed out");
}
