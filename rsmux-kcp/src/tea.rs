//! TEA and XTEA, the two 64-bit-block ciphers of kcptun's `--crypt tea` and `--crypt xtea`,
//! with the full-block CFB mode the other ciphers get from `cfb-mode`.
//!
//! Written here because no maintained crate fits: RustCrypto's `xtea` needs `cipher` 0.5 (the
//! other ciphers here, and `cfb-mode`, are on 0.4), and there is no TEA crate with a
//! configurable round count. kcptun (kcp-go) uses Go's `x/crypto/tea` with **16
//! rounds** (8 cycles; standard TEA has 64 rounds) and `x/crypto/xtea` (64 rounds); both read
//! the key and the block as big-endian 32-bit words. Both ciphers are obsolete (64-bit
//! blocks, TEA has related-key weaknesses); they are here only to talk to kcptun peers
//! configured with them.

/// The key schedule constant of TEA and XTEA (2^32 / golden ratio).
const DELTA: u32 = 0x9e37_79b9;

fn words(key: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| u32::from_be_bytes(key[4 * i..4 * i + 4].try_into().expect("4")))
}

fn split(block: [u8; 8]) -> (u32, u32) {
    (
        u32::from_be_bytes(block[..4].try_into().expect("4")),
        u32::from_be_bytes(block[4..].try_into().expect("4")),
    )
}

fn join(v0: u32, v1: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&v0.to_be_bytes());
    out[4..].copy_from_slice(&v1.to_be_bytes());
    out
}

/// A 64-bit block cipher, encryption direction only (all CFB needs).
pub(crate) trait Block64 {
    /// Encrypts one 8-byte block.
    fn encrypt_block(&self, block: [u8; 8]) -> [u8; 8];
}

/// TEA (Wheeler and Needham, 1994) with a chosen number of rounds (two per cycle).
#[derive(Clone, Debug)]
pub(crate) struct Tea {
    key: [u32; 4],
    cycles: u32,
}

impl Tea {
    /// TEA with `rounds` Feistel rounds (even; 64 is the standard, kcptun uses 16).
    pub(crate) fn new(key: &[u8; 16], rounds: u32) -> Self {
        Tea {
            key: words(key),
            cycles: rounds / 2,
        }
    }

    /// Decrypts one block (for the known-answer tests).
    #[cfg(test)]
    fn decrypt_block(&self, block: [u8; 8]) -> [u8; 8] {
        let [k0, k1, k2, k3] = self.key;
        let (mut v0, mut v1) = split(block);
        let mut sum = DELTA.wrapping_mul(self.cycles);
        for _ in 0..self.cycles {
            v1 = v1.wrapping_sub(
                (v0 << 4).wrapping_add(k2) ^ v0.wrapping_add(sum) ^ (v0 >> 5).wrapping_add(k3),
            );
            v0 = v0.wrapping_sub(
                (v1 << 4).wrapping_add(k0) ^ v1.wrapping_add(sum) ^ (v1 >> 5).wrapping_add(k1),
            );
            sum = sum.wrapping_sub(DELTA);
        }
        join(v0, v1)
    }
}

impl Block64 for Tea {
    fn encrypt_block(&self, block: [u8; 8]) -> [u8; 8] {
        let [k0, k1, k2, k3] = self.key;
        let (mut v0, mut v1) = split(block);
        let mut sum = 0u32;
        for _ in 0..self.cycles {
            sum = sum.wrapping_add(DELTA);
            v0 = v0.wrapping_add(
                (v1 << 4).wrapping_add(k0) ^ v1.wrapping_add(sum) ^ (v1 >> 5).wrapping_add(k1),
            );
            v1 = v1.wrapping_add(
                (v0 << 4).wrapping_add(k2) ^ v0.wrapping_add(sum) ^ (v0 >> 5).wrapping_add(k3),
            );
        }
        join(v0, v1)
    }
}

/// XTEA (Needham and Wheeler, 1997), 64 rounds.
#[derive(Clone, Debug)]
pub(crate) struct Xtea {
    key: [u32; 4],
}

/// XTEA's cycles (two rounds each).
const XTEA_CYCLES: u32 = 32;

impl Xtea {
    /// XTEA with a 16-byte key.
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        Xtea { key: words(key) }
    }

    /// Decrypts one block (for the known-answer tests).
    #[cfg(test)]
    fn decrypt_block(&self, block: [u8; 8]) -> [u8; 8] {
        let k = self.key;
        let (mut v0, mut v1) = split(block);
        let mut sum = DELTA.wrapping_mul(XTEA_CYCLES);
        for _ in 0..XTEA_CYCLES {
            v1 = v1.wrapping_sub(
                ((v0 << 4) ^ (v0 >> 5)).wrapping_add(v0)
                    ^ sum.wrapping_add(k[(sum >> 11) as usize & 3]),
            );
            sum = sum.wrapping_sub(DELTA);
            v0 = v0.wrapping_sub(
                ((v1 << 4) ^ (v1 >> 5)).wrapping_add(v1) ^ sum.wrapping_add(k[sum as usize & 3]),
            );
        }
        join(v0, v1)
    }
}

impl Block64 for Xtea {
    fn encrypt_block(&self, block: [u8; 8]) -> [u8; 8] {
        let k = self.key;
        let (mut v0, mut v1) = split(block);
        let mut sum = 0u32;
        for _ in 0..XTEA_CYCLES {
            v0 = v0.wrapping_add(
                ((v1 << 4) ^ (v1 >> 5)).wrapping_add(v1) ^ sum.wrapping_add(k[sum as usize & 3]),
            );
            sum = sum.wrapping_add(DELTA);
            v1 = v1.wrapping_add(
                ((v0 << 4) ^ (v0 >> 5)).wrapping_add(v0)
                    ^ sum.wrapping_add(k[(sum >> 11) as usize & 3]),
            );
        }
        join(v0, v1)
    }
}

/// Full-block CFB over `buf` in place, starting from `iv`: each 8-byte block is XORed with the
/// encryption of the previous ciphertext block; a trailing partial block with the first bytes
/// of the next keystream block.
pub(crate) fn cfb(cipher: &impl Block64, iv: [u8; 8], buf: &mut [u8], encrypt: bool) {
    let mut prev = iv;
    for chunk in buf.chunks_mut(8) {
        let keystream = cipher.encrypt_block(prev);
        if encrypt {
            for (b, k) in chunk.iter_mut().zip(keystream) {
                *b ^= k;
            }
            if chunk.len() == 8 {
                prev.copy_from_slice(chunk);
            }
        } else {
            if chunk.len() == 8 {
                prev.copy_from_slice(chunk);
            }
            for (b, k) in chunk.iter_mut().zip(keystream) {
                *b ^= k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }

    fn hex8(s: &str) -> [u8; 8] {
        hex(s)
    }

    fn hex16(s: &str) -> [u8; 16] {
        hex(s)
    }

    /// Checks `encrypt` and `decrypt` of a cipher made with `key` against one vector.
    fn known_answer(
        encrypt: impl Fn([u8; 8]) -> [u8; 8],
        decrypt: impl Fn([u8; 8]) -> [u8; 8],
        (key, plain, cipher): (&str, &str, &str),
    ) {
        assert_eq!(encrypt(hex8(plain)), hex8(cipher), "{key} {plain}");
        assert_eq!(decrypt(hex8(cipher)), hex8(plain), "{key} {cipher}");
    }

    /// Published vectors (Bouncy Castle's TEATest/XTEATest, from Simon Shepherd's reference C
    /// results): standard 64-round TEA and XTEA, big-endian words.
    const KEY_A: &str = "00000000000000000000000000000000";
    const KEY_B: &str = "0123456712345678234567893456789a";

    #[test]
    fn tea_known_answers() {
        for vector in [
            (KEY_A, "0000000000000000", "41ea3a0a94baa940"),
            (KEY_A, "0102030405060708", "6a2f9cf3fccf3c55"),
            (KEY_B, "0000000000000000", "34e943b0900f5dcb"),
            (KEY_B, "0102030405060708", "773dc179878a81c0"),
        ] {
            let tea = Tea::new(&hex16(vector.0), 64);
            known_answer(|b| tea.encrypt_block(b), |b| tea.decrypt_block(b), vector);
        }
        // kcptun's 16 rounds differ from the standard, and still invert.
        let tea16 = Tea::new(&hex16(KEY_B), 16);
        let c = tea16.encrypt_block(hex8("0102030405060708"));
        assert_ne!(c, hex8("773dc179878a81c0"));
        assert_eq!(tea16.decrypt_block(c), hex8("0102030405060708"));
    }

    #[test]
    fn xtea_known_answers() {
        for vector in [
            (KEY_A, "0000000000000000", "dee9d4d8f7131ed9"),
            (KEY_A, "0102030405060708", "065c1b8975c6a816"),
            (KEY_B, "0000000000000000", "1ff9a0261ac64264"),
            (KEY_B, "0102030405060708", "8c67155b2ef91ead"),
        ] {
            let xtea = Xtea::new(&hex16(vector.0));
            known_answer(|b| xtea.encrypt_block(b), |b| xtea.decrypt_block(b), vector);
        }
    }

    #[test]
    fn cfb_round_trips_with_partial_blocks() {
        let xtea = Xtea::new(&hex16(KEY_B));
        let iv = hex8("a7734f9c12ac1b01");
        for len in [0, 1, 7, 8, 9, 23, 100] {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut buf = plain.clone();
            cfb(&xtea, iv, &mut buf, true);
            if len > 0 {
                assert_ne!(buf, plain);
                // The first block is the plaintext XOR the encrypted IV.
                let ks = xtea.encrypt_block(iv);
                assert_eq!(buf[0], plain[0] ^ ks[0]);
            }
            cfb(&xtea, iv, &mut buf, false);
            assert_eq!(buf, plain, "len {len}");
        }
    }
}
