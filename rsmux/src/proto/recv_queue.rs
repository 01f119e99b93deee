//! A stream's received, unread bytes.
//!
//! Large payloads stay zero-copy slices of the connection's read chunks; small ones are appended
//! to one growing tail buffer instead of getting an allocation each. So a flood of tiny frames
//! costs about its payload size in memory, not a queue slot and an allocation per frame, and the
//! receive budget (which counts payload bytes) bounds memory whatever the frame sizes.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The queue; boxed so that a stream with nothing buffered spends one pointer on it.
#[derive(Debug, Default)]
pub(crate) struct RecvQueue(Option<Box<Parts>>);

#[derive(Debug, Default)]
struct Parts {
    /// Older data, in order: large slices and frozen parts of the tail.
    chunks: VecDeque<Bytes>,
    /// The newest small payloads, after everything in `chunks`.
    tail: BytesMut,
    len: usize,
}

impl RecvQueue {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Appends a payload that is kept as it is (no copy).
    pub(crate) fn push_shared(&mut self, payload: Bytes) {
        self.0.get_or_insert_default().push_shared(payload);
    }

    /// Appends a small payload by copying it into the tail.
    pub(crate) fn push_copy(&mut self, payload: &[u8]) {
        self.0.get_or_insert_default().push_copy(payload);
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
    fn push_shared(&mut self, payload: Bytes) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += payload.len();
        self.chunks.push_back(payload);
    }

    fn push_copy(&mut self, payload: &[u8]) {
        self.len += payload.len();
        self.tail.extend_from_slice(payload);
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
        self.consumed(n);
        n
    }

    fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        let chunk = if let Some(front) = self.chunks.front_mut() {
            if max >= front.len() {
                self.chunks.pop_front().expect("front exists")
            } else {
                front.split_to(max)
            }
        } else if !self.tail.is_empty() {
            let k = self.tail.len().min(max);
            self.tail.split_to(k).freeze()
        } else {
            return None;
        };
        self.consumed(chunk.len());
        Some(chunk)
    }

    fn consumed(&mut self, n: usize) {
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_across_shared_and_copied_payloads() {
        let mut q = RecvQueue::default();
        q.push_copy(b"ab");
        q.push_copy(b"cd");
        q.push_shared(Bytes::from_static(b"EFGH"));
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
    fn tiny_payloads_share_one_allocation() {
        let mut q = RecvQueue::default();
        for i in 0..10_000u32 {
            q.push_copy(&[i as u8]);
        }
        let parts = q.0.as_ref().unwrap();
        assert_eq!(parts.chunks.len(), 0);
        assert!(parts.tail.capacity() < 2 * 10_000 + 64);
        assert_eq!(q.clear(), 10_000);
        assert!(q.0.is_none());
    }
}
