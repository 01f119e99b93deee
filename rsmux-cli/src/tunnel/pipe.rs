//! Copying between a stream and a TCP connection, and how the TCP connection ends.
//!
//! smux streams carry a clean end (FIN) and nothing else: there is no reset frame. What the
//! TCP side sees is decided here:
//!
//! - the stream's FIN becomes a TCP write shutdown (FIN) and a TCP EOF becomes the stream's
//!   FIN: a clean end crosses the tunnel as a clean end, either way, each direction alone;
//! - a failed stream (the session died: its connection broke, keepalive timed out, the peer
//!   broke the protocol) resets the TCP connection (RST), so a protocol without its own length
//!   framing does not take a cut-off transfer for a complete one;
//! - on the client, a stream that ends before carrying a single byte back while the local side
//!   is still sending was refused by the server: it could not reach its target, or turned the
//!   stream away (`--max-streams`). That is what a tunnel server, rsmux's or Go's, does then,
//!   and the local connection is reset, as a direct connection to an unreachable target would
//!   be. A target that itself closes before sending anything and before the client
//!   half-closed looks the same, and is reset too.
//!
//! A failed TCP side (the local peer reset its connection) ends the stream with FIN: that is
//! all smux can say.

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
};

use rsmux::Stream;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Read buffer for the TCP → stream direction.
const TCP_READ_BUF: usize = 32 * 1024;
/// Largest chunk taken from a stream at once.
const CHUNK_MAX: usize = 1 << 20;

/// Which end of the tunnel a pipe is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `rsmux tunnel client`: the TCP connection is a local application's.
    Client,
    /// `rsmux tunnel server`: the TCP connection goes to `--target`.
    Server,
}

/// Why a pipe ended early. In every case the stream was closed; in the first two the TCP
/// connection was reset.
#[derive(Debug)]
pub enum PipeError {
    /// The stream failed (its session ended): the TCP connection was reset.
    Stream(io::Error),
    /// The stream ended before a single byte came back while the local side was still
    /// sending: the server refused it. The TCP connection was reset.
    Refused,
    /// The TCP connection failed: the stream was closed (FIN).
    Tcp(io::Error),
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipeError::Stream(e) => write!(f, "stream failed ({e}); TCP connection reset"),
            PipeError::Refused => f.write_str(
                "the server closed the stream before sending anything (target unreachable, or \
                 stream refused); TCP connection reset",
            ),
            PipeError::Tcp(e) => write!(f, "TCP connection failed ({e}); stream closed"),
        }
    }
}

/// Copies both ways between `stream` and `tcp` until both directions ended (see the module
/// docs for how each end maps to the other). Returns the bytes carried (TCP → stream,
/// stream → TCP).
pub async fn pipe(stream: Stream, mut tcp: TcpStream, side: Side) -> Result<(u64, u64), PipeError> {
    let result = copy_both_ways(stream, &mut tcp, side).await;
    if matches!(result, Err(PipeError::Stream(_) | PipeError::Refused)) {
        reset(tcp);
    }
    result
}

/// Drops `tcp` with an RST instead of a FIN.
pub fn reset(tcp: TcpStream) {
    // SO_LINGER 0: closing the socket aborts the connection. Without it (should setting it
    // ever fail) the close is a plain FIN, the best left to do.
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

async fn copy_both_ways(
    stream: Stream,
    tcp: &mut TcpStream,
    side: Side,
) -> Result<(u64, u64), PipeError> {
    let (mut sr, mut sw) = stream.into_split();
    let (mut tr, mut tw) = tcp.split();
    let local_ended = AtomicBool::new(false);
    let up = async {
        // Each read goes to the stream as it is (no copy); the buffer is renewed per read.
        let mut buf = bytes::BytesMut::new();
        let mut total = 0u64;
        loop {
            buf.reserve(TCP_READ_BUF);
            let n = tr.read_buf(&mut buf).await.map_err(PipeError::Tcp)?;
            if n == 0 {
                local_ended.store(true, Ordering::Relaxed);
                sw.shutdown().await.map_err(PipeError::Stream)?;
                return Ok(total);
            }
            sw.write_chunk(buf.split().freeze())
                .await
                .map_err(|e| PipeError::Stream(e.into()))?;
            total += n as u64;
        }
    };
    let down = async {
        let mut total = 0u64;
        loop {
            let chunk = sr.read_chunk(CHUNK_MAX).await;
            match chunk.map_err(|e| PipeError::Stream(e.into()))? {
                Some(chunk) => {
                    tw.write_all(&chunk).await.map_err(PipeError::Tcp)?;
                    total += chunk.len() as u64;
                }
                None => {
                    if side == Side::Client && total == 0 && !local_ended.load(Ordering::Relaxed) {
                        return Err(PipeError::Refused);
                    }
                    tw.shutdown().await.map_err(PipeError::Tcp)?;
                    return Ok(total);
                }
            }
        }
    };
    tokio::try_join!(up, down)
}
