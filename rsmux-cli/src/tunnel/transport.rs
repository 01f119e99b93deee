//! From a TCP connection to an smux session, with or without TLS. The server either speaks
//! plaintext (and turns away clients that open with a TLS handshake, with a clear message) or
//! TLS 1.3 followed by the secret's proof (see [`super::auth`]); the client does the
//! matching half. Every refusal on the server is logged (warn) with the peer's address, and
//! none of them lets a stream reach the target: the smux session only starts after it.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use rsmux::{Config, Session};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

use super::auth::{self, ClientAuthError, Secret, ServerVerdict};
use crate::common::Failure;

/// Time allowed for the TLS handshake and the proof of the secret, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect to the tunnel server.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a plaintext server waits for a client's first byte to tell a TLS client apart;
/// after that the session starts anyway (smux clients send nothing until they open a stream).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// First byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How the server secures its sessions.
#[derive(Clone)]
pub enum ServerSecurity {
    /// smux straight on TCP (Go smux clients, loopback, `--insecure-plaintext`).
    Plaintext,
    /// TLS 1.3, then the client proves the shared secret.
    Tls {
        /// The TLS server side.
        acceptor: TlsAcceptor,
        /// The secret clients must prove.
        secret: Arc<Secret>,
    },
}

/// Makes an smux server session of an accepted connection, or refuses the connection (logged
/// with the peer's address, `None` returned).
pub async fn server_session(
    tcp: TcpStream,
    peer: SocketAddr,
    security: &ServerSecurity,
    config: Config,
) -> Option<Session> {
    let session = match security {
        ServerSecurity::Plaintext => {
            info!("session from {peer} started");
            if opens_with_tls(&tcp).await {
                warn!(
                    "refused {peer}: it opened with a TLS handshake, but this server has no \
                     TLS (start it with --tls, or run the client without --fingerprint/--ca)"
                );
                return None;
            }
            Session::server(tcp, config)
        }
        ServerSecurity::Tls { acceptor, secret } => {
            let tls =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_tls(tcp, acceptor, secret))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(reason)) => {
                        warn!("refused {peer}: {reason}");
                        return None;
                    }
                    Err(_) => {
                        warn!(
                            "refused {peer}: no TLS handshake and proof of the secret within {}s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        );
                        return None;
                    }
                };
            info!("session from {peer} started (TLS, secret proved)");
            Session::server(tls, config)
        }
    };
    match session {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("session from {peer}: {e}");
            None
        }
    }
}

/// `true` if the client's first byte starts a TLS handshake. Waits for that byte at most
/// [`SNIFF_TIMEOUT`]; reads nothing (the byte stays for smux).
async fn opens_with_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(SNIFF_TIMEOUT, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD
    )
}

/// The TLS handshake and the check of the client's proof; the error is the reason to log.
async fn accept_tls(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
    secret: &Secret,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let mut tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}{}", server_hint(&e)))?;
    match auth::check(&mut tls, secret).await {
        Ok(ServerVerdict::Accepted) => Ok(tls),
        Ok(ServerVerdict::WrongSecret) => {
            let _ = tls.shutdown().await;
            Err("wrong secret (its proof did not match)".into())
        }
        Ok(ServerVerdict::NoProof(n)) => Err(format!(
            "it closed the connection after {n} of the {} bytes that prove the secret (a client \
             without a secret?)",
            auth::PROOF_LEN
        )),
        Err(e) => Err(format!("while checking its secret: {e}")),
    }
}

/// What a server's handshake failure most likely means.
fn server_hint(e: &io::Error) -> &'static str {
    match rustls_error(e) {
        Some(rustls::Error::InvalidMessage(_)) => {
            " (not a TLS client: a plaintext smux client? It needs --fingerprint or --ca and the \
             secret)"
        }
        Some(rustls::Error::AlertReceived(_)) => {
            " (the client does not trust this certificate: wrong --fingerprint or --ca?)"
        }
        Some(rustls::Error::PeerIncompatible(_)) => " (the client does not offer TLS 1.3)",
        _ => "",
    }
}

/// The rustls error inside an I/O error of tokio-rustls, if any.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// How the client secures its sessions.
#[derive(Clone)]
pub enum ClientSecurity {
    /// smux straight on TCP.
    Plaintext,
    /// TLS 1.3, then the proof of the shared secret.
    Tls {
        /// The TLS client side.
        connector: TlsConnector,
        /// The name sent (SNI) and, with `--ca`, verified.
        name: rustls::pki_types::ServerName<'static>,
        /// The secret to prove.
        secret: Arc<Secret>,
    },
}

/// Why a client could not get a session.
#[derive(Debug)]
pub enum DialError {
    /// The server could not be reached: worth waiting for.
    Unreachable(Failure),
    /// The server was reached but refused us or could not be trusted: nothing changes until
    /// someone changes a flag, a certificate or a secret.
    Refused(Failure),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Unreachable(e) | DialError::Refused(e) => e.fmt(f),
        }
    }
}

/// Connects to the tunnel server and starts an smux client session on the connection.
pub async fn client_session(
    server: &str,
    security: &ClientSecurity,
    config: &Config,
) -> Result<Session, DialError> {
    let unreachable = |m: String| DialError::Unreachable(Failure(m));
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| unreachable(format!("connecting to {server} timed out")))?
        .map_err(|e| unreachable(format!("cannot connect to {server}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let session = match security {
        ClientSecurity::Plaintext => Session::client(tcp, config.clone()),
        ClientSecurity::Tls {
            connector,
            name,
            secret,
        } => {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let mut tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    format!(
                        "TLS handshake with {server} failed: {}",
                        client_tls_error(&e)
                    )
                })?;
                auth::prove(&mut tls, secret)
                    .await
                    .map_err(|e: ClientAuthError| format!("{server}: {e}"))?;
                Ok::<_, String>(tls)
            })
            .await
            .map_err(|_| {
                format!(
                    "{server}: no TLS handshake and answer to our secret within {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )
            })
            .and_then(|r| r)
            .map_err(|m| DialError::Refused(Failure(m)))?;
            Session::client(tls, config.clone())
        }
    };
    session.map_err(|e| DialError::Refused(Failure(format!("smux session: {e}"))))
}

/// A client's handshake failure, with what it most likely means.
fn client_tls_error(e: &io::Error) -> String {
    match rustls_error(e) {
        // Our own verifier's message (rustls would show it in Debug form).
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            other.0.to_string()
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            format!("{e} (the server does not speak TLS: a plaintext server? Start it with --tls)")
        }
        Some(_) => e.to_string(),
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ) =>
        {
            format!("{e} (the server closed the connection: a plaintext server, without --tls?)")
        }
        None => e.to_string(),
    }
}
