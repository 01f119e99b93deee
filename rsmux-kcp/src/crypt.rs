//! The crypt layer: kcptun's 20-byte nonce + CRC32 header and the datagram ciphers.
//!
//! Every datagram kcptun sends starts with 16 random bytes (the nonce, never checked) and a
//! CRC32-IEEE (little endian) of everything after the header; then the whole datagram, header
//! included, is encrypted in place. The header is there even with `--crypt none`.
//!
//! Keys: `PBKDF2-HMAC-SHA1(key, salt "kcp-go", 4096 iterations, 32 bytes)`, cut to the
//! cipher's key size. Block ciphers run full-block CFB over the whole datagram with a fixed IV
//! (the random nonce in the first block is what makes keystreams differ); salsa20 keeps the
//! first 8 bytes in clear as its nonce; xor uses a 1500-byte table derived from the key.
//!
//! **Security note:** this is kcptun's scheme, kept for compatibility: unauthenticated,
//! malleable (CFB + CRC32, fixed IV). With `none` anyone who can send UDP to the port can
//! inject data. Run an authenticated protocol on top if that matters.

use std::fmt;
use std::str::FromStr;

use aes::cipher::{AsyncStreamCipher, BlockCipher, BlockEncrypt, InnerIvInit, KeyInit};
use rand::RngCore;
use salsa20::cipher::{KeyIvInit, StreamCipher};

/// Bytes of random nonce at the start of every datagram.
pub const NONCE_SIZE: usize = 16;
/// Bytes of CRC32 after the nonce.
pub const CRC_SIZE: usize = 4;
/// Size of the crypt header (nonce + CRC32), present on every datagram.
pub const HEADER_SIZE: usize = NONCE_SIZE + CRC_SIZE;
/// Longest datagram kcp-go reads (its receive buffers are this large).
pub const MTU_LIMIT: usize = 1500;

/// kcptun's fixed CFB initialisation vector (8-byte-block ciphers use its first half).
const IV: [u8; 16] = [
    0xa7, 0x73, 0x4f, 0x9c, 0x12, 0xac, 0x1b, 0x01, 0xa4, 0x15, 0xf2, 0xc1, 0xfc, 0x78, 0xe6, 0x6b,
];
/// The IV of the 64-bit-block ciphers: the first half of [`IV`].
const IV_64: [u8; 8] = *IV.first_chunk().unwrap();
/// kcp-go's TEA rounds (Go's `tea.NewCipherWithRounds(key, 16)`; standard TEA has 64).
const TEA_ROUNDS: u32 = 16;
const KEY_SALT: &[u8] = b"kcp-go";
const KEY_ITERATIONS: u32 = 4096;
const XOR_SALT: &[u8] = b"sH3CIVoF#rWLtJo6";
const XOR_ITERATIONS: u32 = 32;

/// The `--crypt` choices this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CryptKind {
    /// No encryption (the header and CRC are still there).
    None,
    /// AES-256-CFB (kcptun's default, `aes`).
    Aes,
    /// AES-128-CFB.
    Aes128,
    /// AES-192-CFB.
    Aes192,
    /// Salsa20/20 with the datagram's first 8 bytes as nonce.
    Salsa20,
    /// Blowfish-CFB (32-byte key).
    Blowfish,
    /// Twofish-256-CFB.
    Twofish,
    /// CAST5-CFB (16-byte key).
    Cast5,
    /// 3DES-EDE3-CFB (24-byte key).
    TripleDes,
    /// SM4-CFB (16-byte key).
    Sm4,
    /// TEA-CFB with 16 rounds, as kcp-go uses it (16-byte key).
    Tea,
    /// XTEA-CFB (16-byte key).
    Xtea,
    /// XOR with a key-derived table.
    Xor,
}

impl CryptKind {
    /// Every supported kind.
    pub const ALL: [CryptKind; 13] = [
        CryptKind::None,
        CryptKind::Aes,
        CryptKind::Aes128,
        CryptKind::Aes192,
        CryptKind::Salsa20,
        CryptKind::Blowfish,
        CryptKind::Twofish,
        CryptKind::Cast5,
        CryptKind::TripleDes,
        CryptKind::Sm4,
        CryptKind::Tea,
        CryptKind::Xtea,
        CryptKind::Xor,
    ];

    /// kcptun's name for this kind (the `--crypt` value).
    pub fn name(self) -> &'static str {
        match self {
            CryptKind::None => "none",
            CryptKind::Aes => "aes",
            CryptKind::Aes128 => "aes-128",
            CryptKind::Aes192 => "aes-192",
            CryptKind::Salsa20 => "salsa20",
            CryptKind::Blowfish => "blowfish",
            CryptKind::Twofish => "twofish",
            CryptKind::Cast5 => "cast5",
            CryptKind::TripleDes => "3des",
            CryptKind::Sm4 => "sm4",
            CryptKind::Tea => "tea",
            CryptKind::Xtea => "xtea",
            CryptKind::Xor => "xor",
        }
    }
}

impl fmt::Display for CryptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--crypt` name this crate does not know or does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported crypt {0:?} (supported: none, aes, aes-128, aes-192, salsa20, blowfish, twofish, cast5, 3des, sm4, tea, xtea, xor)")]
pub struct UnknownCrypt(pub String);

impl FromStr for CryptKind {
    type Err = UnknownCrypt;

    /// Parses kcptun's names. Unlike kcptun, which silently falls back to `aes` for any name it
    /// does not know, an unknown name is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CryptKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownCrypt(s.to_string()))
    }
}

/// Why a received datagram was dropped by the crypt layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than the 20-byte header.
    #[error("datagram shorter than the crypt header")]
    TooShort,
    /// Longer than any datagram kcp-go sends.
    #[error("datagram longer than 1500 bytes")]
    TooLong,
    /// The CRC32 does not match (wrong key or cipher, or corruption).
    #[error("bad CRC32 (wrong key or crypt, or corrupt datagram)")]
    BadChecksum,
}

/// kcptun's key derivation: `PBKDF2-HMAC-SHA1(key, "kcp-go", 4096, 32)`.
pub fn derive_key(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key.as_bytes(), KEY_SALT, KEY_ITERATIONS, &mut out);
    out
}

#[derive(Clone)]
enum Cipher {
    None,
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
    Blowfish(Box<blowfish::Blowfish>),
    Twofish(twofish::Twofish),
    Cast5(cast5::Cast5),
    TripleDes(des::TdesEde3),
    Sm4(sm4::Sm4),
    Tea(crate::tea::Tea),
    Xtea(crate::tea::Xtea),
    Salsa20([u8; 32]),
    Xor(Box<[u8; MTU_LIMIT]>),
}

/// A datagram cipher with its key: encrypts and decrypts whole datagrams in place.
#[derive(Clone)]
pub struct Crypt {
    kind: CryptKind,
    cipher: Cipher,
}

impl fmt::Debug for Crypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypt")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn key16(pass: &[u8; 32]) -> [u8; 16] {
    pass[..16].try_into().expect("16 of 32 bytes")
}

fn key_init<C: KeyInit>(key: &[u8]) -> C {
    C::new_from_slice(key).expect("key length matches the cipher")
}

impl Crypt {
    /// A cipher of `kind` keyed from kcptun's `--key` string.
    pub fn new(kind: CryptKind, key: &str) -> Self {
        Self::with_derived_key(kind, &derive_key(key))
    }

    /// A cipher of `kind` from an already derived 32-byte key ([`derive_key`]).
    pub fn with_derived_key(kind: CryptKind, pass: &[u8; 32]) -> Self {
        let cipher = match kind {
            CryptKind::None => Cipher::None,
            CryptKind::Aes => Cipher::Aes256(key_init(pass)),
            CryptKind::Aes128 => Cipher::Aes128(key_init(&pass[..16])),
            CryptKind::Aes192 => Cipher::Aes192(key_init(&pass[..24])),
            CryptKind::Blowfish => Cipher::Blowfish(Box::new(key_init(pass))),
            CryptKind::Twofish => Cipher::Twofish(key_init(pass)),
            CryptKind::Cast5 => Cipher::Cast5(key_init(&pass[..16])),
            CryptKind::TripleDes => Cipher::TripleDes(key_init(&pass[..24])),
            CryptKind::Sm4 => Cipher::Sm4(key_init(&pass[..16])),
            CryptKind::Tea => Cipher::Tea(crate::tea::Tea::new(&key16(pass), TEA_ROUNDS)),
            CryptKind::Xtea => Cipher::Xtea(crate::tea::Xtea::new(&key16(pass))),
            CryptKind::Salsa20 => Cipher::Salsa20(*pass),
            CryptKind::Xor => {
                let mut table = Box::new([0u8; MTU_LIMIT]);
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(pass, XOR_SALT, XOR_ITERATIONS, &mut table[..]);
                Cipher::Xor(table)
            }
        };
        Crypt { kind, cipher }
    }

    /// Which cipher this is.
    pub fn kind(&self) -> CryptKind {
        self.kind
    }

    /// Encrypts a whole datagram in place.
    pub fn encrypt(&self, buf: &mut [u8]) {
        self.apply(buf, true)
    }

    /// Decrypts a whole datagram in place.
    pub fn decrypt(&self, buf: &mut [u8]) {
        self.apply(buf, false)
    }

    fn apply(&self, buf: &mut [u8], encrypt: bool) {
        match &self.cipher {
            Cipher::None => {}
            Cipher::Aes128(c) => cfb(c, buf, encrypt),
            Cipher::Aes192(c) => cfb(c, buf, encrypt),
            Cipher::Aes256(c) => cfb(c, buf, encrypt),
            Cipher::Blowfish(c) => cfb(&**c, buf, encrypt),
            Cipher::Twofish(c) => cfb(c, buf, encrypt),
            Cipher::Cast5(c) => cfb(c, buf, encrypt),
            Cipher::TripleDes(c) => cfb(c, buf, encrypt),
            Cipher::Sm4(c) => cfb(c, buf, encrypt),
            Cipher::Tea(c) => crate::tea::cfb(c, IV_64, buf, encrypt),
            Cipher::Xtea(c) => crate::tea::cfb(c, IV_64, buf, encrypt),
            Cipher::Salsa20(key) => {
                if buf.len() > 8 {
                    let (nonce, rest) = buf.split_at_mut(8);
                    let mut s = salsa20::Salsa20::new(key.into(), (&*nonce).into());
                    s.apply_keystream(rest);
                }
            }
            Cipher::Xor(table) => {
                for (b, t) in buf.iter_mut().zip(table.iter()) {
                    *b ^= t;
                }
            }
        }
    }

    /// Fills in the header of a datagram whose payload starts at [`HEADER_SIZE`] (random
    /// nonce, CRC32 of the payload) and encrypts it in place.
    pub fn seal(&self, datagram: &mut [u8], rng: &mut impl RngCore) {
        assert!(
            datagram.len() >= HEADER_SIZE,
            "datagram has room for the header"
        );
        rng.fill_bytes(&mut datagram[..NONCE_SIZE]);
        let crc = crc32fast::hash(&datagram[HEADER_SIZE..]);
        datagram[NONCE_SIZE..HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
        self.encrypt(datagram);
    }

    /// Decrypts a received datagram in place and checks its CRC; returns the payload after
    /// the header.
    pub fn open<'a>(&self, datagram: &'a mut [u8]) -> Result<&'a mut [u8], OpenError> {
        if datagram.len() < HEADER_SIZE {
            return Err(OpenError::TooShort);
        }
        if datagram.len() > MTU_LIMIT {
            return Err(OpenError::TooLong);
        }
        self.decrypt(datagram);
        let (header, payload) = datagram.split_at_mut(HEADER_SIZE);
        let want = u32::from_le_bytes(header[NONCE_SIZE..].try_into().expect("4 bytes"));
        if crc32fast::hash(payload) != want {
            return Err(OpenError::BadChecksum);
        }
        Ok(payload)
    }
}

/// Full-block CFB with kcptun's fixed IV; the trailing partial block is XORed with the next
/// keystream block.
fn cfb<C>(cipher: &C, buf: &mut [u8], encrypt: bool)
where
    C: BlockEncrypt + BlockCipher + Clone,
{
    let bs = C::block_size();
    let iv = aes::cipher::generic_array::GenericArray::from_slice(&IV[..bs]);
    if encrypt {
        cfb_mode::Encryptor::<C>::inner_iv_init(cipher.clone(), iv).encrypt(buf);
    } else {
        cfb_mode::Decryptor::<C>::inner_iv_init(cipher.clone(), iv).decrypt(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Known answers computed independently with Python's hashlib and `cryptography` (CFB).
    const PASS: &str = "25d7d7bd51050742d8d791f2b653c6c8b2366b7e25a124cf7a2e12eaf4ffa444";

    #[test]
    fn key_derivation_matches_pbkdf2_sha1() {
        assert_eq!(hex(&derive_key("it's a secrect")), PASS);
    }

    #[test]
    fn aes_cfb_known_answers() {
        let plain: Vec<u8> = (0..37).collect();
        for (kind, want) in [
            (
                CryptKind::Aes128,
                "ddd7e0a7981ba3e2a7f6d51f2a2663184531e844fe0ddec4d65df15b489c5ba3e15ff1881e",
            ),
            (
                CryptKind::Aes192,
                "b9db59f7dd1bce4922855fb7f8f8e261a4937c0d7360349b24871684eb7bca422017d9f232",
            ),
            (
                CryptKind::Aes,
                "86834343335b168ca911bf584a05f9900e1c6fda2c822a981eb60909411c15690afb116b0d",
            ),
        ] {
            let c = Crypt::new(kind, "it's a secrect");
            let mut buf = plain.clone();
            c.encrypt(&mut buf);
            assert_eq!(hex(&buf), want, "{kind}");
            c.decrypt(&mut buf);
            assert_eq!(buf, plain);
        }
    }

    #[test]
    fn xor_table_known_answer() {
        let c = Crypt::new(CryptKind::Xor, "it's a secrect");
        let mut buf = vec![0u8; MTU_LIMIT];
        c.encrypt(&mut buf);
        assert_eq!(hex(&buf[..16]), "0ffe8987ad94757154791bc8fa01b62c");
        assert_eq!(hex(&buf[1484..]), "df44607871b19a362f7640db6a160114");
    }

    #[test]
    fn every_kind_round_trips_and_rejects_other_keys() {
        let mut rng = rand::thread_rng();
        for kind in CryptKind::ALL {
            let c = Crypt::new(kind, "k1");
            for len in [HEADER_SIZE, HEADER_SIZE + 1, 100, 1350] {
                let mut d: Vec<u8> = (0..len).map(|i| i as u8).collect();
                c.seal(&mut d, &mut rng);
                let mut copy = d.clone();
                let payload = c.open(&mut copy).expect("opens");
                assert!(payload
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i + HEADER_SIZE) as u8));
                if kind != CryptKind::None && len > HEADER_SIZE {
                    let other = Crypt::new(kind, "k2");
                    assert_eq!(
                        other.open(&mut d.clone()),
                        Err(OpenError::BadChecksum),
                        "{kind}"
                    );
                }
            }
            assert_eq!(kind.name().parse::<CryptKind>(), Ok(kind));
        }
        assert!("rc4".parse::<CryptKind>().is_err());
    }

    #[test]
    fn hostile_datagrams_are_errors_not_panics() {
        let mut rng = rand::thread_rng();
        for kind in CryptKind::ALL {
            let c = Crypt::new(kind, "k");
            for len in 0..HEADER_SIZE {
                assert_eq!(c.open(&mut vec![7u8; len]), Err(OpenError::TooShort));
            }
            assert_eq!(
                c.open(&mut vec![0u8; MTU_LIMIT + 1]),
                Err(OpenError::TooLong)
            );
            let mut garbage = vec![0u8; 200];
            rng.fill_bytes(&mut garbage);
            // A random datagram passes a CRC32 with probability 2^-32.
            assert_eq!(c.open(&mut garbage), Err(OpenError::BadChecksum));
            // One flipped bit anywhere is caught.
            let mut d = vec![1u8; 64];
            c.seal(&mut d, &mut rng);
            d[40] ^= 0x10;
            assert_eq!(c.open(&mut d), Err(OpenError::BadChecksum));
        }
    }
}
