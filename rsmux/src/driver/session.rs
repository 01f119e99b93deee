//! The public session handle.

use std::{
    future::{poll_fn, Future},
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{now, stream::Stream, Driver, Shared};
use crate::{
    config::{Config, Version},
    error::Error,
    proto::{Connection, Role, Stats},
};

/// One smux session over one connection: opens and accepts [`Stream`]s.
///
/// Creating a session spawns its driver task on the current tokio runtime. `Session` is a
/// cheap handle: clones share the session. The session closes gracefully when
/// [`close`](Self::close) is called, or once every `Session` handle and every stream is
/// dropped; it dies at once on a protocol error, a connection error or end-of-file, or a
/// keepalive timeout.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:12345").await?;
/// let session = rsmux::Session::client(tcp, rsmux::Config::default())?;
/// let mut stream = session.open_stream().await?;
/// stream.write_all(b"ping").await?;
/// stream.shutdown().await?; // half-close: sends FIN, reading goes on
/// let mut reply = Vec::new();
/// stream.read_to_end(&mut reply).await?;
/// session.close().await?;
/// # Ok(()) }
/// ```
pub struct Session {
    shared: Arc<Shared>,
    /// The session's span: the driver runs in it, and calls made through this handle
    /// (open, accept, close, drain) log in it.
    span: tracing::Span,
}

impl std::fmt::Debug for Session {
    /// A short summary: role, version, streams and whether the session has ended.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("Session")
            .field("role", &inner.conn.role())
            .field("version", &inner.conn.version())
            .field("streams", &inner.conn.num_streams())
            .field("closed", &inner.conn.is_closed())
            .finish()
    }
}

impl Session {
    /// Starts the client end of a session over `io` (opens odd stream ids, like Go's
    /// `smux.Client`).
    ///
    /// # Errors
    /// [`Error::Config`] if `config` is invalid; [`Error::NoRuntime`] outside a tokio runtime.
    #[doc(alias = "Client")]
    pub fn client<T>(io: T, config: Config) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::new(io, config, Role::Client)
    }

    /// Starts the server end of a session over `io` (opens even stream ids, like Go's
    /// `smux.Server`).
    ///
    /// # Errors
    /// [`Error::Config`] if `config` is invalid; [`Error::NoRuntime`] outside a tokio runtime.
    #[doc(alias = "Server")]
    pub fn server<T>(io: T, config: Config) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::new(io, config, Role::Server)
    }

    fn new<T>(io: T, config: Config, role: Role) -> Result<Session, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // Everything the driver logs carries the session's role, version and label.
        let span = tracing::debug_span!(
            "smux_session",
            role = ?role,
            version = if config.detect_version { "auto" } else if config.version == Version::V2 { "2" } else { "1" },
            label = %config.label
        );
        let conn = Connection::new(config, role, now())?;
        let shared = Shared::new(conn);
        runtime.spawn(tracing::Instrument::instrument(
            Driver::new(shared.clone(), io),
            span.clone(),
        ));
        Ok(Session { shared, span })
    }

    /// Opens a new stream. Its SYN is queued at once and goes out ahead of anything written
    /// to the stream.
    ///
    /// # Errors
    /// [`Error::GoAway`] once the stream-id space is exhausted (sticky; open a new session);
    /// the session's close reason once it has ended.
    ///
    /// # Cancel safety
    /// Completes without waiting; dropping the future opens nothing.
    #[doc(alias = "OpenStream")]
    pub async fn open_stream(&self) -> Result<Stream, Error> {
        let mut inner = self.shared.lock();
        let id = self.span.in_scope(|| inner.conn.open())?;
        inner.dispatch();
        Ok(Stream::new(self.shared.clone(), id))
    }

    /// Waits for the next stream opened by the peer.
    ///
    /// # Errors
    /// The session's close reason once it has ended and no accepted stream is left.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream is only taken from the queue when the future completes.
    #[doc(alias = "AcceptStream")]
    pub async fn accept_stream(&self) -> Result<Stream, Error> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream opened by the peer (see [`accept_stream`](Self::accept_stream)).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<Stream, Error>> {
        let mut inner = self.shared.lock();
        let res = self.span.in_scope(|| inner.conn.accept());
        inner.dispatch();
        match res {
            Ok(Some(id)) => Poll::Ready(Ok(Stream::new(self.shared.clone(), id))),
            Ok(None) => {
                if !inner.accept_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.accept_wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Closes the session gracefully: streams can no longer be used, data already written is
    /// sent (waiting at most [`CLOSE_TIMEOUT`](crate::proto::CLOSE_TIMEOUT)), then the
    /// connection is shut down. Like Go, no FIN is sent for open streams.
    ///
    /// # Errors
    /// [`Error::Closed`] if the session was already closed, or its close reason if it had
    /// died.
    ///
    /// # Cancel safety
    /// The close is started by the first poll; dropping the future afterwards does not stop it.
    pub async fn close(&self) -> Result<(), Error> {
        let first = {
            let mut inner = self.shared.lock();
            let first = self.span.in_scope(|| inner.conn.close(now()));
            inner.dispatch();
            first
        };
        self.closed().await;
        if first {
            return Ok(());
        }
        Err(self.close_reason().unwrap_or(Error::Closed))
    }

    /// Graceful drain, for a server going down: the session takes no new streams, lets the
    /// open ones finish, then closes as [`close`](Self::close) does; if streams are still
    /// open after `grace`, it closes anyway (their unsent data still leaves, as on `close`).
    ///
    /// The drain starts when this is called, not when the future is first polled: from then
    /// on, opening fails with [`Error::Draining`], the peer's new streams are refused (it
    /// reads EOF at once; counted in [`Stats::streams_refused`](crate::Stats::streams_refused)),
    /// as are streams it opened that were not accepted yet, and
    /// [`accept_stream`](Self::accept_stream) returns `Error::Draining`. The future (which
    /// holds its own handle to the session, so it can be spawned) completes once the
    /// connection is gone.
    ///
    /// # Errors
    /// [`Error::Timeout`] if streams were still open when `grace` ran out; the session's
    /// close reason if it had already ended or died while draining.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the drain; only the forced close after `grace` is
    /// then skipped.
    pub fn drain(
        &self,
        grace: std::time::Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let started = {
            let mut inner = self.shared.lock();
            let open = !inner.conn.is_closed();
            self.span.in_scope(|| inner.conn.drain());
            inner.dispatch();
            open
        };
        let session = self.clone();
        async move {
            if !started {
                return Err(session.close_reason().unwrap_or(Error::Closed));
            }
            if tokio::time::timeout(grace, session.closed()).await.is_err() {
                tracing::debug!("drain grace ran out with streams still open, closing");
                let _ = session.close().await;
                return Err(Error::Timeout);
            }
            match session.close_reason() {
                Some(Error::Closed) | None => Ok(()),
                Some(e) => Err(e),
            }
        }
    }

    /// Completes once the session has ended and its connection is gone (Go's `CloseChan`).
    ///
    /// # Cancel safety
    /// Cancel safe.
    #[doc(alias = "CloseChan")]
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.driver_done {
                return Poll::Ready(());
            }
            if !inner.closed_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                inner.closed_wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// True once the session was closed locally or died.
    #[doc(alias = "IsClosed")]
    pub fn is_closed(&self) -> bool {
        self.shared.lock().conn.is_closed()
    }

    /// Why the session ended: [`Error::Closed`] after a local close, otherwise the error that
    /// killed it. `None` while it is open.
    pub fn close_reason(&self) -> Option<Error> {
        self.shared.lock().conn.close_reason().cloned()
    }

    /// The protocol version in use. With [`Config::detect_version`] on a server, `None` until
    /// the client's first frame has arrived.
    pub fn version(&self) -> Option<Version> {
        self.shared.lock().conn.version()
    }

    /// Number of open streams (0 once the session is closed, as in Go).
    #[doc(alias = "NumStreams")]
    pub fn num_streams(&self) -> usize {
        self.shared.lock().conn.num_streams()
    }

    /// Received bytes not yet read by the application, all streams together (bounded by
    /// `max_receive_buffer` plus one frame).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().conn.buffered_bytes()
    }

    /// Counters an operator can export: frames and bytes in and out, streams opened and
    /// accepted, and what is buffered and queued now.
    pub fn stats(&self) -> Stats {
        self.shared.lock().conn.stats()
    }
}

impl Clone for Session {
    fn clone(&self) -> Session {
        self.shared.lock().session_handles += 1;
        Session {
            shared: self.shared.clone(),
            span: self.span.clone(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.session_handles -= 1;
        if inner.session_handles == 0 {
            inner.wake_driver();
        }
    }
}
