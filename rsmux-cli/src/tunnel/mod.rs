//! `rsmux tunnel server|client`: TCP port forwarding over smux, one stream per TCP
//! connection and nothing else on the wire (the design of kcptun and of Go smux tunnels),
//! optionally inside TLS 1.3 with a shared secret that admits clients (`--tls`).
//!
//! Modules: [`tls`] certificates, fingerprints and TLS configurations; [`auth`] the secret and
//! its proof; [`transport`] from a TCP connection to a session, either side; [`files`] files
//! that hold secrets; [`pipe`](mod@pipe) the copying, and when a TCP connection is reset rather than
//! closed. This file has the flags and the accept loops.

pub mod auth;
pub mod files;
pub mod pipe;
pub mod tls;
pub mod transport;

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::{Args, Subcommand};
use rsmux::{Config, Session, Stream};
use tokio::{
    net::TcpStream,
    sync::{watch, Semaphore},
};
use tracing::{debug, info, warn};

use self::{
    auth::Secret,
    pipe::{pipe, Side},
    tls::{Fingerprint, Trust},
    transport::{ClientSecurity, DialError, ServerSecurity},
};
use crate::{
    common::{self, Context, Failure, Result, SmuxOpts},
    shutdown::{DrainOpts, Sessions, Signals},
};

pub const EXAMPLES: &str = "\
Examples:
  # on the server machine: forward every stream to the local SSH daemon, over TLS; the first
  # start creates a certificate and a secret in ~/.config/rsmux and prints the fingerprint and
  # the client's command line
  rsmux tunnel server --tls --listen 0.0.0.0:4000 --target 127.0.0.1:22
  # on the client machine, with a copy of the server's tunnel-secret file: local port 2222
  # reaches the server's port 22
  rsmux tunnel client --listen 127.0.0.1:2222 --server server.example:4000 \\
      --fingerprint sha256:HEX --secret-file tunnel-secret
  ssh -p 2222 localhost

Without --tls (how Go smux tunnels talk) a server only listens on a loopback address unless
given --insecure-plaintext: anyone who reaches its port would reach the target, in clear text.

Each local TCP connection becomes one smux stream. Half-close crosses the tunnel both ways:
a TCP shutdown becomes a FIN and a FIN becomes a TCP shutdown. A connection whose session dies
is reset (RST), not closed, on either side; so is a local connection whose stream the server
closes before sending anything (its target could not be reached). Both sides must use the same
--smuxver, or the server takes `--smuxver auto` and serves v1 and v2 clients alike. Both print
'listening on ADDR' when ready.

The first SIGINT or SIGTERM stops either side gracefully: it stops listening (and the client
stops reconnecting), drains every session (no new streams; open connections go on to their end,
for at most --drain-timeout), then exits with status 0; a second signal stops it at once.";

/// `rsmux tunnel` subcommands.
#[derive(Subcommand, Debug)]
pub enum TunnelCommand {
    /// Accepts smux sessions and connects every stream to --target
    #[command(after_help = SERVER_EXAMPLES)]
    Server(ServerArgs),
    /// Carries every local TCP connection as one stream to a tunnel server
    #[command(after_help = CLIENT_EXAMPLES)]
    Client(ClientArgs),
}

const SERVER_EXAMPLES: &str = "\
Examples:
  rsmux tunnel server --tls --listen 0.0.0.0:4000 --target 127.0.0.1:22
  rsmux tunnel server --tls --cert cert.pem --key-file key.pem --secret-file secret \\
      --listen 0.0.0.0:4000 --target 127.0.0.1:22
  rsmux tunnel server --listen 127.0.0.1:0 --target localhost:8080 --smuxver 2
  rsmux tunnel server --insecure-plaintext --listen 0.0.0.0:4000 --target 127.0.0.1:8080

With --tls the server keeps a self-signed certificate and a secret in --tls-dir (created on
the first start, files readable by their owner only) unless --cert/--key-file and
--secret-file or RSMUX_SECRET are given, and prints the certificate's fingerprint and the
client's command line. A client that does not prove the secret is refused (and logged) before
any of its streams reaches --target.

Every accepted stream dials --target (timeout 10 s); if it cannot be reached the stream is
closed at once and a warning is logged (the client resets its local connection). --target must
resolve at start.";

const CLIENT_EXAMPLES: &str = "\
Examples:
  rsmux tunnel client --listen 127.0.0.1:2222 --server server.example:4000 \\
      --fingerprint sha256:HEX --secret-file tunnel-secret
  RSMUX_SECRET=HEX rsmux tunnel client --listen 127.0.0.1:2222 --server server.example:4000 \\
      --ca ca.pem
  rsmux tunnel client --listen 127.0.0.1:8080 --server 10.0.0.2:4000 --conns 4 --smuxver 2

--fingerprint or --ca turn TLS on (the server must run with --tls); without them the client
speaks plaintext smux, as Go smux tunnels do.

Streams are spread round-robin over --conns sessions. A session that dies is re-dialled with
backoff (0.1 s doubling up to 5 s); new connections wait up to 10 s for a session.";

/// Arguments of `rsmux tunnel server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to accept smux sessions on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", value_parser = common::parse_host_port)]
    pub listen: String,
    /// Where every stream is forwarded to
    #[arg(long, value_name = "HOST:PORT", value_parser = common::parse_host_port)]
    pub target: String,
    /// Most streams one session may hold at once; a client opening more has each extra
    /// stream refused at once (its connection ends). 0: no limit
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_streams: usize,
    #[command(flatten)]
    pub drain: DrainOpts,
    #[command(flatten)]
    pub security: ServerSecurityArgs,
    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// The server's TLS and authentication flags.
#[derive(Args, Debug)]
#[command(next_help_heading = "Security")]
pub struct ServerSecurityArgs {
    /// Serve TLS 1.3 and admit only clients that prove the shared secret
    #[arg(long)]
    pub tls: bool,
    /// Certificate chain to present (PEM); default: a self-signed one kept in --tls-dir
    #[arg(long, value_name = "PEM", requires_all = ["tls", "key_file"])]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (PEM: PKCS#8, RSA or EC)
    #[arg(long, value_name = "PEM", requires_all = ["tls", "cert"])]
    pub key_file: Option<PathBuf>,
    /// Directory of the generated certificate, key and secret (created 0700, files 0600)
    /// [default: $XDG_CONFIG_HOME/rsmux or ~/.config/rsmux]
    #[arg(long, value_name = "DIR", requires = "tls")]
    pub tls_dir: Option<PathBuf>,
    /// File with the shared secret (64 hex digits); default: $RSMUX_SECRET, else
    /// tunnel-secret in --tls-dir (generated on the first start)
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub secret_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS: anyone who reaches the port
    /// reaches --target, in clear text (for Go smux clients, or behind a VPN)
    #[arg(long, conflicts_with = "tls")]
    pub insecure_plaintext: bool,
}

/// Arguments of `rsmux tunnel client`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Address to accept local TCP connections on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", value_parser = common::parse_host_port)]
    pub listen: String,
    /// The tunnel server
    #[arg(long, value_name = "HOST:PORT", value_parser = common::parse_host_port)]
    pub server: String,
    /// Number of smux sessions (TCP connections) to the server, used round-robin
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub conns: u16,
    #[command(flatten)]
    pub drain: DrainOpts,
    #[command(flatten)]
    pub security: ClientSecurityArgs,
    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// The client's TLS and authentication flags.
#[derive(Args, Debug)]
#[command(next_help_heading = "Security")]
pub struct ClientSecurityArgs {
    /// Use TLS and trust exactly the server certificate with this SHA-256 fingerprint (the
    /// server prints it at start)
    #[arg(long, value_name = "sha256:HEX", value_parser = tls::parse_fingerprint,
          conflicts_with = "ca")]
    pub fingerprint: Option<Fingerprint>,
    /// Use TLS and trust server certificates issued by the CA certificates in this PEM file
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// With --ca: the name the server's certificate must have [default: the host of --server]
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,
    /// File with the server's shared secret (64 hex digits); default: $RSMUX_SECRET
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

/// Time allowed to connect to the target.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at once in their TLS handshake and proof (without TLS: waiting for their first
/// byte); more are closed at once, so a flood of idle connections cannot take all memory.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// How long a new local connection waits for a live session.
const SESSION_WAIT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Checks the flags before anything starts; the error is a one-line usage message (exit
/// status 2) that names the flag. Files are read later, by [`run`] (exit status 1).
pub fn check(cmd: &TunnelCommand) -> Result<(), String> {
    match cmd {
        TunnelCommand::Server(a) => {
            a.smux.config()?;
            let s = &a.security;
            if !s.tls && !s.insecure_plaintext && !is_loopback(&a.listen) {
                return Err(format!(
                    "--listen {}: not a loopback address, and the tunnel has no TLS: anyone who \
                     can reach the port would reach --target {}, in clear text. Add --tls \
                     (clients then need the fingerprint and the secret), or --insecure-plaintext \
                     to accept that (e.g. for Go smux clients, or behind a VPN)",
                    a.listen, a.target
                ));
            }
            Ok(())
        }
        TunnelCommand::Client(a) => {
            a.smux.client_config()?;
            let s = &a.security;
            let tls = s.fingerprint.is_some() || s.ca.is_some();
            if tls && s.secret_file.is_none() && std::env::var_os(auth::SECRET_ENV).is_none() {
                return Err(format!(
                    "--secret-file (or {}) is needed with --fingerprint/--ca: a TLS tunnel server \
                     admits only clients that prove its secret",
                    auth::SECRET_ENV
                ));
            }
            if !tls && s.secret_file.is_some() {
                return Err(
                    "--secret-file needs --fingerprint or --ca: the secret is only proved over \
                     TLS, to a server started with --tls"
                        .into(),
                );
            }
            if tls {
                tls::server_name(s.server_name.as_deref(), &a.server)?;
            }
            Ok(())
        }
    }
}

/// `true` if every address `addr` resolves to is a loopback address (`false` if it does not
/// resolve: binding it will fail with its own message).
fn is_loopback(addr: &str) -> bool {
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Runs `rsmux tunnel server` or `client` until a fatal error, or a signal and the drain
/// that follows it (see [`crate::shutdown`]).
pub async fn run(cmd: TunnelCommand) -> Result<()> {
    // From the start: a signal during the setup drains nothing and stops.
    let signals = Signals::new();
    match cmd {
        TunnelCommand::Server(a) => run_server(a, signals).await,
        TunnelCommand::Client(a) => run_client(a, signals).await,
    }
}

/// The server's security, ready to use, and what to tell the person who started it.
struct ServerSetup {
    security: ServerSecurity,
    /// With TLS: the fingerprint clients pin.
    fingerprint: Option<Fingerprint>,
    /// With TLS: how the client gets the secret, for the printed command line.
    secret_hint: Option<SecretHint>,
}

/// Where the server's secret came from.
enum SecretHint {
    /// A file the client needs a copy of.
    File(PathBuf),
    /// The environment variable.
    Env,
}

/// Loads or creates the certificate and secret of `--tls`, logging the fingerprint.
fn server_setup(args: &ServerSecurityArgs) -> Result<ServerSetup> {
    if !args.tls {
        return Ok(ServerSetup {
            security: ServerSecurity::Plaintext,
            fingerprint: None,
            secret_hint: None,
        });
    }
    let dir = || match &args.tls_dir {
        Some(d) => Ok(d.clone()),
        None => files::default_dir().map_err(Failure),
    };
    // What was given is read first: a bad file stops the start before anything is created.
    let given_secret = if let Some(path) = &args.secret_file {
        let secret = Secret::from_file("--secret-file", path).map_err(Failure)?;
        Some((secret, SecretHint::File(path.clone())))
    } else if let Some(secret) = Secret::from_env() {
        Some((secret.map_err(Failure)?, SecretHint::Env))
    } else {
        None
    };
    let identity = match (&args.cert, &args.key_file) {
        (Some(cert), Some(key)) => tls::load_identity(cert, key),
        _ => tls::load_or_generate(&dir()?),
    }
    .map_err(Failure)?;
    let fingerprint = identity.fingerprint();
    info!("TLS certificate: {}", identity.origin);
    if identity.generated {
        info!("a new certificate: clients that pinned an earlier one need the new fingerprint");
    }
    info!("certificate fingerprint {fingerprint}");
    let (secret, hint) = match given_secret {
        Some(given) => given,
        None => {
            let dir = dir()?;
            let (secret, generated) = Secret::load_or_generate(&dir).map_err(Failure)?;
            let path = dir.join(auth::SECRET_FILE);
            if generated {
                info!("generated the shared secret in {}", path.display());
            }
            (secret, SecretHint::File(path))
        }
    };
    let config = tls::server_config(identity).map_err(Failure)?;
    Ok(ServerSetup {
        security: ServerSecurity::Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            secret: Arc::new(secret),
        },
        fingerprint: Some(fingerprint),
        secret_hint: Some(hint),
    })
}

/// The command line a client runs to reach this server (logged at start with `--tls`).
fn client_command(
    local: SocketAddr,
    fingerprint: Fingerprint,
    hint: &SecretHint,
    config: &Config,
) -> String {
    let host = match local.ip() {
        ip if ip.is_unspecified() => host_name(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let port = local.port();
    let version = if config.detect_version || config.version == rsmux::Version::V1 {
        String::new()
    } else {
        format!(" --smuxver {}", config.version)
    };
    let command = |secret: &str| {
        format!(
            "rsmux tunnel client --listen 127.0.0.1:{port} --server {host}:{port} \
             --fingerprint {fingerprint}{secret}{version}"
        )
    };
    match hint {
        SecretHint::File(path) => {
            let name = path
                .file_name()
                .map_or_else(|| "SECRET".into(), |n| n.to_string_lossy().into_owned());
            format!(
                "on the client, with a copy of {} (the password: keep it private): {}",
                path.display(),
                command(&format!(" --secret-file {name}"))
            )
        }
        SecretHint::Env => format!(
            "on the client, with the same {} in the environment: {}",
            auth::SECRET_ENV,
            command("")
        ),
    }
}

/// This machine's name, for the printed client command (`SERVER` if it cannot be told).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "SERVER".into())
}

async fn run_server(args: ServerArgs, mut signals: Signals) -> Result<()> {
    let config = args
        .smux
        .config()
        .map_err(common::Failure)?
        .with_max_streams(args.max_streams);
    common::check_resolves("--target", &args.target).await?;
    let setup = server_setup(&args.security)?;
    let listener = common::bind(&args.listen).await?;
    let local = listener.local_addr().context("listener address")?;
    match (&setup.fingerprint, &setup.secret_hint) {
        (Some(fingerprint), Some(hint)) => {
            info!("{}", client_command(local, *fingerprint, hint, &config));
        }
        _ if !local.ip().is_loopback() => warn!(
            "--insecure-plaintext: no TLS and no authentication: anyone who reaches {local} \
             reaches {}, in clear text",
            args.target
        ),
        _ => {}
    }
    common::print_listening(local);
    info!(
        "tunnel server on {local} -> {} (smux {}, {})",
        args.target,
        common::version_label(&config),
        if setup.fingerprint.is_some() {
            "TLS 1.3 and a shared secret"
        } else {
            "plaintext"
        }
    );
    let target: Arc<str> = args.target.into();
    let security = Arc::new(setup.security);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let sessions = Sessions::default();
    let sig = loop {
        let (tcp, peer) = tokio::select! {
            sig = signals.next() => break sig,
            accepted = common::accept(&listener) => accepted,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            warn!("refused {peer}: {MAX_PENDING_HANDSHAKES} connections are already starting");
            continue;
        };
        let target = target.clone();
        let security = security.clone();
        let config = config.clone();
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let session = transport::server_session(tcp, peer, &security, config).await;
            drop(permit);
            let Some(session) = session else { return };
            let Some(_registered) = sessions.add(&session) else {
                info!("session from {peer} closed: the server is stopping");
                return;
            };
            loop {
                match session.accept_stream().await {
                    Ok(stream) => {
                        tokio::spawn(forward_to_target(stream, target.clone()));
                    }
                    Err(rsmux::Error::Draining) => {
                        debug!("session from {peer}: draining, no new streams");
                        break;
                    }
                    Err(e) => {
                        info!("session from {peer} ended: {e}");
                        break;
                    }
                }
            }
        });
    };
    sessions
        .stop_and_drain(listener, local, sig, args.drain.drain_timeout, &mut signals)
        .await;
    Ok(())
}

async fn forward_to_target(stream: Stream, target: Arc<str>) {
    let id = stream.id();
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&*target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            warn!("stream {id}: cannot reach target {target}: {e}; closing the stream");
            return;
        }
        Err(_) => {
            warn!("stream {id}: connecting to target {target} timed out; closing the stream");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    match pipe(stream, tcp, Side::Server).await {
        Ok((up, down)) => debug!("stream {id}: done, {up} bytes to target, {down} bytes back"),
        Err(e) => debug!("stream {id}: ended with error: {e}"),
    }
}

/// The client's security from its flags: reads the CA file and the secret.
fn client_security(args: &ClientArgs) -> Result<ClientSecurity> {
    let s = &args.security;
    let trust = match (&s.fingerprint, &s.ca) {
        (Some(f), _) => Trust::Pinned(*f),
        (None, Some(ca)) => Trust::Ca(ca.clone()),
        (None, None) => return Ok(ClientSecurity::Plaintext),
    };
    let secret = match &s.secret_file {
        Some(path) => Secret::from_file("--secret-file", path),
        None => Secret::from_env().unwrap_or_else(|| {
            Err(format!(
                "--secret-file (or {}) is needed with --fingerprint/--ca",
                auth::SECRET_ENV
            ))
        }),
    }
    .map_err(Failure)?;
    let config = tls::client_config(&trust).map_err(Failure)?;
    let name = tls::server_name(s.server_name.as_deref(), &args.server).map_err(Failure)?;
    Ok(ClientSecurity::Tls {
        connector: tokio_rustls::TlsConnector::from(config),
        name,
        secret: Arc::new(secret),
    })
}

async fn run_client(args: ClientArgs, mut signals: Signals) -> Result<()> {
    let config = args.smux.client_config().map_err(common::Failure)?;
    common::check_resolves("--server", &args.server).await?;
    let security = Arc::new(client_security(&args)?);
    let listener = common::bind(&args.listen).await?;
    let local = listener.local_addr().context("listener address")?;
    let plaintext = matches!(*security, ClientSecurity::Plaintext);
    if plaintext {
        let remote = tokio::net::lookup_host(&args.server)
            .await
            .map(|mut addrs| addrs.any(|a| !a.ip().is_loopback()))
            .unwrap_or(false);
        if remote {
            warn!(
                "no TLS: the tunnel to {} carries data in clear text (with a server started with \
                 --tls, give --fingerprint or --ca and the secret)",
                args.server
            );
        }
    }
    let server: Arc<str> = args.server.into();
    let mut slots = Vec::new();
    let mut maintainers = Vec::new();
    for index in 0..usize::from(args.conns) {
        let (tx, rx) = watch::channel(Slot::Connecting);
        maintainers.push(tokio::spawn(maintain_session(
            index,
            server.clone(),
            security.clone(),
            config.clone(),
            tx,
        )));
        slots.push(rx);
    }
    common::print_listening(local);
    info!(
        "tunnel client on {local} -> {server} over {} session(s) (smux v{}, {})",
        args.conns,
        config.version,
        if plaintext {
            "plaintext"
        } else {
            "TLS 1.3 and a shared secret"
        }
    );
    let pool = Arc::new(Pool {
        slots,
        next: AtomicUsize::new(0),
    });
    let sig = loop {
        let (tcp, peer) = tokio::select! {
            sig = signals.next() => break sig,
            accepted = common::accept(&listener) => accepted,
        };
        let _ = tcp.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let stream = match pool.open().await {
                Ok(stream) => stream,
                Err(why) => {
                    warn!("connection from {peer}: {why}; resetting it");
                    pipe::reset(tcp);
                    return;
                }
            };
            let id = stream.id();
            debug!("connection from {peer} -> stream {id}");
            match pipe(stream, tcp, Side::Client).await {
                Ok((up, down)) => {
                    debug!("stream {id}: done, {up} bytes to server, {down} bytes back")
                }
                // The server's own log says why (target unreachable, --max-streams).
                Err(e @ pipe::PipeError::Refused) => info!("connection from {peer}: {e}"),
                Err(e) => debug!("stream {id}: ended with error: {e}"),
            }
        });
    };
    drop(listener);
    for m in &maintainers {
        m.abort();
    }
    info!("{sig} received: stopped listening on {local} and reconnecting");
    let sessions = Sessions::default();
    let _registered: Vec<_> = pool
        .slots
        .iter()
        .filter_map(|slot| match &*slot.borrow() {
            Slot::Up(session) => sessions.add(session),
            _ => None,
        })
        .collect();
    sessions
        .drain_all(args.drain.drain_timeout, &mut signals)
        .await;
    Ok(())
}

/// The state of one of the client's sessions.
#[derive(Clone)]
enum Slot {
    /// Not connected yet, or reconnecting.
    Connecting,
    /// Connected.
    Up(Session),
    /// The server refused the last attempt (or could not be trusted); the reason. Retried
    /// all the same, but local connections are not kept waiting for it.
    Refused(Arc<str>),
}

/// The client's sessions, one slot per `--conns`.
struct Pool {
    slots: Vec<watch::Receiver<Slot>>,
    next: AtomicUsize,
}

impl Pool {
    /// Opens a stream on the next live session, round-robin; waits a while for one, unless
    /// the server refused every session. The error says why there is no stream.
    async fn open(&self) -> std::result::Result<Stream, String> {
        let deadline = Instant::now() + SESSION_WAIT;
        let n = self.slots.len();
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut refused = None;
            let mut all_refused = true;
            for k in 0..n {
                let slot = self.slots[(start + k) % n].borrow().clone();
                let session = match slot {
                    Slot::Up(session) => session,
                    Slot::Connecting => {
                        all_refused = false;
                        continue;
                    }
                    Slot::Refused(why) => {
                        refused.get_or_insert(why);
                        continue;
                    }
                };
                all_refused = false;
                match session.open_stream().await {
                    Ok(stream) => return Ok(stream),
                    Err(rsmux::Error::GoAway) => {
                        // Stream ids are used up: retire the session; it is re-dialled.
                        info!(
                            "session {}: stream ids exhausted, reconnecting",
                            (start + k) % n
                        );
                        tokio::spawn(async move { session.close().await });
                    }
                    Err(e) => debug!("open_stream on session {}: {e}", (start + k) % n),
                }
            }
            if let (true, Some(why)) = (all_refused, refused) {
                return Err(format!("no session: refused: {why}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no session to the tunnel server within {}s",
                    SESSION_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Keeps slot `index` connected: dials, publishes the session, waits for it to end,
/// re-dials with backoff.
async fn maintain_session(
    index: usize,
    server: Arc<str>,
    security: Arc<ClientSecurity>,
    config: Config,
    slot: watch::Sender<Slot>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match transport::client_session(&server, &security, &config).await {
            Ok(session) => {
                info!("session {index}: connected to {server}");
                let started = Instant::now();
                slot.send_replace(Slot::Up(session.clone()));
                session.closed().await;
                slot.send_replace(Slot::Connecting);
                // A TLS server closes a plaintext session at its first frame (how depends on
                // timing: EOF, a reset, or its alert read as a frame), or when no handshake
                // came in time.
                let early = started.elapsed() <= transport::HANDSHAKE_TIMEOUT + BACKOFF_MAX;
                let hint = if early && matches!(*security, ClientSecurity::Plaintext) {
                    " (if the server runs with --tls, give --fingerprint or --ca and the secret)"
                } else {
                    ""
                };
                warn!(
                    "session {index} to {server} ended: {}{hint}; reconnecting",
                    common::close_reason(&session)
                );
                drop(session);
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_MIN;
                    continue;
                }
            }
            Err(DialError::Refused(e)) => {
                warn!("session {index}: refused: {e}; retrying in {backoff:?}");
                slot.send_replace(Slot::Refused(e.0.into()));
            }
            Err(e @ DialError::Unreachable(_)) => {
                warn!("session {index}: {e}; retrying in {backoff:?}");
                slot.send_replace(Slot::Connecting);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_count_as_loopback() {
        assert!(is_loopback("127.0.0.1:0"));
        assert!(is_loopback("127.0.0.2:4000"));
        assert!(is_loopback("[::1]:0"));
        assert!(is_loopback("localhost:0"));
        assert!(!is_loopback("0.0.0.0:0"));
        assert!(!is_loopback("[::]:0"));
        assert!(!is_loopback("192.0.2.1:4000"));
    }
}
