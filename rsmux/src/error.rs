//! The one error type of rsmux (SPEC §9) and its mapping to `std::io::Error`.

use std::{io, sync::Arc, time::Duration};

use crate::config::ConfigError;

/// A peer broke the smux protocol (Go's `ErrInvalidProtocol`, split by cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The VERSION byte of a frame differs from the configured version (SPEC §1.4).
    #[error("frame version {got} does not match the session's version {expected}")]
    VersionMismatch {
        /// Version byte received.
        got: u8,
        /// Version this session is configured for.
        expected: u8,
    },
    /// The CMD byte is none of SYN, FIN, PSH, NOP, UPD.
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    /// A SYN, FIN or NOP frame carried a payload.
    #[error("{cmd} frame with LENGTH {len}, expected 0")]
    UnexpectedPayload {
        /// The command's name.
        cmd: &'static str,
        /// LENGTH field received.
        len: u16,
    },
    /// An UPD frame arrived on a version 1 session.
    #[error("UPD frame on a version 1 session")]
    UpdateInV1,
    /// An UPD frame whose LENGTH is not 8.
    #[error("UPD frame with LENGTH {0}, expected 8")]
    BadUpdateLength(u16),
    /// A version 2 peer claimed to have consumed more than was sent on a stream
    /// (Go's `ErrConsumed`).
    #[error("peer consumed more than sent on stream {stream}")]
    ConsumedMoreThanSent {
        /// Stream of the offending UPD.
        stream: u32,
    },
}

/// Everything that can go wrong in a session or stream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the session was closed.
    #[error("invalid protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stream or session was closed locally (Go's `io.ErrClosedPipe`).
    #[error("read/write on closed stream or session")]
    Closed,
    /// A read or write deadline passed (Go's `ErrTimeout`).
    #[error("timeout")]
    Timeout,
    /// The stream-id space is exhausted; open a new session (Go's `ErrGoAway`).
    #[error("stream id overflows, should start a new connection")]
    GoAway,
    /// Nothing was received from the peer for the keepalive timeout; the session was closed.
    #[error("keepalive timeout: nothing received for {0:?}")]
    KeepaliveTimeout(Duration),
    /// The underlying connection ended (EOF) while the session was open.
    #[error("connection closed by peer")]
    ConnectionClosed,
    /// The server closed the connection right after this client's first frames, before
    /// sending any: what a smux server does when the frames carry another protocol version
    /// (Go closes the connection on a version mismatch), so both ends should be checked for
    /// the same [`Config::version`](crate::Config::version).
    #[error(
        "connection closed by the server before it sent a frame \
         (does it speak the same smux version? check both ends' version setting)"
    )]
    ClosedBeforeFirstFrame,
    /// The underlying connection failed.
    #[error("connection error: {0}")]
    Io(Arc<io::Error>),
    /// The session is draining (see `Session::drain`): it takes no new streams.
    #[error("session is draining: no new streams")]
    Draining,
    /// A session was created outside a tokio runtime (its driver task needs one).
    #[error("no tokio runtime: create sessions from within a tokio runtime")]
    NoRuntime,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// The `io::ErrorKind` this error becomes in the `AsyncRead`/`AsyncWrite` impls.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Config(_) => io::ErrorKind::InvalidInput,
            Error::Closed => io::ErrorKind::BrokenPipe,
            Error::Timeout | Error::KeepaliveTimeout(_) => io::ErrorKind::TimedOut,
            Error::GoAway => io::ErrorKind::Other,
            Error::ConnectionClosed | Error::ClosedBeforeFirstFrame => io::ErrorKind::UnexpectedEof,
            Error::Io(e) => e.kind(),
            Error::NoRuntime => io::ErrorKind::Other,
            Error::Draining => io::ErrorKind::ConnectionRefused,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        let cases = [
            (
                Error::Protocol(ProtocolError::UpdateInV1),
                io::ErrorKind::InvalidData,
            ),
            (Error::Closed, io::ErrorKind::BrokenPipe),
            (Error::Timeout, io::ErrorKind::TimedOut),
            (Error::ConnectionClosed, io::ErrorKind::UnexpectedEof),
            (
                Error::from(io::Error::from(io::ErrorKind::ConnectionReset)),
                io::ErrorKind::ConnectionReset,
            ),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let io: io::Error = e.into();
            assert_eq!(io.kind(), kind);
            assert_eq!(io.to_string(), text);
        }
        assert_eq!(Error::Timeout.to_string(), "timeout");
    }
}
