//! Protocol version 2 per-stream sliding window (SPEC §5). All counters are `u32` and wrap,
//! as Go's do.

use crate::error::ProtocolError;

/// A sender's window before the peer's first UPD, whatever either side's config says.
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Receiving side: decides when to tell the peer how much the application has consumed.
#[derive(Debug, Default)]
pub(crate) struct RecvWindow {
    num_read: u32,
    incr: u32,
}

impl RecvWindow {
    /// Records `n > 0` bytes handed to the application. Returns the CONSUMED value to send in
    /// an UPD when one is due: on the first read, then whenever `threshold` bytes were read
    /// since the last UPD. A CONSUMED that wrapped to exactly 0 is skipped, as in Go.
    pub(crate) fn on_read(&mut self, n: u32, threshold: u32) -> Option<u32> {
        self.num_read = self.num_read.wrapping_add(n);
        self.incr = self.incr.wrapping_add(n);
        if self.incr >= threshold || self.num_read == n {
            self.incr = 0;
            (self.num_read != 0).then_some(self.num_read)
        } else {
            None
        }
    }
}

/// Sending side: how much may be in flight unacknowledged.
#[derive(Debug)]
pub(crate) struct SendWindow {
    num_written: u32,
    peer_consumed: u32,
    peer_window: u32,
}

impl Default for SendWindow {
    fn default() -> Self {
        SendWindow {
            num_written: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
        }
    }
}

impl SendWindow {
    /// Bytes that may be sent now. Fails when the peer claims to have consumed more than was
    /// sent (Go's `ErrConsumed`).
    pub(crate) fn available(&self, stream: u32) -> Result<u32, ProtocolError> {
        let inflight = self.num_written.wrapping_sub(self.peer_consumed) as i32;
        if inflight < 0 {
            return Err(ProtocolError::ConsumedMoreThanSent { stream });
        }
        Ok((self.peer_window as i32).saturating_sub(inflight).max(0) as u32)
    }

    /// Records `n` bytes handed to the transmit path. Only bytes that really leave count, so a
    /// write that timed out before being queued never shrinks the window (an upstream defect).
    pub(crate) fn on_sent(&mut self, n: u32) {
        self.num_written = self.num_written.wrapping_add(n);
    }

    /// Adopts the peer's UPD verbatim (no max/merge), as Go does.
    pub(crate) fn on_update(&mut self, consumed: u32, window: u32) {
        self.peer_consumed = consumed;
        self.peer_window = window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upd_sequence_matches_go() {
        // SPEC §5 [verified]: a Go reader with a 10000-byte buffer over 32768-byte frames
        // reads 10000, 10000, 10000, 2768 per frame (a Go read never spans two frames);
        // MaxStreamBuffer 65536 → threshold 32768.
        let mut w = RecvWindow::default();
        let mut sent = vec![];
        for n in [10000, 10000, 10000, 2768].repeat(5) {
            if let Some(c) = w.on_read(n, 32768) {
                sent.push(c);
            }
        }
        assert_eq!(sent, vec![10000, 42768, 75536, 108304, 141072]);
    }

    #[test]
    fn send_window_starts_at_256k_then_adopts_peer_window() {
        let mut w = SendWindow::default();
        assert_eq!(w.available(3).unwrap(), 262_144);
        for _ in 0..8 {
            w.on_sent(32768);
        }
        assert_eq!(w.available(3).unwrap(), 0);
        // The peer read 10000 bytes and advertises a 64 KiB window: the window shrinks.
        w.on_update(10000, 65536);
        assert_eq!(w.available(3).unwrap(), 0);
        w.on_update(262_144 - 1000, 65536);
        assert_eq!(w.available(3).unwrap(), 64536);
    }

    #[test]
    fn consumed_more_than_sent_is_an_error() {
        let mut w = SendWindow::default();
        w.on_update(10, 65536);
        assert_eq!(
            w.available(7),
            Err(ProtocolError::ConsumedMoreThanSent { stream: 7 })
        );
    }

    #[test]
    fn counters_wrap() {
        let mut w = SendWindow {
            num_written: u32::MAX - 10,
            peer_consumed: u32::MAX - 10,
            peer_window: 100,
        };
        w.on_sent(50); // wraps past zero
        assert_eq!(w.available(1).unwrap(), 50);
        w.on_update((u32::MAX - 10).wrapping_add(50), 100);
        assert_eq!(w.available(1).unwrap(), 100);
        let mut r = RecvWindow {
            num_read: u32::MAX - 4,
            incr: 0,
        };
        // Wrapping to exactly 0 skips the UPD.
        assert_eq!(r.on_read(5, 5), None);
        assert_eq!(r.on_read(5, 5), Some(5));
    }
}
