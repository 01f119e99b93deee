//! Session configuration, with Go smux's defaults and validation rules (SPEC §3).

use std::time::Duration;

/// Highest payload a frame can carry: the LENGTH field is a `u16`.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Largest receive budget or stream window Go accepts (`int32` maximum).
pub const MAX_BUFFER: usize = i32::MAX as usize;

/// Configuration of one session.
///
/// Field names follow Go's `smux.Config`; [`Config::default`] equals Go's `DefaultConfig()`
/// plus [`stream_window_auto_tune`](Config::stream_window_auto_tune), which only changes the
/// window values a v2 session advertises.
/// Both peers must use the same [`version`](Config::version): there is no negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Protocol version, 1 or 2. Version 2 adds per-stream sliding windows (`UPD` frames).
    pub version: u8,
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
    /// Server only: take the protocol version (1 or 2) from the client's first frame, so one
    /// server serves clients of both versions (a step Go smux cannot take: a deployment moves
    /// from v1 to v2 without a flag day). The server sends nothing before that frame arrives;
    /// [`version`](Config::version) is only used to report a first frame of another version.
    /// Off by default: a server then speaks `version` only, exactly as Go's does.
    pub detect_version: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: 1,
            keep_alive_disabled: false,
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            max_frame_size: 32768,
            max_receive_buffer: 4_194_304,
            max_stream_buffer: 65536,
            stream_window_auto_tune: true,
            max_streams: 0,
            detect_version: false,
        }
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
    /// The protocol version is neither 1 nor 2.
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
        if !matches!(self.version, 1 | 2) {
            return err(Version, UnsupportedVersion);
        }
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
        assert_eq!(c.version, 1);
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
        rejects(|c| c.version = 0, "version");
        rejects(|c| c.version = 3, "version");
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
