//! [`KcpListener`]: one UDP socket, connections demultiplexed by source address (kcp-go's
//! rule), with a bound on peers and on connections waiting to be accepted.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, Mutex};

use crate::config::KcpConfig;
use crate::conn::{new_peer_conv, Connection, DropReason};
use crate::crypt::{Crypt, MTU_LIMIT};
use crate::kcp::InputError;
use crate::stream::{drive, Inner, KcpStream, Route};

/// Counters of a [`KcpListener`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// New peers refused because `max_peers` or `accept_backlog` was full (one per datagram).
    pub rejected_peers: u64,
    /// Datagrams from unknown addresses dropped: bad size or CRC (wrong key or cipher,
    /// garbage), or not a PUSH/ACK that could open a conversation.
    pub invalid_datagrams: u64,
    /// Peers tracked now (at most `max_peers`; a peer is forgotten when its connection ends).
    pub peers: u64,
    /// Peers dropped to make room for a new one while `max_peers` were tracked, because they
    /// had been silent for half the idle timeout.
    pub evicted_peers: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rejected_peers: AtomicU64,
    invalid_datagrams: AtomicU64,
    peers: AtomicU64,
    evicted_peers: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Counters {
    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn set_peers(&self, n: usize) {
        self.peers.store(n as u64, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn get(&self) -> ListenerStats {
        ListenerStats {
            rejected_peers: self.rejected_peers.load(Ordering::Relaxed),
            invalid_datagrams: self.invalid_datagrams.load(Ordering::Relaxed),
            peers: self.peers.load(Ordering::Relaxed),
            evicted_peers: self.evicted_peers.load(Ordering::Relaxed),
        }
    }
}

/// A KCP server socket: every new source address that sends a valid first datagram (right
/// key and cipher, a PUSH or ACK segment) becomes a [`KcpStream`] from [`KcpListener::accept`].
///
/// Memory is bounded, whatever arrives from however many (spoofed) addresses:
/// - a datagram from an unknown address creates nothing unless it passes the crypt check
///   (right key and cipher, CRC32) and starts with a well-formed PUSH or ACK segment; garbage,
///   truncated or wrong-key datagrams are only counted ([`ListenerStats::invalid_datagrams`]);
/// - at most [`KcpConfig::max_peers`] peers (1024 by default) are tracked and at most
///   [`KcpConfig::accept_backlog`] connections wait for `accept`; datagrams from further new
///   addresses are dropped and counted ([`ListenerStats::rejected_peers`]); peers already
///   tracked and talking, such as real sessions that predate a flood, are never displaced;
/// - a peer silent for [`KcpConfig::idle_timeout`] (60 s) is forgotten; while `max_peers` are
///   tracked, the one silent longest gives way to a new peer once it has been silent for half
///   that (30 s: no live kcptun session is that quiet, smux keepalive sends every 10 s and
///   drops a session after 30 s without a frame), so a flood of one-shot forged datagrams
///   locks new clients out for at most that long ([`ListenerStats::evicted_peers`]).
///
/// A peer opened by one forged datagram costs about 29 KB of heap (KCP and FEC state, its
/// stream; snappy's buffers are only made on the first write), measured in `tests/flood.rs`.
/// A peer that keeps sending can make its connection hold at most its KCP windows, about
/// `2 × rcv_wnd + snd_wnd` segments of `mtu` bytes, plus [`crate::fec::MAX_GROUPS`] FEC groups;
/// the total is bounded by `max_peers` times that. With `--crypt none` anyone can forge
/// datagrams that pass the check (kcptun's crypt is unauthenticated in any case), so lower
/// `max_peers` where that matters.
/// Dropping the listener stops accepting; connections already made live on.
pub struct KcpListener {
    accepted: Mutex<mpsc::Receiver<(KcpStream, SocketAddr)>>,
    local: SocketAddr,
    counters: Arc<Counters>,
    socket: Arc<UdpSocket>,
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl KcpListener {
    /// Binds a UDP socket at `addr` and starts demultiplexing.
    pub async fn bind(addr: impl ToSocketAddrs, config: &KcpConfig) -> io::Result<KcpListener> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let socket = UdpSocket::bind(addr).await?;
        crate::stream::configure_socket(&socket, config)?;
        let socket = Arc::new(socket);
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(config.accept_backlog);
        let counters = Arc::new(Counters::default());
        let socket_for_dscp = socket.clone();
        let demux = Demux {
            socket,
            config: config.clone(),
            crypt: Crypt::new(config.crypt, &config.key),
            peers: HashMap::new(),
            next_generation: 0,
            next_eviction_scan: tokio::time::Instant::now(),
            accept: tx,
            counters: counters.clone(),
        };
        tokio::spawn(demux.run());
        Ok(KcpListener {
            accepted: Mutex::new(rx),
            local,
            counters,
            socket: socket_for_dscp,
        })
    }

    /// The next new connection and its peer address.
    pub async fn accept(&self) -> io::Result<(KcpStream, SocketAddr)> {
        self.accepted
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::other("KCP listener task ended"))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The DSCP its datagrams go out with, as the OS reports it for the UDP socket.
    pub fn dscp(&self) -> io::Result<u8> {
        crate::stream::socket_dscp(&self.socket)
    }

    /// The listener's counters now.
    pub fn stats(&self) -> ListenerStats {
        self.counters.get()
    }

    /// Waits until the counters satisfy `until` (for monitoring and tests).
    pub async fn stats_reach(&self, until: impl Fn(&ListenerStats) -> bool) {
        loop {
            let changed = self.counters.changed.notified();
            if until(&self.counters.get()) {
                return;
            }
            changed.await;
        }
    }
}

struct Peer {
    generation: u64,
    inner: Arc<Inner>,
}

/// Least time between two scans for a peer to evict (a scan locks every peer).
const EVICTION_SCAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

struct Demux {
    /// No scan for a peer to evict before this (see [`EVICTION_SCAN_INTERVAL`]).
    next_eviction_scan: tokio::time::Instant,
    socket: Arc<UdpSocket>,
    config: KcpConfig,
    crypt: Crypt,
    peers: HashMap<SocketAddr, Peer>,
    next_generation: u64,
    accept: mpsc::Sender<(KcpStream, SocketAddr)>,
    counters: Arc<Counters>,
}

impl Demux {
    async fn run(mut self) {
        let (exited_tx, mut exited_rx) = mpsc::unbounded_channel();
        let mut buf = vec![0u8; MTU_LIMIT + 1];
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(&mut buf[..n], from, &exited_tx),
                    // ICMP errors surface here on some systems; the socket stays usable.
                    Err(_) => continue,
                },
                Some((addr, generation)) = exited_rx.recv() => {
                    if self.peers.get(&addr).is_some_and(|p| p.generation == generation) {
                        self.peers.remove(&addr);
                        self.counters.set_peers(self.peers.len());
                    }
                }
            }
            if self.accept.is_closed() && self.peers.is_empty() {
                break;
            }
        }
    }

    fn datagram(
        &mut self,
        datagram: &mut [u8],
        from: SocketAddr,
        exited: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        let Ok(payload) = self.crypt.open(datagram) else {
            match self.peers.get(&from) {
                // Counted on the connection as a crypt error.
                Some(p) => p.inner.lock().input_datagram(&mut []),
                None => self.counters.bump(&self.counters.invalid_datagrams),
            }
            return;
        };
        if let Some(p) = self.peers.get(&from) {
            let mut s = p.inner.lock();
            match s.input_payload(payload) {
                // kcp-go's rule: a known address with another conversation replaces its
                // session only with a fresh one (first segment PUSH sn 0).
                Err(DropReason::Kcp(InputError::OtherConv(_))) if is_fresh(payload) => {
                    s.fail(
                        io::ErrorKind::ConnectionReset,
                        "peer started a new KCP conversation",
                    );
                    drop(s);
                    self.peers.remove(&from);
                    self.counters.set_peers(self.peers.len());
                }
                _ => {
                    let send = s.conn.has_transmits();
                    drop(s);
                    if send {
                        p.inner.notify.notify_one();
                    }
                    return;
                }
            }
        }
        self.new_peer(payload, from, exited);
    }

    /// Drops the peer silent longest if it has been silent for half the idle timeout; true if
    /// one was dropped. Scans at most every [`EVICTION_SCAN_INTERVAL`], so a flood of new
    /// addresses cannot make the listener lock every peer per datagram.
    fn evict_silent_peer(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now < self.next_eviction_scan {
            return false;
        }
        self.next_eviction_scan = now + EVICTION_SCAN_INTERVAL;
        let Some((&addr, silent)) = self
            .peers
            .iter()
            .map(|(addr, p)| (addr, p.inner.lock().silent_for()))
            .max_by_key(|&(_, silent)| silent)
        else {
            return false;
        };
        if silent < self.config.idle_timeout / 2 {
            return false;
        }
        if let Some(p) = self.peers.remove(&addr) {
            p.inner.lock().fail(
                io::ErrorKind::ConnectionReset,
                "KCP peer silent for half the idle timeout, dropped for a new peer",
            );
            p.inner.notify.notify_one();
        }
        self.counters.evicted_peers.fetch_add(1, Ordering::Relaxed);
        self.counters.set_peers(self.peers.len());
        true
    }

    fn new_peer(
        &mut self,
        payload: &[u8],
        from: SocketAddr,
        exited: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        let Some(conv) = new_peer_conv(payload) else {
            self.counters.bump(&self.counters.invalid_datagrams);
            return;
        };
        if self.accept.capacity() == 0
            || self.peers.len() >= self.config.max_peers && !self.evict_silent_peer()
        {
            self.counters.bump(&self.counters.rejected_peers);
            return;
        }
        let conn = Connection::new(conv, &self.config, self.crypt.clone());
        let inner = Inner::new(conn, &self.config);
        if inner.lock().input_payload(payload).is_err() {
            return;
        }
        let stream = KcpStream::new(
            inner.clone(),
            self.socket.clone(),
            &self.config,
            from,
            self.socket.local_addr().unwrap_or(from),
        );
        // Reserve the backlog slot first, so the peer is tracked before `accept` can see it.
        let Ok(permit) = self.accept.try_reserve() else {
            self.counters.bump(&self.counters.rejected_peers);
            return;
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        self.peers.insert(
            from,
            Peer {
                generation,
                inner: inner.clone(),
            },
        );
        self.counters.set_peers(self.peers.len());
        tokio::spawn(drive(
            inner,
            self.socket.clone(),
            Route::Shared {
                peer: from,
                generation,
                exited: exited.clone(),
            },
        ));
        permit.send((stream, from));
    }
}

/// True if the payload's first segment is a PUSH with sn 0 (a conversation's first datagram).
fn is_fresh(payload: &[u8]) -> bool {
    let kcp = match crate::fec::shard_type(payload) {
        Some(crate::fec::TYPE_DATA) => &payload[crate::fec::HEADER_SIZE.min(payload.len())..],
        Some(_) => return false,
        None => payload,
    };
    kcp.len() >= crate::kcp::OVERHEAD && kcp[4] == 81 && kcp[12..16] == [0, 0, 0, 0]
}
