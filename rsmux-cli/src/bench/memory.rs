//! Heap bytes per idle open stream, measured with the counting global allocator (installed
//! only with the `bench-alloc` feature; without it the figure is not measured: n/a).

use std::{io, time::Duration};

use rsmux::{Config, Session};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::alloc::live_bytes;

/// Whether this build can measure heap bytes (built with `--features bench-alloc`).
pub const AVAILABLE: bool = crate::alloc::INSTALLED;

/// Why the figure is missing without the counting allocator (for the table's notes).
pub const UNAVAILABLE_NOTE: &str =
    "n/a: heap bytes are counted only in a build with `--features bench-alloc`";

/// Result of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub streams: usize,
    /// Live heap bytes added per stream, client and server sessions together.
    pub bytes_per_stream: f64,
}

/// Opens `n` streams from a client session to a server session (both in this process, over
/// loopback TCP), waits until the server accepted them all, and divides the growth of live
/// heap bytes by `n`. Every stream stays open (and idle) on both ends while measuring.
///
/// Fails with `Unsupported` in a build without the counting allocator.
pub async fn idle_streams(config: Config, n: usize) -> io::Result<Memory> {
    let counted =
        || live_bytes().ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, UNAVAILABLE_NOTE));
    counted()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client_tcp, server_tcp) = tokio::try_join!(TcpStream::connect(addr), async {
        listener.accept().await.map(|(s, _)| s)
    })?;
    client_tcp.set_nodelay(true)?;
    server_tcp.set_nodelay(true)?;
    let client = Session::client(client_tcp, config.clone())?;
    let server = Session::server(server_tcp, config)?;

    // Warm up: one stream that carries data, so buffers allocated once per session exist.
    let mut warm = client.open_stream().await?;
    warm.write_all(b"warm").await?;
    let mut warm_peer = server.accept_stream().await?;
    let mut four = [0u8; 4];
    warm_peer.read_exact(&mut four).await?;

    let mut opened = Vec::with_capacity(n);
    let accepted = Vec::with_capacity(n);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let before = counted()?;
    let acceptor = tokio::spawn({
        let server = server.clone();
        let mut accepted = accepted;
        async move {
            while accepted.len() < n {
                accepted.push(server.accept_stream().await?);
            }
            Ok::<_, rsmux::Error>(accepted)
        }
    });
    for _ in 0..n {
        opened.push(client.open_stream().await?);
    }
    let accepted = tokio::time::timeout(Duration::from_secs(30), acceptor)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "accepting streams timed out"))?
        .map_err(io::Error::other)??;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after = counted()?;

    let result = Memory {
        streams: n,
        bytes_per_stream: (after as f64 - before as f64) / n as f64,
    };
    drop((opened, accepted, warm, warm_peer));
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server.close()).await;
    Ok(result)
}
