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
mod tx;
mod window;

pub use connection::{
    min_write_room, session_wake_room, ChunkOutcome, Connection, Event, Progress, ReadOutcome,
    Stats, CLOSE_TIMEOUT, MIN_WRITE_ROOM, SESSION_SEND_BUFFER, STREAM_SEND_BUFFER,
};
pub use ids::{Role, StreamId};
pub use recv_buffer::{RecvBuffer, CHUNK, MIN_CHUNK, SHARE_MIN};
pub use stream::{BOTH_HANDLES, READ_HANDLE, WRITE_HANDLE};
pub use tx::{TxBuf, COPY_MAX, MAX_IOVECS};
pub use window::INITIAL_PEER_WINDOW;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_wrap;
