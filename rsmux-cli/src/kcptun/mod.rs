//! `rsmux kcptun client|server`: drop-in replacements for kcptun's `kcptun-client` and
//! `kcptun-server` (Debian's kcptun 20210922), over the `rsmux-kcp` transport.
//!
//! The flags are kcptun's, with kcptun's defaults (the client's and the server's windows
//! differ); `-c FILE` reads kcptun's JSON config, whose keys override the flags as in kcptun.
//! The command line is resolved into a [`Resolved`] once before anything starts (bad usage:
//! exit 2 naming the flag) and again when running. Copying follows kcptun: each local TCP
//! connection is one smux stream, and the first direction to end closes both (no half-close).

mod client;
pub mod config;
mod server;

use std::{path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, Subcommand};
use rsmux::Stream;
use rsmux_kcp::{CryptKind, KcpConfig, Mode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::common::{self, Result};

/// Examples shown under `rsmux kcptun --help`.
pub const EXAMPLES: &str = "\
Examples (the same flags as kcptun-client / kcptun-server, which they replace):
  rsmux kcptun server -l :29900 -t 127.0.0.1:22 --key SECRET
  rsmux kcptun client -l 127.0.0.1:2222 -r myhost:29900 --key SECRET --conn 2
  rsmux kcptun client -c local.json          kcptun's JSON config (its keys override flags)

Not supported: --tcp (kcptun's fake-TCP mode) is refused; an unknown --crypt name is refused
(kcptun would silently use aes).
Like kcptun there is no half-close: when either side of a connection ends, both are closed.";

/// The two ends of a kcptun tunnel.
#[derive(Subcommand, Debug)]
pub enum KcptunCommand {
    /// kcptun-client: accepts TCP connections and carries each as an smux stream over KCP
    #[command(after_help = EXAMPLES)]
    Client(ClientArgs),
    /// kcptun-server: accepts KCP sessions and connects each smux stream to --target
    #[command(after_help = EXAMPLES)]
    Server(ServerArgs),
}

/// `rsmux kcptun client` flags (kcptun-client's).
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Local TCP address to listen on (":PORT" means all interfaces)
    #[arg(short = 'l', long, value_name = "ADDR", default_value = ":12948")]
    pub localaddr: String,
    /// kcptun server address (UDP)
    #[arg(
        short = 'r',
        long,
        value_name = "HOST:PORT",
        default_value = "vps:29900"
    )]
    pub remoteaddr: String,
    /// Number of KCP sessions to the server; local connections are spread round-robin
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub conn: i64,
    /// Seconds after which a session takes no new streams and a fresh one is dialled (0: never)
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub autoexpire: i64,
    /// Seconds an expired session lives on for its streams before it is closed
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 600,
        allow_negative_numbers = true
    )]
    pub scavengettl: i64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `rsmux kcptun server` flags (kcptun-server's).
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// UDP address to listen on (":PORT" means all interfaces)
    #[arg(short = 'l', long, value_name = "ADDR", default_value = ":29900")]
    pub listen: String,
    /// Where each stream goes: a TCP HOST:PORT, or a Unix socket path
    #[arg(
        short = 't',
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:12948"
    )]
    pub target: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The flags both ends share.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "kcptun options")]
pub struct CommonArgs {
    /// Pre-shared secret of both ends [env: KCPTUN_KEY] [default: "it's a secrect"]
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Cipher: aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, sm4, tea, xtea,
    /// xor, none
    #[arg(long, value_name = "NAME", default_value = "aes")]
    pub crypt: String,
    /// Retransmission profile: normal, fast, fast2, fast3, manual (uses --nodelay --interval
    /// --resend --nc)
    #[arg(long, value_name = "MODE", default_value = "fast")]
    pub mode: String,
    /// Largest UDP payload, all headers included
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 1350,
        allow_negative_numbers = true
    )]
    pub mtu: i64,
    /// Send window in packets [default: client 128, server 1024]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub sndwnd: Option<i64>,
    /// Receive window in packets [default: client 512, server 1024]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rcvwnd: Option<i64>,
    /// Reed-Solomon data shards per FEC group (0 with --parityshard 0: no FEC)
    #[arg(
        long,
        visible_alias = "ds",
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub datashard: i64,
    /// Reed-Solomon parity shards per FEC group
    #[arg(
        long,
        visible_alias = "ps",
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    pub parityshard: i64,
    /// DiffServ code point (0..=63) of the UDP datagrams (IP TOS = DSCP << 2)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub dscp: i64,
    /// No snappy compression (both ends must agree)
    #[arg(long)]
    pub nocomp: bool,
    /// Acknowledge at once instead of at the next interval
    #[arg(long, hide = true)]
    pub acknodelay: bool,
    /// --mode manual: nodelay 0 or 1
    #[arg(long, value_name = "0|1", default_value_t = 0, hide = true)]
    pub nodelay: i64,
    /// --mode manual: update interval in ms
    #[arg(long, value_name = "MS", default_value_t = 50, hide = true)]
    pub interval: i64,
    /// --mode manual: fast retransmit after this many skipping acks (0 off)
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub resend: i64,
    /// --mode manual: 1 turns congestion control off
    #[arg(long, value_name = "0|1", default_value_t = 0, hide = true)]
    pub nc: i64,
    /// UDP socket buffer sizes asked of the OS
    #[arg(long, value_name = "BYTES", default_value = "4194304", value_parser = common::parse_size)]
    pub sockbuf: usize,
    /// smux protocol version, 1 or 2 (both ends must agree)
    #[arg(
        long,
        value_name = "1|2",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub smuxver: i64,
    /// smux session receive buffer
    #[arg(long, value_name = "BYTES", default_value = "4194304", value_parser = common::parse_size)]
    pub smuxbuf: usize,
    /// smux per-stream window (version 2)
    #[arg(long, value_name = "BYTES", default_value = "2097152", value_parser = common::parse_size)]
    pub streambuf: usize,
    /// smux keepalive interval in seconds (the session dies after 30 s without a frame)
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub keepalive: i64,
    /// Not a kcptun flag: seconds without a frame from the peer after which a session counts
    /// as dead (kcptun's fixed value is 30); the client then dials a new one
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        allow_negative_numbers = true,
        hide = true
    )]
    pub keepalive_timeout: i64,
    /// No log line per stream opened and closed
    #[arg(long)]
    pub quiet: bool,
    /// kcptun's fake-TCP mode: not supported, refused
    #[arg(long)]
    pub tcp: bool,
    /// kcptun's JSON config file; its keys override the flags
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// kcptun's log file: ignored (rsmux logs to stderr)
    #[arg(long, value_name = "FILE", hide = true)]
    pub log: Option<String>,
    /// kcptun's SNMP log: ignored
    #[arg(long, value_name = "FILE", hide = true)]
    pub snmplog: Option<String>,
    /// kcptun's SNMP log period: ignored
    #[arg(long, value_name = "SECS", hide = true)]
    pub snmpperiod: Option<i64>,
    /// kcptun's pprof server: ignored
    #[arg(long, hide = true)]
    pub pprof: bool,
}

/// Which binary is replaced: the defaults and the accepted JSON keys differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// kcptun-client.
    Client,
    /// kcptun-server.
    Server,
}

/// Every setting in kcptun's terms, before checking: the flags, then the JSON config over
/// them. Numbers are `i64` as JSON gives them; [`Settings::resolve`] checks the ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Client or server.
    pub role: Role,
    /// Client `localaddr` (TCP) / server `listen` (UDP).
    pub local: String,
    /// Client `remoteaddr` / server `target`.
    pub remote: String,
    /// `key`.
    pub key: String,
    /// `crypt`.
    pub crypt: String,
    /// `mode`.
    pub mode: String,
    /// `mtu`.
    pub mtu: i64,
    /// `sndwnd`.
    pub sndwnd: i64,
    /// `rcvwnd`.
    pub rcvwnd: i64,
    /// `datashard`.
    pub datashard: i64,
    /// `parityshard`.
    pub parityshard: i64,
    /// `dscp`.
    pub dscp: i64,
    /// `nocomp`.
    pub nocomp: bool,
    /// `acknodelay`.
    pub acknodelay: bool,
    /// `nodelay`.
    pub nodelay: i64,
    /// `interval`.
    pub interval: i64,
    /// `resend`.
    pub resend: i64,
    /// `nc`.
    pub nc: i64,
    /// `sockbuf`.
    pub sockbuf: i64,
    /// `smuxver`.
    pub smuxver: i64,
    /// `smuxbuf`.
    pub smuxbuf: i64,
    /// `streambuf`.
    pub streambuf: i64,
    /// `keepalive`.
    pub keepalive: i64,
    /// smux keepalive timeout in seconds (no kcptun flag or JSON key: rsmux's hidden
    /// `--keepalive-timeout`, 30 like kcptun's fixed value).
    pub keepalive_timeout: i64,
    /// `quiet`.
    pub quiet: bool,
    /// `tcp`.
    pub tcp: bool,
    /// Client `conn`.
    pub conn: i64,
    /// Client `autoexpire`.
    pub autoexpire: i64,
    /// Client `scavengettl`.
    pub scavengettl: i64,
    /// Set options that are accepted but do nothing (`log`, `snmplog`, ...).
    pub ignored: Vec<String>,
}

/// Checked settings, ready to run.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Client: TCP address to listen on; server: UDP address to listen on.
    pub local: String,
    /// Client: the server's UDP address; server: the target.
    pub remote: String,
    /// The KCP transport.
    pub kcp: KcpConfig,
    /// The smux sessions.
    pub smux: rsmux::Config,
    /// Client: sessions.
    pub conn: usize,
    /// Client: sessions take no new streams after this.
    pub autoexpire: Option<Duration>,
    /// Client: how long an expired session lives on.
    pub scavenge_ttl: Duration,
    /// No per-stream log lines.
    pub quiet: bool,
    /// Things accepted but not done, to log as warnings.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// The transport settings for the start-up log line (both roles).
    pub fn summary(&self) -> String {
        let k = &self.kcp;
        format!(
            "crypt {}, mode {:?}, mtu {}, windows {}/{}, FEC {}/{}, compression {}, smux v{}",
            k.crypt,
            k.mode,
            k.mtu,
            k.snd_wnd,
            k.rcv_wnd,
            k.data_shards,
            k.parity_shards,
            k.compression,
            self.smux.version
        )
    }
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Settings {
    /// The flags of `role` (the client's `conn`/`autoexpire`/`scavengettl` are given by the
    /// caller; the server passes kcptun's defaults).
    fn from_common(role: Role, local: &str, remote: &str, c: &CommonArgs) -> Settings {
        let (snd, rcv) = match role {
            Role::Client => (128, 512),
            Role::Server => (1024, 1024),
        };
        let key = c
            .key
            .clone()
            .or_else(|| std::env::var("KCPTUN_KEY").ok())
            .unwrap_or_else(|| rsmux_kcp::config::DEFAULT_KEY.to_string());
        let mut ignored = Vec::new();
        if c.log.is_some() {
            ignored.push("--log (rsmux logs to stderr)".to_string());
        }
        if c.snmplog.is_some() || c.snmpperiod.is_some() {
            ignored.push("--snmplog/--snmpperiod (no SNMP counters)".to_string());
        }
        if c.pprof {
            ignored.push("--pprof".to_string());
        }
        Settings {
            role,
            local: local.to_string(),
            remote: remote.to_string(),
            key,
            crypt: c.crypt.clone(),
            mode: c.mode.clone(),
            mtu: c.mtu,
            sndwnd: c.sndwnd.unwrap_or(snd),
            rcvwnd: c.rcvwnd.unwrap_or(rcv),
            datashard: c.datashard,
            parityshard: c.parityshard,
            dscp: c.dscp,
            nocomp: c.nocomp,
            acknodelay: c.acknodelay,
            nodelay: c.nodelay,
            interval: c.interval,
            resend: c.resend,
            nc: c.nc,
            sockbuf: to_i64(c.sockbuf),
            smuxver: c.smuxver,
            smuxbuf: to_i64(c.smuxbuf),
            streambuf: to_i64(c.streambuf),
            keepalive: c.keepalive,
            keepalive_timeout: c.keepalive_timeout,
            quiet: c.quiet,
            tcp: c.tcp,
            conn: 1,
            autoexpire: 0,
            scavengettl: 600,
            ignored,
        }
    }

    /// The client's flags, with the JSON config over them.
    pub fn client(a: &ClientArgs) -> std::result::Result<Settings, String> {
        let mut s = Settings::from_common(Role::Client, &a.localaddr, &a.remoteaddr, &a.common);
        s.conn = a.conn;
        s.autoexpire = a.autoexpire;
        s.scavengettl = a.scavengettl;
        if let Some(path) = &a.common.config {
            config::apply_file(&mut s, path)?;
        }
        Ok(s)
    }

    /// The server's flags, with the JSON config over them.
    pub fn server(a: &ServerArgs) -> std::result::Result<Settings, String> {
        let mut s = Settings::from_common(Role::Server, &a.listen, &a.target, &a.common);
        if let Some(path) = &a.common.config {
            config::apply_file(&mut s, path)?;
        }
        Ok(s)
    }

    /// Checks everything; the error is one line naming the flag (or JSON key).
    pub fn resolve(&self) -> std::result::Result<Resolved, String> {
        let warnings: Vec<String> = self
            .ignored
            .iter()
            .map(|o| format!("{o}: accepted for compatibility with kcptun, ignored"))
            .collect();
        if self.tcp {
            return Err(
                "--tcp: kcptun's fake-TCP mode (tcpraw) is not supported by rsmux; \
                        run both ends without --tcp (KCP over UDP)"
                    .into(),
            );
        }
        let crypt = CryptKind::from_str(&self.crypt).map_err(|_| {
            let names: Vec<&str> = CryptKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "--crypt {:?}: unknown cipher (kcptun would silently use aes; rsmux refuses \
                 rather than guess); expected one of {}",
                self.crypt,
                names.join(", ")
            )
        })?;
        let mode = if self.mode == "manual" {
            Mode::Manual {
                nodelay: self.nodelay != 0,
                interval: range("interval", self.interval)?,
                resend: range("resend", self.resend)?,
                no_congestion: self.nc != 0,
            }
        } else {
            Mode::from_str(&self.mode).map_err(|_| {
                format!(
                    "--mode {:?}: expected normal, fast, fast2, fast3 or manual",
                    self.mode
                )
            })?
        };
        let base = match self.role {
            Role::Client => KcpConfig::default(),
            Role::Server => KcpConfig::kcptun_server(),
        };
        let kcp = KcpConfig {
            key: self.key.clone(),
            crypt,
            mode,
            mtu: range("mtu", self.mtu)?,
            snd_wnd: range("sndwnd", self.sndwnd)?,
            rcv_wnd: range("rcvwnd", self.rcvwnd)?,
            data_shards: range("datashard", self.datashard)?,
            parity_shards: range("parityshard", self.parityshard)?,
            compression: !self.nocomp,
            ack_nodelay: self.acknodelay,
            sockbuf: range("sockbuf", self.sockbuf)?,
            dscp: range("dscp", self.dscp)?,
            ..base
        };
        kcp.validate().map_err(|e| e.to_string())?;
        let smux = self.smux()?;
        let local = match self.local.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.local.clone(),
        };
        let (local_flag, remote_flag) = match self.role {
            Role::Client => ("--localaddr", "--remoteaddr"),
            Role::Server => ("--listen", "--target"),
        };
        common::parse_host_port(&local).map_err(|e| format!("{local_flag} {local:?}: {e}"))?;
        if self.role == Role::Client || !is_unix_path(&self.remote) {
            common::parse_host_port(&self.remote)
                .map_err(|e| format!("{remote_flag} {:?}: {e}", self.remote))?;
        }
        let conn: usize = range("conn", self.conn)?;
        if !(1..=1024).contains(&conn) {
            return Err(format!("--conn {conn}: must be 1..=1024"));
        }
        let autoexpire: u64 = range("autoexpire", self.autoexpire)?;
        Ok(Resolved {
            local,
            remote: self.remote.clone(),
            kcp,
            smux,
            conn,
            autoexpire: (autoexpire > 0).then(|| Duration::from_secs(autoexpire)),
            scavenge_ttl: Duration::from_secs(self.scavengettl.max(0).unsigned_abs()),
            quiet: self.quiet,
            warnings,
        })
    }

    /// kcptun's smux settings: Go smux's defaults with version, buffers and keepalive
    /// interval from the flags (keepalive timeout 30 s, frames 32 KiB).
    fn smux(&self) -> std::result::Result<rsmux::Config, String> {
        if self.keepalive <= 0 {
            return Err(format!(
                "--keepalive {}: must be a positive number of seconds (kcptun's smux refuses it \
                 too; over KCP, keepalive is how a dead peer is noticed)",
                self.keepalive
            ));
        }
        let version = rsmux::Version::try_from(range::<u8>("smuxver", self.smuxver)?)
            .map_err(|e| format!("--smuxver {}: {}", self.smuxver, e.problem))?;
        let config = rsmux::Config::default()
            .with_version(version)
            .with_keep_alive_disabled(false)
            .with_keep_alive_interval(Duration::from_secs(range("keepalive", self.keepalive)?))
            .with_keep_alive_timeout(Duration::from_secs(range(
                "keepalive-timeout",
                self.keepalive_timeout,
            )?))
            .with_max_frame_size(32768)
            .with_max_receive_buffer(range("smuxbuf", self.smuxbuf)?)
            .with_max_stream_buffer(range("streambuf", self.streambuf)?);
        config.validate().map_err(|e| {
            // kcptun has no keepalive-timeout flag: its timeout is fixed at 30 s (rsmux's
            // hidden --keepalive-timeout aside).
            let flag = match e.field {
                rsmux::ConfigField::KeepAliveTimeout if self.keepalive_timeout == 30 => {
                    "--keepalive"
                }
                field => common::smux_flag(field),
            };
            let reason = match e.problem {
                rsmux::ConfigProblem::BelowKeepAliveInterval => format!(
                    "must not be longer than the {} s keepalive timeout",
                    self.keepalive_timeout
                ),
                problem => common::problem_in_flags(problem),
            };
            format!("{flag}: {reason}")
        })?;
        Ok(config)
    }
}

/// A number converted to the type a setting needs, or an error naming the flag.
fn range<T: TryFrom<i64>>(flag: &str, v: i64) -> std::result::Result<T, String> {
    T::try_from(v).map_err(|_| format!("--{flag} {v}: out of range"))
}

/// kcptun takes a target that is not `HOST:PORT` as a Unix socket path.
pub fn is_unix_path(target: &str) -> bool {
    target.contains('/') || !target.contains(':')
}

/// Resolves the command line (JSON config included) without running: bad usage is an error.
pub fn check(cmd: &KcptunCommand) -> std::result::Result<(), String> {
    settings(cmd)?.resolve().map(drop)
}

fn settings(cmd: &KcptunCommand) -> std::result::Result<Settings, String> {
    match cmd {
        KcptunCommand::Client(a) => Settings::client(a),
        KcptunCommand::Server(a) => Settings::server(a),
    }
}

/// Runs the client or the server until a signal or a fatal error.
pub async fn run(cmd: KcptunCommand) -> Result<()> {
    let resolved = settings(&cmd)
        .and_then(|s| s.resolve())
        .map_err(common::Failure)?;
    for w in &resolved.warnings {
        tracing::warn!("{w}");
    }
    let work = async {
        match cmd {
            KcptunCommand::Client(_) => client::run(resolved).await,
            KcptunCommand::Server(_) => server::run(resolved).await,
        }
    };
    tokio::select! {
        r = work => r,
        sig = common::shutdown_signal() => {
            tracing::info!("{sig}: exiting");
            Ok(())
        }
    }
}

/// Largest chunk taken from a stream at once.
const CHUNK_MAX: usize = 64 * 1024;
/// Room for one read from the TCP (or Unix) side.
const READ_BUF: usize = 16 * 1024;

/// Copies both ways between a stream and a connection the way kcptun does: **no half-close**.
/// When either direction ends (EOF or error), the stream gets a FIN after what was already
/// written, the connection is shut down and both are dropped; data still coming the other way
/// is discarded. Returns the bytes carried (connection → stream, stream → connection).
pub async fn pipe_kcptun<T>(stream: Stream, conn: T) -> (u64, u64)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sr, mut sw) = stream.into_split();
    let (mut cr, mut cw) = tokio::io::split(conn);
    let mut up = 0u64;
    let mut down = 0u64;
    {
        let to_stream = async {
            let mut buf = bytes::BytesMut::new();
            loop {
                buf.reserve(READ_BUF);
                match cr.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if sw.write_chunk(buf.split().freeze()).await.is_err() {
                            return;
                        }
                        up += n as u64;
                    }
                }
            }
        };
        let from_stream = async {
            while let Ok(Some(chunk)) = sr.read_chunk(CHUNK_MAX).await {
                if cw.write_all(&chunk).await.is_err() {
                    return;
                }
                down += chunk.len() as u64;
            }
        };
        tokio::select! {
            () = to_stream => {}
            () = from_stream => {}
        }
    }
    let _ = sw.shutdown().await;
    let _ = cw.shutdown().await;
    (up, down)
}
