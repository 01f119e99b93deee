//! Session-wide receive budget, Go's token bucket (SPEC §4).
//!
//! Received PSH payload for a live stream is charged when it is queued; bytes come back when
//! the application reads them or when a stream's unread data is discarded. The socket is not
//! read while the budget is exhausted, so unread data of all streams together stays below
//! `max_receive_buffer` plus one frame.

/// The budget. One frame may overdraw it, as in Go.
#[derive(Debug)]
pub(crate) struct Budget {
    available: i64,
    capacity: i64,
}

impl Budget {
    pub(crate) fn new(capacity: usize) -> Budget {
        Budget {
            available: capacity as i64,
            capacity: capacity as i64,
        }
    }

    /// Charges `n` received bytes.
    pub(crate) fn charge(&mut self, n: usize) {
        self.available -= n as i64;
    }

    /// Returns `n` bytes; true when this re-opens an exhausted budget (reading may resume).
    pub(crate) fn release(&mut self, n: usize) -> bool {
        let was_exhausted = self.exhausted();
        self.available += n as i64;
        debug_assert!(
            self.available <= self.capacity,
            "released more than charged"
        );
        was_exhausted && !self.exhausted()
    }

    /// True while nothing more may be read from the socket.
    pub(crate) fn exhausted(&self) -> bool {
        self.available <= 0
    }

    /// Bytes charged and not yet returned.
    pub(crate) fn used(&self) -> usize {
        (self.capacity - self.available) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdraw_and_reopen() {
        let mut b = Budget::new(10);
        b.charge(9);
        assert!(!b.exhausted());
        b.charge(65535); // one frame may overdraw
        assert!(b.exhausted());
        assert_eq!(b.used(), 65544);
        assert!(!b.release(65534)); // exactly zero left: still exhausted
        assert!(b.exhausted());
        assert!(b.release(1));
        assert!(!b.release(9));
        assert_eq!(b.used(), 0);
    }
}
