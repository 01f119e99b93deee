//! An rsmux session inside TLS (tokio-rustls, ring provider): the server presents a
//! self-signed certificate made with rcgen, the client trusts exactly that certificate, and
//! streams are multiplexed over the one TLS connection. The server echoes every stream; the
//! client sends a few at once and checks every byte.
//!
//! ```sh
//! cargo run --example tls_session      # runs both sides on loopback and exits
//! ```
//!
//! A session takes any `AsyncRead + AsyncWrite + Unpin + Send` transport, so a
//! `tokio_rustls` stream goes where a `TcpStream` would.

use std::sync::Arc;

use rsmux::{Config, Session, Stream};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Streams opened at once, and the bytes sent on each.
const STREAMS: usize = 4;
const BYTES_PER_STREAM: usize = 300_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let bytes = run().await?;
    println!("{bytes} bytes echoed byte for byte over one smux session inside TLS");
    Ok(())
}

/// Runs server and client on loopback; returns the bytes echoed and checked.
pub async fn run() -> Result<usize, Error> {
    let (acceptor, connector) = tls_configs()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let tls = acceptor.accept(tcp).await?;
        let session = Session::server(tls, Config::default())?;
        // Until the client closes the session.
        while let Ok(stream) = session.accept_stream().await {
            tokio::spawn(echo(stream));
        }
        Ok::<_, Error>(())
    });

    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let session = Session::client(tls, Config::default())?;
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let stream = session.open_stream().await?;
        streams.push(tokio::spawn(round_trip(stream, i)));
    }
    let mut total = 0;
    for s in streams {
        total += s.await??;
    }
    session.close().await?;
    server.await??;
    Ok(total)
}

/// A self-signed certificate for `localhost`, the server configuration presenting it and a
/// client configuration that trusts only it.
fn tls_configs() -> Result<(TlsAcceptor, TlsConnector), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = generated.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der());

    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    ))
}

/// Echoes until the peer's FIN, then closes the stream (FIN back).
async fn echo(stream: Stream) -> std::io::Result<()> {
    let (mut r, mut w) = stream.into_split();
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

/// Sends a pattern, half-closes, and checks the echo; returns the bytes checked.
async fn round_trip(stream: Stream, seed: usize) -> Result<usize, Error> {
    let sent: Vec<u8> = (0..BYTES_PER_STREAM)
        .map(|i| (i * 5 + seed * 17 + i / 509) as u8)
        .collect();
    let (mut r, mut w) = stream.into_split();
    // Write and read at once: the echo comes back while we still send.
    let data = sent.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await // FIN: the server's copy ends, and it closes its side
    });
    let mut got = Vec::with_capacity(sent.len());
    r.read_to_end(&mut got).await?;
    writer.await??;
    if got != sent {
        return Err(format!("stream {seed}: the echo differs from what was sent").into());
    }
    Ok(got.len())
}
