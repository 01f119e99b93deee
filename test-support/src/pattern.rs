//! Deterministic test data and its checks.

/// The pattern shared with the Go peer (`pattern` in `interop/go/src/smuxpeer/main.go`): an
/// xorshift32 sequence seeded from `seed`, each state emitted little-endian.
pub fn go_pattern(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) ^ 0x6d2b_79f5;
    if x == 0 {
        x = 1;
    }
    let mut v = Vec::with_capacity(n + 4);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// `n` pseudo-random bytes from `seed` (xorshift64, one byte per step); different seeds give
/// different data.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Fills `buf` with the bytes at stream offsets `offset..` of the endless pseudo-random stream
/// `seed` (each 8-byte block is a splitmix64 hash of its index and the seed), so a reader can
/// check data of any length, in any pieces, without keeping a copy: see [`check_at`].
pub fn fill_at(buf: &mut [u8], seed: u64, offset: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, offset + i as u64);
    }
}

/// The byte at stream offset `pos` of [`fill_at`]'s stream `seed`.
fn byte_at(seed: u64, pos: u64) -> u8 {
    let mut x = (pos / 8) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> (8 * (pos % 8))) as u8
}

/// Stream offset of the first byte of `got` (received at stream offset `offset` of stream
/// `seed`) that differs from [`fill_at`]'s, `None` when all match.
pub fn check_at(got: &[u8], seed: u64, offset: u64) -> Option<u64> {
    (offset..)
        .zip(got)
        .find(|&(pos, &b)| b != byte_at(seed, pos))
        .map(|(pos, _)| pos)
}

/// 64-bit FNV-1a, as the Go peer's `slowreader` role computes it.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for &c in data {
        h ^= u64::from(c);
        h = h.wrapping_mul(1_099_511_628_211);
    }
    h
}

/// Offset of the first byte where `got` and `want` differ (a length difference counts at the
/// shorter length), `None` when they are equal.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .or_else(|| (got.len() != want.len()).then(|| got.len().min(want.len())))
}

/// Panics, naming `what` and the first differing offset, unless `got == want` (without
/// printing megabytes of data as `assert_eq!` would).
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if let Some(at) = first_difference(got, want) {
        panic!(
            "{what}: data differs at byte {at} (got {} bytes, want {})",
            got.len(),
            want.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_pattern_matches_the_go_peer() {
        // First bytes of Go's pattern(1, 8), computed by hand from the same recurrence.
        let mut x: u32 = 2_654_435_761 ^ 0x6d2b_79f5;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        assert_eq!(go_pattern(1, 4), x.to_le_bytes());
        assert_eq!(go_pattern(1, 1000).len(), 1000);
        assert_ne!(go_pattern(1, 64), go_pattern(2, 64));
    }

    #[test]
    fn bytes_depend_on_the_seed_only() {
        assert_eq!(bytes(5, 100), bytes(5, 100));
        assert_ne!(bytes(5, 100), bytes(6, 100));
        assert_eq!(&bytes(5, 100)[..10], &bytes(5, 10)[..]);
    }

    #[test]
    fn fill_at_is_addressable_by_offset() {
        let mut whole = vec![0u8; 1000];
        fill_at(&mut whole, 9, 0);
        let mut tail = vec![0u8; 100];
        fill_at(&mut tail, 9, 900);
        assert_eq!(&whole[900..], &tail[..]);
        assert_eq!(check_at(&whole[13..], 9, 13), None);
        tail[7] ^= 1;
        assert_eq!(check_at(&tail, 9, 900), Some(907));
        assert!(check_at(&whole[..64], 10, 0).is_some());
    }

    #[test]
    fn first_difference_finds_the_offset() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(fnv1a64(b""), 14_695_981_039_346_656_037);
    }

    #[test]
    #[should_panic(expected = "echo: data differs at byte 1")]
    fn assert_same_names_the_offset() {
        assert_same(b"ax", b"ay", "echo");
    }
}
