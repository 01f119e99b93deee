//! A queue of bytes in order, for one direction of one stream: received bytes the application
//! has not read, or bytes it wrote that are not framed yet.
//!
//! Large pieces are kept as the `Bytes` they arrived as (slices of the connection's read
//! chunks, or the application's own buffers given to `write_chunk`): no copy. Small ones are
//! appended to one growing tail buffer instead of getting a queue slot each, so a flood of tiny
//! frames or writes costs about its size in memory, not a slot and an allocation per piece.
//! Each shared piece remembers when it arrived (a read-chunk count), so that
//! [`ByteQueue::compact_older_than`] can copy out the ones that have waited too long and would
//! otherwise keep their chunks alive (see `recv_buffer`).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::block_pool::{BlockPool, BLOCK_WRITE_MIN};

/// The arrival mark of pieces whose memory is the queue's own (never copied again).
const OWNED: u64 = u64::MAX;

/// The queue; boxed so that a stream with nothing queued spends one pointer on it.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue(Option<Box<Parts>>);

#[derive(Debug, Default)]
struct Parts {
    /// Older data, in order, each piece with its arrival mark ([`OWNED`] for frozen parts of
    /// the tail and compacted runs).
    chunks: VecDeque<(Bytes, u64)>,
    /// The caller tracks this queue as one that may hold shared pieces.
    listed: bool,
    /// The newest small pieces, after everything in `chunks`.
    tail: BytesMut,
    /// Parts of the tail's allocation were handed out (frozen): growing it in place would
    /// copy what it holds into a new allocation.
    tail_shared: bool,
    /// The tail is a block of a [`BlockPool`].
    pooled: bool,
    len: usize,
}

impl ByteQueue {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Appends a piece that is kept as it is (no copy), marked as arrived at `mark`. True
    /// when the caller should start tracking this queue (it was not listed).
    pub(crate) fn push_shared(&mut self, piece: Bytes, mark: u64) -> bool {
        self.0.get_or_insert_default().push_shared(piece, mark)
    }

    /// Appends a small piece by copying it into the tail.
    pub(crate) fn push_copy(&mut self, piece: &[u8]) {
        self.0.get_or_insert_default().push_copy(piece);
    }

    /// Appends bytes the application wrote: large writes (and small ones that fit) go into
    /// blocks of `pool`, others into a buffer of their size.
    pub(crate) fn push_write(&mut self, piece: &[u8], pool: &mut BlockPool) {
        let p = self.0.get_or_insert_default();
        let room = p.tail.capacity() - p.tail.len();
        if piece.len() >= BLOCK_WRITE_MIN || (p.pooled && room >= piece.len()) {
            p.push_pooled(piece, pool);
        } else {
            if p.pooled {
                p.freeze_tail();
                pool.retire(std::mem::take(&mut p.tail));
                p.pooled = false;
                p.tail_shared = false;
            }
            p.push_copy(piece);
        }
    }

    /// Like [`read_chunk`](Self::read_chunk), for the send side: an emptied queue gives its
    /// block back to `pool`.
    pub(crate) fn take_chunk(&mut self, max: usize, pool: &mut BlockPool) -> Option<Bytes> {
        let p = self.0.as_mut()?;
        let chunk = p.read_chunk(max);
        if p.len == 0 {
            if p.pooled {
                pool.retire(std::mem::take(&mut p.tail));
            }
            self.0 = None;
        }
        chunk
    }

    /// Copies up to `buf.len()` bytes out; returns how many.
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let n = self.0.as_mut().map_or(0, |p| p.read_into(buf));
        self.release_if_empty();
        n
    }

    /// Takes up to `max` (at least 1) bytes of the oldest piece without copying.
    pub(crate) fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let chunk = self.0.as_mut()?.read_chunk(max);
        self.release_if_empty();
        chunk
    }

    /// Stops tracking: true if the queue was listed (false for a repeated or stale entry).
    pub(crate) fn unlist(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|p| std::mem::take(&mut p.listed))
    }

    /// Tracked again (after [`unlist`](Self::unlist), while shared pieces remain).
    pub(crate) fn relist(&mut self) {
        if let Some(p) = self.0.as_mut() {
            p.listed = true;
        }
    }

    /// Copies the shared pieces that arrived before `mark` into one run of the queue's own
    /// memory, so that they no longer keep the buffers they came from alive. True when shared
    /// pieces remain.
    pub(crate) fn compact_older_than(&mut self, mark: u64) -> bool {
        self.0.as_mut().is_some_and(|p| p.compact_older_than(mark))
    }

    /// Drops everything; returns how many bytes were dropped.
    pub(crate) fn clear(&mut self) -> usize {
        self.0.take().map_or(0, |p| p.len)
    }

    /// An idle stream holds no buffer.
    fn release_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|p| p.len == 0) {
            self.0 = None;
        }
    }
}

impl Parts {
    fn push_shared(&mut self, piece: Bytes, mark: u64) -> bool {
        self.freeze_tail();
        self.len += piece.len();
        self.chunks.push_back((piece, mark));
        !std::mem::replace(&mut self.listed, true)
    }

    fn push_copy(&mut self, piece: &[u8]) {
        self.len += piece.len();
        if self.tail_shared
            && self.tail.capacity() - self.tail.len() < piece.len()
            && !self.tail.try_reclaim(piece.len())
        {
            // Leave what the tail holds where it is rather than copy it to a bigger buffer.
            self.freeze_tail();
            self.tail = BytesMut::new();
            self.tail_shared = false;
        }
        self.tail.extend_from_slice(piece);
    }

    fn push_pooled(&mut self, mut piece: &[u8], pool: &mut BlockPool) {
        self.len += piece.len();
        while !piece.is_empty() {
            let room = self.tail.capacity() - self.tail.len();
            if !self.pooled || room == 0 {
                self.freeze_tail();
                let old = std::mem::replace(&mut self.tail, pool.take());
                if std::mem::replace(&mut self.pooled, true) {
                    pool.retire(old);
                }
                self.tail_shared = false;
                continue;
            }
            let k = room.min(piece.len());
            self.tail.extend_from_slice(&piece[..k]);
            piece = &piece[k..];
        }
    }

    /// Moves what the tail holds to the end of `chunks` (no copy).
    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back((self.tail.split().freeze(), OWNED));
            self.tail_shared = true;
        }
    }

    fn compact_older_than(&mut self, mark: u64) -> bool {
        // Shared marks never decrease along the queue: the old ones form one range (with
        // small owned pieces perhaps between them).
        let old = |(_, m): &(Bytes, u64)| *m != OWNED && *m < mark;
        if let Some(first) = self.chunks.iter().position(old) {
            let last = self.chunks.iter().rposition(old).expect("one exists");
            let size = self.chunks.range(first..=last).map(|(b, _)| b.len()).sum();
            let mut run = BytesMut::with_capacity(size);
            for (piece, _) in self.chunks.drain(first..=last) {
                run.extend_from_slice(&piece);
            }
            self.chunks.insert(first, (run.freeze(), OWNED));
        }
        self.chunks.iter().any(|(_, m)| *m != OWNED)
    }

    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let k;
            if let Some((front, _)) = self.chunks.front_mut() {
                k = front.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
            } else if !self.tail.is_empty() {
                k = self.tail.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&self.tail[..k]);
                self.tail.advance(k);
            } else {
                break;
            }
            n += k;
        }
        self.len -= n;
        n
    }

    fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        let chunk = if let Some((front, _)) = self.chunks.front_mut() {
            if max >= front.len() {
                let whole = std::mem::take(front);
                self.chunks.pop_front();
                whole
            } else {
                front.split_to(max)
            }
        } else if !self.tail.is_empty() {
            let k = self.tail.len().min(max);
            self.tail_shared = true;
            self.tail.split_to(k).freeze()
        } else {
            return None;
        };
        self.len -= chunk.len();
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_across_shared_and_copied_pieces() {
        let mut q = ByteQueue::default();
        q.push_copy(b"ab");
        q.push_copy(b"cd");
        assert!(q.push_shared(Bytes::from_static(b"EFGH"), 0));
        q.push_copy(b"ij");
        assert_eq!(q.len(), 10);
        let mut buf = [0u8; 3];
        assert_eq!(q.read_into(&mut buf), 3);
        assert_eq!(&buf, b"abc");
        assert_eq!(q.read_chunk(100).unwrap(), &b"d"[..]);
        assert_eq!(q.read_chunk(2).unwrap(), &b"EF"[..]);
        let mut rest = [0u8; 10];
        assert_eq!(q.read_into(&mut rest), 4);
        assert_eq!(&rest[..4], b"GHij");
        assert!(q.is_empty());
        assert!(q.read_chunk(1).is_none());
    }

    #[test]
    fn tiny_pieces_share_one_allocation() {
        let mut q = ByteQueue::default();
        for i in 0..10_000u32 {
            q.push_copy(&[i as u8]);
        }
        let parts = q.0.as_ref().unwrap();
        assert_eq!(parts.chunks.len(), 0);
        assert!(parts.tail.capacity() < 2 * 10_000 + 64);
        assert_eq!(q.clear(), 10_000);
        assert!(q.0.is_none());
    }

    #[test]
    fn compaction_copies_only_old_shared_pieces_and_keeps_order() {
        let source = Bytes::from(vec![1u8; 4096]);
        let mut q = ByteQueue::default();
        q.push_copy(b"head");
        assert!(q.push_shared(source.slice(0..1000), 5));
        assert!(
            !q.push_shared(source.slice(1000..3000), 6),
            "already listed"
        );
        q.push_copy(b"mid");
        let newer = Bytes::from(vec![2u8; 100]);
        assert!(!q.push_shared(newer.clone(), 9));
        q.push_copy(b"tail");
        assert!(q.unlist());
        assert!(!q.unlist(), "a repeated entry is skipped");
        // Pieces that arrived before mark 7 are copied; the newer one stays shared.
        assert!(q.compact_older_than(7), "a shared piece remains");
        assert!(source.is_unique(), "no old piece of the source is kept");
        assert!(!newer.is_unique(), "the newer piece is still shared");
        q.relist();
        assert!(q.unlist(), "listed again");
        assert!(!q.compact_older_than(100), "nothing shared remains");
        assert!(newer.is_unique());
        let mut out = vec![0u8; 4 + 3000 + 3 + 100 + 4];
        assert_eq!(q.read_into(&mut out), out.len());
        assert_eq!(&out[..4], b"head");
        assert!(out[4..3004].iter().all(|&b| b == 1));
        assert_eq!(&out[3004..3007], b"mid");
        assert!(out[3007..3107].iter().all(|&b| b == 2));
        assert_eq!(&out[3107..], b"tail");
        assert!(q.is_empty());
    }

    #[test]
    fn a_tail_that_was_handed_out_is_not_copied_to_grow() {
        let mut q = ByteQueue::default();
        q.push_copy(&[1u8; 3000]);
        let first = q.read_chunk(1000).unwrap();
        let old_tail = q.0.as_ref().unwrap().tail.as_ptr();
        // No room left in the shared allocation: the 2000 waiting bytes stay where they are.
        q.push_copy(&vec![2u8; 1 << 20]);
        let parts = q.0.as_ref().unwrap();
        assert_eq!(parts.chunks.len(), 1);
        assert_eq!(parts.chunks[0].0.as_ptr(), old_tail, "not copied");
        assert_eq!(parts.tail.len(), 1 << 20);
        drop(first);
        let mut out = vec![0u8; 2000 + (1 << 20)];
        assert_eq!(q.read_into(&mut out), out.len());
        assert!(out[..2000].iter().all(|&b| b == 1));
        assert!(out[2000..].iter().all(|&b| b == 2));
    }

    #[test]
    fn large_writes_go_into_reused_blocks() {
        use crate::proto::block_pool::BLOCK;
        let mut pool = BlockPool::default();
        let mut q = ByteQueue::default();
        let data: Vec<u8> = (0..3 * BLOCK / 2).map(|i| i as u8).collect();
        q.push_write(&data, &mut pool);
        q.push_write(b"small", &mut pool);
        let mut frames = Vec::new();
        while let Some(f) = q.take_chunk(32 * 1024, &mut pool) {
            frames.push(f);
        }
        let joined: Vec<u8> = frames.iter().flatten().copied().collect();
        assert_eq!(&joined[..data.len()], &data[..]);
        assert_eq!(&joined[data.len()..], b"small");
        assert!(frames.iter().all(|f| f.len() <= 32 * 1024));
        // Both blocks went back to the pool; once the frames are written, they are reused.
        let first_block = frames[0].as_ptr();
        drop(frames);
        q.push_write(&data[..BLOCK], &mut pool);
        let f = q.take_chunk(usize::MAX, &mut pool).unwrap();
        assert_eq!(f.as_ptr(), first_block, "the oldest block is reused");
        // A small write into an empty queue gets a buffer of its size, not a block.
        drop(f);
        q.push_write(b"tiny", &mut pool);
        assert!(!q.0.as_ref().unwrap().pooled);
        assert!(q.0.as_ref().unwrap().tail.capacity() < 1024);
    }

    #[test]
    fn compacting_without_old_shared_pieces_copies_nothing() {
        let mut q = ByteQueue::default();
        q.push_copy(b"abc");
        let before = q.0.as_ref().unwrap().tail.as_ptr();
        assert!(!q.compact_older_than(u64::MAX - 1));
        assert_eq!(q.0.as_ref().unwrap().tail.as_ptr(), before);
        assert_eq!(q.read_chunk(10).unwrap(), &b"abc"[..]);
        assert!(!ByteQueue::default().compact_older_than(5));
    }
}
