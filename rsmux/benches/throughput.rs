//! One-stream throughput over loopback TCP, side by side with raw TCP (Go's
//! BenchmarkConnSmux / BenchmarkConnTCP): 128 KiB writes, 128 KiB reads. Also the open, write
//! one byte, read the echo, close cycle (Go's BenchmarkAcceptClose).

#![allow(missing_docs)] // criterion_group! defines an undocumented public function

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rsmux::{Config, Session};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

const CHUNK: usize = 128 * 1024;

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (c, s) = (c.unwrap(), s.unwrap().0);
    c.set_nodelay(true).unwrap();
    s.set_nodelay(true).unwrap();
    (c, s)
}

/// Moves `iters` chunks from `w` to `r`; returns the elapsed time.
async fn transfer<W, R>(mut w: W, mut r: R, iters: u64) -> (Duration, W, R)
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let buf = vec![1u8; CHUNK];
        for _ in 0..iters {
            w.write_all(&buf).await.unwrap();
        }
        w
    });
    let mut buf = vec![0u8; CHUNK];
    let mut left = iters as usize * CHUNK;
    while left > 0 {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0);
        left -= n;
    }
    let w = writer.await.unwrap();
    (start.elapsed(), w, r)
}

fn one_stream(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut g = c.benchmark_group("one_stream_128k");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("raw_tcp", |b| {
        let mut pair = Some(rt.block_on(tcp_pair()));
        b.iter_custom(|iters| {
            let (w, r) = pair.take().unwrap();
            let (d, w, r) = rt.block_on(transfer(w, r, iters));
            pair = Some((w, r));
            d
        })
    });
    for version in [1u8, 2] {
        g.bench_function(format!("rsmux_v{version}"), |b| {
            let cfg = Config::default().with_version(rsmux::Version::try_from(version).unwrap());
            let (client, server, w, r) = rt.block_on(async {
                let (a, b) = tcp_pair().await;
                let client = Session::client(a, cfg.clone()).unwrap();
                let server = Session::server(b, cfg).unwrap();
                let mut w = server.open_stream().await.unwrap();
                w.write_all(b"x").await.unwrap();
                let mut r = client.accept_stream().await.unwrap();
                r.read_exact(&mut [0u8; 1]).await.unwrap();
                (client, server, w, r)
            });
            let mut pair = Some((w, r));
            b.iter_custom(|iters| {
                let (w, r) = pair.take().unwrap();
                let (d, w, r) = rt.block_on(transfer(w, r, iters));
                pair = Some((w, r));
                d
            });
            drop((client, server));
        });
    }
    g.finish();
}

fn accept_close(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (client, server) = rt.block_on(async {
        let (a, b) = tcp_pair().await;
        (
            Session::client(a, Config::default()).unwrap(),
            Session::server(b, Config::default()).unwrap(),
        )
    });
    rt.spawn(async move {
        while let Ok(mut s) = server.accept_stream().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() {
                    let _ = s.write_all(&b).await;
                }
            });
        }
    });
    c.bench_function("open_write_echo_close", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = client.open_stream().await.unwrap();
            s.write_all(b"x").await.unwrap();
            s.read_exact(&mut [0u8; 1]).await.unwrap();
        })
    });
}

criterion_group!(benches, one_stream, accept_close);
criterion_main!(benches);
