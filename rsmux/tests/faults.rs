//! Fault injection: an IO wrapper that splits reads and writes into 1-byte pieces, stalls at
//! random points and fails on demand. Sessions must deliver every byte once, in order, and
//! surface errors to every stream without hanging.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rsmux::{Config, Error, Session};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf},
    time::timeout,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Wraps a transport: random short reads and writes (often 1 byte), random spurious
/// `Pending` (with a wake-up, like a stalled socket), and an error once `fail` is set.
struct Flaky {
    inner: DuplexStream,
    rng: StdRng,
    fail: Arc<AtomicBool>,
}

impl Flaky {
    fn new(inner: DuplexStream, seed: u64, fail: Arc<AtomicBool>) -> Flaky {
        Flaky {
            inner,
            rng: StdRng::seed_from_u64(seed),
            fail,
        }
    }

    fn stall(&mut self, cx: &mut Context<'_>) -> bool {
        if self.rng.gen_ratio(1, 4) {
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn piece(&mut self, len: usize) -> usize {
        if self.rng.gen_bool(0.5) {
            1.min(len)
        } else {
            self.rng.gen_range(1..=len.max(1)).min(len)
        }
    }

    fn broken(&self) -> Option<io::Error> {
        self.fail
            .load(Ordering::Relaxed)
            .then(|| io::Error::new(io::ErrorKind::ConnectionReset, "injected fault"))
    }
}

impl AsyncRead for Flaky {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        if self.stall(cx) {
            return Poll::Pending;
        }
        let n = self.piece(buf.remaining());
        let mut small = vec![0u8; n];
        let mut rb = ReadBuf::new(&mut small);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(rb.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Flaky {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.broken() {
            return Poll::Ready(Err(e));
        }
        if self.stall(cx) {
            return Poll::Pending;
        }
        let n = self.piece(data.len());
        Pin::new(&mut self.inner).poll_write(cx, &data[..n])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn flaky_pair(config: Config, seed: u64) -> (Session, Session, Arc<AtomicBool>) {
    let (a, b) = tokio::io::duplex(4096);
    let fail = Arc::new(AtomicBool::new(false));
    (
        Session::client(Flaky::new(a, seed, fail.clone()), config.clone()).unwrap(),
        Session::server(Flaky::new(b, seed + 1, fail.clone()), config).unwrap(),
        fail,
    )
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

#[tokio::test]
async fn partial_io_and_stalls_never_corrupt_or_reorder() {
    for (seed, version) in [(1u64, 1u8), (2, 2), (3, 1), (4, 2)] {
        let cfg = Config::default()
            .with_version(rsmux::Version::try_from(version).unwrap())
            .with_max_frame_size(1000 + seed as usize * 700);
        let (client, server, _fail) = flaky_pair(cfg, seed);
        let echo = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let mut s = server.accept_stream().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 3000];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                    s.shutdown().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            server
        });
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let mut s = client.open_stream().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let payload = data(20_000 + i as usize * 3001, seed * 100 + i);
                let (mut r, mut w) = tokio::io::split(&mut s);
                let expect = payload.clone();
                let write = async move {
                    w.write_all(&payload).await.unwrap();
                    w.shutdown().await.unwrap();
                };
                let read = async move {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).await.unwrap();
                    assert!(got == expect, "stream {i}: bytes differ");
                };
                tokio::join!(write, read);
            }));
        }
        for t in tasks {
            timeout(LIMIT, t).await.unwrap().unwrap();
        }
        timeout(LIMIT, echo).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_io_error_reaches_every_stream_and_nothing_hangs() {
    let (client, server, fail) = flaky_pair(Config::default(), 9);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..10 {
        let s = client.open_stream().await.unwrap();
        let (mut r, mut w) = s.into_split();
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 100];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        }));
        writers.push(tokio::spawn(async move {
            let chunk = vec![1u8; 10_000];
            loop {
                if let Err(e) = w.write_all(&chunk).await {
                    return e;
                }
            }
        }));
    }
    let acceptor = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(s) = server.accept_stream().await {
            held.push(s);
        }
        server.close_reason()
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    fail.store(true, Ordering::Relaxed);
    for r in readers {
        let err = timeout(LIMIT, r).await.unwrap().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }
    for w in writers {
        let err = timeout(LIMIT, w).await.unwrap().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }
    assert!(matches!(
        timeout(LIMIT, acceptor).await.unwrap().unwrap(),
        Some(Error::Io(_))
    ));
    timeout(LIMIT, client.closed()).await.unwrap();
    assert!(matches!(client.open_stream().await, Err(Error::Io(_))));
}

#[tokio::test]
async fn graceful_close_races_large_writes_and_loses_nothing() {
    for seed in 0..4u64 {
        let (client, server, _fail) = flaky_pair(Config::default(), 50 + seed);
        let payload = data(400_000, seed);
        let mut s = client.open_stream().await.unwrap();
        // Write as much as the stream takes without waiting, then close the session at once.
        let mut accepted = 0;
        while accepted < payload.len() {
            match timeout(Duration::from_millis(5), s.write(&payload[accepted..])).await {
                Ok(Ok(n)) => accepted += n,
                _ => break,
            }
        }
        let closing = tokio::spawn({
            let client = client.clone();
            async move { client.close().await }
        });
        let mut peer = timeout(LIMIT, server.accept_stream())
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        let _ = timeout(LIMIT, peer.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got.len(), accepted, "seed {seed}");
        assert!(got[..] == payload[..accepted]);
        timeout(LIMIT, closing).await.unwrap().unwrap().unwrap();
    }
}
