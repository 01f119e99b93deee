//! Tests of the harness itself, the seed generator and the replay of saved inputs.
//!
//! - `cargo test` (in `fuzz/`) checks the encoder round trip, regenerates every seed in
//!   memory and runs it through its target, and replays `seeds/` and `regressions/`.
//! - `RSMUX_WRITE_SEEDS=1 cargo test write_seeds` rewrites `seeds/<target>/`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rsmux::{
    frame::{decode_upd, Cmd, Header, HEADER_LEN, UPD_LEN},
    proto::{Connection, ReadOutcome, RecvBuffer, Role, StreamId, TxBuf, BOTH_HANDLES},
};

use crate::{
    decoder,
    encode::session_input,
    session::{
        self, Consumed, CounterBase, FirstVersion, FrameCmd, Maybe, Op, Raw, RoleByte, Setup, Sid,
        Window,
    },
};

/// Counter offsets of a setup: counter base, ids left, last serial.
type Start = (CounterBase, Option<u16>, Option<u8>);

/// Counters from 0, as on the wire.
const FROM_ZERO: Start = (CounterBase::Zero, None, None);
/// Counters just below their wrap points: v2 byte counters wrap after 3 bytes, 1 stream id
/// left, serials wrap at the second stream.
const NEAR_WRAP: Start = (CounterBase::BelowWrap(2), Some(1), Some(0));

fn all_variants() -> Vec<Op> {
    vec![
        Op::PeerRaw {
            data: Raw(vec![1, 2, 3]),
            split: 7,
        },
        Op::PeerFrame {
            cmd: FrameCmd::Upd,
            sid: Sid(200),
            len: 300,
            fill: 9,
            split: 65535,
        },
        Op::PeerFrame {
            cmd: FrameCmd::Nop,
            sid: Sid(0),
            len: 0,
            fill: 0,
            split: 0,
        },
        Op::PeerUpd {
            sid: Sid(3),
            consumed: Consumed::SentMinus(5),
            window: Window::Of(3),
            split: 2,
        },
        Op::PeerUpd {
            sid: Sid(3),
            consumed: Consumed::Raw(77),
            window: Window::Raw(1 << 31),
            split: 2,
        },
        Op::PeerUpd {
            sid: Sid(3),
            consumed: Consumed::SentPlus(1),
            window: Window::Of(0),
            split: 2,
        },
        Op::PeerUpd {
            sid: Sid(3),
            consumed: Consumed::Sent,
            window: Window::Of(0),
            split: 2,
        },
        Op::Pump,
        Op::Open,
        Op::Accept,
        Op::Write {
            sid: Sid(1),
            len: 1000,
            big: true,
        },
        Op::Read {
            sid: Sid(1),
            len: 10,
        },
        Op::ReadChunk {
            sid: Sid(1),
            max: 0,
        },
        Op::Flush { sid: Sid(4) },
        Op::ShutdownWrite { sid: Sid(4) },
        Op::Release {
            sid: Sid(4),
            which: 3,
        },
        Op::ReadDeadline {
            sid: Sid(4),
            ms: Some(10),
        },
        Op::WriteDeadline {
            sid: Sid(4),
            ms: None,
        },
        Op::Close,
        Op::Advance { ms: 1000 },
        Op::Transmit { max: 3 },
        Op::Drain { n: 1 },
        Op::Events,
        Op::Eof,
        Op::IoError,
        Op::Shutdown,
        Op::PeerSyns { count: 1030 },
        Op::Accept,
        Op::Pump,
    ]
}

#[test]
fn encoder_round_trips_through_arbitrary() {
    let ops = all_variants();
    for (role, auto_tune, counter_base, ids_left, last_serial) in [
        (RoleByte::plain(false), true, CounterBase::Zero, None, None),
        (
            RoleByte::plain(true),
            false,
            CounterBase::BelowWrap(7),
            Some(300),
            Some(0),
        ),
        (
            RoleByte::detecting(true, FirstVersion::Byte(5)),
            true,
            CounterBase::Raw(0x8000_0001),
            Some(0),
            Some(255),
        ),
        (
            RoleByte::detecting(false, FirstVersion::Other),
            true,
            CounterBase::AtRead(3),
            None,
            Some(9),
        ),
    ] {
        let setup = Setup {
            v2: true,
            role,
            keepalive: 1,
            frame_size: 4,
            receive_buffer: 2,
            stream_buffer: 3,
            auto_tune,
            counter_base,
            ids_left: Maybe(ids_left),
            last_serial: Maybe(last_serial),
        };
        let bytes = session_input(&setup, &ops);
        let (s, decoded) = session::decode(&bytes).expect("decodes");
        assert_eq!(s, setup);
        assert_eq!(decoded, ops);
        // Every setup takes the same bytes: a mutation of one field keeps the ops in place.
        assert_eq!(session_input(&setup, &[]).len(), 17);
    }
    // Every variant is exercised by the list above.
    let mut seen: Vec<std::mem::Discriminant<Op>> = Vec::new();
    for op in &ops {
        let d = std::mem::discriminant(op);
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    assert_eq!(seen.len(), 23);
}

#[test]
fn harness_runs_every_variant_on_both_versions() {
    for v2 in [false, true] {
        for server in [false, true] {
            for (counter_base, ids_left, last_serial) in [FROM_ZERO, NEAR_WRAP] {
                let setup = Setup {
                    v2,
                    role: RoleByte::plain(server),
                    keepalive: 1,
                    frame_size: 3,
                    receive_buffer: 0,
                    stream_buffer: 2,
                    auto_tune: server,
                    counter_base,
                    ids_left: Maybe(ids_left),
                    last_serial: Maybe(last_serial),
                };
                session::run_ops(&setup, &all_variants());
            }
        }
    }
}

#[test]
fn harness_fills_the_accept_backlog() {
    let setup = Setup {
        v2: false,
        role: RoleByte::plain(true),
        keepalive: 0,
        frame_size: 0,
        receive_buffer: 0,
        stream_buffer: 0,
        auto_tune: true,
        counter_base: CounterBase::Zero,
        ids_left: Maybe(None),
        last_serial: Maybe(None),
    };
    let ops = vec![
        Op::PeerSyns { count: 1030 },
        Op::Accept,
        Op::Pump,
        Op::Accept,
        Op::Accept,
        Op::Pump,
        Op::Write {
            sid: Sid(0),
            len: 10,
            big: false,
        },
    ];
    let stats = session::run_ops(&setup, &ops);
    assert_eq!(stats.frames_in, 1027);
    assert_eq!(stats.frames_out, 1);
}

#[test]
fn harness_runs_out_of_ids_and_wraps_serials() {
    for server in [false, true] {
        let setup = Setup {
            v2: true,
            role: RoleByte::plain(server),
            keepalive: 0,
            frame_size: 3,
            receive_buffer: 0,
            stream_buffer: 2,
            auto_tune: true,
            counter_base: CounterBase::BelowWrap(0),
            ids_left: Maybe(Some(2)),
            last_serial: Maybe(Some(1)),
        };
        // Two opens get the last two ids (serials u64::MAX, then 0), the third goes away; the
        // peer's fresh ids wrap past the top; the streams still carry data.
        let ops = vec![
            Op::Open,
            Op::Open,
            Op::Open,
            Op::PeerSyns { count: 3 },
            Op::Open,
            Op::Write {
                sid: Sid(4),
                len: 10,
                big: false,
            },
            Op::Transmit { max: u16::MAX },
        ];
        let stats = session::run_ops(&setup, &ops);
        assert_eq!(stats.go_aways, 2);
        assert_eq!(stats.frames_in, 3);
        assert_eq!(stats.bytes_sent, 10);
    }
}

#[test]
fn harness_detects_the_version_or_fails_on_the_first_frame() {
    assert!(RoleByte::detecting(false, FirstVersion::Same).server());
    assert_eq!(
        RoleByte::detecting(true, FirstVersion::Byte(6)).first_version(2),
        6
    );
    assert_eq!(
        RoleByte::detecting(true, FirstVersion::Other).first_version(2),
        1
    );
    for v2 in [false, true] {
        for other_config in [false, true] {
            for first in [
                FirstVersion::Same,
                FirstVersion::Other,
                FirstVersion::Byte(0),
                FirstVersion::Byte(3),
            ] {
                let setup = Setup {
                    v2,
                    role: RoleByte::detecting(other_config, first),
                    keepalive: 1,
                    frame_size: 3,
                    receive_buffer: 0,
                    stream_buffer: 2,
                    auto_tune: true,
                    counter_base: NEAR_WRAP.0,
                    ids_left: Maybe(NEAR_WRAP.1),
                    last_serial: Maybe(NEAR_WRAP.2),
                };
                // We open and write before the peer spoke (nothing may leave), a keepalive
                // falls due, then the peer's first frame decides; a second frame is of the
                // setup's version.
                let ops = vec![
                    Op::Open,
                    Op::Write {
                        sid: Sid(0),
                        len: 300,
                        big: false,
                    },
                    Op::Advance { ms: 10_000 },
                    Op::Transmit { max: u16::MAX },
                    Op::PeerFrame {
                        cmd: FrameCmd::Syn,
                        sid: Sid(252),
                        len: 0,
                        fill: 0,
                        split: 7,
                    },
                    Op::Transmit { max: u16::MAX },
                    Op::PeerFrame {
                        cmd: FrameCmd::Psh,
                        sid: Sid(0),
                        len: 10,
                        fill: 0,
                        split: 0,
                    },
                    Op::Accept,
                    Op::Read {
                        sid: Sid(0),
                        len: 100,
                    },
                    Op::Transmit { max: u16::MAX },
                ];
                let stats = session::run_ops(&setup, &ops);
                let label = format!("v2 {v2}, other config {other_config}, first {first:?}");
                // Only a first frame of the setup's version keeps the session alive.
                assert_eq!(
                    stats.terminated,
                    first != FirstVersion::Same,
                    "{label}: {stats:?}"
                );
                // A first frame of either version is detected and what waited leaves (in
                // that version); a non-version ends the session with nothing sent.
                let detected = matches!(first, FirstVersion::Same | FirstVersion::Other);
                let sent = if detected { 300 } else { 0 };
                assert_eq!(stats.bytes_sent, sent, "{label}: {stats:?}");
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Seed generation from real traffic: a real peer `Connection` and a real local one run a
// scenario; the local side's calls are recorded as `Op`s and the peer's bytes as `PeerRaw`.

fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut tx = TxBuf::new();
    conn.poll_transmit(&mut tx, usize::MAX);
    tx.to_vec()
}

/// Ids of SYN frames in `wire`.
fn syns(mut wire: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    while wire.len() >= HEADER_LEN {
        let len = usize::from(u16::from_le_bytes([wire[2], wire[3]]));
        if wire[1] == Cmd::Syn as u8 {
            out.push(u32::from_le_bytes(wire[4..8].try_into().unwrap()));
        }
        wire = &wire[HEADER_LEN + len..];
    }
    out
}

struct Recorder {
    setup: Setup,
    me: Connection,
    peer: Connection,
    me_rb: RecvBuffer,
    peer_rb: RecvBuffer,
    now: Instant,
    ops: Vec<Op>,
    /// Ids as the harness learns them (for `Sid`).
    known: Vec<u32>,
    written: HashMap<u32, u64>,
    /// All bytes the peer sent (the `frame_decoder` seed).
    peer_wire: Vec<u8>,
    /// Our UPDs: bytes read (from the counter base) at each.
    upd_points: Vec<u32>,
}

impl Recorder {
    fn new(setup: Setup) -> Recorder {
        let config = setup.peer_config();
        let (me_role, peer_role) = if setup.role.server() {
            (Role::Server, Role::Client)
        } else {
            (Role::Client, Role::Server)
        };
        let now = Instant::now();
        let peer_config = config
            .clone()
            .with_max_frame_size(config.max_frame_size.max(512));
        let mut peer = Connection::new(peer_config, peer_role, now).unwrap();
        setup.start_counters(&mut peer, peer_role);
        Recorder {
            me: setup.connection(me_role, now),
            peer,
            setup,
            me_rb: RecvBuffer::new(),
            peer_rb: RecvBuffer::new(),
            now,
            ops: Vec::new(),
            known: Vec::new(),
            written: HashMap::new(),
            peer_wire: Vec::new(),
            upd_points: Vec::new(),
        }
    }

    fn sid(&self, id: u32) -> Sid {
        let pos = self.known.iter().position(|&k| k == id).expect("known id");
        Sid((self.known.len() - 1 - pos) as u8)
    }

    fn learn(&mut self, id: u32) {
        if !self.known.contains(&id) {
            self.known.push(id);
        }
    }

    /// The peer's queued frames reach us (in pieces of at most 60000 bytes).
    fn recv_from_peer(&mut self) {
        let bytes = transmit(&mut self.peer);
        if bytes.is_empty() {
            return;
        }
        self.peer.handle_transmitted();
        self.peer_wire.extend_from_slice(&bytes);
        for piece in bytes.chunks(60_000) {
            // Cut each piece once, mid-way, through `prepare` (split bit 0).
            let split = (((piece.len() / 2) as u16) << 1) | 1;
            self.ops.push(Op::PeerRaw {
                data: Raw(piece.to_vec()),
                split,
            });
            self.me_rb.extend_from_slice(piece);
            self.me.handle_input(&mut self.me_rb);
        }
        for id in syns(&bytes) {
            self.learn(id);
        }
    }

    /// Our queued frames reach the peer.
    fn send_to_peer(&mut self) {
        self.ops.push(Op::Transmit { max: u16::MAX });
        self.ops.push(Op::Drain { n: u16::MAX });
        let bytes = transmit(&mut self.me);
        if !bytes.is_empty() {
            self.me.handle_transmitted();
        }
        let mut wire = &bytes[..];
        while wire.len() >= HEADER_LEN {
            let len = usize::from(u16::from_le_bytes([wire[2], wire[3]]));
            if wire[1] == Cmd::Upd as u8 {
                let body = wire[HEADER_LEN..HEADER_LEN + UPD_LEN].try_into().unwrap();
                let base = self.setup.counter_base.value();
                self.upd_points.push(decode_upd(body).0.wrapping_sub(base));
            }
            wire = &wire[HEADER_LEN + len..];
        }
        self.peer_rb.extend_from_slice(&bytes);
        self.peer.handle_input(&mut self.peer_rb);
    }

    fn exchange(&mut self) {
        for _ in 0..50 {
            self.send_to_peer();
            let before = self.ops.len();
            self.recv_from_peer();
            if self.ops.len() == before {
                return;
            }
        }
    }

    fn open(&mut self) -> StreamId {
        self.ops.push(Op::Open);
        let id = self.me.open().unwrap();
        self.learn(id.get());
        id
    }

    fn accept(&mut self) -> StreamId {
        self.ops.push(Op::Accept);
        self.me.accept().unwrap().expect("a stream waits")
    }

    fn write(&mut self, id: StreamId, len: u16) {
        self.ops.push(Op::Write {
            sid: self.sid(id.get()),
            len,
            big: false,
        });
        let off = self.written.entry(id.get()).or_default();
        let st = ((*off + u64::from(id.get()) * 17) % 251) as usize;
        let data: Vec<u8> = (st..st + usize::from(len))
            .map(|j| (j % 251) as u8)
            .collect();
        if let Ok(rsmux::proto::Progress::Ready(n)) = self.me.write(id, &data, self.now) {
            *off += n as u64;
        }
    }

    fn read(&mut self, id: StreamId, len: u16) -> usize {
        self.ops.push(Op::Read {
            sid: self.sid(id.get()),
            len,
        });
        let mut buf = vec![0u8; usize::from(len)];
        match self.me.read(id, &mut buf, self.now) {
            Ok(ReadOutcome::Data(n)) => n,
            _ => 0,
        }
    }

    fn read_chunk(&mut self, id: StreamId, max: u16) {
        self.ops.push(Op::ReadChunk {
            sid: self.sid(id.get()),
            max,
        });
        let _ = self.me.read_chunk(id, usize::from(max), self.now);
    }

    fn shutdown(&mut self, id: StreamId) {
        self.ops.push(Op::ShutdownWrite {
            sid: self.sid(id.get()),
        });
        let _ = self.me.shutdown_write(id, self.now);
    }

    fn release(&mut self, id: StreamId, which: u8) {
        self.ops.push(Op::Release {
            sid: self.sid(id.get()),
            which,
        });
        self.me.release(id, which);
    }

    fn advance(&mut self, ms: u16) {
        self.ops.push(Op::Advance { ms });
        self.now += Duration::from_millis(u64::from(ms));
        self.me.handle_timeout(self.now);
        self.peer.handle_timeout(self.now);
    }

    /// Peer side helpers (not recorded: they show up as bytes).
    fn peer_read_all(&mut self, id: StreamId) {
        let mut buf = vec![0u8; 70_000];
        while let Ok(ReadOutcome::Data(_)) = self.peer.read(id, &mut buf, self.now) {}
    }

    fn peer_write(&mut self, id: StreamId, len: usize) {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let _ = self.peer.write(id, &data, self.now);
    }

    fn session_seed(&self) -> Vec<u8> {
        session_input(&self.setup, &self.ops)
    }

    fn decoder_seed(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.setup.v2 {
            flags |= 1;
        }
        if self.setup.role.server() {
            flags |= 2;
        }
        let mut v = vec![flags | 4 | (2 << 3), 0x5a];
        v.extend_from_slice(&self.peer_wire);
        v
    }
}

/// A seed's setup. With `wrap`, the counter offsets `start` and auto-tuning on (the default);
/// without, counters from 0 and fixed windows (the `frame_decoder` seeds, unchanged since
/// before the offsets existed).
fn setup(
    v2: bool,
    server: bool,
    frame_size: u8,
    stream_buffer: u8,
    wrap: bool,
    start: Start,
) -> Setup {
    let (counter_base, ids_left, last_serial) = if wrap { start } else { FROM_ZERO };
    Setup {
        v2,
        role: RoleByte::plain(server),
        keepalive: 1,
        frame_size,
        receive_buffer: 0,
        stream_buffer,
        auto_tune: wrap,
        counter_base,
        ids_left: Maybe(ids_left),
        last_serial: Maybe(last_serial),
    }
}

/// We serve: the peer opens two streams, sends data and FIN; we echo, read to EOF, release.
/// (Wrapping: the peer has exactly the two ids left, the serials wrap at the second stream, v2
/// byte counters after 1500 bytes.)
fn scenario_server(v2: bool, wrap: bool) -> Recorder {
    // max_frame_size 1024, max_stream_buffer 4096 (v2: UPDs come often).
    let start = (CounterBase::BelowWrap(1499), Some(2), Some(0));
    let mut r = Recorder::new(setup(v2, true, 4, 3, wrap, start));
    let a = r.peer.open().unwrap();
    r.peer_write(a, 3000);
    r.recv_from_peer();
    let sa = r.accept();
    assert_eq!(sa, a);
    r.read(sa, 1000);
    r.read(sa, 5000);
    r.write(sa, 2500);
    r.exchange();
    r.peer_read_all(a);
    let _ = r.peer.shutdown_write(a, r.now);
    let b = r.peer.open().unwrap();
    r.peer_write(b, 100);
    r.peer.release(b, BOTH_HANDLES);
    r.recv_from_peer();
    r.read(sa, 100);
    let sb = r.accept();
    r.read_chunk(sb, 64);
    r.read_chunk(sb, 64);
    r.read(sa, 100); // EOF
    r.shutdown(sa);
    r.release(sb, BOTH_HANDLES);
    r.exchange();
    r.release(sa, BOTH_HANDLES);
    r.advance(10_000);
    r.exchange();
    r.ops.push(Op::Events);
    r.ops.push(Op::Close);
    r.ops.push(Op::Transmit { max: u16::MAX });
    r.ops.push(Op::Shutdown);
    r
}

/// We serve with `detect_version`, configured with the other version than the client's: we
/// open a stream and write before the client spoke (nothing leaves), the client opens one and
/// writes, we detect its version, echo, and our early stream follows. (Counters as in
/// [`scenario_server`].)
fn scenario_server_detect(v2: bool) -> Recorder {
    let start = (CounterBase::BelowWrap(1499), Some(2), Some(0));
    let mut r = Recorder::new(Setup {
        role: RoleByte::detecting(true, FirstVersion::Same),
        ..setup(v2, true, 4, 3, true, start)
    });
    let early = r.open();
    r.write(early, 700);
    r.advance(10_000);
    r.send_to_peer();
    assert_eq!(r.me.version(), None);
    let a = r.peer.open().unwrap();
    r.peer_write(a, 2000);
    r.recv_from_peer();
    assert_eq!(r.me.version().map(u8::from), Some(r.setup.version()));
    let sa = r.accept();
    r.read(sa, 5000);
    r.write(sa, 1500);
    r.exchange();
    let pe = r.peer.accept().unwrap().expect("our early stream arrived");
    assert_eq!(pe, early);
    r.peer_read_all(pe);
    r.peer_read_all(a);
    r.exchange();
    r.shutdown(early);
    r.release(early, BOTH_HANDLES);
    r.exchange();
    r
}

/// We are the client: open, write a request, the peer answers and finishes, we read to EOF.
/// (Wrapping: we get the last id, v2 byte counters wrap after 6000 bytes.)
fn scenario_client(v2: bool, wrap: bool) -> Recorder {
    let start = (CounterBase::BelowWrap(5999), Some(1), Some(3));
    let mut r = Recorder::new(setup(v2, false, 5, 4, wrap, start));
    let id = r.open();
    r.write(id, 6000);
    r.shutdown(id);
    r.send_to_peer();
    let pid = r.peer.accept().unwrap().unwrap();
    r.peer_read_all(pid);
    r.peer_write(pid, 9000);
    let _ = r.peer.shutdown_write(pid, r.now);
    r.recv_from_peer();
    for _ in 0..4 {
        r.read(id, 4000);
        r.exchange();
    }
    r.release(id, BOTH_HANDLES);
    r.exchange();
    r
}

/// v2 window pressure: we write more than the peer's window while it reads slowly.
/// (Wrapping: the byte counters wrap after 10000 bytes.)
fn scenario_window(wrap: bool) -> Recorder {
    // max_frame_size 4096, max_stream_buffer 4096.
    let start = (CounterBase::BelowWrap(9999), None, None);
    let mut r = Recorder::new(setup(true, false, 5, 3, wrap, start));
    let id = r.open();
    for _ in 0..4 {
        r.write(id, 20_000);
        r.send_to_peer();
    }
    let pid = r.peer.accept().unwrap().unwrap();
    for _ in 0..6 {
        let mut buf = vec![0u8; 3000];
        let _ = r.peer.read(pid, &mut buf, r.now);
        r.recv_from_peer();
        r.send_to_peer();
    }
    r.peer_read_all(pid);
    r.recv_from_peer();
    r.exchange();
    r
}

/// Tiny frames and keepalive NOPs, then the peer's connection ends.
fn scenario_tiny_frames(wrap: bool) -> Recorder {
    // max_frame_size 7.
    let start = (CounterBase::Zero, Some(1), Some(0));
    let mut r = Recorder::new(setup(false, true, 2, 0, wrap, start));
    let a = r.peer.open().unwrap();
    r.peer_write(a, 40);
    r.recv_from_peer();
    let sa = r.accept();
    r.write(sa, 30);
    r.exchange();
    r.advance(10_000);
    r.exchange();
    r.read(sa, 40);
    r.ops.push(Op::Eof);
    r.ops.push(Op::Read {
        sid: r.sid(sa.get()),
        len: 10,
    });
    r
}

/// v2, fixed 100-byte windows: the peer sends a window's worth, we read all of it in one
/// read, our UPD opens the next window, 25 times. A reader that drains its window exactly at
/// the wrap of its byte counter stalled when an UPD with CONSUMED 0 was skipped (as Go does).
fn scenario_drain(counter_base: CounterBase) -> Recorder {
    // max_frame_size 100, max_stream_buffer 100, no auto-tuning.
    let mut r = Recorder::new(Setup {
        auto_tune: false,
        ..setup(true, true, 3, 2, true, (counter_base, None, None))
    });
    let a = r.peer.open().unwrap();
    r.peer_write(a, 100);
    r.recv_from_peer();
    let sa = r.accept();
    for _ in 0..25 {
        r.read(sa, 100);
        r.send_to_peer();
        r.peer_write(a, 100);
        r.recv_from_peer();
    }
    r
}

/// [`scenario_drain`] with the counters starting so that they wrap exactly at one of our UPDs
/// (found by a run from 0: the traffic does not depend on the base).
fn scenario_drain_at_wrap() -> Recorder {
    let dry = scenario_drain(CounterBase::Zero);
    let at = dry.upd_points[dry.upd_points.len() / 2];
    let r = scenario_drain(CounterBase::BelowWrap(u16::try_from(at - 1).unwrap()));
    assert_eq!(
        r.upd_points, dry.upd_points,
        "UPDs depend on the counter base"
    );
    r
}

#[test]
fn at_read_wraps_the_counters_exactly_at_a_read() {
    // The drain scenario's peer sends no UPD (whose CONSUMED would depend on the base), so
    // its input replays the same way from any base. Each of its 25 reads makes an UPD due.
    let r = scenario_drain(CounterBase::Zero);
    assert_eq!(r.upd_points.len(), 25);
    for k in [0, 7, 24, 30] {
        let setup = Setup {
            counter_base: CounterBase::AtRead(k),
            ..r.setup.clone()
        };
        let stats = session::run_ops(&setup, &r.ops);
        assert_eq!(stats.upds_out, 25);
        assert_eq!(stats.upds_at_wrap, 1, "AtRead({k})");
    }
    let stats = session::run_ops(&r.setup, &r.ops);
    assert_eq!(stats.upds_at_wrap, 0);
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

/// A recorded scenario: with `true` its wrapping counter offsets, else counters from 0.
type Scenario = fn(bool) -> Recorder;

fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let scenarios: [(&str, Scenario); 6] = [
        ("server_v1", |w| scenario_server(false, w)),
        ("server_v2", |w| scenario_server(true, w)),
        ("client_v1", |w| scenario_client(false, w)),
        ("client_v2", |w| scenario_client(true, w)),
        ("window_v2", scenario_window),
        ("tiny_frames_v1", scenario_tiny_frames),
    ];
    for (name, scenario) in scenarios {
        out.push((
            "session_ops",
            name.to_string(),
            scenario(true).session_seed(),
        ));
        out.push((
            "frame_decoder",
            name.to_string(),
            scenario(false).decoder_seed(),
        ));
    }
    for (name, v2) in [("server_detect_v1", false), ("server_detect_v2", true)] {
        let r = scenario_server_detect(v2);
        out.push(("session_ops", name.to_string(), r.session_seed()));
    }
    let drain = scenario_drain_at_wrap();
    out.push((
        "session_ops",
        "drain_at_wrap_v2".to_string(),
        drain.session_seed(),
    ));
    // A malformed frame after good traffic: the session must die with that error.
    let mut bad = scenario_client(true, false).decoder_seed();
    bad.extend_from_slice(&Header::new(2, Cmd::Nop, 0, 0).encode()[..4]);
    bad.extend_from_slice(&[0, 0, 0, 0]);
    bad.extend_from_slice(&[2, 0, 5, 0, 3, 0, 0, 0]); // SYN with LENGTH 5
    out.push(("frame_decoder", "malformed_tail_v2".to_string(), bad));
    out
}

#[test]
fn generated_seeds_pass_their_targets() {
    let mut total = 0;
    for (target, name, bytes) in generated_seeds() {
        total += bytes.len();
        match target {
            "session_ops" => {
                let (setup, ops) = session::decode(&bytes).unwrap();
                let stats = session::run_ops(&setup, &ops);
                eprintln!("{name}: {} ops, {stats:?}", ops.len());
                assert!(stats.frames_in > 0 && stats.frames_out > 0, "{name}");
            }
            _ => decoder::run(&bytes),
        }
        assert!(
            bytes.len() < 40_000,
            "{target}/{name} is {} bytes",
            bytes.len()
        );
    }
    assert!(total < 100 * 1024, "seeds total {total} bytes");
}

#[test]
fn write_seeds() {
    if std::env::var_os("RSMUX_WRITE_SEEDS").is_none() {
        return;
    }
    for (target, name, bytes) in generated_seeds() {
        let dir = seeds_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every saved seed and regression input still passes.
#[test]
fn replay_saved_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["seeds", "regressions"] {
        for target in ["session_ops", "frame_decoder"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                // Every target has seeds; not every target has had a crash.
                assert_ne!(dir, "seeds", "no seeds/{target}: nothing would be replayed");
                continue;
            };
            let mut replayed = 0;
            for e in entries {
                let path = e.unwrap().path();
                if !path.is_file() || path.extension().is_some_and(|x| x == "md") {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                eprintln!("replaying {}", path.display());
                match target {
                    "session_ops" => session::run(&bytes),
                    _ => decoder::run(&bytes),
                }
                replayed += 1;
            }
            if dir == "seeds" {
                assert!(replayed > 0, "seeds/{target} holds no input");
            }
        }
    }
}
