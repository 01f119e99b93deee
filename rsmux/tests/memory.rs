//! Memory bounds, measured with a counting global allocator.
//!
//! The tests in this file serialize on one lock because the allocator counts the whole process.

use std::{sync::Mutex, time::Duration};

use counting::{live, peak, reset_peak};
use rsmux::{frame::Cmd, frame::Header, Config, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

static SERIAL: Mutex<()> = Mutex::new(());

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A hostile peer floods 200 streams that the application accepts but never reads. Unread data
/// must stop at the receive budget (plus one frame), and the memory behind it at three times
/// that (the read-buffer policy in `proto::recv_buffer`), whatever the frame sizes.
#[test]
fn unread_data_is_bounded_by_the_receive_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BUDGET: usize = 1 << 20;
    runtime().block_on(async {
        for frame_len in [1usize, 100, 4000, 32768, 65535] {
            let (ours, mut peer) = tokio::io::duplex(256 * 1024);
            let cfg = Config {
                max_receive_buffer: BUDGET,
                max_stream_buffer: 65536,
                keep_alive_disabled: true,
                ..Config::default()
            };
            let before = live();
            reset_peak();
            let session = Session::server(ours, cfg).unwrap();
            // The peer opens 200 streams and sends until its writes stall.
            let mut wire = Vec::new();
            for sid in 0..200u32 {
                wire.extend_from_slice(&Header::new(1, Cmd::Syn, 0, 1 + 2 * sid).encode());
            }
            peer.write_all(&wire).await.unwrap();
            let mut accepted = Vec::new();
            for _ in 0..200 {
                accepted.push(session.accept_stream().await.unwrap());
            }
            let payload = vec![0xAB; frame_len];
            let mut sent = 0usize;
            let mut frame = Vec::new();
            'flood: for round in 0.. {
                frame.clear();
                for _ in 0..16 {
                    let sid = 1 + 2 * ((round * 16 + frame.len()) as u32 % 200);
                    frame.extend_from_slice(
                        &Header::new(1, Cmd::Psh, frame_len as u16, sid).encode(),
                    );
                    frame.extend_from_slice(&payload);
                }
                match tokio::time::timeout(Duration::from_millis(200), peer.write_all(&frame)).await
                {
                    Ok(Ok(())) => sent += 16 * frame_len,
                    _ => break 'flood,
                }
                if sent > 64 * BUDGET {
                    panic!("the session kept reading past its budget");
                }
            }
            let buffered = session.buffered_bytes();
            assert!(
                buffered >= BUDGET - frame_len && buffered <= BUDGET + frame_len,
                "{buffered}"
            );
            // Live memory now, without this test's own frame buffers.
            let held = live() - before - (frame.capacity() + payload.capacity()) as isize;
            let peak = peak() - before;
            // Unread data costs at most three times the budget, plus the pipe's buffer, one
            // read chunk and the stream table.
            let overhead = 256 * 1024 + rsmux::proto::CHUNK + 200 * 1024;
            assert!(
                held < (3 * BUDGET + overhead) as isize,
                "frames of {frame_len} B: {held} B held for {buffered} B unread"
            );
            eprintln!(
                "frames of {frame_len:>5} B: {buffered} B unread, {held} B held, peak {peak} B"
            );
            // Dropping the streams returns everything.
            drop(accepted);
            assert_eq!(session.buffered_bytes(), 0);
            drop(session);
            drop(peer);
        }
    });
}

/// Bytes allocated per idle open stream, both ends counted, with 10,000 streams.
#[test]
fn idle_streams_cost_little_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 10_000;
    runtime().block_on(async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let client = Session::client(a, Config::default()).unwrap();
        let server = Session::server(b, Config::default()).unwrap();
        // Warm up: one stream through, so lazily allocated buffers exist before measuring.
        let mut s = client.open_stream().await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut p = server.accept_stream().await.unwrap();
        p.read_exact(&mut [0u8; 1]).await.unwrap();
        let before = live();
        let mut ours = Vec::with_capacity(N);
        let mut theirs = Vec::with_capacity(N);
        let vecs = (2 * N * std::mem::size_of::<rsmux::Stream>()) as isize;
        for _ in 0..N {
            ours.push(client.open_stream().await.unwrap());
        }
        for _ in 0..N {
            theirs.push(server.accept_stream().await.unwrap());
        }
        // Everything sent and received: the pair is idle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let per_stream = (live() - before - vecs) as f64 / N as f64;
        eprintln!("idle streams: {per_stream:.0} B per stream (client + server side together)");
        assert_eq!(client.num_streams(), N + 1);
        assert!(per_stream < 500.0, "{per_stream} B per idle stream");
        drop(ours);
        drop(theirs);
    });
}
