//! `rsmux tunnel server|client`: TCP port forwarding over smux, one stream per TCP
//! connection and nothing else on the wire (the design of kcptun and of Go smux tunnels).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::{Args, Subcommand};
use rsmux::{Config, Session, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tracing::{debug, info, warn};

use crate::common::{self, Context, Result, SmuxOpts};

pub const EXAMPLES: &str = "\
Examples:
  # on the server machine: forward every stream to the local SSH daemon
  rsmux tunnel server --listen 0.0.0.0:4000 --target 127.0.0.1:22
  # on the client machine: local port 2222 reaches the server's port 22
  rsmux tunnel client --listen 127.0.0.1:2222 --server server.example:4000 --conns 2
  ssh -p 2222 localhost

Each local TCP connection becomes one smux stream. Half-close crosses the tunnel both ways:
a TCP shutdown becomes a FIN and a FIN becomes a TCP shutdown. Both sides must use the same
--smuxver, or the server takes `--smuxver auto` and serves v1 and v2 clients alike. Both print
'listening on ADDR' when ready.";

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
  rsmux tunnel server --listen 0.0.0.0:4000 --target 127.0.0.1:22
  rsmux tunnel server --listen 127.0.0.1:0 --target localhost:8080 --smuxver 2

Every accepted stream dials --target (timeout 10 s); if it cannot be reached the stream is
closed at once and a warning is logged.";

const CLIENT_EXAMPLES: &str = "\
Examples:
  rsmux tunnel client --listen 127.0.0.1:2222 --server server.example:4000
  rsmux tunnel client --listen 127.0.0.1:8080 --server 10.0.0.2:4000 --conns 4 --smuxver 2

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
    #[command(flatten)]
    pub smux: SmuxOpts,
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
    pub smux: SmuxOpts,
}

/// Time allowed to connect to the target or to the tunnel server.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new local connection waits for a live session.
const SESSION_WAIT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Read buffer for the TCP → stream direction.
const TCP_READ_BUF: usize = 32 * 1024;
/// Largest chunk taken from a stream at once.
const CHUNK_MAX: usize = 1 << 20;

pub async fn run(cmd: TunnelCommand) -> Result<()> {
    let serve = async {
        match cmd {
            TunnelCommand::Server(a) => run_server(a).await,
            TunnelCommand::Client(a) => run_client(a).await,
        }
    };
    tokio::select! {
        res = serve => res,
        sig = common::shutdown_signal() => {
            info!("{sig} received: stopping");
            Ok(())
        }
    }
}

async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn run_server(args: ServerArgs) -> Result<()> {
    let config = args.smux.config().map_err(common::Failure)?;
    let listener = common::bind(&args.listen).await?;
    let local = listener.local_addr().context("listener address")?;
    common::print_listening(local);
    info!(
        "tunnel server on {local} -> {} (smux {})",
        args.target,
        common::version_label(&config)
    );
    let target: Arc<str> = args.target.into();
    loop {
        let (tcp, peer) = accept(&listener).await;
        let _ = tcp.set_nodelay(true);
        let session = match Session::server(tcp, config.clone()) {
            Ok(s) => s,
            Err(e) => {
                warn!("session from {peer}: {e}");
                continue;
            }
        };
        info!("session from {peer} started");
        let target = target.clone();
        tokio::spawn(async move {
            loop {
                match session.accept_stream().await {
                    Ok(stream) => {
                        tokio::spawn(forward_to_target(stream, target.clone()));
                    }
                    Err(e) => {
                        info!("session from {peer} ended: {e}");
                        break;
                    }
                }
            }
        });
    }
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
    match pipe(stream, tcp).await {
        Ok((up, down)) => debug!("stream {id}: done, {up} bytes to target, {down} bytes back"),
        Err(e) => debug!("stream {id}: ended with error: {e}"),
    }
}

async fn run_client(args: ClientArgs) -> Result<()> {
    let config = args.smux.client_config().map_err(common::Failure)?;
    let listener = common::bind(&args.listen).await?;
    let local = listener.local_addr().context("listener address")?;
    let server: Arc<str> = args.server.into();
    let mut slots = Vec::new();
    for index in 0..usize::from(args.conns) {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(maintain_session(index, server.clone(), config.clone(), tx));
        slots.push(rx);
    }
    common::print_listening(local);
    info!(
        "tunnel client on {local} -> {server} over {} session(s) (smux v{})",
        args.conns, config.version
    );
    let pool = Arc::new(Pool {
        slots,
        next: AtomicUsize::new(0),
    });
    loop {
        let (tcp, peer) = accept(&listener).await;
        let _ = tcp.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let Some(stream) = pool.open().await else {
                warn!("connection from {peer}: no session to the tunnel server; closing it");
                return;
            };
            let id = stream.id();
            debug!("connection from {peer} -> stream {id}");
            match pipe(stream, tcp).await {
                Ok((up, down)) => {
                    debug!("stream {id}: done, {up} bytes to server, {down} bytes back")
                }
                Err(e) => debug!("stream {id}: ended with error: {e}"),
            }
        });
    }
}

/// The client's sessions, one slot per `--conns`.
struct Pool {
    slots: Vec<watch::Receiver<Option<Session>>>,
    next: AtomicUsize,
}

impl Pool {
    /// Opens a stream on the next live session, round-robin; waits a while for one.
    async fn open(&self) -> Option<Stream> {
        let deadline = Instant::now() + SESSION_WAIT;
        let n = self.slots.len();
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for k in 0..n {
                let session = self.slots[(start + k) % n].borrow().clone();
                let Some(session) = session else { continue };
                match session.open_stream().await {
                    Ok(stream) => return Some(stream),
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
            if Instant::now() >= deadline {
                return None;
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
    config: Config,
    slot: watch::Sender<Option<Session>>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match dial(&server, &config).await {
            Ok(session) => {
                info!("session {index}: connected to {server}");
                let started = Instant::now();
                slot.send_replace(Some(session.clone()));
                session.closed().await;
                slot.send_replace(None);
                warn!(
                    "session {index} to {server} ended: {}; reconnecting",
                    common::close_reason(&session)
                );
                drop(session);
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_MIN;
                    continue;
                }
            }
            Err(e) => warn!("session {index}: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn dial(server: &str, config: &Config) -> Result<Session> {
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| common::Failure(format!("connecting to {server} timed out")))?
        .context(format_args!("cannot connect to {server}"))?;
    let _ = tcp.set_nodelay(true);
    Session::client(tcp, config.clone()).context("smux session")
}

/// Copies both ways between a stream and a TCP connection until both directions ended.
/// TCP EOF becomes FIN, FIN becomes a TCP write shutdown; each direction goes on alone after
/// the other ended. An error in either direction closes both at once (dropping the halves).
/// Returns the bytes carried (TCP → stream, stream → TCP).
pub async fn pipe(stream: Stream, tcp: TcpStream) -> std::io::Result<(u64, u64)> {
    let (mut sr, mut sw) = stream.into_split();
    let (mut tr, mut tw) = tcp.into_split();
    let up = async move {
        let mut buf = vec![0u8; TCP_READ_BUF];
        let mut total = 0u64;
        loop {
            let n = tr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<_, std::io::Error>(total);
            }
            sw.write_all(&buf[..n]).await?;
            total += n as u64;
        }
    };
    let down = async move {
        let mut total = 0u64;
        loop {
            match sr.read_chunk(CHUNK_MAX).await? {
                Some(chunk) => {
                    tw.write_all(&chunk).await?;
                    total += chunk.len() as u64;
                }
                None => {
                    tw.shutdown().await?;
                    return Ok::<_, std::io::Error>(total);
                }
            }
        }
    };
    tokio::try_join!(up, down)
}
