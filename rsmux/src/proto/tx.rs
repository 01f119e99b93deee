//! Frames ready for the socket, laid out for vectored writes.
//!
//! Headers and small payloads are copied into one staging buffer; a payload of
//! [`COPY_MAX`] bytes or more is chained behind it as its own `Bytes` (no copy). The driver
//! writes the pieces with one `write_vectored` call per batch, so several frames leave per
//! system call.

use std::{collections::VecDeque, io::IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{Header, HEADER_LEN};

/// Payloads below this size are copied next to their header rather than referenced.
pub const COPY_MAX: usize = 1024;

/// Most slices handed to one vectored write.
pub const MAX_IOVECS: usize = 64;

/// Size of one staging buffer (headers and small payloads of many frames).
const STAGING: usize = 4096;

/// Most frames one [`Through`] holds.
pub(crate) const THROUGH_FRAMES: usize = 8;

/// The frames of a write that skips the send queue (see
/// [`Connection::write_through`](super::Connection::write_through)): headers encoded by the
/// core, payloads still in the writer's buffer. Header `i` goes ahead of the `i`-th
/// `frame_len` bytes of the write.
#[derive(Debug)]
pub struct Through {
    headers: [[u8; HEADER_LEN]; THROUGH_FRAMES],
    frames: usize,
    frame_len: usize,
    len: usize,
}

impl Through {
    /// No frames yet; payloads are cut every `frame_len` bytes.
    pub(crate) fn new(frame_len: usize) -> Through {
        Through {
            headers: [[0; HEADER_LEN]; THROUGH_FRAMES],
            frames: 0,
            frame_len,
            len: 0,
        }
    }

    /// Appends the next frame, whose payload is `len` bytes of the write.
    pub(crate) fn push(&mut self, header: Header) {
        self.headers[self.frames] = header.encode();
        self.frames += 1;
        self.len += header.len as usize;
    }

    /// Bytes of the write the frames carry (a prefix of what was offered).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the frames carry nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes on the wire, headers included.
    pub fn wire_len(&self) -> usize {
        self.len + self.frames * HEADER_LEN
    }

    /// Fills `out` with headers and payload pieces of `data` (the write, at least
    /// [`len`](Self::len) bytes), in wire order; returns how many slices.
    pub fn io_slices<'a>(
        &'a self,
        data: &'a [u8],
        out: &mut [IoSlice<'a>; 2 * THROUGH_FRAMES],
    ) -> usize {
        let mut n = 0;
        for (header, payload) in self.headers[..self.frames]
            .iter()
            .zip(data[..self.len].chunks(self.frame_len))
        {
            out[n] = IoSlice::new(header);
            out[n + 1] = IoSlice::new(payload);
            n += 2;
        }
        n
    }

    /// Copies what the transport did not take, the wire bytes after the first `written`,
    /// into `tx` (they must leave before any other frame).
    pub fn queue_rest(&self, data: &[u8], written: usize, tx: &mut TxBuf) {
        let mut slices = [IoSlice::new(&[]); 2 * THROUGH_FRAMES];
        let n = self.io_slices(data, &mut slices);
        tx.push_wire(&slices[..n], written);
    }
}

/// Encoded frames waiting for the socket.
#[derive(Debug, Default)]
pub struct TxBuf {
    pieces: VecDeque<Bytes>,
    staging: BytesMut,
    /// Takes the rest of a [`Through`] the transport did not take; reused (see
    /// [`release_spare`](Self::release_spare)).
    spill: BytesMut,
    len: usize,
    /// Frames pushed so far.
    frames: u64,
}

impl TxBuf {
    /// An empty buffer.
    pub fn new() -> TxBuf {
        TxBuf::default()
    }

    /// Appends one frame.
    pub(crate) fn push(&mut self, header: Header, payload: Bytes) {
        self.len += 8 + payload.len();
        self.frames += 1;
        self.make_room(8 + payload.len().min(COPY_MAX));
        self.staging.extend_from_slice(&header.encode());
        if payload.len() < COPY_MAX {
            self.staging.extend_from_slice(&payload);
        } else {
            self.pieces.push_back(self.staging.split().freeze());
            self.pieces.push_back(payload);
        }
    }

    /// Appends a frame whose payload is a small array (UPD).
    pub(crate) fn push_small(&mut self, header: Header, payload: &[u8]) {
        self.len += 8 + payload.len();
        self.frames += 1;
        self.make_room(8 + payload.len());
        self.staging.extend_from_slice(&header.encode());
        self.staging.extend_from_slice(payload);
    }

    /// Appends bytes that are already framed, the `slices` after their first `skip` bytes
    /// (the rest of a [`Through`]; its frames were counted when it was made). They are copied
    /// into one reused buffer, so a write the transport takes only in part does not allocate.
    fn push_wire(&mut self, slices: &[IoSlice<'_>], mut skip: usize) {
        let total = slices.iter().map(|s| s.len()).sum::<usize>() - skip;
        if total == 0 {
            return;
        }
        if !self.staging.is_empty() {
            self.pieces.push_back(self.staging.split().freeze());
        }
        // Everything cut from `spill` before was written (a through write needs an empty
        // buffer), so its memory comes back unless it is too small.
        if !self.spill.try_reclaim(total) {
            self.spill = BytesMut::with_capacity(total.next_power_of_two());
        }
        for s in slices {
            let k = skip.min(s.len());
            skip -= k;
            self.spill.extend_from_slice(&s[k..]);
        }
        self.len += total;
        self.pieces.push_back(self.spill.split().freeze());
    }

    /// Whether a spill buffer is kept for reuse.
    pub fn holds_spare(&self) -> bool {
        self.spill.capacity() > 0
    }

    /// Lets go of the spill buffer (once the session has been quiet).
    pub fn release_spare(&mut self) {
        self.spill = BytesMut::new();
    }

    /// Makes room for `n` more staged bytes without growing a buffer whose start was already
    /// handed out (that would copy it): the staging buffer is reused once everything cut from
    /// it was written, or replaced. So framing does not allocate per frame.
    fn make_room(&mut self, n: usize) {
        if self.staging.capacity() - self.staging.len() >= n {
            return;
        }
        if !self.staging.is_empty() {
            self.pieces.push_back(self.staging.split().freeze());
        }
        if !self.staging.try_reclaim(STAGING.max(n)) {
            self.staging = BytesMut::with_capacity(STAGING.max(n));
        }
    }

    /// Frames pushed so far (written or not).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `out` with up to [`MAX_IOVECS`] slices, in order; returns how many.
    pub fn io_slices<'a>(&'a mut self, out: &mut [IoSlice<'a>; MAX_IOVECS]) -> usize {
        if !self.staging.is_empty() {
            self.pieces.push_back(self.staging.split().freeze());
        }
        let mut n = 0;
        for piece in self.pieces.iter().take(MAX_IOVECS) {
            out[n] = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// The first contiguous piece (for transports without vectored writes).
    pub fn chunk(&mut self) -> &[u8] {
        if !self.staging.is_empty() {
            self.pieces.push_back(self.staging.split().freeze());
        }
        self.pieces.front().map_or(&[], |b| b)
    }

    /// Removes `n` written bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        assert!(
            n <= self.len,
            "advanced past the end of the transmit buffer"
        );
        if !self.staging.is_empty() {
            self.pieces.push_back(self.staging.split().freeze());
        }
        self.len -= n;
        while n > 0 {
            let front = self.pieces.front_mut().expect("pieces cover len");
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.pieces.pop_front();
        }
        while self.pieces.front().is_some_and(|p| p.is_empty()) {
            self.pieces.pop_front();
        }
    }

    /// Drops everything (the connection is gone).
    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        self.staging.clear();
        self.len = 0;
    }

    /// All waiting bytes concatenated (tests and fuzzing).
    pub fn to_vec(&mut self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in &self.pieces {
            v.extend_from_slice(p);
        }
        v.extend_from_slice(&self.staging);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Cmd;

    #[test]
    fn small_frames_share_one_slice_large_payloads_are_chained() {
        let mut tx = TxBuf::new();
        tx.push(Header::new(1, Cmd::Syn, 0, 3), Bytes::new());
        tx.push(Header::new(1, Cmd::Psh, 2, 3), Bytes::from_static(b"hi"));
        let big = Bytes::from(vec![5u8; 4000]);
        let big_ptr = big.as_ptr();
        tx.push(Header::new(1, Cmd::Psh, 4000, 3), big);
        tx.push(Header::new(1, Cmd::Fin, 0, 3), Bytes::new());
        assert_eq!(tx.len(), 8 + 10 + 4008 + 8);
        let expect = tx.to_vec();
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = tx.io_slices(&mut slices);
        assert_eq!(n, 3, "staging, big payload, staging");
        assert_eq!(slices[1].as_ptr(), big_ptr, "large payload is not copied");
        let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(joined, expect);
        // Partial writes advance across piece boundaries.
        tx.advance(20);
        tx.advance(4000);
        assert_eq!(tx.to_vec(), expect[4020..]);
        tx.advance(tx.len());
        assert!(tx.is_empty());
        assert!(tx.chunk().is_empty());
    }

    #[test]
    fn advance_works_before_any_slice_was_taken() {
        let mut tx = TxBuf::new();
        tx.push(Header::new(1, Cmd::Syn, 0, 3), Bytes::new());
        tx.push(Header::new(1, Cmd::Fin, 0, 3), Bytes::new());
        tx.advance(8);
        assert_eq!(tx.to_vec(), Header::new(1, Cmd::Fin, 0, 3).encode());
        tx.advance(8);
        assert!(tx.is_empty());
    }
}
