//! Graceful stop for the servers (`rsmux echo`, `rsmux tunnel server|client`): the first
//! SIGINT/SIGTERM stops taking connections and drains every live session (no new streams, the
//! open ones finish, at most `--drain-timeout`); a second one stops at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use clap::Args;
use rsmux::Session;
use tracing::{info, warn};

use crate::common;

/// The `--drain-timeout` flag.
#[derive(Args, Debug, Clone)]
pub struct DrainOpts {
    /// On SIGINT/SIGTERM, how long open streams may take to finish before their sessions are
    /// closed anyway (a second signal stops at once)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = common::parse_secs)]
    pub drain_timeout: Duration,
}

/// SIGINT and SIGTERM, received one after the other by the same listeners (so a second
/// signal is not lost while the first is handled).
pub struct Signals {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts listening (needs the tokio runtime). Without signal handlers (which should
    /// not happen) falls back to Ctrl-C.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listeners = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            Signals { listeners }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Completes at the next signal and names it.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.listeners {
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// The live sessions of a server, for draining them all. Once draining, no session is added:
/// one that finishes its handshake afterwards is closed at once.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    live: HashMap<u64, Session>,
    draining: bool,
}

/// A session's place in [`Sessions`]; leaving it (dropping it) removes the session.
pub struct Registered {
    sessions: Sessions,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sessions.lock().live.remove(&self.key);
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `session` until the returned guard is dropped; `None` (and the session is closed)
    /// if draining has begun.
    pub fn add(&self, session: &Session) -> Option<Registered> {
        let mut r = self.lock();
        if r.draining {
            drop(r);
            let session = session.clone();
            tokio::spawn(async move {
                let _ = session.close().await;
            });
            return None;
        }
        let key = r.next;
        r.next += 1;
        r.live.insert(key, session.clone());
        Some(Registered {
            sessions: self.clone(),
            key,
        })
    }

    /// After signal `sig`: closes a server's `listener` (bound to `local`), logs it, then
    /// drains every session (see [`Sessions::drain_all`]).
    pub async fn stop_and_drain(
        &self,
        listener: tokio::net::TcpListener,
        local: std::net::SocketAddr,
        sig: &str,
        grace: Duration,
        signals: &mut Signals,
    ) -> bool {
        drop(listener);
        info!("{sig} received: stopped listening on {local}");
        self.drain_all(grace, signals).await
    }

    /// Drains every live session at once, each for at most `grace`; completes when all of
    /// them have closed, or at the next of `signals` (then returns `false`: stop at once).
    pub async fn drain_all(&self, grace: Duration, signals: &mut Signals) -> bool {
        let live: Vec<Session> = {
            let mut r = self.lock();
            r.draining = true;
            r.live.values().cloned().collect()
        };
        // Every drain has started (new streams are refused) before the log line says so.
        let mut draining = tokio::task::JoinSet::new();
        for session in &live {
            draining.spawn(session.drain(grace));
        }
        info!(
            "draining {} session(s): no new streams, open ones may finish within {}s (a second \
             signal stops at once)",
            live.len(),
            common::secs(grace)
        );
        let all = async {
            let mut forced = 0usize;
            while let Some(done) = draining.join_next().await {
                if let Ok(Err(rsmux::Error::Timeout)) = done {
                    forced += 1;
                }
            }
            forced
        };
        tokio::select! {
            forced = all => {
                if forced > 0 {
                    warn!("drained: {forced} session(s) still had open streams after {}s and were closed", common::secs(grace));
                } else {
                    info!("drained: every session closed");
                }
                true
            }
            sig = signals.next() => {
                warn!("{sig} received again: stopping at once");
                false
            }
        }
    }
}
