//! Client authentication for the TLS tunnel: a shared secret, proved without being sent.
//!
//! Right after the TLS handshake the client sends [`PROOF_LEN`] bytes:
//! HMAC-SHA256(secret, EKM), where EKM is 32 bytes of TLS exporter keying material
//! (RFC 8446 section 7.5) under the label [`EXPORTER_LABEL`]. EKM is unique to this TLS
//! connection and known only to its two ends, so a proof cannot be replayed on another
//! connection or relayed by someone in between, and it tells nothing about the secret. The
//! server checks it in constant time and answers one byte: [`ACCEPTED`], and smux starts; or
//! [`REFUSED`], and it closes. The server reads nothing of smux before that, so no stream of an
//! unauthenticated client ever reaches the target.

use std::{fmt, io, path::Path};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::files;

/// Length of the client's proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;
/// TLS exporter label of the proof's keying material.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-rsmux tunnel auth v1";
/// The server's answer to a correct proof.
pub const ACCEPTED: u8 = 0x01;
/// The server's answer to a wrong proof (it closes after it).
pub const REFUSED: u8 = 0x00;
/// File name of the generated secret in the TLS directory.
pub const SECRET_FILE: &str = "tunnel-secret";
/// Environment variable that holds the secret (64 hex digits) when no `--secret-file` is
/// given.
pub const SECRET_ENV: &str = "RSMUX_SECRET";

/// Length of a secret in bytes (written as twice as many hex digits).
const SECRET_LEN: usize = 32;

/// The shared secret: 32 bytes, written as 64 hex digits.
#[derive(Clone)]
pub struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses 64 hex digits (surrounding whitespace, such as a final newline, is ignored);
    /// `origin` names where the text came from in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Secret, String> {
        let t = text.trim();
        let mut out = [0u8; SECRET_LEN];
        if t.len() != 2 * SECRET_LEN || hex::decode_to_slice(t, &mut out).is_err() {
            let what = if t.chars().all(|c| c.is_ascii_hexdigit()) {
                format!("{} hex digits", t.len())
            } else {
                "text that is not hex".to_string()
            };
            return Err(format!(
                "{origin}: expected a secret of 64 hex digits (32 bytes, as the server generates, \
                 or `openssl rand -hex 32`), found {what}"
            ));
        }
        Ok(Secret(out))
    }

    /// Reads the secret from a file; `flag` names where the path came from.
    pub fn from_file(flag: &str, path: &Path) -> Result<Secret, String> {
        let origin = format!("{flag} {}", path.display());
        let bytes = files::read_private(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{origin}: not text (64 hex digits)"))?;
        Secret::parse(&text, &origin)
    }

    /// The secret in [`SECRET_ENV`], if that is set.
    pub fn from_env() -> Option<Result<Secret, String>> {
        let value = std::env::var_os(SECRET_ENV)?;
        Some(match value.into_string() {
            Ok(text) => Secret::parse(&text, SECRET_ENV),
            Err(_) => Err(format!("{SECRET_ENV}: not text (64 hex digits)")),
        })
    }

    /// Reads the secret kept in `dir`, or generates one there (file 0600). Returns it and
    /// whether it was generated now.
    pub fn load_or_generate(dir: &Path) -> Result<(Secret, bool), String> {
        let path = dir.join(SECRET_FILE);
        if files::exists(&path) {
            return Ok((Secret::from_file("--tls-dir", &path)?, false));
        }
        let mut bytes = [0u8; SECRET_LEN];
        super::tls::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| "no random numbers from the operating system".to_string())?;
        let secret = Secret(bytes);
        files::create_private_dir(dir)
            .map_err(|e| format!("--tls-dir {}: cannot create it: {e}", dir.display()))?;
        files::write_private(&path, format!("{}\n", hex::encode(secret.0)).as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        Ok((secret, true))
    }

    /// The MAC of `keying_material` under this secret.
    fn mac(&self, keying_material: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(keying_material);
        mac
    }
}

/// The TLS exporter keying material of a connection (client or server side alike).
fn keying_material<D>(conn: &rustls::ConnectionCommon<D>) -> io::Result<[u8; 32]> {
    conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(|e| io::Error::other(format!("TLS exporter: {e}")))
}

/// Why the client's authentication failed.
#[derive(Debug)]
pub enum ClientAuthError {
    /// The server answered [`REFUSED`]: the secret is not the server's.
    Refused,
    /// The connection failed or the server answered something else.
    Io(io::Error),
}

impl fmt::Display for ClientAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuthError::Refused => f.write_str(
                "the server refused our secret (not the one in the server's --secret-file, \
                 RSMUX_SECRET or tls dir)",
            ),
            ClientAuthError::Io(e) => write!(f, "authentication failed: {e}"),
        }
    }
}

/// Client side: sends the proof and waits for the server's answer.
pub async fn prove<IO>(
    tls: &mut tokio_rustls::client::TlsStream<IO>,
    secret: &Secret,
) -> Result<(), ClientAuthError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let ekm = keying_material(&**tls.get_ref().1).map_err(ClientAuthError::Io)?;
    let proof = secret.mac(&ekm).finalize().into_bytes();
    tls.write_all(&proof).await.map_err(ClientAuthError::Io)?;
    tls.flush().await.map_err(ClientAuthError::Io)?;
    let mut answer = [0u8; 1];
    match tls.read_exact(&mut answer).await {
        Ok(_) if answer[0] == ACCEPTED => Ok(()),
        Ok(_) if answer[0] == REFUSED => Err(ClientAuthError::Refused),
        Ok(_) => Err(ClientAuthError::Io(io::Error::other(format!(
            "unexpected answer {:#04x} (not an rsmux tunnel server?)",
            answer[0]
        )))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ClientAuthError::Io(io::Error::new(
                e.kind(),
                "the server closed the connection without an answer",
            )))
        }
        Err(e) => Err(ClientAuthError::Io(e)),
    }
}

/// What the server made of a client's proof.
#[derive(Debug)]
pub enum ServerVerdict {
    /// Right secret: [`ACCEPTED`] was sent.
    Accepted,
    /// Wrong secret: [`REFUSED`] was sent.
    WrongSecret,
    /// The client closed the connection before a whole proof (no secret at all, or not an
    /// rsmux client).
    NoProof(usize),
}

/// Server side: reads the client's proof, checks it in constant time and answers.
pub async fn check<IO>(
    tls: &mut tokio_rustls::server::TlsStream<IO>,
    secret: &Secret,
) -> io::Result<ServerVerdict>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let ekm = keying_material(&**tls.get_ref().1)?;
    let mut proof = [0u8; PROOF_LEN];
    let mut got = 0;
    while got < PROOF_LEN {
        match tls.read(&mut proof[got..]).await {
            Ok(0) => return Ok(ServerVerdict::NoProof(got)),
            Ok(n) => got += n,
            // A client that leaves without close_notify looks the same as one that closes.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(ServerVerdict::NoProof(got))
            }
            Err(e) => return Err(e),
        }
    }
    // `verify_slice` compares in constant time.
    let right = secret.mac(&ekm).verify_slice(&proof).is_ok();
    tls.write_all(&[if right { ACCEPTED } else { REFUSED }])
        .await?;
    tls.flush().await?;
    Ok(if right {
        ServerVerdict::Accepted
    } else {
        ServerVerdict::WrongSecret
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_64_hex_digits() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(Secret::parse(hex64, "x").is_ok());
        assert!(Secret::parse(&format!("  {hex64}\n"), "x").is_ok());
        let e = Secret::parse(&hex64[..62], "--secret-file s").unwrap_err();
        assert!(e.starts_with("--secret-file s: "), "{e}");
        assert!(e.contains("found 62 hex digits"), "{e}");
        let e = Secret::parse("correct horse battery staple", "RSMUX_SECRET").unwrap_err();
        assert!(e.contains("not hex"), "{e}");
        assert!(Secret::parse("", "x").is_err());
        assert_eq!(
            format!("{:?}", Secret::parse(hex64, "x").unwrap()),
            "Secret(..)"
        );
    }

    #[test]
    fn the_proof_depends_on_secret_and_keying_material() {
        let a = Secret([1; 32]);
        let b = Secret([2; 32]);
        let tag = a.mac(b"ekm one").finalize().into_bytes();
        assert!(a.mac(b"ekm one").verify_slice(&tag).is_ok());
        assert!(b.mac(b"ekm one").verify_slice(&tag).is_err());
        assert!(a.mac(b"ekm two").verify_slice(&tag).is_err());
        assert!(a.mac(b"ekm one").verify_slice(&tag[..31]).is_err());
    }
}
