//! Per-stream state kept by the session. Plain data: the session mutates it.
//!
//! ```text
//!  send side:  open ──shutdown/drop──▶ FIN queued ──data drained──▶ FIN sent
//!  recv side:  open ──peer FIN──▶ draining ──queue empty──▶ EOF
//!              open ──read handle dropped──▶ discarding (data dropped, budget returned)
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

#[derive(Debug, Default)]
pub(crate) struct StreamState {
    // Receive side.
    /// Received bytes not yet read.
    pub(crate) recv: ByteQueue,
    pub(crate) fin_received: bool,
    /// The read handle is gone: payloads are dropped on arrival.
    pub(crate) read_closed: bool,
    pub(crate) recv_window: RecvWindow,

    // Send side.
    /// Bytes accepted from the application and not yet framed.
    pub(crate) send: ByteQueue,
    pub(crate) send_window: SendWindow,
    pub(crate) syn_pending: bool,
    /// No more writes: a FIN follows the queued data.
    pub(crate) write_closed: bool,
    pub(crate) fin_sent: bool,

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
        self.write_closed && !self.fin_sent && self.send.is_empty()
    }

    /// Both directions finished and nothing left to read: the stream no longer counts as open.
    pub(crate) fn finished(&self) -> bool {
        self.fin_sent && self.fin_received && self.recv.is_empty()
    }
}
