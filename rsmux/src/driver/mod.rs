//! The tokio driver: one task per session moves bytes between the socket and the sans-IO
//! [`Connection`], and wakes the application's tasks. Streams are ids plus a shared lock; no
//! task, channel or buffer exists per stream.
//!
//! The lock guards only core calls; socket reads and writes happen outside it, on buffers the
//! driver task owns.

mod session;
mod stream;

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::proto::{Connection, Event, RecvBuffer, TxBuf, MAX_IOVECS};

pub use session::Session;
pub use stream::{DeadlineHandle, OwnedReadHalf, OwnedWriteHalf, ReuniteError, Stream};

/// The driver refills its transmit buffer up to this many bytes per batch.
const TX_BATCH: usize = 256 * 1024;

/// Loop turns before the driver yields to other tasks.
const MAX_TURNS: usize = 64;

/// The clock, as tokio sees it (so `tokio::time::pause` drives keepalive and deadlines).
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// State shared by the driver and every handle of one session.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    driver_waker: Option<Waker>,
    read_wakers: HashMap<u32, Waker>,
    write_wakers: HashMap<u32, Waker>,
    accept_wakers: Vec<Waker>,
    closed_wakers: Vec<Waker>,
    /// Tasks to wake once the lock is released (see [`Locked`]).
    to_wake: Vec<Waker>,
    /// Live `Session` handles.
    session_handles: usize,
    /// The driver task has finished and the connection is gone.
    driver_done: bool,
}

impl Shared {
    pub(crate) fn new(conn: Connection) -> Arc<Shared> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                conn,
                driver_waker: None,
                read_wakers: HashMap::new(),
                write_wakers: HashMap::new(),
                accept_wakers: Vec::new(),
                closed_wakers: Vec::new(),
                to_wake: Vec::new(),
                session_handles: 1,
                driver_done: false,
            }),
        })
    }

    /// Locks the session. A panic while locked cannot leave the core half-updated in a way
    /// that matters more than losing the session, so poisoning is ignored.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(Some(self.inner.lock().unwrap_or_else(|e| e.into_inner())))
    }
}

/// The locked session. Tasks that [`Inner::dispatch`] decides to wake are woken when this is
/// dropped, after the lock is released, so a woken task on another thread does not run straight
/// into the lock it was woken from.
pub(crate) struct Locked<'a>(Option<MutexGuard<'a, Inner>>);

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.0.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.0.as_mut().expect("held until drop")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.0.take() else {
            return;
        };
        if guard.to_wake.is_empty() {
            return;
        }
        let wakers = std::mem::take(&mut guard.to_wake);
        drop(guard);
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Inner {
    /// Picks whoever the core's events concern, and the driver if it has work, to be woken
    /// once the lock is released.
    pub(crate) fn dispatch(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Readable(id) => self.to_wake.extend(self.read_wakers.remove(&id)),
                Event::Writable(id) => self.to_wake.extend(self.write_wakers.remove(&id)),
                Event::Incoming => self.to_wake.append(&mut self.accept_wakers),
                Event::Closed => {
                    self.to_wake
                        .extend(self.read_wakers.drain().map(|(_, w)| w));
                    self.to_wake
                        .extend(self.write_wakers.drain().map(|(_, w)| w));
                    self.to_wake.append(&mut self.accept_wakers);
                }
            }
        }
        if self.conn.take_wake_driver() {
            self.wake_driver();
        }
    }

    /// Has the driver task woken once the lock is released.
    pub(crate) fn wake_driver(&mut self) {
        if let Some(w) = &self.driver_waker {
            if !self.to_wake.iter().any(|t| t.will_wake(w)) {
                self.to_wake.push(w.clone());
            }
        }
    }

    /// Parks the current reader of stream `id`.
    pub(crate) fn park_reader(&mut self, id: u32, waker: &Waker) {
        park(
            self.read_wakers.entry(id).or_insert_with(|| waker.clone()),
            waker,
        );
    }

    /// Parks the current writer of stream `id`.
    pub(crate) fn park_writer(&mut self, id: u32, waker: &Waker) {
        park(
            self.write_wakers.entry(id).or_insert_with(|| waker.clone()),
            waker,
        );
    }

    /// Forgets the wakers of a stream whose handles are gone.
    pub(crate) fn forget_stream(&mut self, id: u32, read: bool, write: bool) {
        if read {
            self.read_wakers.remove(&id);
        }
        if write {
            self.write_wakers.remove(&id);
        }
    }
}

fn park(slot: &mut Waker, waker: &Waker) {
    if !slot.will_wake(waker) {
        slot.clone_from(waker);
    }
}

/// What one driver pass achieved.
enum Turn {
    Progress,
    Idle,
    Done,
}

/// The task that owns the connection.
struct Driver<T> {
    shared: Arc<Shared>,
    io: T,
    rb: RecvBuffer,
    tx: TxBuf,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Something was written since the last `poll_flush`.
    unflushed: bool,
    /// Something was written since the core was last told.
    transmitted: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    fn new(shared: Arc<Shared>, io: T) -> Driver<T> {
        Driver {
            shared,
            io,
            rb: RecvBuffer::new(),
            tx: TxBuf::new(),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            unflushed: false,
            transmitted: false,
        }
    }

    /// One pass: timers, transmit, read.
    fn turn(&mut self, cx: &mut Context<'_>) -> Turn {
        let mut progress = false;
        let (wants_read, wants_shutdown, timeout) = {
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
            let conn = &mut inner.conn;
            if std::mem::take(&mut self.transmitted) {
                conn.handle_transmitted();
            }
            if conn.wants_read() && !self.rb.is_empty() {
                // Frames read earlier may have waited for budget or accept room.
                conn.handle_input(&mut self.rb);
            }
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
            if self.tx.len() < TX_BATCH {
                conn.poll_transmit(&mut self.tx, TX_BATCH);
            }
            let out = (
                conn.wants_read(),
                conn.wants_shutdown(),
                conn.poll_timeout(),
            );
            let terminated = conn.is_terminated();
            inner.dispatch();
            if terminated {
                return Turn::Done;
            }
            out
        };

        // Write everything framed so far, several frames per call.
        while !self.tx.is_empty() {
            let res = if self.io.is_write_vectored() {
                let mut slices = [std::io::IoSlice::new(&[]); MAX_IOVECS];
                let n = self.tx.io_slices(&mut slices);
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut self.io).poll_write(cx, self.tx.chunk())
            };
            match res {
                Poll::Ready(Ok(0)) => {
                    return self.fail(std::io::ErrorKind::WriteZero.into());
                }
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
        if wants_shutdown && self.tx.is_empty() && !self.unflushed {
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Ready(_) => {
                    let mut inner = self.shared.lock();
                    inner.conn.handle_shutdown();
                    inner.dispatch();
                    return Turn::Done;
                }
                Poll::Pending => {}
            }
        }

        if wants_read {
            match poll_read_buf(Pin::new(&mut self.io), cx, self.rb.prepare()) {
                Poll::Ready(Ok(0)) => {
                    let mut inner = self.shared.lock();
                    inner.conn.handle_input(&mut self.rb);
                    inner.conn.handle_eof();
                    inner.dispatch();
                    return Turn::Done;
                }
                Poll::Ready(Ok(_)) => {
                    let mut inner = self.shared.lock();
                    inner.conn.handle_input(&mut self.rb);
                    inner.dispatch();
                    progress = true;
                }
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => {}
            }
        }

        if let Some(t) = timeout {
            let t = tokio::time::Instant::from_std(t);
            if self.sleep.deadline() != t {
                self.sleep.as_mut().reset(t);
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                progress = true;
            }
        }
        if progress {
            Turn::Progress
        } else {
            Turn::Idle
        }
    }

    fn fail(&mut self, e: std::io::Error) -> Turn {
        tracing::debug!(error = %e, "connection failed");
        self.tx.clear();
        let mut inner = self.shared.lock();
        inner.conn.handle_io_error(e);
        inner.dispatch();
        Turn::Done
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..MAX_TURNS {
            match self.turn(cx) {
                Turn::Done => {
                    let mut inner = self.shared.lock();
                    inner.driver_done = true;
                    inner.driver_waker = None;
                    let closed = std::mem::take(&mut inner.closed_wakers);
                    inner.to_wake.extend(closed);
                    return Poll::Ready(());
                }
                Turn::Progress => continue,
                Turn::Idle => return Poll::Pending,
            }
        }
        // Plenty done: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
