//! Writes `session_ops` inputs: the inverse of `arbitrary`'s decoding of [`Setup`] and [`Op`]
//! (integers little-endian, `bool` one byte, `Option` a `bool` then the value, enum variants a
//! `u32` that `(x * count) >> 32` maps to the variant index, [`Raw`] its own `u16` length).
//! The round trip is checked by the crate's tests.

use crate::session::{
    Consumed, CounterBase, FrameCmd, Maybe, Op, Raw, RoleByte, Setup, Sid, Window,
};

/// Appends the encoding of a value.
pub trait Encode {
    /// Appends `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(v) = self {
            v.encode(out);
        }
    }
}

impl Encode for Raw {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.0.len()).expect("Raw of at most 65535 bytes");
        len.encode(out);
        out.extend_from_slice(&self.0);
    }
}

impl Encode for RoleByte {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

impl Encode for Sid {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

/// The `u32` that selects variant `index` of `count`.
fn variant(index: u32, count: u32, out: &mut Vec<u8>) {
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    u32::try_from(x).expect("index < count").encode(out);
}

impl Encode for FrameCmd {
    fn encode(&self, out: &mut Vec<u8>) {
        let i = match self {
            FrameCmd::Syn => 0,
            FrameCmd::Fin => 1,
            FrameCmd::Psh => 2,
            FrameCmd::Nop => 3,
            FrameCmd::Upd => 4,
        };
        variant(i, 5, out);
    }
}

impl Encode for Consumed {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Consumed::Sent => variant(0, 4, out),
            Consumed::SentMinus(d) => {
                variant(1, 4, out);
                d.encode(out);
            }
            Consumed::SentPlus(d) => {
                variant(2, 4, out);
                d.encode(out);
            }
            Consumed::Raw(c) => {
                variant(3, 4, out);
                c.encode(out);
            }
        }
    }
}

impl Encode for Window {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Window::Of(k) => {
                variant(0, 2, out);
                k.encode(out);
            }
            Window::Raw(w) => {
                variant(1, 2, out);
                w.encode(out);
            }
        }
    }
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.v2.encode(out);
        self.role.encode(out);
        self.keepalive.encode(out);
        self.frame_size.encode(out);
        self.receive_buffer.encode(out);
        self.stream_buffer.encode(out);
        self.auto_tune.encode(out);
        self.counter_base.encode(out);
        self.ids_left.encode(out);
        self.last_serial.encode(out);
    }
}

/// A mode byte and a `u32`, always.
impl Encode for CounterBase {
    fn encode(&self, out: &mut Vec<u8>) {
        let (mode, arg) = match *self {
            CounterBase::Zero => (0u8, 0),
            CounterBase::BelowWrap(d) => (1, u32::from(d)),
            CounterBase::Raw(b) => (2, b),
            CounterBase::AtRead(k) => (3, u32::from(k)),
        };
        mode.encode(out);
        arg.encode(out);
    }
}

/// A flag and a value, always.
impl<T: Encode + Default> Encode for Maybe<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.is_some().encode(out);
        match &self.0 {
            Some(v) => v.encode(out),
            None => T::default().encode(out),
        }
    }
}

/// Number of [`Op`] variants.
const OPS: u32 = 23;

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::PeerRaw { data, split } => {
                variant(0, OPS, out);
                data.encode(out);
                split.encode(out);
            }
            Op::PeerFrame {
                cmd,
                sid,
                len,
                fill,
                split,
            } => {
                variant(1, OPS, out);
                cmd.encode(out);
                sid.encode(out);
                len.encode(out);
                fill.encode(out);
                split.encode(out);
            }
            Op::PeerUpd {
                sid,
                consumed,
                window,
                split,
            } => {
                variant(2, OPS, out);
                sid.encode(out);
                consumed.encode(out);
                window.encode(out);
                split.encode(out);
            }
            Op::Pump => variant(3, OPS, out),
            Op::Open => variant(4, OPS, out),
            Op::Accept => variant(5, OPS, out),
            Op::Write { sid, len, big } => {
                variant(6, OPS, out);
                sid.encode(out);
                len.encode(out);
                big.encode(out);
            }
            Op::Read { sid, len } => {
                variant(7, OPS, out);
                sid.encode(out);
                len.encode(out);
            }
            Op::ReadChunk { sid, max } => {
                variant(8, OPS, out);
                sid.encode(out);
                max.encode(out);
            }
            Op::Flush { sid } => {
                variant(9, OPS, out);
                sid.encode(out);
            }
            Op::ShutdownWrite { sid } => {
                variant(10, OPS, out);
                sid.encode(out);
            }
            Op::Release { sid, which } => {
                variant(11, OPS, out);
                sid.encode(out);
                which.encode(out);
            }
            Op::ReadDeadline { sid, ms } => {
                variant(12, OPS, out);
                sid.encode(out);
                ms.encode(out);
            }
            Op::WriteDeadline { sid, ms } => {
                variant(13, OPS, out);
                sid.encode(out);
                ms.encode(out);
            }
            Op::Close => variant(14, OPS, out),
            Op::Advance { ms } => {
                variant(15, OPS, out);
                ms.encode(out);
            }
            Op::Transmit { max } => {
                variant(16, OPS, out);
                max.encode(out);
            }
            Op::Drain { n } => {
                variant(17, OPS, out);
                n.encode(out);
            }
            Op::Events => variant(18, OPS, out),
            Op::Eof => variant(19, OPS, out),
            Op::IoError => variant(20, OPS, out),
            Op::Shutdown => variant(21, OPS, out),
            Op::PeerSyns { count } => {
                variant(22, OPS, out);
                count.encode(out);
            }
        }
    }
}

/// A whole `session_ops` input.
pub fn session_input(setup: &Setup, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}
