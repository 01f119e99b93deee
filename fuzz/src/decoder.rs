//! The `frame_decoder` target.
//!
//! Input layout: `flags (1) | split seed (1) | wire bytes`. Flags bit 0 selects version 2,
//! bit 1 the server role, bit 2 feeds through `RecvBuffer::prepare` instead of
//! `extend_from_slice`, bits 3..4 choose how large the pieces are.
//!
//! Checks:
//! - `Header::decode` at every offset, for both versions, equals a reference decoder written
//!   from SPEC §1.6, and every accepted header encodes back to the same 8 bytes;
//! - a `Connection` fed the wire bytes in pieces consumes exactly the complete well-formed
//!   frames up to the first malformed header (or impossible v2 window update); either leaves
//!   it terminated with that very `Error::Protocol`, otherwise it stays open.

use std::time::Instant;

use rsmux::{
    frame::{Cmd, Header, HEADER_LEN},
    proto::{Connection, RecvBuffer, Role},
    Config, Error, ProtocolError,
};

/// SPEC §1.6, independently of `rsmux::frame`: version first, then the command, then the
/// LENGTH rules (UPD: version 2 before LENGTH 8).
pub fn reference_decode(b: &[u8; HEADER_LEN], version: u8) -> Result<Header, ProtocolError> {
    if b[0] != version {
        return Err(ProtocolError::VersionMismatch {
            got: b[0],
            expected: version,
        });
    }
    let len = u16::from_le_bytes([b[2], b[3]]);
    let stream_id = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (cmd, name) = match b[1] {
        0 => (Cmd::Syn, "SYN"),
        1 => (Cmd::Fin, "FIN"),
        2 => (Cmd::Psh, "PSH"),
        3 => (Cmd::Nop, "NOP"),
        4 => (Cmd::Upd, "UPD"),
        c => return Err(ProtocolError::UnknownCommand(c)),
    };
    match cmd {
        Cmd::Syn | Cmd::Fin | Cmd::Nop if len != 0 => {
            Err(ProtocolError::UnexpectedPayload { cmd: name, len })
        }
        Cmd::Upd if version != 2 => Err(ProtocolError::UpdateInV1),
        Cmd::Upd if len != 8 => Err(ProtocolError::BadUpdateLength(len)),
        _ => Ok(Header {
            version,
            cmd,
            len,
            stream_id,
        }),
    }
}

/// Checks header decoding of every 8-byte window of `wire`, both versions.
pub fn check_headers(wire: &[u8]) {
    for w in wire.windows(HEADER_LEN) {
        let b: &[u8; HEADER_LEN] = w.try_into().expect("8 bytes");
        for version in [1u8, 2] {
            let got = Header::decode(b, version);
            assert_eq!(got, reference_decode(b, version), "decode {b:?} v{version}");
            if let Ok(h) = got {
                assert_eq!(h.encode(), *b, "re-encoding changed the header");
                assert_eq!(h.version, version);
            }
        }
    }
}

/// Tiny deterministic generator for piece sizes.
fn next(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

/// The fuzz target body.
pub fn run(data: &[u8]) {
    let [flags, seed, wire @ ..] = data else {
        return;
    };
    check_headers(wire);

    let version = if flags & 1 != 0 { 2 } else { 1 };
    let role = if flags & 2 != 0 {
        Role::Server
    } else {
        Role::Client
    };
    let use_prepare = flags & 4 != 0;
    let max_piece = [1usize, 7, 300, usize::MAX][usize::from((flags >> 3) & 3)];
    // Default budget (4 MiB): far above any input, so only a malformed header stops reading.
    let config = Config::default()
        .with_version(rsmux::Version::try_from(version).unwrap())
        .with_keep_alive_disabled(true);
    let mut conn = Connection::new(config, role, Instant::now()).expect("valid config");
    let mut rb = RecvBuffer::new();
    let mut state = u32::from(*seed).wrapping_mul(0x9E37_79B9) | 1;

    let mut rest = wire;
    while !rest.is_empty() {
        let n = if max_piece == usize::MAX {
            rest.len()
        } else {
            (next(&mut state) as usize % max_piece + 1).min(rest.len())
        };
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        if use_prepare {
            let mut piece = piece;
            while !piece.is_empty() {
                let b = rb.prepare();
                let room = (b.capacity() - b.len()).max(1).min(piece.len());
                b.extend_from_slice(&piece[..room]);
                piece = &piece[room..];
            }
        } else {
            rb.extend_from_slice(piece);
        }
        // Accept as streams arrive so the accept backlog never pauses reading.
        loop {
            conn.handle_input(&mut rb);
            let mut accepted = false;
            while let Ok(Some(_)) = conn.accept() {
                accepted = true;
            }
            if !accepted {
                break;
            }
        }
    }

    // Where the reference says reading stops, and why.
    // Streams the peer opened (all accepted and kept): a v2 UPD on one of them claiming
    // CONSUMED in 1..=2^31 (more than the 0 bytes we sent) ends the session.
    let mut live = std::collections::HashSet::new();
    let mut off = 0;
    let mut bad = None;
    while wire.len() - off >= HEADER_LEN {
        let b: &[u8; HEADER_LEN] = wire[off..off + HEADER_LEN].try_into().expect("8 bytes");
        match reference_decode(b, version) {
            Err(e) => {
                bad = Some(e);
                break;
            }
            Ok(h) if wire.len() - off < HEADER_LEN + h.len as usize => break,
            Ok(h) => {
                let payload = &wire[off + HEADER_LEN..off + HEADER_LEN + h.len as usize];
                off += HEADER_LEN + h.len as usize;
                match h.cmd {
                    Cmd::Syn => {
                        live.insert(h.stream_id);
                    }
                    Cmd::Upd if live.contains(&h.stream_id) => {
                        let consumed = u32::from_le_bytes(payload[..4].try_into().expect("4"));
                        if (1..=1u32 << 31).contains(&consumed) {
                            bad = Some(ProtocolError::ConsumedMoreThanSent {
                                stream: h.stream_id,
                            });
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        rb.len(),
        wire.len() - off,
        "the connection consumed a different prefix than the reference"
    );
    match bad {
        Some(e) => {
            assert!(
                conn.is_terminated(),
                "malformed header did not end the session"
            );
            assert!(!conn.wants_read());
            match conn.close_reason() {
                Some(Error::Protocol(p)) => assert_eq!(*p, e),
                other => panic!("expected Protocol({e:?}), got {other:?}"),
            }
        }
        None => {
            assert!(
                !conn.is_closed(),
                "closed on well-formed input: {:?}",
                conn.close_reason()
            );
            assert!(conn.wants_read());
        }
    }
}
