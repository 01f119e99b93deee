//! [`Snappy`]: the snappy framing format over any async byte stream, as kcptun puts it
//! between KCP and smux (unless `--nocomp`).
//!
//! Writing: every `poll_write` becomes its own chunk(s), flushed at once (kcptun flushes after
//! every write), after the stream identifier `ff 06 00 00 "sNaPpY"`. Encoding uses the `snap`
//! crate's frame encoder. Reading: chunks are parsed here (type, 24-bit length, masked CRC-32C
//! of the uncompressed bytes), so a partial chunk simply waits for more bytes; compressed
//! chunks are decoded with `snap::raw`. Any malformed chunk is an `InvalidData` error.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const STREAM_ID: &[u8] = b"sNaPpY";
/// Most uncompressed bytes in one chunk.
const MAX_BLOCK: usize = 65_536;
/// Longest chunk body accepted (a compressed 64 KiB block plus CRC, with margin).
const MAX_CHUNK: usize = 4 + 32 + MAX_BLOCK + MAX_BLOCK / 6 + 64;
/// CRC-32C of snappy's framing, sixteen bytes per table step: the byte-wise table cost a
/// third of a kcptun server's CPU in decoding (perf, `rsmux bench --kcp`).
const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

fn masked_crc(data: &[u8]) -> u32 {
    let c = CRC32C.checksum(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Snappy framing over `T`.
pub struct Snappy<T> {
    inner: T,
    /// Made on the first write: its buffers take ~140 KB, which a connection that never
    /// writes (a forged peer of a listener) should not cost.
    encoder: Option<Box<snap::write::FrameEncoder<Vec<u8>>>>,
    /// Encoded bytes not yet written to `inner`.
    out: Vec<u8>,
    out_pos: usize,
    decoder: snap::raw::Decoder,
    /// Raw bytes read from `inner`, not yet a whole chunk.
    raw: BytesMut,
    /// Decoded bytes not yet read.
    plain: BytesMut,
    seen_id: bool,
    eof: bool,
}

impl<T> std::fmt::Debug for Snappy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snappy").finish_non_exhaustive()
    }
}

impl<T> Snappy<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Snappy {
            inner,
            encoder: None,
            out: Vec::new(),
            out_pos: 0,
            decoder: snap::raw::Decoder::new(),
            raw: BytesMut::new(),
            plain: BytesMut::new(),
            seen_id: false,
            eof: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Decodes one whole chunk from `raw` into `plain`; `Ok(false)` if more bytes are needed.
    fn decode_chunk(&mut self) -> io::Result<bool> {
        if self.raw.len() < 4 {
            return Ok(false);
        }
        let kind = self.raw[0];
        let len = u32::from_le_bytes([self.raw[1], self.raw[2], self.raw[3], 0]) as usize;
        if len > MAX_CHUNK {
            return Err(invalid("snappy chunk too long"));
        }
        if self.raw.len() < 4 + len {
            return Ok(false);
        }
        self.raw.advance(4);
        let body = self.raw.split_to(len);
        if kind != 0xff && !self.seen_id {
            return Err(invalid("snappy stream identifier missing"));
        }
        match kind {
            0xff => {
                if &body[..] != STREAM_ID {
                    return Err(invalid("bad snappy stream identifier"));
                }
                self.seen_id = true;
            }
            0x00 | 0x01 => {
                if body.len() < 4 {
                    return Err(invalid("snappy chunk without CRC"));
                }
                let crc = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
                let start = self.plain.len();
                if kind == 0x00 {
                    let n = snap::raw::decompress_len(&body[4..])
                        .map_err(|_| invalid("bad snappy block"))?;
                    if n > MAX_BLOCK {
                        return Err(invalid("snappy block too long"));
                    }
                    self.plain.resize(start + n, 0);
                    self.decoder
                        .decompress(&body[4..], &mut self.plain[start..])
                        .map_err(|_| invalid("bad snappy block"))?;
                } else {
                    if body.len() - 4 > MAX_BLOCK {
                        return Err(invalid("snappy block too long"));
                    }
                    self.plain.extend_from_slice(&body[4..]);
                }
                if masked_crc(&self.plain[start..]) != crc {
                    return Err(invalid("snappy chunk CRC mismatch"));
                }
            }
            0x02..=0x7f => return Err(invalid("reserved unskippable snappy chunk")),
            _ => {} // padding and reserved skippable chunks
        }
        Ok(true)
    }
}

impl<T: AsyncWrite + Unpin> Snappy<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Snappy<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.decode_chunk()? {
                continue;
            }
            if this.eof {
                return if this.raw.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                };
            }
            let mut scratch = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            }
            this.raw.extend_from_slice(rb.filled());
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Snappy<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(MAX_BLOCK);
        let encoder = this
            .encoder
            .get_or_insert_with(|| Box::new(snap::write::FrameEncoder::new(Vec::new())));
        encoder.write_all(&buf[..n])?;
        encoder.flush()?;
        std::mem::swap(encoder.get_mut(), &mut this.out);
        // Start writing now; what does not fit waits for the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn round_trip_and_wire_format() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = Snappy::new(a);
        let mut r = Snappy::new(b);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i / 100) as u8).collect();
        let writer = tokio::spawn(async move {
            w.write_all(b"hi").await.unwrap();
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
            data
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        let data = writer.await.unwrap();
        assert_eq!(&got[..2], b"hi");
        assert_eq!(&got[2..], &data[..]);
    }

    #[tokio::test]
    async fn output_is_standard_framing() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = Snappy::new(a);
        w.write_all(&[1, 2, 3, 4, 5, 6, 7, 8]).await.unwrap();
        drop(w);
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).await.unwrap();
        assert_eq!(&wire[..10], b"\xff\x06\x00\x00sNaPpY");
        // Decodable by snap's own reader.
        let mut plain = Vec::new();
        snap::read::FrameDecoder::new(&wire[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    async fn decode(wire: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = Snappy::new(wire);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn hostile_streams_are_errors() {
        let mut good = Vec::new();
        {
            let mut e = snap::write::FrameEncoder::new(&mut good);
            e.write_all(&[7u8; 1000]).unwrap();
        }
        assert_eq!(decode(&good).await.unwrap(), vec![7u8; 1000]);
        // Truncated anywhere but at the chunk boundary after the identifier: an error.
        for cut in (1..good.len()).filter(|&c| c != 10) {
            assert!(decode(&good[..cut]).await.is_err(), "cut {cut}");
        }
        // Flipped CRC byte, or a flipped byte of the block: an error.
        for at in [14, 18] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(decode(&bad).await.is_err(), "flip at {at}");
        }
        // No identifier, reserved chunk, huge length.
        assert!(decode(&good[10..]).await.is_err());
        assert!(decode(b"\xff\x06\x00\x00sNaPpY\x02\x00\x00\x00")
            .await
            .is_err());
        assert!(decode(b"\xff\x06\x00\x00sNaPpY\x00\xff\xff\xff")
            .await
            .is_err());
        // Skippable chunk is skipped.
        let mut skip = good[..10].to_vec();
        skip.extend_from_slice(b"\xfe\x02\x00\x00ab");
        skip.extend_from_slice(&good[10..]);
        assert_eq!(decode(&skip).await.unwrap(), vec![7u8; 1000]);
    }

    #[test]
    fn masked_crc_is_snappys_masked_crc32c() {
        // CRC-32C("123456789") is 0xE3069283 (the catalogue's check value), masked as the
        // framing format says: rotated right by 15, plus 0xa282ead8.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        // Lengths that are not a multiple of the table's 16-byte step agree with byte-wise.
        let bytewise = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 15, 16, 17, 999] {
            assert_eq!(
                CRC32C.checksum(&data[..len]),
                bytewise.checksum(&data[..len])
            );
        }
    }
}
