//! The tokio driver: one task per session moves bytes between the socket and the sans-IO
//! [`Connection`](crate::proto::Connection), and wakes the application's tasks. Streams are ids
//! plus a shared lock; no task, channel or buffer exists per stream.
//!
//! - [`shared`]: the state the task and every handle share (the core behind one lock, and
//!   the wakers of parked tasks);
//! - [`task`]: the task itself, one pass at a time: feed the core, write, read, arm the timer;
//! - `session` and `stream`: the public handles.
//!
//! The lock guards only core calls; socket reads and writes happen outside it, on buffers the
//! driver task owns.

mod deadline;
mod futures_io;
mod session;
mod shared;
mod stream;
mod task;

pub use deadline::IntoDeadline;
pub use session::Session;
pub use stream::{DeadlineHandle, OwnedReadHalf, OwnedWriteHalf, ReuniteError, Stream};

pub(crate) use shared::{Inner, Shared};
pub(crate) use task::Driver;

/// The clock, as tokio sees it (so `tokio::time::pause` drives keepalive and deadlines).
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
