//! The stream table and the per-stream bookkeeping around it: the streams by id, the queue of
//! peer-opened streams waiting to be accepted, the round-robin ring of streams with a frame to
//! send, writers waiting for session-wide send room, and refusals whose FIN is still to go.
//! [`Connection`](super::Connection) decides what happens; this module holds who is where.

use std::collections::{HashMap, VecDeque};

use super::{ids::StreamId, stream::StreamState};

/// Every stream of a session and the queues streams wait in.
#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    /// Streams by id: open ones, and closed ones whose FIN is still queued.
    pub(crate) map: HashMap<StreamId, StreamState>,
    /// Peer-opened streams not yet accepted, oldest first.
    pub(crate) accept: VecDeque<StreamId>,
    /// Streams with a frame to send, served one frame per turn (SPEC §7).
    pub(crate) ring: VecDeque<StreamId>,
    /// Streams whose writer waits for session-wide send room, oldest first.
    pub(crate) blocked_writers: VecDeque<StreamId>,
    /// Peer-opened streams refused at once (limit or drain), whose FIN is still to be sent.
    pub(crate) refused: VecDeque<StreamId>,
    /// Streams with at least one live application handle (or waiting to be accepted).
    pub(crate) live_handles: usize,
    /// Bytes accepted from the application and not yet framed, all streams together.
    pub(crate) send_queued: usize,
    /// Serial number of the stream created last.
    last_serial: u64,
}

impl StreamTable {
    /// Number of entries, closed streams whose FIN is still queued included.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Streams open for the application: a handle is alive and the stream is not finished
    /// both ways with everything read.
    pub(crate) fn open_count(&self) -> usize {
        self.map
            .values()
            .filter(|s| s.handles != 0 && !s.finished())
            .count()
    }

    /// Registers a new stream with both handles alive; v2 counters start at `counter_base`.
    pub(crate) fn insert(&mut self, id: StreamId, counter_base: u32) -> &mut StreamState {
        // Serials wrap (after 2^64 streams); a serial only has to differ from the one of the
        // stream that last had the same id, and ids are not reused while a handle exists.
        self.last_serial = self.last_serial.wrapping_add(1);
        self.live_handles += 1;
        self.map
            .entry(id)
            .or_insert(StreamState::new(self.last_serial, counter_base))
    }

    /// Queues stream `id`, registered and not in the ring, for its next frame.
    pub(crate) fn enter_ring(&mut self, id: StreamId) {
        if let Some(s) = self.map.get_mut(&id) {
            debug_assert!(!s.in_ring);
            s.in_ring = true;
            self.ring.push_back(id);
        }
    }

    /// Lists stream `id`'s writer as waiting for session-wide send room (once).
    pub(crate) fn block_writer(&mut self, id: StreamId) {
        if !self.blocked_writers.contains(&id) {
            self.blocked_writers.push_back(id);
        }
    }

    /// Streams no handle refers to.
    pub(crate) fn orphans(&self) -> Vec<StreamId> {
        self.map
            .iter()
            .filter(|(_, s)| s.handles == 0)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The next stream created gets serial `serial + 1` (test hook).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_last_serial(&mut self, serial: u64) {
        self.last_serial = serial;
    }
}
