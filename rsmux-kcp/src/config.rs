//! [`KcpConfig`]: kcptun's transport flags with kcptun's defaults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::crypt::{self, CryptKind};
use crate::{fec, kcp};

/// kcptun's default `--key`, spelling included.
pub const DEFAULT_KEY: &str = "it's a secrect";

/// kcptun's `--mode`: retransmission timing, local only (never changes the bytes' format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nodelay 0, interval 40 ms, resend 2, congestion control off.
    Normal,
    /// nodelay 0, interval 30 ms, resend 2, congestion control off (kcptun's default).
    Fast,
    /// nodelay 1, interval 20 ms, resend 2, congestion control off.
    Fast2,
    /// nodelay 1, interval 10 ms, resend 2, congestion control off.
    Fast3,
    /// kcptun's `--mode manual` with its hidden `--nodelay --interval --resend --nc` flags.
    Manual {
        /// `--nodelay` (0 or 1).
        nodelay: bool,
        /// `--interval` in ms.
        interval: u32,
        /// `--resend` (fast retransmit threshold, 0 = off).
        resend: u32,
        /// `--nc` (congestion control off).
        no_congestion: bool,
    },
}

impl Mode {
    /// `(nodelay, interval ms, resend, no congestion control)` of this profile.
    pub fn profile(self) -> (bool, u32, u32, bool) {
        match self {
            Mode::Normal => (false, 40, 2, true),
            Mode::Fast => (false, 30, 2, true),
            Mode::Fast2 => (true, 20, 2, true),
            Mode::Fast3 => (true, 10, 2, true),
            Mode::Manual {
                nodelay,
                interval,
                resend,
                no_congestion,
            } => (nodelay, interval, resend, no_congestion),
        }
    }
}

impl FromStr for Mode {
    type Err = ConfigError;

    /// kcptun's names `normal`, `fast`, `fast2`, `fast3` (`manual` needs its values: use
    /// [`Mode::Manual`]).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "normal" => Ok(Mode::Normal),
            "fast" => Ok(Mode::Fast),
            "fast2" => Ok(Mode::Fast2),
            "fast3" => Ok(Mode::Fast3),
            _ => Err(ConfigError::new(
                "mode",
                "expected normal, fast, fast2 or fast3",
            )),
        }
    }
}

/// A bad [`KcpConfig`] value: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (kcptun's flag name).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ConfigError {
    fn new(field: &'static str, reason: &'static str) -> Self {
        ConfigError { field, reason }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid --{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Transport settings, named after kcptun's flags, defaulting to kcptun's **client** defaults
/// ([`KcpConfig::kcptun_server`] for its server's windows). Both ends must agree on `key`,
/// `crypt` and `compression`; FEC shard counts need only agree when both ends send FEC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KcpConfig {
    /// `--key`: the pre-shared secret the cipher key is derived from.
    pub key: String,
    /// `--crypt`.
    pub crypt: CryptKind,
    /// `--mode`.
    pub mode: Mode,
    /// `--mtu`: largest UDP payload sent, all headers included (kcp-go reads at most 1500).
    pub mtu: usize,
    /// `--sndwnd` in segments.
    pub snd_wnd: u16,
    /// `--rcvwnd` in segments (advertised to the peer).
    pub rcv_wnd: u16,
    /// `--datashard`: data datagrams per FEC group (0 with `parity_shards` 0: no FEC sent).
    pub data_shards: usize,
    /// `--parityshard`: parity datagrams per FEC group.
    pub parity_shards: usize,
    /// Snappy framing on the KCP stream (kcptun's `--nocomp` false, the default).
    pub compression: bool,
    /// `--acknodelay`: send acks as soon as data arrives instead of at the next interval.
    pub ack_nodelay: bool,
    /// `--sockbuf`: UDP socket send and receive buffer sizes asked of the OS (capped by its
    /// limits, e.g. Linux `net.core.rmem_max`). Small buffers drop bursts of a fast sender.
    pub sockbuf: usize,
    /// `--dscp`: DiffServ code point (0..=63) of outgoing datagrams, written to the socket's
    /// IP TOS byte as `dscp << 2` (IPv6: the traffic class); 0 leaves the system default.
    pub dscp: u8,
    /// A connection that hears nothing from its peer for this long is closed (KCP itself has
    /// no close; smux keepalive keeps a live session well inside this).
    pub idle_timeout: Duration,
    /// Listener: most peers (source addresses) tracked at once; datagrams from further new
    /// addresses are dropped.
    pub max_peers: usize,
    /// Listener: most connections waiting for [`crate::KcpListener::accept`]; new peers
    /// beyond it are dropped.
    pub accept_backlog: usize,
}

impl Default for KcpConfig {
    fn default() -> Self {
        KcpConfig {
            key: DEFAULT_KEY.to_string(),
            crypt: CryptKind::Aes,
            mode: Mode::Fast,
            mtu: 1350,
            snd_wnd: 128,
            rcv_wnd: 512,
            data_shards: 10,
            parity_shards: 3,
            compression: true,
            ack_nodelay: false,
            sockbuf: 4 << 20,
            dscp: 0,
            idle_timeout: Duration::from_secs(60),
            max_peers: 1024,
            accept_backlog: 128,
        }
    }
}

impl KcpConfig {
    /// kcptun-server's defaults: as [`KcpConfig::default`] with windows 1024/1024.
    pub fn kcptun_server() -> Self {
        KcpConfig {
            snd_wnd: 1024,
            rcv_wnd: 1024,
            ..KcpConfig::default()
        }
    }

    /// True if this end sends FEC.
    pub fn fec(&self) -> bool {
        self.data_shards > 0 && self.parity_shards > 0
    }

    /// Header bytes in front of the KCP segments of every datagram (crypt + FEC).
    pub fn reserved(&self) -> usize {
        crypt::HEADER_SIZE + if self.fec() { fec::HEADER_SIZE } else { 0 }
    }

    /// Checks every field; the error names the kcptun flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mtu > crypt::MTU_LIMIT {
            return Err(ConfigError::new(
                "mtu",
                "above 1500, kcp-go peers would truncate it",
            ));
        }
        if self.mtu < 50 + self.reserved() {
            return Err(ConfigError::new(
                "mtu",
                "too small: needs 50 bytes beyond the crypt and FEC headers",
            ));
        }
        if self.snd_wnd == 0 {
            return Err(ConfigError::new("sndwnd", "must be at least 1"));
        }
        if self.rcv_wnd == 0 {
            return Err(ConfigError::new("rcvwnd", "must be at least 1"));
        }
        if (self.data_shards == 0) != (self.parity_shards == 0) {
            return Err(ConfigError::new(
                "datashard",
                "datashard and parityshard must both be 0 (no FEC) or both positive",
            ));
        }
        if self.fec() && fec::Encoder::new(self.data_shards, self.parity_shards).is_err() {
            return Err(ConfigError::new(
                "parityshard",
                "shard counts must be at most 255 each and 256 together",
            ));
        }
        let (_, interval, _, _) = self.mode.profile();
        if !(10..=5000).contains(&interval) {
            return Err(ConfigError::new("interval", "must be 10..=5000 ms"));
        }
        if self.dscp > 63 {
            return Err(ConfigError::new(
                "dscp",
                "must be 0..=63 (a 6-bit DiffServ code point)",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new("idle_timeout", "must be positive"));
        }
        if self.max_peers == 0 || self.accept_backlog == 0 {
            return Err(ConfigError::new(
                "max_peers",
                "max_peers and accept_backlog must be positive",
            ));
        }
        Ok(())
    }

    /// The KCP core's parameters for this config.
    pub fn kcp_params(&self) -> kcp::Params {
        let (nodelay, interval, resend, no_congestion) = self.mode.profile();
        kcp::Params {
            nodelay,
            interval,
            resend,
            no_congestion,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd,
            mtu: self.mtu - self.reserved(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kcptuns() {
        let c = KcpConfig::default();
        c.validate().unwrap();
        assert_eq!(c.key, "it's a secrect");
        assert_eq!(c.crypt, CryptKind::Aes);
        assert_eq!((c.mtu, c.snd_wnd, c.rcv_wnd), (1350, 128, 512));
        assert_eq!((c.data_shards, c.parity_shards), (10, 3));
        assert!(c.compression);
        assert_eq!(c.kcp_params().mtu - kcp::OVERHEAD, 1298);
        let s = KcpConfig::kcptun_server();
        assert_eq!((s.snd_wnd, s.rcv_wnd), (1024, 1024));
        let nofec = KcpConfig {
            data_shards: 0,
            parity_shards: 0,
            ..c
        };
        assert_eq!(nofec.kcp_params().mtu - kcp::OVERHEAD, 1306);
    }

    #[test]
    fn modes() {
        assert_eq!(
            "normal".parse::<Mode>().unwrap().profile(),
            (false, 40, 2, true)
        );
        assert_eq!(
            "fast".parse::<Mode>().unwrap().profile(),
            (false, 30, 2, true)
        );
        assert_eq!(
            "fast2".parse::<Mode>().unwrap().profile(),
            (true, 20, 2, true)
        );
        assert_eq!(
            "fast3".parse::<Mode>().unwrap().profile(),
            (true, 10, 2, true)
        );
        assert_eq!("turbo".parse::<Mode>().unwrap_err().field, "mode");
    }

    #[test]
    fn bad_configs_name_the_flag() {
        let bad = |f: fn(&mut KcpConfig)| {
            let mut c = KcpConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.mtu = 1501), "mtu");
        assert_eq!(bad(|c| c.mtu = 60), "mtu");
        assert_eq!(bad(|c| c.snd_wnd = 0), "sndwnd");
        assert_eq!(bad(|c| c.rcv_wnd = 0), "rcvwnd");
        assert_eq!(bad(|c| c.parity_shards = 0), "datashard");
        assert_eq!(bad(|c| c.data_shards = 255), "parityshard");
        assert_eq!(
            bad(|c| {
                c.mode = Mode::Manual {
                    nodelay: false,
                    interval: 1,
                    resend: 0,
                    no_congestion: true,
                }
            }),
            "interval"
        );
        assert!(bad(|c| c.max_peers = 0).starts_with("max_peers"));
    }
}
