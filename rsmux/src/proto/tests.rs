//! Deterministic tests of the core: two `Connection`s joined by an in-memory pipe and a
//! simulated clock. No runtime, no sockets, no sleeps.

use std::time::{Duration, Instant};

use super::internals::*;
use super::*;
use crate::{
    config::{Config, Version},
    error::{Error, ProtocolError},
    frame::{encode_upd, Cmd, Header},
};

pub(super) struct Pair {
    pub(super) client: Connection,
    pub(super) server: Connection,
    pub(super) client_rb: RecvBuffer,
    pub(super) server_rb: RecvBuffer,
    pub(super) now: Instant,
}

impl Pair {
    pub(super) fn new(config: Config) -> Pair {
        let now = Instant::now();
        Pair {
            client: Connection::new(config.clone(), Role::Client, now).unwrap(),
            server: Connection::new(config, Role::Server, now).unwrap(),
            client_rb: RecvBuffer::new(),
            server_rb: RecvBuffer::new(),
            now,
        }
    }

    pub(super) fn v2() -> Pair {
        Pair::new(Config {
            version: Version::V2,
            ..Config::default()
        })
    }

    /// Moves every queued frame client → server and server → client until both are quiet.
    pub(super) fn drive(&mut self) {
        for _ in 0..10_000 {
            let a = pump(&mut self.client, &mut self.server, &mut self.server_rb);
            let b = pump(&mut self.server, &mut self.client, &mut self.client_rb);
            if a + b == 0 {
                return;
            }
        }
        panic!("pair did not settle");
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
    }

    pub(super) fn accept(&mut self) -> StreamId {
        self.server.accept().unwrap().expect("a stream waits")
    }

    pub(super) fn read_all(conn: &mut Connection, id: StreamId, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7000];
        while let Ok(ReadOutcome::Data(n)) = conn.read(id, &mut buf, now) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

/// Moves the frames `from` has queued into `to`; returns the number of bytes moved.
pub(super) fn pump(from: &mut Connection, to: &mut Connection, rb: &mut RecvBuffer) -> usize {
    let bytes = transmit(from);
    if !bytes.is_empty() {
        from.handle_transmitted();
    }
    rb.extend_from_slice(&bytes);
    to.handle_input(rb);
    bytes.len()
}

pub(super) fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut tx = TxBuf::new();
    conn.poll_transmit(&mut tx, usize::MAX);
    tx.to_vec()
}

/// Splits wire bytes into (cmd, stream id, payload length) triples.
pub(super) fn frames(mut wire: &[u8]) -> Vec<(u8, u32, usize)> {
    let mut out = Vec::new();
    while wire.len() >= 8 {
        let len = u16::from_le_bytes([wire[2], wire[3]]) as usize;
        let sid = u32::from_le_bytes(wire[4..8].try_into().unwrap());
        out.push((wire[1], sid, len));
        wire = &wire[8 + len..];
    }
    assert!(wire.is_empty(), "trailing bytes");
    out
}

pub(super) fn feed(conn: &mut Connection, bytes: &[u8]) {
    let mut rb = RecvBuffer::new();
    rb.extend_from_slice(bytes);
    conn.handle_input(&mut rb);
}

pub(super) fn frame(version: u8, cmd: Cmd, sid: impl Into<StreamId>, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::new(version, cmd, payload.len() as u16, sid.into().get())
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

pub(super) const SYN: u8 = Cmd::Syn as u8;
pub(super) const FIN: u8 = Cmd::Fin as u8;
pub(super) const PSH: u8 = Cmd::Psh as u8;
pub(super) const UPD: u8 = Cmd::Upd as u8;

#[test]
fn open_accept_and_echo() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    assert_eq!(id, 3);
    assert_eq!(
        p.client.write(id, b"hello", p.now).unwrap(),
        Progress::Ready(5)
    );
    p.drive();
    assert_eq!(p.accept(), 3);
    assert_eq!(
        Pair::read_all(&mut p.server, StreamId::new(3), p.now),
        b"hello"
    );
    let sid = p.server.open().unwrap();
    assert_eq!(sid, 2);
    p.drive();
    assert_eq!(p.client.accept().unwrap(), Some(StreamId::new(2)));
    assert_eq!(p.client.num_streams(), 2);
}

#[test]
fn syn_goes_out_before_data_and_fin_after_it() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, &[1u8; 70_000], p.now).unwrap();
    assert_eq!(
        p.client.shutdown_write(id, p.now).unwrap(),
        Progress::Blocked
    );
    let wire = transmit(&mut p.client);
    assert_eq!(
        frames(&wire),
        vec![
            (SYN, 3, 0),
            (PSH, 3, 32768),
            (PSH, 3, 32768),
            (PSH, 3, 70_000 - 65536),
            (FIN, 3, 0)
        ]
    );
    assert_eq!(
        p.client.shutdown_write(id, p.now).unwrap(),
        Progress::Ready(0)
    );
}

#[test]
fn fin_gives_eof_only_after_buffered_data() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, b"abc", p.now).unwrap();
    let _ = p.client.shutdown_write(id, p.now).unwrap();
    p.drive();
    let sid = p.accept();
    let mut buf = [0u8; 2];
    assert_eq!(
        p.server.read(sid, &mut buf, p.now).unwrap(),
        ReadOutcome::Data(2)
    );
    assert_eq!(
        p.server.read(sid, &mut buf, p.now).unwrap(),
        ReadOutcome::Data(1)
    );
    assert_eq!(
        p.server.read(sid, &mut buf, p.now).unwrap(),
        ReadOutcome::Eof
    );
    // Half-close: the server can still write back, and the client still reads.
    p.server.write(sid, b"reply", p.now).unwrap();
    p.drive();
    assert_eq!(Pair::read_all(&mut p.client, id, p.now), b"reply");
    assert!(matches!(
        p.client.write(id, b"x", p.now),
        Err(Error::Closed)
    ));
}

#[test]
fn half_close_never_discards_unread_data() {
    // SPEC §8 data-loss edge case: we shut our side, the peer sends data then FIN before we
    // read. Go's auto-cleanup discards the data; we keep it until read.
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    let _ = p.client.shutdown_write(id, p.now).unwrap();
    p.drive();
    let sid = p.accept();
    p.server.write(sid, b"late data", p.now).unwrap();
    let _ = p.server.shutdown_write(sid, p.now).unwrap();
    p.drive();
    assert_eq!(
        p.client.num_streams(),
        1,
        "unread data keeps the stream open"
    );
    assert_eq!(Pair::read_all(&mut p.client, id, p.now), b"late data");
    assert_eq!(
        p.client.read(id, &mut [0u8; 4], p.now).unwrap(),
        ReadOutcome::Eof
    );
    assert_eq!(p.client.num_streams(), 0, "both FINs and everything read");
    p.server.release(sid, BOTH_HANDLES);
    p.client.release(id, BOTH_HANDLES);
    assert_eq!(p.client.table_len(), 0);
    assert_eq!(p.server.table_len(), 0);
}

#[test]
fn stream_is_registered_before_its_syn_leaves() {
    // SPEC §2: a very fast reply must not be dropped.
    let mut c = Connection::new(Config::default(), Role::Client, Instant::now()).unwrap();
    let id = c.open().unwrap();
    feed(&mut c, &frame(1, Cmd::Psh, id, b"early"));
    assert_eq!(Pair::read_all(&mut c, id, Instant::now()), b"early");
}

#[test]
fn go_away_when_ids_run_out_and_existing_streams_keep_working() {
    let mut p = Pair::new(Config::default());
    let first = p.client.open().unwrap();
    p.client.ids_for_test().set_last(u32::MAX - 2);
    assert_eq!(p.client.open().unwrap(), u32::MAX);
    assert!(matches!(p.client.open(), Err(Error::GoAway)));
    assert!(matches!(p.client.open(), Err(Error::GoAway)));
    p.client.write(first, b"still fine", p.now).unwrap();
    p.drive();
    assert_eq!(p.accept(), first);
    assert_eq!(Pair::read_all(&mut p.server, first, p.now), b"still fine");
}

#[test]
fn ids_the_peer_already_used_are_skipped() {
    let mut c = Connection::new(Config::default(), Role::Client, Instant::now()).unwrap();
    feed(&mut c, &frame(1, Cmd::Syn, 3, b""));
    assert_eq!(c.open().unwrap(), 5);
}

#[test]
fn duplicate_syn_is_ignored() {
    let mut s = Connection::new(Config::default(), Role::Server, Instant::now()).unwrap();
    let mut wire = frame(1, Cmd::Syn, 1000, b"");
    wire.extend(frame(1, Cmd::Syn, 1000, b""));
    feed(&mut s, &wire);
    assert_eq!(s.pending_accepts(), 1);
    assert!(!s.is_closed());
}

#[test]
fn psh_to_unknown_stream_is_dropped_without_charging_the_budget() {
    let mut s = Connection::new(Config::default(), Role::Server, Instant::now()).unwrap();
    feed(&mut s, &frame(1, Cmd::Psh, 77, &[0u8; 65535]));
    assert_eq!(s.buffered_bytes(), 0);
    assert!(!s.is_closed());
}

#[test]
fn psh_larger_than_local_max_frame_size_is_accepted() {
    let mut s = Connection::new(Config::default(), Role::Server, Instant::now()).unwrap();
    let mut wire = frame(1, Cmd::Syn, 3, b"");
    wire.extend(frame(1, Cmd::Psh, 3, &[9u8; 65535]));
    feed(&mut s, &wire);
    let id = s.accept().unwrap().unwrap();
    assert_eq!(Pair::read_all(&mut s, id, Instant::now()).len(), 65535);
}

#[test]
fn protocol_errors_close_the_session_with_a_clear_error() {
    let cases: Vec<(u8, Vec<u8>, ProtocolError)> = vec![
        (
            1,
            frame(2, Cmd::Nop, 0, b""),
            ProtocolError::VersionMismatch {
                got: 2,
                expected: 1,
            },
        ),
        (
            1,
            vec![1, 9, 0, 0, 0, 0, 0, 0],
            ProtocolError::UnknownCommand(9),
        ),
        (
            1,
            frame(1, Cmd::Nop, 0, b"x"),
            ProtocolError::UnexpectedPayload { cmd: "NOP", len: 1 },
        ),
        (
            1,
            frame(1, Cmd::Syn, 5, b"xy"),
            ProtocolError::UnexpectedPayload { cmd: "SYN", len: 2 },
        ),
        (
            1,
            frame(1, Cmd::Fin, 5, b"x"),
            ProtocolError::UnexpectedPayload { cmd: "FIN", len: 1 },
        ),
        (1, frame(1, Cmd::Upd, 5, &[0; 8]), ProtocolError::UpdateInV1),
        (
            2,
            frame(2, Cmd::Upd, 5, &[0; 4]),
            ProtocolError::BadUpdateLength(4),
        ),
    ];
    for (version, wire, expected) in cases {
        let cfg = Config::default().with_version(Version::try_from(version).unwrap());
        let mut s = Connection::new(cfg, Role::Server, Instant::now()).unwrap();
        // A stream with buffered data: the data is still delivered, then the error.
        let mut good = frame(version, Cmd::Syn, 3, b"");
        good.extend(frame(version, Cmd::Psh, 3, b"kept"));
        feed(&mut s, &good);
        let id = s.accept().unwrap().unwrap();
        feed(&mut s, &wire);
        assert!(s.is_closed());
        assert!(!s.wants_read());
        match s.close_reason() {
            Some(Error::Protocol(e)) => assert_eq!(*e, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
        let mut buf = [0u8; 16];
        assert_eq!(
            s.read(id, &mut buf, Instant::now()).unwrap(),
            ReadOutcome::Data(4)
        );
        assert!(matches!(
            s.read(id, &mut buf, Instant::now()),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(s.accept(), Err(Error::Protocol(_))));
        assert!(matches!(s.open(), Err(Error::Protocol(_))));
    }
}

#[test]
fn budget_pauses_reading_and_resumes_as_the_application_reads() {
    let cfg = Config {
        max_receive_buffer: 100_000,
        max_stream_buffer: 65536,
        ..Config::default()
    };
    let mut p = Pair::new(cfg);
    let id = p.client.open().unwrap();
    // The send side buffers at most one budget's worth too: write in two goes.
    assert_eq!(
        p.client.write(id, &[1u8; 200_000], p.now).unwrap(),
        Progress::Ready(100_000)
    );
    p.drive();
    assert_eq!(
        p.client.write(id, &[1u8; 100_000], p.now).unwrap(),
        Progress::Ready(100_000)
    );
    p.drive();
    let sid = p.accept();
    assert!(!p.server.wants_read(), "budget exhausted: reading paused");
    let buffered = p.server.buffered_bytes();
    assert!((100_000..100_000 + 32768).contains(&buffered), "{buffered}");
    let mut buf = vec![0u8; 150_000];
    let ReadOutcome::Data(n) = p.server.read(sid, &mut buf, p.now).unwrap() else {
        panic!()
    };
    assert_eq!(n, buffered);
    assert!(p.server.wants_read());
    p.drive();
    assert_eq!(Pair::read_all(&mut p.server, sid, p.now).len(), 200_000 - n);
}

#[test]
fn closing_a_stream_releases_its_unread_data() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, &[1u8; 100_000], p.now).unwrap();
    p.drive();
    let sid = p.accept();
    assert_eq!(p.server.buffered_bytes(), 100_000);
    p.server.release(sid, BOTH_HANDLES);
    assert_eq!(p.server.buffered_bytes(), 0);
    // Later data for it is dropped and not charged.
    p.client.write(id, &[1u8; 1000], p.now).unwrap();
    p.drive();
    assert_eq!(p.server.buffered_bytes(), 0);
}

#[test]
fn dropping_the_read_half_only_keeps_writing() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.release(id, READ_HANDLE);
    p.client.write(id, b"one way", p.now).unwrap();
    p.drive();
    let sid = p.accept();
    assert_eq!(Pair::read_all(&mut p.server, sid, p.now), b"one way");
    p.client.release(id, WRITE_HANDLE);
    p.drive();
    assert_eq!(
        p.server.read(sid, &mut [0; 1], p.now).unwrap(),
        ReadOutcome::Eof
    );
    assert_eq!(p.client.table_len(), 0);
}

#[test]
fn data_written_before_close_is_sent_before_fin() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, &[5u8; 100_000], p.now).unwrap();
    p.client.release(id, BOTH_HANDLES); // drop right after writing
    p.drive();
    let sid = p.accept();
    assert_eq!(
        Pair::read_all(&mut p.server, sid, p.now),
        vec![5u8; 100_000]
    );
    assert_eq!(
        p.server.read(sid, &mut [0; 1], p.now).unwrap(),
        ReadOutcome::Eof
    );
    assert_eq!(p.client.table_len(), 0, "entry gone once its FIN left");
}

#[test]
fn session_close_flushes_queued_data_then_asks_for_shutdown() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    p.client.write(id, &[5u8; 100_000], p.now).unwrap();
    assert!(p.client.close(p.now));
    assert!(!p.client.close(p.now), "second close is refused");
    assert!(!p.client.wants_shutdown(), "data still queued");
    assert!(matches!(
        p.client.write(id, b"x", p.now),
        Err(Error::Closed)
    ));
    p.drive();
    assert!(p.client.wants_shutdown());
    p.client.handle_shutdown();
    assert!(p.client.is_terminated());
    let sid = p.accept();
    assert_eq!(Pair::read_all(&mut p.server, sid, p.now).len(), 100_000);
    // Go's Session.Close sends no FIN: the peer learns from end-of-file.
    p.server.handle_eof();
    assert!(matches!(
        p.server.read(sid, &mut [0; 1], p.now),
        Err(Error::ConnectionClosed)
    ));
}

#[test]
fn bulk_stream_cannot_starve_a_small_one() {
    let mut p = Pair::new(Config::default());
    let bulk = p.client.open().unwrap();
    let small = p.client.open().unwrap();
    p.client
        .write(bulk, &[0u8; STREAM_SEND_BUFFER], p.now)
        .unwrap();
    let _ = transmit(&mut p.client); // SYNs and everything queued so far
    p.client
        .write(bulk, &[0u8; STREAM_SEND_BUFFER], p.now)
        .unwrap();
    p.client.write(small, b"ping", p.now).unwrap();
    let wire = transmit(&mut p.client);
    let f = frames(&wire);
    let pos = f.iter().position(|x| small == x.1).unwrap();
    assert!(pos <= 1, "small stream served within one round: {f:?}");
    // Round robin: frames alternate while both have data.
    let mut q = Pair::new(Config::default());
    let a = q.client.open().unwrap();
    let b = q.client.open().unwrap();
    q.client.write(a, &[0u8; 4 * 32768], q.now).unwrap();
    q.client.write(b, &[0u8; 4 * 32768], q.now).unwrap();
    let sids: Vec<StreamId> = frames(&transmit(&mut q.client))
        .iter()
        .map(|f| StreamId::new(f.1))
        .collect();
    assert_eq!(sids, vec![a, b, a, b, a, b, a, b, a, b]);
}

#[test]
fn upd_is_sent_ahead_of_the_streams_own_data() {
    let mut p = Pair::v2();
    let id = p.client.open().unwrap();
    p.client.write(id, b"request", p.now).unwrap();
    p.drive();
    let sid = p.accept();
    let _ = Pair::read_all(&mut p.server, sid, p.now);
    p.server.write(sid, b"response", p.now).unwrap();
    let f = frames(&transmit(&mut p.server));
    assert_eq!(f, vec![(UPD, sid.get(), 8), (PSH, sid.get(), 8)]);
}

#[test]
fn v2_sender_stops_at_256k_then_adopts_the_peer_window() {
    let mut p = Pair::v2();
    let id = p.client.open().unwrap();
    p.client
        .write(id, &[1u8; STREAM_SEND_BUFFER], p.now)
        .unwrap();
    p.client
        .write(id, &[1u8; 10], p.now)
        .unwrap_err_or_blocked();
    p.drive();
    let sid = p.accept();
    assert_eq!(p.server.buffered_bytes(), INITIAL_PEER_WINDOW as usize);
    // Reading 10000 bytes sends UPD{10000, 65536}; the window shrinks to 64 KiB.
    let mut buf = vec![0u8; 10000];
    p.server.read(sid, &mut buf, p.now).unwrap();
    let wire = transmit(&mut p.server);
    let mut expected = Header::new(2, Cmd::Upd, 8, sid.get()).encode().to_vec();
    expected.extend(encode_upd(10000, 65536));
    assert_eq!(wire, expected);
    p.client_rb.extend_from_slice(&wire);
    p.client.handle_input(&mut p.client_rb);
    assert!(transmit(&mut p.client).is_empty(), "window still closed");
}

#[test]
fn v2_upd_on_first_read_and_every_half_buffer() {
    let mut p = Pair::v2();
    let id = p.client.open().unwrap();
    p.client.write(id, &[1u8; 100_000], p.now).unwrap();
    p.drive();
    let sid = p.accept();
    let mut consumed = Vec::new();
    let mut buf = vec![0u8; 10000];
    for _ in 0..10 {
        p.server.read(sid, &mut buf, p.now).unwrap();
        let wire = transmit(&mut p.server);
        for (cmd, _, _) in frames(&wire) {
            assert_eq!(cmd, UPD);
            consumed.push(u32::from_le_bytes(wire[8..12].try_into().unwrap()));
        }
    }
    // First read, then each time 32768 more bytes were read since the last UPD.
    assert_eq!(consumed, vec![10000, 50000, 90000]);
}

#[test]
fn v2_timed_out_write_does_not_shrink_the_window() {
    // Runs the same transfer with and without a write that times out while the window is
    // closed; the window afterwards must be the same (Go counts the timed-out bytes as sent).
    fn scenario(with_timeout: bool) -> (usize, usize) {
        let mut p = Pair::v2();
        let id = p.client.open().unwrap();
        // 256 KiB in flight: the window is closed, so the next write must wait.
        p.client
            .write(id, &[1u8; STREAM_SEND_BUFFER], p.now)
            .unwrap();
        p.drive();
        let sid = p.accept();
        if with_timeout {
            p.client
                .set_write_deadline(id, Some(p.now + Duration::from_secs(1)));
            assert_eq!(p.client.write(id, b"x", p.now).unwrap(), Progress::Blocked);
            p.advance(Duration::from_secs(2));
            assert!(matches!(
                p.client.write(id, b"x", p.now),
                Err(Error::Timeout)
            ));
            p.client.set_write_deadline(id, None);
        }
        // The peer reads everything; UPDs open the window again.
        let mut total = 0;
        for _ in 0..10 {
            total += Pair::read_all(&mut p.server, sid, p.now).len();
            p.drive();
        }
        assert_eq!(total, STREAM_SEND_BUFFER);
        let Progress::Ready(n) = p.client.write(id, &[2u8; 65536], p.now).unwrap() else {
            panic!("window still closed")
        };
        p.drive();
        (n, p.server.buffered_bytes())
    }
    let control = scenario(false);
    assert!(control.0 > 32768, "{control:?}");
    assert_eq!(scenario(true), control);
}

#[test]
fn v2_data_waiting_for_a_window_never_blocks_other_streams() {
    // Writes beyond a stream's window wait at that stream; the session-wide send room stays
    // free for streams whose peer reads.
    let mut p = Pair::v2();
    let client_cfg = Config {
        version: Version::V2,
        max_receive_buffer: 1 << 20, // the client's session send cap follows it
        ..Config::default()
    };
    p.client = Connection::new(client_cfg, Role::Client, p.now).unwrap();
    let slow: Vec<StreamId> = (0..4).map(|_| p.client.open().unwrap()).collect();
    for &id in &slow {
        let mut sent = 0;
        while let Progress::Ready(n) = p.client.write(id, &[0u8; 512 * 1024], p.now).unwrap() {
            sent += n;
            p.drive();
            if n == 0 {
                break;
            }
        }
        assert_eq!(sent, INITIAL_PEER_WINDOW as usize);
    }
    let fast = p.client.open().unwrap();
    assert_eq!(
        p.client.write(fast, b"ping", p.now).unwrap(),
        Progress::Ready(4)
    );
    p.drive();
    for _ in 0..4 {
        p.accept();
    }
    let fid = p.accept();
    assert_eq!(Pair::read_all(&mut p.server, fid, p.now), b"ping");
}

#[test]
fn v2_peer_consumed_more_than_sent_is_a_protocol_error() {
    let cfg = Config {
        version: Version::V2,
        ..Config::default()
    };
    let mut c = Connection::new(cfg, Role::Client, Instant::now()).unwrap();
    let id = c.open().unwrap();
    c.write(id, b"0123456789", Instant::now()).unwrap();
    feed(&mut c, &frame(2, Cmd::Upd, id, &encode_upd(5, 65536)));
    // The peer claims bytes that never left: nothing it says can be trusted any more, and
    // the data it did not get must not look delivered (no FIN, no clean flush).
    assert!(matches!(
        c.close_reason(),
        Some(Error::Protocol(ProtocolError::ConsumedMoreThanSent { .. }))
    ));
    assert!(c.flush(id, Instant::now()).is_err());
    assert!(c.shutdown_write(id, Instant::now()).is_err());
    assert!(transmit(&mut c).is_empty());
}

#[test]
fn read_deadline_times_out_and_setting_it_wakes_the_reader() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        p.client.read(id, &mut buf, p.now).unwrap(),
        ReadOutcome::Blocked
    );
    p.client
        .set_read_deadline(id, Some(p.now + Duration::from_millis(500)));
    assert_eq!(p.client.poll_event(), Some(Event::Readable(id)));
    assert_eq!(
        p.client.poll_timeout(),
        Some(p.now + Duration::from_millis(500))
    );
    assert_eq!(
        p.client.read(id, &mut buf, p.now).unwrap(),
        ReadOutcome::Blocked
    );
    p.advance(Duration::from_millis(500));
    assert_eq!(p.client.poll_event(), Some(Event::Readable(id)));
    assert!(matches!(
        p.client.read(id, &mut buf, p.now),
        Err(Error::Timeout)
    ));
    // Buffered data is returned even past the deadline, as in Go.
    p.server.open().unwrap();
    p.drive();
    let _ = p.client.accept().unwrap();
    let sid = p.accept();
    p.server.write(sid, b"data", p.now).unwrap();
    p.drive();
    assert_eq!(
        p.client.read(id, &mut buf, p.now).unwrap(),
        ReadOutcome::Data(4)
    );
}

#[test]
fn keepalive_sends_nops_and_kills_a_silent_peer() {
    let cfg = Config {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut p = Pair::new(cfg);
    let mut died_at = None;
    for second in 1..=10 {
        p.advance(Duration::from_secs(1));
        if p.client.is_closed() {
            died_at = Some(second);
            break;
        }
        let nop = transmit(&mut p.client);
        assert_eq!(nop, [1, 3, 0, 0, 0, 0, 0, 0]);
        p.server_rb.extend_from_slice(&nop);
        p.server.handle_input(&mut p.server_rb);
        let _ = transmit(&mut p.server); // the server's NOPs are lost: the client hears nothing
    }
    assert_eq!(
        died_at,
        Some(3),
        "first check after one silent timeout period"
    );
    assert!(!p.server.is_closed(), "the server hears NOPs");
    assert!(matches!(
        p.client.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
    assert!(p.client.is_terminated());
}

#[test]
fn keepalive_exempts_a_slow_reader_only_while_the_peer_takes_our_bytes() {
    let cfg = Config {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(2),
        max_receive_buffer: 65536,
        ..Config::default()
    };
    let mut p = Pair::new(cfg);
    let id = p.client.open().unwrap();
    p.client.write(id, &[0u8; 100_000], p.now).unwrap();
    p.drive();
    assert!(!p.server.wants_read());
    // The server's NOPs keep leaving (the client reads them); the client's pile up unread.
    for _ in 0..10 {
        p.advance(Duration::from_secs(1));
        pump(&mut p.server, &mut p.client, &mut p.client_rb);
        let _ = transmit(&mut p.client);
    }
    assert!(!p.server.is_closed(), "we are the slow side: no timeout");
    // The peer stops taking our bytes too: dead or hostile, the exemption ends.
    for _ in 0..4 {
        p.advance(Duration::from_secs(1));
    }
    assert!(matches!(
        p.server.close_reason(),
        Some(Error::KeepaliveTimeout(_))
    ));
}

#[test]
fn accept_backlog_pauses_reading() {
    // Go's 1024 by default, and a configured one.
    for backlog in [1024, 16] {
        let config = Config::default().with_accept_backlog(backlog);
        let mut s = Connection::new(config, Role::Server, Instant::now()).unwrap();
        let mut wire = Vec::new();
        for i in 0..backlog as u32 + 10 {
            wire.extend(frame(1, Cmd::Syn, 1 + 2 * i, b""));
        }
        let mut rb = RecvBuffer::new();
        rb.extend_from_slice(&wire);
        s.handle_input(&mut rb);
        assert_eq!(s.pending_accepts(), backlog);
        assert!(!s.wants_read());
        assert_eq!(rb.len(), 10 * 8, "the rest waits in the buffer");
        s.accept().unwrap().unwrap();
        assert!(s.take_wake_driver());
        s.handle_input(&mut rb);
        assert_eq!(s.pending_accepts(), backlog);
    }
}

#[test]
fn frames_split_across_reads_are_reassembled() {
    let mut s = Connection::new(Config::default(), Role::Server, Instant::now()).unwrap();
    let mut wire = frame(1, Cmd::Syn, 3, b"");
    wire.extend(frame(1, Cmd::Psh, 3, b"split payload"));
    wire.extend(frame(1, Cmd::Fin, 3, b""));
    let mut rb = RecvBuffer::new();
    for b in wire {
        rb.extend_from_slice(&[b]);
        s.handle_input(&mut rb);
    }
    let id = s.accept().unwrap().unwrap();
    assert_eq!(Pair::read_all(&mut s, id, Instant::now()), b"split payload");
    assert_eq!(
        s.read(id, &mut [0; 1], Instant::now()).unwrap(),
        ReadOutcome::Eof
    );
}

trait BlockedOrErr {
    fn unwrap_err_or_blocked(self);
}

impl BlockedOrErr for Result<Progress, Error> {
    fn unwrap_err_or_blocked(self) {
        assert!(!matches!(self, Ok(Progress::Ready(n)) if n > 0), "{self:?}");
    }
}

#[test]
fn an_idle_stream_costs_one_small_table_entry() {
    // Memory per stream is the headline: no queue, buffer or deadline is held inline.
    assert!(std::mem::size_of::<super::stream::StreamState>() <= 88);
    assert_eq!(std::mem::size_of::<super::byte_queue::ByteQueue>(), 8);
}

#[test]
fn writers_waiting_for_session_room_are_woken_in_order_once_room_frees() {
    let cfg = Config {
        max_receive_buffer: 512 * 1024, // the session send cap follows it
        ..Config::default()
    };
    let mut c = Connection::new(cfg, Role::Client, Instant::now()).unwrap();
    let now = Instant::now();
    let ids: Vec<StreamId> = (0..10).map(|_| c.open().unwrap()).collect();
    c.write(ids[0], &[0u8; 256 * 1024], now).unwrap();
    c.write(ids[1], &[0u8; 256 * 1024], now).unwrap();
    for &id in ids[2..].iter().rev() {
        assert_eq!(c.write(id, b"x", now).unwrap(), Progress::Blocked);
    }
    while c.poll_event().is_some() {}
    let writable = |c: &mut Connection| -> Vec<StreamId> {
        std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                Event::Writable(id) => Some(id),
                _ => None,
            })
            .collect()
    };
    // 64 KiB of room is not worth a wake-up yet.
    let mut tx = TxBuf::new();
    c.poll_transmit(&mut tx, 64 * 1024);
    let woken = writable(&mut c);
    assert!(!woken.iter().any(|id| ids[2..].contains(id)), "{woken:?}");
    // A quarter of the cap free: every waiting writer, in the order they blocked.
    c.poll_transmit(&mut tx, 160 * 1024);
    let woken: Vec<StreamId> = writable(&mut c)
        .into_iter()
        .filter(|id| ids[2..].contains(id))
        .collect();
    let mut expected = ids[2..].to_vec();
    expected.reverse();
    assert_eq!(woken, expected);
}

#[test]
fn half_a_frame_does_not_keep_the_session_alive() {
    let cfg = Config {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut s = Connection::new(cfg, Role::Server, t0).unwrap();
    let mut rb = RecvBuffer::new();
    let mut f = frame(1, Cmd::Psh, 3, &[0u8; 1000]);
    f.truncate(100);
    rb.extend_from_slice(&f);
    // The driver looks at the buffered half frame on every pass.
    for tenth in 1..=60 {
        s.handle_input(&mut rb);
        s.handle_timeout(t0 + Duration::from_millis(100 * tenth));
        if s.is_closed() {
            break;
        }
    }
    assert!(matches!(s.close_reason(), Some(Error::KeepaliveTimeout(_))));
}

#[test]
fn a_closing_session_drops_late_data_but_still_takes_window_updates() {
    let mut p = Pair::v2();
    let id = p.client.open().unwrap();
    p.client
        .write(id, &[1u8; STREAM_SEND_BUFFER], p.now)
        .unwrap();
    p.drive();
    let sid = p.accept();
    // The window is closed and more data waits; the client closes its session.
    let _ = p.client.write(id, &[1u8; 1000], p.now).unwrap();
    assert!(p.client.close(p.now));
    let mut buf = [0u8; 8];
    assert!(matches!(
        p.client.read(id, &mut buf, p.now),
        Err(Error::Closed)
    ));
    // Data the server sends now is dropped, not charged, and never surfaces.
    p.server.write(sid, b"late", p.now).unwrap();
    // The server reads: its UPDs still let the client's queued data leave.
    let _ = Pair::read_all(&mut p.server, sid, p.now);
    p.drive();
    assert_eq!(p.client.buffered_bytes(), 0);
    assert!(matches!(
        p.client.read(id, &mut buf, p.now),
        Err(Error::Closed)
    ));
    assert!(p.client.wants_shutdown(), "queued data left thanks to UPD");
}

fn detecting_server() -> Config {
    Config {
        detect_version: true,
        ..Config::default()
    }
}

#[test]
fn a_detecting_server_speaks_the_version_of_each_client() {
    for version in [1u8, 2] {
        let mut p = Pair::new(Config::default().with_version(Version::try_from(version).unwrap()));
        p.server = Connection::new(detecting_server(), Role::Server, p.now).unwrap();
        assert_eq!(p.server.version(), None);
        // A stream the server opens before the client spoke waits: nothing leaves yet.
        let early = p.server.open().unwrap();
        p.server.write(early, b"early", p.now).unwrap();
        assert!(transmit(&mut p.server).is_empty());
        assert!(!p.server.has_pending_transmit());
        let id = p.client.open().unwrap();
        p.client.write(id, b"hello", p.now).unwrap();
        p.drive();
        assert_eq!(p.server.version().map(u8::from), Some(version));
        let sid = p.accept();
        assert_eq!(Pair::read_all(&mut p.server, sid, p.now), b"hello");
        p.server.write(sid, b"world", p.now).unwrap();
        let wire = transmit(&mut p.server);
        assert_eq!(wire[0], version);
        let cmds: Vec<u8> = frames(&wire).into_iter().map(|f| f.0).collect();
        // v2 acknowledges the read with an UPD; v1 has none.
        assert_eq!(cmds.contains(&UPD), version == 2, "{cmds:?}");
        p.client_rb.extend_from_slice(&wire);
        p.client.handle_input(&mut p.client_rb);
        p.drive();
        assert_eq!(Pair::read_all(&mut p.client, id, p.now), b"world");
        assert_eq!(p.client.accept().unwrap(), Some(early));
        assert_eq!(Pair::read_all(&mut p.client, early, p.now), b"early");
        assert!(!p.client.is_closed() && !p.server.is_closed());
    }
}

#[test]
fn a_detecting_server_rejects_unknown_versions_and_a_later_switch() {
    let now = Instant::now();
    let mut s = Connection::new(detecting_server(), Role::Server, now).unwrap();
    feed(&mut s, &frame(3, Cmd::Syn, 3, &[]));
    assert!(matches!(
        s.close_reason(),
        Some(Error::Protocol(ProtocolError::VersionMismatch {
            got: 3,
            ..
        }))
    ));
    let mut s = Connection::new(detecting_server(), Role::Server, now).unwrap();
    feed(&mut s, &frame(2, Cmd::Syn, 3, &[]));
    feed(&mut s, &frame(1, Cmd::Syn, 5, &[]));
    assert!(matches!(
        s.close_reason(),
        Some(Error::Protocol(ProtocolError::VersionMismatch {
            got: 1,
            expected: 2
        }))
    ));
}

#[test]
fn only_a_server_detects_the_version() {
    let e = Connection::new(detecting_server(), Role::Client, Instant::now()).unwrap_err();
    assert_eq!(e.field, crate::ConfigField::DetectVersion);
}

#[test]
fn a_detecting_server_sends_no_keepalive_before_the_client_spoke_and_can_close() {
    let config = Config {
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(100),
        ..detecting_server()
    };
    let mut now = Instant::now();
    let mut s = Connection::new(config, Role::Server, now).unwrap();
    now += Duration::from_secs(2);
    s.handle_timeout(now);
    assert!(transmit(&mut s).is_empty());
    feed(&mut s, &frame(1, Cmd::Nop, 0, &[]));
    assert_eq!(frames(&transmit(&mut s)), vec![(Cmd::Nop as u8, 0, 0)]);
    // A graceful close before the client spoke needs nothing sent.
    let mut s = Connection::new(detecting_server(), Role::Server, now).unwrap();
    let _ = s.open().unwrap();
    assert!(s.close(now));
    assert!(s.wants_shutdown());
}

#[test]
fn write_chunk_sends_the_callers_bytes_without_copying_them() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    let data = bytes::Bytes::from(vec![9u8; 100_000]);
    let base = data.as_ptr() as usize;
    let mut rest = data.clone();
    assert_eq!(
        p.client.write_chunk(id, &mut rest, p.now).unwrap(),
        Progress::Ready(100_000)
    );
    assert!(rest.is_empty());
    let mut tx = TxBuf::new();
    p.client.poll_transmit(&mut tx, usize::MAX);
    let mut slices = [std::io::IoSlice::new(&[]); MAX_IOVECS];
    let n = tx.io_slices(&mut slices);
    // SYN + header in the staging buffer, then each 32 KiB payload is a slice of `data`.
    let payloads: Vec<usize> = slices[..n]
        .iter()
        .filter(|s| s.len() >= COPY_MAX)
        .map(|s| s.as_ptr() as usize - base)
        .collect();
    assert_eq!(
        payloads,
        [0, 32768, 65536, 98304],
        "frame payloads point into the caller's buffer"
    );
    let wire = tx.to_vec();
    let sizes: Vec<usize> = frames(&wire).iter().map(|f| f.2).collect();
    assert_eq!(sizes, [0, 32768, 32768, 32768, 100_000 - 3 * 32768]);
    let mut rb = RecvBuffer::new();
    rb.extend_from_slice(&wire);
    p.server.handle_input(&mut rb);
    assert_eq!(p.accept(), id);
    assert_eq!(Pair::read_all(&mut p.server, id, p.now), data);
}

#[test]
fn write_chunk_takes_what_fits_and_leaves_the_rest_to_the_caller() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().unwrap();
    let total = STREAM_SEND_BUFFER + 5000;
    let mut data = bytes::Bytes::from((0..total).map(|i| i as u8).collect::<Vec<_>>());
    let expect = data.clone();
    assert_eq!(
        p.client.write_chunk(id, &mut data, p.now).unwrap(),
        Progress::Ready(STREAM_SEND_BUFFER)
    );
    assert_eq!(data.len(), 5000);
    assert_eq!(
        p.client.write_chunk(id, &mut data, p.now).unwrap(),
        Progress::Blocked
    );
    assert_eq!(data.len(), 5000, "nothing taken while blocked");
    p.drive();
    // Small pieces are copied (no queue slot per tiny write), in order with the rest.
    let mut tiny = data.split_to(10);
    assert_eq!(
        p.client.write_chunk(id, &mut tiny, p.now).unwrap(),
        Progress::Ready(10)
    );
    assert_eq!(
        p.client.write_chunk(id, &mut data, p.now).unwrap(),
        Progress::Ready(4990)
    );
    assert_eq!(
        p.client.write_chunk(id, &mut data, p.now).unwrap(),
        Progress::Ready(0),
        "an empty chunk is a no-op"
    );
    p.drive();
    assert_eq!(p.accept(), id);
    let mut got = Vec::new();
    loop {
        let before = got.len();
        got.extend(Pair::read_all(&mut p.server, id, p.now));
        p.drive();
        if got.len() == before {
            break;
        }
    }
    assert_eq!(got, expect);
    p.client.shutdown_write(id, p.now).unwrap();
    let mut more = bytes::Bytes::from_static(b"late");
    assert!(p.client.write_chunk(id, &mut more, p.now).is_err());
    assert_eq!(more.len(), 4, "a refused chunk is left whole");
}

#[test]
fn streams_beyond_max_streams_are_refused_at_once() {
    let mut p = Pair::new(Config::default());
    let limited = Config {
        max_streams: 2,
        ..Config::default()
    };
    p.server = Connection::new(limited, Role::Server, p.now).unwrap();
    let ids: Vec<StreamId> = (0..3).map(|_| p.client.open().unwrap()).collect();
    for &id in &ids {
        p.client.write(id, b"data", p.now).unwrap();
    }
    p.drive();
    assert_eq!(p.accept(), ids[0]);
    assert_eq!(p.accept(), ids[1]);
    assert_eq!(
        p.server.accept().unwrap(),
        None,
        "the third is never queued"
    );
    // The client reads EOF on the refused stream; nothing of it is buffered by the server.
    assert_eq!(
        p.client.read(ids[2], &mut [0u8; 8], p.now).unwrap(),
        ReadOutcome::Eof
    );
    assert_eq!(
        p.server.buffered_bytes(),
        8,
        "4 + 4 bytes of the accepted two"
    );
    assert_eq!(p.server.stats().streams_refused, 1);
    assert_eq!(p.server.num_streams(), 2);
    // Once one closes on the server, a new stream is accepted.
    p.server.release(ids[0], BOTH_HANDLES);
    p.drive();
    let next = p.client.open().unwrap();
    p.drive();
    assert_eq!(p.accept(), next);
    assert_eq!(p.server.stats().streams_refused, 1);
}

#[test]
fn a_flood_of_refused_syns_costs_bounded_memory() {
    let limited = Config {
        max_streams: 1,
        ..Config::default()
    };
    let mut server = Connection::new(limited, Role::Server, Instant::now()).unwrap();
    let mut wire = Vec::new();
    for i in 0..10_000u32 {
        wire.extend(frame(1, Cmd::Syn, 1 + 2 * i, b""));
    }
    feed(&mut server, &wire);
    assert_eq!(server.stats().streams_refused, 9_999);
    // One FIN per refusal, up to the bound; the rest are dropped, not queued.
    let fins = frames(&transmit(&mut server))
        .into_iter()
        .filter(|f| f.0 == FIN)
        .count();
    assert_eq!(fins, 1024);
    assert!(frames(&transmit(&mut server)).is_empty());
}

#[test]
fn drain_refuses_new_streams_and_is_done_once_open_ones_finish() {
    let mut p = Pair::new(Config::default());
    let open = p.client.open().unwrap();
    let queued = p.client.open().unwrap();
    p.client.write(open, b"request", p.now).unwrap();
    p.client.write(queued, b"never read", p.now).unwrap();
    p.drive();
    assert_eq!(p.accept(), open);

    p.server.drain();
    assert!(p.server.is_draining() && !p.server.is_drained());
    assert!(matches!(p.server.open(), Err(Error::Draining)));
    assert!(matches!(p.server.accept(), Err(Error::Draining)));
    // A stream opened after the drain began is refused like the queued one: the client
    // reads EOF on both, and the server buffers nothing of them.
    let late = p.client.open().unwrap();
    p.client.write(late, b"too late", p.now).unwrap();
    p.drive();
    for id in [queued, late] {
        assert_eq!(
            p.client.read(id, &mut [0u8; 16], p.now).unwrap(),
            ReadOutcome::Eof
        );
    }
    assert_eq!(p.server.stats().streams_refused, 2);
    assert_eq!(
        p.server.buffered_bytes(),
        7,
        "only the open stream's request"
    );

    // The open stream goes on: it is answered and closed both ways, then the drain is done.
    assert_eq!(Pair::read_all(&mut p.server, open, p.now), b"request");
    p.server.write(open, b"reply", p.now).unwrap();
    p.server.shutdown_write(open, p.now).unwrap();
    p.drive();
    assert!(
        !p.server.is_drained(),
        "the client has not finished its side yet"
    );
    assert_eq!(Pair::read_all(&mut p.client, open, p.now), b"reply");
    p.client.release(open, BOTH_HANDLES);
    p.drive();
    // Finished both ways with nothing left to read: no stream is open any more.
    assert!(p.server.is_drained());
    assert!(p.server.close(p.now));
    assert!(!p.server.is_drained(), "closed: nothing left to drain");
}
