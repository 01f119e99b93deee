//! `rsmux kcptun client`: local TCP connections → smux streams over `--conn` KCP sessions.
//!
//! As kcptun-client: a session is dialled when a slot first carries a connection (KCP has no
//! handshake, so dialling only makes a UDP socket and a conversation id) and re-dialled when
//! it has died (smux keepalive timeout, KCP idle timeout or dead link). Connections take the
//! slots round-robin. With `--autoexpire`, a session older than that takes no new streams: a
//! fresh one replaces it and the old one is closed `--scavengettl` seconds later.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use rsmux::{Session, Stream};
use rsmux_kcp::KcpStream;
use tokio::{sync::Mutex, time::Instant};
use tracing::{debug, info, warn};

use super::{pipe_kcptun, Resolved};
use crate::common::{self, Context, Result};

/// A live session of one slot.
struct Live {
    session: Session,
    /// When it stops taking new streams (`--autoexpire`).
    expires: Option<Instant>,
}

/// The client's sessions.
struct Pool {
    slots: Vec<Mutex<Option<Live>>>,
    next: AtomicUsize,
    settings: Resolved,
}

impl Pool {
    /// A new session for slot `index`.
    async fn dial(&self, index: usize) -> std::result::Result<Live, String> {
        let s = &self.settings;
        let kcp = KcpStream::connect(s.remote.as_str(), &s.kcp)
            .await
            .map_err(|e| format!("cannot dial {}: {e}", s.remote))?;
        let conv = kcp.conv();
        let session = Session::client(kcp, s.smux.clone()).map_err(|e| e.to_string())?;
        info!("session {index}: dialled {} (conv {conv:#010x})", s.remote);
        Ok(Live {
            session,
            expires: s.autoexpire.map(|d| Instant::now() + d),
        })
    }

    /// The usable session of slot `index`, dialling a new one if it has none, it died or it
    /// expired.
    async fn session(&self, index: usize) -> std::result::Result<Session, String> {
        let mut slot = self.slots[index].lock().await;
        let usable = slot.as_ref().is_some_and(|l| {
            !l.session.is_closed() && l.expires.is_none_or(|e| Instant::now() < e)
        });
        if !usable {
            if let Some(old) = slot.take() {
                if old.session.is_closed() {
                    warn!(
                        "session {index} ended: {}; re-dialling",
                        common::close_reason(&old.session)
                    );
                } else {
                    let ttl = self.settings.scavenge_ttl;
                    info!("session {index} expired; closing it in {}s", ttl.as_secs());
                    tokio::spawn(async move {
                        tokio::time::sleep(ttl).await;
                        let _ = old.session.close().await;
                    });
                }
            }
            *slot = Some(self.dial(index).await?);
        }
        Ok(slot.as_ref().expect("just set").session.clone())
    }

    /// A stream on the next slot, round-robin; a session that fails to open one is replaced
    /// once.
    async fn open(&self) -> std::result::Result<Stream, String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut last = String::new();
        for _ in 0..2 {
            let session = self.session(index).await?;
            match session.open_stream().await {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    last = e.to_string();
                    debug!("session {index}: open_stream: {e}");
                    let mut slot = self.slots[index].lock().await;
                    if let Some(live) = slot.take() {
                        tokio::spawn(async move { live.session.close().await });
                    }
                }
            }
        }
        Err(format!("session {index}: cannot open a stream: {last}"))
    }
}

/// Runs the client until a fatal error.
pub async fn run(settings: Resolved) -> Result<()> {
    let listener = common::bind(&settings.local).await?;
    let local = listener.local_addr().context("listener address")?;
    info!(
        "kcptun client on {local} -> {} ({} session(s), {})",
        settings.remote,
        settings.conn,
        settings.summary()
    );
    common::print_listening(local);
    let quiet = settings.quiet;
    let pool = Arc::new(Pool {
        slots: (0..settings.conn).map(|_| Mutex::new(None)).collect(),
        next: AtomicUsize::new(0),
        settings,
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let stream = match pool.open().await {
                Ok(s) => s,
                Err(e) => {
                    warn!("connection from {peer}: {e}; closing it");
                    return;
                }
            };
            let id = stream.id();
            if !quiet {
                info!("stream {id} opened for {peer}");
            }
            let (up, down) = pipe_kcptun(stream, tcp).await;
            if !quiet {
                info!("stream {id} closed: {up} bytes out, {down} bytes back");
            }
        });
    }
}
