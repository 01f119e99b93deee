//! Reusable blocks for the bytes streams write.
//!
//! A large write is copied into [`BLOCK`]-sized blocks that frames are then cut from without
//! copying. A frame keeps its block alive until the driver has written it, so a block cannot be
//! refilled in place; instead it is retired here and handed out again once no frame refers to
//! it. Steady bulk writing then reuses the same few blocks: no allocation, and no page faults
//! for memory the kernel must hand out anew (a fresh 128 KiB allocation per write cost about a
//! tenth of the CPU time of a 100-stream transfer).
//!
//! Memory: besides blocks frames still use (which cost nothing extra), the pool keeps at most
//! [`FREE_KEEP`] free blocks after each take, and none once the driver finds the session quiet.

use bytes::BytesMut;

use super::spare::Spares;

/// Size of one block.
pub(crate) const BLOCK: usize = 64 * 1024;

/// Writes of at least this many bytes go into blocks; smaller ones are copied into a buffer of
/// their size (so a stream with a few bytes queued does not hold a whole block).
pub(crate) const BLOCK_WRITE_MIN: usize = 16 * 1024;

/// Most blocks the pool refers to (most of them still used by frames).
const POOL_MAX: usize = 64;

/// Free blocks kept for the next writes.
const FREE_KEEP: usize = 8;

/// Retired blocks.
#[derive(Debug, Default)]
pub(crate) struct BlockPool {
    retired: Spares<POOL_MAX>,
}

impl BlockPool {
    /// A block with room for [`BLOCK`] bytes: a retired one no frame refers to any more, or a
    /// new one.
    pub(crate) fn take(&mut self) -> BytesMut {
        self.take_free()
            .unwrap_or_else(|| BytesMut::with_capacity(BLOCK))
    }

    /// A retired block no frame refers to any more, if there is one (no allocation).
    pub(crate) fn take_free(&mut self) -> Option<BytesMut> {
        self.retired.take(BLOCK, BLOCK, FREE_KEEP)
    }

    /// Gives back a block whose bytes were all handed out (frames may still refer to it).
    pub(crate) fn retire(&mut self, block: BytesMut) {
        self.retired.retire(block);
    }

    /// Lets go of every block (the session is quiet).
    pub(crate) fn release(&mut self) {
        self.retired.clear();
    }

    /// Whether any block is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.retired.is_empty()
    }

    /// Blocks the pool refers to.
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
    fn a_released_pool_keeps_nothing() {
        let mut pool = BlockPool::default();
        assert!(pool.take_free().is_none());
        pool.retire(pool_block());
        let free = pool.take_free().expect("the retired block is free");
        pool.retire(free);
        assert!(!pool.is_empty());
        pool.release();
        assert!(pool.is_empty());
    }

    fn pool_block() -> BytesMut {
        BytesMut::with_capacity(BLOCK)
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
