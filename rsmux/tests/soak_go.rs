//! Soak tests against Go smux (the repo's Go peer), protocol v1 and v2.
//!
//! - Random-length random data both ways through a Go echo server, byte-exact: 256 MiB per
//!   version by default; `RSMUX_SOAK_BYTES` sets the size (8 GiB for the long variant, as Go's
//!   own Test8GBTransfer: `RSMUX_SOAK_BYTES=8589934592`).
//! - Churn: 1000 concurrent streams opened, used and closed continuously for
//!   `RSMUX_CHURN_SECS` seconds (default 8; the long variant is 600), with the heap measured by
//!   a counting allocator after a warm-up and at the end: it must stay flat.

mod interop_support;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use interop_support::{within, GoPeer};
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
use rsmux::{Config, Session};
use rsmux_test_support::{
    counting,
    pattern::{check_at, fill_at as fill},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// Tests measure process-wide memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn go_echo_session(version: u8) -> (GoPeer, Session) {
    let ver = if version == 1 { "1" } else { "2" };
    let peer = GoPeer::start("echo", &["-ver", ver, "-quiet"]).await;
    let tcp = TcpStream::connect(peer.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let cfg = Config::default().with_version(rsmux::Version::try_from(version).unwrap());
    let session = Session::client(tcp, cfg).unwrap();
    (peer, session)
}

/// Resident set size of this process, from /proc.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn random_transfer(version: u8) {
    let _serial = SERIAL.lock().await;
    let total = env_u64("RSMUX_SOAK_BYTES", 256 << 20);
    let (_peer, session) = go_echo_session(version).await;
    let stream = session.open_stream().await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let seed = 0x50a4 + u64::from(version);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        // The data is a function of the offset on both sides: nothing is held in memory.
        let mut sizes = StdRng::seed_from_u64(seed + 1);
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < total {
            let n = (sizes.gen_range(1..=1u64 << 20)).min(total - off) as usize;
            fill(&mut buf[..n], seed, off);
            w.write_all(&buf[..n]).await.unwrap();
            off += n as u64;
        }
        w
    });
    let mut sizes = StdRng::seed_from_u64(seed + 2);
    let mut got = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let limit = Duration::from_secs(60 + total / (4 << 20));
    within(limit, "echoed random data", async {
        while done < total {
            let n = (sizes.gen_range(1..=1u64 << 20)).min(total - done) as usize;
            r.read_exact(&mut got[..n]).await.unwrap();
            let bad = check_at(&got[..n], seed, done);
            assert!(
                bad.is_none(),
                "bytes differ at offset {bad:?} (read from {done})"
            );
            done += n as u64;
        }
    })
    .await;
    let mut w = writer.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "v{version}: {} MiB each way through Go echo in {secs:.1} s ({:.0} MiB/s)",
        total >> 20,
        (total >> 20) as f64 / secs
    );
    w.shutdown().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_length_random_data_v1() {
    random_transfer(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_length_random_data_v2() {
    random_transfer(2).await;
}

async fn churn(version: u8) {
    let _serial = SERIAL.lock().await;
    let secs = env_u64("RSMUX_CHURN_SECS", 8);
    let warmup = Duration::from_secs((secs / 4).max(1));
    let end = Instant::now() + Duration::from_secs(secs);
    let (_peer, session) = go_echo_session(version).await;
    let cycles = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..1000u64 {
        let session = session.clone();
        let cycles = cycles.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w);
            let mut buf = vec![0u8; 4096];
            while Instant::now() < end {
                let mut s = session.open_stream().await.unwrap();
                let n = rng.gen_range(1..=4096);
                rng.fill_bytes(&mut buf[..n]);
                s.write_all(&buf[..n]).await.unwrap();
                let mut back = vec![0u8; n];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(back, buf[..n]);
                drop(s); // closes: FIN after the data
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Heap and RSS after the warm-up and shortly before the end, both under full churn.
    tokio::time::sleep_until(Instant::now() + warmup).await;
    let heap_start = counting::live();
    let rss_start = rss_kib();
    let cycles_start = cycles.load(Ordering::Relaxed);
    tokio::time::sleep_until(end - Duration::from_millis(500)).await;
    let heap_late = counting::live();
    let rss_late = rss_kib();
    let cycles_late = cycles.load(Ordering::Relaxed);
    for w in workers {
        within(Duration::from_secs(60), "churn worker", w)
            .await
            .unwrap();
    }
    let heap_end = counting::live();
    eprintln!(
        "v{version} churn: {} stream cycles in {secs} s with 1000 concurrent; heap {} KiB -> {} KiB (after: {} KiB); RSS {rss_start} KiB -> {rss_late} KiB",
        cycles.load(Ordering::Relaxed),
        heap_start / 1024,
        heap_late / 1024,
        heap_end / 1024
    );
    assert!(cycles_late - cycles_start > 1000, "churn made no progress");
    // Flat: the same load costs the same memory later on, and less once it stops.
    assert!(
        heap_late <= heap_start + heap_start / 4 + (1 << 20),
        "heap grew under steady churn: {heap_start} -> {heap_late}"
    );
    assert!(heap_end <= heap_late, "{heap_end} > {heap_late}");
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_1000_concurrent_streams_v1() {
    churn(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_1000_concurrent_streams_v2() {
    churn(2).await;
}
