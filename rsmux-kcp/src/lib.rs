//! # rsmux-kcp
//!
//! KCP transport for [rsmux](../rsmux/index.html) that speaks kcptun's wire format, so a Rust
//! program can be the client or the server end of a real kcptun tunnel. A separate crate:
//! rsmux over TCP pays nothing for it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use rsmux_kcp::{KcpConfig, KcpStream};
//!
//! // kcptun's defaults: key "it's a secrect", aes, fast, mtu 1350, FEC 10/3, snappy on.
//! let config = KcpConfig::default();
//! let kcp = KcpStream::connect("127.0.0.1:29900", &config).await?;
//! let mut smux = rsmux::Config::default();
//! smux.version = rsmux::Version::V1;
//! smux.max_receive_buffer = 4 << 20;
//! smux.max_stream_buffer = 2 << 20;
//! smux.keep_alive_interval = std::time::Duration::from_secs(10);
//! let session = rsmux::Session::client(kcp, smux)?;
//! let stream = session.open_stream().await?;
//! # drop(stream); Ok(()) }
//! ```
//!
//! ## Layers (outgoing order; incoming is the reverse)
//! smux frames → [`snappy`] framing (unless compression is off) → [`kcp`] segments (stream
//! mode) → [`fec`] header and parity datagrams (if data and parity shards are set) → [`crypt`]
//! nonce + CRC32 header and cipher → one UDP datagram of at most `mtu` bytes.
//! [`conn::Connection`] ties the packet layers together without IO; [`KcpStream`] and
//! [`KcpListener`] are the tokio driver.
//!
//! ## Why an own KCP core rather than the `kcp` crate
//! The `kcp` crate (0.6) has a workable shape (a sync core driven by `update(ms)`, output
//! through a `Write`, which would take our headers), but reading it decided against it:
//! - its sequence/clock arithmetic (`later as i32 - earlier as i32`, `rcv_nxt + rcv_wnd`) is
//!   not wrapping, so with overflow checks on (debug builds, tests) one forged datagram with
//!   an extreme `ts`, `sn` or `una` panics the connection task — and with `--crypt none`
//!   anyone can forge one; in release it silently wraps;
//! - it fills received segments with `unsafe { set_len }` over uninitialised memory;
//! - it forces a minimum receive window of 128 and cannot tell FEC-recovered input from
//!   regular input (kcp-go's `regular` flag: no window/RTT update from recovered shards).
//!
//! The own core ([`kcp::Kcp`], about 550 lines plus tests) follows the project's sans-IO style:
//! time is a `u32` ms input, segments in and out are plain byte slices, every comparison is
//! wrapping, no `unsafe`, and hostile input is an error value. Behaviour follows C KCP/kcp-go
//! (RTO estimation, fast retransmit, nodelay backoff, window probing); congestion control is
//! there but kcptun's profiles all switch it off.
//!
//! ## Compatibility notes
//! - Both ends must agree on key, crypt and compression (no negotiation exists).
//! - FEC: the decoder learns the sender's shard counts from the seqid pattern and rebuilds
//!   lost datagrams only once that pattern is confirmed. Still configure the same
//!   `--datashard/--parityshard` on both ends (or 0/0 on one): kcptun's kcp-go 5.6.1 rebuilds
//!   with its own counts and corrupts its stream when fed FEC of other counts (seen in the
//!   tests: kcptun-server logs "snappy: corrupt input" and drops the session).
//! - KCP has no close: a connection ends on the idle timeout, a dead link, or (client) when
//!   the stream is dropped and everything sent is acknowledged. Keep smux keepalive on.
//! - kcptun's crypt is unauthenticated (CFB + CRC32, fixed IV); see [`crypt`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod conn;
pub mod crypt;
pub mod fec;
pub mod kcp;
mod listener;
pub mod snappy;
mod stream;
mod tea;

pub use config::{ConfigError, KcpConfig, Mode};
pub use conn::{Datagrams, Stats};
pub use crypt::CryptKind;
pub use listener::{KcpListener, ListenerStats};
pub use stream::{KcpStream, StatsHandle};
