//! The tunnel ends of the KCP comparison as child processes: `rsmux kcptun client|server`
//! (this program) and Debian's `kcptun-client`/`kcptun-server`, with the same flags, killed
//! when dropped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

use super::peers::last_line;

/// Which program runs one end of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// `rsmux kcptun client|server`.
    Rsmux,
    /// Debian's `kcptun-client`/`kcptun-server`.
    Kcptun,
}

impl Impl {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Rsmux => "rsmux",
            Impl::Kcptun => "kcptun",
        }
    }
}

/// The pre-shared key of every tunnel of the benchmark.
pub const KEY: &str = "rsmux bench kcp";

/// The flags both ends get, whichever program runs them: kcptun's defaults spelled out
/// (aes, fast, FEC 10/3, snappy on, smux v1, windows per role), no per-stream log lines.
pub const SHARED_FLAGS: [&str; 13] = [
    "--key",
    KEY,
    "--crypt",
    "aes",
    "--mode",
    "fast",
    "--datashard",
    "10",
    "--parityshard",
    "3",
    "--smuxver",
    "1",
    "--quiet",
];

/// How to get the real kcptun.
pub const INSTALL_HINT: &str =
    "install Debian's kcptun package (`apt-get install -y kcptun` as root)";

/// Paths of `kcptun-client` and `kcptun-server` found in `PATH`, or why not.
pub fn find_kcptun() -> Result<(PathBuf, PathBuf), String> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("kcptun-client"), find("kcptun-server")) {
        (Some(c), Some(s)) => Ok((c, s)),
        _ => Err(format!(
            "kcptun-client/kcptun-server not found in PATH: {INSTALL_HINT}"
        )),
    }
}

/// A tunnel end, killed when dropped; the tail of its output is kept for error messages.
pub struct TunnelProc {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Client: the local TCP address; server: the UDP address.
    pub addr: SocketAddr,
}

const LOG_KEEP: usize = 4096;

/// What a child's output says as it starts.
enum Ready {
    /// rsmux's `listening on ADDR` (stdout), or kcptun's `listening on: ADDR` (its log).
    Listening(SocketAddr),
    /// kcptun's `key derivation done`: it is about to serve.
    KeyDone,
}

/// Reads a child's output line by line: keeps the tail and reports readiness lines.
fn watch(
    out: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<String>>,
    tx: mpsc::Sender<Ready>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let ready = if let Some(a) = line.trim().strip_prefix("listening on ") {
                a.parse().ok().map(Ready::Listening)
            } else if let Some((_, a)) = line.split_once("listening on: ") {
                a.trim().parse().ok().map(Ready::Listening)
            } else if line.contains("key derivation done") {
                Some(Ready::KeyDone)
            } else {
                None
            };
            if let Some(r) = ready {
                let _ = tx.send(r).await;
            }
            let mut t = log.lock().unwrap_or_else(|e| e.into_inner());
            t.push_str(&line);
            t.push('\n');
            if t.len() > LOG_KEEP {
                let mut cut = t.len() - LOG_KEEP;
                while !t.is_char_boundary(cut) {
                    cut += 1;
                }
                t.drain(..cut);
            }
        }
    });
}

/// How long a tunnel end may take to start.
const START_LIMIT: Duration = Duration::from_secs(20);

/// Whether a UDP socket of this network namespace is bound to `port` (`/proc/net/udp`).
fn udp_port_bound(port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").ends_with(&hex))
        })
    })
}

impl TunnelProc {
    /// Starts `program args` and waits until it serves: rsmux once it printed its address,
    /// kcptun once it logged both its address and the end of key derivation.
    async fn start(imp: Impl, program: &Path, args: Vec<String>) -> Result<TunnelProc, String> {
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, mut rx) = mpsc::channel(8);
        if let Some(out) = child.stdout.take() {
            watch(out, log.clone(), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            watch(err, log.clone(), tx);
        }
        let wait = async {
            let mut addr = None;
            while let Some(r) = rx.recv().await {
                match r {
                    Ready::Listening(a) if imp == Impl::Rsmux => return Some(a),
                    Ready::Listening(a) => addr = Some(a),
                    Ready::KeyDone if addr.is_some() => return addr,
                    Ready::KeyDone => {}
                }
            }
            None
        };
        match tokio::time::timeout(START_LIMIT, wait).await {
            Ok(Some(addr)) => Ok(TunnelProc { child, log, addr }),
            _ => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                Err(format!(
                    "{} {} did not start: {}",
                    program.display(),
                    args.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
                    last_line(&log)
                ))
            }
        }
    }

    /// A tunnel server on loopback forwarding to `target`.
    pub async fn server(
        imp: Impl,
        exe: &Path,
        kcptun: Option<&(PathBuf, PathBuf)>,
        target: SocketAddr,
    ) -> Result<TunnelProc, String> {
        let (program, mut args) = match imp {
            Impl::Rsmux => (
                exe.to_path_buf(),
                vec![
                    "kcptun".into(),
                    "server".into(),
                    "-l".into(),
                    "127.0.0.1:0".into(),
                ],
            ),
            Impl::Kcptun => {
                let (_, server) = kcptun.ok_or("kcptun-server not available")?;
                // kcptun-server logs the address it was given, so it gets a free port.
                let port = std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|s| s.local_addr())
                    .map_err(|e| format!("no free UDP port: {e}"))?;
                (server.clone(), vec!["-l".into(), port.to_string()])
            }
        };
        args.extend(["-t".into(), target.to_string()]);
        args.extend(SHARED_FLAGS.iter().map(|s| s.to_string()));
        let server = TunnelProc::start(imp, &program, args).await?;
        // kcptun-server logs its address before key derivation and binds the port after it:
        // wait until the socket exists, so no early datagram meets a closed port.
        let port = server.addr.port();
        let bound = async {
            while !udp_port_bound(port) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(START_LIMIT, bound)
            .await
            .map_err(|_| format!("{} never bound UDP port {port}", program.display()))?;
        Ok(server)
    }

    /// A tunnel client on loopback to the server (or relay) at `server`.
    pub async fn client(
        imp: Impl,
        exe: &Path,
        kcptun: Option<&(PathBuf, PathBuf)>,
        server: SocketAddr,
    ) -> Result<TunnelProc, String> {
        let (program, mut args): (PathBuf, Vec<String>) = match imp {
            Impl::Rsmux => (exe.to_path_buf(), vec!["kcptun".into(), "client".into()]),
            Impl::Kcptun => (
                kcptun.ok_or("kcptun-client not available")?.0.clone(),
                Vec::new(),
            ),
        };
        args.extend([
            "-l".into(),
            "127.0.0.1:0".into(),
            "-r".into(),
            server.to_string(),
        ]);
        args.extend(SHARED_FLAGS.iter().map(|s| s.to_string()));
        TunnelProc::start(imp, &program, args).await
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last line of its output.
    pub fn last_line(&self) -> String {
        last_line(&self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The tail of its output.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Kills it and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_udp_port_is_seen() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        assert!(udp_port_bound(port));
        drop(sock);
        assert!(!udp_port_bound(port));
    }
}
