//! The client side of the benchmark workloads, over raw TCP connections or smux streams.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use rsmux::{Config, Session};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
    task::JoinSet,
};

use super::server::{DATA, IO_SIZE};

/// Any byte stream a workload can use.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
/// A boxed [`Io`]: what [`Opener::open`] returns.
pub type BoxIo = Box<dyn Io>;

/// Opens streams: a TCP connection each, or a stream of one smux session.
pub enum Opener {
    Tcp(SocketAddr),
    Smux(Session),
}

impl Opener {
    /// A TCP opener, or a new smux client session over one new TCP connection.
    pub async fn connect(addr: SocketAddr, smux: Option<Config>) -> io::Result<Opener> {
        match smux {
            None => Ok(Opener::Tcp(addr)),
            Some(config) => {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                Ok(Opener::Smux(Session::client(tcp, config)?))
            }
        }
    }

    pub async fn open(&self) -> io::Result<BoxIo> {
        match self {
            Opener::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                // Close with RST: thousands of open/close rounds must not pile up TIME_WAIT
                // sockets and exhaust the ephemeral ports.
                tcp.set_zero_linger()?;
                Ok(Box::new(tcp))
            }
            Opener::Smux(s) => Ok(Box::new(s.open_stream().await?)),
        }
    }

    /// Ends the session (if any), waiting a little for it.
    pub async fn finish(self) {
        if let Opener::Smux(s) = self {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
        }
    }
}

/// Bytes moved in some time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub bytes: u64,
    pub secs: f64,
}

impl Rate {
    /// MB (10^6 bytes) per second.
    pub fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// Operations done in some time.
#[derive(Debug, Clone, Copy)]
pub struct Ops {
    pub ops: u64,
    pub secs: f64,
}

impl Ops {
    /// Microseconds per operation.
    pub fn us_per_op(&self) -> f64 {
        self.secs * 1e6 / self.ops.max(1) as f64
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Joins workload tasks; the first error wins.
async fn join_all(mut set: JoinSet<io::Result<()>>) -> io::Result<()> {
    while let Some(r) = set.join_next().await {
        r.map_err(io::Error::other)??;
    }
    Ok(())
}

/// One way, client to server: `streams` streams each send `S` requests of `round` bytes in
/// 128 KiB writes (the server reads 128 KiB at a time and acknowledges) until `dur` passed.
pub async fn upload(
    opener: &Opener,
    streams: usize,
    round: u64,
    dur: Duration,
) -> io::Result<Rate> {
    let mut ios = Vec::with_capacity(streams);
    for _ in 0..streams {
        ios.push(opener.open().await?);
    }
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + dur;
    let mut set = JoinSet::new();
    for mut io in ios {
        let total = total.clone();
        set.spawn(async move {
            let mut req = [b'S'; 9];
            req[1..].copy_from_slice(&round.to_le_bytes());
            while Instant::now() < deadline {
                io.write_all(&req).await?;
                let mut left = round;
                while left > 0 {
                    let k = left.min(IO_SIZE as u64) as usize;
                    io.write_all(&DATA[..k]).await?;
                    left -= k as u64;
                }
                let mut ans = [0u8; 8];
                io.read_exact(&mut ans).await?;
                if u64::from_le_bytes(ans) != round {
                    return Err(bad(format!(
                        "server acknowledged {ans:?}, expected {round}"
                    )));
                }
                total.fetch_add(round, Relaxed);
            }
            io.shutdown().await
        });
    }
    join_all(set).await?;
    Ok(Rate {
        bytes: total.load(Relaxed),
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Open a stream, send one byte, read the one-byte answer, close; repeated for `dur`.
/// Works against the benchmark server (`P` request) and any echo server alike.
pub async fn open_close(opener: &Opener, dur: Duration) -> io::Result<Ops> {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < dur {
        let mut io = opener.open().await?;
        io.write_all(b"P").await?;
        let mut ans = [0u8; 1];
        io.read_exact(&mut ans).await?;
        if ans != *b"P" {
            return Err(bad(format!("answer {:#x}, expected 'P'", ans[0])));
        }
        drop(io);
        ops += 1;
    }
    Ok(Ops {
        ops,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Against an echo server: on each of `streams` streams a writer sends 128 KiB writes for
/// `dur` while a reader reads the echo (128 KiB reads). Once every byte came back the writer
/// half-closes and the reader expects EOF. The figure is the bytes echoed back (each direction
/// carries that much) over the time until the last EOF.
pub async fn echo(opener: &Opener, streams: usize, dur: Duration) -> io::Result<Rate> {
    let counters: Vec<Arc<AtomicU64>> = (0..streams).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = echo_streams(opener, &counters, &stop).await?;
    tokio::time::sleep_until((start + dur).into()).await;
    stop.store(true, Relaxed);
    while let Some(r) = set.join_next().await {
        r.map_err(io::Error::other)??;
    }
    Ok(Rate {
        bytes: counters.iter().map(|c| c.load(Relaxed)).sum(),
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Starts one echo writer/reader pair per counter (which counts the bytes echoed back). Once
/// `stop` is set a writer stops, waits until everything it sent came back, then half-closes;
/// the pair ends at the echo's EOF.
///
/// The FIN waits for the echo because Go smux (v1.5.16, and later versions alike) drops
/// whatever a v2 stream still has to send once the peer's FIN arrived while the stream waits
/// for window: "write everything, half-close, read the rest" would lose the echo's tail.
pub async fn echo_streams(
    opener: &Opener,
    counters: &[Arc<AtomicU64>],
    stop: &Arc<AtomicBool>,
) -> io::Result<JoinSet<io::Result<()>>> {
    let mut set = JoinSet::new();
    for counter in counters {
        let io = opener.open().await?;
        let (mut rd, mut wr) = tokio::io::split(io);
        let stop = stop.clone();
        let counter = counter.clone();
        let got = Arc::new(AtomicU64::new(0));
        let arrived = Arc::new(Notify::new());
        set.spawn(async move {
            let writer = {
                let (got, arrived) = (got.clone(), arrived.clone());
                async move {
                    let mut sent = 0u64;
                    while !stop.load(Relaxed) {
                        wr.write_all(&DATA).await?;
                        sent += IO_SIZE as u64;
                    }
                    while got.load(Relaxed) < sent {
                        arrived.notified().await;
                    }
                    wr.shutdown().await?;
                    Ok::<_, io::Error>(sent)
                }
            };
            let reader = async move {
                let mut buf = vec![0u8; IO_SIZE];
                let mut total = 0u64;
                loop {
                    let n = rd.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, io::Error>(total);
                    }
                    total += n as u64;
                    counter.fetch_add(n as u64, Relaxed);
                    got.store(total, Relaxed);
                    arrived.notify_one();
                }
            };
            let (sent, total) = tokio::try_join!(writer, reader)?;
            if sent != total {
                return Err(bad(format!("sent {sent} bytes, {total} came back")));
            }
            Ok(())
        });
    }
    Ok(set)
}

/// Starts one download per counter: each stream asks for an endless `G` request and counts
/// what it reads until `stop` is set.
pub async fn downloads(
    opener: &Opener,
    counters: &[Arc<AtomicU64>],
    stop: &Arc<AtomicBool>,
) -> io::Result<JoinSet<io::Result<()>>> {
    let mut set = JoinSet::new();
    for counter in counters {
        let mut io = opener.open().await?;
        let stop = stop.clone();
        let counter = counter.clone();
        set.spawn(async move {
            let mut req = [b'G'; 9];
            req[1..].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            io.write_all(&req).await?;
            let mut buf = vec![0u8; IO_SIZE];
            while !stop.load(Relaxed) {
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                counter.fetch_add(n as u64, Relaxed);
            }
            Ok(())
        });
    }
    Ok(set)
}
