//! # rsmux
//!
//! Stream multiplexing over one reliable ordered connection, speaking the
//! [smux](https://github.com/xtaci/smux) wire protocol (versions 1 and 2) byte for byte, so Rust
//! programs talk to Go programs built on `xtaci/smux` and to each other.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use rsmux::{Config, Session};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (tcp, _) = listener.accept().await?;
//! let session = Session::server(tcp, Config::default())?;
//! while let Ok(mut stream) = session.accept_stream().await {
//!     tokio::spawn(async move {
//!         let mut buf = vec![0u8; 4096];
//!         while let Ok(n) = stream.read(&mut buf).await {
//!             if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - [`proto`]: the sans-IO protocol core ([`proto::Connection`]): frame codec, stream table,
//!   receive budget, v2 windows, round-robin write scheduling and keepalive, with time and bytes
//!   as inputs. No sockets, no tasks.
//! - [`Session`] and [`Stream`]: a thin tokio driver, one task per session, no task, channel or
//!   buffer per stream.
//! - [`frame`]: the 8-byte header codec.
//!
//! ## Logging
//! rsmux logs through [`tracing`](https://docs.rs/tracing) and never prints:
//! - span `smux_session{role, version, label}` (the label is [`Config::label`], e.g. the
//!   peer's address): the driver task runs in it, and calls through a [`Session`] handle
//!   (open, accept, close, drain) log in it;
//! - target `rsmux::proto::connection`: at `debug`, the session's life (a protocol error and
//!   what was wrong, keepalive timeout, drain, close, `session ended` with its `reason`, a
//!   refused stream with its `reason`); at `trace`, each stream's (`stream opened`,
//!   `stream opened by the peer`, `stream accepted`, `FIN sent`, `FIN received`,
//!   `stream closed`), with the id in the `stream` field;
//! - target `rsmux::driver::task` and `rsmux::driver::session`: the transport failing, and
//!   drain progress.
//!
//! Streams get no span of their own: a span per stream would cost memory on every idle
//! stream (the crate's headline number), and the `stream` field on every stream event
//! gives the same filtering (`RUST_LOG=rsmux=trace`, then grep `stream=7`).
//!
//! ## Performance and the runtime
//! A session's driver task and its streams' tasks hand work to each other with wake-ups. On a
//! multi-thread runtime they can run on different workers at once, and then the session's
//! state moves between CPU caches and its lock is contended: measured on two cores, a client
//! writing 100 streams used about 1.7 times the CPU on two workers that it used on one, and
//! moved less. A process that serves one busy session is cheaper on a current-thread runtime
//! (or `TOKIO_WORKER_THREADS=1`); one that serves many sessions uses more workers well, since
//! sessions are independent. Writes of 16 KiB or more go straight to the transport from the
//! writing task when nothing else waits to be sent, and received payloads are handed out
//! without copying by [`Stream::read_chunk`].
//!
//! ## Compatibility with Go smux
//! Frames sent are always well formed (LENGTH 0 on SYN/FIN/NOP, UPD only in v2), so every Go
//! smux from 1.5.16 to 1.5.57 accepts them. Received frames are checked as strictly as the
//! latest Go does; a malformed one closes the session with [`Error::Protocol`]. Both peers must
//! be configured with the same [`Config::version`], unless the server sets
//! [`Config::detect_version`] and takes each client's version from its first frame.
//!
//! Beyond Go, on the same wire: a v2 receiver grows the window it advertises while its reader
//! keeps up ([`Config::stream_window_auto_tune`], on by default), so one stream runs at line
//! speed without hand-tuning; and the v2 byte counters work past 2^32 bytes on a stream
//! (a window update whose count wrapped to exactly 0, which Go skips, is sent: skipping it can
//! stall a reader that drains its whole window at that point).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod config;
mod driver;
mod error;
pub mod frame;
pub mod proto;

pub use config::{
    Config, ConfigError, ConfigField, ConfigProblem, Version, MAX_BUFFER, MAX_FRAME_PAYLOAD,
};
pub use driver::{
    DeadlineHandle, IntoDeadline, OwnedReadHalf, OwnedWriteHalf, ReuniteError, Session, Stream,
};
pub use error::{Error, ProtocolError};
pub use proto::{Stats, StreamId};
