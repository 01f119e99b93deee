//! `rsmux kcptun server`: KCP sessions from kcptun clients → one connection to `--target` per
//! smux stream (TCP, or a Unix socket when the target is a path).

use std::{sync::Arc, time::Duration};

use rsmux::{Session, Stream};
use rsmux_kcp::KcpListener;
use tracing::{info, warn};

use super::{is_unix_path, pipe_kcptun, Resolved};
use crate::common::{self, Context, Result};

/// How long connecting to the target may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server until a fatal error.
pub async fn run(settings: Resolved) -> Result<()> {
    let listener = KcpListener::bind(settings.local.as_str(), &settings.kcp)
        .await
        .context(format_args!("cannot listen on {} (UDP)", settings.local))?;
    let local = listener.local_addr();
    info!(
        "kcptun server on {local} (UDP) -> {} ({})",
        settings.remote,
        settings.summary()
    );
    common::print_listening(local);
    let target: Arc<str> = settings.remote.as_str().into();
    let quiet = settings.quiet;
    loop {
        let (kcp, peer) = listener.accept().await.context("KCP listener")?;
        let session = match Session::server(kcp, settings.smux.clone()) {
            Ok(s) => s,
            Err(e) => {
                warn!("session from {peer}: {e}");
                continue;
            }
        };
        info!("session from {peer}");
        let target = target.clone();
        tokio::spawn(async move {
            loop {
                match session.accept_stream().await {
                    Ok(stream) => {
                        tokio::spawn(forward(stream, target.clone(), quiet));
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

/// Connects one stream to the target and copies until either side ends.
async fn forward(stream: Stream, target: Arc<str>, quiet: bool) {
    let id = stream.id();
    let result = if is_unix_path(&target) {
        dial(id.get(), &target, tokio::net::UnixStream::connect(&*target))
            .await
            .map(|unix| Box::pin(pipe_kcptun(stream, unix)) as PipeFuture)
    } else {
        dial(id.get(), &target, tokio::net::TcpStream::connect(&*target))
            .await
            .map(|tcp| {
                let _ = tcp.set_nodelay(true);
                Box::pin(pipe_kcptun(stream, tcp)) as PipeFuture
            })
    };
    let Some(piping) = result else { return };
    if !quiet {
        info!("stream {id} opened to {target}");
    }
    let (up, down) = piping.await;
    if !quiet {
        info!("stream {id} closed: {down} bytes to target, {up} bytes back");
    }
}

type PipeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, u64)> + Send>>;

/// Awaits a connect with [`DIAL_TIMEOUT`]; `None` (logged) if it failed.
async fn dial<T>(
    id: u32,
    target: &str,
    connect: impl std::future::Future<Output = std::io::Result<T>>,
) -> Option<T> {
    match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            warn!("stream {id}: cannot reach target {target}: {e}; closing the stream");
            None
        }
        Err(_) => {
            warn!("stream {id}: connecting to target {target} timed out; closing the stream");
            None
        }
    }
}
