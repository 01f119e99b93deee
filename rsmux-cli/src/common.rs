//! Pieces shared by every subcommand: the smux flags, value parsers, errors, signals and
//! the "listening on" line.

use std::{fmt, io::Write, net::SocketAddr, time::Duration};

use clap::Args;
use rsmux::{Config, ConfigField, ConfigProblem, Version};

/// The smux session flags, named as kcptun names them. Every subcommand has them.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "smux options (named as in kcptun)")]
pub struct SmuxOpts {
    /// smux protocol version, 1 or 2 (both peers must agree: smux has no negotiation).
    /// Servers also take `auto`: each session speaks the version of its client's first frame
    #[arg(
        long,
        value_name = "1|2|auto",
        default_value = "1",
        allow_negative_numbers = true,
        value_parser = parse_smuxver
    )]
    pub smuxver: u8,
    /// Session receive buffer: received bytes not yet read, all streams together
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, default_value = "4194304", value_parser = parse_size)]
    pub smuxbuf: usize,
    /// Per-stream window (protocol version 2 only); at most --smuxbuf
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, default_value = "65536", value_parser = parse_size)]
    pub streambuf: usize,
    /// Largest frame payload this side sends, 1..=65535
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, default_value = "32768", value_parser = parse_size)]
    pub framesize: usize,
    /// Keepalive interval in seconds; 0 disables keepalive (no NOPs, no timeout)
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, default_value = "10", value_parser = parse_secs)]
    pub keepalive: Duration,
    /// Close a session when nothing was received for this many seconds (>= --keepalive)
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, default_value = "30", value_parser = parse_secs)]
    pub keepalive_timeout: Duration,
    /// Protocol version 2: always advertise --streambuf, as Go smux does (by default the
    /// window of a stream whose reader keeps up grows, within half of --smuxbuf)
    #[arg(long)]
    pub fixed_streambuf: bool,
}

/// `--smuxver auto`, as stored in [`SmuxOpts::smuxver`].
pub const SMUXVER_AUTO: u8 = 0;

/// Parses `--smuxver`: `auto`, or a number (versions other than 1 and 2 are left for the
/// library to reject, naming the flag).
pub fn parse_smuxver(s: &str) -> Result<u8, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(SMUXVER_AUTO);
    }
    match s.trim().parse::<u8>() {
        Ok(SMUXVER_AUTO) | Err(_) => Err(format!("must be 1, 2 or auto, not {s:?}")),
        Ok(v) => Ok(v),
    }
}

/// How a session's version reads in logs: `v1`, `v2` or `auto`.
pub fn version_label(config: &Config) -> String {
    if config.detect_version {
        "auto (v1 or v2, from each client)".into()
    } else {
        format!("v{}", config.version)
    }
}

impl SmuxOpts {
    /// The session configuration for a server, checked by the library. The error is a
    /// one-line message that starts with the offending flag's name.
    pub fn config(&self) -> Result<Config, String> {
        self.config_with_version(self.smuxver)
    }

    /// Like [`config`](Self::config), for a client: `--smuxver auto` is refused.
    pub fn client_config(&self) -> Result<Config, String> {
        if self.smuxver == SMUXVER_AUTO {
            return Err(
                "--smuxver auto: only a server takes the version from its client \
                        (rsmux echo, rsmux tunnel server); a client must say 1 or 2"
                    .into(),
            );
        }
        self.config()
    }

    /// Like [`config`](Self::config), with another protocol version ([`SMUXVER_AUTO`]:
    /// detected per session, a server only).
    pub fn config_with_version(&self, version: u8) -> Result<Config, String> {
        let disabled = self.keepalive.is_zero();
        let defaults = Config::default();
        let auto = version == SMUXVER_AUTO;
        let version = match Version::try_from(if auto { 1 } else { version }) {
            Ok(v) => v,
            Err(e) => {
                let (flag, reason) = (smux_flag(e.field), problem_in_flags(e.problem));
                return Err(format!("{flag} {version}: {reason}"));
            }
        };
        let config = Config::default()
            .with_version(version)
            .with_detect_version(auto)
            .with_keep_alive_disabled(disabled)
            .with_keep_alive_interval(if disabled {
                defaults.keep_alive_interval
            } else {
                self.keepalive
            })
            .with_keep_alive_timeout(self.keepalive_timeout)
            .with_max_frame_size(self.framesize)
            .with_max_receive_buffer(self.smuxbuf)
            .with_max_stream_buffer(self.streambuf)
            .with_stream_window_auto_tune(!self.fixed_streambuf);
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => {
                let value = match e.field {
                    ConfigField::MaxReceiveBuffer => self.smuxbuf.to_string(),
                    ConfigField::MaxStreamBuffer => self.streambuf.to_string(),
                    ConfigField::MaxFrameSize => self.framesize.to_string(),
                    ConfigField::KeepAliveInterval => secs(self.keepalive),
                    ConfigField::KeepAliveTimeout => secs(self.keepalive_timeout),
                    _ => String::new(),
                };
                let (flag, reason) = (smux_flag(e.field), problem_in_flags(e.problem));
                Err(format!("{flag} {value}: {reason}"))
            }
        }
    }

    /// The same settings as flags of the Go peer (`interop/go/src/smuxpeer`).
    pub fn go_flags(&self, version: u8) -> Vec<String> {
        let mut v = vec![
            "-ver".to_string(),
            version.to_string(),
            "-smuxbuf".into(),
            self.smuxbuf.to_string(),
            "-streambuf".into(),
            self.streambuf.to_string(),
            "-framesize".into(),
            self.framesize.to_string(),
        ];
        if self.keepalive.is_zero() {
            v.push("-nokeepalive".into());
        } else {
            v.extend([
                "-keepalive".into(),
                secs(self.keepalive),
                "-keepalive-timeout".into(),
                secs(self.keepalive_timeout),
            ]);
        }
        v
    }

    /// The same settings as flags of this program, with another version.
    pub fn cli_flags(&self, version: u8) -> Vec<String> {
        let mut v = vec![
            "--smuxver".into(),
            version.to_string(),
            "--smuxbuf".into(),
            self.smuxbuf.to_string(),
            "--streambuf".into(),
            self.streambuf.to_string(),
            "--framesize".into(),
            self.framesize.to_string(),
            "--keepalive".into(),
            secs(self.keepalive),
            "--keepalive-timeout".into(),
            secs(self.keepalive_timeout),
        ];
        if self.fixed_streambuf {
            v.push("--fixed-streambuf".into());
        }
        v
    }
}

/// Seconds as the user would write them ("10", "0.5").
pub fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Parses a byte count: plain bytes (`65536`) or a number with a suffix. Binary: `K`, `KiB`,
/// `M`, `MiB`, `G`, `GiB` (powers of 1024); decimal: `KB`, `MB`, `GB` (powers of 1000); `B`
/// means bytes. Suffixes ignore case; whitespace between number and suffix is allowed.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    if num.is_empty() {
        return Err("expected a byte count such as 65536, 64KiB or 4MiB".into());
    }
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
            "unknown size suffix '{}' (use B, K/KiB, M/MiB, G/GiB, or KB/MB/GB for powers of 1000)",
            suffix.trim()
        ))
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| "number too large".to_string())
}

/// Parses seconds: a non-negative decimal number (`10`, `0.5`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds such as 10 or 0.5".to_string())?;
    if !v.is_finite() || v < 0.0 {
        return Err("must be a non-negative number of seconds".into());
    }
    Duration::try_from_secs_f64(v).map_err(|_| "too large".to_string())
}

/// Checks that an address looks like `HOST:PORT` (`[v6]:PORT` for IPv6 literals). The host is
/// resolved later.
pub fn parse_host_port(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected HOST:PORT, for example 127.0.0.1:8388".into());
    };
    if host.is_empty() || host.contains(':') || host.contains(char::is_whitespace) {
        return Err("expected HOST:PORT, for example 127.0.0.1:8388 ([::1]:8388 for IPv6)".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("bad port '{port}': expected a number 0..=65535"))?;
    Ok(s.to_string())
}

/// A failure of a subcommand at run time (exit status 1), already phrased for the user.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// Result of a subcommand.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Failure(format!("{what}: {e}")))
    }
}

/// Prints the readiness line tests and scripts wait for, and flushes it.
pub fn print_listening(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    // Nothing sensible to do if stdout is gone.
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Completes on SIGINT or SIGTERM and names the signal.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Binds a TCP listener, with the address in the error.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .context(format_args!("cannot listen on {addr}"))
}

/// The next connection on `listener`. A failed accept (typically out of file descriptors) is
/// logged and retried after a pause instead of spinning.
pub async fn accept(
    listener: &tokio::net::TcpListener,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Checks that `addr` (`HOST:PORT`, given as `flag`) resolves, so that a misspelt host is
/// reported at start rather than at the first connection (exit status 1: the name may be
/// right and the resolver down).
pub async fn check_resolves(flag: &str, addr: &str) -> Result<()> {
    match tokio::net::lookup_host(addr).await.map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Failure(format!("{flag} {addr}: the name has no address"))),
        Err(e) => Err(Failure(format!(
            "{flag} {addr}: cannot resolve the name: {e}"
        ))),
    }
}

/// Human-readable reason a session ended.
pub fn close_reason(session: &rsmux::Session) -> String {
    match session.close_reason() {
        Some(rsmux::Error::ClosedBeforeFirstFrame) => {
            "the server closed the connection before sending a frame (does it speak the same \
             smux version? both ends need the same --smuxver)"
                .into()
        }
        Some(e) => e.to_string(),
        None => "open".into(),
    }
}

/// The smux flag (kcptun's name) that sets `field` of the library's [`Config`].
pub fn smux_flag(field: ConfigField) -> &'static str {
    match field {
        ConfigField::Version => "--smuxver",
        ConfigField::MaxReceiveBuffer => "--smuxbuf",
        ConfigField::MaxStreamBuffer => "--streambuf",
        ConfigField::MaxFrameSize => "--framesize",
        ConfigField::KeepAliveInterval => "--keepalive",
        ConfigField::KeepAliveTimeout => "--keepalive-timeout",
        other => other.name(),
    }
}

/// Why a value was rejected, said in terms of flags rather than of the library's fields.
pub fn problem_in_flags(problem: ConfigProblem) -> String {
    match problem {
        ConfigProblem::BelowKeepAliveInterval => {
            "must be larger than or equal to --keepalive".to_string()
        }
        ConfigProblem::AboveReceiveBuffer => "must not be larger than --smuxbuf".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64 KB"), Ok(64000));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4mb"), Ok(4_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("x").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn host_port() {
        assert!(parse_host_port("127.0.0.1:0").is_ok());
        assert!(parse_host_port("localhost:8080").is_ok());
        assert!(parse_host_port("[::1]:80").is_ok());
        assert!(parse_host_port("foo").is_err());
        assert!(parse_host_port("foo:bar").is_err());
        assert!(parse_host_port(":80").is_err());
        assert!(parse_host_port("::1:80").is_err());
    }

    fn opts() -> SmuxOpts {
        SmuxOpts {
            smuxver: 1,
            smuxbuf: 4194304,
            streambuf: 65536,
            framesize: 32768,
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
            fixed_streambuf: false,
        }
    }

    #[test]
    fn smuxver_auto_and_fixed_streambuf_reach_the_config_and_child_flags() {
        assert_eq!(parse_smuxver("AUTO"), Ok(SMUXVER_AUTO));
        assert_eq!(parse_smuxver("2"), Ok(2));
        assert!(parse_smuxver("0").is_err());
        let auto = SmuxOpts {
            smuxver: SMUXVER_AUTO,
            ..opts()
        };
        let c = auto.config().unwrap();
        assert!(c.detect_version && c.version == Version::V1);
        assert!(auto
            .client_config()
            .unwrap_err()
            .starts_with("--smuxver auto"));
        assert!(!opts().config().unwrap().detect_version);
        // Auto-tuning is on unless --fixed-streambuf, which child processes get too.
        assert!(opts().config().unwrap().stream_window_auto_tune);
        assert!(!opts()
            .cli_flags(2)
            .contains(&"--fixed-streambuf".to_string()));
        let fixed = SmuxOpts {
            fixed_streambuf: true,
            ..opts()
        };
        assert!(!fixed.config().unwrap().stream_window_auto_tune);
        assert!(fixed
            .cli_flags(2)
            .contains(&"--fixed-streambuf".to_string()));
    }

    #[test]
    fn config_errors_name_the_flag() {
        assert!(opts().config().is_ok());
        let e = SmuxOpts {
            smuxver: 3,
            ..opts()
        }
        .config()
        .unwrap_err();
        assert!(e.starts_with("--smuxver 3: "), "{e}");
        let e = SmuxOpts {
            keepalive_timeout: Duration::from_secs(1),
            ..opts()
        }
        .config()
        .unwrap_err();
        assert!(e.starts_with("--keepalive-timeout 1: "), "{e}");
        assert!(e.contains("--keepalive"), "{e}");
        let e = SmuxOpts {
            streambuf: 8 << 20,
            ..opts()
        }
        .config()
        .unwrap_err();
        assert!(e.starts_with("--streambuf 8388608: "), "{e}");
        assert!(e.contains("--smuxbuf"), "{e}");
        let c = SmuxOpts {
            keepalive: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            ..opts()
        }
        .config()
        .unwrap();
        assert!(c.keep_alive_disabled);
    }
}
