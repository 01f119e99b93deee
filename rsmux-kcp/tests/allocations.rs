//! Heap allocations per MiB moved over a `KcpStream` pair on loopback, in steady state.
//!
//! A counting global allocator tallies every allocation of this test process; the runtime is
//! single-threaded, so the count is the client's and the server's connection tasks, their
//! stream handles and the test's own loop (which allocates nothing per byte). After a warm-up
//! transfer (buffers, windows and pools reach their working size), 16 MiB go each way and the
//! allocations are counted. With kcptun's default layers (aes, FEC 10/3, snappy) this was
//! ~5,340 allocations per MiB (~2,650 without FEC and compression) before the send and receive
//! paths reused their buffers, and is now 0.1-2.3 (the bound asserted leaves margin for
//! tokio's occasional bookkeeping).

mod support;

use std::time::Duration;

use rsmux_kcp::{KcpConfig, KcpListener};
use rsmux_test_support::counting::{allocations, Counting};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: usize = 1 << 20;
/// Allocations per MiB (send and receive together) the test accepts.
const BOUND_PER_MIB: f64 = 16.0;

/// Writes `total` bytes of `data` (cycled) into `w` while reading and checking them from `r`.
async fn pump(
    w: &mut (impl AsyncWrite + Unpin),
    r: &mut (impl AsyncRead + Unpin),
    data: &[u8],
    total: usize,
) {
    let write = async {
        let mut sent = 0;
        while sent < total {
            let at = sent % data.len();
            let n = (total - sent).min(data.len() - at).min(16 * 1024);
            w.write_all(&data[at..at + n]).await.unwrap();
            sent += n;
        }
        w.flush().await.unwrap();
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended after {got} of {total} bytes");
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, data[(got + i) % data.len()], "byte {}", got + i);
            }
            got += n;
        }
    };
    tokio::join!(write, read);
}

/// Allocations per MiB over a client/server pair with `client` and `server` settings, each
/// way, and both ends' counters (losses in the socket buffers would show as retransmissions).
async fn allocations_per_mib(
    client: &KcpConfig,
    server: &KcpConfig,
) -> (f64, f64, rsmux_kcp::Stats, rsmux_kcp::Stats) {
    let listener = KcpListener::bind("127.0.0.1:0", server).await.unwrap();
    let (mut a, mut b) = support::connected_pair(&listener, client).await;
    // Incompressible bytes (snappy stores them as they are, as it would real traffic).
    let data = rsmux_test_support::pattern::bytes(1, MIB + 4097);
    pump(&mut a, &mut b, &data, 4 * MIB).await;
    pump(&mut b, &mut a, &data, 4 * MIB).await;

    let moved = 16 * MIB;
    let before = allocations();
    pump(&mut a, &mut b, &data, moved).await;
    let up = allocations() - before;
    let before = allocations();
    pump(&mut b, &mut a, &data, moved).await;
    let down = allocations() - before;
    let per_mib = |n: usize| n as f64 / (moved / MIB) as f64;
    (per_mib(up), per_mib(down), a.stats(), b.stats())
}

#[test]
fn steady_state_transfer_allocates_almost_nothing_per_mib() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let no_fec = KcpConfig {
                data_shards: 0,
                parity_shards: 0,
                compression: false,
                ..KcpConfig::default()
            };
            // Windows whose bursts fit the sockets' default buffers (no loss on loopback, so
            // steady state), acks at once and a 10 ms clock so the transfer is still quick.
            let tuned = |c: KcpConfig| KcpConfig {
                snd_wnd: 128,
                rcv_wnd: 128,
                ack_nodelay: true,
                mode: rsmux_kcp::Mode::Fast3,
                ..c
            };
            for (name, config) in [
                (
                    "kcptun defaults (aes, FEC 10/3, snappy)",
                    KcpConfig::default(),
                ),
                ("aes, no FEC, no compression", no_fec),
            ] {
                let config = tuned(config);
                let (up, down, client, server) = allocations_per_mib(&config, &config).await;
                eprintln!(
                    "{name}: {up:.1} allocations/MiB client->server, {down:.1} server->client"
                );
                assert!(
                    up <= BOUND_PER_MIB && down <= BOUND_PER_MIB,
                    "{name}: {up:.1} / {down:.1} allocations per MiB, bound {BOUND_PER_MIB}; \
                     client {client:?}, server {server:?}"
                );
            }
        })
        .await
        .expect("transfer timed out");
    });
}
