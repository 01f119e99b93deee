//! Protocol version 2 per-stream sliding window (SPEC §5). All counters are `u32` and wrap,
//! as Go's do.
//!
//! The receiving side decides what window to advertise. With auto-tuning on, a stream whose
//! reader keeps up (it found nothing to read since the last window update) doubles its
//! advertised window at each update, up to a session-wide allowance the connection grants
//! (see `Connection::grow_window`): the window, not the reader, was then the limit.

use crate::error::ProtocolError;

/// A sender's window before the peer's first UPD, whatever either side's config says.
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Most doublings of the configured window auto-tuning applies (×1024): growth stays within
/// three orders of magnitude of what the user configured, whatever the receive budget.
pub(crate) const MAX_GROWTH: u8 = 10;

/// Receiving side: decides when to tell the peer how much the application has consumed, and
/// which window to advertise.
#[derive(Debug, Default)]
pub(crate) struct RecvWindow {
    num_read: u32,
    incr: u32,
    /// The advertised window is the configured one shifted left by this much.
    growth: u8,
    /// An UPD was due at least once (the first read always sends one).
    started: bool,
    /// The reader found nothing to read since the last UPD: it keeps up with the sender.
    starved: bool,
    /// An UPD is due and not yet sent; it carries the CONSUMED count at the time it leaves.
    upd_pending: bool,
}

/// An UPD became due (its CONSUMED value is taken when it leaves, by `take_upd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpdDue {
    /// The reader kept up since the previous UPD: a good moment to grow the window.
    pub(crate) reader_kept_up: bool,
}

impl RecvWindow {
    /// A window whose byte counter starts at `base` instead of 0 (tests start near the wrap
    /// point; both peers must agree).
    pub(crate) fn starting_at(base: u32) -> RecvWindow {
        RecvWindow {
            num_read: base,
            ..RecvWindow::default()
        }
    }

    /// Records `n > 0` bytes handed to the application. Says when an UPD became due (then
    /// [`upd_pending`](Self::upd_pending) until [`take_upd`](Self::take_upd)): on the first read, then whenever half the advertised `window` was read since the
    /// last UPD. Every due CONSUMED is sent, including one that wrapped to exactly 0: Go skips
    /// that one, which stalls a reader that always drains its whole window at a multiple of
    /// 2^32 bytes (a Go sender accepts it; its in-flight arithmetic wraps).
    pub(crate) fn on_read(&mut self, n: u32, window: u32) -> Option<UpdDue> {
        self.num_read = self.num_read.wrapping_add(n);
        self.incr = self.incr.saturating_add(n);
        if self.incr >= (window / 2).max(1) || !self.started {
            // The first UPD says nothing about the pace of the stream: no growth there, so a
            // short stream never takes any of the session's allowance.
            let kept_up = std::mem::take(&mut self.starved) && self.started;
            self.started = true;
            self.incr = 0;
            self.upd_pending = true;
            Some(UpdDue {
                reader_kept_up: kept_up,
            })
        } else {
            None
        }
    }

    /// An UPD waits to be sent.
    pub(crate) fn upd_pending(&self) -> bool {
        self.upd_pending
    }

    /// Takes the pending UPD's CONSUMED value: everything read so far, which may be more than
    /// when it became due (a later count is just as valid and opens the window further).
    pub(crate) fn take_upd(&mut self) -> Option<u32> {
        std::mem::take(&mut self.upd_pending).then_some(self.num_read)
    }

    /// The reader asked for data and there was none.
    pub(crate) fn on_starved(&mut self) {
        self.starved = true;
    }

    /// Doublings applied to the configured window.
    pub(crate) fn growth(&self) -> u8 {
        self.growth
    }

    /// Sets the doublings applied to the configured window.
    pub(crate) fn set_growth(&mut self, growth: u8) {
        self.growth = growth;
    }

    /// The window to advertise given the configured one.
    pub(crate) fn advertised(&self, configured: u32) -> u32 {
        scaled(configured, self.growth)
    }
}

/// `configured << growth`, saturating at `u32::MAX`.
pub(crate) fn scaled(configured: u32, growth: u8) -> u32 {
    u32::try_from(u64::from(configured) << growth).unwrap_or(u32::MAX)
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
    /// A window whose byte counters start at `base` instead of 0 (tests start near the wrap
    /// point; both peers must agree).
    pub(crate) fn starting_at(base: u32) -> SendWindow {
        SendWindow {
            num_written: base,
            peer_consumed: base,
            ..SendWindow::default()
        }
    }

    /// The window the peer advertised last.
    pub(crate) fn peer_window(&self) -> u32 {
        self.peer_window
    }

    /// Bytes that may be sent now. Fails when the peer claims to have consumed more than was
    /// sent (Go's `ErrConsumed`). A window above `i32::MAX` counts as `i32::MAX` (a Go sender
    /// would take it as negative and never send again), so bytes in flight always fit the
    /// signed distance that tells "consumed more than sent" from wrapping.
    pub(crate) fn available(&self, stream: u32) -> Result<u32, ProtocolError> {
        let inflight = self.num_written.wrapping_sub(self.peer_consumed) as i32;
        if inflight < 0 {
            return Err(ProtocolError::ConsumedMoreThanSent { stream });
        }
        let window = self.peer_window.min(i32::MAX as u32) as i32;
        Ok(window.saturating_sub(inflight).max(0) as u32)
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

    /// `on_read`, then the CONSUMED value of the UPD if one became due.
    fn due(r: &mut RecvWindow, n: u32, window: u32) -> Option<u32> {
        r.on_read(n, window)?;
        r.take_upd()
    }

    #[test]
    fn upd_sequence_matches_go() {
        // SPEC §5 [verified]: a Go reader with a 10000-byte buffer over 32768-byte frames
        // reads 10000, 10000, 10000, 2768 per frame (a Go read never spans two frames);
        // MaxStreamBuffer 65536 → threshold 32768.
        let mut w = RecvWindow::default();
        let mut sent = vec![];
        for n in [10000, 10000, 10000, 2768].repeat(5) {
            sent.extend(due(&mut w, n, 65536));
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
    fn send_counters_wrap() {
        let mut w = SendWindow::starting_at(u32::MAX - 10);
        w.peer_window = 100;
        w.on_sent(50); // wraps past zero
        assert_eq!(w.available(1).unwrap(), 50);
        w.on_update((u32::MAX - 10).wrapping_add(50), 100);
        assert_eq!(w.available(1).unwrap(), 100);
        // A peer claiming one byte more than was sent, across the wrap, is caught.
        w.on_update((u32::MAX - 10).wrapping_add(51), 100);
        assert!(w.available(1).is_err());
    }

    #[test]
    fn a_consumed_value_that_wraps_to_zero_is_sent() {
        // A reader draining its whole 64 KiB window at once: the 65536th read ends exactly at
        // 2^32. Go skips CONSUMED 0 there and both sides wait for each other forever.
        let mut r = RecvWindow::starting_at(u32::MAX - 65535);
        r.started = true;
        assert_eq!(due(&mut r, 65536, 65536), Some(0));
        assert_eq!(due(&mut r, 65536, 65536), Some(65536));
    }

    #[test]
    fn first_read_sends_an_upd_from_any_counter_offset() {
        let mut r = RecvWindow::starting_at(u32::MAX);
        assert_eq!(due(&mut r, 1, 65536), Some(0));
        assert_eq!(r.on_read(1, 65536), None);
    }

    #[test]
    fn the_half_window_threshold_holds_across_the_wrap() {
        let mut r = RecvWindow::starting_at(u32::MAX - 100);
        r.started = true;
        let mut sent = vec![];
        for _ in 0..8 {
            sent.extend(due(&mut r, 20, 64));
        }
        let base = u32::MAX - 100;
        assert_eq!(
            sent,
            vec![
                base.wrapping_add(40),
                base.wrapping_add(80),
                base.wrapping_add(120),
                base.wrapping_add(160)
            ]
        );
    }

    #[test]
    fn a_window_above_i32_max_is_capped_not_negative() {
        let mut w = SendWindow::default();
        w.on_update(0, u32::MAX);
        assert_eq!(w.available(1).unwrap(), i32::MAX as u32);
        w.on_sent(i32::MAX as u32);
        assert_eq!(w.available(1).unwrap(), 0);
    }

    #[test]
    fn starvation_is_reported_once_with_the_next_upd() {
        let mut r = RecvWindow::default();
        r.on_starved();
        // Not on the first UPD.
        assert_eq!(r.on_read(10, 100).map(|u| u.reader_kept_up), Some(false));
        r.on_starved();
        assert_eq!(r.on_read(50, 100).map(|u| u.reader_kept_up), Some(true));
        assert_eq!(r.on_read(50, 100).map(|u| u.reader_kept_up), Some(false));
        assert_eq!(scaled(65536, 3), 524_288);
        assert_eq!(scaled(u32::MAX, 1), u32::MAX);
    }
}
