//! [`KcpStream`]: the tokio driver of one [`Connection`], and the client dialer.
//!
//! Each connection has one task that owns the timers and sends datagrams; a client's task
//! also reads its (connected) UDP socket, a server connection is fed by its listener's task.
//! The protocol state sits in a mutex shared with the stream handle, which only copies bytes
//! in and out and parks a waker when there is nothing to do.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::config::KcpConfig;
use crate::conn::{Connection, Datagrams, Stats};
use crate::crypt::{Crypt, MTU_LIMIT};
use crate::snappy::Snappy;

/// Protocol state of one connection plus the driver's bookkeeping.
pub(crate) struct Shared {
    pub(crate) conn: Connection,
    epoch: Instant,
    last_heard: Instant,
    idle_timeout: Duration,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    error: Option<(io::ErrorKind, &'static str)>,
    local_closed: bool,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> u32 {
        // Truncation is the point: the KCP clock is a wrapping u32.
        self.epoch.elapsed().as_millis() as u32
    }

    /// Feeds a received datagram (decrypting it in place).
    pub(crate) fn input_datagram(&mut self, datagram: &mut [u8]) {
        let now = self.now_ms();
        if self.conn.handle_datagram(now, datagram).is_ok() {
            self.last_heard = Instant::now();
        }
        self.wake();
    }

    /// Feeds an already opened datagram payload.
    pub(crate) fn input_payload(&mut self, payload: &[u8]) -> Result<(), crate::conn::DropReason> {
        let now = self.now_ms();
        let r = self.conn.handle_payload(now, payload);
        if r.is_ok() {
            self.last_heard = Instant::now();
        }
        self.wake();
        r
    }

    /// How long since the last valid datagram from the peer.
    pub(crate) fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    pub(crate) fn fail(&mut self, kind: io::ErrorKind, why: &'static str) {
        if self.error.is_none() {
            self.error = Some((kind, why));
        }
        self.wake();
    }

    fn wake(&mut self) {
        let failed = self.error.is_some();
        if failed || self.conn.readable() {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
        if failed || self.conn.send_capacity() > 0 {
            if let Some(w) = self.write_waker.take() {
                w.wake();
            }
        }
    }

    fn error(&self) -> Option<io::Error> {
        self.error.map(|(k, why)| io::Error::new(k, why))
    }
}

/// What a connection's task and its handle share.
pub(crate) struct Inner {
    pub(crate) shared: Mutex<Shared>,
    pub(crate) notify: Notify,
}

impl Inner {
    pub(crate) fn new(conn: Connection, config: &KcpConfig) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Inner {
            shared: Mutex::new(Shared {
                conn,
                epoch: now,
                last_heard: now,
                idle_timeout: config.idle_timeout,
                read_waker: None,
                write_waker: None,
                error: None,
                local_closed: false,
            }),
            notify: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves consistent-enough state for closing.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a connection's datagrams go.
pub(crate) enum Route {
    /// A client's connected socket, which the task also reads.
    Connected,
    /// A listener's socket shared by many peers; the listener reads it. On exit the task
    /// reports `(peer, generation)` so the listener forgets the peer.
    Shared {
        peer: SocketAddr,
        generation: u64,
        exited: mpsc::UnboundedSender<(SocketAddr, u64)>,
    },
}

/// The task of one connection: timers, sending, and (client) receiving.
pub(crate) async fn drive(inner: Arc<Inner>, socket: Arc<UdpSocket>, route: Route) {
    let client = matches!(route, Route::Connected);
    let mut buf = vec![0u8; MTU_LIMIT + 1];
    let mut batch = Datagrams::new();
    loop {
        let (wait, done) = {
            let mut s = inner.lock();
            let now = s.now_ms();
            s.conn.handle_timeout(now);
            if s.conn.kcp().is_dead() {
                s.fail(
                    io::ErrorKind::TimedOut,
                    "KCP link dead: a segment went unacknowledged 20 times",
                );
            }
            let idle = s.silent_for();
            if idle >= s.idle_timeout {
                s.fail(
                    io::ErrorKind::TimedOut,
                    "no datagram from the KCP peer within the idle timeout",
                );
            }
            s.conn.take_transmits(&mut batch);
            s.wake();
            let drained = s.conn.kcp().wait_snd() == 0;
            let done = s.error.is_some() || (client && s.local_closed && drained);
            let wait = Duration::from_millis(u64::from(s.conn.poll_timeout(now)))
                .min(s.idle_timeout.saturating_sub(idle));
            (wait, done)
        };
        for d in batch.iter() {
            // UDP send errors (e.g. ICMP unreachable reported on a connected socket) are
            // transient for KCP: the segment is resent later.
            let _ = match &route {
                Route::Connected => socket.send(d).await,
                Route::Shared { peer, .. } => socket.send_to(d, *peer).await,
            };
        }
        if done {
            break;
        }
        let wait = wait.max(Duration::from_millis(1));
        tokio::select! {
            _ = inner.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            r = socket.recv(&mut buf), if client => {
                if let Ok(n) = r {
                    let mut s = inner.lock();
                    s.input_datagram(&mut buf[..n]);
                    // Take what else has arrived under the same lock.
                    for _ in 0..64 {
                        match socket.try_recv(&mut buf) {
                            Ok(n) => s.input_datagram(&mut buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }
    if let Route::Shared {
        peer,
        generation,
        exited,
    } = route
    {
        let _ = exited.send((peer, generation));
    }
}

/// The byte stream of one KCP connection, without compression.
struct RawStream {
    inner: Arc<Inner>,
}

impl Drop for RawStream {
    fn drop(&mut self) {
        self.inner.lock().local_closed = true;
        self.inner.notify.notify_one();
    }
}

impl AsyncRead for RawStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.inner.lock();
        if s.conn.readable() {
            let n = s.conn.recv(buf.initialize_unfilled());
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for RawStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.inner.lock();
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if s.local_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = s.conn.send(buf);
        if n == 0 && !buf.is_empty() {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // kcptun sets no write delay: send at once.
        let now = s.now_ms();
        s.conn.flush(now);
        drop(s);
        self.inner.notify.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// KCP has no close: shutdown stops writing; the connection ends when both sides stop
    /// talking (the idle timeout) or, for a client, once everything sent is acknowledged
    /// and the stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.lock().local_closed = true;
        self.inner.notify.notify_one();
        Poll::Ready(Ok(()))
    }
}

enum Io {
    Plain(RawStream),
    Snappy(Box<Snappy<RawStream>>),
}

/// One KCP connection as an ordered byte stream (`AsyncRead + AsyncWrite`), with kcptun's
/// crypt, FEC and (if configured) snappy layers: give it to `rsmux::Session::client` or
/// `server` as is.
///
/// Used directly, call `flush` after the last write of a message, as with any buffered
/// writer: with compression on, a write that finds the send window full is accepted but its
/// compressed chunk waits in the snappy layer until the next write or flush.
pub struct KcpStream {
    io: Io,
    inner: Arc<Inner>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    local: SocketAddr,
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpStream")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Applies `config`'s socket options: `sockbuf`-byte buffers (the OS may cap them, which is
/// not an error) and, unless 0, the DSCP (an error if the OS refuses it).
pub(crate) fn configure_socket(socket: &UdpSocket, config: &KcpConfig) -> io::Result<()> {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(config.sockbuf);
    let _ = s.set_send_buffer_size(config.sockbuf);
    if config.dscp != 0 {
        let tos = u32::from(config.dscp) << 2;
        if socket.local_addr()?.is_ipv4() {
            s.set_tos_v4(tos)?;
        } else {
            s.set_tclass_v6(tos)?;
            // IPv4 peers of a dual-stack socket go out with IP_TOS.
            let _ = s.set_tos_v4(tos);
        }
    }
    Ok(())
}

/// The DSCP the OS has for `socket` (its TOS byte or traffic class shifted right by 2).
pub(crate) fn socket_dscp(socket: &UdpSocket) -> io::Result<u8> {
    let s = socket2::SockRef::from(socket);
    let tos = if socket.local_addr()?.is_ipv4() {
        s.tos_v4()?
    } else {
        s.tclass_v6()?
    };
    Ok((tos >> 2) as u8)
}

fn invalid_input(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl KcpStream {
    pub(crate) fn new(
        inner: Arc<Inner>,
        socket: Arc<UdpSocket>,
        config: &KcpConfig,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        let raw = RawStream {
            inner: inner.clone(),
        };
        let io = if config.compression {
            Io::Snappy(Box::new(Snappy::new(raw)))
        } else {
            Io::Plain(raw)
        };
        KcpStream {
            io,
            inner,
            socket,
            peer,
            local,
        }
    }

    /// Dials a kcptun server (or a [`crate::KcpListener`]) at `addr` from a new UDP socket,
    /// with a random conversation id. There is no handshake: this returns at once and the
    /// first write opens the conversation.
    pub async fn connect(addr: impl ToSocketAddrs, config: &KcpConfig) -> io::Result<KcpStream> {
        config.validate().map_err(invalid_input)?;
        let peer = lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| invalid_input("address resolved to nothing"))?;
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(bind).await?;
        configure_socket(&socket, config)?;
        socket.connect(peer).await?;
        let local = socket.local_addr()?;
        let crypt = Crypt::new(config.crypt, &config.key);
        let conn = Connection::new(rand::random(), config, crypt);
        let inner = Inner::new(conn, config);
        let socket = Arc::new(socket);
        tokio::spawn(drive(inner.clone(), socket.clone(), Route::Connected));
        Ok(KcpStream::new(inner, socket, config, peer, local))
    }

    /// The peer's UDP address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The DSCP its datagrams go out with, as the OS reports it for the UDP socket (a server
    /// connection shares its listener's socket).
    pub fn dscp(&self) -> io::Result<u8> {
        socket_dscp(&self.socket)
    }

    /// The KCP conversation id.
    pub fn conv(&self) -> u32 {
        self.inner.lock().conn.conv()
    }

    /// Counters of this connection (datagrams, drops, FEC recoveries, retransmissions).
    pub fn stats(&self) -> Stats {
        self.inner.lock().conn.stats()
    }

    /// A handle that reads this connection's counters after the stream was moved (for
    /// example into an `rsmux::Session`).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            inner: self.inner.clone(),
        }
    }
}

/// Reads a connection's [`Stats`]; see [`KcpStream::stats_handle`].
#[derive(Clone)]
pub struct StatsHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatsHandle").field(&self.get()).finish()
    }
}

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> Stats {
        self.inner.lock().conn.stats()
    }
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Snappy(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Snappy(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Snappy(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Snappy(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
