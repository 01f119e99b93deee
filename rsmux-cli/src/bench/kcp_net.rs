//! The network pieces of the KCP comparison, all in the bench process: the lossy UDP relay
//! between a tunnel client and its server, the TCP sink the tunnel server forwards to, the
//! incompressible payload, and the one-way transfer through a tunnel.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Notify,
    task::{JoinHandle, JoinSet},
};

/// A small deterministic PRNG (SplitMix64): the same seed drops the same datagrams.
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p` (0 to 1).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Bytes of payload the writers cycle through: incompressible, so snappy cannot shrink it,
/// and longer than snappy's 64 KiB blocks so no block repeats within one.
const PAYLOAD_LEN: usize = 1 << 20;

/// The incompressible payload.
pub fn payload() -> Bytes {
    let mut rng = SplitMix::new(0x6b63_7062_656e_6368);
    let mut v = Vec::with_capacity(PAYLOAD_LEN);
    while v.len() < PAYLOAD_LEN {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    Bytes::from(v)
}

/// `SOL_SOCKET`, `SO_SNDBUF`, `SO_RCVBUF` on Linux.
const SOL_SOCKET: i32 = 1;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

/// Asks for socket buffers of `bytes` each way (the kernel caps them at its maximum), as
/// kcptun's `--sockbuf` does, so the relay itself does not drop bursts.
#[allow(unsafe_code)] // setsockopt
fn set_buffers(sock: &UdpSocket, bytes: i32) {
    for name in [SO_SNDBUF, SO_RCVBUF] {
        // SAFETY: a valid socket descriptor and a pointer to an i32 of the given length.
        unsafe {
            setsockopt(
                sock.as_raw_fd(),
                SOL_SOCKET,
                name,
                (&bytes as *const i32).cast(),
                4,
            );
        }
    }
}

/// Socket buffer size of the relay's sockets (kcptun's `--sockbuf` default).
const RELAY_SOCKBUF: i32 = 4 << 20;
/// Most client addresses the relay serves (each gets its own socket to the server).
const RELAY_PEERS: usize = 64;

/// Datagrams the relay passed and dropped, per direction.
#[derive(Debug, Default)]
pub struct RelayCounts {
    pub up_forwarded: AtomicU64,
    pub up_dropped: AtomicU64,
    pub down_forwarded: AtomicU64,
    pub down_dropped: AtomicU64,
}

/// A UDP relay on loopback between tunnel clients and one server that drops a fraction of
/// the datagrams each way (seeded, so every row sees the same pattern). Each client address
/// gets its own socket towards the server, as NAT would. Stops when dropped.
pub struct LossyRelay {
    pub addr: SocketAddr,
    pub counts: Arc<RelayCounts>,
    task: JoinHandle<()>,
}

impl LossyRelay {
    /// Listens on an ephemeral loopback port and forwards to `server`, dropping each
    /// datagram with probability `loss` (0 to 1).
    pub async fn start(server: SocketAddr, loss: f64, seed: u64) -> io::Result<LossyRelay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        set_buffers(&front, RELAY_SOCKBUF);
        let addr = front.local_addr()?;
        let counts = Arc::new(RelayCounts::default());
        let task = tokio::spawn(relay_up(front, server, loss, seed, counts.clone()));
        Ok(LossyRelay { addr, counts, task })
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client → server, and a task per client for server → client (ended with this one).
async fn relay_up(
    front: Arc<UdpSocket>,
    server: SocketAddr,
    loss: f64,
    seed: u64,
    counts: Arc<RelayCounts>,
) {
    let mut rng = SplitMix::new(seed);
    let mut peers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut downs = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let up = match peers.get(&from) {
            Some(s) => s.clone(),
            None if peers.len() >= RELAY_PEERS => continue,
            None => {
                let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if sock.connect(server).await.is_err() {
                    continue;
                }
                set_buffers(&sock, RELAY_SOCKBUF);
                let sock = Arc::new(sock);
                let down_seed = seed ^ (0xd0d0 + peers.len() as u64);
                downs.spawn(relay_down(
                    sock.clone(),
                    front.clone(),
                    from,
                    loss,
                    down_seed,
                    counts.clone(),
                ));
                peers.insert(from, sock.clone());
                sock
            }
        };
        if rng.chance(loss) {
            counts.up_dropped.fetch_add(1, Relaxed);
        } else {
            counts.up_forwarded.fetch_add(1, Relaxed);
            let _ = up.send(&buf[..n]).await;
        }
    }
}

async fn relay_down(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    loss: f64,
    seed: u64,
    counts: Arc<RelayCounts>,
) {
    let mut rng = SplitMix::new(seed);
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(n) = up.recv(&mut buf).await else {
            // ICMP "port unreachable" while the server starts: keep going.
            continue;
        };
        if rng.chance(loss) {
            counts.down_dropped.fetch_add(1, Relaxed);
        } else {
            counts.down_forwarded.fetch_add(1, Relaxed);
            let _ = front.send_to(&buf[..n], client).await;
        }
    }
}

/// Bytes that reached the sink during one transfer.
#[derive(Debug, Default)]
pub struct Tally {
    bytes: AtomicU64,
    notify: Notify,
}

impl Tally {
    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Waits until `total` bytes arrived (true) or `deadline` passed (false).
    pub async fn reach(&self, total: u64, deadline: tokio::time::Instant) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.bytes() >= total {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.bytes() >= total;
            }
        }
    }
}

/// The target of the tunnel servers: a TCP listener in this process that reads and discards,
/// counting into the [`Tally`] current when each connection was accepted (so late bytes of a
/// previous transfer never count for the next).
pub struct Sink {
    pub addr: SocketAddr,
    current: Arc<Mutex<Arc<Tally>>>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let current = Arc::new(Mutex::new(Arc::new(Tally::default())));
        let cur = current.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let tally = cur.lock().unwrap_or_else(|e| e.into_inner()).clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 128 * 1024];
                    while let Ok(n) = tcp.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tally.bytes.fetch_add(n as u64, Relaxed);
                        tally.notify.notify_waiters();
                    }
                });
            }
        });
        Ok(Sink {
            addr,
            current,
            task,
        })
    }

    /// A fresh tally for the connections accepted from now on.
    pub fn new_transfer(&self) -> Arc<Tally> {
        let t = Arc::new(Tally::default());
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = t.clone();
        t
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one transfer through a tunnel measured.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes that reached the sink by the end.
    pub bytes: u64,
    /// From the first connect to the last byte (or the time limit).
    pub secs: f64,
    /// Whether every byte arrived within the time limit.
    pub complete: bool,
}

/// Bytes per write of the transfer.
const WRITE_SIZE: usize = 64 * 1024;

/// Opens `conns` TCP connections to a tunnel client at `entry`, each writing `per_conn` bytes
/// of `payload`, and waits until all of them reached the sink's `tally` or `limit` passed.
/// The connections stay open until then (kcptun has no half-close: closing early could cut
/// bytes still in flight), and are dropped after.
pub async fn transfer(
    entry: SocketAddr,
    conns: usize,
    per_conn: u64,
    payload: &Bytes,
    tally: &Tally,
    limit: Duration,
) -> io::Result<Transfer> {
    let total = per_conn * conns as u64;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut writers = JoinSet::new();
    for i in 0..conns {
        let payload = payload.clone();
        writers.spawn(async move {
            let mut tcp = TcpStream::connect(entry).await?;
            tcp.set_nodelay(true)?;
            let mut at = (i * 4096 * 7) % payload.len();
            let mut left = per_conn;
            while left > 0 {
                let k = (left as usize).min(WRITE_SIZE).min(payload.len() - at);
                tcp.write_all(&payload[at..at + k]).await?;
                at = (at + k) % payload.len();
                left -= k as u64;
            }
            // Held open until the transfer ends (the task is aborted then).
            std::future::pending::<()>().await;
            io::Result::Ok(tcp)
        });
    }
    let complete = loop {
        tokio::select! {
            done = tally.reach(total, deadline) => break done,
            Some(res) = writers.join_next() => {
                match res {
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(io::Error::other(e)),
                    Ok(Ok(_)) => {}
                }
            }
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let bytes = tally.bytes().min(total);
    writers.abort_all();
    Ok(Transfer {
        bytes,
        secs,
        complete,
    })
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (`RcvbufErrors` in
/// `/proc/net/snmp`), all sockets of this network namespace.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_is_close_to_the_asked_fraction_and_repeatable() {
        let mut a = SplitMix::new(7);
        let drops = (0..100_000).filter(|_| a.chance(0.03)).count();
        assert!((2_700..3_300).contains(&drops), "{drops}");
        let mut b = SplitMix::new(7);
        let mut c = SplitMix::new(7);
        assert!((0..100).all(|_| b.next_u64() == c.next_u64()));
        assert!(!(0..1000).any(|_| a.chance(0.0)));
    }

    #[test]
    fn payload_is_incompressible_looking() {
        let p = payload();
        assert_eq!(p.len(), PAYLOAD_LEN);
        let mut seen = [0u32; 256];
        for b in p.iter() {
            seen[*b as usize] += 1;
        }
        // Every byte value appears about len/256 times.
        assert!(seen.iter().all(|&n| (3000..5200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn udp_counters_are_readable() {
        assert!(udp_rcvbuf_errors().is_some());
        assert!(load_average().is_some_and(|l| l >= 0.0));
    }

    #[tokio::test]
    async fn relay_drops_the_seeded_datagrams_both_ways() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = LossyRelay::start(server.local_addr().unwrap(), 0.5, 1)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(relay.addr).await.unwrap();
        // The relay draws once per datagram, in order: the same generator predicts which
        // get through.
        let mut up_rng = SplitMix::new(1);
        let up: Vec<u32> = (0..200).filter(|_| !up_rng.chance(0.5)).collect();
        for i in 0..200u32 {
            client.send(&i.to_le_bytes()).await.unwrap();
        }
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        let mut from = None;
        while got.len() < up.len() {
            let (n, f) = tokio::time::timeout(Duration::from_secs(10), server.recv_from(&mut buf))
                .await
                .expect("datagrams through the relay")
                .unwrap();
            assert_eq!(n, 4);
            got.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            from = Some(f);
        }
        assert_eq!(got, up);
        // Server to client, with the down direction's own seed.
        let mut down_rng = SplitMix::new(1 ^ 0xd0d0);
        let down: Vec<u32> = (0..200).filter(|_| !down_rng.chance(0.5)).collect();
        for i in 0..200u32 {
            server
                .send_to(&i.to_le_bytes(), from.unwrap())
                .await
                .unwrap();
        }
        let mut back = Vec::new();
        while back.len() < down.len() {
            let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
                .await
                .expect("datagrams back through the relay")
                .unwrap();
            back.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
        }
        assert_eq!(back, down);
        let c = &relay.counts;
        assert_eq!(c.up_forwarded.load(Relaxed), up.len() as u64);
        assert_eq!(c.down_forwarded.load(Relaxed), down.len() as u64);
        // Drops after the last forwarded datagram may still be uncounted.
        assert!(c.up_dropped.load(Relaxed) <= 200 - up.len() as u64);
        assert!(up.len() > 50 && up.len() < 150, "{}", up.len());
    }

    #[tokio::test]
    async fn transfer_counts_what_reaches_the_sink() {
        let sink = Sink::start().await.unwrap();
        let tally = sink.new_transfer();
        let p = payload();
        let t = transfer(sink.addr, 3, 300_000, &p, &tally, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(t.complete);
        assert_eq!(t.bytes, 900_000);
        assert!(t.secs > 0.0);
        // A fresh tally starts from zero.
        assert_eq!(sink.new_transfer().bytes(), 0);
    }
}
