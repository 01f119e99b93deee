//! What the driver task and the application's handles share: the core behind one lock, and the
//! wakers of the tasks parked on it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    task::{Context, Waker},
};

use super::task::WriteThrough;
use crate::proto::{Connection, Event, StreamId};

/// Wake-ups handed over without allocating (more take the list along).
const WAKE_INLINE: usize = 8;

/// State shared by the driver and every handle of one session.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The transport, for writers that write to it directly (set once the task exists).
    wire: OnceLock<Arc<dyn WriteThrough>>,
}

impl std::fmt::Debug for dyn WriteThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteThrough")
    }
}

/// Everything behind the session's lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(super) driver_waker: Option<Waker>,
    read_wakers: HashMap<StreamId, Waker>,
    write_wakers: HashMap<StreamId, Waker>,
    pub(super) accept_wakers: Vec<Waker>,
    pub(super) closed_wakers: Vec<Waker>,
    /// Tasks to wake once the lock is released (see [`Locked`]).
    pub(super) to_wake: Vec<Waker>,
    /// Live `Session` handles.
    pub(super) session_handles: usize,
    /// The driver task has finished and the connection is gone.
    pub(super) driver_done: bool,
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
            wire: OnceLock::new(),
        })
    }

    /// Lets writers write to the transport directly (see [`WriteThrough`]).
    pub(crate) fn set_write_through(&self, wire: Arc<dyn WriteThrough>) {
        // Set once, by the task's constructor.
        let _ = self.wire.set(wire);
    }

    /// Writes `data` for stream `id` straight to the transport when that is possible now;
    /// `None` when it must be queued as usual. `Some(n)`: `n` bytes were taken.
    pub(crate) fn write_through(
        &self,
        cx: &mut Context<'_>,
        id: StreamId,
        data: &[u8],
    ) -> Option<usize> {
        self.wire.get()?.write_through(self, cx, id, data)
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
        // Usually one or two tasks: move them out onto the stack, so the list keeps its
        // memory (no allocation per wake-up).
        let mut few: [Option<Waker>; WAKE_INLINE] = Default::default();
        if guard.to_wake.len() <= WAKE_INLINE {
            for (slot, w) in few.iter_mut().zip(guard.to_wake.drain(..)) {
                *slot = Some(w);
            }
            drop(guard);
            few.into_iter().flatten().for_each(Waker::wake);
        } else {
            let wakers = std::mem::take(&mut guard.to_wake);
            drop(guard);
            wakers.into_iter().for_each(Waker::wake);
        }
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
    pub(crate) fn park_reader(&mut self, id: StreamId, waker: &Waker) {
        park(
            self.read_wakers.entry(id).or_insert_with(|| waker.clone()),
            waker,
        );
    }

    /// Parks the current writer of stream `id`.
    pub(crate) fn park_writer(&mut self, id: StreamId, waker: &Waker) {
        park(
            self.write_wakers.entry(id).or_insert_with(|| waker.clone()),
            waker,
        );
    }

    /// Forgets the wakers of a stream whose handles are gone.
    pub(crate) fn forget_stream(&mut self, id: StreamId, read: bool, write: bool) {
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
