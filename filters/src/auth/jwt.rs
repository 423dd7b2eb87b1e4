//! OAuth2/OIDC access tokens (JWS-signed JWTs).
//!
//! Verification is pinned by configuration, never steered by the token:
//!
//! - the header's `alg` must be one of [`JwtIssuerPolicy::algorithms`], so
//!   `none` (not even a known algorithm) can never pass;
//! - the key comes from the issuer's configured [`JwksKeys`], chosen by `kid`;
//!   `jku`, `jwk`, `x5u` and `x5c` in the header are ignored, so a token
//!   cannot bring its own key;
//! - the algorithm must fit the selected key's type, so an HS256 token is
//!   never checked against an RSA public key used as an HMAC secret (the
//!   classic HS/RS confusion), whatever the policy lists;
//! - the signature is checked before any claim is looked at, so the audit
//!   reasons `expired`, `wrong_audience`, ... only ever describe genuine tokens;
//! - time claims are checked against the caller's `now`, not the wall clock
//!   (which is why `jsonwebtoken` is used only for the signature).

use super::credential::MAX_CREDENTIAL_LEN;
use crate::decision::Rejection;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Smallest RSA modulus accepted from a JWKS, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Shortest HMAC secret accepted: RFC 7518 §3.2 asks for at least the hash size.
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Largest JWKS document accepted.
pub const MAX_JWKS_LEN: usize = 1024 * 1024;
/// Longest `kid` considered; longer ones are malformed, not unknown, so they
/// never trigger a JWKS refetch.
pub const MAX_KID_LEN: usize = 256;

/// How tokens from one issuer are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuerPolicy {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// Accepted `aud` values; the token's `aud` must contain at least one.
    /// An empty list accepts no token: a token minted for another API of the
    /// same issuer must never pass here.
    pub audience: Vec<String>,
    /// Accepted `alg` values, pinned.
    pub algorithms: Vec<Algorithm>,
    /// Claim holding the scopes (`scope` in RFC 8693/9068; Azure and Okta use
    /// `scp`). Either a space-separated string or an array of strings.
    pub scopes_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtIssuerPolicy {
    /// A policy with the `scope` claim and 60 seconds of leeway.
    pub fn new(issuer: &str, audience: &[&str], algorithms: &[Algorithm]) -> Self {
        JwtIssuerPolicy {
            issuer: issuer.to_string(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            algorithms: algorithms.to_vec(),
            scopes_claim: "scope".to_string(),
            leeway: Duration::from_secs(60),
        }
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// Scopes from the policy's scopes claim (empty if absent).
    pub scopes: Vec<String>,
    /// `exp`, so a cache of verified tokens never outlives the token.
    pub expires_at: SystemTime,
}

impl JwtIdentity {
    /// The principal forwarded to the backend (`jwt:<sub>`).
    pub fn principal(&self) -> String {
        format!("jwt:{}", self.subject)
    }
}

/// Why a token was refused. Every variant is a 401 to the client
/// ([`JwtError::rejection`]); [`JwtError::audit_reason`] tells the audit log why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    /// Not a well-formed JWS compact serialisation, or a claim of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not in the policy (or not an algorithm at all, like `none`).
    #[error("algorithm {0:?} is not allowed")]
    AlgNotAllowed(String),
    /// `alg` is allowed but does not fit the selected key's type.
    #[error("algorithm {0:?} does not fit the selected key")]
    KeyAlgMismatch(Algorithm),
    /// No key with this `kid`. The caller may refetch the JWKS once and retry;
    /// rate-limit that, or random kids become a stream of JWKS fetches.
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    /// The token has no `kid` and the key set has more than one key.
    #[error("token has no kid and the key set has several keys")]
    KidRequired,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is missing or not the policy's issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is missing or names none of the policy's audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim (`exp`, `sub`) is missing.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// The configured keys are unusable (JWKS document or HMAC secret).
    #[error("invalid keys: {0}")]
    InvalidKeys(String),
}

impl JwtError {
    /// Reason for the audit log.
    pub fn audit_reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) | JwtError::MissingClaim(_) => "malformed_jwt",
            JwtError::AlgNotAllowed(_) | JwtError::KeyAlgMismatch(_) => "alg_not_allowed",
            JwtError::UnknownKid(_) | JwtError::KidRequired => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::InvalidKeys(_) => "invalid_jwks",
        }
    }

    /// The 401 to answer with (`error="invalid_token"`, RFC 6750).
    pub fn rejection(&self) -> Rejection {
        Rejection::invalid_token(self.audit_reason())
    }
}

/// Which algorithms a key may verify. Finer than `AlgorithmFamily`: an EC key
/// is bound to its curve's one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

#[derive(Debug, Clone)]
struct KeyEntry {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, if it named one: then only that algorithm.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl KeyEntry {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The verification keys of one issuer.
#[derive(Debug, Clone)]
pub struct JwksKeys {
    keys: Vec<KeyEntry>,
    skipped: usize,
}

impl JwksKeys {
    /// Keys from a JWKS document (`{"keys": [...]}`).
    ///
    /// Keys that cannot verify signatures here are skipped, not fatal, since
    /// issuers publish encryption keys and new key types alongside signing
    /// keys: `use` other than `sig`, `key_ops` without `verify`, unknown
    /// `kty`/`crv`/`alg`, RSA below [`MIN_RSA_BITS`], and symmetric (`oct`)
    /// keys, which a public document must never carry (anyone could sign with
    /// them). A document with no usable key is an error.
    pub fn from_json(json: &[u8]) -> Result<JwksKeys, JwtError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(JwtError::InvalidKeys("JWKS document too large".into()));
        }
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(json)
            .map_err(|e| JwtError::InvalidKeys(format!("not a JWKS document: {e}")))?;
        let total = doc.keys.len();
        let keys: Vec<KeyEntry> = doc.keys.into_iter().filter_map(parse_jwk).collect();
        if keys.is_empty() {
            return Err(JwtError::InvalidKeys(format!(
                "none of the {total} keys can verify signatures"
            )));
        }
        Ok(JwksKeys {
            skipped: total - keys.len(),
            keys,
        })
    }

    /// One HMAC secret, for an issuer that signs with HS256/384/512.
    pub fn from_hmac_secret(kid: Option<String>, secret: &[u8]) -> Result<JwksKeys, JwtError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(JwtError::InvalidKeys(format!(
                "HMAC secret is shorter than {MIN_HMAC_SECRET_LEN} bytes"
            )));
        }
        Ok(JwksKeys {
            keys: vec![KeyEntry {
                kid,
                kind: KeyKind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret),
            }],
            skipped: 0,
        })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key (never true for a set built by this module).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of keys the JWKS document held that were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether a key with this `kid` is present.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&KeyEntry, JwtError> {
        match kid {
            Some(kid) => {
                let mut with_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if with_kid.peek().is_none() {
                    return Err(JwtError::UnknownKid(kid.to_string()));
                }
                with_kid
                    .find(|k| k.fits(alg))
                    .ok_or(JwtError::KeyAlgMismatch(alg))
            }
            None => match self.keys.as_slice() {
                [only] if only.fits(alg) => Ok(only),
                [_] => Err(JwtError::KeyAlgMismatch(alg)),
                _ => Err(JwtError::KidRequired),
            },
        }
    }
}

fn parse_jwk(value: Value) -> Option<KeyEntry> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return None,
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(a).ok()?),
    };
    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64url(&p.n)?;
            let e = b64url(&p.e)?;
            if bit_len(&n) < MIN_RSA_BITS || e.is_empty() || e.len() > 8 {
                return None;
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (kind, len) = match p.curve {
                EllipticCurve::P256 => (KeyKind::P256, 32),
                EllipticCurve::P384 => (KeyKind::P384, 48),
                _ => return None,
            };
            let (x, y) = (b64url(&p.x)?, b64url(&p.y)?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return None;
            }
            let x = b64url(&p.x)?;
            if x.len() != 32 {
                return None;
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    Some(KeyEntry {
        kid: jwk.common.key_id,
        kind,
        alg,
        key,
    })
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    // Some issuers pad their JWK values although RFC 7518 says not to.
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn bit_len(big_endian: &[u8]) -> usize {
    let Some(first) = big_endian.iter().position(|&b| b != 0) else {
        return 0;
    };
    (big_endian.len() - first) * 8 - big_endian[first].leading_zeros() as usize
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// The three segments of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_CREDENTIAL_LEN {
        return Err(JwtError::Malformed("token too long"));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(JwtError::Malformed("not three segments"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(JwtError::Malformed("not three segments"))?;
    if payload.contains('.') {
        return Err(JwtError::Malformed("not three segments"));
    }
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Verifies `token` for the issuer described by `policy` and `keys` at `now`.
pub fn verify(
    token: &str,
    policy: &JwtIssuerPolicy,
    keys: &JwksKeys,
    now: SystemTime,
) -> Result<JwtIdentity, JwtError> {
    let parts = split(token)?;
    let header_json = URL_SAFE_NO_PAD
        .decode(parts.header)
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|_| JwtError::Malformed("header is not a JWS header"))?;

    let alg = Algorithm::from_str(&header.alg)
        .ok()
        .filter(|a| policy.algorithms.contains(a))
        .ok_or_else(|| JwtError::AlgNotAllowed(header.alg.chars().take(32).collect()))?;
    // RFC 7515 §4.1.11: an extension we do not understand must not be ignored.
    if header.crit.is_some() {
        return Err(JwtError::Malformed("crit header is not supported"));
    }
    let kid = header.kid.as_deref();
    if kid.is_some_and(|k| k.len() > MAX_KID_LEN) {
        return Err(JwtError::Malformed("kid too long"));
    }
    let entry = keys.select(kid, alg)?;

    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    // The explicit provider, rather than the process default, so another crate
    // enabling a second jsonwebtoken backend cannot make this panic.
    let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg, &entry.key)
        .map_err(|_| JwtError::BadSignature)?;
    verifier
        .verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;

    let claims_json = URL_SAFE_NO_PAD
        .decode(parts.payload)
        .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&claims_json)
        .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
    check_claims(&claims, policy, now)
}

fn check_claims(
    claims: &Map<String, Value>,
    policy: &JwtIssuerPolicy,
    now: SystemTime,
) -> Result<JwtIdentity, JwtError> {
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    if exp.checked_add(policy.leeway).is_some_and(|end| now >= end) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        let start = nbf
            .checked_sub(policy.leeway)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if now < start {
            return Err(JwtError::NotYetValid);
        }
    }

    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if *iss == policy.issuer => iss.clone(),
        _ => return Err(JwtError::WrongIssuer),
    };

    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => policy.audience.contains(aud),
        Some(Value::Array(auds)) => auds.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| policy.audience.iter().any(|p| p == a))
        }),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::WrongAudience);
    }

    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) | None => return Err(JwtError::MissingClaim("sub")),
        Some(_) => return Err(JwtError::Malformed("sub is not a string")),
    };

    let scopes = match claims.get(policy.scopes_claim.as_str()) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(JwtError::Malformed("scopes claim holds a non-string"))?,
        Some(_) => return Err(JwtError::Malformed("scopes claim is not a string or array")),
    };

    Ok(JwtIdentity {
        issuer,
        subject,
        scopes,
        expires_at: exp,
    })
}

/// An RFC 7519 NumericDate (seconds since the epoch, possibly fractional).
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<SystemTime>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let secs = value
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or(JwtError::Malformed("time claim is not a NumericDate"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
        .map(Some)
        .ok_or(JwtError::Malformed("time claim is out of range"))
}

/// The `iss` claim of an unverified token, to choose which issuer's policy
/// and keys to verify it with. Never trust it for anything else.
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let parts = split(token).ok()?;
    let json = URL_SAFE_NO_PAD.decode(parts.payload).ok()?;
    serde_json::from_slice::<Iss>(&json).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const RSA1: &str = include_str!("../../tests/fixtures/rsa1_private.pem");
    const RSA2: &str = include_str!("../../tests/fixtures/rsa2_private.pem");
    const RSA1_PUBLIC: &str = include_str!("../../tests/fixtures/rsa1_public.pem");
    const EC1: &str = include_str!("../../tests/fixtures/ec1_private.pem");
    const ED1: &str = include_str!("../../tests/fixtures/ed1_private.pem");
    const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");
    const JWKS_RSA: &str = include_str!("../../tests/fixtures/jwks_rsa_only.json");
    const JWKS_WEAK: &str = include_str!("../../tests/fixtures/jwks_weak_rsa.json");

    const ISS: &str = "https://idp.example";
    const AUD: &str = "mft-gateway";
    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn policy(algs: &[Algorithm]) -> JwtIssuerPolicy {
        JwtIssuerPolicy::new(ISS, &[AUD], algs)
    }

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "sub": "svc-backup",
            "aud": AUD,
            "exp": NOW + 300,
            "iat": NOW,
            "scope": "files:read files:write",
        })
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        encode(&h, claims, key).expect("test token signs")
    }

    fn rs256(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
        sign(Algorithm::RS256, Some("rsa-1"), &key, claims)
    }

    fn jwks() -> JwksKeys {
        JwksKeys::from_json(JWKS.as_bytes()).unwrap()
    }

    fn with(mut c: Value, key: &str, v: Value) -> Value {
        c[key] = v;
        c
    }

    fn without(mut c: Value, key: &str) -> Value {
        c.as_object_mut().unwrap().remove(key);
        c
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn valid_rs256() {
        let id = verify(
            &rs256(&claims()),
            &policy(&[Algorithm::RS256]),
            &jwks(),
            now(),
        )
        .unwrap();
        assert_eq!(id.issuer, ISS);
        assert_eq!(id.subject, "svc-backup");
        assert_eq!(id.scopes, vec!["files:read", "files:write"]);
        assert_eq!(id.expires_at, now() + Duration::from_secs(300));
        assert_eq!(id.principal(), "jwt:svc-backup");
    }

    #[test]
    fn valid_es256_and_eddsa() {
        let p = policy(&[Algorithm::ES256, Algorithm::EdDSA]);
        let ec = EncodingKey::from_ec_pem(EC1.as_bytes()).unwrap();
        let t = sign(Algorithm::ES256, Some("ec-1"), &ec, &claims());
        assert!(verify(&t, &p, &jwks(), now()).is_ok());
        let ed = EncodingKey::from_ed_pem(ED1.as_bytes()).unwrap();
        let t = sign(Algorithm::EdDSA, Some("ed-1"), &ed, &claims());
        assert!(verify(&t, &p, &jwks(), now()).is_ok());
        // An EC key never verifies an EdDSA token, even if the kid says so.
        let t = sign(Algorithm::EdDSA, Some("ec-1"), &ed, &claims());
        assert_eq!(
            verify(&t, &p, &jwks(), now()),
            Err(JwtError::KeyAlgMismatch(Algorithm::EdDSA))
        );
    }

    #[test]
    fn expired_with_leeway() {
        let p = policy(&[Algorithm::RS256]);
        let t = rs256(&with(claims(), "exp", json!(NOW - 30)));
        // Within the 60 s leeway.
        assert!(verify(&t, &p, &jwks(), now()).is_ok());
        let strict = JwtIssuerPolicy {
            leeway: Duration::ZERO,
            ..p.clone()
        };
        let err = verify(&t, &strict, &jwks(), now()).unwrap_err();
        assert_eq!(err, JwtError::Expired);
        assert_eq!(err.audit_reason(), "expired");
        let t = rs256(&with(claims(), "exp", json!(NOW - 60)));
        assert_eq!(verify(&t, &p, &jwks(), now()), Err(JwtError::Expired));
        // exp exactly now: expired (RFC 7519 wants now strictly before exp).
        let t = rs256(&with(claims(), "exp", json!(NOW)));
        assert_eq!(verify(&t, &strict, &jwks(), now()), Err(JwtError::Expired));
        // The passed-in time decides, not the wall clock.
        let t = rs256(&with(claims(), "exp", json!(NOW + 10)));
        assert!(verify(&t, &strict, &jwks(), now()).is_ok());
        assert_eq!(
            verify(&t, &strict, &jwks(), now() + Duration::from_secs(10)),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn fractional_exp_is_accepted() {
        let t = rs256(&with(claims(), "exp", json!(NOW as f64 + 100.5)));
        let id = verify(&t, &policy(&[Algorithm::RS256]), &jwks(), now()).unwrap();
        assert_eq!(id.expires_at, now() + Duration::from_millis(100_500));
    }

    #[test]
    fn nbf_in_the_future_with_leeway() {
        let p = policy(&[Algorithm::RS256]);
        let t = rs256(&with(claims(), "nbf", json!(NOW + 120)));
        let err = verify(&t, &p, &jwks(), now()).unwrap_err();
        assert_eq!(err, JwtError::NotYetValid);
        assert_eq!(err.audit_reason(), "not_yet_valid");
        let t = rs256(&with(claims(), "nbf", json!(NOW + 30)));
        assert!(verify(&t, &p, &jwks(), now()).is_ok());
        let t = rs256(&with(claims(), "nbf", json!(NOW)));
        let strict = JwtIssuerPolicy {
            leeway: Duration::ZERO,
            ..p
        };
        assert!(verify(&t, &strict, &jwks(), now()).is_ok());
    }

    #[test]
    fn wrong_audience() {
        let p = policy(&[Algorithm::RS256]);
        for aud in [json!("other-api"), json!(["a", "b"]), json!([]), json!(7)] {
            let t = rs256(&with(claims(), "aud", aud.clone()));
            let err = verify(&t, &p, &jwks(), now()).unwrap_err();
            assert_eq!(err, JwtError::WrongAudience, "{aud}");
            assert_eq!(err.audit_reason(), "wrong_audience");
        }
        let t = rs256(&without(claims(), "aud"));
        assert_eq!(verify(&t, &p, &jwks(), now()), Err(JwtError::WrongAudience));
        let t = rs256(&with(claims(), "aud", json!(["other", AUD])));
        assert!(verify(&t, &p, &jwks(), now()).is_ok());
        let nobody = JwtIssuerPolicy {
            audience: vec![],
            ..p
        };
        let t = rs256(&claims());
        assert_eq!(
            verify(&t, &nobody, &jwks(), now()),
            Err(JwtError::WrongAudience)
        );
    }

    #[test]
    fn wrong_issuer() {
        let p = policy(&[Algorithm::RS256]);
        for c in [
            with(claims(), "iss", json!("https://evil.example")),
            with(claims(), "iss", json!([ISS])),
            without(claims(), "iss"),
        ] {
            let err = verify(&rs256(&c), &p, &jwks(), now()).unwrap_err();
            assert_eq!(err, JwtError::WrongIssuer);
            assert_eq!(err.audit_reason(), "wrong_issuer");
        }
    }

    #[test]
    fn required_claims() {
        let p = policy(&[Algorithm::RS256]);
        assert_eq!(
            verify(&rs256(&without(claims(), "exp")), &p, &jwks(), now()),
            Err(JwtError::MissingClaim("exp"))
        );
        assert_eq!(
            verify(&rs256(&without(claims(), "sub")), &p, &jwks(), now()),
            Err(JwtError::MissingClaim("sub"))
        );
        assert_eq!(
            verify(
                &rs256(&with(claims(), "sub", json!(""))),
                &p,
                &jwks(),
                now()
            ),
            Err(JwtError::MissingClaim("sub"))
        );
        for exp in [json!("soon"), json!(-1), json!(1e300)] {
            let err = verify(&rs256(&with(claims(), "exp", exp)), &p, &jwks(), now()).unwrap_err();
            assert_eq!(err.audit_reason(), "malformed_jwt");
        }
    }

    #[test]
    fn alg_none_is_rejected() {
        let p = policy(&[Algorithm::RS256]);
        let payload = b64(&claims().to_string());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"none","kid":"rsa-1"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
        ] {
            let t = format!("{}.{}.", b64(header), payload);
            let err = verify(&t, &p, &jwks(), now()).unwrap_err();
            assert!(
                matches!(err, JwtError::AlgNotAllowed(_)),
                "{header}: {err:?}"
            );
            assert_eq!(err.audit_reason(), "alg_not_allowed");
        }
    }

    #[test]
    fn hs256_signed_with_rsa_public_key_is_rejected() {
        // The attacker knows the issuer's public key and uses it as an HMAC secret.
        let forged_key = EncodingKey::from_secret(RSA1_PUBLIC.as_bytes());
        let forged = sign(Algorithm::HS256, Some("rsa-1"), &forged_key, &claims());
        let forged_no_kid = sign(Algorithm::HS256, None, &forged_key, &claims());

        // Policy pins RS256: the alg alone is refused.
        let rs_only = policy(&[Algorithm::RS256]);
        assert_eq!(
            verify(&forged, &rs_only, &jwks(), now()),
            Err(JwtError::AlgNotAllowed("HS256".into()))
        );

        // Policy allows both, but the selected key is RSA: refused too.
        let both = policy(&[Algorithm::HS256, Algorithm::RS256]);
        let err = verify(&forged, &both, &jwks(), now()).unwrap_err();
        assert_eq!(err, JwtError::KeyAlgMismatch(Algorithm::HS256));
        assert_eq!(err.audit_reason(), "alg_not_allowed");
        let rsa_only = JwksKeys::from_json(JWKS_RSA.as_bytes()).unwrap();
        assert_eq!(
            verify(&forged_no_kid, &both, &rsa_only, now()),
            Err(JwtError::KeyAlgMismatch(Algorithm::HS256))
        );
        // And a genuine RS256 token still passes under that policy.
        assert!(verify(&rs256(&claims()), &both, &rsa_only, now()).is_ok());
    }

    #[test]
    fn hmac_issuer() {
        let secret = [7u8; 32];
        let keys = JwksKeys::from_hmac_secret(None, &secret).unwrap();
        let p = policy(&[Algorithm::HS256]);
        let t = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(&secret),
            &claims(),
        );
        assert!(verify(&t, &p, &keys, now()).is_ok());
        let bad = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(&[8u8; 32]),
            &claims(),
        );
        assert_eq!(verify(&bad, &p, &keys, now()), Err(JwtError::BadSignature));
        // An RS256 token can't be checked with an HMAC key either.
        let rs = policy(&[Algorithm::HS256, Algorithm::RS256]);
        let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
        let t = sign(Algorithm::RS256, None, &key, &claims());
        assert_eq!(
            verify(&t, &rs, &keys, now()),
            Err(JwtError::KeyAlgMismatch(Algorithm::RS256))
        );
        assert!(matches!(
            JwksKeys::from_hmac_secret(None, b"short"),
            Err(JwtError::InvalidKeys(_))
        ));
        let with_kid = JwksKeys::from_hmac_secret(Some("h1".into()), &secret).unwrap();
        assert!(with_kid.contains_kid("h1"));
    }

    #[test]
    fn unknown_kid_and_missing_kid() {
        let p = policy(&[Algorithm::RS256]);
        let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
        let t = sign(Algorithm::RS256, Some("rotated-2"), &key, &claims());
        let err = verify(&t, &p, &jwks(), now()).unwrap_err();
        assert_eq!(err, JwtError::UnknownKid("rotated-2".into()));
        assert_eq!(err.audit_reason(), "unknown_kid");
        // Without kid: fine against a one-key set, refused against several.
        let t = sign(Algorithm::RS256, None, &key, &claims());
        let one = JwksKeys::from_json(JWKS_RSA.as_bytes()).unwrap();
        assert!(verify(&t, &p, &one, now()).is_ok());
        assert_eq!(verify(&t, &p, &jwks(), now()), Err(JwtError::KidRequired));
    }

    #[test]
    fn bad_signatures() {
        let p = policy(&[Algorithm::RS256]);
        // Right kid, wrong private key.
        let other = EncodingKey::from_rsa_pem(RSA2.as_bytes()).unwrap();
        let t = sign(Algorithm::RS256, Some("rsa-1"), &other, &claims());
        let err = verify(&t, &p, &jwks(), now()).unwrap_err();
        assert_eq!(err, JwtError::BadSignature);
        assert_eq!(err.audit_reason(), "bad_signature");
        // Payload swapped after signing.
        let good = rs256(&claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let evil = b64(&with(claims(), "sub", json!("admin")).to_string());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &p, &jwks(), now()),
            Err(JwtError::BadSignature)
        );
        // Signature stripped.
        let stripped = format!("{}.{}.", parts[0], good.split('.').nth(1).unwrap());
        assert_eq!(
            verify(&stripped, &p, &jwks(), now()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn signature_is_checked_before_claims() {
        // An expired token with a forged signature reports the signature.
        let other = EncodingKey::from_rsa_pem(RSA2.as_bytes()).unwrap();
        let c = with(claims(), "exp", json!(1));
        let t = sign(Algorithm::RS256, Some("rsa-1"), &other, &c);
        assert_eq!(
            verify(&t, &policy(&[Algorithm::RS256]), &jwks(), now()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let p = policy(&[Algorithm::RS256]);
        let good = rs256(&claims());
        let (h, rest) = good.split_once('.').unwrap();
        for t in [
            "".to_string(),
            "abc".to_string(),
            "a.b".to_string(),
            format!("{good}.x"),
            format!("!!.{rest}"),
            format!("{}.{rest}", b64("[1,2]")),
            format!(
                "{}.{rest}",
                b64(r#"{"alg":"RS256","kid":"rsa-1","crit":["exp"]}"#)
            ),
            format!("{h}.{}.AAAA", "e30"),
            "x".repeat(MAX_CREDENTIAL_LEN + 1),
        ] {
            let err = verify(&t, &p, &jwks(), now()).unwrap_err();
            assert!(
                matches!(err, JwtError::Malformed(_) | JwtError::BadSignature),
                "{t:.40}: {err:?}"
            );
        }
    }

    #[test]
    fn scopes_from_string_and_array_claims() {
        let p = policy(&[Algorithm::RS256]);
        let t = rs256(&with(claims(), "scope", json!("  a  b\tc ")));
        assert_eq!(
            verify(&t, &p, &jwks(), now()).unwrap().scopes,
            vec!["a", "b", "c"]
        );
        let t = rs256(&with(claims(), "scope", json!(["files:read", "x"])));
        assert_eq!(
            verify(&t, &p, &jwks(), now()).unwrap().scopes,
            vec!["files:read", "x"]
        );
        let t = rs256(&without(claims(), "scope"));
        assert!(verify(&t, &p, &jwks(), now()).unwrap().scopes.is_empty());
        let t = rs256(&with(claims(), "scope", json!(["a", 1])));
        assert_eq!(
            verify(&t, &p, &jwks(), now()).unwrap_err().audit_reason(),
            "malformed_jwt"
        );
        let scp = JwtIssuerPolicy {
            scopes_claim: "scp".into(),
            ..p
        };
        let t = rs256(&with(claims(), "scp", json!(["deliveries:read"])));
        assert_eq!(
            verify(&t, &scp, &jwks(), now()).unwrap().scopes,
            vec!["deliveries:read"]
        );
    }

    #[test]
    fn jwks_skips_unusable_keys() {
        let keys = jwks();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.skipped(), 2);
        assert!(keys.contains_kid("rsa-1"));
        assert!(!keys.contains_kid("enc-1"));
        assert!(!keys.contains_kid("oct-1"));
        assert!(matches!(
            JwksKeys::from_json(JWKS_WEAK.as_bytes()),
            Err(JwtError::InvalidKeys(_))
        ));
        for doc in [&b"{}"[..], b"[]", b"{\"keys\":[]}", b"not json"] {
            assert!(matches!(
                JwksKeys::from_json(doc),
                Err(JwtError::InvalidKeys(_))
            ));
        }
    }

    #[test]
    fn jwk_alg_restricts_the_key() {
        // rsa-1 says "alg": "RS256", so an RS512 token under that kid is refused
        // even when the policy allows RS512.
        let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
        let t = sign(Algorithm::RS512, Some("rsa-1"), &key, &claims());
        assert_eq!(
            verify(
                &t,
                &policy(&[Algorithm::RS256, Algorithm::RS512]),
                &jwks(),
                now()
            ),
            Err(JwtError::KeyAlgMismatch(Algorithm::RS512))
        );
    }

    #[test]
    fn peek_issuer_reads_without_verifying() {
        assert_eq!(peek_issuer(&rs256(&claims())).as_deref(), Some(ISS));
        assert_eq!(peek_issuer(&rs256(&without(claims(), "iss"))), None);
        assert_eq!(peek_issuer("not.a.jwt"), None);
        assert_eq!(peek_issuer(""), None);
    }

    #[test]
    fn rejection_is_invalid_token() {
        let r = JwtError::Expired.rejection();
        assert_eq!(r.status, 401);
        assert_eq!(r.audit_reason, "expired");
        assert!(r.headers[0].1.contains("error=\"invalid_token\""));
    }
}
