//! Forward error correction in kcp-go's format: Reed-Solomon over groups of datagrams.
//!
//! When the sender has `datashard > 0 && parityshard > 0`, every datagram's payload (after the
//! crypt header) starts with an 8-byte FEC header: seqid (u32 LE, one per datagram, data and
//! parity alike), type (u16 LE: `0xf1` data, `0xf2` parity) and, for data, a u16 size that
//! counts itself plus the KCP bytes that follow. Seqids `k·(d+p) .. k·(d+p)+d-1` are data, the
//! next `p` parity. Parity covers bytes `[6..]` of each data shard (size field + KCP bytes),
//! zero-padded to the longest data shard of the group. The code is klauspost/reedsolomon's
//! default (systematic Vandermonde, GF(2^8)), which `reed-solomon-erasure` reproduces exactly.
//!
//! Detection is per datagram: the u16 at offset 4 of a plain KCP datagram is `cmd + frg`
//! (81..84 + 0), never `0xf1`/`0xf2`, so FEC and plain datagrams can be told apart.
//!
//! The decoder groups shards by `seqid / (d+p)`, starting from its configured `d`/`p` and,
//! like kcp-go, learning the sender's from the pattern of data and parity seqids. It rebuilds
//! lost shards only once that pattern has confirmed the grouping (a few groups into a
//! connection); data shards are always delivered at once.
//! It keeps at most [`MAX_GROUPS`] incomplete groups: memory is bounded whatever arrives.

use std::collections::BTreeMap;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Bytes of FEC header before the payload: seqid (4) + type (2) + size (2).
pub const HEADER_SIZE: usize = 8;
/// Type of a data shard.
pub const TYPE_DATA: u16 = 0xf1;
/// Type of a parity shard.
pub const TYPE_PARITY: u16 = 0xf2;
/// Incomplete groups the decoder keeps before it forgets the oldest.
pub const MAX_GROUPS: usize = 4;

/// Bad FEC shard counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad FEC shard counts {data}+{parity}: need 1..=255 data, 1..=255 parity, sum <= 256")]
pub struct ShardError {
    /// Requested data shards.
    pub data: usize,
    /// Requested parity shards.
    pub parity: usize,
}

fn codec(data: usize, parity: usize) -> Result<ReedSolomon, ShardError> {
    ReedSolomon::new(data, parity).map_err(|_| ShardError { data, parity })
}

/// Reads the FEC type of a datagram payload (after the crypt header), if it has one.
pub fn shard_type(payload: &[u8]) -> Option<u16> {
    let t = u16::from_le_bytes(payload.get(4..6)?.try_into().ok()?);
    (t == TYPE_DATA || t == TYPE_PARITY).then_some(t)
}

/// Adds FEC headers to outgoing payloads and makes parity datagrams. Its buffers are reused
/// from group to group: encoding allocates nothing once they reached the MTU.
pub struct Encoder {
    rs: ReedSolomon,
    data: usize,
    parity: usize,
    next_seqid: u32,
    wrap: u32,
    /// Bytes `[6..]` of the data shards of the current group (the first `filled`).
    shards: Vec<Vec<u8>>,
    filled: usize,
    /// Parity payloads of the last completed group, headers included.
    parity_out: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fec::Encoder")
            .field("data", &self.data)
            .field("parity", &self.parity)
            .field("next_seqid", &self.next_seqid)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder for `data` data and `parity` parity shards per group.
    pub fn new(data: usize, parity: usize) -> Result<Self, ShardError> {
        let rs = codec(data, parity)?;
        let group = (data + parity) as u32;
        Ok(Encoder {
            rs,
            data,
            parity,
            next_seqid: 0,
            wrap: (u32::MAX / group) * group,
            shards: vec![Vec::new(); data],
            filled: 0,
            parity_out: vec![Vec::new(); parity],
        })
    }

    fn take_seqid(&mut self) -> u32 {
        let id = self.next_seqid;
        self.next_seqid = (self.next_seqid + 1) % self.wrap;
        id
    }

    /// Writes the header into `packet[..8]`, whose KCP bytes start at `packet[8..]`. Returns
    /// true when this completes a group: its parity payloads are then in
    /// [`Encoder::parity`].
    pub fn encode(&mut self, packet: &mut [u8]) -> bool {
        assert!(packet.len() >= HEADER_SIZE && packet.len() - 6 <= u16::MAX as usize);
        let seqid = self.take_seqid();
        packet[..4].copy_from_slice(&seqid.to_le_bytes());
        packet[4..6].copy_from_slice(&TYPE_DATA.to_le_bytes());
        let size = (packet.len() - 6) as u16;
        packet[6..8].copy_from_slice(&size.to_le_bytes());
        let shard = &mut self.shards[self.filled];
        shard.clear();
        shard.extend_from_slice(&packet[6..]);
        self.filled += 1;
        if self.filled < self.data {
            return false;
        }
        self.filled = 0;
        let len = self.shards.iter().map(Vec::len).max().unwrap_or(0);
        for s in &mut self.shards {
            s.resize(len, 0);
        }
        // Each parity payload is its header followed by the parity bytes.
        let mut parity = std::mem::take(&mut self.parity_out);
        for p in &mut parity {
            p.clear();
            p.resize(6 + len, 0);
            let seqid = self.take_seqid();
            p[..4].copy_from_slice(&seqid.to_le_bytes());
            p[4..6].copy_from_slice(&TYPE_PARITY.to_le_bytes());
        }
        let mut bodies: [&mut [u8]; 255] = std::array::from_fn(|_| Default::default());
        for (body, p) in bodies.iter_mut().zip(parity.iter_mut()) {
            *body = &mut p[6..];
        }
        self.rs
            .encode_sep(&self.shards, &mut bodies[..self.parity])
            .expect("equal shard lengths");
        self.parity_out = parity;
        true
    }

    /// The parity payloads (FEC header included) of the group the last
    /// [`Encoder::encode`] completed.
    pub fn parity(&self) -> impl Iterator<Item = &[u8]> {
        self.parity_out.iter().map(Vec::as_slice)
    }
}

struct Group {
    shards: Vec<Option<Vec<u8>>>,
    have: usize,
    done: bool,
}

/// What the decoder made of one FEC datagram.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The KCP bytes of the datagram itself, if it is a well-formed data shard.
    pub data: Option<&'a [u8]>,
    /// KCP bytes of data shards of the group that were lost and are now recovered.
    pub recovered: Vec<Vec<u8>>,
}

/// Strips FEC headers from received datagrams and recovers lost data shards.
pub struct Decoder {
    rs: ReedSolomon,
    data: usize,
    parity: usize,
    groups: BTreeMap<u32, Group>,
    /// The newest group id seen (ages are counted back from it, modulo the group-id space).
    newest: Option<u32>,
    mismatched: bool,
    confirmed: bool,
    tuner: Tuner,
    /// Emptied shard buffers and group tables, reused so that steady traffic allocates
    /// nothing (at most one table per group held and [`MAX_GROUPS`] groups' worth of shards).
    spare_shards: Vec<Vec<u8>>,
    spare_tables: Vec<Vec<Option<Vec<u8>>>>,
}

/// How many groups `group` lies behind `newest` in a group-id space of `space` ids (which
/// wraps to 0 after `space - 1`).
fn group_age(newest: u32, group: u32, space: u32) -> u32 {
    ((u64::from(newest) + u64::from(space) - u64::from(group)) % u64::from(space)) as u32
}

/// Shards remembered by the [`Tuner`].
const TUNER_WINDOW: usize = 64;
/// Group starts that must agree with the period before it is trusted.
const TUNER_CONFIRMATIONS: u32 = 2;

/// Learns the sender's shard counts from the pattern of data and parity seqids, as kcp-go's
/// decoder does (so the ends need not be configured alike).
///
/// Types are truthful, so a parity shard at `x-1` followed by a data shard at `x` marks a
/// group start (`x ≡ 0 mod d+p`) and a data shard followed by parity marks the first parity
/// (`x ≡ d`). The gcd of the distances between group starts is the group size once a few
/// starts agree; `d` is the offset of a first parity from a start.
#[derive(Debug)]
struct Tuner {
    /// Recently seen seqids: slot `seqid % TUNER_WINDOW` holds `(seqid, is parity)`.
    recent: [Option<(u32, bool)>; TUNER_WINDOW],
    last_start: Option<u32>,
    period: u32,
    confirmations: u32,
    parity_start: Option<u32>,
}

impl Default for Tuner {
    fn default() -> Self {
        Tuner {
            recent: [None; TUNER_WINDOW],
            last_start: None,
            period: 0,
            confirmations: 0,
            parity_start: None,
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Tuner {
    /// Records one shard; returns the sender's `(data, parity)` once confident.
    fn sample(&mut self, seqid: u32, parity: bool) -> Option<(usize, usize)> {
        if self.seen(seqid).is_some() {
            return None;
        }
        self.recent[seqid as usize % TUNER_WINDOW] = Some((seqid, parity));
        if let Some(before) = seqid.checked_sub(1).and_then(|s| self.seen(s)) {
            self.boundary(seqid, before, parity);
        }
        if let Some(after) = seqid.checked_add(1).and_then(|s| self.seen(s)) {
            self.boundary(seqid + 1, parity, after);
        }
        self.estimate()
    }

    /// Whether `seqid` was a parity shard, if it is among the recent ones.
    fn seen(&self, seqid: u32) -> Option<bool> {
        match self.recent[seqid as usize % TUNER_WINDOW] {
            Some((s, parity)) if s == seqid => Some(parity),
            _ => None,
        }
    }

    fn boundary(&mut self, at: u32, before_parity: bool, after_parity: bool) {
        match (before_parity, after_parity) {
            (true, false) => self.group_start(at),
            (false, true) => self.parity_start = Some(at),
            _ => {}
        }
    }

    fn group_start(&mut self, at: u32) {
        match self.last_start {
            Some(last) if at > last => {
                let g = if self.period == 0 {
                    at - last
                } else {
                    gcd(self.period, at - last)
                };
                if g == self.period {
                    self.confirmations += 1;
                } else {
                    self.period = g;
                    self.confirmations = 0;
                }
                self.last_start = Some(at);
            }
            // A late (reordered) start adds nothing new.
            Some(last) if last - at < u32::MAX / 2 => {}
            // First start, or the seqids wrapped: start over.
            _ => {
                self.last_start = Some(at);
                self.period = 0;
                self.confirmations = 0;
            }
        }
    }

    fn estimate(&self) -> Option<(usize, usize)> {
        if self.confirmations < TUNER_CONFIRMATIONS || !(2..=256).contains(&self.period) {
            return None;
        }
        let n = i64::from(self.period);
        let offset = i64::from(self.parity_start?) - i64::from(self.last_start?);
        let d = offset.rem_euclid(n) as usize;
        let n = n as usize;
        (d >= 1 && d < n).then_some((d, n - d))
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fec::Decoder")
            .field("data", &self.data)
            .field("parity", &self.parity)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// Parses a data shard's `[size][kcp bytes][padding]` body; `None` if the size is bad.
fn shard_body(body: &[u8]) -> Option<&[u8]> {
    let size = u16::from_le_bytes(body.get(..2)?.try_into().ok()?) as usize;
    if size < 2 || size > body.len() {
        return None;
    }
    Some(&body[2..size])
}

/// Keeps an emptied shard buffer in `spare`, up to [`MAX_GROUPS`] groups of `n` shards.
fn spare_shard(spare: &mut Vec<Vec<u8>>, n: usize, mut shard: Vec<u8>) {
    if spare.len() < MAX_GROUPS * n {
        shard.clear();
        spare.push(shard);
    }
}

impl Decoder {
    /// Keeps a forgotten group's table and shard buffers for reuse.
    fn recycle(&mut self, mut table: Vec<Option<Vec<u8>>>) {
        let n = self.data + self.parity;
        for shard in table.drain(..).flatten() {
            spare_shard(&mut self.spare_shards, n, shard);
        }
        if self.spare_tables.len() < MAX_GROUPS {
            self.spare_tables.push(table);
        }
    }

    /// A decoder for groups of `data` + `parity` shards.
    pub fn new(data: usize, parity: usize) -> Result<Self, ShardError> {
        Ok(Decoder {
            rs: codec(data, parity)?,
            data,
            parity,
            groups: BTreeMap::new(),
            newest: None,
            mismatched: false,
            confirmed: false,
            tuner: Tuner::default(),
            spare_shards: Vec::new(),
            spare_tables: Vec::new(),
        })
    }

    /// True once shards arrived that do not fit this decoder's shard counts (the peer uses
    /// other ones): recovery is off, data shards are still used, until the counts are learnt.
    pub fn mismatched(&self) -> bool {
        self.mismatched
    }

    /// The shard counts in use: the configured ones until the sender's are learnt.
    pub fn shards(&self) -> (usize, usize) {
        (self.data, self.parity)
    }

    /// Incomplete groups held (at most [`MAX_GROUPS`]).
    pub fn pending_groups(&self) -> usize {
        self.groups.len()
    }

    /// Takes one datagram payload that carries an FEC header (see [`shard_type`]).
    pub fn decode<'a>(&mut self, payload: &'a [u8]) -> Decoded<'a> {
        let mut out = Decoded::default();
        let Some(kind) = shard_type(payload) else {
            return out;
        };
        let seqid = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        let body = &payload[6..];
        if kind == TYPE_DATA {
            out.data = shard_body(body);
            if out.data.is_none() {
                return out;
            }
        }
        if let Some((d, p)) = self.tuner.sample(seqid, kind == TYPE_PARITY) {
            if (d, p) != (self.data, self.parity) {
                if let Ok(rs) = codec(d, p) {
                    (self.rs, self.data, self.parity) = (rs, d, p);
                    self.groups.clear();
                    self.newest = None;
                    self.mismatched = false;
                }
            }
            self.confirmed = (d, p) == (self.data, self.parity);
        }
        let n = self.data + self.parity;
        let group_id = seqid / n as u32;
        let index = (seqid % n as u32) as usize;
        // Data shards sit at 0..d, parity at d..n. A shard whose type contradicts its position
        // comes from a peer with other shard counts: from then on data shards are only
        // stripped, never rebuilt (rebuilding with the wrong grouping would make garbage).
        if (kind == TYPE_DATA) != (index < self.data) {
            self.mismatched = true;
            self.groups.clear();
            self.newest = None;
        }
        if self.mismatched || body.len() > u16::MAX as usize {
            return out;
        }
        // Seqids wrap at the last whole group below u32::MAX, so group ids run modulo
        // `space`: ages count back from the newest group in that space, not by value.
        let space = u32::MAX / n as u32;
        let newest = *self.newest.get_or_insert(group_id);
        if group_age(newest, group_id, space) > space / 2 {
            // Ahead of the newest (newer, or past the wrap).
            self.newest = Some(group_id);
        }
        let age = |g| group_age(self.newest.expect("set above"), g, space);
        if !self.groups.contains_key(&group_id) {
            if self.groups.len() >= MAX_GROUPS {
                let oldest = *self
                    .groups
                    .keys()
                    .max_by_key(|&&g| age(g))
                    .expect("non-empty");
                // A shard older than every group we hold is too late to help.
                if age(group_id) > age(oldest) {
                    return out;
                }
                if let Some(old) = self.groups.remove(&oldest) {
                    self.recycle(old.shards);
                }
            }
            let mut shards = self.spare_tables.pop().unwrap_or_default();
            shards.resize_with(n, || None);
            self.groups.insert(
                group_id,
                Group {
                    shards,
                    have: 0,
                    done: false,
                },
            );
        }
        let group = self.groups.get_mut(&group_id).expect("inserted");
        if group.done || group.shards[index].is_some() {
            return out;
        }
        let mut shard = self.spare_shards.pop().unwrap_or_default();
        shard.extend_from_slice(body);
        group.shards[index] = Some(shard);
        group.have += 1;
        let data_have = group.shards[..self.data]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if data_have == self.data {
            group.done = true;
            // Keep the (emptied) table until the group is forgotten; reuse the shards.
            for shard in group.shards.iter_mut().filter_map(Option::take) {
                spare_shard(&mut self.spare_shards, n, shard);
            }
            return out;
        }
        // Rebuild only once the sender's grouping is confirmed by the seqid pattern: with a
        // wrong grouping the "recovered" bytes are linear mixes of real shards, which keep the
        // bytes all shards share (conv, cmd) and so can pass for real segments. (kcp-go 5.6.1
        // does rebuild with a wrong grouping: fed FEC 10/3 while configured 5/2, kcptun-server
        // corrupts its stream.)
        if group.have < self.data || !self.confirmed {
            return out;
        }
        // Enough shards to rebuild the missing data ones: parity is as long as the longest
        // data shard, shorter data shards were zero-padded by the sender.
        group.done = true;
        let mut shards = std::mem::take(&mut group.shards);
        let Some(len) = shards[self.data..].iter().flatten().map(Vec::len).next() else {
            return out;
        };
        if shards.iter().flatten().any(|s| s.len() > len)
            || shards[self.data..].iter().flatten().any(|s| s.len() != len)
        {
            return out;
        }
        let missing: Vec<usize> = (0..self.data).filter(|&i| shards[i].is_none()).collect();
        for s in shards.iter_mut().flatten() {
            s.resize(len, 0);
        }
        if self.rs.reconstruct_data(&mut shards).is_err() {
            return out;
        }
        for i in missing {
            if let Some(kcp) = shards[i].as_deref().and_then(shard_body) {
                if !kcp.is_empty() {
                    out.recovered.push(kcp.to_vec());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(d: usize, p: usize, lens: &[usize]) -> Vec<Vec<u8>> {
        group_from(d, p, 0, lens)
    }

    /// Datagram payloads of an encoder whose first seqid is `first`, data shards of `lens`.
    fn group_from(d: usize, p: usize, first: u32, lens: &[usize]) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(d, p).unwrap();
        enc.next_seqid = first;
        let mut out = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let mut pkt = vec![0u8; HEADER_SIZE + len];
            for (j, b) in pkt[HEADER_SIZE..].iter_mut().enumerate() {
                *b = (i * 31 + j) as u8;
            }
            let mut parity = Vec::new();
            if enc.encode(&mut pkt) {
                parity.extend(enc.parity().map(<[u8]>::to_vec));
            }
            out.push(pkt);
            out.extend(parity);
        }
        out
    }

    #[test]
    fn header_layout() {
        let pkts = group(2, 1, &[3, 5]);
        assert_eq!(pkts.len(), 3);
        assert_eq!(&pkts[0][..8], &[0, 0, 0, 0, 0xf1, 0, 5, 0]);
        assert_eq!(&pkts[1][..8], &[1, 0, 0, 0, 0xf1, 0, 7, 0]);
        assert_eq!(&pkts[2][..6], &[2, 0, 0, 0, 0xf2, 0]);
        // Parity covers size + data, padded to the longest shard (2 + 5).
        assert_eq!(pkts[2].len(), 6 + 7);
        assert_eq!(shard_type(&pkts[2]), Some(TYPE_PARITY));
        assert_eq!(shard_type(&[0, 0, 0, 0, 81, 0]), None);
    }

    #[test]
    fn recovers_any_lost_data_shards_up_to_parity() {
        let (d, p) = (10, 3);
        let n = d + p;
        // Five whole groups confirm the grouping, the sixth loses shards.
        let lens: Vec<usize> = (0..6 * d).map(|i| 20 + (i % d) * 37 + i / d).collect();
        let pkts = group(d, p, &lens);
        assert_eq!(pkts.len(), 6 * n);
        for lost in [vec![0], vec![3, 9], vec![0, 1, 2], vec![9, 10, 12]] {
            let mut dec = Decoder::new(d, p).unwrap();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for (i, pkt) in pkts.iter().enumerate() {
                if i >= 5 * n && lost.contains(&(i - 5 * n)) {
                    continue;
                }
                let r = dec.decode(pkt);
                if i >= 5 * n {
                    if let Some(data) = r.data {
                        got.push(data.to_vec());
                    }
                }
                got.extend(r.recovered);
            }
            let mut want: Vec<Vec<u8>> = pkts[5 * n..5 * n + d]
                .iter()
                .map(|p| p[HEADER_SIZE..].to_vec())
                .collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "lost {lost:?}");
        }
    }

    #[test]
    fn seqids_wrap_and_recovery_goes_on_across_the_wrap() {
        let (d, p) = (10, 3);
        let n = d + p;
        let mut enc = Encoder::new(d, p).unwrap();
        // Six groups before the wrap point (kcp-go wraps at the last whole group below
        // u32::MAX), six after.
        enc.next_seqid = enc.wrap - 6 * n as u32;
        let mut pkts = Vec::new();
        for i in 0..12 * d {
            let mut pkt = vec![0u8; HEADER_SIZE + 30 + i % 5];
            pkt[HEADER_SIZE] = i as u8;
            let mut parity = Vec::new();
            if enc.encode(&mut pkt) {
                parity.extend(enc.parity().map(<[u8]>::to_vec));
            }
            pkts.push(pkt);
            pkts.extend(parity);
        }
        assert_eq!(
            u32::from_le_bytes(pkts[6 * n][..4].try_into().unwrap()),
            0,
            "the seventh group starts again at 0"
        );
        let mut dec = Decoder::new(d, p).unwrap();
        let mut recovered = 0;
        for (i, pkt) in pkts.iter().enumerate() {
            // From the sixth group on, lose the last data shard of every group.
            if i >= 5 * n && i % n == d - 1 {
                continue;
            }
            recovered += dec.decode(pkt).recovered.len();
        }
        assert_eq!(recovered, 7, "one group before the wrap, six after");
    }

    #[test]
    fn no_rebuild_before_the_grouping_is_confirmed() {
        let pkts = group(4, 2, &[5, 6, 7, 8]);
        let mut dec = Decoder::new(4, 2).unwrap();
        for pkt in &pkts[1..] {
            assert!(dec.decode(pkt).recovered.is_empty());
        }
    }

    #[test]
    fn too_many_losses_recover_nothing_and_memory_stays_bounded() {
        let (d, p) = (4, 2);
        let mut dec = Decoder::new(d, p).unwrap();
        let mut enc = Encoder::new(d, p).unwrap();
        for i in 0..10_000u32 {
            let mut pkt = vec![0u8; HEADER_SIZE + 10];
            pkt[8] = i as u8;
            let mut parity = Vec::new();
            if enc.encode(&mut pkt) {
                parity.extend(enc.parity().map(<[u8]>::to_vec));
            }
            // Lose every other data shard and all parity: nothing recoverable.
            if i % 2 == 0 {
                let r = dec.decode(&pkt);
                assert!(r.recovered.is_empty());
            }
            assert!(dec.pending_groups() <= MAX_GROUPS);
        }
    }

    #[test]
    fn other_shard_counts_turn_recovery_off_but_keep_data() {
        // Peer sends 5+2, we expect 10+3: the parity at seqid 5 sits where we expect data.
        let pkts = group(5, 2, &[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        let mut dec = Decoder::new(10, 3).unwrap();
        let mut data = 0;
        for (i, p) in pkts.iter().enumerate() {
            if i == 0 {
                continue; // lost
            }
            let r = dec.decode(p);
            assert!(r.recovered.is_empty());
            data += usize::from(r.data.is_some());
        }
        assert!(dec.mismatched());
        assert_eq!(data, 9);
    }

    #[test]
    fn learns_the_senders_shard_counts_and_then_recovers() {
        for (d, p) in [(5, 2), (3, 3), (20, 5), (1, 1)] {
            let lens: Vec<usize> = (0..d * 8).map(|i| 10 + i % 7).collect();
            let pkts = group(d, p, &lens);
            let mut dec = Decoder::new(10, 3).unwrap();
            let mut recovered = 0;
            for (i, pkt) in pkts.iter().enumerate() {
                // From the sixth group on, lose the last data shard of every group.
                if i >= 5 * (d + p) && i % (d + p) == d - 1 {
                    continue;
                }
                recovered += dec.decode(pkt).recovered.len();
            }
            assert_eq!(dec.shards(), (d, p));
            assert_eq!(recovered, 3, "{d}+{p}");
        }
    }

    #[test]
    fn learns_the_senders_shard_counts_across_the_seqid_wrap() {
        // The sender's seqids start two groups before its wrap point, so the tuner sees group
        // starts on both sides of the wrap and must start over at 0, then learn and recover.
        for (d, p) in [(5, 2), (3, 3)] {
            let n = d + p;
            let wrap = (u32::MAX / n as u32) * n as u32;
            let lens: Vec<usize> = (0..d * 10).map(|i| 10 + i % 7).collect();
            let pkts = group_from(d, p, wrap - 2 * n as u32, &lens);
            assert_eq!(u32::from_le_bytes(pkts[2 * n][..4].try_into().unwrap()), 0);
            let mut dec = Decoder::new(10, 3).unwrap();
            let mut recovered = 0;
            for (i, pkt) in pkts.iter().enumerate() {
                // From the seventh group on, lose the last data shard of every group.
                if i >= 6 * n && i % n == d - 1 {
                    continue;
                }
                recovered += dec.decode(pkt).recovered.len();
            }
            assert_eq!(dec.shards(), (d, p));
            assert_eq!(recovered, 4, "{d}+{p}");
        }
    }

    #[test]
    fn hostile_shards_never_panic() {
        let mut dec = Decoder::new(3, 2).unwrap();
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = (seed >> 8) as usize % 40;
            let mut pkt: Vec<u8> = (0..len).map(|i| (seed >> (i % 24)) as u8).collect();
            if len >= 6 {
                pkt[4] = if seed & 1 == 0 { 0xf1 } else { 0xf2 };
                pkt[5] = 0;
                pkt[0] = (seed >> 3) as u8 % 8;
                pkt[1..4].fill(0);
            }
            let _ = dec.decode(&pkt);
            assert!(dec.pending_groups() <= MAX_GROUPS);
        }
        // Size field larger than the shard, or below 2: no data.
        assert_eq!(dec.decode(&[9, 0, 0, 0, 0xf1, 0, 200, 0, 1]).data, None);
        assert_eq!(dec.decode(&[10, 0, 0, 0, 0xf1, 0, 1, 0, 1]).data, None);
        assert!(Encoder::new(0, 3).is_err());
        assert!(Decoder::new(200, 100).is_err());
    }
}
