//! The task that owns a session's transport. Each pass runs four steps: [`Driver::feed_core`]
//! (under the lock: timers, bytes written since last time, input that waited, new frames to
//! send), [`Driver::write_out`] (vectored writes, then flush or shutdown), [`Driver::read_in`]
//! (one socket read, handed to the core) and [`Driver::arm_timer`]. The socket is only touched
//! outside the core's lock. Buffers kept for reuse (receive chunks, write blocks) are let go
//! once the session has been quiet for [`QUIET`].
//!
//! The transport and the frames waiting for it sit in a [`Wire`] behind a lock of their own,
//! which the task holds for a whole pass. A stream's writer may take it when it is free and
//! nothing waits to be sent: then it writes its frames to the transport itself
//! ([`WriteThrough`]), with headers the core made ([`Connection::write_through`]), so a bulk
//! write is neither copied into the send queue nor handed over to this task with a wake-up.
//! Lock order: the wire, then the core.
//!
//! [`Connection::write_through`]: crate::proto::Connection::write_through

use std::{
    future::Future,
    io::IoSlice,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::{now, Shared};
use crate::proto::{RecvBuffer, StreamId, TxBuf, MAX_IOVECS, THROUGH_FRAMES};

/// The driver refills its transmit buffer up to this many bytes per batch.
const TX_BATCH: usize = 256 * 1024;

/// Passes before the driver yields to other tasks.
const MAX_PASSES: usize = 64;

/// A session that made no progress for this long lets go of its spare buffers.
const QUIET: Duration = Duration::from_secs(1);

/// Writes smaller than this always go through the send queue, where the task batches many of
/// them into one system call.
const THROUGH_MIN: usize = 16 * 1024;

/// The session is over: the connection is gone and the task ends.
struct Finished;

/// A step's outcome: whether it made progress, or the end of the session.
type Step = Result<bool, Finished>;

/// What the core wants from the socket after [`Driver::feed_core`].
struct Wants {
    read: bool,
    shutdown: bool,
    timeout: Option<Instant>,
    /// Buffers are kept for reuse.
    spares: bool,
}

/// The transport and what waits to be written to it.
pub(crate) struct Wire<T> {
    /// `None` once the session is over (the connection is closed with it).
    io: Option<T>,
    /// Frames waiting for the transport.
    tx: TxBuf,
    /// Something was written since the last `poll_flush`.
    unflushed: bool,
    /// Something was written since the core was last told.
    transmitted: bool,
}

/// Locks the wire; poisoning is ignored, as for the core's lock.
fn lock<T>(wire: &Mutex<Wire<T>>) -> MutexGuard<'_, Wire<T>> {
    wire.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task that owns the connection.
pub(crate) struct Driver<T> {
    shared: Arc<Shared>,
    wire: Arc<Mutex<Wire<T>>>,
    rb: RecvBuffer,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// When the last pass without progress began a quiet spell.
    quiet_since: Option<Instant>,
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Driver<T> {
    /// The task for `io`; the session's writers may write to `io` through `shared`.
    pub(crate) fn new(shared: Arc<Shared>, io: T) -> Driver<T> {
        let wire = Arc::new(Mutex::new(Wire {
            io: Some(io),
            tx: TxBuf::new(),
            unflushed: false,
            transmitted: false,
        }));
        shared.set_write_through(wire.clone());
        Driver {
            shared,
            wire,
            rb: RecvBuffer::new(),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            quiet_since: None,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    /// One pass over the four steps, holding the wire; `Ok(false)` when none made progress
    /// (wait for a wake-up).
    fn pass(&mut self, cx: &mut Context<'_>) -> Step {
        let wire_lock = self.wire.clone();
        let mut wire = lock(&wire_lock);
        if wire.io.is_none() {
            return Err(Finished);
        }
        let wants = self.feed_core(cx, &mut wire)?;
        let wrote = self.write_out(cx, &mut wire, wants.shutdown)?;
        let read = wants.read && self.read_in(cx, &mut wire)?;
        let progress = wrote || read;
        if progress {
            self.quiet_since = None;
        } else if self.quiet_since.is_none() {
            self.quiet_since = Some(now());
        }
        let release = self.quiet_since.filter(|_| wants.spares).map(|t| t + QUIET);
        let deadline = match (wants.timeout, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = self.arm_timer(cx, deadline);
        Ok(progress || timer)
    }

    /// Under the lock: registers this task's waker, closes a session nobody can use, tells
    /// the core what was written, feeds it input that waited for budget or accept room, runs
    /// its timers and takes the next frames to send.
    fn feed_core(&mut self, cx: &mut Context<'_>, wire: &mut Wire<T>) -> Result<Wants, Finished> {
        let mut inner = self.shared.lock();
        if !inner
            .driver_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.driver_waker = Some(cx.waker().clone());
        }
        let now = now();
        let unused = inner.session_handles == 0;
        let conn = &mut inner.conn;
        if unused && !conn.is_closed() && conn.live_handles() == conn.pending_accepts() {
            // Nobody can use this session any more.
            conn.close(now);
        }
        if std::mem::take(&mut wire.transmitted) {
            conn.handle_transmitted();
        }
        if conn.wants_read() && !self.rb.is_empty() {
            conn.handle_input(&mut self.rb);
        }
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        if conn.is_drained() {
            tracing::debug!("drained: every stream has finished, closing");
            conn.close(now);
        }
        if self.quiet_since.is_some_and(|t| now >= t + QUIET) {
            self.rb.release_retired();
            wire.tx.release_spare();
            conn.release_spare_buffers();
            // A new quiet spell starts with the next pass that makes no progress.
            self.quiet_since = None;
        }
        if wire.tx.len() < TX_BATCH {
            conn.poll_transmit(&mut wire.tx, TX_BATCH);
        }
        let wants = Wants {
            read: conn.wants_read(),
            shutdown: conn.wants_shutdown(),
            timeout: conn.poll_timeout(),
            spares: self.rb.holds_retired() || wire.tx.holds_spare() || conn.holds_spare_buffers(),
        };
        let terminated = conn.is_terminated();
        inner.dispatch();
        if terminated {
            return Err(Finished);
        }
        Ok(wants)
    }

    /// Writes everything framed so far, several frames per call; then flushes, and shuts the
    /// transport down once the core asks for it and nothing is left to write.
    fn write_out(&mut self, cx: &mut Context<'_>, wire: &mut Wire<T>, shutdown: bool) -> Step {
        let mut progress = false;
        let Wire {
            io,
            tx,
            unflushed,
            transmitted,
        } = wire;
        let io = io.as_mut().expect("checked by pass");
        while !tx.is_empty() {
            let res = if io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = tx.io_slices(&mut slices);
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut *io).poll_write(cx, tx.chunk())
            };
            match res {
                Poll::Ready(Ok(0)) => return self.fail(tx, std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    tx.advance(n);
                    *unflushed = true;
                    *transmitted = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return self.fail(tx, e),
                Poll::Pending => break,
            }
        }
        if tx.is_empty() && *unflushed {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => *unflushed = false,
                Poll::Ready(Err(e)) => return self.fail(tx, e),
                Poll::Pending => {}
            }
        }
        if shutdown
            && tx.is_empty()
            && !*unflushed
            && Pin::new(&mut *io).poll_shutdown(cx).is_ready()
        {
            let mut inner = self.shared.lock();
            inner.conn.handle_shutdown();
            inner.dispatch();
            return Err(Finished);
        }
        Ok(progress)
    }

    /// One socket read into the receive buffer, handed to the core.
    fn read_in(&mut self, cx: &mut Context<'_>, wire: &mut Wire<T>) -> Step {
        let io = wire.io.as_mut().expect("checked by pass");
        match poll_read_buf(Pin::new(io), cx, self.rb.prepare()) {
            Poll::Ready(Ok(0)) => {
                let mut inner = self.shared.lock();
                inner.conn.handle_input(&mut self.rb);
                inner.conn.handle_eof();
                inner.dispatch();
                Err(Finished)
            }
            Poll::Ready(Ok(n)) => {
                self.rb.note_read(n);
                let mut inner = self.shared.lock();
                inner.conn.handle_input(&mut self.rb);
                inner.dispatch();
                Ok(true)
            }
            Poll::Ready(Err(e)) => self.fail(&mut wire.tx, e),
            Poll::Pending => Ok(false),
        }
    }

    /// Sets the timer to the core's next deadline; true if it has already fired.
    fn arm_timer(&mut self, cx: &mut Context<'_>, timeout: Option<Instant>) -> bool {
        let Some(t) = timeout else {
            return false;
        };
        let t = tokio::time::Instant::from_std(t);
        if self.sleep.deadline() != t {
            self.sleep.as_mut().reset(t);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// The transport failed: the session ends with this error.
    fn fail(&mut self, tx: &mut TxBuf, e: std::io::Error) -> Step {
        tracing::debug!(error = %e, "connection failed");
        tx.clear();
        let mut inner = self.shared.lock();
        inner.conn.handle_io_error(e);
        inner.dispatch();
        Err(Finished)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..MAX_PASSES {
            match self.pass(cx) {
                Err(Finished) => {
                    // The connection closes now, not when the last handle goes.
                    let io = lock(&self.wire).io.take();
                    drop(io);
                    let mut inner = self.shared.lock();
                    inner.driver_done = true;
                    inner.driver_waker = None;
                    let closed = std::mem::take(&mut inner.closed_wakers);
                    inner.to_wake.extend(closed);
                    return Poll::Ready(());
                }
                Ok(true) => continue,
                Ok(false) => return Poll::Pending,
            }
        }
        // Plenty done: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A transport that a stream's writer may write to directly (see the module docs).
pub(crate) trait WriteThrough: Send + Sync {
    /// Writes `data` for stream `id` past the send queue, if the wire is free, nothing waits
    /// to be sent and the core agrees; `None` otherwise (then queue it as usual). `Some(n)`:
    /// `n` bytes of `data` were framed and handed to the transport, or queued behind what it
    /// took.
    fn write_through(
        &self,
        shared: &Shared,
        cx: &mut Context<'_>,
        id: StreamId,
        data: &[u8],
    ) -> Option<usize>;
}

impl<T: AsyncWrite + Send + Unpin> WriteThrough for Mutex<Wire<T>> {
    fn write_through(
        &self,
        shared: &Shared,
        cx: &mut Context<'_>,
        id: StreamId,
        data: &[u8],
    ) -> Option<usize> {
        if data.len() < THROUGH_MIN {
            return None;
        }
        // Never wait for the task: it may be mid-pass, and will take queued data next pass.
        let mut guard = self.try_lock().ok()?;
        let Wire {
            io,
            tx,
            unflushed,
            transmitted,
        } = &mut *guard;
        let io = io.as_mut()?;
        if !tx.is_empty() || !io.is_write_vectored() {
            return None;
        }
        let through = shared
            .lock()
            .conn
            .write_through(id, data.len(), now())
            .ok()??;
        let data = &data[..through.len()];
        let mut slices = [IoSlice::new(&[]); 2 * THROUGH_FRAMES];
        let n = through.io_slices(data, &mut slices);
        // On an error or a full socket the frames are queued: the task meets the error, or
        // waits for room, as it would have.
        let written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        if written > 0 {
            *transmitted = true;
            *unflushed = true;
        }
        through.queue_rest(data, written, tx);
        if tx.is_empty() && *unflushed {
            if let Poll::Ready(Ok(())) = Pin::new(&mut *io).poll_flush(cx) {
                *unflushed = false;
            }
        }
        if !tx.is_empty() || *unflushed {
            shared.lock().wake_driver();
        }
        Some(data.len())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};

    use super::*;
    use crate::{Config, Session, Version};

    /// Where the application's write buffer lives, so the transport can tell a write that
    /// went through (its payload slice points into that buffer) from a queued one.
    static APP_BUF: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    static APP_LEN: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    /// Vectored writes whose slices pointed into the application's buffer.
    static THROUGH_WRITES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

    /// A transport with vectored writes that takes at most `max` bytes per write and refuses
    /// every third write (it wakes the writer at once), so written frames are often cut.
    struct Choppy {
        inner: DuplexStream,
        max: usize,
        calls: usize,
    }

    impl AsyncRead for Choppy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Choppy {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            for (i, count) in THROUGH_WRITES.iter().enumerate() {
                let start = APP_BUF[i].load(Ordering::Relaxed);
                let app = start..start + APP_LEN[i].load(Ordering::Relaxed);
                if bufs.iter().any(|b| app.contains(&(b.as_ptr() as usize))) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut joined = Vec::new();
            for b in bufs {
                joined.extend_from_slice(b);
                if joined.len() >= self.max {
                    break;
                }
            }
            joined.truncate(self.max);
            Pin::new(&mut self.inner).poll_write(cx, &joined)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Large writes go to the transport from the writer's own buffer; when the transport takes
    /// only part, or nothing, the rest is queued ahead of every later frame. Two streams mix
    /// large and small writes and half-close; every byte must arrive in order, in both
    /// versions.
    #[tokio::test]
    async fn writes_through_to_the_transport_keep_the_byte_order() {
        for version in [1u8, 2] {
            let (a, b) = tokio::io::duplex(96 * 1024);
            let cfg = Config::default().with_version(Version::try_from(version).expect("1 or 2"));
            let client = Session::client(
                Choppy {
                    inner: a,
                    max: 50_000,
                    calls: 0,
                },
                cfg.clone(),
            )
            .unwrap();
            let server = Session::server(b, cfg).unwrap();
            let sizes = [100_000usize, 10, 70_000, 1, 200_000, 33_000, 5];
            // Not periodic, so frames swapped whole would show.
            let pattern = |stream: u8, i: usize| {
                ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ stream
            };
            let mut streams = Vec::new();
            for _ in 0..2 {
                streams.push(client.open_stream().await.unwrap());
            }
            // One stream after the other, so that each finds the wire free at times.
            let writer = tokio::spawn(async move {
                let mut done = Vec::new();
                for (stream, mut s) in (0..2u8).zip(streams) {
                    let total: usize = sizes.iter().sum();
                    let data: Vec<u8> = (0..total).map(|i| pattern(stream, i)).collect();
                    APP_BUF[stream as usize].store(data.as_ptr() as usize, Ordering::Relaxed);
                    APP_LEN[stream as usize].store(data.len(), Ordering::Relaxed);
                    let mut at = 0;
                    for n in sizes {
                        s.write_all(&data[at..at + n]).await.unwrap();
                        at += n;
                    }
                    s.shutdown().await.unwrap();
                    // Both streams' buffers stay alive until the test ends.
                    done.push((s, data));
                }
                done
            });
            for _ in 0..2 {
                let mut s = server.accept_stream().await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                let stream = got[0] ^ pattern(0, 0);
                let expect: Vec<u8> = (0..got.len()).map(|i| pattern(stream, i)).collect();
                assert_eq!(got.len(), sizes.iter().sum::<usize>(), "v{version}");
                assert!(
                    got == expect,
                    "v{version}: stream {stream} bytes out of order"
                );
            }
            writer.await.unwrap();
        }
        for (stream, count) in THROUGH_WRITES.iter().enumerate() {
            assert!(
                count.load(Ordering::Relaxed) > 0,
                "stream {stream}: no write went through from the application's buffer"
            );
        }
    }
}
