//! With the `futures-io` feature, streams and their halves work through the `futures` I/O
//! traits (here futures-util's extension methods): data both ways, and `close` is a FIN.
#![cfg(feature = "futures-io")]

use std::time::Duration;

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use rsmux::{Config, Session, Version};

const LIMIT: Duration = Duration::from_secs(30);

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

async fn round_trip(version: Version) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let config = Config::default().with_version(version);
    let client = Session::client(a, config.clone()).unwrap();
    let server = Session::server(b, config).unwrap();

    // A whole stream: more than a window's worth, then close (FIN).
    let up = pattern(1, 1 << 20);
    let mut stream = client.open_stream().await.unwrap();
    let sent = up.clone();
    let writer = tokio::spawn(async move {
        stream.write_all(&sent).await.unwrap();
        stream.close().await.unwrap();
        stream
    });
    let accepted = tokio::time::timeout(LIMIT, server.accept_stream())
        .await
        .expect("accept in time")
        .unwrap();
    let (mut read_half, mut write_half) = accepted.into_split();
    let mut got = Vec::new();
    let n = tokio::time::timeout(LIMIT, read_half.read_to_end(&mut got))
        .await
        .expect("read in time")
        .unwrap();
    assert_eq!(
        n,
        up.len(),
        "EOF only after every byte: close sent FIN last"
    );
    assert!(got == up, "data changed on the way");

    // The halves: the answer goes back on the write half, closed in turn, while the client
    // reads (a v2 stream window is smaller than the answer).
    let down = pattern(2, 300_000);
    let answer = down.clone();
    let answering = tokio::spawn(async move {
        write_half.write_all(&answer).await.unwrap();
        write_half.close().await.unwrap();
        write_half
    });
    let mut stream = writer.await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut back))
        .await
        .expect("read in time")
        .unwrap();
    assert!(back == down, "answer changed on the way");

    // After close, writing fails instead of sending.
    let mut write_half = answering.await.unwrap();
    let late = tokio::time::timeout(LIMIT, write_half.write_all(b"late"))
        .await
        .expect("the write ends at once");
    assert!(late.is_err(), "a write after close succeeded");
}

#[tokio::test]
async fn streams_and_halves_work_through_futures_io_v1() {
    round_trip(Version::V1).await;
}

#[tokio::test]
async fn streams_and_halves_work_through_futures_io_v2() {
    round_trip(Version::V2).await;
}
