//! `rsmux echo`: an smux server that echoes every accepted stream.

use std::{net::SocketAddr, sync::Arc};

use clap::Args;
use rsmux::{Config, Session, Stream};
use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{debug, info, warn};

use crate::{
    common::{self, Context, Result, SmuxOpts},
    shutdown::{DrainOpts, Sessions, Signals},
};

pub const EXAMPLES: &str = "\
Examples:
  rsmux echo --listen 127.0.0.1:7000
  rsmux echo --listen 127.0.0.1:0 --smuxver 2        prints the port it got
  rsmux echo --listen 127.0.0.1:7000 --smuxver auto  serves v1 and v2 clients
  rsmux echo --listen [::1]:7000 --keepalive 0       no keepalive
  rsmux echo --listen 127.0.0.1:7000 --max-streams 100   at most 100 streams per session

When ready it prints 'listening on ADDR' (the bound address) on stdout.
Each stream is echoed until the peer half-closes (FIN); then the server sends FIN too.
The first SIGINT or SIGTERM stops it gracefully: it stops accepting connections and drains
every session (no new streams; open ones are echoed to their end, for at most
--drain-timeout), then exits; a second signal stops it at once.";

/// Arguments of `rsmux echo`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", value_parser = common::parse_host_port)]
    pub listen: String,

    /// Most streams echoed at once per session; further streams are closed at once (FIN),
    /// so a peer opening streams without end cannot grow the server's memory
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    #[command(flatten)]
    pub drain: DrainOpts,

    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// Largest chunk taken from a stream at once; a whole received frame fits.
const CHUNK_MAX: usize = 1 << 20;

pub async fn run(args: EchoArgs) -> Result<()> {
    let config = args.smux.config().map_err(common::Failure)?;
    let listener = common::bind(&args.listen).await?;
    let local = listener.local_addr().context("listener address")?;
    // Before the readiness line: a signal from then on drains.
    let mut signals = Signals::new();
    common::print_listening(local);
    info!(
        "echo server on {local} (smux {}, frames up to {} bytes)",
        common::version_label(&config),
        config.max_frame_size
    );

    let sessions = Sessions::default();
    let sig = loop {
        tokio::select! {
            sig = signals.next() => break sig,
            (tcp, peer) = common::accept(&listener) => {
                start_session(tcp, peer, &config, &sessions, args.max_streams)
            }
        }
    };
    sessions
        .stop_and_drain(listener, local, sig, args.drain.drain_timeout, &mut signals)
        .await;
    Ok(())
}

fn start_session(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &Config,
    sessions: &Sessions,
    max_streams: u32,
) {
    let _ = tcp.set_nodelay(true);
    let session = match Session::server(tcp, config.clone()) {
        Ok(s) => s,
        Err(e) => {
            warn!("session from {peer}: {e}");
            return;
        }
    };
    let Some(registered) = sessions.add(&session) else {
        debug!("session from {peer} closed: the server is stopping");
        return;
    };
    debug!("session from {peer} started");
    let slots = Arc::new(Semaphore::new(max_streams as usize));
    tokio::spawn(async move {
        let mut refused = 0u64;
        loop {
            match session.accept_stream().await {
                Ok(stream) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(echo_stream(stream, slot));
                    }
                    Err(_) => {
                        // Dropping the stream closes it: the peer sees EOF at once.
                        refused += 1;
                        if refused == 1 {
                            warn!("session from {peer}: more than {max_streams} streams at once, closing the extra ones");
                        }
                    }
                },
                Err(e) => {
                    // A peer that breaks the protocol (a version mismatch, say) is worth a
                    // warning; a session that simply ended is not.
                    if matches!(e, rsmux::Error::Protocol(_)) {
                        warn!("session from {peer} ended: {e}");
                    } else {
                        debug!("session from {peer} ended: {e}");
                    }
                    break;
                }
            }
        }
        drop(registered);
    });
}

/// Echoes received chunks as they arrive until the peer's FIN, then closes the stream:
/// dropping it sends FIN after everything written. No buffer of its own and no copy: the
/// slices of the session's read buffer go back out as they are.
async fn echo_stream(mut stream: Stream, _slot: OwnedSemaphorePermit) {
    loop {
        match stream.read_chunk(CHUNK_MAX).await {
            Ok(Some(chunk)) => {
                if let Err(e) = stream.write_chunk(chunk).await {
                    debug!("stream {}: write failed: {e}", stream.id());
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!("stream {}: read failed: {e}", stream.id());
                return;
            }
        }
    }
    drop(stream);
}
