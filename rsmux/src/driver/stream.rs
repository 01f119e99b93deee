//! Public stream handles: [`Stream`] and its owned halves.

use std::{
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{deadline::IntoDeadline, now, Inner, Shared};
use crate::{
    error::Error,
    proto::{Progress, ReadOutcome, StreamId, BOTH_HANDLES, READ_HANDLE, WRITE_HANDLE},
};

/// Refers to one stream and releases its share of it when dropped.
struct Handle {
    shared: Arc<Shared>,
    id: StreamId,
    /// Which directions this handle owns (`READ_HANDLE`, `WRITE_HANDLE`).
    owns: u8,
}

impl Handle {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        // Zero only the part of an uninitialized buffer this read can fill, not all of it.
        let want = inner
            .conn
            .readable_bytes(self.id)
            .max(1)
            .min(buf.remaining());
        let res = inner
            .conn
            .read(self.id, buf.initialize_unfilled_to(want), now());
        let poll = match res {
            Ok(ReadOutcome::Data(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Ok(ReadOutcome::Eof) => Poll::Ready(Ok(())),
            Ok(ReadOutcome::Blocked) => {
                inner.park_reader(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        };
        inner.dispatch();
        poll
    }

    fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, Error>> {
        let mut inner = self.shared.lock();
        let res = inner.conn.read_chunk(self.id, max, now());
        let poll = match res {
            Ok(ReadOutcome::Data(b)) => Poll::Ready(Ok(Some(b))),
            Ok(ReadOutcome::Eof) => Poll::Ready(Ok(None)),
            Ok(ReadOutcome::Blocked) => {
                inner.park_reader(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        };
        inner.dispatch();
        poll
    }

    /// Runs one send-side core call, parking the writer when it is blocked.
    fn poll_send<F>(&self, cx: &mut Context<'_>, op: F) -> Poll<io::Result<usize>>
    where
        F: FnOnce(&mut crate::proto::Connection, StreamId) -> Result<Progress, Error>,
    {
        let mut inner = self.shared.lock();
        let poll = match op(&mut inner.conn, self.id) {
            Ok(Progress::Ready(n)) => Poll::Ready(Ok(n)),
            Ok(Progress::Blocked) => {
                inner.park_writer(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        };
        inner.dispatch();
        poll
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = self.shared.write_through(cx, self.id, data) {
            return Poll::Ready(Ok(n));
        }
        self.poll_send(cx, |c, id| c.write(id, data, now()))
    }

    /// Queues all of `data` without copying it, waiting for room as needed.
    fn poll_write_chunk(&self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<Result<(), Error>> {
        while !data.is_empty() {
            let mut inner = self.shared.lock();
            let res = inner.conn.write_chunk(self.id, data, now());
            if matches!(res, Ok(Progress::Blocked)) {
                inner.park_writer(self.id, cx.waker());
            }
            inner.dispatch();
            drop(inner);
            if res? == Progress::Blocked {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send(cx, |c, id| c.flush(id, now())).map_ok(drop)
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send(cx, |c, id| c.shutdown_write(id, now()))
            .map_ok(drop)
    }

    fn set_deadline(&self, read: Option<Option<Instant>>, write: Option<Option<Instant>>) {
        set_deadlines(&mut self.shared.lock(), self.id, read, write);
    }

    /// Splits off a handle owning `part` of this one's directions.
    fn take(&mut self, part: u8) -> Handle {
        self.owns &= !part;
        Handle {
            shared: self.shared.clone(),
            id: self.id,
            owns: part,
        }
    }
}

/// `Some(d)` sets that deadline to `d`; `None` leaves it alone.
fn set_deadlines(
    inner: &mut Inner,
    id: StreamId,
    read: Option<Option<Instant>>,
    write: Option<Option<Instant>>,
) {
    if let Some(d) = read {
        inner.conn.set_read_deadline(id, d);
    }
    if let Some(d) = write {
        inner.conn.set_write_deadline(id, d);
    }
    inner.dispatch();
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.owns == 0 {
            return;
        }
        let mut inner = self.shared.lock();
        inner.conn.release(self.id, self.owns);
        inner.forget_stream(
            self.id,
            self.owns & READ_HANDLE != 0,
            self.owns & WRITE_HANDLE != 0,
        );
        inner.dispatch();
        // The session may now be unused; let the driver decide.
        inner.wake_driver();
    }
}

/// One multiplexed stream: a tokio [`AsyncRead`] + [`AsyncWrite`].
///
/// - Writes are buffered (up to 256 KiB per
///   stream) and framed in turn with the other streams; `flush` waits until this stream's data
///   has been handed to the connection.
/// - `shutdown` is a half-close: it sends FIN after the data written so far and completes when
///   the FIN is handed to the connection; reading goes on. Further writes fail with
///   `BrokenPipe`.
/// - Reading returns EOF (`Ok(0)`) after the peer's FIN once everything before it was read.
///   If the session ends first, buffered data is still returned, then the session's error.
/// - **Dropping a `Stream` closes it**: a FIN follows whatever was already written (nothing
///   written is discarded), unread received data is discarded, and later data from the peer for
///   it is dropped. Use [`into_split`](Self::into_split) to close one direction only.
///
/// Deadlines work as in Go: a read or write that would wait past its deadline fails with
/// `TimedOut`, and setting a deadline wakes a waiting operation so the new value applies at
/// once. A deadline stays in force until changed.
///
/// # Cancel safety
/// Reads and writes are cancel safe: a read future dropped before completion took nothing, and
/// a write that completed was accepted whole, so wrapping them in `tokio::time::timeout` never
/// loses or duplicates data.
pub struct Stream {
    handle: Handle,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: StreamId) -> Stream {
        Stream {
            handle: Handle {
                shared,
                id,
                owns: BOTH_HANDLES,
            },
        }
    }

    /// The stream's id on the wire.
    #[doc(alias = "ID")]
    pub fn id(&self) -> StreamId {
        self.handle.id
    }

    /// Sets the deadline for reads: an instant (std's or tokio's), a duration from now, or
    /// `None` to clear it (see [`IntoDeadline`]).
    #[doc(alias = "SetReadDeadline")]
    pub fn set_read_deadline(&self, deadline: impl IntoDeadline) {
        self.handle
            .set_deadline(Some(deadline.into_deadline()), None);
    }

    /// Sets the deadline for writes, flushes and shutdown; `None` clears it.
    #[doc(alias = "SetWriteDeadline")]
    pub fn set_write_deadline(&self, deadline: impl IntoDeadline) {
        self.handle
            .set_deadline(None, Some(deadline.into_deadline()));
    }

    /// Sets both deadlines.
    #[doc(alias = "SetDeadline")]
    pub fn set_deadline(&self, deadline: impl IntoDeadline) {
        let d = deadline.into_deadline();
        self.handle.set_deadline(Some(d), Some(d));
    }

    /// A handle that sets this stream's deadlines from another task, for instance to stop a
    /// read that is waiting (Go's `SetDeadline` from another goroutine). It does not keep the
    /// stream open and does nothing once the stream is closed.
    pub fn deadline_handle(&self) -> DeadlineHandle {
        let serial = self.handle.shared.lock().conn.stream_serial(self.handle.id);
        DeadlineHandle {
            shared: self.handle.shared.clone(),
            id: self.handle.id,
            serial,
        }
    }

    /// Reads the next received bytes without copying them (up to `max`, at least 1).
    /// `Ok(None)` is EOF.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.handle.poll_read_chunk(cx, max)).await
    }

    /// Writes all of `data` without copying it (buffers the application already holds as
    /// [`Bytes`], such as chunks from [`read_chunk`](Self::read_chunk), go to the socket as
    /// they are). Returns once all of it is queued, like `write_all`.
    ///
    /// # Cancel safety
    /// Not cancel safe: if cancelled, an unknown prefix of `data` may have been queued.
    pub async fn write_chunk(&mut self, data: Bytes) -> Result<(), Error> {
        let mut data = data;
        std::future::poll_fn(|cx| self.handle.poll_write_chunk(cx, &mut data)).await
    }

    /// Splits the stream into a read half and a write half that can move to different tasks.
    /// Dropping the write half half-closes the stream (FIN); dropping the read half discards
    /// unread data. The stream is closed when both are dropped.
    pub fn into_split(mut self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let read = self.handle.take(READ_HANDLE);
        let write = self.handle.take(WRITE_HANDLE);
        (
            OwnedReadHalf { handle: read },
            OwnedWriteHalf { handle: write },
        )
    }
}

/// Sets the deadlines of one stream from anywhere; see [`Stream::deadline_handle`].
#[derive(Clone)]
pub struct DeadlineHandle {
    shared: Arc<Shared>,
    id: StreamId,
    /// Identifies the stream among all that ever had this id.
    serial: Option<u64>,
}

impl DeadlineHandle {
    fn set(&self, read: Option<Option<Instant>>, write: Option<Option<Instant>>) {
        let mut inner = self.shared.lock();
        if self.serial.is_some() && inner.conn.stream_serial(self.id) == self.serial {
            set_deadlines(&mut inner, self.id, read, write);
        }
    }

    /// Sets the read deadline; `None` clears it.
    pub fn set_read_deadline(&self, deadline: impl IntoDeadline) {
        self.set(Some(deadline.into_deadline()), None);
    }

    /// Sets the write deadline; `None` clears it.
    pub fn set_write_deadline(&self, deadline: impl IntoDeadline) {
        self.set(None, Some(deadline.into_deadline()));
    }

    /// Sets both deadlines.
    pub fn set_deadline(&self, deadline: impl IntoDeadline) {
        let d = deadline.into_deadline();
        self.set(Some(d), Some(d));
    }
}

impl fmt::Debug for DeadlineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineHandle")
            .field("id", &self.id)
            .finish()
    }
}

/// The read half of a [`Stream`], from [`Stream::into_split`].
pub struct OwnedReadHalf {
    handle: Handle,
}

/// The write half of a [`Stream`], from [`Stream::into_split`]. Dropping it sends FIN.
pub struct OwnedWriteHalf {
    handle: Handle,
}

/// The halves given to [`OwnedReadHalf::reunite`] belong to different streams.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves of different streams")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// The stream's id on the wire.
    pub fn id(&self) -> StreamId {
        self.handle.id
    }

    /// Sets the read deadline; `None` clears it.
    pub fn set_read_deadline(&self, deadline: impl IntoDeadline) {
        self.handle
            .set_deadline(Some(deadline.into_deadline()), None);
    }

    /// Reads the next received bytes without copying (see [`Stream::read_chunk`]).
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.handle.poll_read_chunk(cx, max)).await
    }

    /// Puts the halves back together.
    ///
    /// # Errors
    /// Gives both halves back if they come from different streams.
    pub fn reunite(mut self, mut write: OwnedWriteHalf) -> Result<Stream, ReuniteError> {
        if !Arc::ptr_eq(&self.handle.shared, &write.handle.shared)
            || self.handle.id != write.handle.id
        {
            return Err(ReuniteError(self, write));
        }
        // Move both shares into one handle; the emptied halves release nothing on drop.
        write.handle.owns = 0;
        Ok(Stream {
            handle: self.handle.take(READ_HANDLE | WRITE_HANDLE),
        })
    }
}

impl OwnedWriteHalf {
    /// The stream's id on the wire.
    pub fn id(&self) -> StreamId {
        self.handle.id
    }

    /// Sets the write deadline; `None` clears it.
    pub fn set_write_deadline(&self, deadline: impl IntoDeadline) {
        self.handle
            .set_deadline(None, Some(deadline.into_deadline()));
    }

    /// Writes all of `data` without copying it (see [`Stream::write_chunk`]).
    pub async fn write_chunk(&mut self, data: Bytes) -> Result<(), Error> {
        let mut data = data;
        std::future::poll_fn(|cx| self.handle.poll_write_chunk(cx, &mut data)).await
    }
}

/// `Debug`, and the tokio I/O traits by delegation to the handle, for the public stream types.
macro_rules! delegate_io {
    ($ty:ident: $($io:ident),*) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("id", &self.handle.id).finish()
            }
        }
        $(delegate_io!(@$io $ty);)*
    };
    (@read $ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.handle.poll_read(cx, buf)
            }
        }
    };
    (@write $ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.handle.poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.handle.poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.handle.poll_shutdown(cx)
            }
        }
    };
}

delegate_io!(Stream: read, write);
delegate_io!(OwnedReadHalf: read);
delegate_io!(OwnedWriteHalf: write);
