//! The connection's read buffer and its memory policy.
//!
//! The driver reads the socket into one [`RecvBuffer`] in chunks of [`CHUNK`] bytes (large
//! reads: fewer system calls); the session then cuts complete frames out of it. While the
//! application keeps up (unread data below 1/8 of the receive budget), a payload of at least
//! [`SHARE_MIN`] bytes is handed to its stream as a zero-copy slice of the chunk. Every other
//! payload is copied into the stream's compact receive queue. A slice can keep its whole chunk
//! alive, at most `CHUNK / SHARE_MIN` = 8 times its size, and slices are only made while less
//! than 1/8 of the budget is unread, so chunks pinned by slow readers never exceed one budget;
//! copied data costs at most twice its size. Memory behind unread data therefore stays below
//! three times `max_receive_buffer`, however a peer sizes its frames and whatever the
//! application reads, while the common case (a reader that keeps up) copies nothing.

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::HEADER_LEN;

/// Size of one read chunk.
pub const CHUNK: usize = 256 * 1024;

/// Payloads of at least this many bytes may be sliced rather than copied.
pub const SHARE_MIN: usize = CHUNK / 8;

/// A read never goes into less room than this, unless the frame in progress needs less.
const MIN_READ: usize = 4096;

/// Bytes read from the socket and not yet cut into frames.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    buf: BytesMut,
}

impl RecvBuffer {
    /// An empty buffer (allocates on the first [`prepare`](Self::prepare)).
    pub fn new() -> RecvBuffer {
        RecvBuffer::default()
    }

    /// Returns the buffer with room for the next socket read. Starts a fresh chunk when the
    /// current one is too full, carrying over the partial frame at its end.
    pub fn prepare(&mut self) -> &mut BytesMut {
        let want = self.bytes_to_complete_frame().min(MIN_READ);
        if self.buf.capacity() - self.buf.len() < want {
            let mut fresh = BytesMut::with_capacity(CHUNK.max(self.buf.len() + MIN_READ));
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        &mut self.buf
    }

    /// Bytes still missing before the frame at the front of the buffer is complete.
    fn bytes_to_complete_frame(&self) -> usize {
        match self.header() {
            Some(h) => {
                HEADER_LEN + payload_len(h) - self.buf.len().min(HEADER_LEN + payload_len(h))
            }
            None => HEADER_LEN - self.buf.len(),
        }
        .max(1)
    }

    /// The header at the front, if all 8 bytes are buffered.
    pub(crate) fn header(&self) -> Option<&[u8; HEADER_LEN]> {
        self.buf
            .get(..HEADER_LEN)
            .map(|b| b.try_into().expect("8 bytes"))
    }

    /// Number of buffered bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends bytes (for tests and fuzzing; the driver reads through [`prepare`](Self::prepare)).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Drops `n` bytes from the front.
    pub(crate) fn skip(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// The first `n` buffered bytes.
    pub(crate) fn peek(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    /// Takes `n` bytes from the front without copying them.
    pub(crate) fn split(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n).freeze()
    }
}

fn payload_len(h: &[u8; HEADER_LEN]) -> usize {
    u16::from_le_bytes([h[2], h[3]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_zero_copy() {
        let mut rb = RecvBuffer::new();
        rb.prepare();
        rb.extend_from_slice(&vec![7u8; SHARE_MIN + 10]);
        let base = rb.buf.as_ptr();
        let big = rb.split(SHARE_MIN);
        assert_eq!(big.as_ptr(), base, "split does not copy");
        assert_eq!(rb.peek(10), &[7u8; 10]);
        rb.skip(10);
        assert!(rb.is_empty());
    }

    #[test]
    fn prepare_carries_partial_frame_into_a_fresh_chunk() {
        let mut rb = RecvBuffer::new();
        let b = rb.prepare();
        assert!(b.capacity() >= CHUNK);
        // Fill the chunk to the brim with a partial frame header + some payload.
        let mut frame = vec![1u8, 2, 0xff, 0xff, 3, 0, 0, 0];
        frame.resize(CHUNK, 9);
        rb.extend_from_slice(&frame);
        let b = rb.prepare();
        assert_eq!(b.len(), CHUNK);
        assert!(b.capacity() - b.len() >= 1);
        assert_eq!(&b[..8], &[1u8, 2, 0xff, 0xff, 3, 0, 0, 0]);
    }
}
