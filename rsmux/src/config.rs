//! Session configuration, with Go smux's defaults and validation rules (SPEC §3).

use std::time::Duration;

/// Highest payload a frame can carry: the LENGTH field is a `u16`.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Largest receive budget or stream window Go accepts (`int32` maximum).
pub const MAX_BUFFER: usize = i32::MAX as usize;

/// The smux protocol version a session speaks (the VERSION byte of every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Version {
    /// Version 1: no flow control per stream; the session-wide receive budget bounds memory.
    #[default]
    V1,
    /// Version 2: adds per-stream sliding windows (`UPD` frames).
    V2,
}

impl Version {
    /// The VERSION byte on the wire (1 or 2).
    pub fn as_u8(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

impl TryFrom<u8> for Version {
    type Error = ConfigError;

    /// The version of a VERSION byte; other bytes than 1 and 2 are
    /// [`ConfigProblem::UnsupportedVersion`].
    fn try_from(byte: u8) -> Result<Version, ConfigError> {
        match byte {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            _ => Err(ConfigError {
                field: ConfigField::Version,
                problem: ConfigProblem::UnsupportedVersion,
            }),
        }
    }
}

impl From<Version> for u8 {
    fn from(v: Version) -> u8 {
        v.as_u8()
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

/// Configuration of one session.
///
/// Field names follow Go's `smux.Config`; [`Config::default`] equals Go's `DefaultConfig()`
/// plus [`stream_window_auto_tune`](Config::stream_window_auto_tune), which only changes the
/// window values a v2 session advertises.
/// Both peers must use the same [`version`](Config::version): there is no negotiation
/// (unless a server sets [`detect_version`](Config::detect_version)).
///
/// The fields are public, to read and set as in Go, and the struct is `#[non_exhaustive]`, so
/// fields can be added without breaking anyone: start from [`Config::default`] and set fields,
/// or chain the `with_*` setters:
///
/// ```
/// use rsmux::{Config, Version};
/// let config = Config::default()
///     .with_version(Version::V2)
///     .with_max_streams(1000);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Protocol version. Version 2 adds per-stream sliding windows (`UPD` frames).
    pub version: Version,
    /// Disables keepalive: no `NOP` frames are sent and a silent peer is never timed out.
    pub keep_alive_disabled: bool,
    /// How often a `NOP` frame is sent to keep the peer's keepalive satisfied.
    pub keep_alive_interval: Duration,
    /// The session closes when nothing at all was received for this long.
    pub keep_alive_timeout: Duration,
    /// Largest payload of a frame this side sends (at most 65535).
    pub max_frame_size: usize,
    /// Session-wide budget of received bytes not yet read by the application. The socket is not
    /// read while the budget is exhausted.
    pub max_receive_buffer: usize,
    /// Per-stream window advertised to the peer (protocol version 2 only); with
    /// [`stream_window_auto_tune`](Config::stream_window_auto_tune) the starting window.
    pub max_stream_buffer: usize,
    /// Protocol version 2: grow a stream's advertised window while its reader keeps up, so one
    /// stream can run at line speed without hand-tuning `max_stream_buffer`.
    ///
    /// On by default. The window a receiver advertises is its own choice, so this changes no
    /// wire format and any smux peer follows it. A stream whose reader found nothing to read
    /// since its last window update (the window, not the reader, was the limit) doubles its
    /// window at the next update, as long as the windows of all streams together stay within
    /// half of `max_receive_buffer`. So auto-tuning never lets honest peers send more than the
    /// receive budget holds: streams whose readers stall cannot exhaust it and hold up the
    /// others (with many streams, their configured windows alone may, exactly as in Go).
    /// A stream's growth is given back when its reader closes. `false` advertises
    /// `max_stream_buffer` always, exactly as Go smux does.
    pub stream_window_auto_tune: bool,
    /// Most streams the session holds at once (0: no limit, as in Go). A SYN from the peer
    /// beyond it is refused at once: the stream is never registered or queued for accept, a FIN
    /// tells the peer (it reads EOF), and whatever it sends on that stream is dropped without
    /// being buffered. Counted in [`Stats::streams_refused`](crate::Stats::streams_refused).
    pub max_streams: usize,
    /// Most peer-opened streams waiting to be accepted (Go's backlog: 1024). While this many
    /// wait, the session stops reading the connection (so a SYN flood costs bounded memory and
    /// the peer is slowed down, not refused); reading resumes as the application accepts.
    pub accept_backlog: usize,
    /// Server only: take the protocol version (1 or 2) from the client's first frame, so one
    /// server serves clients of both versions (a step Go smux cannot take: a deployment moves
    /// from v1 to v2 without a flag day). The server sends nothing before that frame arrives;
    /// [`version`](Config::version) is only used to report a first frame of another version.
    /// Off by default: a server then speaks `version` only, exactly as Go's does.
    pub detect_version: bool,
    /// A name for the session in its tracing span (`smux_session{label=...}`), such as the
    /// peer's address; empty by default.
    pub label: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: Version::V1,
            keep_alive_disabled: false,
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            max_frame_size: 32768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65536,
            stream_window_auto_tune: true,
            max_streams: 0,
            accept_backlog: 1024,
            detect_version: false,
            label: String::new(),
        }
    }
}

/// Chainable setters, one per field (each sets the field of the same name).
impl Config {
    /// Sets [`version`](Config::version).
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Config {
        self.version = version;
        self
    }

    /// Sets [`keep_alive_disabled`](Config::keep_alive_disabled).
    #[must_use]
    pub fn with_keep_alive_disabled(mut self, disabled: bool) -> Config {
        self.keep_alive_disabled = disabled;
        self
    }

    /// Sets [`keep_alive_interval`](Config::keep_alive_interval).
    #[must_use]
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Config {
        self.keep_alive_interval = interval;
        self
    }

    /// Sets [`keep_alive_timeout`](Config::keep_alive_timeout).
    #[must_use]
    pub fn with_keep_alive_timeout(mut self, timeout: Duration) -> Config {
        self.keep_alive_timeout = timeout;
        self
    }

    /// Sets [`max_frame_size`](Config::max_frame_size).
    #[must_use]
    pub fn with_max_frame_size(mut self, bytes: usize) -> Config {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`max_receive_buffer`](Config::max_receive_buffer).
    #[must_use]
    pub fn with_max_receive_buffer(mut self, bytes: usize) -> Config {
        self.max_receive_buffer = bytes;
        self
    }

    /// Sets [`max_stream_buffer`](Config::max_stream_buffer).
    #[must_use]
    pub fn with_max_stream_buffer(mut self, bytes: usize) -> Config {
        self.max_stream_buffer = bytes;
        self
    }

    /// Sets [`stream_window_auto_tune`](Config::stream_window_auto_tune).
    #[must_use]
    pub fn with_stream_window_auto_tune(mut self, on: bool) -> Config {
        self.stream_window_auto_tune = on;
        self
    }

    /// Sets [`max_streams`](Config::max_streams).
    #[must_use]
    pub fn with_max_streams(mut self, streams: usize) -> Config {
        self.max_streams = streams;
        self
    }

    /// Sets [`accept_backlog`](Config::accept_backlog).
    #[must_use]
    pub fn with_accept_backlog(mut self, streams: usize) -> Config {
        self.accept_backlog = streams;
        self
    }

    /// Sets [`detect_version`](Config::detect_version).
    #[must_use]
    pub fn with_detect_version(mut self, on: bool) -> Config {
        self.detect_version = on;
        self
    }

    /// Sets [`label`](Config::label).
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Config {
        self.label = label.into();
        self
    }
}

/// A configuration value that [`Config::validate`] (or a session constructor) rejects: which
/// field, and which rule it breaks, as types a program can match (the CLI turns them into
/// messages about its flags).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field}: {problem}")]
pub struct ConfigError {
    /// The offending field of [`Config`].
    pub field: ConfigField,
    /// The rule its value breaks.
    pub problem: ConfigProblem,
}

/// A field of [`Config`], as named by a [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigField {
    /// [`Config::version`].
    Version,
    /// [`Config::keep_alive_interval`].
    KeepAliveInterval,
    /// [`Config::keep_alive_timeout`].
    KeepAliveTimeout,
    /// [`Config::max_frame_size`].
    MaxFrameSize,
    /// [`Config::max_receive_buffer`].
    MaxReceiveBuffer,
    /// [`Config::max_stream_buffer`].
    MaxStreamBuffer,
    /// [`Config::detect_version`].
    DetectVersion,
    /// [`Config::accept_backlog`].
    AcceptBacklog,
}

impl ConfigField {
    /// The field's name in [`Config`] (`"max_frame_size"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigField::Version => "version",
            ConfigField::KeepAliveInterval => "keep_alive_interval",
            ConfigField::KeepAliveTimeout => "keep_alive_timeout",
            ConfigField::MaxFrameSize => "max_frame_size",
            ConfigField::MaxReceiveBuffer => "max_receive_buffer",
            ConfigField::MaxStreamBuffer => "max_stream_buffer",
            ConfigField::DetectVersion => "detect_version",
            ConfigField::AcceptBacklog => "accept_backlog",
        }
    }
}

impl std::fmt::Display for ConfigField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The rule a rejected [`Config`] value breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The protocol version is neither 1 nor 2 (from [`Version::try_from`]).
    UnsupportedVersion,
    /// The value must be larger than zero.
    NotPositive,
    /// The value is larger than this maximum.
    TooLarge {
        /// The largest value allowed.
        max: u64,
    },
    /// The keepalive timeout is shorter than the keepalive interval.
    BelowKeepAliveInterval,
    /// The per-stream window is larger than the session's receive budget.
    AboveReceiveBuffer,
    /// Only a server can take the version from its peer's first frame.
    ServerOnly,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigProblem::UnsupportedVersion => {
                f.write_str("unsupported protocol version (must be 1 or 2)")
            }
            ConfigProblem::NotPositive => f.write_str("must be positive"),
            ConfigProblem::TooLarge { max } => write!(f, "must not be larger than {max}"),
            ConfigProblem::BelowKeepAliveInterval => {
                f.write_str("must be larger than or equal to keep_alive_interval")
            }
            ConfigProblem::AboveReceiveBuffer => {
                f.write_str("must not be larger than max_receive_buffer")
            }
            ConfigProblem::ServerOnly => {
                f.write_str("only a server can take the version from its peer")
            }
        }
    }
}

impl Config {
    /// Checks every rule of Go's `VerifyConfig`, in its order, plus the ones Go forgets
    /// (a zero keepalive interval is rejected even though Go would panic on it later).
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigField::*;
        use ConfigProblem::*;
        let err = |field, problem| Err(ConfigError { field, problem });
        let max_buffer = TooLarge {
            max: MAX_BUFFER as u64,
        };
        if !self.keep_alive_disabled {
            if self.keep_alive_interval.is_zero() {
                return err(KeepAliveInterval, NotPositive);
            }
            if self.keep_alive_timeout < self.keep_alive_interval {
                return err(KeepAliveTimeout, BelowKeepAliveInterval);
            }
        }
        if self.max_frame_size == 0 {
            return err(MaxFrameSize, NotPositive);
        }
        if self.max_frame_size > MAX_FRAME_PAYLOAD {
            return err(
                MaxFrameSize,
                TooLarge {
                    max: MAX_FRAME_PAYLOAD as u64,
                },
            );
        }
        if self.max_receive_buffer == 0 {
            return err(MaxReceiveBuffer, NotPositive);
        }
        if self.max_receive_buffer > MAX_BUFFER {
            return err(MaxReceiveBuffer, max_buffer);
        }
        if self.max_stream_buffer == 0 {
            return err(MaxStreamBuffer, NotPositive);
        }
        if self.max_stream_buffer > self.max_receive_buffer {
            return err(MaxStreamBuffer, AboveReceiveBuffer);
        }
        if self.max_stream_buffer > MAX_BUFFER {
            return err(MaxStreamBuffer, max_buffer);
        }
        if self.accept_backlog == 0 {
            return err(AcceptBacklog, NotPositive);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(f: impl FnOnce(&mut Config), field: &str) {
        let mut c = Config::default();
        f(&mut c);
        assert_eq!(c.validate().unwrap_err().field.name(), field);
    }

    #[test]
    fn errors_name_the_field_and_the_rule() {
        let c = Config {
            max_stream_buffer: 8 << 20,
            ..Config::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, ConfigField::MaxStreamBuffer);
        assert_eq!(e.problem, ConfigProblem::AboveReceiveBuffer);
        assert_eq!(
            e.to_string(),
            "invalid config: max_stream_buffer: must not be larger than max_receive_buffer"
        );
        let c = Config {
            max_frame_size: 70000,
            ..Config::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.problem, ConfigProblem::TooLarge { max: 65535 });
        assert_eq!(
            e.to_string(),
            "invalid config: max_frame_size: must not be larger than 65535"
        );
    }

    #[test]
    fn default_equals_go_default_config() {
        let c = Config::default();
        assert_eq!(c.version, Version::V1);
        assert_eq!(c.accept_backlog, 1024);
        assert!(!c.keep_alive_disabled);
        assert_eq!(c.keep_alive_interval, Duration::from_secs(10));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(30));
        assert_eq!(c.max_frame_size, 32768);
        assert_eq!(c.max_receive_buffer, 4 * 1024 * 1024);
        assert_eq!(c.max_stream_buffer, 65536);
        assert!(c.stream_window_auto_tune);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn verify_config_rules() {
        rejects(|c| c.accept_backlog = 0, "accept_backlog");
        rejects(
            |c| c.keep_alive_interval = Duration::ZERO,
            "keep_alive_interval",
        );
        rejects(
            |c| c.keep_alive_timeout = Duration::from_secs(5),
            "keep_alive_timeout",
        );
        rejects(|c| c.max_frame_size = 0, "max_frame_size");
        rejects(|c| c.max_frame_size = 65536, "max_frame_size");
        rejects(|c| c.max_receive_buffer = 0, "max_receive_buffer");
        rejects(|c| c.max_receive_buffer = 1 << 31, "max_receive_buffer");
        rejects(|c| c.max_stream_buffer = 0, "max_stream_buffer");
        rejects(
            |c| c.max_stream_buffer = c.max_receive_buffer + 1,
            "max_stream_buffer",
        );
    }

    #[test]
    fn version_bytes() {
        assert_eq!(Version::try_from(2).unwrap(), Version::V2);
        assert_eq!(u8::from(Version::V1), 1);
        assert_eq!(Version::V2.to_string(), "2");
        for bad in [0, 3, 255] {
            let e = Version::try_from(bad).unwrap_err();
            assert_eq!(e.field, ConfigField::Version);
            assert_eq!(e.problem, ConfigProblem::UnsupportedVersion);
        }
        let c = Config::default()
            .with_version(Version::V2)
            .with_max_streams(7)
            .with_label("peer");
        assert_eq!(
            (c.version, c.max_streams, c.label.as_str()),
            (Version::V2, 7, "peer")
        );
    }

    #[test]
    fn boundaries_that_go_accepts() {
        let mut c = Config {
            max_frame_size: 65535,
            max_receive_buffer: MAX_BUFFER,
            max_stream_buffer: MAX_BUFFER,
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.keep_alive_timeout = c.keep_alive_interval;
        assert!(c.validate().is_ok());
        // Keepalive values are not checked when keepalive is off.
        c.keep_alive_disabled = true;
        c.keep_alive_interval = Duration::ZERO;
        assert!(c.validate().is_ok());
    }
}
