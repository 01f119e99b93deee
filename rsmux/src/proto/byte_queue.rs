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

/// Most emptied queue parts a [`PartsStash`] keeps.
const STASH_MAX: usize = 16;

/// Emptied queue parts of a session, kept for the next queue that fills: a stream whose queue
/// keeps emptying and filling (a reader that keeps up) allocates nothing for it.
#[derive(Debug, Default)]
// Boxed on purpose: a queue holds `Box<Parts>`, so parts move in and out without reallocating.
#[allow(clippy::vec_box)]
pub(crate) struct PartsStash(Vec<Box<Parts>>);

impl PartsStash {
    fn take(&mut self) -> Box<Parts> {
        self.0.pop().unwrap_or_default()
    }

    fn put(&mut self, mut parts: Box<Parts>) {
        if self.0.len() < STASH_MAX {
            parts.chunks.clear();
            parts.listed = false;
            parts.pooled = false;
            parts.len = 0;
            // A tail whose memory was handed out cannot be reused in place: let it go.
            if parts.tail_shared || parts.tail.capacity() > 4096 {
                parts.tail = BytesMut::new();
            }
            parts.tail.clear();
            parts.tail_shared = false;
            self.0.push(parts);
        }
    }

    /// Lets go of every kept part (the session is quiet).
    pub(crate) fn release(&mut self) {
        self.0 = Vec::new();
    }

    /// Whether parts are kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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
    pub(crate) fn push_shared(&mut self, piece: Bytes, mark: u64, stash: &mut PartsStash) -> bool {
        self.parts(stash).push_shared(piece, mark)
    }

    /// Whether the newest piece is shared and at least `min` bytes long: a small piece right
    /// after it may be shared too (no tail to allocate), since that happens at most once per
    /// large piece.
    pub(crate) fn ends_with_shared(&self, min: usize) -> bool {
        self.0.as_ref().is_some_and(|p| {
            p.tail.is_empty()
                && p.chunks
                    .back()
                    .is_some_and(|(b, m)| *m != OWNED && b.len() >= min)
        })
    }

    /// Appends a small piece by copying it into the tail.
    pub(crate) fn push_copy(&mut self, piece: &[u8], stash: &mut PartsStash) {
        self.parts(stash).push_copy(piece);
    }

    fn parts(&mut self, stash: &mut PartsStash) -> &mut Parts {
        self.0.get_or_insert_with(|| stash.take())
    }

    /// Appends `piece`, taken from a write of `write_len` bytes: large writes, and small ones
    /// that fit or find a free block, go into blocks of `pool`; others into a buffer of their
    /// size. (A large write may be taken a little at a time, as a v2 window opens.)
    pub(crate) fn push_write(
        &mut self,
        piece: &[u8],
        write_len: usize,
        pool: &mut BlockPool,
        stash: &mut PartsStash,
    ) {
        let p = self.parts(stash);
        let fits = p.pooled && p.tail.capacity() - p.tail.len() >= piece.len();
        if fits || write_len >= BLOCK_WRITE_MIN {
            p.push_pooled(piece, pool);
        } else if let Some(block) = pool.take_free() {
            // A small write takes a block only if one is free (no allocation either way).
            p.switch_block(block, pool);
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
    pub(crate) fn take_chunk(
        &mut self,
        max: usize,
        pool: &mut BlockPool,
        stash: &mut PartsStash,
    ) -> Option<Bytes> {
        let p = self.0.as_mut()?;
        let chunk = p.read_chunk(max);
        if p.len == 0 && p.pooled {
            pool.retire(std::mem::take(&mut p.tail));
        }
        self.release_if_empty(stash);
        chunk
    }

    /// Copies up to `buf.len()` bytes out; returns how many.
    pub(crate) fn read_into(&mut self, buf: &mut [u8], stash: &mut PartsStash) -> usize {
        let n = self.0.as_mut().map_or(0, |p| p.read_into(buf));
        self.release_if_empty(stash);
        n
    }

    /// Takes up to `max` (at least 1) bytes of the oldest piece without copying.
    pub(crate) fn read_chunk(&mut self, max: usize, stash: &mut PartsStash) -> Option<Bytes> {
        let chunk = self.0.as_mut()?.read_chunk(max);
        self.release_if_empty(stash);
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

    /// An idle stream holds no buffer (its parts go to the stash).
    fn release_if_empty(&mut self, stash: &mut PartsStash) {
        if self.0.as_ref().is_some_and(|p| p.len == 0) {
            stash.put(self.0.take().expect("checked"));
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
                self.switch_block(pool.take(), pool);
                continue;
            }
            let k = room.min(piece.len());
            self.tail.extend_from_slice(&piece[..k]);
            piece = &piece[k..];
        }
    }

    /// Makes `block` the tail; what the old tail holds stays queued (no copy), and an old
    /// block goes back to `pool`.
    fn switch_block(&mut self, block: BytesMut, pool: &mut BlockPool) {
        self.freeze_tail();
        let old = std::mem::replace(&mut self.tail, block);
        if std::mem::replace(&mut self.pooled, true) {
            pool.retire(old);
        }
        self.tail_shared = false;
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
        let mut st = PartsStash::default();
        q.push_copy(b"ab", &mut st);
        q.push_copy(b"cd", &mut st);
        assert!(q.push_shared(Bytes::from_static(b"EFGH"), 0, &mut st));
        q.push_copy(b"ij", &mut st);
        assert_eq!(q.len(), 10);
        let mut buf = [0u8; 3];
        assert_eq!(q.read_into(&mut buf, &mut st), 3);
        assert_eq!(&buf, b"abc");
        assert_eq!(q.read_chunk(100, &mut st).unwrap(), &b"d"[..]);
        assert_eq!(q.read_chunk(2, &mut st).unwrap(), &b"EF"[..]);
        let mut rest = [0u8; 10];
        assert_eq!(q.read_into(&mut rest, &mut st), 4);
        assert_eq!(&rest[..4], b"GHij");
        assert!(q.is_empty());
        assert!(q.read_chunk(1, &mut st).is_none());
    }

    #[test]
    fn tiny_pieces_share_one_allocation() {
        let mut q = ByteQueue::default();
        let mut st = PartsStash::default();
        for i in 0..10_000u32 {
            q.push_copy(&[i as u8], &mut st);
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
        let mut st = PartsStash::default();
        q.push_copy(b"head", &mut st);
        assert!(q.push_shared(source.slice(0..1000), 5, &mut st));
        assert!(
            !q.push_shared(source.slice(1000..3000), 6, &mut st),
            "already listed"
        );
        q.push_copy(b"mid", &mut st);
        let newer = Bytes::from(vec![2u8; 100]);
        assert!(!q.push_shared(newer.clone(), 9, &mut st));
        q.push_copy(b"tail", &mut st);
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
        assert_eq!(q.read_into(&mut out, &mut st), out.len());
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
        let mut st = PartsStash::default();
        q.push_copy(&[1u8; 3000], &mut st);
        let first = q.read_chunk(1000, &mut st).unwrap();
        let old_tail = q.0.as_ref().unwrap().tail.as_ptr();
        // No room left in the shared allocation: the 2000 waiting bytes stay where they are.
        q.push_copy(&vec![2u8; 1 << 20], &mut st);
        let parts = q.0.as_ref().unwrap();
        assert_eq!(parts.chunks.len(), 1);
        assert_eq!(parts.chunks[0].0.as_ptr(), old_tail, "not copied");
        assert_eq!(parts.tail.len(), 1 << 20);
        drop(first);
        let mut out = vec![0u8; 2000 + (1 << 20)];
        assert_eq!(q.read_into(&mut out, &mut st), out.len());
        assert!(out[..2000].iter().all(|&b| b == 1));
        assert!(out[2000..].iter().all(|&b| b == 2));
    }

    #[test]
    fn large_writes_go_into_reused_blocks() {
        use crate::proto::block_pool::BLOCK;
        let mut pool = BlockPool::default();
        let mut q = ByteQueue::default();
        let mut st = PartsStash::default();
        let data: Vec<u8> = (0..3 * BLOCK / 2).map(|i| i as u8).collect();
        q.push_write(&data, data.len(), &mut pool, &mut st);
        q.push_write(b"small", 5, &mut pool, &mut st);
        let mut frames = Vec::new();
        while let Some(f) = q.take_chunk(32 * 1024, &mut pool, &mut st) {
            frames.push(f);
        }
        let joined: Vec<u8> = frames.iter().flatten().copied().collect();
        assert_eq!(&joined[..data.len()], &data[..]);
        assert_eq!(&joined[data.len()..], b"small");
        assert!(frames.iter().all(|f| f.len() <= 32 * 1024));
        // Both blocks went back to the pool; once the frames are written, they are reused.
        let first_block = frames[0].as_ptr();
        drop(frames);
        q.push_write(&data[..BLOCK], BLOCK, &mut pool, &mut st);
        let f = q.take_chunk(usize::MAX, &mut pool, &mut st).unwrap();
        assert_eq!(f.as_ptr(), first_block, "the oldest block is reused");
        // A small write takes a free block (the second one) ...
        q.push_write(b"tiny", 4, &mut pool, &mut st);
        assert!(q.0.as_ref().unwrap().pooled);
        drop(f);
        // ... but with no block free, it gets a buffer of its size.
        let mut q = ByteQueue::default();
        q.push_write(b"tiny", 4, &mut BlockPool::default(), &mut st);
        assert!(!q.0.as_ref().unwrap().pooled);
        assert!(q.0.as_ref().unwrap().tail.capacity() < 1024);
    }

    #[test]
    fn only_a_large_shared_piece_lets_the_next_small_one_be_shared() {
        let mut st = PartsStash::default();
        let mut q = ByteQueue::default();
        assert!(!q.ends_with_shared(1024));
        q.push_shared(Bytes::from(vec![1u8; 2000]), 0, &mut st);
        assert!(q.ends_with_shared(1024));
        q.push_shared(Bytes::from_static(b"small"), 0, &mut st);
        assert!(!q.ends_with_shared(1024), "only once per large piece");
        q.push_copy(b"x", &mut st);
        assert!(!q.ends_with_shared(1));
    }

    #[test]
    fn compacting_without_old_shared_pieces_copies_nothing() {
        let mut q = ByteQueue::default();
        let mut st = PartsStash::default();
        q.push_copy(b"abc", &mut st);
        let before = q.0.as_ref().unwrap().tail.as_ptr();
        assert!(!q.compact_older_than(u64::MAX - 1));
        assert_eq!(q.0.as_ref().unwrap().tail.as_ptr(), before);
        assert_eq!(q.read_chunk(10, &mut st).unwrap(), &b"abc"[..]);
        assert!(!ByteQueue::default().compact_older_than(5));
    }
}
