//! An in-process TCP proxy that delays every byte by half a round-trip time in each
//! direction, so that `rsmux bench --rtt` measures as over a link with latency.
//!
//! Every accepted connection gets its own connection to the upstream address and two delay
//! lines, one per direction. A delay line reads whatever the sender has sent, stamps the chunk
//! with the time it was read, and writes it to the other side once RTT/2 has passed since, in
//! order; the end of the stream (FIN) travels the same way, behind the data. Nothing is lost,
//! reordered or merged out of order: the receiver gets exactly the bytes that were sent.
//!
//! Limits (this models latency, nothing else):
//! - Memory: a direction of a connection holds at most [`LINE_CAP`] bytes (8 MiB). When that
//!   much is waiting it stops reading, so the sender sees ordinary TCP backpressure. Hence one
//!   direction of one connection carries at most `LINE_CAP` per RTT/2: 1.6 GB/s at 10 ms RTT,
//!   335 MB/s at 50 ms. A v2 smux stream (window at most half of `--smuxbuf` with auto-tuning,
//!   64 KiB in Go) stays below that; a v1 session has no window (its receive budget bounds
//!   unread data, not data in flight), so raw TCP and v1 rows can reach it at large RTTs. Memory is bounded per connection, so
//!   N connections may hold N times as much.
//! - Timing: a chunk leaves no earlier than RTT/2 after it was read. Tokio's timer ticks in
//!   whole milliseconds (it added about 1 ms per direction), so the delay lines wait on a
//!   timer thread of their own instead, whose deadlines are rounded up to a [`GRID`] of
//!   250 µs so that one wake-up serves every chunk due in that slot: a chunk normally leaves
//!   within about 0.3 ms after its time (later when the process is short of CPU), a round
//!   trip takes about RTT + 0.5 ms (`rsmux bench` measures and prints it). Bytes that wait
//!   in the kernel because the line is full are stamped when they are read, like packets in
//!   a router's queue.
//! - Connection setup: a new connection forwards nothing for one RTT, which is what the TCP
//!   handshake costs a client on a real link (the client's `connect` still returns at once,
//!   and what it writes meanwhile waits).
//! - No bandwidth limit, loss or jitter of its own; the proxy's copies cost CPU in this
//!   process. A connection reset by one side reaches the other side as a FIN.
//!
//! This file is self-contained (std and tokio only) so that the CLI's integration tests can
//! include it directly.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, Waker},
    thread::Thread,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::{JoinHandle, JoinSet},
};

/// Bytes one direction of one connection holds at most.
pub const LINE_CAP: usize = 8 << 20;

/// Largest read from a socket.
const READ_SIZE: usize = 128 << 10;

/// Bytes a chunk is counted as at least against [`LINE_CAP`] (its bookkeeping).
const MIN_CHARGE: usize = 256;

/// Deadlines of the delay lines are rounded up to a multiple of this.
pub const GRID: Duration = Duration::from_micros(250);

/// Smallest and largest round-trip time `--rtt` accepts, besides 0 (no proxy).
pub const MIN_RTT: Duration = Duration::from_millis(2);
pub const MAX_RTT: Duration = Duration::from_secs(1);

/// A running delay proxy; dropping it closes the listener and every connection through it.
pub struct DelayProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on a free loopback port; every connection to it is relayed to `upstream`
    /// with `rtt / 2` of delay each way.
    pub async fn start(upstream: SocketAddr, rtt: Duration) -> io::Result<DelayProxy> {
        let bind: SocketAddr = if upstream.is_ipv6() {
            "[::1]:0".parse().expect("valid address")
        } else {
            "127.0.0.1:0".parse().expect("valid address")
        };
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops the set, which aborts every relay.
            let mut relays = JoinSet::new();
            loop {
                tokio::select! {
                    res = listener.accept() => match res {
                        Ok((tcp, _)) => {
                            relays.spawn(relay(tcp, upstream, rtt));
                        }
                        // Typically out of file descriptors: wait instead of spinning.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Some(_) = relays.join_next(), if !relays.is_empty() => {}
                }
            }
        });
        Ok(DelayProxy { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one client connection.
async fn relay(client: TcpStream, upstream: SocketAddr, rtt: Duration) {
    let accepted = Instant::now();
    let Ok(server) = TcpStream::connect(upstream).await else {
        // Dropping the client connection tells it.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // The handshake a real link would cost.
    sleep_until(accepted + rtt).await;
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let one_way = rtt / 2;
    tokio::join!(
        delay_line(client_rd, server_wr, one_way),
        delay_line(server_rd, client_wr, one_way),
    );
}

enum Item {
    /// Bytes to write at the instant; the permit is their share of [`LINE_CAP`].
    Data(Vec<u8>, Instant, OwnedSemaphorePermit),
    /// The sender finished (EOF or error): shut the write side at the instant.
    End(Instant),
}

/// One direction: reads `rd`, writes each chunk to `wr` `delay` after it was read.
async fn delay_line(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, delay: Duration) {
    let room = Arc::new(Semaphore::new(LINE_CAP));
    // Unbounded in items, bounded in bytes by `room` (every item holds a permit).
    let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
    let reader = async move {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let permit = tokio::select! {
                p = room.clone().acquire_many_owned(READ_SIZE as u32) => p,
                () = tx.closed() => return,
            };
            let Ok(mut permit) = permit else { return };
            let n = tokio::select! {
                r = rd.read(&mut buf) => r.unwrap_or(0),
                // The writer gave up (the receiver is gone): stop reading.
                () = tx.closed() => return,
            };
            let due = Instant::now() + delay;
            if n == 0 {
                let _ = tx.send(Item::End(due));
                return;
            }
            // Keep the permits for what was read; the rest go back at once.
            let charge = permit.split(n.max(MIN_CHARGE)).unwrap_or(permit);
            if tx.send(Item::Data(buf[..n].to_vec(), due, charge)).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some(item) = rx.recv().await {
            match item {
                Item::Data(data, due, _charge) => {
                    sleep_until(due).await;
                    if wr.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Item::End(due) => {
                    sleep_until(due).await;
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Completes at `due` rounded up to the [`GRID`] (at once if that has passed).
fn sleep_until(due: Instant) -> Sleep {
    let t = timer();
    let since = due.saturating_duration_since(t.epoch).as_nanos();
    let grid = GRID.as_nanos();
    let slots = since.div_ceil(grid);
    let rounded = Duration::from_nanos(u64::try_from(slots * grid).unwrap_or(u64::MAX));
    Sleep {
        due: t.epoch.checked_add(rounded).unwrap_or(due).max(due),
    }
}

struct Sleep {
    due: Instant,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        timer().wake_at(self.due, cx.waker());
        Poll::Pending
    }
}

/// The timer thread shared by every delay line of the process: it sleeps until the earliest
/// deadline (the OS's sleeps are precise to some tens of microseconds) and wakes every task
/// whose deadline has come. A task polled again early registers again, and a stale wake-up
/// costs one spurious poll, so nothing is ever cancelled.
struct Timer {
    epoch: Instant,
    state: Mutex<TimerState>,
    thread: Thread,
}

#[derive(Default)]
struct TimerState {
    queue: BinaryHeap<Reverse<Entry>>,
    /// When the thread will look next (None: when woken).
    next: Option<Instant>,
    seq: u64,
}

struct Entry {
    due: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let thread = std::thread::Builder::new()
            .name("delay-proxy-timer".into())
            .spawn(|| {
                // Wait until the Timer is in place, then serve it forever.
                let t = loop {
                    match TIMER.get() {
                        Some(t) => break t,
                        None => std::thread::park(),
                    }
                };
                t.run();
            })
            .expect("cannot start the delay proxy's timer thread");
        // Its first wake-up comes with the first deadline.
        Timer {
            epoch: Instant::now(),
            state: Mutex::default(),
            thread: thread.thread().clone(),
        }
    })
}

impl Timer {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_at(&self, due: Instant, waker: &Waker) {
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        st.queue.push(Reverse(Entry {
            due,
            seq,
            waker: waker.clone(),
        }));
        if st.next.is_none_or(|n| due < n) {
            st.next = Some(due);
            drop(st);
            self.thread.unpark();
        }
    }

    fn run(&self) {
        let mut ready = Vec::new();
        loop {
            let now = Instant::now();
            let next = {
                let mut st = self.lock();
                while st.queue.peek().is_some_and(|e| e.0.due <= now) {
                    if let Some(Reverse(e)) = st.queue.pop() {
                        ready.push(e.waker);
                    }
                }
                st.next = st.queue.peek().map(|e| e.0.due);
                st.next
            };
            for w in ready.drain(..) {
                w.wake();
            }
            // An unpark that came after the lock was released makes this return at once.
            match next {
                Some(t) => std::thread::park_timeout(t.saturating_duration_since(now)),
                None => std::thread::park(),
            }
        }
    }
}

/// Measures the round trip of one byte through a proxy whose upstream echoes: the median of
/// `n` round trips on one connection, after a first one that pays for the handshake. It
/// shows what the timer's resolution adds to the nominal RTT.
pub async fn probe_rtt(proxy: SocketAddr, n: usize) -> io::Result<Duration> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.set_nodelay(true)?;
    let mut one = [0u8; 1];
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let t = Instant::now();
        tcp.write_all(b"p").await?;
        tcp.read_exact(&mut one).await?;
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    Ok(times.get(times.len() / 2).copied().unwrap_or_default())
}

/// Parses one `--rtt` value: `0` (no delay, no proxy) or a time with a unit, `us`, `ms` or
/// `s` (`10ms`, `0.05s`, `2500us`), from 2 ms to 1 s.
pub fn parse_rtt(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty value; expected a round-trip time such as 10ms or 0.05s".into());
    }
    if t.starts_with('-') {
        return Err(format!("'{t}': must not be negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{t}': expected a round-trip time such as 10ms or 0.05s"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale = match unit.as_str() {
        "" if v == 0.0 => 0.0,
        "" => return Err(format!("'{t}': give a unit: {t}ms or {t}s")),
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => {
            return Err(format!(
                "'{t}': unknown unit '{unit}' (use us, ms or s, e.g. 10ms)"
            ))
        }
    };
    let d = Duration::try_from_secs_f64(v * scale).map_err(|_| format!("'{t}': too large"))?;
    if !d.is_zero() && (d < MIN_RTT || d > MAX_RTT) {
        return Err(format!(
            "'{t}': must be 0 (no delay) or from {}ms to {}s",
            MIN_RTT.as_millis(),
            MAX_RTT.as_secs_f64()
        ));
    }
    Ok(d)
}
