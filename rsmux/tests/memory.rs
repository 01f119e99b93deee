//! Memory bounds, measured with a counting global allocator.
//!
//! The tests in this file serialize on one lock because the allocator counts the whole process.

use std::{sync::Mutex, time::Duration};

use rsmux::{frame::Cmd, frame::Header, Config, Session};
use rsmux_test_support::counting::{self, allocations, live, peak, reset_peak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
            let cfg = Config::default()
                .with_max_receive_buffer(BUDGET)
                .with_max_stream_buffer(65536)
                .with_keep_alive_disabled(true);
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
            let overhead = 256 * 1024 + rsmux::proto::internals::CHUNK + 200 * 1024;
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

/// Payloads stay zero-copy slices of the session's read chunks, and one slice keeps its whole
/// chunk alive. A stream that is never read, receiving one small frame between every large
/// batch for another stream that is read at once, would pin a chunk per frame for a few unread
/// bytes each; the session must copy such slices out instead (`proto::recv_buffer`), so memory
/// stays near the budget's worth of chunks however many arrive.
#[test]
fn a_stream_that_is_never_read_cannot_pin_read_chunks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BUDGET: usize = 1 << 20;
    const ROUNDS: usize = 200;
    const SMALL: usize = 1024;
    const BIG: usize = 32760;
    const BIGS_PER_ROUND: usize = 8;
    runtime().block_on(async {
        let (ours, mut peer) = tokio::io::duplex(256 * 1024);
        let cfg = Config::default()
            .with_max_receive_buffer(BUDGET)
            .with_keep_alive_disabled(true);
        let before = live();
        reset_peak();
        let session = Session::server(ours, cfg).unwrap();
        let mut syns = Header::new(1, Cmd::Syn, 0, 1).encode().to_vec();
        syns.extend_from_slice(&Header::new(1, Cmd::Syn, 0, 3).encode());
        peer.write_all(&syns).await.unwrap();
        let stalled = session.accept_stream().await.unwrap();
        let mut busy = session.accept_stream().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < ROUNDS * BIGS_PER_ROUND * BIG {
                got += busy.read_chunk(usize::MAX).await.unwrap().unwrap().len();
            }
            busy
        });
        let mut round = Vec::new();
        round.extend_from_slice(&Header::new(1, Cmd::Psh, SMALL as u16, 1).encode());
        round.extend_from_slice(&[1u8; SMALL]);
        for _ in 0..BIGS_PER_ROUND {
            round.extend_from_slice(&Header::new(1, Cmd::Psh, BIG as u16, 3).encode());
            round.extend_from_slice(&[3u8; BIG]);
        }
        for _ in 0..ROUNDS {
            peer.write_all(&round).await.unwrap();
        }
        let busy = reader.await.unwrap();
        assert_eq!(session.buffered_bytes(), ROUNDS * SMALL);
        let held = live() - before - round.capacity() as isize;
        let peak = peak() - before;
        eprintln!(
            "{} B unread on a stalled stream among {} MiB read: {held} B held, peak {peak} B",
            ROUNDS * SMALL,
            (ROUNDS * BIGS_PER_ROUND * BIG) >> 20
        );
        // The unread bytes (compacted), twice the budget's worth of chunks plus two, the
        // pipe.
        let bound = ROUNDS * SMALL
            + 2 * BUDGET
            + 2 * rsmux::proto::internals::CHUNK
            + 256 * 1024
            + 64 * 1024;
        assert!(held < bound as isize, "{held} B held, bound {bound}");
        assert!(
            peak < (bound + BUDGET) as isize,
            "peak {peak} B, bound {bound}"
        );
        drop((busy, stalled));
        assert_eq!(session.buffered_bytes(), 0);
    });
}

/// A client and a server session over a pipe of `pipe` bytes (keepalive off) and one stream
/// between them, warmed up with one byte: (sessions, the client's end, the server's end).
async fn one_stream(
    version: u8,
    pipe: usize,
) -> ((Session, Session), rsmux::Stream, rsmux::Stream) {
    let (a, b) = tokio::io::duplex(pipe);
    let cfg = Config::default()
        .with_version(rsmux::Version::try_from(version).unwrap())
        .with_keep_alive_disabled(true);
    let client = Session::client(a, cfg.clone()).unwrap();
    let server = Session::server(b, cfg).unwrap();
    let mut w = client.open_stream().await.unwrap();
    w.write_all(b"x").await.unwrap();
    let mut r = server.accept_stream().await.unwrap();
    r.read_exact(&mut [0u8; 1]).await.unwrap();
    ((client, server), w, r)
}

/// In steady state neither the send path nor the receive path allocates per frame: received
/// chunks and write blocks are reused, frames are slices of them. One stream moves 64 MiB (2,048
/// frames of 32 KiB) in each direction after a warm-up, v1 and v2, through `write_all` /
/// `read` and through `write_chunk` / `read_chunk`.
#[test]
fn a_steady_transfer_does_not_allocate_per_frame() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const CHUNK: usize = 128 * 1024;
    const WARM: usize = 16 << 20;
    const MEASURED: usize = 64 << 20;
    for (version, zero_copy) in [(1, false), (2, false), (1, true), (2, true)] {
        runtime().block_on(async move {
            let (_sessions, mut w, mut r) = one_stream(version, 1 << 20).await;
            let shared = bytes::Bytes::from(vec![7u8; CHUNK]);
            let writer = tokio::spawn(async move {
                let buf = vec![7u8; CHUNK];
                for _ in 0..(WARM + MEASURED) / CHUNK {
                    if zero_copy {
                        w.write_chunk(shared.clone()).await.unwrap();
                    } else {
                        w.write_all(&buf).await.unwrap();
                    }
                }
                w
            });
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            let mut start = None;
            while got < WARM + MEASURED {
                if got >= WARM && start.is_none() {
                    start = Some(allocations());
                }
                got += if zero_copy {
                    r.read_chunk(CHUNK).await.unwrap().unwrap().len()
                } else {
                    r.read(&mut buf).await.unwrap()
                };
            }
            let made = allocations() - start.unwrap();
            let per_mib = made as f64 / (MEASURED >> 20) as f64;
            eprintln!(
                "v{version}, {}: {made} allocations for {} MiB ({per_mib:.2} per MiB, {} frames)",
                if zero_copy {
                    "write_chunk/read_chunk"
                } else {
                    "write_all/read"
                },
                MEASURED >> 20,
                MEASURED / 32768
            );
            // A frame is 32 KiB: 32 per MiB. Allow a few allocations per MiB for amortized
            // growth and the occasional fresh buffer, not one per frame.
            assert!(per_mib < 2.0, "{per_mib:.2} allocations per MiB");
            drop(writer.await.unwrap());
        });
    }
}

/// Buffers kept for reuse during a transfer (receive chunks, write blocks, queue parts) are let
/// go once the session has been quiet for a second: an idle session holds no spare memory.
#[test]
fn spare_buffers_are_let_go_once_the_session_is_quiet() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(async {
        let (_sessions, mut w, mut r) = one_stream(1, 64 * 1024).await;
        let before = live();
        let writer = tokio::spawn(async move {
            let buf = vec![7u8; 128 * 1024];
            for _ in 0..256 {
                w.write_all(&buf).await.unwrap();
            }
            w
        });
        let mut buf = vec![0u8; 128 * 1024];
        let mut got = 0;
        while got < 256 * 128 * 1024 {
            got += r.read(&mut buf).await.unwrap();
        }
        let w = writer.await.unwrap();
        let busy = live() - before;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let quiet = live() - before;
        eprintln!("after 32 MiB: {busy} B held; quiet for 2 s: {quiet} B");
        assert!(
            busy > 1 << 20,
            "spare buffers were kept while busy: {busy} B"
        );
        assert!(
            quiet < (rsmux::proto::internals::CHUNK + 64 * 1024) as isize,
            "{quiet} B still held by a quiet session"
        );
        drop((w, r));
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
        assert!(per_stream < 300.0, "{per_stream} B per idle stream");
        drop(ours);
        drop(theirs);
    });
}

/// Protocol v2 with auto-tuned windows: streams whose readers kept up grow their windows,
/// then every reader stops while the writers go on. Unread data must stay within half the
/// receive budget (the auto-tuning bound; the configured windows of these few streams are
/// less than that), the heap behind it bounded accordingly, and another stream must still
/// get through.
#[test]
fn auto_tuned_windows_of_stalled_readers_stay_within_half_the_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const BUDGET: usize = 4 << 20;
    const STREAMS: usize = 8;
    const KEPT_UP: usize = 8 << 20;
    // On tokio's paused clock the writers' 300 ms timeouts fire only once every task is
    // blocked, that is once the windows have stopped every writer: no real waiting.
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(async {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let cfg = Config::default()
            .with_version(rsmux::Version::V2)
            .with_max_receive_buffer(BUDGET)
            .with_keep_alive_disabled(true);
        assert!(cfg.stream_window_auto_tune, "on by default");
        let client = Session::client(a, cfg.clone()).unwrap();
        let server = Session::server(b, cfg).unwrap();
        let before = live();
        reset_peak();
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..STREAMS {
            let mut w = client.open_stream().await.unwrap();
            w.write_all(b"x").await.unwrap();
            let mut r = server.accept_stream().await.unwrap();
            r.read_exact(&mut [0u8; 1]).await.unwrap();
            // The writer goes on until the window stops it (300 ms on the paused clock).
            writers.push(tokio::spawn(async move {
                let chunk = vec![7u8; 128 * 1024];
                let mut sent = 0usize;
                while let Ok(res) =
                    tokio::time::timeout(Duration::from_millis(300), w.write_all(&chunk)).await
                {
                    res.unwrap();
                    sent += chunk.len();
                }
                (w, sent)
            }));
            // The reader keeps up for a while, then stops reading (and keeps the stream).
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 128 * 1024];
                let mut got = 0;
                while got < KEPT_UP {
                    let n = r
                        .read(&mut buf[..(KEPT_UP - got).min(128 * 1024)])
                        .await
                        .unwrap();
                    got += n;
                }
                r
            }));
        }
        let mut held_streams = Vec::new();
        for r in readers {
            held_streams.push(r.await.unwrap());
        }
        let mut unread = 0;
        let mut blocked_writers = Vec::new();
        for w in writers {
            let (w, sent) = w.await.unwrap();
            unread += sent - KEPT_UP;
            blocked_writers.push(w);
        }
        let buffered = server.buffered_bytes();
        let peak = peak() - before;
        let held = live() - before;
        eprintln!(
            "auto-tuned v2, {STREAMS} stalled streams: {buffered} B unread \
             ({unread} B written past the reads), {held} B held, peak {peak} B"
        );
        // The windows grew: more is unread than the configured windows allow ...
        assert!(
            buffered > STREAMS * 65536 + 65536,
            "windows never grew: {buffered}"
        );
        // ... but no more than half the budget: the other half stays free.
        assert!(buffered <= BUDGET / 2, "{buffered} B unread");
        let overhead = 256 * 1024 + rsmux::proto::internals::CHUNK + STREAMS * 300 * 1024;
        assert!(
            peak < (3 * BUDGET / 2 + overhead) as isize,
            "peak heap {peak} B for {buffered} B unread"
        );
        // Another stream still gets through.
        let mut w = client.open_stream().await.unwrap();
        w.write_all(b"still moving").await.unwrap();
        w.shutdown().await.unwrap();
        let mut r = server.accept_stream().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still moving");
        drop(held_streams);
        assert_eq!(server.buffered_bytes(), 0);
    });
}
