//! The fuzz targets over `mft-filters` and `mft-config` only: one function
//! per parser that sees outside bytes. This crate does not depend on the
//! gateway, so its instrumented build is short enough for CI
//! (docs/reliability.md, "In CI"). Each `src/bin/<target>.rs` hands AFL++'s
//! input to one of them; `scripts/fuzz --replay` runs a corpus once. Nothing
//! in here may panic, hang or allocate without bound on any input; a panic
//! is a finding.

use mft_filters::auth::{api_key, connector_key, credential, jwt, partner_key, senders};
use mft_filters::signing::{RequestView, Verifier, VerifyPolicy, VerifyingKey};
use mft_filters::trust::wire;
use mft_filters::validation::{
    content_digest, filename, folder, request_head, upload_names, virtual_path,
};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// `data` as text, lossily: the parsers that take `&str` see what a
/// header or line decoder in front of them would hand over. Shared with
/// `fuzz/protocols`.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The first byte (a selector or chunk size) and the rest. Shared with
/// `fuzz/protocols`.
pub fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    }
}

/// A fixed "now" so runs are reproducible: 2023-11-14T22:13:20Z.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Credential extraction (`Authorization` / `X-API-Key`) and the API,
/// partner and connector key parsers. Input: selector byte, then the
/// Authorization value, a NUL, the X-API-Key value.
pub fn credential(data: &[u8]) {
    let (sel, rest) = split_first(data);
    let mut parts = rest.splitn(2, |b| *b == 0);
    let a = parts.next().unwrap_or_default();
    let k = parts.next().unwrap_or_default();
    let authorization = (sel & 1 == 1).then_some(a);
    let x_api_key = (sel & 2 == 2).then_some(k);
    if let Ok(Some(c)) = credential::extract(authorization, x_api_key) {
        let token = c.token();
        let _ = credential::is_jwt_shaped(token);
        if let Ok(k) = api_key::parse(token) {
            let _ = k.principal();
            let _ = k.verify(&[0u8; 32]);
        }
        let _ = partner_key::parse(token).map(|k| partner_key::signing_key(&k));
        let _ = connector_key::parse(token);
        let _ = jwt::peek_issuer(token);
    }
    // The key parsers see whatever a header carried, not only what
    // `extract` lets through.
    let t = text(rest);
    let _ = api_key::parse(&t);
    let _ = partner_key::parse(&t);
    let _ = connector_key::parse(&t);
}

const JWT_ISSUER: &str = "https://issuer.example";
const JWT_SECRET: &[u8] = b"fuzz-hmac-secret-0123456789abcdef";

/// JWT header and claims handling before (and through) the signature
/// check, and JWKS documents. Selector bit 0: the rest is a JWKS document;
/// otherwise a token verified against an HS256 key.
pub fn jwt(data: &[u8]) {
    static KEYS: OnceLock<Option<jwt::JwksKeys>> = OnceLock::new();
    let (sel, rest) = split_first(data);
    if sel & 1 == 1 {
        if let Ok(keys) = jwt::JwksKeys::from_json(rest) {
            let _ = keys.contains_kid("k1");
        }
        return;
    }
    let token = text(rest);
    let _ = jwt::peek_issuer(&token);
    let Some(keys) =
        KEYS.get_or_init(|| jwt::JwksKeys::from_hmac_secret(Some("k1".into()), JWT_SECRET).ok())
    else {
        return;
    };
    let policy = jwt::JwtIssuerPolicy::new(JWT_ISSUER, &["mft"], &[jsonwebtoken::Algorithm::HS256]);
    if let Ok(id) = jwt::verify(&token, &policy, keys, now()) {
        let _ = id.principal();
    }
}

/// RFC 9421 `Signature-Input`/`Signature` parsing and verification, as the
/// backend and a partner's gateway run it. Input lines: Signature-Input,
/// Signature, method, authority, path, query, then `name: value` fields.
pub fn signature(data: &[u8]) {
    static VERIFIER: OnceLock<Option<Verifier>> = OnceLock::new();
    let Some(verifier) = VERIFIER.get_or_init(|| {
        let key = VerifyingKey::hmac(JWT_SECRET, Some("gw")).ok()?;
        Verifier::new(vec![key], VerifyPolicy::default()).ok()
    }) else {
        return;
    };
    let t = text(data);
    let mut lines = t.split('\n');
    let input = lines.next();
    let sig = lines.next();
    let method = lines.next().unwrap_or("GET");
    let authority = lines.next().unwrap_or("backend.example");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().filter(|q| !q.is_empty());
    let fields: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n, v.trim()))
        .collect();
    let req = RequestView {
        method,
        authority,
        path,
        query,
        fields: &fields,
    };
    if let Some(i) = input {
        let _ = wire::nonce_of(i);
    }
    let _ = verifier.verify(&req, input, sig, now());
}

/// `Content-Digest` (RFC 9530) as the federation guard and the partner
/// client parse it.
pub fn content_digest(data: &[u8]) {
    let t = text(data);
    let _ = content_digest::parse(&t);
    let _ = wire::sha256_of_digest(&t);
    let _ = wire::content_digest_of_hex(&t);
}

/// Upload and folder names wherever they come from: X-Filename/X-Folder,
/// tus metadata, RFC 8187 `filename*`, the SFTP virtual paths, the request
/// head's path checks, and sender lists.
pub fn names(data: &[u8]) {
    // Every check here refuses names far shorter than this (255 bytes after
    // NFC; a header value is at most `limits.max_header_bytes`), so longer
    // inputs add only time: Unicode normalization costs ~500 ns per byte
    // instrumented, and a queue of 30-50 KiB inputs held the long run to
    // ~900 executions per second.
    let data = &data[..data.len().min(MAX_NAME_INPUT)];
    let _ = upload_names::header_filename(data);
    let _ = upload_names::header_folder(data);
    let _ = upload_names::tus_metadata(data);
    let t = text(data);
    let _ = upload_names::parse_tus_metadata(&t);
    let _ = upload_names::extended_filename(&t);
    let _ = filename::validate_filename(&t);
    if let Some(clean) = filename::sanitize_filename(&t) {
        // What the mail bridge keeps must pass the HTTP upload rule.
        if filename::validate_filename(&clean).is_err() {
            panic!("sanitize_filename kept a name validate_filename refuses: {clean:?}");
        }
    }
    let _ = folder::validate_folder(&t);
    let _ = request_head::check_path(&t);
    if let Ok(p) = virtual_path::VPath::parse(&t) {
        let _ = p.display();
        let _ = p.name();
        let _ = p.parent();
        let _ = p.folder_in("/inbox");
    }
    if let Ok(b) = senders::SenderBinding::parse(&t) {
        let _ = b.canonical();
        let _ = b.allows("ops@ourcorp.example");
    }
}

/// The longest `names` input looked at (see [`names`]).
const MAX_NAME_INPUT: usize = 4096;

/// Federation JSON from a partner's gateway: deliveries and receipts
/// (inbound) and the answers to ours, with the checks run before any
/// backend call.
pub fn federation(data: &[u8]) {
    use mft_filters::trust::messages::{DeliveryAccepted, Receipt, RelayedDelivery};
    if let Ok(d) = serde_json::from_slice::<RelayedDelivery>(data) {
        let partner = ["beta.example".to_string()];
        let ours = ["ourcorp.example".to_string()];
        let _ = mft_filters::trust::domain_rules::check_inbound(
            &d.sender,
            &d.recipients,
            &partner,
            &ours,
        );
        let _ = mft_filters::trust::domain_rules::split_recipients(
            &d.recipients,
            &ours,
            &[("beta".to_string(), partner.to_vec())],
        );
        for f in &d.files {
            let _ = wire::content_digest_of_hex(&f.sha256);
        }
    }
    if let Ok(r) = serde_json::from_slice::<Receipt>(data) {
        let _ = humantime::parse_rfc3339_weak(&r.downloaded_at);
    }
    let _ = serde_json::from_slice::<DeliveryAccepted>(data);
}

/// The config loader (`gateway.toml`): schema, every validation, the
/// error locator.
pub fn config(data: &[u8]) {
    let t = text(data);
    if let Err(e) = mft_config::load_str(&t, std::path::Path::new("fuzz.toml")) {
        let _ = e.to_string();
    }
    let _ = mft_config::limits::parse_size(&t);
    let _ = mft_config::quota::parse(&t);
    let _ = mft_config::pin::parse_pin_sha256(&t);
    let _ = mft_config::smtp::Cidr::parse(&t);
}

/// A target: its name and the function AFL++'s input goes to.
pub type Target = (&'static str, fn(&[u8]));

/// Every target of this crate by name.
pub const TARGETS: &[Target] = &[
    ("credential", credential),
    ("jwt", jwt),
    ("signature", signature),
    ("content_digest", content_digest),
    ("names", names),
    ("federation", federation),
    ("config", config),
];
