//! A queue of bytes in order, for one direction of one stream: received bytes the application
//! has not read, or bytes it wrote that are not framed yet.
//!
//! Large pieces are kept as the `Bytes` they arrived as (slices of the connection's read
//! chunks, or the application's own buffers given to `write_chunk`): no copy. Small ones are
//! appended to one growing tail buffer instead of getting a queue slot each, so a flood of tiny
//! frames or writes costs about its size in memory, not a slot and an allocation per piece.
//! [`ByteQueue::compact`] copies the shared pieces out when they would pin too much memory
//! (see `recv_buffer`).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The queue; boxed so that a stream with nothing queued spends one pointer on it.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue(Option<Box<Parts>>);

#[derive(Debug, Default)]
struct Parts {
    /// Older data, in order: shared pieces, frozen parts of the tail and compacted runs.
    chunks: VecDeque<Bytes>,
    /// The first `owned` entries of `chunks` own their memory (compacted): compaction leaves
    /// them alone.
    owned: usize,
    /// A shared piece was pushed since the last compaction.
    holds_shared: bool,
    /// The newest small pieces, after everything in `chunks`.
    tail: BytesMut,
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

    /// Appends a piece that is kept as it is (no copy). True when the queue held no shared
    /// piece since its last compaction (the caller tracks which queues may need one).
    pub(crate) fn push_shared(&mut self, piece: Bytes) -> bool {
        self.0.get_or_insert_default().push_shared(piece)
    }

    /// Appends a small piece by copying it into the tail.
    pub(crate) fn push_copy(&mut self, piece: &[u8]) {
        self.0.get_or_insert_default().push_copy(piece);
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

    /// Copies every shared piece pushed since the last compaction into memory of the queue's
    /// own, so that it no longer keeps the buffers it came from alive.
    pub(crate) fn compact(&mut self) {
        if let Some(p) = self.0.as_mut() {
            p.compact();
        }
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
    fn push_shared(&mut self, piece: Bytes) -> bool {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += piece.len();
        self.chunks.push_back(piece);
        !std::mem::replace(&mut self.holds_shared, true)
    }

    fn push_copy(&mut self, piece: &[u8]) {
        self.len += piece.len();
        self.tail.extend_from_slice(piece);
    }

    fn compact(&mut self) {
        if !std::mem::take(&mut self.holds_shared) {
            return;
        }
        let loose = self
            .chunks
            .range(self.owned..)
            .map(Bytes::len)
            .sum::<usize>();
        let mut run = BytesMut::with_capacity(loose + self.tail.len());
        for piece in self.chunks.drain(self.owned..) {
            run.extend_from_slice(&piece);
        }
        run.extend_from_slice(&self.tail);
        self.tail = BytesMut::new();
        if !run.is_empty() {
            self.chunks.push_back(run.freeze());
            self.owned += 1;
        }
    }

    /// The front piece is gone.
    fn popped(&mut self) {
        self.chunks.pop_front();
        self.owned = self.owned.saturating_sub(1);
    }

    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let k;
            if let Some(front) = self.chunks.front_mut() {
                k = front.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    self.popped();
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
        let chunk = if let Some(front) = self.chunks.front_mut() {
            if max >= front.len() {
                let whole = std::mem::take(front);
                self.popped();
                whole
            } else {
                front.split_to(max)
            }
        } else if !self.tail.is_empty() {
            let k = self.tail.len().min(max);
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
        assert!(q.push_shared(Bytes::from_static(b"EFGH")));
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
    fn compaction_lets_go_of_shared_buffers_and_keeps_order() {
        let source = Bytes::from(vec![1u8; 4096]);
        let mut q = ByteQueue::default();
        q.push_copy(b"head");
        assert!(q.push_shared(source.slice(0..1000)));
        assert!(!q.push_shared(source.slice(1000..3000)), "already tracked");
        q.push_copy(b"tail");
        q.compact();
        let mut source = source;
        assert!(source.is_unique(), "no piece of the source is kept");
        // A compacted run is never copied again; newer shared pieces are.
        assert!(
            q.push_shared(source.split_to(10)),
            "tracked again after compaction"
        );
        q.compact();
        let parts = q.0.as_ref().unwrap();
        assert_eq!(parts.chunks.len(), 2);
        assert_eq!(parts.owned, 2);
        let mut out = vec![0u8; 4 + 3000 + 4 + 10];
        assert_eq!(q.read_into(&mut out), out.len());
        assert_eq!(&out[..4], b"head");
        assert!(out[4..3004].iter().all(|&b| b == 1));
        assert_eq!(&out[3004..3008], b"tail");
        assert!(out[3008..].iter().all(|&b| b == 1));
        assert!(q.is_empty());
        assert!(source.is_unique());
    }

    #[test]
    fn compacting_without_shared_pieces_copies_nothing() {
        let mut q = ByteQueue::default();
        q.push_copy(b"abc");
        let before = q.0.as_ref().unwrap().tail.as_ptr();
        q.compact();
        assert_eq!(q.0.as_ref().unwrap().tail.as_ptr(), before);
        assert_eq!(q.read_chunk(10).unwrap(), &b"abc"[..]);
    }
}
