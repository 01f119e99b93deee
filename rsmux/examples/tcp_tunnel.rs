//! A TCP tunnel over one smux session, in both roles, with `copy_bidirectional`.
//!
//! ```sh
//! # far end: accept sessions on 4000, forward each stream to 127.0.0.1:22
//! cargo run --example tcp_tunnel -- server 127.0.0.1:4000 127.0.0.1:22
//! # near end: accept TCP on 2222, carry each connection as one stream to the far end
//! cargo run --example tcp_tunnel -- client 127.0.0.1:2222 127.0.0.1:4000
//! ```
//!
//! (`rsmux tunnel` is the full tool: TLS, authentication, reconnects, resets.)

use rsmux::{Config, Session};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, listen, to] = args.as_slice() else {
        return Err("usage: tcp_tunnel server|client LISTEN_ADDR TO_ADDR".into());
    };
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    match role.as_str() {
        "server" => server(listener, to.clone()).await,
        "client" => client(listener, to).await,
        other => Err(format!("unknown role {other:?}: server or client").into()),
    }
}

/// The far end: every TCP connection from a near end carries one session; every stream of it
/// is connected to `target`.
pub async fn server(listener: TcpListener, target: String) -> Result<(), Error> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let session = Session::server(tcp, Config::default())?;
        let target = target.clone();
        tokio::spawn(async move {
            while let Ok(mut stream) = session.accept_stream().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut out).await;
                    }
                });
            }
        });
    }
}

/// The near end: one session to the far end at `server`; every accepted TCP connection is
/// carried as one stream of it.
pub async fn client(listener: TcpListener, server: &str) -> Result<(), Error> {
    let session = Session::client(TcpStream::connect(server).await?, Config::default())?;
    loop {
        let (mut tcp, _) = listener.accept().await?;
        let mut stream = session.open_stream().await?;
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
        });
    }
}
