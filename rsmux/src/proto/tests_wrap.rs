//! Every wrapping counter of the core at its wrap point: v2 byte counters (written, read,
//! consumed) on transfers of more than 2^32 bytes and from starting points just below
//! `u32::MAX`, stream ids at the top of the id space, stream serials past `u64::MAX`, and the
//! limits of v2 receive-window auto-tuning. Keepalive arithmetic with durations that overflow
//! an `Instant` is tested in `keepalive.rs`.

use std::time::Instant;

use super::tests::{frame, Pair};
use super::*;
use crate::{
    config::{Config, Version},
    error::Error,
    frame::Cmd,
};

/// Bytes of the pattern: stream offset `o` carries `PATTERN[o % 251]`.
const PERIOD: usize = 251;
const MAX_IO: usize = 128 * 1024;

fn pattern() -> Vec<u8> {
    (0..PERIOD + MAX_IO).map(|i| (i % PERIOD) as u8).collect()
}

fn v2(auto_tune: bool) -> Config {
    Config {
        version: Version::V2,
        stream_window_auto_tune: auto_tune,
        ..Config::default()
    }
}

/// What a one-way transfer saw.
#[derive(Debug)]
struct Transfer {
    /// Largest sum of advertised windows on the receiving side.
    max_advertised: usize,
    /// Writes that went through (`Connection::write_through`) instead of being queued.
    written_through: u64,
}

/// How the writer hands its bytes to the core.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// `Connection::write`: copied into the stream's queue, framed by `poll_transmit`.
    Queued,
    /// `Connection::write_through` when the core agrees (frames built around the writer's
    /// own bytes, as the driver does when the wire is free), `write` otherwise.
    Through,
}

/// Offers `data` on stream `id` through `write_through`: the frames it agrees to go straight
/// into the server. How many bytes it took, `None` when it declined.
fn write_through(p: &mut Pair, id: StreamId, data: &[u8]) -> Option<usize> {
    let through = p.client.write_through(id, data.len(), p.now).unwrap()?;
    let mut slices = [std::io::IoSlice::new(&[]); 2 * crate::proto::tx::THROUGH_FRAMES];
    let n = through.io_slices(data, &mut slices);
    for slice in &slices[..n] {
        p.server_rb.extend_from_slice(slice);
    }
    p.client.handle_transmitted();
    p.server.handle_input(&mut p.server_rb);
    Some(through.len())
}

/// Moves `total` bytes client → server on one stream, the writer offering 128 KiB per call and
/// the reader reading `read_size` bytes per call until nothing is left, then checks every byte.
/// Counters start at `base` on both sides. Panics with the byte count if the stream stops.
fn transfer(config: Config, base: u32, total: u64, read_size: usize) -> Transfer {
    transfer_with(config, base, total, read_size, Writes::Queued)
}

/// [`transfer`], the writer handing its bytes over as `writes` says.
fn transfer_with(
    config: Config,
    base: u32,
    total: u64,
    read_size: usize,
    writes: Writes,
) -> Transfer {
    let pat = pattern();
    let mut p = Pair::new(config);
    p.client.test_set_counter_base(base);
    p.server.test_set_counter_base(base);
    let id = p.client.open().unwrap();
    p.drive();
    let sid = p.accept();
    let mut buf = vec![0u8; read_size];
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut max_advertised, mut written_through) = (0, 0);
    while received < total {
        let before = received;
        if sent < total {
            let off = (sent % PERIOD as u64) as usize;
            let len = (total - sent).min(MAX_IO as u64) as usize;
            let data = &pat[off..off + len];
            let through = match writes {
                Writes::Through => write_through(&mut p, id, data),
                Writes::Queued => None,
            };
            if let Some(n) = through {
                sent += n as u64;
                written_through += 1;
            } else if let Progress::Ready(n) = p.client.write(id, data, p.now).unwrap() {
                sent += n as u64;
            }
        }
        p.drive();
        while let ReadOutcome::Data(n) = p.server.read(sid, &mut buf, p.now).unwrap() {
            let off = (received % PERIOD as u64) as usize;
            assert!(
                buf[..n] == pat[off..off + n],
                "bytes differ after {received}"
            );
            received += n as u64;
        }
        max_advertised = max_advertised.max(p.server.advertised_windows());
        p.drive();
        if received == before {
            // A whole round without progress: the writer had data and offered it, the reader
            // read everything there was, every frame was delivered. Nothing will change.
            panic!("stream stalled after {received} bytes (sent {sent}, base {base})");
        }
    }
    assert_eq!(received, total);
    Transfer {
        max_advertised,
        written_through,
    }
}

const PAST_THE_WRAP: u64 = (1 << 32) + (8 << 20);

#[test]
fn v2_passes_2_pow_32_bytes_with_go_windows_and_draining_reads() {
    // The reported stall: Go's fixed 64 KiB window, a reader that drains everything. The
    // UPD due at exactly 2^32 bytes read carries CONSUMED 0; skipping it (as Go does) stops
    // the stream forever.
    transfer(v2(false), 0, PAST_THE_WRAP, MAX_IO);
}

#[test]
fn v2_passes_2_pow_32_bytes_auto_tuned_with_draining_reads() {
    let t = transfer(v2(true), 0, PAST_THE_WRAP, MAX_IO);
    assert!(t.max_advertised > 65536, "the window never grew: {t:?}");
}

#[test]
fn v2_passes_2_pow_32_bytes_with_small_reads() {
    transfer(v2(true), 0, PAST_THE_WRAP, 4096);
}

#[test]
fn v2_counters_started_just_below_the_wrap() {
    // Every read size against starting points where the window limit, a UPD threshold or
    // the first UPD falls on or next to 2^32.
    let bases = [
        u32::MAX,
        u32::MAX - 1,
        u32::MAX - 4095,
        u32::MAX - 32767,
        u32::MAX - 65535,
        u32::MAX - 131_071,
        u32::MAX - 262_143,
        0u32.wrapping_sub(262_144 + 32768),
    ];
    for auto_tune in [false, true] {
        for &base in &bases {
            for read_size in [1, 1000, 4096, 32768, 65536, MAX_IO] {
                let total = if read_size == 1 { 1 << 20 } else { 4 << 20 };
                transfer(v2(auto_tune), base, total, read_size);
            }
        }
    }
}

#[test]
fn v2_writes_through_past_2_pow_32_bytes_and_from_just_below_the_wrap() {
    // Write-through counts the window itself (the frames never pass the queue): its byte
    // counter must wrap like the queued path's.
    let t = transfer_with(v2(true), 0, PAST_THE_WRAP, MAX_IO, Writes::Through);
    assert!(t.written_through > 1000, "{t:?}");
    for base in [u32::MAX, u32::MAX - 32767, u32::MAX - 262_143] {
        for auto_tune in [false, true] {
            let t = transfer_with(v2(auto_tune), base, 4 << 20, 4096, Writes::Through);
            assert!(t.written_through > 0, "{t:?}");
        }
    }
}

#[test]
fn v2_small_frames_and_windows_across_the_wrap() {
    for (frame, window) in [(1, 1), (100, 333), (4096, 8192), (65535, 65536)] {
        let config = Config {
            max_frame_size: frame,
            max_stream_buffer: window,
            ..v2(true)
        };
        transfer(config, u32::MAX - 10_000, 300_000, 4096);
    }
}

#[test]
fn ids_at_the_top_of_the_space_carry_data_both_ways_then_go_away() {
    let mut p = Pair::new(Config::default());
    p.client.test_set_last_stream_id(u32::MAX - 2);
    p.server.test_set_last_stream_id(u32::MAX - 3);
    let c = p.client.open().unwrap();
    let s = p.server.open().unwrap();
    assert_eq!((c.get(), s.get()), (u32::MAX, u32::MAX - 1));
    p.client
        .write(c, b"from the last client id", p.now)
        .unwrap();
    p.server
        .write(s, b"from the last server id", p.now)
        .unwrap();
    p.client.shutdown_write(c, p.now).unwrap();
    p.server.shutdown_write(s, p.now).unwrap();
    p.drive();
    assert_eq!(p.server.accept().unwrap(), Some(c));
    assert_eq!(p.client.accept().unwrap(), Some(s));
    assert_eq!(
        Pair::read_all(&mut p.server, c, p.now),
        b"from the last client id"
    );
    assert_eq!(
        Pair::read_all(&mut p.client, s, p.now),
        b"from the last server id"
    );
    assert!(matches!(p.client.open(), Err(Error::GoAway)));
    assert!(matches!(p.server.open(), Err(Error::GoAway)));
    // The streams finish normally after the go-away.
    let mut buf = [0u8; 1];
    assert_eq!(p.server.read(c, &mut buf, p.now).unwrap(), ReadOutcome::Eof);
    assert_eq!(p.client.read(s, &mut buf, p.now).unwrap(), ReadOutcome::Eof);
}

#[test]
fn serials_wrap_and_still_tell_a_reused_id_apart() {
    let mut conn = Connection::new(Config::default(), Role::Server, Instant::now()).unwrap();
    conn.test_set_last_serial(u64::MAX - 1);
    let mut rb = RecvBuffer::new();
    let mut syn_fin = |conn: &mut Connection, id: u32, fin: bool| {
        rb.extend_from_slice(&frame(1, Cmd::Syn, id, &[]));
        if fin {
            rb.extend_from_slice(&frame(1, Cmd::Fin, id, &[]));
        }
        conn.handle_input(&mut rb);
    };
    syn_fin(&mut conn, 3, true);
    assert_eq!(conn.accept().unwrap(), Some(StreamId::new(3)));
    let first = conn.stream_serial(StreamId::new(3)).unwrap();
    assert_eq!(first, u64::MAX);
    // The application closes the stream; its FIN leaves; the entry goes.
    conn.release(StreamId::new(3), BOTH_HANDLES);
    let mut tx = TxBuf::new();
    conn.poll_transmit(&mut tx, usize::MAX);
    assert_eq!(conn.stream_serial(StreamId::new(3)), None);
    // The peer reuses id 3: a new stream, with a serial past the wrap.
    syn_fin(&mut conn, 3, false);
    syn_fin(&mut conn, 5, false);
    let (second, third) = (
        conn.stream_serial(StreamId::new(3)).unwrap(),
        conn.stream_serial(StreamId::new(5)).unwrap(),
    );
    assert_eq!((second, third), (0, 1));
    assert_ne!(first, second);
}

#[test]
fn auto_tuning_grows_while_the_reader_keeps_up_within_half_the_budget() {
    let budget = 1 << 20;
    let config = Config {
        max_receive_buffer: budget,
        ..v2(true)
    };
    let t = transfer(config.clone(), 0, 64 << 20, MAX_IO);
    // 64 KiB doubles up to 512 KiB = half the budget, not beyond.
    assert_eq!(t.max_advertised, budget / 2);
    // Off: Go's window, always.
    let t = transfer(
        Config {
            stream_window_auto_tune: false,
            ..config
        },
        0,
        8 << 20,
        MAX_IO,
    );
    assert_eq!(t.max_advertised, 65536);
}

#[test]
fn auto_tuning_grows_a_window_at_most_1024_fold() {
    // A one-byte window and a budget that would allow a gigabyte: growth stops at ×1024.
    let config = Config {
        max_stream_buffer: 1,
        max_receive_buffer: 1 << 30,
        ..v2(true)
    };
    let t = transfer(config, 0, 1 << 20, MAX_IO);
    assert_eq!(t.max_advertised, 1024);
}

#[test]
fn auto_tuning_leaves_a_slow_reader_at_its_configured_window() {
    let mut p = Pair::v2();
    let id = p.client.open().unwrap();
    p.drive();
    let sid = p.accept();
    let data = vec![1u8; MAX_IO];
    let mut buf = vec![0u8; 1000];
    let mut windows = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let _ = p.client.write(id, &data, p.now).unwrap();
        p.drive();
        // The reader takes 1000 bytes per round, never everything there is.
        assert!(matches!(
            p.server.read(sid, &mut buf, p.now).unwrap(),
            ReadOutcome::Data(1000)
        ));
        windows.insert(p.server.advertised_windows());
        p.drive();
    }
    assert_eq!(windows.into_iter().collect::<Vec<_>>(), vec![65536]);
}

#[test]
fn a_grown_stream_that_stalls_holds_at_most_its_window_and_others_go_on() {
    let budget = 1 << 20;
    let config = Config {
        max_receive_buffer: budget,
        ..v2(true)
    };
    let mut p = Pair::new(config);
    let bulk = p.client.open().unwrap();
    p.drive();
    let bulk_s = p.accept();
    let data = vec![1u8; MAX_IO];
    let mut buf = vec![0u8; MAX_IO];
    // A keeping-up reader: the window grows to half the budget.
    for _ in 0..200 {
        let _ = p.client.write(bulk, &data, p.now).unwrap();
        p.drive();
        while let ReadOutcome::Data(_) = p.server.read(bulk_s, &mut buf, p.now).unwrap() {}
        p.drive();
    }
    assert_eq!(p.server.advertised_windows(), budget / 2);
    // The reader stops; the writer goes on as far as the window lets it.
    for _ in 0..50 {
        let _ = p.client.write(bulk, &data, p.now).unwrap();
        p.drive();
    }
    let held = p.server.readable_bytes(bulk_s);
    assert!(held <= budget / 2, "a stalled stream holds {held} bytes");
    assert!(
        p.server.wants_read(),
        "one stalled stream exhausted the budget"
    );
    // Another stream still moves data both ways.
    let other = p.client.open().unwrap();
    p.client.write(other, b"still moving", p.now).unwrap();
    p.drive();
    let other_s = p.accept();
    assert_eq!(
        Pair::read_all(&mut p.server, other_s, p.now),
        b"still moving"
    );
    // Closing the stalled stream's reader gives its growth back; once no stream reads, the
    // sum is empty again.
    p.server.release(bulk_s, READ_HANDLE);
    assert_eq!(p.server.advertised_windows(), 65536);
    p.server.release(other_s, BOTH_HANDLES);
    p.server.release(bulk_s, WRITE_HANDLE);
    assert_eq!(p.server.advertised_windows(), 0);
}
