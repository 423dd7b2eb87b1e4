//! Signing and verifying keys: HMAC-SHA256 secrets and Ed25519 key pairs.
//!
//! Formats, as operators write them (docs/signing.md):
//! - HMAC secret: `base64:<standard base64>` for binary secrets (what
//!   `mft-gateway signing-key generate` writes), otherwise the UTF-8 bytes
//!   of the text itself; at least 32 bytes either way.
//! - Ed25519 private key: PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
//! - Ed25519 public key: SPKI PEM (`openssl pkey -pubout`) or the raw 32
//!   bytes in base64.
//!
//! A key id defaults to a fingerprint of the key material, so the gateway and
//! the backend agree on it without anyone naming keys. No `Debug` output here
//! ever shows key material.

use super::Algorithm;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use std::fmt;

/// Shortest HMAC secret accepted, in bytes: the key id is derived from the
/// secret, so a guessable secret would be guessable from the id too.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key could not be read or made. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The HMAC secret is too short.
    #[error("HMAC secret has {len} bytes; at least {MIN_HMAC_SECRET_BYTES} are required")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// `base64:` was given but the rest is not base64.
    #[error("the text after \"base64:\" is not valid base64")]
    Base64,
    /// No PEM block with the expected label.
    #[error("expected a PEM block \"-----BEGIN {0}-----\"")]
    NotPem(&'static str),
    /// The private key is not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 private key in PKCS#8 (openssl genpkey -algorithm ed25519)")]
    NotEd25519PrivateKey,
    /// The public key is neither an Ed25519 SPKI PEM nor 32 raw bytes.
    #[error("not an Ed25519 public key (SPKI PEM, or 32 bytes in base64)")]
    NotEd25519PublicKey,
    /// A key id is empty or not printable ASCII.
    #[error("a key id must be 1 to 128 printable ASCII characters without '\"' or '\\\\'")]
    BadKeyId,
    /// A verifier needs at least one key.
    #[error("no verification key given")]
    NoKeys,
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
}

fn check_key_id(id: &str) -> Result<(), KeyError> {
    // The id goes into an sf-string: keeping it to printable ASCII without
    // quote and backslash means it never needs escaping.
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKeyId)
    }
}

fn fingerprint(domain: &[u8], material: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(domain);
    h.update([0u8]);
    h.update(material);
    let digest = h.finalize();
    let mut s = String::with_capacity(16);
    for b in &digest[..8] {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    s
}

/// The default key id of an HMAC secret: the first 16 hex digits of
/// SHA-256(`"mft-gateway hmac-sha256 key id"` ‖ 0x00 ‖ secret).
pub fn hmac_key_id(secret: &[u8]) -> String {
    fingerprint(b"mft-gateway hmac-sha256 key id", secret)
}

/// The default key id of an Ed25519 key: the first 16 hex digits of
/// SHA-256(`"mft-gateway ed25519 key id"` ‖ 0x00 ‖ 32-byte public key).
pub fn ed25519_key_id(public_key: &[u8]) -> String {
    fingerprint(b"mft-gateway ed25519 key id", public_key)
}

/// The bytes of an HMAC secret as written: `base64:...` or literal text.
pub fn hmac_secret_from_text(text: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = match text.strip_prefix("base64:") {
        Some(b64) => {
            let b64 = b64.trim();
            STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')))
                .map_err(|_| KeyError::Base64)?
        }
        None => text.as_bytes().to_vec(),
    };
    if bytes.len() < MIN_HMAC_SECRET_BYTES {
        return Err(KeyError::TooShort { len: bytes.len() });
    }
    Ok(bytes)
}

/// A fresh 256-bit HMAC secret in the `base64:` form.
pub fn generate_hmac_secret() -> Result<String, KeyError> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| KeyError::Random)?;
    Ok(format!("base64:{}", STANDARD.encode(secret)))
}

/// A fresh Ed25519 private key as PKCS#8 v1 PEM, the form openssl writes and
/// every library reads.
pub fn generate_ed25519_pem() -> Result<String, KeyError> {
    let mut der = [0u8; 48];
    der[..16].copy_from_slice(&PKCS8_V1_ED25519_PREFIX);
    SystemRandom::new()
        .fill(&mut der[16..])
        .map_err(|_| KeyError::Random)?;
    Ok(pem_encode("PRIVATE KEY", &der))
}

/// The body of the first PEM block labelled `label`, decoded.
fn pem_decode(text: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or(KeyError::NotPem(label))? + begin.len();
    let stop = text[start..].find(&end).ok_or(KeyError::NotPem(label))? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).map_err(|_| KeyError::NotPem(label))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The SPKI PEM of a 32-byte Ed25519 public key.
pub fn ed25519_public_pem(public_key: &[u8; 32]) -> String {
    let mut der = [0u8; 44];
    der[..12].copy_from_slice(&SPKI_ED25519_PREFIX);
    der[12..].copy_from_slice(public_key);
    pem_encode("PUBLIC KEY", &der)
}

enum SigningInner {
    Hmac(ring::hmac::Key),
    Ed25519(Ed25519KeyPair),
}

/// The gateway's key: signs signature bases.
pub struct SigningKey {
    id: String,
    inner: SigningInner,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HMAC-SHA256 key; `key_id` `None` uses [`hmac_key_id`].
    pub fn hmac(secret: &[u8], key_id: Option<&str>) -> Result<SigningKey, KeyError> {
        let verifying = VerifyingKey::hmac(secret, key_id)?;
        Ok(SigningKey {
            id: verifying.id.clone(),
            inner: SigningInner::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)),
            verifying,
        })
    }

    /// An Ed25519 key from PKCS#8 PEM; `key_id` `None` uses [`ed25519_key_id`].
    pub fn ed25519_from_pem(pem: &str, key_id: Option<&str>) -> Result<SigningKey, KeyError> {
        let der = pem_decode(pem, "PRIVATE KEY")?;
        SigningKey::ed25519_from_pkcs8(&der, key_id)
    }

    /// An Ed25519 key from PKCS#8 DER (v1 or v2).
    pub fn ed25519_from_pkcs8(der: &[u8], key_id: Option<&str>) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| KeyError::NotEd25519PrivateKey)?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        let id = match key_id {
            Some(id) => {
                check_key_id(id)?;
                id.to_string()
            }
            None => ed25519_key_id(&public),
        };
        Ok(SigningKey {
            verifying: VerifyingKey {
                id: id.clone(),
                inner: VerifyingInner::Ed25519(public),
            },
            id,
            inner: SigningInner::Ed25519(pair),
        })
    }

    /// The key id signed as `keyid`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            SigningInner::Hmac(_) => Algorithm::HmacSha256,
            SigningInner::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The matching verification key (for Ed25519, only the public half).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }

    /// For Ed25519: the public key as SPKI PEM, to give to the backend.
    pub fn public_key_pem(&self) -> Option<String> {
        match &self.verifying.inner {
            VerifyingInner::Ed25519(public) => Some(ed25519_public_pem(public)),
            VerifyingInner::Hmac(_) => None,
        }
    }

    /// Signs `base` and appends the signature in standard base64 to `out`.
    pub(crate) fn sign_base64_into(&self, base: &[u8], out: &mut String) {
        match &self.inner {
            SigningInner::Hmac(key) => {
                STANDARD.encode_string(ring::hmac::sign(key, base).as_ref(), out)
            }
            SigningInner::Ed25519(pair) => STANDARD.encode_string(pair.sign(base).as_ref(), out),
        }
    }
}

#[derive(Clone)]
enum VerifyingInner {
    Hmac(ring::hmac::Key),
    Ed25519([u8; 32]),
}

/// A key the backend accepts signatures from.
#[derive(Clone)]
pub struct VerifyingKey {
    id: String,
    inner: VerifyingInner,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HMAC-SHA256 secret; `key_id` `None` uses [`hmac_key_id`].
    pub fn hmac(secret: &[u8], key_id: Option<&str>) -> Result<VerifyingKey, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        let id = match key_id {
            Some(id) => {
                check_key_id(id)?;
                id.to_string()
            }
            None => hmac_key_id(secret),
        };
        Ok(VerifyingKey {
            id,
            inner: VerifyingInner::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)),
        })
    }

    /// An Ed25519 public key: SPKI PEM, or the 32 raw bytes in base64.
    pub fn ed25519_public(text: &str, key_id: Option<&str>) -> Result<VerifyingKey, KeyError> {
        let raw = if text.contains("-----BEGIN") {
            let der = pem_decode(text, "PUBLIC KEY")?;
            match der.strip_prefix(&SPKI_ED25519_PREFIX[..]) {
                Some(k) => k.to_vec(),
                None => return Err(KeyError::NotEd25519PublicKey),
            }
        } else {
            let t = text.trim();
            STANDARD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
                .map_err(|_| KeyError::NotEd25519PublicKey)?
        };
        let public: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::NotEd25519PublicKey)?;
        let id = match key_id {
            Some(id) => {
                check_key_id(id)?;
                id.to_string()
            }
            None => ed25519_key_id(&public),
        };
        Ok(VerifyingKey {
            id,
            inner: VerifyingInner::Ed25519(public),
        })
    }

    /// The key id matched against `keyid`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            VerifyingInner::Hmac(_) => Algorithm::HmacSha256,
            VerifyingInner::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Whether `signature` is valid for `base`; HMAC compared in constant time.
    pub(crate) fn verify(&self, base: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            VerifyingInner::Hmac(key) => ring::hmac::verify(key, base, signature).is_ok(),
            VerifyingInner::Ed25519(public) => UnparsedPublicKey::new(&ED25519, public)
                .verify(base, signature)
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_secret_forms() {
        let raw = "0123456789abcdef0123456789abcdef";
        assert_eq!(hmac_secret_from_text(raw).unwrap(), raw.as_bytes());
        assert_eq!(
            hmac_secret_from_text("short"),
            Err(KeyError::TooShort { len: 5 })
        );
        let generated = generate_hmac_secret().unwrap();
        assert_eq!(hmac_secret_from_text(&generated).unwrap().len(), 32);
        assert_eq!(hmac_secret_from_text("base64:***"), Err(KeyError::Base64));
    }

    #[test]
    fn generated_ed25519_round_trips_through_pem() {
        let pem = generate_ed25519_pem().unwrap();
        let key = SigningKey::ed25519_from_pem(&pem, None).unwrap();
        let public = key.public_key_pem().unwrap();
        let verifying = VerifyingKey::ed25519_public(&public, None).unwrap();
        assert_eq!(verifying.id(), key.id());
        assert_eq!(key.id().len(), 16);
        let mut sig = String::new();
        key.sign_base64_into(b"base", &mut sig);
        let sig = STANDARD.decode(sig).unwrap();
        assert!(verifying.verify(b"base", &sig));
        assert!(!verifying.verify(b"other", &sig));
    }

    #[test]
    fn debug_never_shows_material() {
        let key = SigningKey::hmac(b"an hmac secret of thirty-two b!!", None).unwrap();
        let shown = format!("{key:?} {:?}", key.verifying_key());
        assert!(!shown.contains("thirty"), "{shown}");
        assert!(shown.contains(key.id()));
    }

    #[test]
    fn key_ids_are_validated() {
        let secret = [7u8; 32];
        assert_eq!(
            SigningKey::hmac(&secret, Some("a\"b")).unwrap_err(),
            KeyError::BadKeyId
        );
        assert_eq!(
            SigningKey::hmac(&secret, Some("")).unwrap_err(),
            KeyError::BadKeyId
        );
        assert_eq!(
            SigningKey::hmac(&secret, Some("gw-2026")).unwrap().id(),
            "gw-2026"
        );
        assert_eq!(
            VerifyingKey::ed25519_public("not a key", None).unwrap_err(),
            KeyError::NotEd25519PublicKey
        );
    }
}
