//! Per-stream state kept by the session. Plain data: the session mutates it.
//!
//! ```text
//!  send side (SendState):  Open ──shutdown/drop──▶ Closing ──data drained──▶ FinSent
//!  recv side (RecvState):  Open ──peer FIN──▶ Finished ──queue empty──▶ EOF
//!  read handle dropped (either state): data dropped on arrival, budget returned
//! ```
//! An entry leaves the table once no handle refers to it and its FIN is on its way (or the
//! session died), so a handle never sees its id reused.

use super::{
    byte_queue::ByteQueue,
    window::{RecvWindow, SendWindow},
};

/// The application's read handle is alive.
pub const READ_HANDLE: u8 = 1;
/// The application's write handle is alive.
pub const WRITE_HANDLE: u8 = 2;
/// Both handles (an unsplit stream, or one waiting in the accept queue).
pub const BOTH_HANDLES: u8 = READ_HANDLE | WRITE_HANDLE;

/// Where the receive side is (whether the application still reads is in `handles`: without
/// the read handle, payloads are dropped on arrival).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Data may still arrive.
    #[default]
    Open,
    /// The peer's FIN arrived: what is buffered is all there will be.
    Finished,
}

/// Where the send side is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendState {
    /// The application may write.
    #[default]
    Open,
    /// Shut or dropped: no more writes, a FIN follows the queued data.
    Closing,
    /// The FIN has been framed.
    FinSent,
}

#[derive(Debug, Default)]
pub(crate) struct StreamState {
    // Receive side.
    /// Received bytes not yet read.
    pub(crate) recv: ByteQueue,
    pub(crate) recv_state: RecvState,
    pub(crate) recv_window: RecvWindow,

    // Send side.
    /// Bytes accepted from the application and not yet framed.
    pub(crate) send: ByteQueue,
    pub(crate) send_state: SendState,
    pub(crate) send_window: SendWindow,
    /// The SYN of a stream this side opened is still to be framed.
    pub(crate) syn_pending: bool,

    // Scheduling and wake-ups.
    /// Listed in the session's round-robin ring.
    pub(crate) in_ring: bool,
    /// A reader waits for data, FIN, error or deadline.
    pub(crate) read_waiting: bool,
    /// A writer, flusher or shutdown waits for progress.
    pub(crate) write_waiting: bool,

    /// Unique per session: tells this stream from earlier ones with the same id.
    pub(crate) serial: u64,
    /// Which application handles are alive (`READ_HANDLE | WRITE_HANDLE`).
    pub(crate) handles: u8,
}

impl StreamState {
    /// A new stream with both handles alive; v2 counters start at `counter_base` (0 on the
    /// wire).
    pub(crate) fn new(serial: u64, counter_base: u32) -> StreamState {
        StreamState {
            recv_window: RecvWindow::starting_at(counter_base),
            send_window: SendWindow::starting_at(counter_base),
            serial,
            handles: BOTH_HANDLES,
            ..StreamState::default()
        }
    }

    /// Whether the stream has a frame to send given window `window` (None for v1).
    pub(crate) fn wants_transmit(&self, window_open: bool) -> bool {
        self.syn_pending
            || self.recv_window.upd_pending()
            || (!self.send.is_empty() && window_open)
            || self.fin_due()
    }

    /// The FIN may go now: writing is closed and all data has been framed.
    pub(crate) fn fin_due(&self) -> bool {
        self.send_state == SendState::Closing && self.send.is_empty()
    }

    /// No more writes (shut, dropped, or FIN already framed).
    pub(crate) fn write_closed(&self) -> bool {
        self.send_state != SendState::Open
    }

    /// Our FIN has been framed.
    pub(crate) fn fin_sent(&self) -> bool {
        self.send_state == SendState::FinSent
    }

    /// The peer's FIN arrived.
    pub(crate) fn peer_finished(&self) -> bool {
        self.recv_state == RecvState::Finished
    }

    /// The application still has the read handle (payloads are kept for it).
    pub(crate) fn reading(&self) -> bool {
        self.handles & READ_HANDLE != 0
    }

    /// Both directions finished and nothing left to read: the stream no longer counts as open.
    pub(crate) fn finished(&self) -> bool {
        self.fin_sent() && self.peer_finished() && self.recv.is_empty()
    }
}
