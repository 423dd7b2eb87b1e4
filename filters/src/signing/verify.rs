//! The backend's side: is this request signed by a key we hold, recently,
//! over everything that matters?

use super::base::{write_base, BaseError};
use super::keys::{KeyError, VerifyingKey};
use super::params::{write_param, ParamValue};
use super::{unix_seconds, Algorithm, RequestView, TAG};
use sfv::{BareItem, ListEntry, Parser};
use std::time::{Duration, SystemTime};

/// Components every signature must cover.
const ALWAYS: [&str; 5] = ["@method", "@authority", "@path", "@query", "x-request-id"];

/// Fields that must be covered whenever the request carries them (besides
/// every `x-mft-*` field).
const WHEN_PRESENT: [&str; 2] = ["content-length", "content-digest"];

/// Why a request's signature is not accepted. The messages name the reason,
/// never key material or key ids, so they can go into a 401 body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// No `Signature-Input` / `Signature` header.
    #[error("the request is not signed (no Signature-Input / Signature)")]
    Missing,
    /// The headers are not valid structured fields of the expected shape.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// No signature carries `tag="mft-gateway"`.
    #[error("no signature tagged \"mft-gateway\"")]
    NoApplicableSignature,
    /// A required parameter is missing.
    #[error("signature parameter {0:?} is missing")]
    MissingParameter(&'static str),
    /// An algorithm we do not accept.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// No key of the signature's algorithm.
    #[error("no key for the signature's algorithm")]
    UnknownKey,
    /// A component could not be rebuilt from the request.
    #[error("cannot rebuild the signature base: {0}")]
    Base(#[from] BaseError),
    /// A component that must be covered is not.
    #[error("the signature does not cover {0:?}")]
    MissingComponent(String),
    /// `created` is in the future beyond the allowed clock skew.
    #[error("signature is not valid yet (created in the future)")]
    NotYetValid,
    /// `expires` has passed.
    #[error("signature has expired")]
    Expired,
    /// `expires - created` exceeds the policy's window.
    #[error("signature validity window is longer than {0} s")]
    WindowTooLong(u64),
    /// No key produced this signature.
    #[error("signature does not verify")]
    BadSignature,
    /// This nonce was seen before within its validity.
    #[error("signature was already used (replay)")]
    Replay,
    /// The replay cache is full of live entries; refusing is the safe side.
    #[error("too many signed requests in the replay window; retry shortly")]
    ReplayCacheFull,
}

/// Time rules for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Longest accepted `expires - created`.
    pub max_window: Duration,
    /// Clock difference tolerated between signer and verifier.
    pub clock_skew: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            max_window: Duration::from_secs(300),
            clock_skew: Duration::from_secs(5),
        }
    }
}

/// What a verified signature said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its label.
    pub label: String,
    /// Id of the key that verified it.
    pub key_id: String,
    /// That key's algorithm.
    pub algorithm: Algorithm,
    /// `created`.
    pub created: u64,
    /// `expires`.
    pub expires: u64,
    /// `nonce`, for the replay cache.
    pub nonce: String,
}

/// Verifies against a set of keys (several during a rotation).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    policy: VerifyPolicy,
}

fn param_str<'a>(item: &'a BareItem, name: &'static str) -> Result<&'a str, VerifyError> {
    match item {
        BareItem::String(s) => Ok(s.as_str()),
        _ => Err(VerifyError::Malformed(match name {
            "keyid" => "keyid must be a string",
            "alg" => "alg must be a string",
            "nonce" => "nonce must be a string",
            _ => "tag must be a string",
        })),
    }
}

fn param_time(item: &BareItem, name: &'static str) -> Result<u64, VerifyError> {
    match item {
        BareItem::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err(VerifyError::Malformed(if name == "created" {
            "created must be a non-negative integer"
        } else {
            "expires must be a non-negative integer"
        })),
    }
}

impl Verifier {
    /// A verifier accepting any of `keys`.
    pub fn new(keys: Vec<VerifyingKey>, policy: VerifyPolicy) -> Result<Verifier, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Verifier { keys, policy })
    }

    /// The accepted keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The time rules.
    pub fn policy(&self) -> VerifyPolicy {
        self.policy
    }

    /// Verifies the signature tagged `mft-gateway` on `req` at `now`. Replay
    /// is the caller's to check with [`Verified::nonce`] (see [`super::ReplayCache`]).
    pub fn verify(
        &self,
        req: &RequestView<'_>,
        signature_input: Option<&str>,
        signature: Option<&str>,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let (input, sig) = match (signature_input, signature) {
            (None, None) => return Err(VerifyError::Missing),
            (Some(i), Some(s)) => (i, s),
            _ => {
                return Err(VerifyError::Malformed(
                    "Signature-Input and Signature come in pairs",
                ))
            }
        };
        let inputs = Parser::parse_dictionary(input.as_bytes()).map_err(|_| {
            VerifyError::Malformed("Signature-Input is not a structured dictionary")
        })?;
        let sigs = Parser::parse_dictionary(sig.as_bytes())
            .map_err(|_| VerifyError::Malformed("Signature is not a structured dictionary"))?;

        let mut chosen = None;
        for (label, entry) in &inputs {
            let ListEntry::InnerList(list) = entry else {
                continue;
            };
            let tagged = matches!(list.params.get("tag"), Some(BareItem::String(t)) if t == TAG);
            if tagged {
                if chosen.is_some() {
                    return Err(VerifyError::Malformed(
                        "more than one signature tagged \"mft-gateway\"",
                    ));
                }
                chosen = Some((label, list));
            }
        }
        let (label, list) = chosen.ok_or(VerifyError::NoApplicableSignature)?;
        let signature_bytes = match sigs.get(label) {
            Some(ListEntry::Item(item)) => match &item.bare_item {
                BareItem::ByteSeq(b) if item.params.is_empty() => b.as_slice(),
                _ => {
                    return Err(VerifyError::Malformed(
                        "Signature member is not a byte sequence",
                    ))
                }
            },
            _ => {
                return Err(VerifyError::Malformed(
                    "no Signature member for the signature's label",
                ))
            }
        };

        let mut components = Vec::with_capacity(list.items.len());
        for item in &list.items {
            match &item.bare_item {
                BareItem::String(name) if item.params.is_empty() => components.push(name.as_str()),
                BareItem::String(name) => {
                    return Err(VerifyError::Base(BaseError::Unsupported(name.clone())))
                }
                _ => {
                    return Err(VerifyError::Malformed(
                        "a covered component is not a string",
                    ))
                }
            }
        }

        let (mut created, mut expires, mut key_id, mut alg, mut nonce) =
            (None, None, None, None, None);
        for (name, value) in &list.params {
            match name.as_str() {
                "created" => created = Some(param_time(value, "created")?),
                "expires" => expires = Some(param_time(value, "expires")?),
                "keyid" => key_id = Some(param_str(value, "keyid")?),
                "alg" => alg = Some(param_str(value, "alg")?),
                "nonce" => nonce = Some(param_str(value, "nonce")?),
                "tag" => {}
                _ => return Err(VerifyError::Malformed("unknown signature parameter")),
            }
        }
        let created = created.ok_or(VerifyError::MissingParameter("created"))?;
        let expires = expires.ok_or(VerifyError::MissingParameter("expires"))?;
        let nonce = nonce.ok_or(VerifyError::MissingParameter("nonce"))?;
        if nonce.len() < 16 {
            return Err(VerifyError::Malformed("nonce is too short to be unique"));
        }

        // Cheap checks first: an attacker's junk should not cost a signature check.
        let now_s = unix_seconds(now);
        let skew = self.policy.clock_skew.as_secs();
        if expires <= created {
            return Err(VerifyError::Malformed("expires is not after created"));
        }
        if expires - created > self.policy.max_window.as_secs() {
            return Err(VerifyError::WindowTooLong(self.policy.max_window.as_secs()));
        }
        if created > now_s.saturating_add(skew) {
            return Err(VerifyError::NotYetValid);
        }
        if expires.saturating_add(skew) < now_s {
            return Err(VerifyError::Expired);
        }

        for name in ALWAYS {
            if !components.contains(&name) {
                return Err(VerifyError::MissingComponent(name.to_string()));
            }
        }
        for (name, _) in req.fields {
            let required = WHEN_PRESENT.contains(name) || name.starts_with("x-mft-");
            if required && !components.contains(name) {
                return Err(VerifyError::MissingComponent((*name).to_string()));
            }
        }

        let algorithm = match alg {
            Some(a) => Some(Algorithm::parse(a).ok_or(VerifyError::UnsupportedAlgorithm)?),
            None => None,
        };
        let of_algorithm = |k: &&VerifyingKey| algorithm.is_none_or(|a| k.algorithm() == a);
        let mut candidates: Vec<&VerifyingKey> = self
            .keys
            .iter()
            .filter(of_algorithm)
            .filter(|k| key_id.is_none_or(|id| k.id() == id))
            .collect();
        if candidates.is_empty() {
            // An id we do not know (a gateway with signing_key_id set, a
            // backend given only the key): every key of the algorithm is
            // tried; the signature still has to verify with one we hold.
            candidates = self.keys.iter().filter(of_algorithm).collect();
        }
        if candidates.is_empty() {
            return Err(VerifyError::UnknownKey);
        }

        let mut base = String::with_capacity(512);
        write_base(&mut base, req, &components, |out| {
            out.reserve(input.len());
            for (name, value) in &list.params {
                let v = match value {
                    BareItem::Integer(n) => ParamValue::Integer(*n),
                    BareItem::String(s) => ParamValue::String(s),
                    BareItem::Token(t) => ParamValue::Token(t),
                    BareItem::Boolean(b) => ParamValue::Boolean(*b),
                    BareItem::ByteSeq(b) => ParamValue::Bytes(b),
                    // Refused above: only the known parameters get here.
                    BareItem::Decimal(_) => continue,
                };
                write_param(out, name, v);
            }
        })?;
        for key in candidates {
            if key.verify(base.as_bytes(), signature_bytes) {
                return Ok(Verified {
                    label: label.clone(),
                    key_id: key.id().to_string(),
                    algorithm: key.algorithm(),
                    created,
                    expires,
                    nonce: nonce.to_string(),
                });
            }
        }
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SignParams, Signer, SigningKey, LABEL};
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn hmac(n: u8) -> SigningKey {
        SigningKey::hmac(&[n; 32], None).unwrap()
    }

    fn request<'a>(fields: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
        RequestView {
            method: "POST",
            authority: "backend:8080",
            path: "/api/v1/files",
            query: Some("folder=in"),
            fields,
        }
    }

    const FIELDS: [(&str, &str); 4] = [
        ("x-request-id", "0190-abc"),
        ("x-mft-principal", "key:abc"),
        ("x-mft-scopes", "files:write"),
        ("content-length", "5"),
    ];

    fn verifier(keys: &[&SigningKey]) -> Verifier {
        Verifier::new(
            keys.iter().map(|k| k.verifying_key()).collect(),
            VerifyPolicy::default(),
        )
        .unwrap()
    }

    #[test]
    fn signed_request_verifies_and_reports_key_and_nonce() {
        let key = hmac(1);
        let id = key.id().to_string();
        let signer = Signer::new(key, Duration::from_secs(30));
        let h = signer.sign(&request(&FIELDS), at(NOW)).unwrap();
        assert!(h.signature_input.starts_with(
            "mft=(\"@method\" \"@authority\" \"@path\" \"@query\" \"x-request-id\" \"x-mft-principal\" \"x-mft-scopes\" \"content-length\");created=1800000000;expires=1800000030;keyid=\""
        ), "{}", h.signature_input);
        assert!(h.signature_input.ends_with(";tag=\"mft-gateway\""));
        let v = verifier(&[signer.key()]);
        let ok = v
            .verify(
                &request(&FIELDS),
                Some(&h.signature_input),
                Some(&h.signature),
                at(NOW + 1),
            )
            .unwrap();
        assert_eq!(ok.key_id, id);
        assert_eq!(ok.label, LABEL);
        assert_eq!(ok.nonce.len(), 22);
        let again = signer.sign(&request(&FIELDS), at(NOW)).unwrap();
        assert_ne!(again.signature, h.signature, "a fresh nonce each time");
    }

    #[test]
    fn every_reason_has_its_error() {
        let key = hmac(1);
        let signer = Signer::new(hmac(1), Duration::from_secs(30));
        let v = verifier(&[&key]);
        let h = signer.sign(&request(&FIELDS), at(NOW)).unwrap();
        let (i, s) = (Some(h.signature_input.as_str()), Some(h.signature.as_str()));
        let check = |req: &RequestView<'_>, i, s, t| v.verify(req, i, s, at(t)).unwrap_err();

        assert_eq!(
            check(&request(&FIELDS), None, None, NOW),
            VerifyError::Missing
        );
        assert!(matches!(
            check(&request(&FIELDS), i, None, NOW),
            VerifyError::Malformed(_)
        ));
        assert!(matches!(
            check(&request(&FIELDS), Some("mft=(("), s, NOW),
            VerifyError::Malformed(_)
        ));
        assert_eq!(
            check(&request(&FIELDS), i, s, NOW + 36),
            VerifyError::Expired
        );
        assert_eq!(
            check(&request(&FIELDS), i, s, NOW - 6),
            VerifyError::NotYetValid
        );
        // Clock skew of 5 s either way is tolerated.
        v.verify(&request(&FIELDS), i, s, at(NOW + 35)).unwrap();
        v.verify(&request(&FIELDS), i, s, at(NOW - 5)).unwrap();

        let mut tampered = FIELDS;
        tampered[1].1 = "key:other";
        assert_eq!(
            check(&request(&tampered), i, s, NOW),
            VerifyError::BadSignature
        );
        let mut other_path = request(&FIELDS);
        other_path.path = "/api/v1/deliveries";
        assert_eq!(check(&other_path, i, s, NOW), VerifyError::BadSignature);
        let mut no_query = request(&FIELDS);
        no_query.query = None;
        assert_eq!(check(&no_query, i, s, NOW), VerifyError::BadSignature);

        let extra = [
            FIELDS[0],
            FIELDS[1],
            FIELDS[2],
            FIELDS[3],
            ("x-mft-origin", "smtp"),
        ];
        assert_eq!(
            check(&request(&extra), i, s, NOW),
            VerifyError::MissingComponent("x-mft-origin".into())
        );
        let wrong_key = verifier(&[&hmac(2)]);
        assert_eq!(
            wrong_key
                .verify(&request(&FIELDS), i, s, at(NOW))
                .unwrap_err(),
            VerifyError::BadSignature
        );
        let other_algorithm = verifier(&[&SigningKey::ed25519_from_pem(
            &super::super::keys::generate_ed25519_pem().unwrap(),
            None,
        )
        .unwrap()]);
        assert_eq!(
            other_algorithm
                .verify(&request(&FIELDS), i, s, at(NOW))
                .unwrap_err(),
            VerifyError::UnknownKey
        );
        // A key id the verifier does not know: its keys are tried all the same.
        let renamed = Signer::new(
            SigningKey::hmac(&[1; 32], Some("gw-2026")).unwrap(),
            Duration::from_secs(30),
        );
        let r = renamed.sign(&request(&FIELDS), at(NOW)).unwrap();
        v.verify(
            &request(&FIELDS),
            Some(&r.signature_input),
            Some(&r.signature),
            at(NOW),
        )
        .unwrap();
        let untagged = h.signature_input.replace(";tag=\"mft-gateway\"", "");
        assert_eq!(
            check(&request(&FIELDS), Some(&untagged), s, NOW),
            VerifyError::NoApplicableSignature
        );
    }

    #[test]
    fn policy_limits_window_and_requires_parameters() {
        let key = hmac(3);
        let v = verifier(&[&key]);
        let signer = Signer::new(hmac(3), Duration::from_secs(30));
        let req = request(&FIELDS);
        let components = [
            "@method",
            "@authority",
            "@path",
            "@query",
            "x-request-id",
            "x-mft-principal",
            "x-mft-scopes",
            "content-length",
        ];
        let sign = |p: SignParams<'_>| signer.sign_components("s", &req, &components, &p).unwrap();
        let base = SignParams {
            created: NOW,
            expires: Some(NOW + 30),
            key_id: None,
            alg: None,
            nonce: Some("0123456789abcdef0123"),
            tag: Some(TAG),
        };
        let long = sign(SignParams {
            expires: Some(NOW + 3600),
            ..base
        });
        assert_eq!(
            v.verify(
                &req,
                Some(&long.signature_input),
                Some(&long.signature),
                at(NOW)
            )
            .unwrap_err(),
            VerifyError::WindowTooLong(300)
        );
        let no_nonce = sign(SignParams {
            nonce: None,
            ..base
        });
        assert_eq!(
            v.verify(
                &req,
                Some(&no_nonce.signature_input),
                Some(&no_nonce.signature),
                at(NOW)
            )
            .unwrap_err(),
            VerifyError::MissingParameter("nonce")
        );
        let no_expiry = sign(SignParams {
            expires: None,
            ..base
        });
        assert_eq!(
            v.verify(
                &req,
                Some(&no_expiry.signature_input),
                Some(&no_expiry.signature),
                at(NOW)
            )
            .unwrap_err(),
            VerifyError::MissingParameter("expires")
        );
        // Without keyid or alg every key is tried.
        let anonymous = sign(base);
        v.verify(
            &req,
            Some(&anonymous.signature_input),
            Some(&anonymous.signature),
            at(NOW),
        )
        .unwrap();
        let partial = signer
            .sign_components("s", &req, &components[..4], &base)
            .unwrap();
        assert_eq!(
            v.verify(
                &req,
                Some(&partial.signature_input),
                Some(&partial.signature),
                at(NOW)
            )
            .unwrap_err(),
            VerifyError::MissingComponent("x-request-id".into())
        );
    }

    #[test]
    fn rotation_accepts_either_key_and_ed25519_needs_only_the_public_half() {
        let old = hmac(4);
        let new = SigningKey::ed25519_from_pem(
            &super::super::keys::generate_ed25519_pem().unwrap(),
            None,
        )
        .unwrap();
        let v = verifier(&[&old, &new]);
        for key in [old, new] {
            let signer = Signer::new(key, Duration::from_secs(30));
            let h = signer.sign(&request(&FIELDS), at(NOW)).unwrap();
            let ok = v
                .verify(
                    &request(&FIELDS),
                    Some(&h.signature_input),
                    Some(&h.signature),
                    at(NOW),
                )
                .unwrap();
            assert_eq!(ok.key_id, signer.key().id());
            assert_eq!(ok.algorithm, signer.key().algorithm());
        }
    }
}
