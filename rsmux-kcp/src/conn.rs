//! [`Connection`]: one KCP conversation with kcptun's packet layers, sans IO.
//!
//! Outgoing: KCP segments → FEC header (and parity datagrams) → nonce + CRC32 → cipher.
//! Incoming: the reverse, recovered FEC shards fed to KCP as irregular input. Datagrams go in
//! through [`Connection::handle_datagram`] and come out of [`Connection::take_transmits`]; the
//! clock is a `u32` millisecond count passed to every call that needs it.

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::config::KcpConfig;
use crate::crypt::{self, Crypt, OpenError};
use crate::fec;
use crate::kcp::{self, InputError, Kcp};

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received (before any check).
    pub datagrams_in: u64,
    /// Datagrams sent, parity included.
    pub datagrams_out: u64,
    /// Received datagrams dropped by the crypt layer (bad CRC, bad size).
    pub crypt_errors: u64,
    /// Received datagrams whose KCP segments were malformed or of another conversation.
    pub kcp_errors: u64,
    /// FEC parity datagrams sent.
    pub fec_parity_out: u64,
    /// Lost data datagrams rebuilt from FEC parity.
    pub fec_recovered: u64,
    /// Segments retransmitted after a timeout.
    pub retransmits: u64,
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Crypt header check failed.
    #[error(transparent)]
    Crypt(#[from] OpenError),
    /// KCP segments malformed or of another conversation.
    #[error(transparent)]
    Kcp(#[from] InputError),
}

/// Reads the conversation id a new peer's first datagram payload (already opened by
/// [`Crypt::open`]) announces, kcp-go's rule for creating a server session: a PUSH or ACK
/// segment, plain or inside an FEC data shard.
pub fn new_peer_conv(payload: &[u8]) -> Option<u32> {
    let kcp_bytes = match fec::shard_type(payload) {
        Some(fec::TYPE_DATA) => payload.get(fec::HEADER_SIZE..)?,
        Some(_) => return None,
        None => payload,
    };
    let conv = kcp::conv_of(kcp_bytes)?;
    matches!(kcp_bytes[4], 81 | 82).then_some(conv)
}

/// One KCP conversation over kcptun's crypt and FEC layers.
#[derive(Debug)]
pub struct Connection {
    kcp: Kcp,
    crypt: Crypt,
    fec_dec: fec::Decoder,
    ack_nodelay: bool,
    out: Output,
    stats: Stats,
}

/// The sending side below KCP: FEC parity, the crypt header, datagrams waiting to leave.
#[derive(Debug)]
struct Output {
    fec_enc: Option<fec::Encoder>,
    /// Header bytes in front of the KCP segments (crypt, and FEC if on).
    reserved: usize,
    rng: StdRng,
    transmits: Datagrams,
}

/// Datagrams stored back to back in one buffer, so that queueing one allocates nothing once
/// the buffer has grown to a flush's worth. [`Connection::take_transmits`] swaps two of them.
#[derive(Debug, Default)]
pub struct Datagrams {
    bytes: Vec<u8>,
    /// End offset of each datagram in `bytes`.
    ends: Vec<usize>,
}

impl Datagrams {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Removes every datagram, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The datagrams in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// Appends a datagram of `header` zero bytes followed by `body` and returns it, to have
    /// its header filled in (each byte is written once).
    fn push(&mut self, header: usize, body: &[u8]) -> &mut [u8] {
        let start = self.bytes.len();
        self.bytes.resize(start + header, 0);
        self.bytes.extend_from_slice(body);
        self.ends.push(self.bytes.len());
        &mut self.bytes[start..]
    }
}

impl Connection {
    /// A conversation `conv` with a validated `config` and its cipher.
    pub fn new(conv: u32, config: &KcpConfig, crypt: Crypt) -> Self {
        let (d, p) = (config.data_shards, config.parity_shards);
        let fec_enc = config
            .fec()
            .then(|| fec::Encoder::new(d, p).expect("validated"));
        // Like kcp-go, decode FEC whatever this end sends; the decoder learns the sender's
        // shard counts, so without our own it starts from kcptun's default guess.
        let (dd, dp) = if config.fec() { (d, p) } else { (10, 3) };
        let fec_dec = fec::Decoder::new(dd, dp).expect("valid");
        Connection {
            kcp: Kcp::new(conv, &config.kcp_params()),
            crypt,
            fec_dec,
            ack_nodelay: config.ack_nodelay,
            out: Output {
                fec_enc,
                reserved: config.reserved(),
                rng: StdRng::from_entropy(),
                transmits: Datagrams::new(),
            },
            stats: Stats::default(),
        }
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.kcp.conv()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            retransmits: self.kcp.retransmits(),
            ..self.stats
        }
    }

    /// The KCP core (read-only).
    pub fn kcp(&self) -> &Kcp {
        &self.kcp
    }

    /// Decrypts and checks a received datagram in place, then takes its segments.
    pub fn handle_datagram(&mut self, now: u32, datagram: &mut [u8]) -> Result<(), DropReason> {
        match self.crypt.open(datagram) {
            Ok(payload) => self.handle_payload(now, payload),
            Err(e) => {
                self.stats.datagrams_in += 1;
                self.stats.crypt_errors += 1;
                Err(e.into())
            }
        }
    }

    /// Takes the payload of a datagram that passed [`Crypt::open`] (counted as received).
    pub fn handle_payload(&mut self, now: u32, payload: &[u8]) -> Result<(), DropReason> {
        self.stats.datagrams_in += 1;
        self.kcp.set_now(now);
        let result = match fec::shard_type(payload) {
            None => self.kcp.input(payload, true),
            Some(_) => {
                let decoded = self.fec_dec.decode(payload);
                let mut result = Ok(());
                if let Some(data) = decoded.data {
                    result = self.kcp.input(data, true);
                }
                for shard in &decoded.recovered {
                    self.stats.fec_recovered += 1;
                    let _ = self.kcp.input(shard, false);
                }
                result
            }
        };
        if let Err(e) = result {
            self.stats.kcp_errors += 1;
            return Err(e.into());
        }
        if self.ack_nodelay && self.kcp.has_acks() || self.kcp.has_queued() {
            self.flush(now);
        }
        Ok(())
    }

    /// Advances the clock; flushes when an interval has passed.
    pub fn handle_timeout(&mut self, now: u32) {
        self.kcp.update(now, &mut |seg| {
            self.out.emit(seg, &self.crypt, &mut self.stats)
        });
    }

    /// Sends what is due now (new data, acks), whatever the interval.
    pub fn flush(&mut self, now: u32) {
        self.kcp.set_now(now);
        self.kcp
            .flush(&mut |seg| self.out.emit(seg, &self.crypt, &mut self.stats));
    }

    /// True if datagrams wait for [`Connection::take_transmits`].
    pub fn has_transmits(&self) -> bool {
        !self.out.transmits.is_empty()
    }

    /// Hands over the datagrams waiting to be sent: `into` (cleared first) and the queue swap
    /// places, so the buffers of both are reused and nothing is copied.
    pub fn take_transmits(&mut self, into: &mut Datagrams) {
        into.clear();
        std::mem::swap(into, &mut self.out.transmits);
    }

    /// Milliseconds from `now` until [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self, now: u32) -> u32 {
        self.kcp.check(now)
    }

    /// Queues application bytes; returns how many were taken (0: window full).
    pub fn send(&mut self, data: &[u8]) -> usize {
        self.kcp.send(data)
    }

    /// Bytes [`Connection::send`] would take now.
    pub fn send_capacity(&self) -> usize {
        self.kcp.send_capacity()
    }

    /// Copies received bytes into `buf`; returns how many (0: none ready).
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.kcp.recv(buf)
    }

    /// True if [`Connection::recv`] has bytes.
    pub fn readable(&self) -> bool {
        self.kcp.readable()
    }
}

impl Output {
    /// Turns KCP segments into a datagram (and FEC parity datagrams), sealed and queued;
    /// allocates nothing once the queue's buffer has grown.
    fn emit(&mut self, segments: &[u8], crypt: &Crypt, stats: &mut Stats) {
        let datagram = self.transmits.push(self.reserved, segments);
        let group_done = match &mut self.fec_enc {
            Some(enc) => enc.encode(&mut datagram[crypt::HEADER_SIZE..]),
            None => false,
        };
        crypt.seal(datagram, &mut self.rng);
        stats.datagrams_out += 1;
        if let (true, Some(enc)) = (group_done, &self.fec_enc) {
            for p in enc.parity() {
                let d = self.transmits.push(crypt::HEADER_SIZE, p);
                crypt.seal(d, &mut self.rng);
                stats.datagrams_out += 1;
                stats.fec_parity_out += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypt::CryptKind;

    fn pair(config: &KcpConfig) -> (Connection, Connection) {
        let c = Crypt::new(config.crypt, &config.key);
        (
            Connection::new(42, config, c.clone()),
            Connection::new(42, config, c),
        )
    }

    /// Moves datagrams both ways until `b` has received `want` bytes; `keep(n)` decides whether
    /// the n-th datagram survives.
    fn run(a: &mut Connection, b: &mut Connection, want: &[u8], mut keep: impl FnMut(u64) -> bool) {
        let mut sent = 0;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        let mut now = 1u32;
        let mut n = 0;
        let mut out = Datagrams::new();
        for _ in 0..100_000 {
            sent += a.send(&want[sent..]);
            a.flush(now);
            a.handle_timeout(now);
            b.handle_timeout(now);
            a.take_transmits(&mut out);
            for d in out.iter() {
                assert!(d.len() <= 1350);
                n += 1;
                if keep(n) {
                    let _ = b.handle_datagram(now, &mut d.to_vec());
                }
            }
            b.take_transmits(&mut out);
            for d in out.iter() {
                n += 1;
                if keep(n) {
                    let _ = a.handle_datagram(now, &mut d.to_vec());
                }
            }
            loop {
                let k = b.recv(&mut buf);
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            if got.len() == want.len() {
                break;
            }
            now += a.poll_timeout(now).min(b.poll_timeout(now)).max(1);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn layers_round_trip_for_every_cipher_with_and_without_fec() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for crypt in [
            CryptKind::None,
            CryptKind::Aes,
            CryptKind::Salsa20,
            CryptKind::Xor,
        ] {
            for (d, p) in [(0, 0), (10, 3)] {
                let config = KcpConfig {
                    crypt,
                    data_shards: d,
                    parity_shards: p,
                    ..KcpConfig::default()
                };
                let (mut a, mut b) = pair(&config);
                run(&mut a, &mut b, &data, |_| true);
                assert_eq!(b.stats().crypt_errors, 0);
                assert_eq!(a.stats().fec_parity_out > 0, d > 0);
            }
        }
    }

    #[test]
    fn fec_recovers_lost_datagrams() {
        let config = KcpConfig::default();
        let (mut a, mut b) = pair(&config);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13) as u8).collect();
        run(&mut a, &mut b, &data, |n| n % 17 != 5);
        assert!(b.stats().fec_recovered > 0, "{:?}", b.stats());
    }

    #[test]
    fn fec_from_a_peer_without_fec_configured_is_stripped() {
        let with = KcpConfig::default();
        let without = KcpConfig {
            data_shards: 0,
            parity_shards: 0,
            ..KcpConfig::default()
        };
        let c = Crypt::new(with.crypt, &with.key);
        let mut a = Connection::new(5, &with, c.clone());
        let mut b = Connection::new(5, &without, c);
        run(&mut a, &mut b, &[9u8; 50_000], |_| true);
    }

    #[test]
    fn new_peer_conv_rules() {
        let mut seg = vec![0u8; 24];
        seg[..4].copy_from_slice(&77u32.to_le_bytes());
        seg[4] = 81;
        assert_eq!(new_peer_conv(&seg), Some(77));
        seg[4] = 83;
        assert_eq!(new_peer_conv(&seg), None);
        seg[4] = 82;
        let mut shard = vec![0, 0, 0, 0, 0xf1, 0, 26, 0];
        shard.extend_from_slice(&seg);
        assert_eq!(new_peer_conv(&shard), Some(77));
        shard[4] = 0xf2;
        assert_eq!(new_peer_conv(&shard), None);
        assert_eq!(new_peer_conv(&[1, 2, 3]), None);
    }

    #[test]
    fn random_datagrams_with_valid_crc_never_panic() {
        // Past the crypt layer (crypt none, right CRC) with random FEC and KCP content: the
        // connection drops what is malformed and keeps bounded state.
        let config = KcpConfig {
            crypt: CryptKind::None,
            ..KcpConfig::default()
        };
        let crypt = Crypt::new(CryptKind::None, "k");
        let mut conn = Connection::new(3, &config, crypt.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut x = 99u64;
        for i in 0..20_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = 20 + (x >> 40) as usize % 200;
            let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
            let body = &mut d[crypt::HEADER_SIZE..];
            if body.len() >= 32 {
                match x % 4 {
                    // FEC header, seqids in a small range so groups fill up.
                    0 => {
                        body[..4].copy_from_slice(&((x >> 8) as u32 % 64).to_le_bytes());
                        body[4] = if x & 16 == 0 { 0xf1 } else { 0xf2 };
                        body[5] = 0;
                    }
                    // Our conversation, a real command.
                    1 => {
                        body[..4].copy_from_slice(&3u32.to_le_bytes());
                        body[4] = 81 + (x >> 3) as u8 % 4;
                    }
                    _ => {}
                }
            }
            crypt.seal(&mut d, &mut rng);
            let _ = conn.handle_datagram(i, &mut d);
            conn.handle_timeout(i);
            conn.take_transmits(&mut Datagrams::new());
            let mut buf = [0u8; 512];
            conn.recv(&mut buf);
        }
        assert!(conn.stats().kcp_errors > 0);
    }

    #[test]
    fn garbage_is_counted_and_dropped() {
        let (mut a, _) = pair(&KcpConfig::default());
        for len in [0, 5, 19, 20, 21, 100, 1400, 1600] {
            let mut d = vec![0xa5u8; len];
            assert!(a.handle_datagram(1, &mut d).is_err());
        }
        assert_eq!(a.stats().crypt_errors, 8);
    }
}
