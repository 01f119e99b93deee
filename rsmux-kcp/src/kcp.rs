//! A sans-IO KCP core in stream mode: segments in, segments out, time as an input.
//!
//! Same wire format as skywind3000/kcp and kcp-go: a 24-byte little-endian header
//! (`conv, cmd, frg, wnd, ts, sn, una, len`) and commands PUSH (81), ACK (82), WASK (83) and
//! WINS (84). Stream mode only (kcptun's setting): `frg` is always sent as 0, and received
//! bytes are one byte stream whatever their segment boundaries.
//!
//! Methods by kind: inputs ([`Kcp::input`] for received segments, [`Kcp::send`] for
//! application bytes, [`Kcp::update`] for the clock); outputs ([`Kcp::recv`] for application
//! bytes, [`Kcp::flush`] for datagrams, [`Kcp::check`] for the next deadline). Time is a `u32`
//! millisecond clock chosen by the caller; every comparison is wrapping, so it may wrap.
//! No input, however hostile, panics: a malformed datagram is an [`InputError`].

use std::collections::VecDeque;

use bytes::Buf;

/// Bytes of KCP segment header.
pub const OVERHEAD: usize = 24;

const CMD_PUSH: u8 = 81;
const CMD_ACK: u8 = 82;
const CMD_WASK: u8 = 83;
const CMD_WINS: u8 = 84;

const ASK_SEND: u8 = 1;
const ASK_TELL: u8 = 2;

const RTO_NODELAY_MIN: u32 = 30;
const RTO_MIN: u32 = 100;
const RTO_DEFAULT: u32 = 200;
const RTO_MAX: u32 = 60_000;
const PROBE_INIT: u32 = 7_000;
const PROBE_LIMIT: u32 = 120_000;
const FAST_ACK_LIMIT: u32 = 5;
const THRESH_INIT: u32 = 2;
const THRESH_MIN: u32 = 2;
/// Transmissions of one segment after which the link counts as dead.
pub const DEAD_LINK: u32 = 20;
/// Period (ms) after which spare segment buffers that went unused are released.
const SPARE_TRIM_INTERVAL: u32 = 1_000;

/// Signed distance `later - earlier` on a wrapping u32 clock or sequence space.
fn diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// Tuning of one KCP endpoint (kcptun's `--mode` profile plus window sizes and MTU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Lower minimum RTO (30 ms instead of 100) and gentler backoff.
    pub nodelay: bool,
    /// Flush interval in ms (clamped to 10..=5000).
    pub interval: u32,
    /// Fast retransmit after this many later segments were acked (0 = off).
    pub resend: u32,
    /// Congestion control off.
    pub no_congestion: bool,
    /// Send window in segments.
    pub snd_wnd: u16,
    /// Receive window in segments (advertised to the peer).
    pub rcv_wnd: u16,
    /// Bytes available for KCP segments in one datagram (UDP MTU minus crypt/FEC headers).
    pub mtu: usize,
}

/// Why [`Kcp::input`] stopped reading a datagram. Segments before the bad one were used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Shorter than one segment header.
    #[error("datagram shorter than a KCP header")]
    TooShort,
    /// A segment of another conversation.
    #[error("segment of conversation {0:#x}, not ours")]
    OtherConv(u32),
    /// A segment whose length runs past the datagram.
    #[error("segment length past the end of the datagram")]
    Truncated,
    /// An unknown command byte.
    #[error("unknown KCP command {0}")]
    BadCommand(u8),
}

struct SendSeg {
    sn: u32,
    ts: u32,
    resend_at: u32,
    rto: u32,
    fast_ack: u32,
    xmit: u32,
    data: Vec<u8>,
}

/// Reads the conversation id of a datagram's first segment.
pub fn conv_of(datagram: &[u8]) -> Option<u32> {
    (datagram.len() >= OVERHEAD).then(|| u32::from_le_bytes(datagram[..4].try_into().expect("4")))
}

/// One KCP endpoint.
pub struct Kcp {
    conv: u32,
    mtu: usize,
    mss: usize,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    ssthresh: u32,
    cwnd: u32,
    incr: usize,
    rmt_wnd: u32,
    snd_wnd: u32,
    rcv_wnd: u32,
    srtt: u32,
    rttvar: u32,
    rto: u32,
    min_rto: u32,
    interval: u32,
    ts_flush: u32,
    updated: bool,
    current: u32,
    nodelay: bool,
    fast_resend: u32,
    no_cwnd: bool,
    probe: u8,
    ts_probe: u32,
    probe_wait: u32,
    dead: bool,
    retransmits: u64,
    /// Application bytes not yet given a sequence number, in segments of at most `mss`.
    snd_queue: VecDeque<Vec<u8>>,
    /// Sent, unacknowledged segments in sn order.
    snd_buf: VecDeque<SendSeg>,
    /// Out-of-order receive slots: index `i` holds sn `rcv_nxt + i`.
    rcv_buf: VecDeque<Option<Vec<u8>>>,
    /// In-order received segments for the application.
    rcv_queue: VecDeque<Vec<u8>>,
    /// Bytes of `rcv_queue`'s front segment already read.
    rcv_read: usize,
    acklist: Vec<(u32, u32)>,
    out: Vec<u8>,
    /// Emptied segment buffers, reused so that steady traffic allocates nothing. At most
    /// what the windows held at once; those not drawn on for [`SPARE_TRIM_INTERVAL`] are
    /// released, so an idle connection keeps none.
    spare: Vec<Vec<u8>>,
    /// Fewest spare buffers there were since the last trim (those were not needed).
    spare_low: usize,
    /// When the next trim is due.
    spare_trim_at: u32,
}

impl std::fmt::Debug for Kcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kcp")
            .field("conv", &self.conv)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .field("rto", &self.rto)
            .finish_non_exhaustive()
    }
}

impl Kcp {
    /// Test hook: both ends of a conversation act as if `base` segments had already passed
    /// (so a test can drive the sequence numbers past their wrap point in seconds).
    #[cfg(test)]
    fn start_sequences_at(&mut self, base: u32) {
        self.snd_una = base;
        self.snd_nxt = base;
        self.rcv_nxt = base;
    }

    /// An endpoint of conversation `conv`. Panics if `params.mtu` cannot hold a header and a
    /// byte of data (config validation rules that out first).
    pub fn new(conv: u32, params: &Params) -> Self {
        assert!(params.mtu > OVERHEAD, "KCP mtu too small");
        Kcp {
            conv,
            mtu: params.mtu,
            mss: params.mtu - OVERHEAD,
            snd_una: 0,
            snd_nxt: 0,
            rcv_nxt: 0,
            ssthresh: THRESH_INIT,
            cwnd: 0,
            incr: 0,
            // Until the peer tells us, assume kcp-go's default receive window.
            rmt_wnd: 32,
            snd_wnd: u32::from(params.snd_wnd.max(1)),
            rcv_wnd: u32::from(params.rcv_wnd.max(1)),
            srtt: 0,
            rttvar: 0,
            rto: RTO_DEFAULT,
            min_rto: if params.nodelay {
                RTO_NODELAY_MIN
            } else {
                RTO_MIN
            },
            interval: params.interval.clamp(10, 5000),
            ts_flush: 0,
            updated: false,
            current: 0,
            nodelay: params.nodelay,
            fast_resend: params.resend,
            no_cwnd: params.no_congestion,
            probe: 0,
            ts_probe: 0,
            probe_wait: 0,
            dead: false,
            retransmits: 0,
            snd_queue: VecDeque::new(),
            snd_buf: VecDeque::new(),
            rcv_buf: VecDeque::new(),
            rcv_queue: VecDeque::new(),
            rcv_read: 0,
            acklist: Vec::new(),
            out: Vec::with_capacity(params.mtu),
            spare: Vec::new(),
            spare_low: 0,
            spare_trim_at: 0,
        }
    }

    /// An empty segment buffer, reused if one is spare.
    fn take_buffer(&mut self) -> Vec<u8> {
        match self.spare.pop() {
            Some(buffer) => {
                self.spare_low = self.spare_low.min(self.spare.len());
                buffer
            }
            None => {
                self.spare_low = 0;
                Vec::with_capacity(self.mss)
            }
        }
    }

    /// Keeps an emptied segment buffer for reuse.
    fn recycle(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.spare.push(buffer);
    }

    /// Releases the spare buffers no take drew on since the last trim.
    fn trim_spare(&mut self) {
        if diff(self.current, self.spare_trim_at) < 0 {
            return;
        }
        self.spare
            .truncate(self.spare.len() - self.spare_low.min(self.spare.len()));
        if self.spare.is_empty() {
            self.spare = Vec::new();
        }
        self.spare_low = self.spare.len();
        self.spare_trim_at = self.current.wrapping_add(SPARE_TRIM_INTERVAL);
    }

    /// Spare segment buffers held for reuse (for tests of the memory bound).
    pub fn spare_buffers(&self) -> usize {
        self.spare.len()
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.conv
    }

    /// Maximum payload bytes per segment.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Segments queued or in flight.
    pub fn wait_snd(&self) -> usize {
        self.snd_queue.len() + self.snd_buf.len()
    }

    /// True once a segment was sent [`DEAD_LINK`] times without an ack.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Segments sent again after a timeout.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// Bytes [`Kcp::send`] would take now: the send window minus what is queued or in flight.
    pub fn send_capacity(&self) -> usize {
        let free = (self.snd_wnd as usize).saturating_sub(self.wait_snd()) * self.mss;
        let tail = self.snd_queue.back().map_or(0, |s| self.mss - s.len());
        free + tail
    }

    /// Queues application bytes; returns how many were taken (0 when the window is full).
    pub fn send(&mut self, mut data: &[u8]) -> usize {
        let mut taken = 0;
        if let Some(last) = self.snd_queue.back_mut() {
            let n = (self.mss - last.len()).min(data.len());
            last.extend_from_slice(&data[..n]);
            data = &data[n..];
            taken += n;
        }
        while !data.is_empty() && self.wait_snd() < self.snd_wnd as usize {
            let n = self.mss.min(data.len());
            let mut seg = self.take_buffer();
            seg.extend_from_slice(&data[..n]);
            self.snd_queue.push_back(seg);
            data = &data[n..];
            taken += n;
        }
        taken
    }

    /// True if received bytes are ready for [`Kcp::recv`].
    pub fn readable(&self) -> bool {
        !self.rcv_queue.is_empty()
    }

    /// True if segments are waiting for the window (a flush may send them now).
    pub fn has_queued(&self) -> bool {
        !self.snd_queue.is_empty()
    }

    /// True if acknowledgements are waiting for the next flush.
    pub fn has_acks(&self) -> bool {
        !self.acklist.is_empty()
    }

    /// Copies received bytes into `buf`; returns how many (0 if none are ready).
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let was_full = self.rcv_queue.len() >= self.rcv_wnd as usize;
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.rcv_queue.front() else {
                break;
            };
            let unread = &front[self.rcv_read..];
            let k = unread.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&unread[..k]);
            self.rcv_read += k;
            n += k;
            if self.rcv_read == front.len() {
                self.rcv_read = 0;
                let seg = self.rcv_queue.pop_front().expect("front exists");
                self.recycle(seg);
            }
        }
        self.move_buf();
        if was_full && self.rcv_queue.len() < self.rcv_wnd as usize {
            // Tell the peer the window opened again.
            self.probe |= ASK_TELL;
        }
        n
    }

    fn move_buf(&mut self) {
        while self.rcv_queue.len() < self.rcv_wnd as usize {
            match self.rcv_buf.front() {
                Some(Some(_)) => {
                    let seg = self.rcv_buf.pop_front().flatten().expect("checked");
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    if seg.is_empty() {
                        self.recycle(seg);
                    } else {
                        self.rcv_queue.push_back(seg);
                    }
                }
                _ => break,
            }
        }
    }

    fn wnd_unused(&self) -> u16 {
        self.rcv_wnd
            .saturating_sub(self.rcv_queue.len() as u32)
            .min(u16::MAX as u32) as u16
    }

    fn update_rtt(&mut self, rtt: u32) {
        let rtt = rtt.min(RTO_MAX);
        if self.srtt == 0 {
            self.srtt = rtt.max(1);
            self.rttvar = rtt / 2;
        } else {
            let delta = rtt.abs_diff(self.srtt);
            self.rttvar = (3 * self.rttvar + delta) / 4;
            self.srtt = ((7 * self.srtt + rtt) / 8).max(1);
        }
        let rto = self.srtt + self.interval.max(4 * self.rttvar);
        self.rto = rto.clamp(self.min_rto, RTO_MAX);
    }

    fn shrink_buf(&mut self) {
        self.snd_una = self.snd_buf.front().map_or(self.snd_nxt, |s| s.sn);
    }

    fn parse_una(&mut self, una: u32) {
        while self.snd_buf.front().is_some_and(|s| diff(una, s.sn) > 0) {
            let seg = self.snd_buf.pop_front().expect("front exists");
            self.recycle(seg.data);
        }
    }

    fn parse_ack(&mut self, sn: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        if let Ok(i) = self.snd_buf.binary_search_by(|s| diff(s.sn, sn).cmp(&0)) {
            if let Some(seg) = self.snd_buf.remove(i) {
                self.recycle(seg.data);
            }
        }
    }

    fn parse_fast_ack(&mut self, sn: u32, ts: u32) {
        if diff(sn, self.snd_una) < 0 || diff(sn, self.snd_nxt) >= 0 {
            return;
        }
        for seg in &mut self.snd_buf {
            if diff(sn, seg.sn) < 0 {
                break;
            }
            if sn != seg.sn && diff(ts, seg.ts) >= 0 {
                seg.fast_ack += 1;
            }
        }
    }

    fn parse_data(&mut self, sn: u32, data: &[u8]) {
        let offset = diff(sn, self.rcv_nxt);
        if offset < 0 || offset as u32 >= self.rcv_wnd {
            return;
        }
        let i = offset as usize;
        if self.rcv_buf.len() <= i {
            self.rcv_buf.resize_with(i + 1, || None);
        }
        if self.rcv_buf[i].is_none() {
            let mut seg = self.take_buffer();
            seg.extend_from_slice(data);
            self.rcv_buf[i] = Some(seg);
        }
        self.move_buf();
    }

    /// Takes the segments of one received datagram. `regular` is false for data recovered by
    /// FEC: it updates neither the peer's window nor the RTT estimate.
    pub fn input(&mut self, mut data: &[u8], regular: bool) -> Result<(), InputError> {
        if data.len() < OVERHEAD {
            return Err(InputError::TooShort);
        }
        let old_una = self.snd_una;
        let mut max_ack: Option<(u32, u32)> = None;
        while data.len() >= OVERHEAD {
            let conv = data.get_u32_le();
            if conv != self.conv {
                return Err(InputError::OtherConv(conv));
            }
            let cmd = data.get_u8();
            let _frg = data.get_u8();
            let wnd = data.get_u16_le();
            let ts = data.get_u32_le();
            let sn = data.get_u32_le();
            let una = data.get_u32_le();
            let len = data.get_u32_le() as usize;
            if data.len() < len {
                return Err(InputError::Truncated);
            }
            let payload = &data[..len];
            data = &data[len..];
            if !(CMD_PUSH..=CMD_WINS).contains(&cmd) {
                return Err(InputError::BadCommand(cmd));
            }
            if regular {
                self.rmt_wnd = u32::from(wnd);
            }
            self.parse_una(una);
            self.shrink_buf();
            match cmd {
                CMD_ACK => {
                    if regular {
                        let rtt = diff(self.current, ts);
                        if rtt >= 0 {
                            self.update_rtt(rtt as u32);
                        }
                    }
                    self.parse_ack(sn);
                    self.shrink_buf();
                    match max_ack {
                        Some((m, _)) if diff(sn, m) <= 0 => {}
                        _ => max_ack = Some((sn, ts)),
                    }
                }
                CMD_PUSH if diff(sn, self.rcv_nxt.wrapping_add(self.rcv_wnd)) < 0 => {
                    // Ack also what we already have, so the sender stops resending it.
                    self.acklist.push((sn, ts));
                    self.parse_data(sn, payload);
                }
                CMD_WASK => self.probe |= ASK_TELL,
                // WINS, or a PUSH beyond the window: the header's window was taken above.
                _ => {}
            }
        }
        if let Some((sn, ts)) = max_ack {
            self.parse_fast_ack(sn, ts);
        }
        if diff(self.snd_una, old_una) > 0 && self.cwnd < self.rmt_wnd {
            let mss = self.mss;
            if self.cwnd < self.ssthresh {
                self.cwnd += 1;
                self.incr += mss;
            } else {
                self.incr = self.incr.max(mss);
                self.incr += mss * mss / self.incr + mss / 16;
                if (self.cwnd as usize + 1) * mss <= self.incr {
                    self.cwnd = self.incr.div_ceil(mss) as u32;
                }
            }
            if self.cwnd > self.rmt_wnd {
                self.cwnd = self.rmt_wnd;
                self.incr = self.rmt_wnd as usize * mss;
            }
        }
        Ok(())
    }

    fn put_segment(
        out: &mut Vec<u8>,
        mtu: usize,
        emit: &mut impl FnMut(&[u8]),
        head: [u32; 6],
        data: &[u8],
    ) {
        let [conv, cmd_wnd, ts, sn, una, _] = head;
        if !out.is_empty() && out.len() + OVERHEAD + data.len() > mtu {
            emit(out);
            out.clear();
        }
        out.extend_from_slice(&conv.to_le_bytes());
        out.push(cmd_wnd as u8);
        out.push(0);
        out.extend_from_slice(&((cmd_wnd >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&sn.to_le_bytes());
        out.extend_from_slice(&una.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }

    /// Sends what is due: acks, window probes, new data within the window, retransmissions.
    /// Each datagram's worth of segments (at most `mtu` bytes) goes to `emit`.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mtu = self.mtu;
        let wnd = u32::from(self.wnd_unused());
        let (conv, una) = (self.conv, self.rcv_nxt);
        let cmd_wnd = |cmd: u8| u32::from(cmd) | (wnd << 16);
        for &(sn, ts) in &self.acklist {
            Self::put_segment(
                &mut out,
                mtu,
                emit,
                [conv, cmd_wnd(CMD_ACK), ts, sn, una, 0],
                &[],
            );
        }
        self.acklist.clear();

        if self.rmt_wnd == 0 {
            if self.probe_wait == 0 {
                self.probe_wait = PROBE_INIT;
                self.ts_probe = self.current.wrapping_add(self.probe_wait);
            } else if diff(self.current, self.ts_probe) >= 0 {
                self.probe_wait = self.probe_wait.max(PROBE_INIT);
                self.probe_wait = (self.probe_wait + self.probe_wait / 2).min(PROBE_LIMIT);
                self.ts_probe = self.current.wrapping_add(self.probe_wait);
                self.probe |= ASK_SEND;
            }
        } else {
            self.ts_probe = 0;
            self.probe_wait = 0;
        }
        if self.probe & ASK_SEND != 0 {
            Self::put_segment(
                &mut out,
                mtu,
                emit,
                [conv, cmd_wnd(CMD_WASK), 0, 0, una, 0],
                &[],
            );
        }
        if self.probe & ASK_TELL != 0 {
            Self::put_segment(
                &mut out,
                mtu,
                emit,
                [conv, cmd_wnd(CMD_WINS), 0, 0, una, 0],
                &[],
            );
        }
        self.probe = 0;

        let mut cwnd = self.snd_wnd.min(self.rmt_wnd);
        if !self.no_cwnd {
            cwnd = cwnd.min(self.cwnd);
        }
        while diff(self.snd_nxt, self.snd_una.wrapping_add(cwnd)) < 0 {
            let Some(data) = self.snd_queue.pop_front() else {
                break;
            };
            self.snd_buf.push_back(SendSeg {
                sn: self.snd_nxt,
                ts: self.current,
                resend_at: self.current,
                rto: self.rto,
                fast_ack: 0,
                xmit: 0,
                data,
            });
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
        }

        let resent = if self.fast_resend > 0 {
            self.fast_resend
        } else {
            u32::MAX
        };
        let rto_min = if self.nodelay { 0 } else { self.rto >> 3 };
        let (mut lost, mut changed) = (false, false);
        let current = self.current;
        for seg in &mut self.snd_buf {
            let send = if seg.xmit == 0 {
                seg.rto = self.rto;
                seg.resend_at = current.wrapping_add(seg.rto + rto_min);
                true
            } else if diff(current, seg.resend_at) >= 0 {
                let step = if self.nodelay {
                    seg.rto / 2
                } else {
                    seg.rto.max(self.rto)
                };
                seg.rto = (seg.rto + step).min(RTO_MAX);
                seg.resend_at = current.wrapping_add(seg.rto);
                self.retransmits += 1;
                lost = true;
                true
            } else if seg.fast_ack >= resent && seg.xmit <= FAST_ACK_LIMIT {
                seg.fast_ack = 0;
                seg.resend_at = current.wrapping_add(seg.rto);
                changed = true;
                true
            } else {
                false
            };
            if send {
                seg.xmit += 1;
                seg.ts = current;
                Self::put_segment(
                    &mut out,
                    mtu,
                    emit,
                    [conv, cmd_wnd(CMD_PUSH), seg.ts, seg.sn, una, 0],
                    &seg.data,
                );
                if seg.xmit >= DEAD_LINK {
                    self.dead = true;
                }
            }
        }
        if !out.is_empty() {
            emit(&out);
            out.clear();
        }
        self.out = out;

        if changed {
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            self.ssthresh = (inflight / 2).max(THRESH_MIN);
            self.cwnd = self.ssthresh + resent.min(1 << 16);
            self.incr = self.cwnd as usize * self.mss;
        }
        if lost {
            self.ssthresh = (cwnd / 2).max(THRESH_MIN);
            self.cwnd = 1;
            self.incr = self.mss;
        }
        if self.cwnd < 1 {
            self.cwnd = 1;
            self.incr = self.mss;
        }
    }

    /// Advances the clock to `now` (ms) and flushes if an interval has passed.
    pub fn update(&mut self, now: u32, emit: &mut impl FnMut(&[u8])) {
        self.current = now;
        if !self.updated {
            self.updated = true;
            self.ts_flush = now;
            self.spare_trim_at = now.wrapping_add(SPARE_TRIM_INTERVAL);
        }
        self.trim_spare();
        let mut slap = diff(now, self.ts_flush);
        if !(-10_000..10_000).contains(&slap) {
            self.ts_flush = now;
            slap = 0;
        }
        if slap >= 0 {
            self.ts_flush = self.ts_flush.wrapping_add(self.interval);
            if diff(now, self.ts_flush) >= 0 {
                self.ts_flush = now.wrapping_add(self.interval);
            }
            self.flush(emit);
        }
    }

    /// Sets the clock without flushing (before [`Kcp::input`] or [`Kcp::flush`]).
    pub fn set_now(&mut self, now: u32) {
        self.current = now;
    }

    /// Milliseconds from `now` until [`Kcp::update`] has work (0 = now): the next flush tick.
    ///
    /// Unlike C KCP's `ikcp_check` this does not answer "now" for a retransmission that is due
    /// between ticks: `update` only sends at ticks, so that answer made callers spin until the
    /// tick came.
    pub fn check(&self, now: u32) -> u32 {
        if !self.updated {
            return 0;
        }
        let until = diff(self.ts_flush, now);
        if !(-10_000..10_000).contains(&until) || until <= 0 {
            return 0;
        }
        (until as u32).min(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            nodelay: false,
            interval: 30,
            resend: 2,
            no_congestion: true,
            snd_wnd: 64,
            rcv_wnd: 64,
            mtu: 1350 - 28,
        }
    }

    /// Runs two endpoints against each other through `link` (which may drop datagrams).
    fn transfer(size: usize, link: impl FnMut(u64) -> bool, start: u32) -> (Vec<u8>, Vec<u8>, u64) {
        transfer_from(size, link, start, 0)
    }

    /// [`transfer`] with both ends' sequence numbers starting at `seq`.
    fn transfer_from(
        size: usize,
        mut link: impl FnMut(u64) -> bool,
        start: u32,
        seq: u32,
    ) -> (Vec<u8>, Vec<u8>, u64) {
        let mut a = Kcp::new(7, &params());
        let mut b = Kcp::new(7, &params());
        a.start_sequences_at(seq);
        b.start_sequences_at(seq);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut now = start;
        let mut n = 0u64;
        let mut buf = vec![0u8; 4096];
        for _ in 0..200_000 {
            sent += a.send(&data[sent..]);
            let mut to_b = Vec::new();
            let mut to_a = Vec::new();
            a.update(now, &mut |d| to_b.push(d.to_vec()));
            b.update(now, &mut |d| to_a.push(d.to_vec()));
            for d in to_b {
                n += 1;
                if link(n) {
                    b.set_now(now);
                    b.input(&d, true).unwrap();
                }
            }
            for d in to_a {
                n += 1;
                if link(n) {
                    a.set_now(now);
                    a.input(&d, true).unwrap();
                }
            }
            loop {
                let k = b.recv(&mut buf);
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            if got.len() == size {
                break;
            }
            now = now.wrapping_add(a.check(now).min(b.check(now)).max(1));
        }
        (data, got, a.retransmits())
    }

    #[test]
    fn lossless_transfer_is_exact() {
        let (want, got, rtx) = transfer(300_000, |_| true, 0);
        assert_eq!(got, want);
        assert_eq!(rtx, 0);
    }

    #[test]
    fn lossy_transfer_is_exact_and_clock_may_wrap() {
        let (want, got, rtx) = transfer(200_000, |n| n % 7 != 3, u32::MAX - 5_000);
        assert_eq!(got, want);
        assert!(rtx > 0);
    }

    #[test]
    fn sequence_numbers_wrap_with_and_without_loss() {
        // 200 KB is about 150 segments: started 50 below the top, they pass u32::MAX.
        for start in [u32::MAX - 100, u32::MAX - 50, u32::MAX] {
            let (want, got, _) = transfer_from(200_000, |_| true, 0, start);
            assert_eq!(got, want, "lossless from {start}");
            let (want, got, rtx) = transfer_from(200_000, |n| n % 7 != 3, 1_000, start);
            assert_eq!(got, want, "lossy from {start}");
            assert!(rtx > 0);
        }
    }

    #[test]
    fn segment_layout_and_window_advertised() {
        let mut a = Kcp::new(0x0102_0304, &params());
        a.set_now(5);
        assert_eq!(a.send(b"hello"), 5);
        let mut out = Vec::new();
        a.flush(&mut |d| out.push(d.to_vec()));
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.len(), OVERHEAD + 5);
        assert_eq!(&d[..4], &[4, 3, 2, 1]);
        assert_eq!(d[4], CMD_PUSH);
        assert_eq!(d[5], 0);
        assert_eq!(u16::from_le_bytes([d[6], d[7]]), 64);
        assert_eq!(u32::from_le_bytes(d[8..12].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(d[12..16].try_into().unwrap()), 0);
        assert_eq!(u32::from_le_bytes(d[20..24].try_into().unwrap()), 5);
        assert_eq!(&d[24..], b"hello");
    }

    #[test]
    fn check_waits_for_the_next_tick_even_with_retransmissions_due() {
        let mut a = Kcp::new(1, &params());
        a.send(&[1; 100]);
        let mut sent = 0;
        for now in (0..2_000).step_by(30) {
            a.update(now, &mut |_| sent += 1);
            // Between ticks there is nothing to do, whatever is due.
            for t in now + 1..now + 30 {
                assert_eq!(a.check(t), now + 30 - t, "at {t}");
            }
        }
        assert!(a.retransmits() > 0 && sent > 1);
    }

    #[test]
    fn segment_buffers_are_reused_and_released_when_idle() {
        // From 0, and with the clock wrapping during the idle part (trims are due by `diff`).
        for start in [0, u32::MAX - 2_500] {
            buffers_reused_and_released(start);
        }
    }

    fn buffers_reused_and_released(start: u32) {
        let mut a = Kcp::new(3, &params());
        let mut b = Kcp::new(3, &params());
        let mut buf = vec![0u8; 64 * 1024];
        let mut now = start;
        let mut step = |a: &mut Kcp, b: &mut Kcp, now: u32| {
            let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
            a.update(now, &mut |d| to_b.push(d.to_vec()));
            b.update(now, &mut |d| to_a.push(d.to_vec()));
            for d in to_b {
                b.set_now(now);
                b.input(&d, true).unwrap();
            }
            for d in to_a {
                a.set_now(now);
                a.input(&d, true).unwrap();
            }
            while b.recv(&mut buf) > 0 {}
        };
        for _ in 0..200 {
            a.send(&[7u8; 20_000]);
            step(&mut a, &mut b, now);
            now = now.wrapping_add(10);
        }
        // Acked and read segments went back to the pools.
        assert!(a.spare_buffers() > 0 && b.spare_buffers() > 0);
        for _ in 0..300 {
            step(&mut a, &mut b, now);
            now = now.wrapping_add(10);
        }
        assert_eq!(a.wait_snd(), 0);
        assert_eq!((a.spare_buffers(), b.spare_buffers()), (0, 0));
    }

    #[test]
    fn send_respects_window() {
        let mut a = Kcp::new(1, &params());
        let big = vec![0u8; 1_000_000];
        let taken = a.send(&big);
        assert_eq!(taken, 64 * a.mss());
        assert_eq!(a.send(&big), 0);
        assert_eq!(a.send_capacity(), 0);
    }

    #[test]
    fn hostile_input_is_an_error_never_a_panic() {
        let mut a = Kcp::new(9, &params());
        assert_eq!(a.input(&[0; 10], true), Err(InputError::TooShort));
        let mut seg = vec![0u8; OVERHEAD];
        seg[..4].copy_from_slice(&9u32.to_le_bytes());
        seg[4] = 99;
        assert_eq!(a.input(&seg, true), Err(InputError::BadCommand(99)));
        seg[4] = CMD_PUSH;
        seg[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(a.input(&seg, true), Err(InputError::Truncated));
        assert_eq!(
            a.input(&[1; OVERHEAD], true),
            Err(InputError::OtherConv(0x0101_0101))
        );
        // Extreme sequence numbers, timestamps and unas: ignored, no overflow.
        let mut seed = 1u64;
        for _ in 0..50_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut s = vec![0u8; OVERHEAD + 4];
            s[..4].copy_from_slice(&9u32.to_le_bytes());
            s[4] = CMD_PUSH + (seed >> 60) as u8 % 4;
            s[6..24].copy_from_slice(&seed.to_le_bytes().repeat(3)[..18]);
            s[20..24].copy_from_slice(&((seed >> 32) as u32 % 6).to_le_bytes());
            let _ = a.input(&s, seed & 1 == 0);
            a.update((seed >> 20) as u32, &mut |_| {});
            let _ = a.check((seed >> 7) as u32);
        }
    }
}
