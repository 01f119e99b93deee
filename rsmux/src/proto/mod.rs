//! The sans-IO protocol core: frames in, frames out, time as an input.
//!
//! Nothing here touches a socket, spawns a task or reads a clock; the tokio driver in
//! [`crate::Session`] feeds it. [`Connection`] documents the call contract. The core is public
//! so that tests, fuzzers and other runtimes can drive it directly.

mod block_pool;
mod budget;
mod byte_queue;
mod connection;
mod deadlines;
mod ids;
mod keepalive;
mod recv_buffer;
mod spare;
mod stream;
mod streams;
mod tx;
mod window;

pub use connection::{Connection, Event, Progress, ReadOutcome, Stats, CLOSE_TIMEOUT};
pub use ids::{Role, StreamId};
pub use recv_buffer::RecvBuffer;
pub use stream::{BOTH_HANDLES, READ_HANDLE, WRITE_HANDLE};
pub use tx::{Through, TxBuf};

pub(crate) use tx::{MAX_IOVECS, THROUGH_FRAMES};

/// The core's buffer sizes and write-fairness rules, exported for the fuzz crate's oracle and
/// the memory tests. Not a stable API: values and names change as the core is tuned.
#[doc(hidden)]
pub mod internals {
    pub use super::connection::{
        min_write_room, session_wake_room, MIN_WRITE_ROOM, SESSION_SEND_BUFFER, STREAM_SEND_BUFFER,
    };
    pub use super::recv_buffer::{CHUNK, MIN_CHUNK, SHARE_MIN};
    pub use super::tx::{COPY_MAX, MAX_IOVECS};
    pub use super::window::INITIAL_PEER_WINDOW;
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_wrap;
