//! A server the way an operator runs one: a stream limit per session, a labelled tracing span,
//! counters to export, and a graceful drain at shutdown. Runs on its own on loopback (a client
//! in the same program plays the peer) and prints what happens:
//!
//! ```sh
//! cargo run --example server_ops
//! ```

use std::time::Duration;

use rsmux::{Config, Session, Stats};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Most streams one client may hold open at once.
pub const MAX_STREAMS: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let stats = run().await?;
    println!(
        "server stats before the drain: {} streams open, {} accepted, {} refused (EOF at \
         once), {} frames in, {} bytes in",
        stats.streams,
        stats.streams_accepted,
        stats.streams_refused,
        stats.frames_in,
        stats.bytes_in
    );
    println!("drained: every stream finished, then the session closed");
    Ok(())
}

/// Runs server and client on loopback; returns the server's stats from before the drain.
pub async fn run() -> Result<Stats, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    // The server: one session per connection, each labelled with its peer's address.
    let server = tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await?;
        let config = Config::default()
            .with_max_streams(MAX_STREAMS)
            .with_accept_backlog(64)
            .with_label(peer.to_string());
        let session = Session::server(tcp, config)?;
        let acceptor = session.clone();
        tokio::spawn(async move {
            // Ends with `Error::Draining` once the drain below starts.
            while let Ok(mut stream) = acceptor.accept_stream().await {
                tokio::spawn(async move {
                    // Echo until the client's FIN.
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok::<Session, Error>(session)
    });

    // The client: fills the server's limit, then tries one more.
    let client = Session::client(TcpStream::connect(addr).await?, Config::default())?;
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS {
        let mut s = client.open_stream().await?;
        s.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).await?;
        open.push(s);
    }
    let mut extra = client.open_stream().await?;
    extra.write_all(b"ping").await?;
    let mut got = Vec::new();
    extra.read_to_end(&mut got).await?;
    if !got.is_empty() {
        return Err("the stream beyond the limit was served".into());
    }

    let session = server.await??;
    let stats = session.stats();

    // Shutdown: drain with a grace period while the client finishes its streams.
    let drain = tokio::spawn({
        let session = session.clone();
        async move { session.drain(Duration::from_secs(10)).await }
    });
    for mut s in open {
        s.shutdown().await?; // FIN: the server's echo loop ends and drops its stream
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await?;
    }
    drain.await??;
    if !session.is_closed() {
        return Err("the drained session is still open".into());
    }
    Ok(stats)
}
