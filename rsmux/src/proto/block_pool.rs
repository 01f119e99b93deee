//! Reusable blocks for the bytes streams write.
//!
//! A large write is copied into [`BLOCK`]-sized blocks that frames are then cut from without
//! copying. A frame keeps its block alive until the driver has written it, so a block cannot be
//! refilled in place; instead it is retired here and handed out again once no frame refers to
//! it. Steady bulk writing then reuses the same few blocks: no allocation, and no page faults
//! for memory the kernel must hand out anew (a fresh 128 KiB allocation per write cost about a
//! tenth of the CPU time of a 100-stream transfer).
//!
//! Memory: the pool keeps at most [`POOL_MAX`] blocks, only [`IDLE_KEEP`] of them free once
//! nothing is queued, and none after a keepalive interval in which it was not used.

use std::collections::VecDeque;

use bytes::BytesMut;

/// Size of one block.
pub(crate) const BLOCK: usize = 64 * 1024;

/// Writes of at least this many bytes go into blocks; smaller ones are copied into a buffer of
/// their size (so a stream with a few bytes queued does not hold a whole block).
pub(crate) const BLOCK_WRITE_MIN: usize = 16 * 1024;

/// Most blocks the pool refers to.
const POOL_MAX: usize = 64;

/// Free blocks kept once nothing is queued.
const IDLE_KEEP: usize = 2;

/// Retired blocks, oldest first.
#[derive(Debug, Default)]
pub(crate) struct BlockPool {
    retired: VecDeque<BytesMut>,
    /// A block was taken since the last [`tick`](Self::tick).
    used: bool,
}

impl BlockPool {
    /// A block with room for [`BLOCK`] bytes: a retired one no frame refers to any more, or a
    /// new one.
    pub(crate) fn take(&mut self) -> BytesMut {
        self.used = true;
        match self.retired.iter_mut().position(|b| b.try_reclaim(BLOCK)) {
            Some(i) => self.retired.remove(i).expect("found"),
            None => BytesMut::with_capacity(BLOCK),
        }
    }

    /// Gives back a block whose bytes were all handed out (frames may still refer to it).
    pub(crate) fn retire(&mut self, mut block: BytesMut) {
        block.clear();
        if self.retired.len() == POOL_MAX {
            self.retired.pop_front();
        }
        self.retired.push_back(block);
    }

    /// Nothing is queued: keeps at most [`IDLE_KEEP`] free blocks (blocks frames still refer
    /// to cost nothing extra).
    pub(crate) fn trim(&mut self) {
        let mut free = 0;
        self.retired.retain_mut(|b| {
            if !b.try_reclaim(BLOCK) {
                return true;
            }
            free += 1;
            free <= IDLE_KEEP
        });
    }

    /// A keepalive interval passed: lets go of every block if none was taken since the last
    /// tick.
    pub(crate) fn tick(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.retired = VecDeque::new();
        }
    }

    /// Blocks the pool refers to (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.retired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_back_once_no_frame_refers_to_it() {
        let mut pool = BlockPool::default();
        let mut block = pool.take();
        let base = block.as_ptr();
        block.extend_from_slice(&[1u8; BLOCK]);
        let frame = block.split_to(BLOCK).freeze();
        pool.retire(block);
        // The frame is not written yet: a new block.
        let other = pool.take();
        assert_ne!(other.as_ptr(), base);
        pool.retire(other);
        drop(frame);
        // Now the first one is free again, and it is the oldest.
        let again = pool.take();
        assert_eq!(again.as_ptr(), base);
        assert!(again.capacity() >= BLOCK);
    }

    #[test]
    fn idle_pools_let_go_of_their_blocks() {
        let mut pool = BlockPool::default();
        let held: Vec<_> = (0..5)
            .map(|_| {
                let mut b = pool.take();
                b.extend_from_slice(&[0u8; 10]);
                let frame = b.split().freeze();
                pool.retire(b);
                frame
            })
            .collect();
        for _ in 0..5 {
            pool.retire(BytesMut::with_capacity(BLOCK));
        }
        assert_eq!(pool.len(), 10);
        pool.trim();
        assert_eq!(pool.len(), 5 + IDLE_KEEP, "held blocks stay, two free ones");
        pool.tick();
        assert_eq!(pool.len(), 5 + IDLE_KEEP, "used since the last tick");
        pool.tick();
        assert_eq!(pool.len(), 0);
        drop(held);
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = BlockPool::default();
        for _ in 0..POOL_MAX + 10 {
            pool.retire(BytesMut::with_capacity(16));
        }
        assert_eq!(pool.len(), POOL_MAX);
    }
}
