//! The gateway's side: one signature per forwarded request.

use super::base::{write_base, write_gateway_base, BaseError, GATEWAY_DERIVED};
use super::keys::SigningKey;
use super::params::{write_param, ParamValue, SignParams};
use super::{unix_seconds, RequestView, LABEL, TAG};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Most header fields a gateway signature covers (the proxy passes at most
/// a handful; the bound keeps the component list on the stack).
pub const MAX_FIELDS: usize = 12;

/// Bytes of randomness in a nonce (128 bits).
const NONCE_BYTES: usize = 16;

/// A request could not be signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// A component could not go into the signature base.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// More fields than [`MAX_FIELDS`].
    #[error("more than {MAX_FIELDS} header fields to cover")]
    TooManyFields,
    /// The system random source failed (no nonce).
    #[error("the system random source failed")]
    Random,
}

/// The two header values to set on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Signature-Input` value, e.g. `mft=("@method" ...);created=...`.
    pub signature_input: String,
    /// `Signature` value, e.g. `mft=:base64:`.
    pub signature: String,
}

/// Signs requests with one key; built once at startup, shared by all workers.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    ttl: Duration,
    rng: SystemRandom,
    /// Random per signer, drawn once from the OS.
    nonce_prefix: OnceLock<[u8; 8]>,
    /// Counts signatures; with the prefix it makes every nonce unique.
    nonce_counter: AtomicU64,
    /// `;keyid="…";alg="…"`: the same in every signature, serialized once.
    key_params: String,
    /// `;tag="mft-gateway"`, likewise.
    tag_param: String,
}

impl Signer {
    /// A signer whose signatures are valid for `ttl` after creation.
    pub fn new(key: SigningKey, ttl: Duration) -> Signer {
        let mut key_params = String::new();
        write_param(&mut key_params, "keyid", ParamValue::String(key.id()));
        let alg = key.algorithm().as_str();
        write_param(&mut key_params, "alg", ParamValue::String(alg));
        let mut tag_param = String::new();
        write_param(&mut tag_param, "tag", ParamValue::String(TAG));
        Signer {
            key_params,
            tag_param,
            key,
            ttl,
            rng: SystemRandom::new(),
            nonce_prefix: OnceLock::new(),
            nonce_counter: AtomicU64::new(0),
        }
    }

    /// A fresh 128-bit nonce: a random 64-bit prefix per signer (so
    /// instances and restarts never collide) and a 64-bit counter.
    ///
    /// The nonce is for replay detection, so it must be unique, not secret:
    /// it is inside the signed parameters and cannot be altered. Drawing all
    /// 128 bits from the OS would cost a `getrandom` system call per request.
    fn next_nonce(&self) -> Result<[u8; NONCE_BYTES], SignError> {
        let prefix = match self.nonce_prefix.get() {
            Some(p) => *p,
            None => {
                let mut p = [0u8; 8];
                self.rng.fill(&mut p).map_err(|_| SignError::Random)?;
                *self.nonce_prefix.get_or_init(|| p)
            }
        };
        let n = self.nonce_counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; NONCE_BYTES];
        out[..8].copy_from_slice(&prefix);
        out[8..].copy_from_slice(&n.to_be_bytes());
        Ok(out)
    }

    /// The key in use.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Validity of each signature.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs `req` at `now`: covers `@method`, `@authority`, `@path`,
    /// `@query` and every entry of `req.fields`, with `created`, `expires`,
    /// `keyid`, `alg`, a fresh 128-bit `nonce` and `tag="mft-gateway"`.
    pub fn sign(
        &self,
        req: &RequestView<'_>,
        now: SystemTime,
    ) -> Result<SignatureHeaders, SignError> {
        let nonce_bytes = self.next_nonce()?;
        let mut nonce_buf = [0u8; 24];
        let n = URL_SAFE_NO_PAD
            .encode_slice(nonce_bytes, &mut nonce_buf)
            .map_err(|_| SignError::Random)?;
        let nonce = std::str::from_utf8(&nonce_buf[..n]).map_err(|_| SignError::Random)?;
        let created = unix_seconds(now);
        let expires = created.saturating_add(self.ttl.as_secs().max(1));
        if req.fields.len() > MAX_FIELDS {
            return Err(SignError::TooManyFields);
        }
        // The parameters in SignParams::write's order, the constant ones
        // serialized at construction (a test holds the bytes equal).
        let int = |n: u64| ParamValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        self.finish(LABEL, req, |base| {
            write_gateway_base(base, req, |out| {
                write_param(out, "created", int(created));
                write_param(out, "expires", int(expires));
                out.push_str(&self.key_params);
                write_param(out, "nonce", ParamValue::String(nonce));
                out.push_str(&self.tag_param);
            })
        })
    }

    /// Signs the given components with explicit parameters (deterministic:
    /// used for the RFC test vectors and benchmarks).
    pub fn sign_components(
        &self,
        label: &str,
        req: &RequestView<'_>,
        components: &[&str],
        params: &SignParams<'_>,
    ) -> Result<SignatureHeaders, SignError> {
        self.finish(label, req, |base| {
            write_base(base, req, components, |out| params.write(out))
        })
    }

    /// Writes the base with `write`, which returns where the inner list
    /// starts, and makes both header values from it.
    fn finish(
        &self,
        label: &str,
        req: &RequestView<'_>,
        write: impl FnOnce(&mut String) -> Result<usize, BaseError>,
    ) -> Result<SignatureHeaders, SignError> {
        // One buffer for the base; the Signature-Input value is its tail.
        let estimate = 160
            + (GATEWAY_DERIVED.len() + req.fields.len()) * 24
            + self.key_params.len()
            + req.path.len()
            + req.query.map_or(0, str::len)
            + req.authority.len()
            + req
                .fields
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        let mut base = String::with_capacity(estimate);
        let list_start = write(&mut base)?;
        let mut signature_input = String::with_capacity(label.len() + 1 + base.len() - list_start);
        signature_input.push_str(label);
        signature_input.push('=');
        signature_input.push_str(&base[list_start..]);
        let mut signature = String::with_capacity(label.len() + 92);
        signature.push_str(label);
        signature.push_str("=:");
        self.key.sign_base64_into(base.as_bytes(), &mut signature);
        signature.push(':');
        Ok(SignatureHeaders {
            signature_input,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn signer() -> Signer {
        let key = SigningKey::hmac(&[7u8; 32], None).unwrap();
        Signer::new(key, Duration::from_secs(30))
    }

    #[test]
    fn sign_writes_what_sign_components_writes_for_the_same_parameters() {
        let s = signer();
        let fields = [("x-request-id", "r-1"), ("x-mft-principal", "key:ab")];
        let req = RequestView {
            method: "POST",
            authority: "Backend:8080",
            path: "/api/v1/files",
            query: Some("folder=in"),
            fields: &fields,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ours = s.sign(&req, now).unwrap();
        // The nonce is the only part not known beforehand: read it back.
        let nonce = ours
            .signature_input
            .split(";nonce=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        let params = SignParams {
            created: 1_700_000_000,
            expires: Some(1_700_000_030),
            key_id: Some(s.key().id()),
            alg: Some("hmac-sha256"),
            nonce: Some(nonce),
            tag: Some(TAG),
        };
        let names: Vec<&str> = GATEWAY_DERIVED
            .iter()
            .copied()
            .chain(fields.iter().map(|(n, _)| *n))
            .collect();
        let theirs = s.sign_components(LABEL, &req, &names, &params).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn nonces_are_unique_within_and_across_signers() {
        let (a, b) = (signer(), signer());
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(a.next_nonce().unwrap()));
            assert!(seen.insert(b.next_nonce().unwrap()));
        }
        // Two signers (instances, restarts) draw different prefixes.
        assert_ne!(a.next_nonce().unwrap()[..8], b.next_nonce().unwrap()[..8]);
    }
}
