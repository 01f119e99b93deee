//! The smux wire format (SPEC §1): an 8-byte little-endian header, then LENGTH payload bytes.
//!
//! ```text
//! VERSION(1) | CMD(1) | LENGTH(2, LE) | STREAMID(4, LE) | DATA(LENGTH)
//! ```
//! Pure encoding and validation; no state, no allocation.

use crate::error::ProtocolError;

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 8;
/// Size of an UPD payload: CONSUMED(4, LE) | WINDOW(4, LE).
pub const UPD_LEN: usize = 8;

/// Frame commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// Opens a stream.
    Syn = 0,
    /// The sender writes no more on the stream.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keepalive, stream id 0.
    Nop = 3,
    /// Version 2 window update.
    Upd = 4,
}

impl Cmd {
    /// Decodes a CMD byte.
    pub fn from_u8(b: u8) -> Option<Cmd> {
        Some(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            4 => Cmd::Upd,
            _ => return None,
        })
    }

    /// The command's name as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Syn => "SYN",
            Cmd::Fin => "FIN",
            Cmd::Psh => "PSH",
            Cmd::Nop => "NOP",
            Cmd::Upd => "UPD",
        }
    }
}

/// A decoded and validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version byte.
    pub version: u8,
    /// Command.
    pub cmd: Cmd,
    /// Payload length.
    pub len: u16,
    /// Stream the frame belongs to (0 for NOP).
    pub stream_id: u32,
}

impl Header {
    /// Builds a header.
    pub fn new(version: u8, cmd: Cmd, len: u16, stream_id: u32) -> Header {
        Header {
            version,
            cmd,
            len,
            stream_id,
        }
    }

    /// Encodes the header into its 8 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.version;
        b[1] = self.cmd as u8;
        b[2..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_le_bytes());
        b
    }

    /// Decodes 8 wire bytes received on a session of `version`, applying upstream's receive
    /// checks (SPEC §1.6): matching version, known command, LENGTH 0 on SYN/FIN/NOP, UPD only
    /// in version 2 and with LENGTH 8.
    pub fn decode(b: &[u8; HEADER_LEN], version: u8) -> Result<Header, ProtocolError> {
        if b[0] != version {
            return Err(ProtocolError::VersionMismatch {
                got: b[0],
                expected: version,
            });
        }
        let cmd = Cmd::from_u8(b[1]).ok_or(ProtocolError::UnknownCommand(b[1]))?;
        let len = u16::from_le_bytes([b[2], b[3]]);
        let stream_id = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        match cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Nop if len != 0 => {
                return Err(ProtocolError::UnexpectedPayload {
                    cmd: cmd.name(),
                    len,
                })
            }
            Cmd::Upd if version != 2 => return Err(ProtocolError::UpdateInV1),
            Cmd::Upd if len as usize != UPD_LEN => return Err(ProtocolError::BadUpdateLength(len)),
            _ => {}
        }
        Ok(Header {
            version,
            cmd,
            len,
            stream_id,
        })
    }
}

/// Encodes an UPD payload.
pub fn encode_upd(consumed: u32, window: u32) -> [u8; UPD_LEN] {
    let mut b = [0u8; UPD_LEN];
    b[..4].copy_from_slice(&consumed.to_le_bytes());
    b[4..].copy_from_slice(&window.to_le_bytes());
    b
}

/// Decodes an UPD payload into `(consumed, window)`.
pub fn decode_upd(b: &[u8; UPD_LEN]) -> (u32, u32) {
    (
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden bytes from SPEC §1.1, verified against Go smux there.
    #[test]
    fn golden_headers() {
        assert_eq!(
            Header::new(1, Cmd::Syn, 0, 3).encode(),
            [1, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(
            Header::new(1, Cmd::Psh, 32768, 9).encode(),
            [1, 2, 0x00, 0x80, 9, 0, 0, 0]
        );
        assert_eq!(
            Header::new(1, Cmd::Psh, 4464, 9).encode(),
            [1, 2, 0x70, 0x11, 9, 0, 0, 0]
        );
        assert_eq!(
            Header::new(2, Cmd::Upd, 8, 3).encode(),
            [2, 4, 8, 0, 3, 0, 0, 0]
        );
        assert_eq!(
            Header::new(1, Cmd::Nop, 0, 0).encode(),
            [1, 3, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Header::new(1, Cmd::Fin, 0, 0xdead_beef).encode(),
            [1, 1, 0, 0, 0xef, 0xbe, 0xad, 0xde]
        );
    }

    #[test]
    fn upstream_frame_string_decode() {
        // TestFrameString: {1,0,100,0,1,0,0,0} is version 1, SYN, length 100, stream 1 —
        // which the latest upstream rejects as a SYN with payload.
        let b = [1, 0, 100, 0, 1, 0, 0, 0];
        assert_eq!(
            Header::decode(&b, 1),
            Err(ProtocolError::UnexpectedPayload {
                cmd: "SYN",
                len: 100
            })
        );
        let h = Header::decode(&[1, 2, 100, 0, 1, 0, 0, 0], 1).unwrap();
        assert_eq!(h, Header::new(1, Cmd::Psh, 100, 1));
    }

    #[test]
    fn receive_validation() {
        assert_eq!(
            Header::decode(&[2, 2, 0, 0, 3, 0, 0, 0], 1),
            Err(ProtocolError::VersionMismatch {
                got: 2,
                expected: 1
            })
        );
        assert_eq!(
            Header::decode(&[1, 9, 0, 0, 3, 0, 0, 0], 1),
            Err(ProtocolError::UnknownCommand(9))
        );
        for cmd in [Cmd::Syn, Cmd::Fin, Cmd::Nop] {
            let b = Header::new(2, cmd, 1, 3).encode();
            assert!(matches!(
                Header::decode(&b, 2),
                Err(ProtocolError::UnexpectedPayload { len: 1, .. })
            ));
        }
        let upd = Header::new(1, Cmd::Upd, 8, 3).encode();
        assert_eq!(Header::decode(&upd, 1), Err(ProtocolError::UpdateInV1));
        let upd = Header::new(2, Cmd::Upd, 4, 3).encode();
        assert_eq!(
            Header::decode(&upd, 2),
            Err(ProtocolError::BadUpdateLength(4))
        );
        // Any PSH length is accepted, even above the local max_frame_size.
        let psh = Header::new(2, Cmd::Psh, 65535, 7).encode();
        assert_eq!(Header::decode(&psh, 2).unwrap().len, 65535);
    }

    #[test]
    fn upd_payload_round_trip() {
        let b = encode_upd(42768, 65536);
        assert_eq!(b, [0x10, 0xa7, 0, 0, 0, 0, 1, 0]);
        assert_eq!(decode_upd(&b), (42768, 65536));
    }
}
