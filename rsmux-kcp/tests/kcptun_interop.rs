//! rsmux over KCP against the real kcptun (Debian's `kcptun` package): rsmux as the client of
//! kcptun-server, and as the server of kcptun-client, byte-exact through a TCP echo target.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rsmux::Session;
use rsmux_kcp::{CryptKind, KcpConfig, KcpListener, KcpStream, Mode};
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// kcptun-server in front of a fresh echo target, with `extra` flags; returns its UDP address.
async fn kcptun_server(extra: &[&str]) -> (Kcptun, SocketAddr) {
    let target = echo_target().await;
    let udp = free_udp_port();
    let mut a = args(&["-l", &udp.to_string(), "-t", &target.to_string(), "--quiet"]);
    a.extend(args(extra));
    (Kcptun::start("kcptun-server", &a), udp)
}

async fn client_session(server: SocketAddr, config: &KcpConfig, smux: u8) -> Session {
    let kcp = KcpStream::connect(server, config).await.unwrap();
    Session::client(kcp, kcptun_smux(smux)).unwrap()
}

async fn echo_on_new_stream(session: &Session, len: usize, seed: u32) {
    let stream = session.open_stream().await.unwrap();
    echo_exact(stream, &payload(len, seed)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsmux_client_to_kcptun_server_with_defaults() {
    tokio::time::timeout(LIMIT, async {
        // kcptun's defaults on both ends: aes, fast, FEC 10/3, snappy, smux v1.
        let (_server, udp) = kcptun_server(&[]).await;
        let session = client_session(udp, &KcpConfig::default(), 1).await;
        echo_on_new_stream(&session, 10, 1).await;
        echo_on_new_stream(&session, 3 << 20, 2).await;
        let mut tasks = Vec::new();
        for i in 0..4 {
            let stream = session.open_stream().await.unwrap();
            tasks.push(tokio::spawn(async move {
                echo_exact(stream, &payload(512 << 10, 10 + i)).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("timed out");
}

/// An rsmux server (KcpListener + Session::server forwarding to an echo target) and
/// kcptun-client in front of it with `extra` flags; returns kcptun-client's TCP address.
async fn rsmux_server_behind_kcptun_client(
    config: &KcpConfig,
    smux: u8,
    extra: &[&str],
) -> (Kcptun, SocketAddr) {
    let target = echo_target().await;
    let listener = KcpListener::bind("127.0.0.1:0", config).await.unwrap();
    let udp = listener.local_addr();
    tokio::spawn(async move {
        while let Ok((kcp, _)) = listener.accept().await {
            let session = Session::server(kcp, kcptun_smux(smux)).unwrap();
            tokio::spawn(forward_streams(session, target));
        }
    });
    let tcp = free_tcp_port();
    let mut a = args(&["-l", &tcp.to_string(), "-r", &udp.to_string(), "--quiet"]);
    a.extend(args(extra));
    (Kcptun::start("kcptun-client", &a), tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcptun_client_to_rsmux_server_with_defaults() {
    tokio::time::timeout(LIMIT, async {
        let (_client, tcp) =
            rsmux_server_behind_kcptun_client(&KcpConfig::kcptun_server(), 1, &[]).await;
        let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
        echo_exact(conn, &payload(10, 3)).await;
        let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
        echo_exact(conn, &payload(3 << 20, 4)).await;
        let mut tasks = Vec::new();
        for i in 0..4 {
            let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
            tasks.push(tokio::spawn(async move {
                echo_exact(conn, &payload(512 << 10, 20 + i)).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("timed out");
}

/// kcptun-client against the rsmux server with other crypts, modes, FEC, compression and
/// smux versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcptun_client_matrix_to_rsmux_server() {
    tokio::time::timeout(LIMIT, async {
        let cases: [(CryptKind, Mode, bool, bool, u8); 6] = [
            (CryptKind::None, Mode::Fast3, false, false, 2),
            (CryptKind::Salsa20, Mode::Normal, true, true, 1),
            (CryptKind::Aes128, Mode::Fast2, true, false, 2),
            (CryptKind::Xor, Mode::Fast, false, true, 1),
            (CryptKind::Tea, Mode::Fast, true, true, 1),
            (CryptKind::Xtea, Mode::Fast3, false, false, 2),
        ];
        for (i, (crypt, mode, fec, compression, smux)) in cases.into_iter().enumerate() {
            let config = KcpConfig {
                crypt,
                mode,
                data_shards: if fec { 10 } else { 0 },
                parity_shards: if fec { 3 } else { 0 },
                compression,
                ..KcpConfig::kcptun_server()
            };
            let mode_name = match mode {
                Mode::Normal => "normal",
                Mode::Fast => "fast",
                Mode::Fast2 => "fast2",
                _ => "fast3",
            };
            let smuxver = smux.to_string();
            let mut flags = vec![
                "--crypt",
                crypt.name(),
                "--mode",
                mode_name,
                "--smuxver",
                &smuxver,
            ];
            if !fec {
                flags.extend(["--datashard", "0", "--parityshard", "0"]);
            }
            if !compression {
                flags.push("--nocomp");
            }
            let (_client, tcp) = rsmux_server_behind_kcptun_client(&config, smux, &flags).await;
            let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
            echo_exact(conn, &payload(300 << 10, 400 + i as u32)).await;
        }
    })
    .await
    .expect("timed out");
}

/// `--mtu 500 --sndwnd 64 --rcvwnd 64` on both ends: every datagram either way fits 500
/// bytes, and full-size ones are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_mtu_and_windows_against_kcptun_server() {
    tokio::time::timeout(LIMIT, async {
        let flags = ["--mtu", "500", "--sndwnd", "64", "--rcvwnd", "64"];
        let (_server, udp) = kcptun_server(&flags).await;
        let (relay, counts) = lossy_relay(udp, 0, 0, 0).await;
        let config = KcpConfig {
            mtu: 500,
            snd_wnd: 64,
            rcv_wnd: 64,
            ..KcpConfig::default()
        };
        let session = client_session(relay, &config, 1).await;
        echo_on_new_stream(&session, 300 << 10, 500).await;
        let up = counts.max_up.load(std::sync::atomic::Ordering::Relaxed);
        let down = counts.max_down.load(std::sync::atomic::Ordering::Relaxed);
        assert!((450..=500).contains(&up), "client sent up to {up} bytes");
        assert!(
            (450..=500).contains(&down),
            "kcptun sent up to {down} bytes"
        );
    })
    .await
    .expect("timed out");
}

/// crypt none/aes/salsa20 x FEC on/off x compression on/off x smux v1/v2, rsmux client
/// against kcptun-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_against_kcptun_server() {
    tokio::time::timeout(LIMIT * 2, async {
        let mut seed = 100;
        for crypt in [CryptKind::None, CryptKind::Aes, CryptKind::Salsa20] {
            for fec in [true, false] {
                for compression in [true, false] {
                    for smux in [1u8, 2] {
                        let shards = if fec { ["10", "3"] } else { ["0", "0"] };
                        let smuxver = smux.to_string();
                        let mut flags = vec![
                            "--crypt",
                            crypt.name(),
                            "--datashard",
                            shards[0],
                            "--parityshard",
                            shards[1],
                            "--smuxver",
                            &smuxver,
                        ];
                        if !compression {
                            flags.push("--nocomp");
                        }
                        let (_server, udp) = kcptun_server(&flags).await;
                        let config = KcpConfig {
                            crypt,
                            data_shards: if fec { 10 } else { 0 },
                            parity_shards: if fec { 3 } else { 0 },
                            compression,
                            ..KcpConfig::default()
                        };
                        let session = client_session(udp, &config, smux).await;
                        seed += 1;
                        echo_on_new_stream(&session, 200 << 10, seed).await;
                        session.close().await.unwrap();
                    }
                }
            }
        }
    })
    .await
    .expect("timed out");
}

/// Every cipher this crate implements decrypts kcptun's datagrams and kcptun decrypts ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_against_kcptun_server() {
    tokio::time::timeout(LIMIT, async {
        for (i, crypt) in CryptKind::ALL.into_iter().enumerate() {
            let (_server, udp) =
                kcptun_server(&["--crypt", crypt.name(), "--key", "another key"]).await;
            let config = KcpConfig {
                crypt,
                key: "another key".into(),
                ..KcpConfig::default()
            };
            let session = client_session(udp, &config, 1).await;
            echo_on_new_stream(&session, 64 << 10, 200 + i as u32).await;
            session.close().await.unwrap();
        }
    })
    .await
    .expect("timed out");
}

/// Through a relay that drops 3%, duplicates 1% and reorders 2% of the datagrams each way:
/// the transfer stays byte-exact, and rsmux rebuilds lost datagrams from kcptun's parity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_to_kcptun_server_fec_recovers() {
    tokio::time::timeout(LIMIT, async {
        let (_server, udp) = kcptun_server(&[]).await;
        let (relay, counts) = lossy_relay(udp, 3, 1, 2).await;
        let kcp = KcpStream::connect(relay, &KcpConfig::default())
            .await
            .unwrap();
        let stats = kcp.stats_handle();
        let session = Session::client(kcp, kcptun_smux(1)).unwrap();
        echo_on_new_stream(&session, 2 << 20, 300).await;
        let s = stats.get();
        let dropped = counts.dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert!(dropped > 0, "relay dropped nothing");
        assert!(s.fec_recovered > 0, "no FEC recovery: {s:?}");
        eprintln!("relay dropped {dropped}; rsmux stats {s:?}");
    })
    .await
    .expect("timed out");
}

/// kcptun-client → lossy relay → rsmux server: byte-exact, and the rsmux server rebuilds lost
/// datagrams from kcptun-client's parity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_from_kcptun_client_fec_recovers() {
    tokio::time::timeout(LIMIT, async {
        let target = echo_target().await;
        let listener = KcpListener::bind("127.0.0.1:0", &KcpConfig::kcptun_server())
            .await
            .unwrap();
        let (relay, counts) = lossy_relay(listener.local_addr(), 3, 1, 2).await;
        let (stats_tx, mut stats_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((kcp, _)) = listener.accept().await {
                let _ = stats_tx.send(kcp.stats_handle());
                let session = Session::server(kcp, kcptun_smux(1)).unwrap();
                tokio::spawn(forward_streams(session, target));
            }
        });
        let tcp = free_tcp_port();
        let _client = Kcptun::start(
            "kcptun-client",
            &args(&["-l", &tcp.to_string(), "-r", &relay.to_string(), "--quiet"]),
        );
        let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
        echo_exact(conn, &payload(2 << 20, 600)).await;
        let s = stats_rx.recv().await.unwrap().get();
        let dropped = counts.dropped.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("relay dropped {dropped}; rsmux server stats {s:?}");
        assert!(dropped > 0, "relay dropped nothing");
        assert!(s.fec_recovered > 0, "no FEC recovery: {s:?}");
    })
    .await
    .expect("timed out");
}

/// kcptun-server sends FEC 5/2 while rsmux starts from 10/3: rsmux learns kcptun's shard
/// counts from the seqid pattern and still rebuilds lost datagrams. rsmux sends no FEC here:
/// kcp-go 5.6.1 itself mis-rebuilds FEC of other shard counts than its own (kcptun-server
/// configured 5/2 and fed 10/3 logs "snappy: corrupt input" and drops the session), so the
/// reverse direction cannot work with kcptun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fec_shard_counts_are_learnt_from_kcptun() {
    tokio::time::timeout(LIMIT, async {
        let (_server, udp) = kcptun_server(&["--datashard", "5", "--parityshard", "2"]).await;
        let (relay, _counts) = lossy_relay(udp, 3, 1, 2).await;
        let config = KcpConfig {
            data_shards: 0,
            parity_shards: 0,
            ..KcpConfig::default()
        };
        let kcp = KcpStream::connect(relay, &config).await.unwrap();
        let stats = kcp.stats_handle();
        let session = Session::client(kcp, kcptun_smux(1)).unwrap();
        echo_on_new_stream(&session, 2 << 20, 700).await;
        let s = stats.get();
        eprintln!("rsmux stats {s:?}");
        assert!(s.fec_recovered > 0, "no FEC recovery: {s:?}");
        assert_eq!(s.kcp_errors, 0, "{s:?}");
    })
    .await
    .expect("timed out");
}

/// kcptun-client `--conn 3`: three UDP/KCP/smux sessions from three source ports, TCP
/// connections spread over them; the listener serves them as separate peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcptun_client_with_several_conns() {
    tokio::time::timeout(LIMIT, async {
        let target = echo_target().await;
        let listener = KcpListener::bind("127.0.0.1:0", &KcpConfig::kcptun_server())
            .await
            .unwrap();
        let udp = listener.local_addr();
        let (peers_tx, mut peers_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((kcp, peer)) = listener.accept().await {
                let _ = peers_tx.send(peer);
                let session = Session::server(kcp, kcptun_smux(1)).unwrap();
                tokio::spawn(forward_streams(session, target));
            }
        });
        let tcp = free_tcp_port();
        let _client = Kcptun::start(
            "kcptun-client",
            &args(&[
                "-l",
                &tcp.to_string(),
                "-r",
                &udp.to_string(),
                "--conn",
                "3",
                "--quiet",
            ]),
        );
        let mut tasks = Vec::new();
        for i in 0..6 {
            let conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
            tasks.push(tokio::spawn(async move {
                echo_exact(conn, &payload(256 << 10, 800 + i)).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut peers = std::collections::HashSet::new();
        while peers.len() < 3 {
            peers.insert(peers_rx.recv().await.unwrap());
        }
    })
    .await
    .expect("timed out");
}
