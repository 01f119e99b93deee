//! The task that owns a session's transport. Each pass runs four steps: [`Driver::feed_core`]
//! (under the lock: timers, bytes written since last time, input that waited, new frames to
//! send), [`Driver::write_out`] (vectored writes, then flush or shutdown), [`Driver::read_in`]
//! (one socket read, handed to the core) and [`Driver::arm_timer`]. The socket is only touched
//! outside the lock. Buffers kept for reuse (receive chunks, write blocks) are let go once the
//! session has been quiet for [`QUIET`].

use std::{
    future::Future,
    io::IoSlice,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::{now, Shared};
use crate::proto::{RecvBuffer, TxBuf, MAX_IOVECS};

/// The driver refills its transmit buffer up to this many bytes per batch.
const TX_BATCH: usize = 256 * 1024;

/// Passes before the driver yields to other tasks.
const MAX_PASSES: usize = 64;

/// A session that made no progress for this long lets go of its spare buffers.
const QUIET: Duration = Duration::from_secs(1);

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

/// The task that owns the connection.
pub(crate) struct Driver<T> {
    shared: Arc<Shared>,
    io: T,
    rb: RecvBuffer,
    tx: TxBuf,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Something was written since the last `poll_flush`.
    unflushed: bool,
    /// Something was written since the core was last told.
    transmitted: bool,
    /// When the last pass without progress began a quiet spell.
    quiet_since: Option<Instant>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    pub(crate) fn new(shared: Arc<Shared>, io: T) -> Driver<T> {
        Driver {
            shared,
            io,
            rb: RecvBuffer::new(),
            tx: TxBuf::new(),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            unflushed: false,
            transmitted: false,
            quiet_since: None,
        }
    }

    /// One pass over the four steps; `Ok(false)` when none made progress (wait for a wake-up).
    fn pass(&mut self, cx: &mut Context<'_>) -> Step {
        let wants = self.feed_core(cx)?;
        let wrote = self.write_out(cx, wants.shutdown)?;
        let read = wants.read && self.read_in(cx)?;
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
    fn feed_core(&mut self, cx: &mut Context<'_>) -> Result<Wants, Finished> {
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
        if std::mem::take(&mut self.transmitted) {
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
            conn.release_spare_buffers();
            // A new quiet spell starts with the next pass that makes no progress.
            self.quiet_since = None;
        }
        if self.tx.len() < TX_BATCH {
            conn.poll_transmit(&mut self.tx, TX_BATCH);
        }
        let wants = Wants {
            read: conn.wants_read(),
            shutdown: conn.wants_shutdown(),
            timeout: conn.poll_timeout(),
            spares: self.rb.holds_retired() || conn.holds_spare_buffers(),
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
    fn write_out(&mut self, cx: &mut Context<'_>, shutdown: bool) -> Step {
        let mut progress = false;
        while !self.tx.is_empty() {
            let res = if self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = self.tx.io_slices(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut self.io).poll_write(cx, self.tx.chunk())
            };
            match res {
                Poll::Ready(Ok(0)) => return self.fail(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.tx.advance(n);
                    self.unflushed = true;
                    self.transmitted = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => break,
            }
        }
        if self.tx.is_empty() && self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => {}
            }
        }
        if shutdown
            && self.tx.is_empty()
            && !self.unflushed
            && Pin::new(&mut self.io).poll_shutdown(cx).is_ready()
        {
            let mut inner = self.shared.lock();
            inner.conn.handle_shutdown();
            inner.dispatch();
            return Err(Finished);
        }
        Ok(progress)
    }

    /// One socket read into the receive buffer, handed to the core.
    fn read_in(&mut self, cx: &mut Context<'_>) -> Step {
        match poll_read_buf(Pin::new(&mut self.io), cx, self.rb.prepare()) {
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
            Poll::Ready(Err(e)) => self.fail(e),
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
    fn fail(&mut self, e: std::io::Error) -> Step {
        tracing::debug!(error = %e, "connection failed");
        self.tx.clear();
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
