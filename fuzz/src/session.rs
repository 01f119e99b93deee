//! The `session_ops` target: one `Connection` driven by an arbitrary sequence of operations and
//! checked against a model after every step.
//!
//! The model mirrors what the connection must know: the stream table (ids, handles, unread
//! bytes, FIN flags, v2 send-window state learned from the UPD frames the connection actually
//! consumed), the accept queue and the bytes waiting in its `RecvBuffer`. The frames the
//! connection consumes are re-parsed from that mirror, so peer input may be arbitrary bytes in
//! arbitrary pieces. Every frame it transmits is parsed and checked (well formed, on a known
//! stream, SYN first, nothing after FIN, data in order, v2 window respected, v2 window updates
//! exact and never owed).
//!
//! The setup starts the connection's counters at offsets of its choice, such as just below
//! their wrap points (the `test-util` hooks): v2 byte counters, stream ids (the fuzzed peer's
//! fresh ids start as high) and stream serials. The model's counters start at the same ones.
//!
//! A server may have `Config::detect_version`, configured with the setup's version or the
//! other one; the peer speaks the setup's version, except that its first frame may carry the
//! other version or a garbage version byte (see [`RoleByte`]). The model then expects no
//! version and nothing sent until a whole header has arrived, then that header's version (or,
//! for a byte other than 1 and 2, `VersionMismatch` against the configured version) for
//! everything: the frames sent, the frames read, the v2-only rules.

use std::{
    collections::{btree_map::Entry, BTreeMap, BTreeSet, HashSet, VecDeque},
    io::IoSlice,
    sync::OnceLock,
    time::{Duration, Instant},
};

use arbitrary::{Arbitrary, Unstructured};
use rsmux::{
    frame::{decode_upd, encode_upd, Cmd, Header, HEADER_LEN, UPD_LEN},
    proto::{
        internals::{
            min_write_room, session_wake_room, COPY_MAX, INITIAL_PEER_WINDOW, MAX_IOVECS,
            SESSION_SEND_BUFFER, STREAM_SEND_BUFFER,
        },
        Connection, Event, Progress, ReadOutcome, RecvBuffer, Role, StreamId, TxBuf, BOTH_HANDLES,
        READ_HANDLE, WRITE_HANDLE,
    },
    Config, Error, ProtocolError,
};

/// Most operations run per input (keeps every input fast).
pub const MAX_OPS: usize = 4096;

/// Session parameters, the first bytes of an input.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// Protocol version 2 instead of 1 (the peer's; ours too unless we detect it).
    pub v2: bool,
    /// Role, version detection and the peer's first version byte.
    pub role: RoleByte,
    /// Keepalive, `% 4`: off, 10 s / 30 s, 1 ms / 3 ms, 20 µs / 50 µs (interval / timeout).
    /// (A 1 ns interval makes `poll_timeout` stay due after a 65 s jump: the keepalive's
    /// catch-up count is truncated to `u32`; reported, kept out of the fuzzer.)
    pub keepalive: u8,
    /// Index into [`FRAME_SIZES`].
    pub frame_size: u8,
    /// Index into [`RECEIVE_BUFFERS`].
    pub receive_buffer: u8,
    /// Index into [`STREAM_BUFFERS`] (clamped to the receive buffer).
    pub stream_buffer: u8,
    /// v2 receive-window auto-tuning (`stream_window_auto_tune`).
    pub auto_tune: bool,
    /// Where every stream's v2 byte counters start.
    pub counter_base: CounterBase,
    /// `Some(n)`: both ends have only `n` stream ids left (ours: then `Error::GoAway`).
    pub ids_left: Maybe<u16>,
    /// `Some(d)`: the last stream serial was `u64::MAX - d` (serials wrap).
    pub last_serial: Maybe<u8>,
}

/// Role and version detection, one byte (bit 0 alone is the old `server: bool`, so inputs
/// written before detection existed keep their meaning):
/// - bit 0: server role (even ids) instead of client;
/// - bit 1: `detect_version` (a client with it must be refused by `Connection::new`, and then
///   runs without);
/// - bit 2: with detection, configured with the other version than the setup's;
/// - bits 3-4: the version byte of the peer's first well-formed frame (`PeerFrame`, `PeerUpd`,
///   `PeerSyns`): 0 or 1 the setup's, 2 the other version, 3 the byte `b >> 5` (0 to 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleByte(pub u8);

impl<'a> Arbitrary<'a> for RoleByte {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(RoleByte(u8::arbitrary(u)?))
    }
}

impl RoleByte {
    /// Client or server, no detection, the peer speaks the setup's version throughout.
    pub fn plain(server: bool) -> RoleByte {
        RoleByte(u8::from(server))
    }

    /// A server with `detect_version`, configured with the other version if `other_config`;
    /// the peer's first frame carries version byte `first` (`None`: the setup's).
    pub fn detecting(other_config: bool, first: FirstVersion) -> RoleByte {
        RoleByte(0b11 | (u8::from(other_config) << 2) | first.bits())
    }

    /// Server role.
    pub fn server(self) -> bool {
        self.0 & 1 != 0
    }

    /// `detect_version` asked for (only a server gets it).
    pub fn detect(self) -> bool {
        self.0 & 2 != 0
    }

    /// With detection: the configured version is not the setup's.
    pub fn other_config(self) -> bool {
        self.0 & 4 != 0
    }

    /// The version byte of the peer's first frame, given the setup's version.
    pub fn first_version(self, version: u8) -> u8 {
        match (self.0 >> 3) & 3 {
            0 | 1 => version,
            2 => 3 - version,
            _ => self.0 >> 5,
        }
    }
}

/// The version byte of the peer's first frame (for [`RoleByte::detecting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstVersion {
    /// The setup's version.
    Same,
    /// The other version.
    Other,
    /// A byte from 0 to 7 (1 and 2 are versions too).
    Byte(u8),
}

impl FirstVersion {
    fn bits(self) -> u8 {
        match self {
            FirstVersion::Same => 0,
            FirstVersion::Other => 2 << 3,
            FirstVersion::Byte(b) => (3 << 3) | ((b & 7) << 5),
        }
    }
}

/// An optional value that always takes the same input bytes (a flag byte, then the value), so
/// that a mutation of the flag keeps the rest of the input in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maybe<T>(pub Option<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Maybe<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let some = bool::arbitrary(u)?;
        let value = T::arbitrary(u)?;
        Ok(Maybe(some.then_some(value)))
    }
}

/// First value of the v2 byte counters (bytes written, read, consumed) of every stream, on
/// both ends (on the wire both start at 0). In an input: a mode byte (`% 4`: the variants in
/// order), then a `u32` argument, always (so that a mutation of the mode keeps the rest of the
/// input in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterBase {
    /// 0, as on the wire.
    Zero,
    /// `u32::MAX - d`: the counters wrap after `d + 1` bytes.
    BelowWrap(u16),
    /// Any value.
    Raw(u32),
    /// Wherever the read counter wraps exactly at the end of a read: the input runs from 0
    /// first, then again with the base that makes the count after its `k`-th read (modulo
    /// their number) 0, see [`run_ops`]. (A fuzzer rarely lines a base up with a read by
    /// itself; an UPD due exactly at the wrap is the case that stalled.)
    AtRead(u8),
}

impl<'a> Arbitrary<'a> for CounterBase {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mode = u8::arbitrary(u)?;
        let arg = u32::arbitrary(u)?;
        Ok(match mode % 4 {
            0 => CounterBase::Zero,
            1 => CounterBase::BelowWrap(arg as u16),
            2 => CounterBase::Raw(arg),
            _ => CounterBase::AtRead(arg as u8),
        })
    }
}

impl CounterBase {
    /// The base value (`AtRead` is resolved by [`run_ops`]; by itself it starts at 0).
    pub fn value(self) -> u32 {
        match self {
            CounterBase::Zero | CounterBase::AtRead(_) => 0,
            CounterBase::BelowWrap(d) => u32::MAX - u32::from(d),
            CounterBase::Raw(b) => b,
        }
    }
}

/// `max_frame_size` choices.
pub const FRAME_SIZES: [usize; 8] = [32768, 1, 7, 100, 1024, 4096, 32768, 65535];
/// `max_receive_buffer` choices: small, so budget exhaustion is reached.
pub const RECEIVE_BUFFERS: [usize; 4] = [65536, 65536, 16384, 1000];
/// `max_stream_buffer` choices.
pub const STREAM_BUFFERS: [usize; 6] = [65536, 1, 100, 4096, 32768, 65536];

impl Setup {
    /// The peer's protocol version.
    pub fn version(&self) -> u8 {
        if self.v2 {
            2
        } else {
            1
        }
    }

    /// Whether our connection detects the version (a server that asked for it).
    pub fn detects(&self) -> bool {
        self.role.server() && self.role.detect()
    }

    /// Our role.
    pub fn our_role(&self) -> Role {
        if self.role.server() {
            Role::Server
        } else {
            Role::Client
        }
    }

    /// Our configuration: [`peer_config`](Self::peer_config), with `detect_version` (and the
    /// version the setup selects for it) on a detecting server.
    pub fn config(&self) -> Config {
        let mut config = self.peer_config();
        if self.detects() {
            config.detect_version = true;
            if self.role.other_config() {
                config.version = match config.version {
                    rsmux::Version::V1 => rsmux::Version::V2,
                    _ => rsmux::Version::V1,
                };
            }
        }
        config
    }

    /// The configuration this setup selects, as the peer speaks it (other fields: the
    /// defaults).
    pub fn peer_config(&self) -> Config {
        let max_receive_buffer = RECEIVE_BUFFERS[usize::from(self.receive_buffer) % 4];
        let mode = usize::from(self.keepalive % 4);
        let (interval, timeout) = [
            (Duration::from_secs(10), Duration::from_secs(30)),
            (Duration::from_secs(10), Duration::from_secs(30)),
            (Duration::from_millis(1), Duration::from_millis(3)),
            (Duration::from_micros(20), Duration::from_micros(50)),
        ][mode];
        Config::default()
            .with_version(rsmux::Version::try_from(self.version()).unwrap())
            .with_keep_alive_disabled(mode == 0)
            .with_keep_alive_interval(interval)
            .with_keep_alive_timeout(timeout)
            .with_max_frame_size(FRAME_SIZES[usize::from(self.frame_size) % 8])
            .with_max_receive_buffer(max_receive_buffer)
            .with_max_stream_buffer(
                STREAM_BUFFERS[usize::from(self.stream_buffer) % 6].min(max_receive_buffer),
            )
            .with_stream_window_auto_tune(self.auto_tune)
    }

    /// The id of the last stream the end with `role` opened, as the setup starts it.
    pub fn last_id(&self, role: Role) -> u32 {
        // The highest id of the role's parity, minus `n` ids; 1 or 0 as Go starts.
        let top = match role {
            Role::Client => u32::MAX,
            Role::Server => u32::MAX - 1,
        };
        match self.ids_left.0 {
            Some(n) => top - 2 * u32::from(n),
            None => top % 2,
        }
    }

    /// The serial of the last stream created, as the setup starts it.
    pub fn last_serial(&self) -> u64 {
        self.last_serial.0.map_or(0, |d| u64::MAX - u64::from(d))
    }

    /// A connection with this setup's configuration and counter offsets.
    pub fn connection(&self, role: Role, now: Instant) -> Connection {
        if self.role.detect() && role == Role::Client {
            let config = self.config().with_detect_version(true);
            let e = Connection::new(config, role, now).expect_err("a client detects the version");
            assert_eq!(e.field, rsmux::ConfigField::DetectVersion);
        }
        let mut conn = Connection::new(self.config(), role, now).expect("valid config");
        self.start_counters(&mut conn, role);
        conn
    }

    /// Starts the counters of `conn` (a new connection with `role`, ours or the peer's) at
    /// this setup's offsets.
    pub fn start_counters(&self, conn: &mut Connection, role: Role) {
        conn.test_set_counter_base(self.counter_base.value());
        conn.test_set_last_stream_id(self.last_id(role));
        conn.test_set_last_serial(self.last_serial());
    }
}

/// The other end's role.
pub fn peer_role(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// Bytes with an explicit length prefix: `len: u16 LE | bytes` (clamped to what is left), so
/// seeds can be written without knowing `arbitrary`'s length encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Raw {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Raw(u.bytes(len)?.to_vec()))
    }
}

/// Picks a stream id: below 192, one of the ids seen so far (most recent first); otherwise a
/// special id (`k % 8`: 0, 1, 2, u32::MAX, the peer's next fresh id, 3, 0x8000_0001, 5).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sid(pub u8);

/// Command of a well-formed peer frame.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCmd {
    /// SYN.
    Syn,
    /// FIN.
    Fin,
    /// PSH with `len` bytes.
    Psh,
    /// NOP.
    Nop,
    /// UPD with 8 bytes from `fill` (protocol error in v1).
    Upd,
}

/// CONSUMED field of a peer UPD.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// Everything the connection sent on the stream.
    Sent,
    /// That minus some (wrapping).
    SentMinus(u16),
    /// That plus some: more than was sent (the stream's writes must fail).
    SentPlus(u16),
    /// Any value.
    Raw(u32),
}

/// WINDOW field of a peer UPD.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// One of 0, 1, 4096, 65536, 262144, u32::MAX.
    Of(u8),
    /// Any value.
    Raw(u32),
}

/// One step.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Raw bytes from the peer, delivered in two pieces cut at `split`.
    PeerRaw {
        /// The bytes.
        data: Raw,
        /// Bit 0: through `prepare`; the rest: where to cut.
        split: u16,
    },
    /// A well-formed frame from the peer.
    PeerFrame {
        /// Command.
        cmd: FrameCmd,
        /// Stream.
        sid: Sid,
        /// Payload length (PSH only).
        len: u16,
        /// Payload bytes are `fill, fill+1, …`.
        fill: u8,
        /// As for `PeerRaw`.
        split: u16,
    },
    /// A v2 window update from the peer.
    PeerUpd {
        /// Stream.
        sid: Sid,
        /// CONSUMED.
        consumed: Consumed,
        /// WINDOW.
        window: Window,
        /// As for `PeerRaw`.
        split: u16,
    },
    /// `handle_input` on what is buffered.
    Pump,
    /// `open`.
    Open,
    /// `accept`.
    Accept,
    /// `write` of `len` (×4 if `big`) bytes.
    Write {
        /// Stream.
        sid: Sid,
        /// Bytes.
        len: u16,
        /// Times four.
        big: bool,
    },
    /// `read` into a buffer of `len` bytes.
    Read {
        /// Stream.
        sid: Sid,
        /// Buffer size.
        len: u16,
    },
    /// `read_chunk` of at most `max` bytes.
    ReadChunk {
        /// Stream.
        sid: Sid,
        /// Most bytes.
        max: u16,
    },
    /// `flush`.
    Flush {
        /// Stream.
        sid: Sid,
    },
    /// `shutdown_write`.
    ShutdownWrite {
        /// Stream.
        sid: Sid,
    },
    /// `release` of `which & BOTH_HANDLES`.
    Release {
        /// Stream.
        sid: Sid,
        /// Handles.
        which: u8,
    },
    /// `set_read_deadline(now + ms)` or clear it.
    ReadDeadline {
        /// Stream.
        sid: Sid,
        /// Milliseconds from now.
        ms: Option<u16>,
    },
    /// `set_write_deadline(now + ms)` or clear it.
    WriteDeadline {
        /// Stream.
        sid: Sid,
        /// Milliseconds from now.
        ms: Option<u16>,
    },
    /// Graceful `close`.
    Close,
    /// Time passes, then `handle_timeout`.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// `poll_transmit` up to `max * 8` bytes (`u16::MAX`: no limit).
    Transmit {
        /// Limit / 8.
        max: u16,
    },
    /// The socket takes `n * 16` bytes (`u16::MAX`: everything).
    Drain {
        /// Bytes / 16.
        n: u16,
    },
    /// Nothing: `poll_event` is drained after every step, as a driver does (kept so that
    /// inputs keep their meaning).
    Events,
    /// `handle_eof`.
    Eof,
    /// `handle_io_error`.
    IoError,
    /// `handle_shutdown`, when `wants_shutdown`.
    Shutdown,
    /// `count % 1100` SYNs for fresh peer ids in one piece (fills the accept backlog).
    PeerSyns {
        /// How many.
        count: u16,
    },
}

/// Decodes an input into its setup and operations.
pub fn decode(data: &[u8]) -> Option<(Setup, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let setup = Setup::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((setup, ops))
}

/// The fuzz target body.
pub fn run(data: &[u8]) {
    if let Some((setup, ops)) = decode(data) {
        run_ops(&setup, &ops);
    }
}

/// What a run did (for checking that seeds reach deep states).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Frames the connection consumed.
    pub frames_in: usize,
    /// Frames it transmitted.
    pub frames_out: usize,
    /// Payload bytes the application read.
    pub bytes_read: u64,
    /// Payload bytes transmitted.
    pub bytes_sent: u64,
    /// UPD frames transmitted.
    pub upds_out: usize,
    /// FIN frames transmitted.
    pub fins_out: usize,
    /// UPD frames transmitted whose CONSUMED wrapped to exactly 0.
    pub upds_at_wrap: usize,
    /// Opens that failed with `Error::GoAway`.
    pub go_aways: usize,
    /// Whether the session ended.
    pub terminated: bool,
}

/// Runs `ops` on a fresh connection, checking the model after every step.
///
/// With [`CounterBase::AtRead`], twice: from 0, then with the counters starting so that they
/// wrap exactly where one of the reads of the first run ended (the connection's behaviour
/// does not depend on the base, so the same reads end at the same counts; peer frames with
/// absolute counter values may make the runs differ, which is fine). Every UPD becomes due at
/// the end of a read.
pub fn run_ops(setup: &Setup, ops: &[Op]) -> Stats {
    let CounterBase::AtRead(k) = setup.counter_base else {
        return run_once(setup, ops).0;
    };
    let dry = Setup {
        counter_base: CounterBase::Zero,
        ..setup.clone()
    };
    let (stats, read_ends) = run_once(&dry, ops);
    if read_ends.is_empty() {
        return stats;
    }
    let at = read_ends[usize::from(k) % read_ends.len()];
    let aimed = Setup {
        counter_base: CounterBase::Raw(0u32.wrapping_sub(at)),
        ..setup.clone()
    };
    run_once(&aimed, ops).0
}

/// One run; also returns the stream's count of bytes read (wrapping) after every read that
/// returned data.
fn run_once(setup: &Setup, ops: &[Op]) -> (Stats, Vec<u32>) {
    let mut h = Harness::new(setup);
    for op in ops {
        h.step(op);
        h.check(false);
    }
    h.step(&Op::Transmit { max: u16::MAX });
    h.check(true);
    h.stats.terminated = h.conn.is_terminated();
    (h.stats, h.read_ends)
}

/// Most doublings of the configured window auto-tuning applies (the library's `MAX_GROWTH`).
const MAX_GROWTH: u32 = 10;

/// A v2 UPD's WINDOW: the configured window, or with auto-tuning a power-of-two multiple of it
/// (at most [`MAX_GROWTH`] doublings) that fits half the receive budget.
fn check_upd_window(config: &Config, window: u32) {
    let configured = config.max_stream_buffer as u64;
    let w = u64::from(window);
    assert!(
        w >= configured && w % configured == 0 && (w / configured).is_power_of_two(),
        "UPD window {w}, configured {configured}"
    );
    assert!(w / configured <= 1 << MAX_GROWTH, "UPD window {w}");
    if w > configured {
        assert!(
            config.stream_window_auto_tune,
            "window {w} without auto-tuning"
        );
        assert!(
            w <= config.max_receive_buffer as u64 / 2,
            "grown window {w} beyond half the budget"
        );
    }
}

/// Period of the data pattern written by the application.
const PERIOD: usize = 251;
/// Largest single write.
const MAX_WRITE: usize = 4 * u16::MAX as usize;

/// `PAT[j] = j % 251`: stream `id`'s byte at offset `o` is `PAT[start(id, o)]`.
fn pattern() -> &'static [u8] {
    static PAT: OnceLock<Vec<u8>> = OnceLock::new();
    PAT.get_or_init(|| {
        (0..PERIOD + MAX_WRITE)
            .map(|j| (j % PERIOD) as u8)
            .collect()
    })
}

fn start(id: u32, offset: u64) -> usize {
    ((offset + u64::from(id) * 17) % PERIOD as u64) as usize
}

/// What the model knows of one entry of the connection's stream table.
#[derive(Debug)]
struct StreamModel {
    /// The connection's serial for it.
    serial: u64,
    local: bool,
    handles: u8,
    // Receive side.
    unread: VecDeque<u8>,
    read_closed: bool,
    fin_received: bool,
    total_read: u64,
    read_deadline: Option<Instant>,
    // Send side.
    write_closed: bool,
    write_deadline: Option<Instant>,
    /// Bytes `write` accepted.
    accepted: u64,
    /// Accepted and not yet framed.
    queued: usize,
    /// Payload bytes framed.
    transmitted: u64,
    syn_sent: bool,
    fin_sent: bool,
    /// The peer claimed to have consumed more than was sent.
    broken: bool,
    /// v2 window as the connection must see it (counters from the setup's base, wrapping).
    sent: u32,
    peer_consumed: u32,
    peer_window: u32,
    /// v2 receive side: `total_read` and WINDOW when the connection sent its last UPD.
    upd_sent: Option<(u64, u32)>,
}

impl StreamModel {
    fn new(local: bool, serial: u64, base: u32) -> StreamModel {
        StreamModel {
            serial,
            local,
            handles: BOTH_HANDLES,
            unread: VecDeque::new(),
            read_closed: false,
            fin_received: false,
            total_read: 0,
            read_deadline: None,
            write_closed: false,
            write_deadline: None,
            accepted: 0,
            queued: 0,
            transmitted: 0,
            syn_sent: false,
            fin_sent: false,
            broken: false,
            sent: base,
            peer_consumed: base,
            peer_window: INITIAL_PEER_WINDOW,
            upd_sent: None,
        }
    }

    /// Bytes the v2 window lets the connection send now (Go's `int32` arithmetic on wrapping
    /// counters; a WINDOW above `i32::MAX` counts as `i32::MAX`, not as negative as in Go).
    fn allowed(&self) -> Option<u32> {
        let inflight = self.sent.wrapping_sub(self.peer_consumed) as i32;
        if inflight < 0 {
            return None;
        }
        let window = self.peer_window.min(i32::MAX as u32) as i32;
        Some(window.saturating_sub(inflight).max(0) as u32)
    }
}

struct Harness {
    conn: Connection,
    config: Config,
    role: Role,
    now: Instant,
    rb: RecvBuffer,
    /// Exactly the bytes in `rb`.
    mirror: Vec<u8>,
    tx: TxBuf,
    streams: BTreeMap<u32, StreamModel>,
    known: Vec<u32>,
    known_set: HashSet<u32>,
    accept_q: VecDeque<u32>,
    next_peer_id: u32,
    /// The last id the connection allocated, `None` once the id space is exhausted.
    last_id: Option<u32>,
    /// The serial of the last stream created.
    last_serial: u64,
    /// Where every stream's v2 byte counters start.
    base: u32,
    terminated: bool,
    read_buf: Vec<u8>,
    stats: Stats,
    /// `total_read` (wrapping) after every read that returned data.
    read_ends: Vec<u32>,
    /// Sum of `unread` over all streams.
    total_unread: usize,
    /// Sum of `queued` over all streams.
    total_queued: usize,
    /// Streams with no handle left: the only ones the connection may remove.
    orphans: BTreeSet<u32>,
    steps: usize,
    /// Streams whose reader got `Blocked` and has not been woken since.
    read_waiters: BTreeSet<u32>,
    /// Streams whose writer, flusher or shutdown got `Blocked` (which of them: `WAIT_*`
    /// bits) and has not been woken since.
    write_waiters: BTreeMap<u32, u8>,
    /// The step just run was a `Transmit`.
    transmitted: bool,
    /// The version the connection speaks: `None` while it waits to detect it.
    detected: Option<u8>,
    /// The peer's version byte for its next well-formed frame: the first one's, then the
    /// setup's.
    peer_version: u8,
    /// The setup's version.
    setup_version: u8,
}

const WAIT_WRITE: u8 = 1;
const WAIT_FLUSH: u8 = 2;
const WAIT_SHUTDOWN: u8 = 4;

fn err_text(e: &Error) -> String {
    e.to_string()
}

impl Harness {
    fn new(setup: &Setup) -> Harness {
        let config = setup.config();
        let role = setup.our_role();
        let now = Instant::now();
        Harness {
            conn: setup.connection(role, now),
            role,
            now,
            rb: RecvBuffer::new(),
            mirror: Vec::new(),
            tx: TxBuf::new(),
            streams: BTreeMap::new(),
            known: Vec::new(),
            known_set: HashSet::new(),
            accept_q: VecDeque::new(),
            next_peer_id: setup.last_id(peer_role(role)).wrapping_add(2),
            last_id: Some(setup.last_id(role)),
            last_serial: setup.last_serial(),
            base: setup.counter_base.value(),
            terminated: false,
            read_buf: vec![0; u16::MAX as usize],
            stats: Stats::default(),
            read_ends: Vec::new(),
            total_unread: 0,
            total_queued: 0,
            orphans: BTreeSet::new(),
            steps: 0,
            read_waiters: BTreeSet::new(),
            write_waiters: BTreeMap::new(),
            transmitted: false,
            detected: (!config.detect_version).then_some(config.version.as_u8()),
            peer_version: setup.role.first_version(setup.version()),
            setup_version: setup.version(),
            config,
        }
    }

    /// The version the connection speaks now: the detected one, or the configured one (also
    /// the one a header of a non-version fails against).
    fn version(&self) -> u8 {
        self.detected.unwrap_or(self.config.version.as_u8())
    }

    fn v2(&self) -> bool {
        self.version() == 2
    }

    /// The version byte of the peer's next well-formed frame.
    fn peer_version(&mut self) -> u8 {
        std::mem::replace(&mut self.peer_version, self.setup_version)
    }

    fn sid(&mut self, s: Sid) -> u32 {
        let k = s.0;
        if k < 192 && !self.known.is_empty() {
            return self.known[self.known.len() - 1 - usize::from(k) % self.known.len()];
        }
        match k % 8 {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => u32::MAX,
            4 => {
                let id = self.next_peer_id;
                self.next_peer_id = self.next_peer_id.wrapping_add(2);
                id
            }
            5 => 3,
            6 => 0x8000_0001,
            _ => 5,
        }
    }

    fn note_known(&mut self, id: u32) {
        if self.known_set.insert(id) {
            self.known.push(id);
        }
    }

    // ------------------------------------------------------------------------------------
    // Steps.

    fn step(&mut self, op: &Op) {
        let now = self.now;
        self.transmitted = matches!(op, Op::Transmit { .. });
        match *op {
            Op::PeerRaw { ref data, split } => self.deliver(&data.0, split),
            Op::PeerFrame {
                cmd,
                sid,
                len,
                fill,
                split,
            } => {
                let id = self.sid(sid);
                let (cmd, len) = match cmd {
                    FrameCmd::Syn => (Cmd::Syn, 0),
                    FrameCmd::Fin => (Cmd::Fin, 0),
                    FrameCmd::Psh => (Cmd::Psh, len),
                    FrameCmd::Nop => (Cmd::Nop, 0),
                    FrameCmd::Upd => (Cmd::Upd, UPD_LEN as u16),
                };
                let v = self.peer_version();
                let mut wire = Header::new(v, cmd, len, id).encode().to_vec();
                wire.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
                self.deliver(&wire, split);
            }
            Op::PeerUpd {
                sid,
                consumed,
                window,
                split,
            } => {
                let id = self.sid(sid);
                let sent = self.streams.get(&id).map_or(self.base, |s| s.sent);
                let consumed = match consumed {
                    Consumed::Sent => sent,
                    Consumed::SentMinus(d) => sent.wrapping_sub(u32::from(d)),
                    Consumed::SentPlus(d) => sent.wrapping_add(u32::from(d)),
                    Consumed::Raw(c) => c,
                };
                let window = match window {
                    Window::Of(k) => [0, 1, 4096, 65536, 262_144, u32::MAX][usize::from(k) % 6],
                    Window::Raw(w) => w,
                };
                let v = self.peer_version();
                let mut wire = Header::new(v, Cmd::Upd, UPD_LEN as u16, id)
                    .encode()
                    .to_vec();
                wire.extend(encode_upd(consumed, window));
                self.deliver(&wire, split);
            }
            Op::Pump => self.input(),
            Op::Open => self.open(),
            Op::Accept => self.accept(),
            Op::Write { sid, len, big } => {
                let id = self.sid(sid);
                let n = usize::from(len) * if big { 4 } else { 1 };
                self.write(id, n);
            }
            Op::Read { sid, len } => {
                let id = self.sid(sid);
                self.read(id, usize::from(len));
            }
            Op::ReadChunk { sid, max } => {
                let id = self.sid(sid);
                self.read_chunk(id, usize::from(max));
            }
            Op::Flush { sid } => {
                let id = self.sid(sid);
                self.flush(id);
            }
            Op::ShutdownWrite { sid } => {
                let id = self.sid(sid);
                self.shutdown_write(id);
            }
            Op::Release { sid, which } => {
                let id = self.sid(sid);
                self.release(id, which & BOTH_HANDLES);
            }
            Op::ReadDeadline { sid, ms } => {
                let id = self.sid(sid);
                let d = ms.map(|ms| now + Duration::from_millis(u64::from(ms)));
                self.conn.set_read_deadline(StreamId::new(id), d);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.read_deadline = d;
                }
            }
            Op::WriteDeadline { sid, ms } => {
                let id = self.sid(sid);
                let d = ms.map(|ms| now + Duration::from_millis(u64::from(ms)));
                self.conn.set_write_deadline(StreamId::new(id), d);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.write_deadline = d;
                }
            }
            Op::Close => {
                let was_closed = self.conn.is_closed();
                assert_eq!(self.conn.close(now), !was_closed, "close result");
                assert!(self.conn.is_closed());
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.conn.handle_timeout(self.now);
                if !self.conn.is_terminated() {
                    if let Some(t) = self.conn.poll_timeout() {
                        assert!(t > self.now, "a timer is still due after handle_timeout");
                    }
                }
            }
            Op::Transmit { max } => {
                let max = if max == u16::MAX {
                    usize::MAX
                } else {
                    usize::from(max) * 8
                };
                self.transmit(max);
            }
            Op::Drain { n } => {
                let n = if n == u16::MAX {
                    usize::MAX
                } else {
                    usize::from(n) * 16
                };
                self.drain(n);
            }
            // Events are drained after every step (see `check`), as a driver does.
            Op::Events => {}
            Op::Eof => self.conn.handle_eof(),
            Op::IoError => self
                .conn
                .handle_io_error(std::io::Error::other("fuzzed I/O error")),
            Op::PeerSyns { count } => {
                let mut wire = Vec::new();
                for _ in 0..count % 1100 {
                    let id = self.sid(Sid(252));
                    let v = self.peer_version();
                    wire.extend_from_slice(&Header::new(v, Cmd::Syn, 0, id).encode());
                }
                self.deliver(&wire, 0);
            }
            Op::Shutdown => {
                if self.conn.wants_shutdown() {
                    self.conn.handle_shutdown();
                    assert!(self.conn.is_terminated());
                }
            }
        }
    }

    /// Peer bytes into the receive buffer in two pieces, `handle_input` after each.
    fn deliver(&mut self, bytes: &[u8], split: u16) {
        let use_prepare = split & 1 != 0;
        let cut = usize::from(split >> 1) % (bytes.len() + 1);
        for piece in [&bytes[..cut], &bytes[cut..]] {
            if piece.is_empty() {
                continue;
            }
            if use_prepare {
                let mut p = piece;
                while !p.is_empty() {
                    let b = self.rb.prepare();
                    let room = (b.capacity() - b.len()).max(1).min(p.len());
                    b.extend_from_slice(&p[..room]);
                    p = &p[room..];
                }
            } else {
                self.rb.extend_from_slice(piece);
            }
            self.mirror.extend_from_slice(piece);
            self.input();
        }
    }

    /// `handle_input`, then replay the consumed frames on the model.
    fn input(&mut self) {
        let was_terminated = self.conn.is_terminated();
        let was_closed = self.conn.is_closed();
        assert_eq!(self.rb.len(), self.mirror.len());
        // Detection: the version byte of the first whole header, if it is a version (a
        // session that has read nothing yet still reads unless it is over).
        if self.detected.is_none() && !was_terminated && self.mirror.len() >= HEADER_LEN {
            if let b @ (1 | 2) = self.mirror[0] {
                self.detected = Some(b);
            }
        }
        let version = self.version();
        self.conn.handle_input(&mut self.rb);
        let consumed = self.mirror.len() - self.rb.len();
        if was_terminated {
            assert_eq!(consumed, 0, "a terminated session read input");
        }
        let bytes: Vec<u8> = self.mirror.drain(..consumed).collect();
        let mut off = 0;
        let mut window_kill = None;
        let mut opened = Vec::new();
        while off < bytes.len() {
            assert!(
                window_kill.is_none(),
                "read on after an impossible window update"
            );
            assert!(bytes.len() - off >= HEADER_LEN, "consumed half a header");
            let hb: &[u8; HEADER_LEN] = bytes[off..off + HEADER_LEN].try_into().expect("8");
            let h = Header::decode(hb, version).expect("consumed a malformed frame");
            let end = off + HEADER_LEN + usize::from(h.len);
            assert!(end <= bytes.len(), "consumed half a frame");
            if h.cmd == Cmd::Syn && !self.streams.contains_key(&h.stream_id) {
                opened.push(h.stream_id);
            }
            if self.apply_peer_frame(&h, &bytes[off + HEADER_LEN..end], was_closed) {
                window_kill = Some(h.stream_id);
            }
            self.stats.frames_in += 1;
            off = end;
        }
        // Streams the peer just opened got the next serials (and have all handles, so they
        // are still there).
        for id in opened {
            assert_eq!(
                self.conn.stream_serial(StreamId::new(id)),
                Some(self.streams[&id].serial),
                "serial of {id}"
            );
        }
        if let Some(id) = window_kill {
            assert!(
                self.conn.is_terminated(),
                "impossible UPD did not end the session"
            );
            if !was_closed {
                let expected = Error::Protocol(ProtocolError::ConsumedMoreThanSent { stream: id });
                assert_eq!(
                    self.conn.close_reason().map(err_text),
                    Some(err_text(&expected))
                );
            }
        } else if self.conn.is_terminated() {
            if !was_terminated {
                // Otherwise only a malformed header ends a session while reading.
                let hb: &[u8; HEADER_LEN] = self
                    .mirror
                    .get(..HEADER_LEN)
                    .expect("died without a complete header")
                    .try_into()
                    .expect("8");
                let e = Header::decode(hb, version).expect_err("died on a valid header");
                if !was_closed {
                    match self.conn.close_reason() {
                        Some(Error::Protocol(p)) => assert_eq!(*p, e),
                        other => panic!("expected Protocol({e:?}), got {other:?}"),
                    }
                }
            }
        } else if self.conn.wants_read() {
            // No complete frame may be left behind.
            if let Some(hb) = self.mirror.get(..HEADER_LEN) {
                let hb: &[u8; HEADER_LEN] = hb.try_into().expect("8");
                let h = Header::decode(hb, version).expect("malformed header not detected");
                assert!(
                    self.mirror.len() < HEADER_LEN + usize::from(h.len),
                    "a complete frame was left unread"
                );
            }
        } else {
            assert!(
                self.conn.buffered_bytes() >= self.config.max_receive_buffer
                    || self.conn.pending_accepts() >= self.config.accept_backlog,
                "reading paused without a reason"
            );
        }
    }

    /// Replays one consumed peer frame on the model. `closing`: the session was closed
    /// before this input (a closing session drops data). Returns whether the frame must have
    /// ended the session (an impossible v2 window update).
    fn apply_peer_frame(&mut self, h: &Header, payload: &[u8], closing: bool) -> bool {
        let id = h.stream_id;
        match h.cmd {
            Cmd::Nop => {}
            Cmd::Syn => {
                if let Entry::Vacant(e) = self.streams.entry(id) {
                    self.last_serial = self.last_serial.wrapping_add(1);
                    e.insert(StreamModel::new(false, self.last_serial, self.base));
                    self.accept_q.push_back(id);
                    self.note_known(id);
                }
            }
            Cmd::Fin => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.fin_received = true;
                }
            }
            Cmd::Psh => {
                if let Some(s) = self.streams.get_mut(&id) {
                    if !s.read_closed && !closing {
                        s.unread.extend(payload);
                        self.total_unread += payload.len();
                    }
                }
            }
            Cmd::Upd => {
                if let Some(s) = self.streams.get_mut(&id) {
                    let (consumed, window) = decode_upd(payload.try_into().expect("8 bytes"));
                    s.peer_consumed = consumed;
                    s.peer_window = window;
                    if s.allowed().is_none() {
                        s.broken = true;
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The id `open` must allocate: the next one of our parity that the peer did not take,
    /// or `None` once the id space is exhausted (and from then on).
    fn next_local_id(&mut self) -> Option<u32> {
        loop {
            self.last_id = self.last_id?.checked_add(2);
            let id = self.last_id?;
            if !self.streams.contains_key(&id) {
                return Some(id);
            }
        }
    }

    fn open(&mut self) {
        let was_closed = self.conn.close_reason().cloned();
        let r = self.conn.open();
        if let Some(c) = was_closed {
            let e = r.expect_err("opened on a closed session");
            assert_eq!(err_text(&e), err_text(&c));
            return;
        }
        match (r, self.next_local_id()) {
            (Ok(id), Some(want)) => {
                let id = id.get();
                assert_eq!(id, want, "ids in order, skipping the peer's");
                let parity = if self.role == Role::Client { 1 } else { 0 };
                assert_eq!(id % 2, parity, "wrong id parity");
                self.last_serial = self.last_serial.wrapping_add(1);
                let s = StreamModel::new(true, self.last_serial, self.base);
                assert_eq!(
                    self.conn.stream_serial(StreamId::new(id)),
                    Some(s.serial),
                    "serial of {id}"
                );
                self.streams.insert(id, s);
                self.note_known(id);
            }
            (Err(e), None) => {
                assert!(matches!(e, Error::GoAway), "open failed: {e}");
                self.stats.go_aways += 1;
            }
            (r, want) => panic!("open: {r:?}, expected {want:?}"),
        }
    }

    fn accept(&mut self) {
        match self.conn.accept() {
            Ok(Some(id)) => {
                assert_eq!(self.accept_q.pop_front(), Some(id.get()), "accept order");
            }
            Ok(None) => {
                assert!(
                    self.accept_q.is_empty(),
                    "a stream waits but accept says none"
                );
                assert!(!self.conn.is_closed());
            }
            Err(_) => {
                assert!(self.accept_q.is_empty());
                assert!(self.conn.is_closed());
            }
        }
    }

    /// The error a read of `id` with nothing buffered and no FIN must return, if any.
    fn read_error(&self, id: u32) -> Option<String> {
        let Some(s) = self.streams.get(&id) else {
            return Some(err_text(&Error::Closed));
        };
        if let Some(e) = self.conn.close_reason() {
            return Some(err_text(e));
        }
        if s.read_deadline.is_some_and(|d| d <= self.now) {
            return Some(err_text(&Error::Timeout));
        }
        None
    }

    fn note_read_wait(&mut self, id: u32, blocked: bool) {
        if blocked {
            self.read_waiters.insert(id);
        } else {
            self.read_waiters.remove(&id);
        }
    }

    fn note_write_wait(&mut self, id: u32, kind: u8, blocked: bool) {
        if blocked {
            *self.write_waiters.entry(id).or_default() |= kind;
        } else if let Some(k) = self.write_waiters.get_mut(&id) {
            *k &= !kind;
            if *k == 0 {
                self.write_waiters.remove(&id);
            }
        }
    }

    /// Drains `poll_event`, then checks that no waiter that could make progress was left
    /// asleep (a lost wake-up hangs a driver's task forever).
    fn check_wakeups(&mut self) {
        for _ in 0..10_000_000 {
            match self.conn.poll_event() {
                None => break,
                Some(Event::Readable(id)) => {
                    self.read_waiters.remove(&id.get());
                }
                Some(Event::Writable(id)) => {
                    self.write_waiters.remove(&id.get());
                }
                Some(Event::Closed) => {
                    self.read_waiters.clear();
                    self.write_waiters.clear();
                }
                Some(Event::Incoming) => {}
            }
        }
        let closed = self.conn.is_closed();
        for id in &self.read_waiters {
            let s = self
                .streams
                .get(id)
                .expect("a waiting reader holds its stream");
            let due = s.read_deadline.is_some_and(|d| d <= self.now);
            assert!(
                !(closed || due || s.fin_received || !s.unread.is_empty()),
                "lost wake-up: reader of {id} (closed {closed}, deadline {due}, FIN {}, {} bytes)",
                s.fin_received,
                s.unread.len()
            );
        }
        for (id, kinds) in &self.write_waiters {
            let s = self
                .streams
                .get(id)
                .expect("a waiting writer holds its stream");
            let due = s.write_deadline.is_some_and(|d| d <= self.now);
            assert!(
                !(closed || due),
                "lost wake-up: writer of {id} (closed or deadline)"
            );
            if kinds & WAIT_FLUSH != 0 {
                assert!(s.queued > 0, "lost wake-up: flush of {id} done");
            }
            if kinds & WAIT_SHUTDOWN != 0 {
                assert!(!s.fin_sent, "lost wake-up: FIN of {id} framed");
            }
            let cap = SESSION_SEND_BUFFER.min(self.config.max_receive_buffer);
            // A writer waits until its share of room fits: at most MIN_WRITE_ROOM, at most half
            // of what can become free.
            let most_least = min_write_room(usize::MAX, cap, s.peer_window as usize);
            let window_short = self.v2()
                && (s.allowed().unwrap_or(0) as usize).saturating_sub(s.queued) < most_least;
            if kinds & WAIT_WRITE != 0 && self.transmitted && !window_short {
                // With the small budgets used here a writer waits for its v2 window (woken by
                // the UPD that opens it) or for session-wide room (the cap is below
                // STREAM_SEND_BUFFER); every such writer is woken once enough of the cap is
                // free again.
                assert!(
                    cap - self.total_queued < session_wake_room(cap),
                    "lost wake-up: writer of {id} with {} of {cap} bytes free",
                    cap - self.total_queued
                );
            }
        }
    }

    fn read(&mut self, id: u32, len: usize) {
        let now = self.now;
        let expect_err = self.read_error(id);
        let r = self
            .conn
            .read(StreamId::new(id), &mut self.read_buf[..len], now);
        if len == 0 {
            assert!(matches!(r, Ok(ReadOutcome::Data(0))), "{r:?}");
            return;
        }
        self.note_read_wait(id, matches!(r, Ok(ReadOutcome::Blocked)));
        match r {
            Ok(ReadOutcome::Data(n)) => {
                let s = self
                    .streams
                    .get_mut(&id)
                    .expect("data from an unknown stream");
                assert_eq!(n, len.min(s.unread.len()), "short read");
                for (i, b) in s.unread.drain(..n).enumerate() {
                    assert_eq!(self.read_buf[i], b, "wrong byte at {i} of a read of {id}");
                }
                s.total_read += n as u64;
                self.read_ends.push(s.total_read as u32);
                self.total_unread -= n;
                self.stats.bytes_read += n as u64;
            }
            Ok(ReadOutcome::Eof) => {
                let s = self.streams.get(&id).expect("EOF from an unknown stream");
                assert!(s.unread.is_empty() && s.fin_received, "early EOF");
            }
            Ok(ReadOutcome::Blocked) => {
                let s = self.streams.get(&id).expect("blocked on an unknown stream");
                assert!(
                    s.unread.is_empty() && !s.fin_received,
                    "blocked with data or FIN"
                );
                assert_eq!(expect_err, None, "blocked instead of failing");
            }
            Err(e) => {
                if let Some(s) = self.streams.get(&id) {
                    assert!(s.unread.is_empty(), "error before buffered data");
                    assert!(!s.fin_received, "error instead of EOF");
                }
                assert_eq!(Some(err_text(&e)), expect_err, "read error");
            }
        }
    }

    fn read_chunk(&mut self, id: u32, max: usize) {
        let expect_err = self.read_error(id);
        let r = self.conn.read_chunk(StreamId::new(id), max, self.now);
        self.note_read_wait(id, matches!(r, Ok(ReadOutcome::Blocked)));
        match r {
            Ok(ReadOutcome::Data(b)) => {
                let s = self
                    .streams
                    .get_mut(&id)
                    .expect("data from an unknown stream");
                assert!(
                    !b.is_empty() && b.len() <= max.max(1),
                    "chunk of {}",
                    b.len()
                );
                assert!(b.len() <= s.unread.len());
                for (i, x) in s.unread.drain(..b.len()).enumerate() {
                    assert_eq!(b[i], x, "wrong byte at {i} of a chunk of {id}");
                }
                s.total_read += b.len() as u64;
                self.read_ends.push(s.total_read as u32);
                self.total_unread -= b.len();
                self.stats.bytes_read += b.len() as u64;
            }
            Ok(ReadOutcome::Eof) => {
                let s = self.streams.get(&id).expect("EOF from an unknown stream");
                assert!(s.unread.is_empty() && s.fin_received, "early EOF");
            }
            Ok(ReadOutcome::Blocked) => {
                let s = self.streams.get(&id).expect("blocked on an unknown stream");
                assert!(
                    s.unread.is_empty() && !s.fin_received,
                    "blocked with data or FIN"
                );
                assert_eq!(expect_err, None, "blocked instead of failing");
            }
            Err(e) => {
                if let Some(s) = self.streams.get(&id) {
                    assert!(s.unread.is_empty() && !s.fin_received);
                }
                assert_eq!(Some(err_text(&e)), expect_err, "read_chunk error");
            }
        }
    }

    /// The error `write` must return for `id`, if any.
    fn write_error(&self, id: u32) -> Option<String> {
        let Some(s) = self.streams.get(&id) else {
            return Some(err_text(&Error::Closed));
        };
        if s.write_closed {
            return Some(err_text(&Error::Closed));
        }
        // An impossible window update ends the whole session: the close reason covers it.
        if let Some(e) = self.conn.close_reason() {
            return Some(err_text(e));
        }
        if s.write_deadline.is_some_and(|d| d <= self.now) {
            return Some(err_text(&Error::Timeout));
        }
        None
    }

    fn write(&mut self, id: u32, n: usize) {
        let expect_err = self.write_error(id);
        let cap = SESSION_SEND_BUFFER.min(self.config.max_receive_buffer);
        let session_room = cap.saturating_sub(self.total_queued);
        let offset = self.streams.get(&id).map_or(0, |s| s.accepted);
        let st = start(id, offset);
        let data = &pattern()[st..st + n];
        // Half the writes take the zero-copy path, which must behave the same (but for not
        // leaving a remainder too small to share).
        let chunk_path = (offset ^ n as u64) & 1 == 1;
        let r = if chunk_path {
            let mut chunk = bytes::Bytes::copy_from_slice(data);
            let r = self
                .conn
                .write_chunk(StreamId::new(id), &mut chunk, self.now);
            let taken = match r {
                Ok(Progress::Ready(k)) => k,
                _ => 0,
            };
            assert_eq!(
                chunk.len(),
                n - taken,
                "write_chunk keeps what it did not take"
            );
            r
        } else {
            self.conn.write(StreamId::new(id), data, self.now)
        };
        self.note_write_wait(id, WAIT_WRITE, matches!(r, Ok(Progress::Blocked)));
        match r {
            Err(e) => assert_eq!(Some(err_text(&e)), expect_err, "write error"),
            Ok(p) => {
                assert_eq!(expect_err, None, "write succeeded: {p:?}");
                let v2 = self.v2();
                let s = self.streams.get_mut(&id).expect("checked");
                // v2: no more is accepted than the peer's window can take.
                let window_room = if v2 {
                    (s.allowed().unwrap_or(0) as usize).saturating_sub(s.queued)
                } else {
                    usize::MAX
                };
                let room = STREAM_SEND_BUFFER
                    .saturating_sub(s.queued)
                    .min(session_room)
                    .min(window_room);
                // A larger write waits for a fair share of room rather than take a sliver.
                let peer_window = if v2 {
                    s.peer_window as usize
                } else {
                    usize::MAX
                };
                let least = min_write_room(n, cap, peer_window);
                let mut taken = n.min(room);
                let rest = n - taken;
                if chunk_path && rest > 0 && rest < COPY_MAX && taken > COPY_MAX {
                    taken -= COPY_MAX - rest;
                }
                if n == 0 {
                    assert_eq!(p, Progress::Ready(0));
                } else if room < least {
                    assert_eq!(p, Progress::Blocked, "write with too little room");
                } else {
                    assert_eq!(p, Progress::Ready(taken), "write took the wrong amount");
                    s.accepted += taken as u64;
                    s.queued += taken;
                    self.total_queued += taken;
                }
            }
        }
    }

    fn flush(&mut self, id: u32) {
        let r = self.conn.flush(StreamId::new(id), self.now);
        self.note_write_wait(id, WAIT_FLUSH, matches!(r, Ok(Progress::Blocked)));
        if let Some(e) = self.conn.close_reason() {
            // Once the session has ended, flush reports it, queued data or not.
            let e = err_text(e);
            assert_eq!(
                r.err().map(|e| err_text(&e)),
                Some(e),
                "flush after the end"
            );
            return;
        }
        let Some(s) = self.streams.get(&id) else {
            assert!(matches!(r, Err(Error::Closed)), "{r:?}");
            return;
        };
        if s.queued == 0 {
            assert_eq!(r.ok(), Some(Progress::Ready(0)));
            return;
        }
        let expect = if let Some(e) = self.conn.close_reason() {
            Some(err_text(e))
        } else if s.write_deadline.is_some_and(|d| d <= self.now) {
            Some(err_text(&Error::Timeout))
        } else {
            None
        };
        match r {
            Ok(p) => {
                assert_eq!(p, Progress::Blocked);
                assert_eq!(expect, None);
            }
            Err(e) => assert_eq!(Some(err_text(&e)), expect, "flush error"),
        }
    }

    fn shutdown_write(&mut self, id: u32) {
        let r = self.conn.shutdown_write(StreamId::new(id), self.now);
        self.note_write_wait(id, WAIT_SHUTDOWN, matches!(r, Ok(Progress::Blocked)));
        let closed = self.conn.close_reason().map(err_text);
        let now = self.now;
        let Some(s) = self.streams.get_mut(&id) else {
            assert!(matches!(r, Err(Error::Closed)), "{r:?}");
            return;
        };
        if s.fin_sent {
            assert_eq!(r.ok(), Some(Progress::Ready(0)));
            return;
        }
        s.write_closed = true;
        let expect = if closed.is_some() {
            closed
        } else if s.write_deadline.is_some_and(|d| d <= now) {
            Some(err_text(&Error::Timeout))
        } else {
            None
        };
        match r {
            Ok(p) => {
                assert_eq!(p, Progress::Blocked);
                assert_eq!(expect, None);
            }
            Err(e) => assert_eq!(Some(err_text(&e)), expect, "shutdown_write error"),
        }
    }

    fn release(&mut self, id: u32, which: u8) {
        self.conn.release(StreamId::new(id), which);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let which = which & s.handles;
        if which & READ_HANDLE != 0 {
            self.read_waiters.remove(&id);
            s.read_closed = true;
            self.total_unread -= s.unread.len();
            s.unread.clear();
            s.read_deadline = None;
        }
        if which & WRITE_HANDLE != 0 {
            self.write_waiters.remove(&id);
            s.write_deadline = None;
            s.write_closed = true;
        }
        s.handles &= !which;
        if s.handles == 0 {
            self.orphans.insert(id);
        }
    }

    fn transmit(&mut self, max: usize) {
        let before = self.tx.len();
        let terminated = self.conn.is_terminated();
        self.conn.poll_transmit(&mut self.tx, max);
        if terminated {
            assert_eq!(self.tx.len(), before, "a terminated session transmitted");
            return;
        }
        if self.detected.is_none() {
            // Nothing leaves before the version is known.
            assert_eq!(
                self.tx.len(),
                before,
                "transmitted before detecting the version"
            );
            assert!(!self.conn.has_pending_transmit());
            return;
        }
        let all = self.tx.to_vec();
        assert_eq!(all.len(), self.tx.len());
        let new = &all[before..];
        let mut off = 0;
        while off < new.len() {
            assert!(new.len() - off >= HEADER_LEN, "half a header transmitted");
            let hb: &[u8; HEADER_LEN] = new[off..off + HEADER_LEN].try_into().expect("8");
            assert_eq!(hb[0], self.version(), "a frame of another version");
            let h = Header::decode(hb, self.version()).expect("transmitted a malformed header");
            let end = off + HEADER_LEN + usize::from(h.len);
            assert!(end <= new.len(), "half a frame transmitted");
            self.check_sent_frame(&h, &new[off + HEADER_LEN..end]);
            self.stats.frames_out += 1;
            off = end;
        }
        if max == usize::MAX && (self.streams.len() <= 16 || self.steps.is_multiple_of(32)) {
            // Everything that can go went.
            let v2 = self.v2();
            for (id, s) in &self.streams {
                if s.local {
                    assert!(s.syn_sent, "SYN of {id} held back");
                }
                if s.queued > 0 {
                    assert!(
                        v2 && s.allowed() == Some(0),
                        "data of {id} held back with window {:?}",
                        s.allowed()
                    );
                } else if s.write_closed {
                    assert!(s.fin_sent, "FIN of {id} held back");
                }
            }
            assert_eq!(
                self.conn.has_pending_transmit(),
                self.conn.queued_send_bytes() > 0
            );
            if v2 {
                self.check_no_upd_owed();
            }
        }
        if self.v2() {
            self.check_grown_windows();
        }
        if self.tx.len() > 128 * 1024 {
            self.drain(usize::MAX);
        }
    }

    /// After a full transmit no UPD is owed: a stream that read anything sent one, and since
    /// the last one it read less than half the window that UPD advertised (the threshold that
    /// makes the next one due; the window only grows at a due point). Released read halves
    /// send no more UPDs.
    fn check_no_upd_owed(&self) {
        for (id, s) in &self.streams {
            if s.read_closed || s.total_read == 0 {
                continue;
            }
            let Some((at, window)) = s.upd_sent else {
                panic!("stream {id}: read {} bytes and sent no UPD", s.total_read);
            };
            assert!(
                s.total_read - at < u64::from((window / 2).max(1)),
                "stream {id}: an UPD is owed: {} bytes read since the last one (window \
                 {window}, {} read in all)",
                s.total_read - at,
                s.total_read
            );
        }
    }

    /// The grown windows of the streams that still read stay within half the receive budget
    /// together (a window grows only while all windows, grown or not, fit).
    fn check_grown_windows(&self) {
        let configured = self.config.max_stream_buffer as u64;
        let grown: u64 = self
            .streams
            .values()
            .filter(|s| !s.read_closed)
            .filter_map(|s| s.upd_sent)
            .map(|(_, w)| u64::from(w))
            .filter(|&w| w > configured)
            .sum();
        assert!(
            grown <= self.config.max_receive_buffer as u64 / 2,
            "grown windows of {grown} in all"
        );
    }

    fn check_sent_frame(&mut self, h: &Header, payload: &[u8]) {
        let id = h.stream_id;
        if h.cmd == Cmd::Nop {
            assert_eq!(id, 0, "NOP on a stream");
            return;
        }
        let max_frame = self.config.max_frame_size;
        let v2 = self.v2();
        let s = self
            .streams
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{:?} for unknown stream {id}", h.cmd));
        if h.cmd == Cmd::Syn {
            assert!(
                s.local && !s.syn_sent,
                "SYN for {id} twice or for a peer stream"
            );
            s.syn_sent = true;
            return;
        }
        if s.local {
            assert!(s.syn_sent, "{:?} before SYN on {id}", h.cmd);
        }
        match h.cmd {
            Cmd::Psh => {
                let n = payload.len();
                assert!(n > 0 && n <= max_frame, "PSH of {n} bytes");
                assert!(!s.fin_sent, "PSH after FIN on {id}");
                assert!(!s.broken, "PSH on a broken window");
                assert!(n <= s.queued, "PSH of data never written");
                let st = start(id, s.transmitted);
                assert_eq!(
                    payload,
                    &pattern()[st..st + n],
                    "PSH data out of order on {id}"
                );
                if v2 {
                    let allowed = s.allowed().expect("window broken");
                    assert!(
                        n as u64 <= u64::from(allowed),
                        "PSH of {n} beyond window {allowed}"
                    );
                }
                s.transmitted += n as u64;
                s.queued -= n;
                self.total_queued -= n;
                s.sent = s.sent.wrapping_add(n as u32);
                self.stats.bytes_sent += n as u64;
            }
            Cmd::Fin => {
                assert!(!s.fin_sent, "second FIN on {id}");
                assert!(s.write_closed, "FIN without shutdown");
                assert_eq!(s.queued, 0, "FIN ahead of data");
                s.fin_sent = true;
                self.stats.fins_out += 1;
            }
            Cmd::Upd => {
                self.stats.upds_out += 1;
                assert!(v2, "UPD in v1");
                let (consumed, window) = decode_upd(payload.try_into().expect("8 bytes"));
                // CONSUMED: everything read when the UPD leaves, counted from the base (a
                // count that wrapped to 0 is sent too).
                assert_eq!(
                    consumed,
                    self.base.wrapping_add(s.total_read as u32),
                    "UPD of {id}: CONSUMED is not the count read ({})",
                    s.total_read
                );
                check_upd_window(&self.config, window);
                if consumed == 0 && s.total_read > 0 {
                    self.stats.upds_at_wrap += 1;
                }
                // The window only grows while the stream reads (released: back to the
                // configured one, and nothing is read any more).
                if !s.read_closed {
                    if let Some((_, last)) = s.upd_sent {
                        assert!(window >= last, "UPD of {id}: window {last} → {window}");
                    }
                    s.upd_sent = Some((s.total_read, window));
                }
            }
            Cmd::Syn | Cmd::Nop => unreachable!(),
        }
    }

    fn drain(&mut self, n: usize) {
        let all = self.tx.to_vec();
        {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let k = self.tx.io_slices(&mut slices);
            let mut joined = Vec::new();
            for s in &slices[..k] {
                joined.extend_from_slice(s);
            }
            assert!(all.starts_with(&joined), "io_slices out of order");
            assert!(
                k == MAX_IOVECS || joined.len() == all.len(),
                "io_slices lost bytes"
            );
        }
        assert!(all.starts_with(self.tx.chunk()), "chunk out of order");
        let n = n.min(self.tx.len());
        self.tx.advance(n);
        if n > 0 {
            self.conn.handle_transmitted();
        }
        assert_eq!(self.tx.to_vec(), &all[n..], "advance");
    }

    // ------------------------------------------------------------------------------------
    // Invariants.

    /// Invariants after a step. The O(streams) cross-checks run after every step while the
    /// table is small (16 streams), and every 32 steps (and when `full`) otherwise.
    fn check(&mut self, full: bool) {
        self.steps += 1;
        if self.conn.is_terminated() && !self.terminated {
            self.terminated = true;
            self.total_queued = 0;
            for s in self.streams.values_mut() {
                s.queued = 0;
                s.read_deadline = None;
                s.write_deadline = None;
            }
        }
        // Entries the connection removed: only streams without handles may go.
        let terminated = self.terminated;
        let gone: Vec<u32> = self
            .orphans
            .iter()
            .copied()
            .filter(|id| self.conn.stream_serial(StreamId::new(*id)).is_none())
            .collect();
        for id in gone {
            self.orphans.remove(&id);
            self.read_waiters.remove(&id);
            self.write_waiters.remove(&id);
            let s = self.streams.remove(&id).expect("orphans are in the table");
            assert_eq!(s.handles, 0);
            assert!(
                s.fin_sent || terminated,
                "stream {id} removed before its FIN"
            );
            assert!(s.unread.is_empty());
        }
        self.check_wakeups();
        let c = &self.conn;
        let cap = self.config.max_receive_buffer;
        assert!(
            c.buffered_bytes() <= cap + u16::MAX as usize,
            "budget overdrawn"
        );
        assert!(
            c.queued_send_bytes() <= SESSION_SEND_BUFFER.min(cap),
            "send cap"
        );
        assert_eq!(c.buffered_bytes(), self.total_unread, "budget accounting");
        assert_eq!(c.queued_send_bytes(), self.total_queued, "send accounting");
        assert_eq!(c.table_len(), self.streams.len(), "stream table");
        assert_eq!(c.pending_accepts(), self.accept_q.len(), "accept queue");
        assert_eq!(c.version().map(u8::from), self.detected, "version");
        if self.detected.is_none() {
            assert!(
                !c.has_pending_transmit(),
                "something to send before the version is known"
            );
        }
        if self.terminated {
            assert!(c.is_closed());
            assert!(!c.wants_read());
            assert!(!c.has_pending_transmit());
            assert!(!c.wants_shutdown());
            assert_eq!(c.poll_timeout(), None);
        }
        if !(full || self.streams.len() <= 16 || self.steps.is_multiple_of(32)) {
            return;
        }
        for (id, s) in &self.streams {
            let serial = c.stream_serial(StreamId::new(*id));
            assert_eq!(serial, Some(s.serial), "stream {id} removed or replaced");
        }
        let unread: usize = self.streams.values().map(|s| s.unread.len()).sum();
        assert_eq!(unread, self.total_unread);
        let queued: usize = self.streams.values().map(|s| s.queued).sum();
        assert_eq!(queued, self.total_queued);
        let live = self.streams.values().filter(|s| s.handles != 0).count();
        assert_eq!(c.live_handles(), live, "live handles");
        let open = if c.is_closed() {
            0
        } else {
            self.streams
                .values()
                .filter(|s| {
                    s.handles != 0 && !(s.fin_sent && s.fin_received && s.unread.is_empty())
                })
                .count()
        };
        assert_eq!(c.num_streams(), open, "num_streams");
    }
}
