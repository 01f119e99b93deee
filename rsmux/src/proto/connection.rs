//! The session state machine: every smux rule, no I/O, no clock reads.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    block_pool::BlockPool,
    budget::Budget,
    byte_queue::PartsStash,
    deadlines::{Deadlines, Dir},
    ids::{IdAllocator, Role, StreamId},
    keepalive::Keepalive,
    recv_buffer::{RecvBuffer, Slices, SHARE_MIN},
    stream::{RecvState, SendState, StreamState, BOTH_HANDLES, READ_HANDLE, WRITE_HANDLE},
    streams::StreamTable,
    tx::{Through, TxBuf, COPY_MAX, THROUGH_FRAMES},
    window::{scaled, MAX_GROWTH},
};
use crate::{
    config::{Config, ConfigError, ConfigField, ConfigProblem, Version},
    error::Error,
    frame::{decode_upd, encode_upd, Cmd, Header, HEADER_LEN, UPD_LEN},
};

/// Bytes one stream may have accepted from the application and not yet framed.
pub const STREAM_SEND_BUFFER: usize = 256 * 1024;

/// Most refusals (see [`Config::max_streams`]) whose FIN waits to be sent; SYNs refused
/// beyond that get no FIN, so a flood of SYNs costs bounded memory.
const REFUSED_FIN_MAX: usize = 1024;

/// A write larger than this waits until at least this much fits (see [`min_write_room`]).
pub const MIN_WRITE_ROOM: usize = 4096;

/// Most bytes all streams together may have accepted and not yet framed. The cap in force is
/// the smaller of this and `max_receive_buffer`, so `smuxbuf` bounds buffering both ways.
pub const SESSION_SEND_BUFFER: usize = 4 * 1024 * 1024;

/// Longest a graceful [`Connection::close`] waits for queued data to leave (Go's
/// `openCloseTimeout`).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Something the driver must react to, from [`Connection::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A reader of this stream may make progress (data, FIN, error or deadline).
    Readable(StreamId),
    /// A writer, flusher or shutdown of this stream may make progress.
    Writable(StreamId),
    /// A peer-opened stream waits in the accept queue.
    Incoming,
    /// The session closed or died: every waiter should look again.
    Closed,
}

/// Result of [`Connection::read`] (`T = usize`, bytes copied) and
/// [`Connection::read_chunk`] (`T = Bytes`, the bytes themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome<T> {
    /// Data: how many bytes were copied, or the next bytes of the stream.
    Data(T),
    /// The peer finished the stream and everything was read.
    Eof,
    /// Nothing yet: wait for [`Event::Readable`].
    Blocked,
}

/// Result of [`Connection::write`] and of the other send-side calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Done; for `write`, this many bytes were accepted.
    Ready(usize),
    /// No room or not done yet: wait for [`Event::Writable`].
    Blocked,
}

/// The running totals behind [`Stats`] (the rest of it is read from the session's state).
#[derive(Debug, Default)]
struct Counts {
    frames_in: u64,
    bytes_in: u64,
    frames_out: u64,
    bytes_out: u64,
    streams_opened: u64,
    streams_accepted: u64,
    streams_refused: u64,
    streams_closed: u64,
    keepalive_timeouts: u64,
}

/// Counters of one session, for operators to export (see [`Connection::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames received (complete frames, every command).
    pub frames_in: u64,
    /// Bytes received in those frames, headers included.
    pub bytes_in: u64,
    /// Frames handed to the transport.
    pub frames_out: u64,
    /// Bytes of those frames, headers included.
    pub bytes_out: u64,
    /// Streams this side opened.
    pub streams_opened: u64,
    /// Streams the peer opened that the application accepted.
    pub streams_accepted: u64,
    /// Streams the peer opened beyond [`Config::max_streams`] or while draining, refused at
    /// once.
    pub streams_refused: u64,
    /// Streams that ended and left the table (both sides done, or the session ended).
    pub streams_closed: u64,
    /// Keepalive timeouts (0 or 1: one ends the session); summed over sessions, how many
    /// peers went silent.
    pub keepalive_timeouts: u64,
    /// Streams in the table now (open, or closing with data still to send).
    pub streams: usize,
    /// Received bytes the application has not read yet, all streams together.
    pub buffered_receive_bytes: usize,
    /// Bytes written by the application and not framed yet, all streams together.
    pub queued_send_bytes: usize,
    /// Streams opened by the peer and not accepted yet.
    pub pending_accepts: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Closed by the application; queued frames still leave until `deadline`.
    Closing {
        deadline: Instant,
    },
    /// Nothing more is sent or received.
    Closed,
}

/// One smux session as a pure state machine (the sans-IO core).
///
/// Calls come in four kinds, as in quinn-proto:
/// - inputs: [`handle_input`](Self::handle_input) (bytes from the peer),
///   [`handle_timeout`](Self::handle_timeout), [`handle_eof`](Self::handle_eof),
///   [`handle_io_error`](Self::handle_io_error), [`handle_shutdown`](Self::handle_shutdown);
/// - application commands: [`open`](Self::open), [`accept`](Self::accept),
///   [`read`](Self::read), [`write`](Self::write), [`shutdown_write`](Self::shutdown_write),
///   [`release`](Self::release), [`close`](Self::close), deadline setters;
/// - outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout), [`wants_read`](Self::wants_read),
///   [`take_wake_driver`](Self::take_wake_driver);
/// - getters.
///
/// After any input or command, a driver drains `poll_event`, moves frames out with
/// `poll_transmit`, reads the socket while `wants_read`, and arms a timer at `poll_timeout`.
/// Every `now` passed in must not go backwards.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    /// The streams, and the queues they wait in (accept, send ring, blocked writers).
    streams: StreamTable,
    ids: IdAllocator,
    budget: Budget,
    /// Streams holding slices of read chunks (bounds the memory they pin).
    slices: Slices,
    /// Blocks large writes are copied into, reused once their frames are written.
    blocks: BlockPool,
    /// Emptied stream queue parts, for reuse.
    stash: PartsStash,
    /// Which end this is.
    role: Role,
    /// Running totals for [`stats`](Self::stats).
    counts: Counts,
    nop_pending: bool,
    keepalive: Keepalive,
    deadlines: Deadlines,
    events: VecDeque<Event>,
    state: State,
    /// Why the session ended, once it has (first cause wins).
    error: Option<Error>,
    /// The header at the front of the receive buffer was already counted by keepalive.
    partial_frame_seen: bool,
    wake_driver: bool,
    /// v2: the windows this side advertises, summed over streams that still read. Auto-tuning
    /// grows a window only while this stays within half of `max_receive_buffer`.
    advertised_windows: usize,
    /// Where new streams' v2 byte counters start: 0 on the wire; tests move it near the wrap.
    counter_base: u32,
    /// The protocol version in use: the configured one, or the client's once detected.
    version: Version,
    /// `Config::detect_version` and the client's first frame has not arrived yet: nothing
    /// is sent until it has.
    detecting_version: bool,
    /// [`drain`](Connection::drain) was called: no new streams either way.
    draining: bool,
}

impl Connection {
    /// A new session; `now` starts the keepalive timers.
    pub fn new(config: Config, role: Role, now: Instant) -> Result<Connection, ConfigError> {
        config.validate()?;
        if config.detect_version && role == Role::Client {
            return Err(ConfigError {
                field: ConfigField::DetectVersion,
                problem: ConfigProblem::ServerOnly,
            });
        }
        Ok(Connection {
            version: config.version,
            detecting_version: config.detect_version,
            budget: Budget::new(config.max_receive_buffer),
            slices: Slices::default(),
            blocks: BlockPool::default(),
            stash: PartsStash::default(),
            role,
            counts: Counts::default(),
            keepalive: Keepalive::new(&config, now),
            ids: IdAllocator::new(role),
            config,
            streams: StreamTable::default(),
            nop_pending: false,
            deadlines: Deadlines::default(),
            events: VecDeque::new(),
            state: State::Open,
            error: None,
            partial_frame_seen: false,
            wake_driver: false,
            advertised_windows: 0,
            counter_base: 0,
            draining: false,
        })
    }

    // ----------------------------------------------------------------------------------
    // Getters.

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The protocol version in use; with [`Config::detect_version`], `None` until the
    /// client's first frame has arrived.
    pub fn version(&self) -> Option<Version> {
        (!self.detecting_version).then_some(self.version)
    }

    fn v2(&self) -> bool {
        self.version == Version::V2
    }

    /// True once the session was closed locally or died.
    pub fn is_closed(&self) -> bool {
        self.error.is_some()
    }

    /// Why the session ended, if it has.
    pub fn close_reason(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// True when nothing more will ever be sent or received.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Closed
    }

    /// Streams open for the application: not closed locally and not finished in both
    /// directions with everything read. 0 once the session is closed, as in Go.
    pub fn num_streams(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        self.streams.open_count()
    }

    /// Received bytes of stream `id` not yet read.
    pub fn readable_bytes(&self, id: StreamId) -> usize {
        self.streams.map.get(&id).map_or(0, |s| s.recv.len())
    }

    /// Identifies the stream now registered under `id` among all streams that ever had it.
    pub fn stream_serial(&self, id: StreamId) -> Option<u64> {
        self.streams.map.get(&id).map(|s| s.serial)
    }

    /// Streams with a live application handle or waiting to be accepted.
    pub fn live_handles(&self) -> usize {
        self.streams.live_handles
    }

    /// Entries in the stream table, including closed streams whose FIN is still queued.
    pub fn table_len(&self) -> usize {
        self.streams.len()
    }

    /// Received bytes not yet read by the application, all streams together.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used()
    }

    /// Counters of this session: frames and bytes in and out, streams opened and accepted,
    /// and what is buffered now.
    pub fn stats(&self) -> Stats {
        let c = &self.counts;
        Stats {
            frames_in: c.frames_in,
            bytes_in: c.bytes_in,
            frames_out: c.frames_out,
            bytes_out: c.bytes_out,
            streams_opened: c.streams_opened,
            streams_accepted: c.streams_accepted,
            streams_refused: c.streams_refused,
            streams_closed: c.streams_closed,
            keepalive_timeouts: c.keepalive_timeouts,
            streams: self.streams.len(),
            buffered_receive_bytes: self.budget.used(),
            queued_send_bytes: self.streams.send_queued,
            pending_accepts: self.streams.accept.len(),
        }
    }

    /// Which end of the session this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Lets go of buffers kept for reuse (write blocks). The driver calls this once the
    /// session has been quiet for a while, so an idle session holds no spare memory.
    pub fn release_spare_buffers(&mut self) {
        self.blocks.release();
        self.stash.release();
    }

    /// Whether buffers are kept for reuse (see
    /// [`release_spare_buffers`](Self::release_spare_buffers)).
    pub fn holds_spare_buffers(&self) -> bool {
        !self.blocks.is_empty() || !self.stash.is_empty()
    }

    /// Bytes accepted from the application and not yet framed, all streams together.
    pub fn queued_send_bytes(&self) -> usize {
        self.streams.send_queued
    }

    /// Peer-opened streams waiting for [`accept`](Self::accept).
    pub fn pending_accepts(&self) -> usize {
        self.streams.accept.len()
    }

    // ----------------------------------------------------------------------------------
    // Outputs.

    /// Whether the driver should read the socket: false while the receive budget is
    /// exhausted, the accept backlog is full, or the session is over.
    pub fn wants_read(&self) -> bool {
        self.state != State::Closed
            && !self.budget.exhausted()
            && self.streams.accept.len() < self.config.accept_backlog
    }

    /// True once after something happened that the driver must act on (frames to send,
    /// reading resumed, a timer changed).
    pub fn take_wake_driver(&mut self) -> bool {
        std::mem::take(&mut self.wake_driver)
    }

    /// The next event for the driver.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = match self.state {
            State::Closed => return None,
            State::Closing { deadline } => Some(deadline),
            State::Open => None,
        };
        [
            self.keepalive.poll_timeout(),
            self.deadlines.next(),
            closing,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True when frames wait to be moved out by [`poll_transmit`](Self::poll_transmit), or
    /// accepted data waits for window.
    pub fn has_pending_transmit(&self) -> bool {
        self.state != State::Closed
            && !self.detecting_version
            && (self.nop_pending
                || !self.streams.ring.is_empty()
                || self.streams.send_queued > 0
                || !self.streams.refused.is_empty())
    }

    /// After a graceful [`close`](Self::close): true once everything queued was framed, so
    /// the driver may flush its transmit buffer and shut the connection down.
    pub fn wants_shutdown(&self) -> bool {
        matches!(self.state, State::Closing { .. }) && !self.has_pending_transmit()
    }

    /// Moves frames into `tx` until it holds at least `max_bytes`, one frame per stream per
    /// round-robin turn: a stream's SYN and UPD go ahead of its data, its FIN behind it.
    pub fn poll_transmit(&mut self, tx: &mut TxBuf, max_bytes: usize) {
        if self.state == State::Closed || self.detecting_version {
            return;
        }
        let (bytes_before, frames_before) = (tx.len(), tx.frames());
        self.fill_transmit(tx, max_bytes);
        self.counts.bytes_out += (tx.len() - bytes_before) as u64;
        self.counts.frames_out += tx.frames() - frames_before;
    }

    fn fill_transmit(&mut self, tx: &mut TxBuf, max_bytes: usize) {
        let version = self.version.as_u8();
        let v2 = self.v2();
        if std::mem::take(&mut self.nop_pending) {
            tx.push(Header::new(version, Cmd::Nop, 0, 0), Bytes::new());
        }
        while tx.len() < max_bytes {
            let Some(id) = self.streams.refused.pop_front() else {
                break;
            };
            tx.push(Header::new(version, Cmd::Fin, 0, id.get()), Bytes::new());
        }
        while tx.len() < max_bytes {
            let Some(id) = self.streams.ring.pop_front() else {
                break;
            };
            let Some(s) = self.streams.map.get_mut(&id) else {
                continue;
            };
            s.in_ring = false;
            let mut progress = false;
            if std::mem::take(&mut s.syn_pending) {
                tx.push(Header::new(version, Cmd::Syn, 0, id.get()), Bytes::new());
            } else if let Some(consumed) = s.recv_window.take_upd() {
                let window = s
                    .recv_window
                    .advertised(self.config.max_stream_buffer as u32);
                let body = encode_upd(consumed, window);
                tx.push_small(
                    Header::new(version, Cmd::Upd, UPD_LEN as u16, id.get()),
                    &body,
                );
            } else if !s.send.is_empty() && window(v2, s, id) > 0 {
                let max = self.config.max_frame_size.min(window(v2, s, id));
                // One piece at most (an idle stream's queue lets go of its memory).
                let payload = s
                    .send
                    .take_chunk(max, &mut self.blocks, &mut self.stash)
                    .expect("not empty");
                let n = payload.len();
                s.send_window.on_sent(n as u32);
                self.streams.send_queued -= n;
                tx.push(Header::new(version, Cmd::Psh, n as u16, id.get()), payload);
                progress = true;
            } else if s.fin_due() {
                tracing::trace!(stream = %id, "FIN sent");
                s.send_state = SendState::FinSent;
                tx.push(Header::new(version, Cmd::Fin, 0, id.get()), Bytes::new());
                progress = true;
            }
            if progress && std::mem::take(&mut s.write_waiting) {
                self.events.push_back(Event::Writable(id));
            }
            if s.wants_transmit(window(v2, s, id) > 0) {
                self.streams.enter_ring(id);
            } else {
                self.remove_if_done(id);
            }
        }
        self.wake_session_blocked();
    }

    /// Wakes every writer waiting for session-wide send room, oldest first, once a quarter of
    /// the cap is free. (Waking only as many as the room could take lets streams that already
    /// have data in flight, woken by their own progress, take all the room and starve the
    /// waiting ones; the hostile-echo test caught that.)
    fn wake_session_blocked(&mut self) {
        let cap = self.send_cap();
        let free = cap.saturating_sub(self.streams.send_queued);
        if self.streams.blocked_writers.is_empty() || free < session_wake_room(cap) {
            return;
        }
        while let Some(id) = self.streams.blocked_writers.pop_front() {
            if let Some(s) = self.streams.map.get_mut(&id) {
                s.write_waiting = false;
                self.events.push_back(Event::Writable(id));
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Inputs.

    /// Processes every complete frame in `rb` while [`wants_read`](Self::wants_read);
    /// an incomplete frame stays in the buffer for the next call. A malformed frame closes
    /// the session with [`Error::Protocol`] (SPEC §1.6).
    pub fn handle_input(&mut self, rb: &mut RecvBuffer) {
        if let Some(old) = self.slices.due(rb, self.config.max_receive_buffer) {
            self.copy_out_old_slices(old);
        }
        while self.wants_read() {
            let Some(raw) = rb.header() else {
                return;
            };
            if self.detecting_version {
                self.detect_version(raw[0]);
            }
            let h = match Header::decode(raw, self.version.as_u8()) {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(error = %e, "peer broke the protocol");
                    self.die(Error::Protocol(e));
                    return;
                }
            };
            // A header counts as activity once, however often an incomplete frame is looked
            // at again (a peer must not keep a session alive with half a frame).
            if !std::mem::replace(&mut self.partial_frame_seen, true) {
                self.keepalive.on_frame();
            }
            let len = h.len as usize;
            if rb.len() < HEADER_LEN + len {
                return;
            }
            self.partial_frame_seen = false;
            self.counts.frames_in += 1;
            self.counts.bytes_in += (HEADER_LEN + len) as u64;
            rb.skip(HEADER_LEN);
            match h.cmd {
                Cmd::Nop => {}
                Cmd::Syn => self.on_syn(StreamId::new(h.stream_id)),
                Cmd::Fin => self.on_fin(StreamId::new(h.stream_id)),
                Cmd::Psh => self.on_psh(StreamId::new(h.stream_id), len, rb),
                Cmd::Upd => {
                    let body: &[u8; UPD_LEN] = rb.peek(UPD_LEN).try_into().expect("8 bytes");
                    let (consumed, window) = decode_upd(body);
                    rb.skip(UPD_LEN);
                    self.on_upd(StreamId::new(h.stream_id), consumed, window);
                }
            }
        }
    }

    /// `Config::detect_version`: adopts the version byte of the client's first frame if it
    /// is 1 or 2 (another value fails to decode as a mismatch with the configured version).
    fn detect_version(&mut self, byte: u8) {
        if let Ok(version) = Version::try_from(byte) {
            tracing::debug!(%version, "version taken from the client's first frame");
            self.version = version;
            self.detecting_version = false;
            if self.has_pending_transmit() {
                self.wake_driver = true;
            }
        }
    }

    fn on_syn(&mut self, id: StreamId) {
        // A SYN for a live id is ignored, as in Go (SPEC §1.6).
        if self.streams.map.contains_key(&id) {
            return;
        }
        let max = self.config.max_streams;
        if self.draining || (max > 0 && self.streams.len() >= max) {
            // Refused: never registered, so its data is dropped uncharged; a FIN says so
            // (unless a flood of refusals is already waiting: then the SYN is just ignored).
            let reason = if self.draining {
                "draining"
            } else {
                "max_streams"
            };
            tracing::debug!(stream = %id, reason, "stream refused");
            self.counts.streams_refused += 1;
            if self.streams.refused.len() < REFUSED_FIN_MAX {
                self.streams.refused.push_back(id);
                self.wake_driver = true;
            }
            return;
        }
        self.streams.insert(id, self.counter_base);
        self.count_window(id);
        tracing::trace!(stream = %id, "stream opened by the peer");
        self.streams.accept.push_back(id);
        self.events.push_back(Event::Incoming);
    }

    fn on_fin(&mut self, id: StreamId) {
        if let Some(s) = self.streams.map.get_mut(&id) {
            tracing::trace!(stream = %id, "FIN received");
            s.recv_state = RecvState::Finished;
            if std::mem::take(&mut s.read_waiting) {
                self.events.push_back(Event::Readable(id));
            }
        }
    }

    fn on_psh(&mut self, id: StreamId, len: usize, rb: &mut RecvBuffer) {
        // While closing, only frames that let queued data leave (UPD) still matter.
        let closing = matches!(self.state, State::Closing { .. });
        match self.streams.map.get_mut(&id) {
            Some(s) if s.reading() && len > 0 && !closing => {
                // Large payloads stay slices of the read chunk, small ones are packed (see
                // `recv_buffer` for how the memory slices pin is bounded); a small one right
                // after a large one is sliced too (packing it would allocate a tail).
                if len >= SHARE_MIN || s.recv.ends_with_shared(SHARE_MIN) {
                    let mark = rb.chunks_started();
                    if s.recv.push_shared(rb.split(len), mark, &mut self.stash) {
                        self.slices.note(id);
                    }
                } else {
                    s.recv.push_copy(rb.peek(len), &mut self.stash);
                    rb.skip(len);
                }
                self.budget.charge(len);
                if std::mem::take(&mut s.read_waiting) {
                    self.events.push_back(Event::Readable(id));
                }
            }
            // Unknown or closed stream, or closing session: dropped, no budget charged.
            _ => rb.skip(len),
        }
    }

    /// Copies slices that arrived before `mark` out of the read chunks (see `recv_buffer`).
    fn copy_out_old_slices(&mut self, mark: u64) {
        let mut listed = self.slices.take();
        listed.retain(|id| {
            let Some(s) = self.streams.map.get_mut(id) else {
                return false;
            };
            // Unlisting first skips repeated entries; a queue keeping newer slices stays.
            s.recv.unlist() && s.recv.compact_older_than(mark)
        });
        for id in listed {
            self.streams.map.get_mut(&id).expect("kept").recv.relist();
            self.slices.note(id);
        }
    }

    fn on_upd(&mut self, id: StreamId, consumed: u32, window: u32) {
        let Some(s) = self.streams.map.get_mut(&id) else {
            return;
        };
        s.send_window.on_update(consumed, window);
        if let Err(e) = s.send_window.available(id.get()) {
            // The peer claims to have read bytes never sent: it is broken, and nothing it
            // says about this session can be trusted (Go fails only that stream's writes).
            tracing::debug!(error = %e, "impossible window update");
            self.die(Error::Protocol(e));
            return;
        }
        if std::mem::take(&mut s.write_waiting) {
            self.events.push_back(Event::Writable(id));
        }
        self.schedule(id);
    }

    /// The connection reached end-of-file.
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Closing { .. } => self.terminate(),
            // A client that spoke and heard nothing back before the server hung up: what a
            // server speaking another smux version does (it closes on the first frame).
            _ if self.role == Role::Client
                && self.counts.frames_in == 0
                && self.counts.frames_out > 0 =>
            {
                self.die(Error::ClosedBeforeFirstFrame)
            }
            _ => self.die(Error::ConnectionClosed),
        }
    }

    /// Reading or writing the connection failed.
    pub fn handle_io_error(&mut self, e: std::io::Error) {
        self.die(Error::from(e));
    }

    /// The connection accepted bytes from [`poll_transmit`](Self::poll_transmit) (a socket
    /// write made progress). Keepalive uses it to tell a slow local reader from a dead peer.
    pub fn handle_transmitted(&mut self) {
        self.keepalive.on_transmit();
    }

    /// The driver shut the connection down after [`wants_shutdown`](Self::wants_shutdown).
    pub fn handle_shutdown(&mut self) {
        self.terminate();
    }

    /// Fires keepalive, deadline and close timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let tick = self.keepalive.handle_timeout(now, self.budget.exhausted());
        if tick.timed_out {
            tracing::debug!("keepalive timeout");
            self.counts.keepalive_timeouts += 1;
            self.die(Error::KeepaliveTimeout(self.config.keep_alive_timeout));
            return;
        }
        if tick.send_nop {
            self.nop_pending = true;
            self.wake_driver = true;
        }
        while let Some((id, dir)) = self.deadlines.pop_expired(now) {
            self.events.push_back(match dir {
                Dir::Read => Event::Readable(id),
                Dir::Write => Event::Writable(id),
            });
        }
        if let State::Closing { deadline } = self.state {
            if now >= deadline {
                tracing::debug!("close timed out with data still queued");
                self.terminate();
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Application commands.

    /// Opens a stream: registers it, then queues its SYN (so a reply can never arrive for an
    /// unknown id, an upstream race fixed, SPEC §2). Ids the peer already used are skipped.
    pub fn open(&mut self) -> Result<StreamId, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.draining {
            return Err(Error::Draining);
        }
        let id = loop {
            let id = self.ids.next().ok_or(Error::GoAway)?;
            if !self.streams.map.contains_key(&id) {
                break id;
            }
        };
        self.streams.insert(id, self.counter_base).syn_pending = true;
        self.count_window(id);
        self.counts.streams_opened += 1;
        tracing::trace!(stream = %id, "stream opened");
        self.schedule(id);
        Ok(id)
    }

    /// The next peer-opened stream, `Ok(None)` if none waits yet (then wait for
    /// [`Event::Incoming`]). After the session ended, streams already queued are still handed
    /// out, then the reason is returned.
    pub fn accept(&mut self) -> Result<Option<StreamId>, Error> {
        if let Some(id) = self.streams.accept.pop_front() {
            tracing::trace!(stream = %id, "stream accepted");
            self.counts.streams_accepted += 1;
            if self.streams.accept.len() + 1 == self.config.accept_backlog {
                self.wake_driver = true; // reading may resume
            }
            return Ok(Some(id));
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None if self.draining => Err(Error::Draining),
            None => Ok(None),
        }
    }

    /// Copies received bytes of stream `id` into `buf`. Buffered data is returned even after
    /// a FIN, an error or a passed deadline; then `Eof` after the peer's FIN, the session's
    /// error if it ended, [`Error::Timeout`] past the read deadline.
    pub fn read(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
        now: Instant,
    ) -> Result<ReadOutcome<usize>, Error> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Data(0));
        }
        let s = self.stream_mut(id)?;
        if s.recv.is_empty() {
            return Ok(match self.wait_readable(id, now)? {
                Some(()) => ReadOutcome::Blocked,
                None => ReadOutcome::Eof,
            });
        }
        let s = self.streams.map.get_mut(&id).expect("checked");
        let n = s.recv.read_into(buf, &mut self.stash);
        self.consumed(id, n);
        Ok(ReadOutcome::Data(n))
    }

    /// Like [`read`](Self::read), but hands out up to `max` (at least 1) bytes of the next
    /// received payload without copying.
    pub fn read_chunk(
        &mut self,
        id: StreamId,
        max: usize,
        now: Instant,
    ) -> Result<ReadOutcome<Bytes>, Error> {
        self.stream_mut(id)?;
        let s = self.streams.map.get_mut(&id).expect("checked");
        let Some(chunk) = s.recv.read_chunk(max, &mut self.stash) else {
            return Ok(match self.wait_readable(id, now)? {
                Some(()) => ReadOutcome::Blocked,
                None => ReadOutcome::Eof,
            });
        };
        self.consumed(id, chunk.len());
        Ok(ReadOutcome::Data(chunk))
    }

    /// With nothing buffered: `Ok(None)` for EOF, `Ok(Some(()))` to wait, or the error.
    fn wait_readable(&mut self, id: StreamId, now: Instant) -> Result<Option<()>, Error> {
        let s = self.streams.map.get_mut(&id).expect("checked by caller");
        if s.peer_finished() {
            return Ok(None);
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.deadlines.passed(id, Dir::Read, now) {
            return Err(Error::Timeout);
        }
        s.read_waiting = true;
        s.recv_window.on_starved();
        Ok(Some(()))
    }

    /// v2 auto-tuning: doubles the window stream `id` advertises, if the windows of all
    /// streams together stay within half of `max_receive_buffer`. Honest peers then never
    /// send more than the receive budget holds (beyond their configured windows, as in Go):
    /// streams whose readers stall cannot exhaust it and hold up the others, and the other
    /// half is left for the configured windows of streams opened later.
    fn grow_window(&mut self, id: StreamId) {
        let configured = self.config.max_stream_buffer as u32;
        let allowance = self.config.max_receive_buffer / 2;
        let s = self.streams.map.get_mut(&id).expect("checked by caller");
        let growth = s.recv_window.growth();
        if growth >= MAX_GROWTH {
            return;
        }
        let old = scaled(configured, growth) as usize;
        let new = scaled(configured, growth + 1) as usize;
        // (This also keeps every window under `MAX_BUFFER`: the sum includes `old`.)
        if self.advertised_windows + (new - old) > allowance {
            return;
        }
        s.recv_window.set_growth(growth + 1);
        self.advertised_windows += new - old;
    }

    /// Counts the window of new stream `id` (in both versions: a detected version may
    /// change after streams exist).
    fn count_window(&mut self, id: StreamId) {
        let s = &self.streams.map[&id];
        self.advertised_windows +=
            s.recv_window
                .advertised(self.config.max_stream_buffer as u32) as usize;
    }

    /// Accounting after the application took `n > 0` bytes of stream `id`: budget back, and
    /// in v2 an UPD when one is due (SPEC §5).
    fn consumed(&mut self, id: StreamId, n: usize) {
        let v2 = self.v2();
        let s = self.streams.map.get_mut(&id).expect("checked by caller");
        if v2 {
            let window = s
                .recv_window
                .advertised(self.config.max_stream_buffer as u32);
            if let Some(upd) = s.recv_window.on_read(n as u32, window) {
                if upd.reader_kept_up && self.config.stream_window_auto_tune {
                    self.grow_window(id);
                }
                self.schedule(id);
            }
        }
        if self.budget.release(n) || self.draining {
            // (Draining: the stream may have just finished, the driver looks.)
            self.wake_driver = true;
        }
    }

    /// Accepts up to all of `data` into stream `id`'s send buffer. Fails after the write side
    /// was shut, after the session ended, and, deterministically, once the write deadline has
    /// passed.
    pub fn write(&mut self, id: StreamId, data: &[u8], now: Instant) -> Result<Progress, Error> {
        let progress = self.write_room(id, data.len(), now)?;
        if let Progress::Ready(n) = progress {
            if n > 0 {
                let s = self.streams.map.get_mut(&id).expect("checked");
                s.send
                    .push_write(&data[..n], data.len(), &mut self.blocks, &mut self.stash);
                self.queued(id, n);
            }
        }
        Ok(progress)
    }

    /// Like [`write`](Self::write), but takes the bytes without copying them: as much of
    /// `data` as fits is split off its front and queued as it is (pieces below [`COPY_MAX`]
    /// bytes are copied, as small writes are). `Ready(n)` says how many bytes were taken.
    pub fn write_chunk(
        &mut self,
        id: StreamId,
        data: &mut Bytes,
        now: Instant,
    ) -> Result<Progress, Error> {
        let mut progress = self.write_room(id, data.len(), now)?;
        if let Progress::Ready(mut n) = progress {
            // Leave no remainder too small to share: it would be copied on its own.
            let rest = data.len() - n;
            if rest > 0 && rest < COPY_MAX && n > COPY_MAX {
                n -= COPY_MAX - rest;
                progress = Progress::Ready(n);
            }
            if n > 0 {
                let s = self.streams.map.get_mut(&id).expect("checked");
                let piece = data.split_to(n);
                if n < COPY_MAX {
                    s.send
                        .push_write(&piece, n, &mut self.blocks, &mut self.stash);
                } else {
                    s.send.push_shared(piece, 0, &mut self.stash);
                }
                self.queued(id, n);
            }
        }
        Ok(progress)
    }

    /// For a driver that can hand a write to the transport at once: when nothing else waits
    /// to be sent, frames up to `len` bytes of a write on stream `id` (as much as the peer's
    /// window and eight frames take) without queueing them, and returns their
    /// headers. The driver must write the frames, or queue whatever the transport did not take,
    /// before any later [`poll_transmit`](Self::poll_transmit) output. `Ok(None)`: use
    /// [`write`](Self::write). Errors as `write`.
    pub fn write_through(
        &mut self,
        id: StreamId,
        len: usize,
        now: Instant,
    ) -> Result<Option<Through>, Error> {
        self.check_writable(id, now)?;
        if self.state != State::Open || self.detecting_version || self.has_pending_transmit() {
            return Ok(None);
        }
        let (v2, version) = (self.v2(), self.version.as_u8());
        let frame_len = self.config.max_frame_size;
        let s = self.streams.map.get_mut(&id).expect("checked");
        let n = len.min(window(v2, s, id)).min(THROUGH_FRAMES * frame_len);
        if n == 0 {
            return Ok(None);
        }
        let mut through = Through::new(frame_len);
        let mut left = n;
        while left > 0 {
            let f = left.min(frame_len);
            through.push(Header::new(version, Cmd::Psh, f as u16, id.get()));
            left -= f;
        }
        s.send_window.on_sent(n as u32);
        self.counts.frames_out += n.div_ceil(frame_len) as u64;
        self.counts.bytes_out += through.wire_len() as u64;
        Ok(Some(through))
    }

    /// How much of a write of `len` bytes stream `id` takes now: `Ready(0)` for an empty
    /// write, `Blocked` (the writer registered to wait) when there is no room.
    fn write_room(&mut self, id: StreamId, len: usize, now: Instant) -> Result<Progress, Error> {
        self.check_writable(id, now)?;
        if len == 0 {
            return Ok(Progress::Ready(0));
        }
        let send_cap = self.send_cap();
        let session_room = send_cap.saturating_sub(self.streams.send_queued);
        let v2 = self.v2();
        let s = self.streams.map.get_mut(&id).expect("checked");
        // In v2, accept no more than the peer's window can take: data waiting for a window
        // would otherwise fill the session-wide cap and block every other stream.
        let window_room = window(v2, s, id).saturating_sub(s.send.len());
        let room = STREAM_SEND_BUFFER
            .saturating_sub(s.send.len())
            .min(session_room)
            .min(window_room);
        // No sliver of a larger write: a few bytes of room would make a tiny frame (a header,
        // a wake-up and an allocation each). Wait until a fair share fits, as TCP avoids silly
        // windows; the share never exceeds half of what can become free.
        let peer_window = if v2 {
            s.send_window.peer_window() as usize
        } else {
            usize::MAX
        };
        let least = min_write_room(len, send_cap, peer_window);
        if room < least {
            s.write_waiting = true;
            if session_room < least {
                self.streams.block_writer(id);
            }
            return Ok(Progress::Blocked);
        }
        Ok(Progress::Ready(room.min(len)))
    }

    /// `n` bytes were queued on stream `id`.
    fn queued(&mut self, id: StreamId, n: usize) {
        self.streams.send_queued += n;
        self.schedule(id);
    }

    /// `Ready(0)` once everything written to stream `id` has been framed for the socket; the
    /// session's error once it has ended.
    pub fn flush(&mut self, id: StreamId, now: Instant) -> Result<Progress, Error> {
        if let Some(e) = &self.error {
            // Data not framed by now is lost, and framed data may not have left either.
            return Err(e.clone());
        }
        let s = self.stream_mut(id)?;
        if s.send.is_empty() {
            return Ok(Progress::Ready(0));
        }
        let deadline_passed = self.deadlines.passed(id, Dir::Write, now);
        if deadline_passed {
            return Err(Error::Timeout);
        }
        self.streams
            .map
            .get_mut(&id)
            .expect("checked")
            .write_waiting = true;
        Ok(Progress::Blocked)
    }

    /// Half-close: queues a FIN behind the stream's data; `Ready(0)` once it is framed.
    /// Reading goes on. Calling it again is harmless.
    pub fn shutdown_write(&mut self, id: StreamId, now: Instant) -> Result<Progress, Error> {
        let s = self.stream_mut(id)?;
        if s.fin_sent() {
            return Ok(Progress::Ready(0));
        }
        if s.send_state == SendState::Open {
            s.send_state = SendState::Closing;
            self.schedule(id);
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.deadlines.passed(id, Dir::Write, now) {
            return Err(Error::Timeout);
        }
        self.streams
            .map
            .get_mut(&id)
            .expect("checked")
            .write_waiting = true;
        Ok(Progress::Blocked)
    }

    /// The application dropped handles `which` (`READ_HANDLE`, `WRITE_HANDLE`) of stream
    /// `id`. Dropping the read side discards unread data (returning its budget); dropping the
    /// write side queues a FIN behind the data already written. The entry is removed once no
    /// handle is left and the FIN is framed.
    pub fn release(&mut self, id: StreamId, which: u8) {
        let Some(s) = self.streams.map.get_mut(&id) else {
            return;
        };
        let which = which & s.handles;
        if which & READ_HANDLE != 0 {
            // The stream reads no more: its window leaves the sum auto-tuning keeps.
            let configured = self.config.max_stream_buffer as u32;
            self.advertised_windows -= s.recv_window.advertised(configured) as usize;
            s.recv_window.set_growth(0);
            s.read_waiting = false;
            let unread = s.recv.clear();
            self.deadlines.set(id, Dir::Read, None);
            if self.budget.release(unread) {
                self.wake_driver = true;
            }
        }
        if which & WRITE_HANDLE != 0 {
            self.deadlines.set(id, Dir::Write, None);
            let s = self.streams.map.get_mut(&id).expect("present");
            s.write_waiting = false;
            if s.send_state == SendState::Open {
                s.send_state = SendState::Closing;
                self.schedule(id);
            }
        }
        let s = self.streams.map.get_mut(&id).expect("present");
        if s.handles != 0 {
            s.handles &= !which;
            if s.handles == 0 {
                self.streams.live_handles -= 1;
            }
        }
        if self.draining {
            self.wake_driver = true; // perhaps the last open stream: the driver looks
        }
        self.remove_if_done(id);
    }

    /// Sets (or clears) the read deadline of stream `id`; a waiting reader looks again.
    pub fn set_read_deadline(&mut self, id: StreamId, deadline: Option<Instant>) {
        self.set_deadline(id, Dir::Read, deadline);
    }

    /// Sets (or clears) the write deadline of stream `id`; a waiting writer looks again.
    pub fn set_write_deadline(&mut self, id: StreamId, deadline: Option<Instant>) {
        self.set_deadline(id, Dir::Write, deadline);
    }

    fn set_deadline(&mut self, id: StreamId, dir: Dir, deadline: Option<Instant>) {
        if !self.streams.map.contains_key(&id) {
            return;
        }
        self.deadlines.set(id, dir, deadline);
        self.events.push_back(match dir {
            Dir::Read => Event::Readable(id),
            Dir::Write => Event::Writable(id),
        });
        self.wake_driver = true;
    }

    /// Graceful close: no more opens, reads or writes; frames already queued still leave
    /// (for at most [`CLOSE_TIMEOUT`]), then the driver shuts the connection down. Like Go,
    /// sends no FIN for open streams. Returns false if the session had already ended.
    pub fn close(&mut self, now: Instant) -> bool {
        if self.error.is_some() {
            return false;
        }
        tracing::debug!(queued_send_bytes = self.streams.send_queued, "closing");
        self.error = Some(Error::Closed);
        self.state = State::Closing {
            deadline: now + CLOSE_TIMEOUT,
        };
        self.events.push_back(Event::Closed);
        self.wake_driver = true;
        true
    }

    /// Graceful drain, first step: the session takes no new streams. Opening fails with
    /// [`Error::Draining`]; the peer's SYNs are refused (a FIN, counted in
    /// [`Stats::streams_refused`]), and so are peer-opened streams not accepted yet (their
    /// unread data is discarded, the peer reads EOF); [`accept`](Self::accept) then returns
    /// `Error::Draining`. Streams already open go on. Once none is left
    /// ([`is_drained`](Self::is_drained)) the driver calls [`close`](Self::close). Calling it
    /// again, or after the session ended, does nothing.
    pub fn drain(&mut self) {
        if self.draining || self.error.is_some() {
            return;
        }
        tracing::debug!(open_streams = self.num_streams(), "draining");
        self.draining = true;
        while let Some(id) = self.streams.accept.pop_front() {
            self.counts.streams_refused += 1;
            self.release(id, BOTH_HANDLES);
        }
        self.events.push_back(Event::Incoming); // parked acceptors see `Draining`
        self.wake_driver = true;
    }

    /// True after [`drain`](Self::drain).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Draining, still open, and no stream is open any more: time to [`close`](Self::close).
    pub fn is_drained(&self) -> bool {
        self.draining && !self.is_closed() && self.num_streams() == 0
    }

    // ----------------------------------------------------------------------------------
    // Internals.

    /// Session-wide cap on accepted, unframed bytes.
    fn send_cap(&self) -> usize {
        SESSION_SEND_BUFFER.min(self.config.max_receive_buffer)
    }

    #[cfg(test)]
    pub(crate) fn ids_for_test(&mut self) -> &mut IdAllocator {
        &mut self.ids
    }

    /// The windows this side advertises (v2), summed over the streams that still read.
    pub fn advertised_windows(&self) -> usize {
        self.advertised_windows
    }

    fn stream_mut(&mut self, id: StreamId) -> Result<&mut StreamState, Error> {
        self.streams.map.get_mut(&id).ok_or(Error::Closed)
    }

    fn check_writable(&mut self, id: StreamId, now: Instant) -> Result<(), Error> {
        let s = self.stream_mut(id)?;
        if s.write_closed() {
            return Err(Error::Closed);
        }
        let deadline_passed = self.deadlines.passed(id, Dir::Write, now);
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if deadline_passed {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    /// Puts stream `id` in the round-robin ring if it has a frame to send.
    fn schedule(&mut self, id: StreamId) {
        if self.state == State::Closed {
            return;
        }
        let Some(s) = self.streams.map.get(&id) else {
            return;
        };
        if !s.in_ring && s.wants_transmit(window(self.v2(), s, id) > 0) {
            self.streams.enter_ring(id);
            self.wake_driver = true;
        }
    }

    /// Removes stream `id` once no handle refers to it and nothing of it is left to send.
    fn remove_if_done(&mut self, id: StreamId) {
        let Some(s) = self.streams.map.get(&id) else {
            return;
        };
        let nothing_to_send = s.fin_sent() || self.state == State::Closed;
        if s.handles != 0 || !nothing_to_send || s.in_ring {
            return;
        }
        // (Releasing the read handle already gave the stream's window back.)
        let s = self.streams.map.remove(&id).expect("present");
        tracing::trace!(stream = %id, "stream closed");
        self.counts.streams_closed += 1;
        self.streams.send_queued -= s.send.len();
        self.budget.release(s.recv.len());
        self.deadlines.remove_stream(id);
    }

    /// Ends the session at once: the first error is kept, nothing more is sent or read.
    fn die(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.error.is_none() {
            self.error = Some(Error::Closed);
        }
        if let Some(e) = &self.error {
            tracing::debug!(reason = %e, streams = self.streams.len(), "session ended");
        }
        self.state = State::Closed;
        self.streams.ring.clear();
        self.nop_pending = false;
        self.streams.blocked_writers.clear();
        self.deadlines.clear();
        for s in self.streams.map.values_mut() {
            s.in_ring = false;
            s.send.clear();
            s.read_waiting = false;
            s.write_waiting = false;
        }
        self.streams.send_queued = 0;
        for id in self.streams.orphans() {
            self.remove_if_done(id);
        }
        self.events.push_back(Event::Closed);
        self.wake_driver = true;
    }
}

/// Hooks that start counters near their wrap points, for tests and fuzzers (feature
/// `test-util`). Real sessions never need them.
#[cfg(any(test, feature = "test-util"))]
impl Connection {
    /// Streams created from now on start their v2 byte counters (written, read, consumed) at
    /// `base` instead of 0. Both peers of a stream must use the same base.
    pub fn test_set_counter_base(&mut self, base: u32) {
        self.counter_base = base;
    }

    /// The next stream this side opens gets the id after `last` (2 more).
    pub fn test_set_last_stream_id(&mut self, last: u32) {
        self.ids.set_last(last);
    }

    /// The next stream created gets serial `serial + 1` (wrapping).
    pub fn test_set_last_serial(&mut self, serial: u64) {
        self.streams.set_last_serial(serial);
    }
}

/// Bytes stream `s` may send now: its v2 window, or unlimited in v1. An impossible window
/// counts as closed (the stream's writes fail instead).
/// The least room a write of `len` bytes waits for: all of a small write, otherwise
/// [`MIN_WRITE_ROOM`], but never more than half of the room that can become free (the stream
/// buffer, the session's send cap `send_cap` and, in v2, the peer's window).
pub fn min_write_room(len: usize, send_cap: usize, peer_window: usize) -> usize {
    let most = STREAM_SEND_BUFFER.min(send_cap).min(peer_window);
    len.min(MIN_WRITE_ROOM).min(most / 2).max(1)
}

/// Free session room (of the send cap `send_cap`) at which writers waiting for it are woken: a
/// quarter of the cap, and at least what any write waits for (see [`min_write_room`]).
pub fn session_wake_room(send_cap: usize) -> usize {
    (send_cap / 4).max(MIN_WRITE_ROOM.min(send_cap / 2))
}

fn window(v2: bool, s: &StreamState, id: StreamId) -> usize {
    if !v2 {
        return usize::MAX;
    }
    s.send_window.available(id.get()).unwrap_or(0) as usize
}
