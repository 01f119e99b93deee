//! Buffers whose bytes were handed out as `Bytes` slices, kept to be reused once no slice
//! refers to them any more: the receive chunks of [`RecvBuffer`](super::RecvBuffer) and the
//! write blocks of [`BlockPool`](super::block_pool::BlockPool). Reuse saves the allocation
//! and the page faults of memory the kernel must hand out anew; held buffers cost nothing
//! extra (their slices keep them alive anyway), free ones are kept only up to a bound.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

/// At most `MAX` retired buffers, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Spares<const MAX: usize> {
    list: VecDeque<BytesMut>,
}

impl<const MAX: usize> Spares<MAX> {
    /// Keeps `buf`, all of whose bytes were handed out (or are no longer needed). It is kept
    /// past its end, so its own room stays small and only a buffer no slice refers to can be
    /// reclaimed. Beyond `MAX`, the oldest is let go.
    pub(crate) fn retire(&mut self, mut buf: BytesMut) {
        buf.advance(buf.len());
        if self.list.len() == MAX {
            self.list.pop_front();
        }
        self.list.push_back(buf);
    }

    /// The oldest kept buffer with room for `size` bytes that no slice refers to any more.
    /// Other free ones beyond `keep` are let go, and so are free ones smaller than `size`:
    /// asking a buffer for `probe` bytes (no more than any buffer's size, more than the room a
    /// retired buffer keeps) tells free from held.
    pub(crate) fn take(&mut self, size: usize, probe: usize, keep: usize) -> Option<BytesMut> {
        let found = self
            .list
            .iter_mut()
            .position(|b| b.try_reclaim(size))
            .and_then(|i| self.list.remove(i));
        let mut free = 0;
        self.list.retain_mut(|b| {
            if b.try_reclaim(size) {
                free += 1;
                return free <= keep;
            }
            !b.try_reclaim(probe)
        });
        found
    }

    /// Lets go of every kept buffer.
    pub(crate) fn clear(&mut self) {
        self.list = VecDeque::new();
    }

    /// Whether any buffer is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Buffers kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_buffers_stay_free_ones_are_reused_or_bounded() {
        let mut spares = Spares::<8>::default();
        let mut held = Vec::new();
        for i in 0..6 {
            let mut b = BytesMut::with_capacity(1024);
            b.extend_from_slice(&[0u8; 1024]);
            let slice = b.split().freeze();
            if i % 2 == 0 {
                held.push(slice);
            }
            spares.retire(b);
        }
        // Three free: the oldest is taken, one more kept, one let go; the three held stay.
        let taken = spares.take(1024, 1024, 1).expect("a free buffer");
        assert!(taken.capacity() >= 1024);
        assert_eq!(spares.len(), 3 + 1);
        drop(held);
        // Free ones smaller than asked for are let go, not kept.
        assert!(spares.take(4096, 1024, 8).is_none());
        assert!(spares.is_empty());
    }

    #[test]
    fn at_most_max_are_kept() {
        let mut spares = Spares::<4>::default();
        for _ in 0..10 {
            spares.retire(BytesMut::with_capacity(16));
        }
        assert_eq!(spares.len(), 4);
        spares.clear();
        assert!(spares.is_empty());
    }
}
