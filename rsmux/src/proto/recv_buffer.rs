//! The connection's read buffer and its memory policy.
//!
//! The driver reads the socket into one [`RecvBuffer`] in chunks of [`CHUNK`] bytes (large
//! reads: fewer system calls); the session then cuts complete frames out of it. A payload of at
//! least [`SHARE_MIN`] bytes is handed to its stream as a zero-copy slice of the chunk; smaller
//! ones are copied into the stream's compact queue (a slice would cost more than the copy).
//!
//! A slice keeps its whole chunk alive, so a stream whose reader is slow could pin many
//! chunks with a few unread bytes each. [`Slices`] bounds that: it lists the streams holding
//! slices, and every time the receive budget's worth of chunks (at least one) was started, the
//! session copies out the slices that arrived before the last such period, letting their
//! chunks go. A slice therefore lives at most two periods: slices never pin more than about
//! `2 * max(max_receive_buffer, CHUNK) + 2 * CHUNK` bytes of chunks, whatever the frame sizes
//! or the readers do, and copied data costs at most twice its size. A reader that keeps up,
//! even one a full budget behind (an echo whose writes wait for the socket), takes its slices
//! before they are old, so the common case copies nothing. When no slice of the current chunk
//! is left, the next read reuses its memory instead of allocating.

use bytes::{Buf, Bytes, BytesMut};

use super::{ids::StreamId, spare::Spares};

use crate::frame::HEADER_LEN;

/// Size of one read chunk.
pub const CHUNK: usize = 256 * 1024;

/// Payloads of at least this many bytes are sliced rather than copied.
pub const SHARE_MIN: usize = 1024;

/// Longest list of [`Slices`] before a compaction pass (bounds the list's memory).
const SLICES_LIST_MAX: usize = 1024;

/// Most earlier chunks kept for reuse (most of them still used by slices).
const RETIRED_MAX: usize = 64;

/// Free earlier chunks kept for the next switch.
const FREE_KEEP: usize = 16;

/// A read never goes into less room than this, unless the frame in progress needs less.
const MIN_READ: usize = 4096;

/// Smallest chunk: a session starts with it and returns to it once quiet. A read that fills
/// all the room it was given (at least half a chunk) doubles the next chunk, up to [`CHUNK`];
/// 64 reads in a row of less than an eighth of a chunk halve it. So a session with light traffic
/// touches a few pages, a bulk transfer reads 256 KiB per system call.
pub const MIN_CHUNK: usize = 16 * 1024;

/// Small reads in a row after which chunks halve.
const SHRINK_AFTER: u32 = 64;

/// Free earlier chunks kept while chunks are small.
const FREE_KEEP_SMALL: usize = 2;

/// Bytes read from the socket and not yet cut into frames.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    buf: BytesMut,
    /// Chunks started so far.
    chunks_started: u64,
    /// Earlier chunks, kept to be reused once no slice of them is left.
    retired: Spares<RETIRED_MAX>,
    /// Size of the next chunk (0 counts as [`MIN_CHUNK`]).
    size: usize,
    /// Room the last [`prepare`](Self::prepare) offered.
    offered: usize,
    /// Reads in a row that took less than an eighth of a chunk.
    small_reads: u32,
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
            let room = self.chunk_size().max(self.buf.len() + MIN_READ) - self.buf.len();
            // Reuse the chunk when no slice of it is left (moving the partial frame to its
            // front); otherwise go on in an earlier chunk no slice holds any more, or a fresh
            // one (memory the kernel has not handed out yet costs a page fault per page).
            if !self.buf.try_reclaim(room) {
                let size = self.buf.len() + room;
                let keep = if self.chunk_size() >= CHUNK {
                    FREE_KEEP
                } else {
                    FREE_KEEP_SMALL
                };
                let mut next = self
                    .retired
                    .take(size, MIN_CHUNK, keep)
                    .unwrap_or_else(|| BytesMut::with_capacity(size));
                next.extend_from_slice(&self.buf);
                let old = std::mem::replace(&mut self.buf, next);
                if self.chunks_started > 0 {
                    self.retired.retire(old);
                }
                self.chunks_started += 1;
            }
        }
        self.offered = self.buf.capacity() - self.buf.len();
        &mut self.buf
    }

    /// The socket read after [`prepare`](Self::prepare) returned `n` bytes: if it filled all
    /// the room offered, more was waiting, and the next chunk is twice as large (up to
    /// [`CHUNK`]).
    pub fn note_read(&mut self, n: usize) {
        let size = self.chunk_size();
        if n >= self.offered && self.offered >= size / 2 {
            // A large read filled all the room: more was waiting.
            self.size = (size * 2).min(CHUNK);
            self.small_reads = 0;
        } else if n < size / 8 {
            // Many small reads in a row: the traffic is light, a smaller chunk will do.
            self.small_reads += 1;
            if self.small_reads == SHRINK_AFTER {
                self.size = (size / 2).max(MIN_CHUNK);
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// Size of the next chunk.
    fn chunk_size(&self) -> usize {
        self.size.max(MIN_CHUNK)
    }

    /// Lets go of the retired chunks, and of the current one if it holds nothing, and starts
    /// again from [`MIN_CHUNK`] (the driver calls this once the session has been quiet for a
    /// while, so an idle session keeps at most a partial frame).
    pub fn release_retired(&mut self) {
        self.retired.clear();
        self.size = MIN_CHUNK;
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Whether retired chunks are kept (see [`release_retired`](Self::release_retired)).
    pub fn holds_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Chunks started so far (including reused ones).
    pub(crate) fn chunks_started(&self) -> u64 {
        self.chunks_started
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

/// The streams that may hold slices of read chunks, and when their old slices were last
/// copied out (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Slices {
    /// Streams whose queues are listed (see `ByteQueue::push_shared`); an id may repeat.
    streams: Vec<StreamId>,
    /// [`RecvBuffer::chunks_started`] at the last pass.
    pass_at: u64,
}

impl Slices {
    /// Stream `id` now holds slices.
    pub(crate) fn note(&mut self, id: StreamId) {
        self.streams.push(id);
    }

    /// If a pass is due (the budget's worth of chunks started since the last one, or a long
    /// list): the arrival mark before which slices are old. Slices are marked with
    /// [`RecvBuffer::chunks_started`] when they arrive.
    pub(crate) fn due(&mut self, rb: &RecvBuffer, budget: usize) -> Option<u64> {
        let started = rb.chunks_started();
        if self.streams.is_empty() {
            self.pass_at = started;
            return None;
        }
        let period = (budget / CHUNK).max(1) as u64;
        if started - self.pass_at < period && self.streams.len() < SLICES_LIST_MAX {
            return None;
        }
        self.pass_at = started;
        Some(started.saturating_sub(period))
    }

    /// The listed streams, for a pass (those still holding slices are noted again).
    pub(crate) fn take(&mut self) -> Vec<StreamId> {
        std::mem::take(&mut self.streams)
    }
}

fn payload_len(h: &[u8; HEADER_LEN]) -> usize {
    u16::from_le_bytes([h[2], h[3]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RecvBuffer {
        /// A buffer already at full chunk size (as after a bulk transfer began).
        fn bulk() -> RecvBuffer {
            RecvBuffer {
                size: CHUNK,
                ..RecvBuffer::default()
            }
        }
    }

    #[test]
    fn chunks_grow_while_reads_fill_them_and_shrink_when_quiet() {
        let mut rb = RecvBuffer::new();
        assert_eq!(
            rb.prepare().capacity(),
            MIN_CHUNK,
            "a new session starts small"
        );
        // A read that does not fill the room changes nothing.
        rb.note_read(100);
        assert_eq!(rb.chunk_size(), MIN_CHUNK);
        let mut size = MIN_CHUNK;
        while size < CHUNK {
            let room = rb.prepare().capacity() - rb.len();
            rb.extend_from_slice(&vec![0u8; room]);
            rb.note_read(room);
            size *= 2;
            assert_eq!(rb.chunk_size(), size);
            rb.skip(rb.len());
        }
        let room = rb.prepare().capacity() - rb.len();
        rb.note_read(room);
        assert_eq!(rb.chunk_size(), CHUNK, "never beyond CHUNK");
        rb.skip(rb.len());
        // Light traffic halves the chunk size after a run of small reads.
        for _ in 0..SHRINK_AFTER {
            rb.prepare();
            rb.note_read(100);
        }
        assert_eq!(rb.chunk_size(), CHUNK / 2);
        rb.release_retired();
        assert_eq!(rb.chunk_size(), MIN_CHUNK);
        assert_eq!(rb.buf.capacity(), 0, "an empty current chunk is let go");
    }

    #[test]
    fn split_is_zero_copy() {
        let mut rb = RecvBuffer::bulk();
        rb.prepare();
        rb.extend_from_slice(&[7u8; SHARE_MIN + 10]);
        let base = rb.buf.as_ptr();
        let big = rb.split(SHARE_MIN);
        assert_eq!(big.as_ptr(), base, "split does not copy");
        assert_eq!(rb.peek(10), &[7u8; 10]);
        rb.skip(10);
        assert!(rb.is_empty());
    }

    #[test]
    fn prepare_carries_partial_frame_into_a_fresh_chunk() {
        let mut rb = RecvBuffer::bulk();
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

    #[test]
    fn a_chunk_without_slices_is_reused() {
        let mut rb = RecvBuffer::bulk();
        rb.prepare();
        assert_eq!(rb.chunks_started(), 1);
        let base = rb.buf.as_ptr();
        rb.extend_from_slice(&vec![1u8; CHUNK - 3]);
        let slice = rb.split(CHUNK - 5);
        // A slice is alive: the next read goes into a fresh chunk.
        rb.prepare();
        assert_eq!(rb.chunks_started(), 2);
        assert_ne!(rb.buf.as_ptr(), base);
        drop(slice);
        // No slice of the second chunk is alive: it is reused, its bytes moved to the front.
        let second = rb.buf.as_ptr();
        rb.extend_from_slice(&vec![2u8; CHUNK - rb.len() - 1]);
        let pending = rb.len();
        drop(rb.split(pending - 2));
        let b = rb.prepare();
        assert_eq!(b.as_ptr(), second);
        assert_eq!(&b[..], &[2u8, 2]);
        assert!(b.capacity() >= CHUNK);
        assert_eq!(rb.chunks_started(), 2);
    }

    #[test]
    fn a_retired_chunk_is_reused_once_its_slices_are_gone() {
        let mut rb = RecvBuffer::bulk();
        let first = rb.prepare().as_ptr();
        rb.extend_from_slice(&vec![1u8; CHUNK]);
        let held = rb.split(CHUNK);
        rb.prepare();
        let second = rb.buf.as_ptr();
        assert_ne!(second, first);
        drop(held);
        // The second chunk is still held; the first is free again and is taken next.
        rb.extend_from_slice(&vec![2u8; CHUNK]);
        let held = rb.split(CHUNK - 3);
        assert_eq!(rb.prepare().as_ptr(), first);
        assert_eq!(&rb.buf[..], &[2u8; 3]);
        assert_eq!(rb.chunks_started(), 3);
        drop(held);
        assert!(rb.holds_retired());
        rb.release_retired();
        assert!(!rb.holds_retired());
    }

    #[test]
    fn a_pass_is_due_once_the_budget_worth_of_chunks_started() {
        let mut rb = RecvBuffer::bulk();
        let mut slices = Slices::default();
        let budget = 2 * CHUNK;
        rb.prepare();
        assert_eq!(slices.due(&rb, budget), None, "nothing listed");
        slices.note(StreamId::new(7));
        let mut pinned = Vec::new();
        for started in 2..=5u64 {
            // Keep a slice of every chunk alive, so each read starts a fresh one.
            let room = rb.prepare().capacity() - rb.len();
            rb.extend_from_slice(&vec![0u8; room]);
            pinned.push(rb.split(rb.len()));
            rb.prepare();
            assert_eq!(rb.chunks_started(), started);
            let expect = match started {
                3 => Some(1),
                5 => Some(3),
                _ => None,
            };
            assert_eq!(slices.due(&rb, budget), expect, "{started} chunks");
        }
        assert_eq!(slices.take(), vec![StreamId::new(7)]);
        assert_eq!(slices.due(&rb, budget), None, "the list is empty");
        for id in 0..SLICES_LIST_MAX as u32 {
            slices.note(StreamId::new(id));
        }
        assert_eq!(slices.due(&rb, budget), Some(3), "a long list");
        assert_eq!(slices.take().len(), SLICES_LIST_MAX);
    }
}
