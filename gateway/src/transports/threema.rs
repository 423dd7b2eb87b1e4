//! `threema`: Threema Gateway in end-to-end mode
//! (<https://gateway.threema.ch/en/developer/api>). The recipient's public
//! key comes from `GET /pubkeys/{id}` (cached for a day); the message (type
//! byte 0x01, UTF-8 text, then random PKCS#7-style padding) is boxed with
//! NaCl `crypto_box` (X25519-XSalsa20-Poly1305) from the gateway ID's
//! private key to the recipient's public key and sent with
//! `POST /send_e2e`; `GET /credits` gives the balance. The API secret is
//! the provider's secret; the private key is sealed in the key store.

use super::{http, OutboundMessage, TransportError};
use crate::store::transports::TransportRecord;
use crypto_box::aead::{Aead, AeadCore};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use mft_config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The documented endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://msgapi.threema.ch/";
/// Recipient public keys are asked for again after this long.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest text (the API takes at most 4000 bytes of box).
const MAX_TEXT: usize = 3500;
/// Padded messages are at least this long (so short texts do not show
/// their length).
const MIN_PADDED: usize = 32;

/// Stored settings (no secret).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreemaSettings {
    /// The gateway ID, `*` and 7 letters or digits.
    pub gateway_id: String,
    /// API base URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Warn below this balance.
    #[serde(default)]
    pub credit_threshold: Option<f64>,
    /// The provider that carries the low-credit warning.
    #[serde(default)]
    pub credit_warn_via: Option<String>,
    /// Its recipient.
    #[serde(default)]
    pub credit_warn_to: Option<String>,
    /// At most this many messages (`"10/m"`; see `super::rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

fn invalid(m: impl Into<String>) -> TransportError {
    TransportError::Invalid(m.into())
}

/// Checks settings given as JSON; returns them normalized.
pub fn check_settings(value: serde_json::Value) -> Result<serde_json::Value, TransportError> {
    let mut s: ThreemaSettings =
        serde_json::from_value(value).map_err(|e| invalid(format!("threema settings: {e}")))?;
    let id_ok = s.gateway_id.len() == 8
        && s.gateway_id.starts_with('*')
        && s.gateway_id[1..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !id_ok {
        return Err(invalid(
            "gateway_id: the gateway ID, '*' and 7 capital letters or digits",
        ));
    }
    s.endpoint = http::check_endpoint(&s.endpoint)?;
    super::check_credit_settings(s.credit_threshold, &s.credit_warn_via, &s.credit_warn_to)?;
    super::rate::check(s.rate.as_deref())?;
    serde_json::to_value(&s).map_err(|e| invalid(format!("threema settings: {e}")))
}

/// Whether `to` is a Threema ID (8 capital letters or digits).
pub fn check_address(to: &str) -> Result<(), String> {
    if to.len() == 8
        && to
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'*')
    {
        Ok(())
    } else {
        Err("a Threema ID, 8 capital letters or digits".into())
    }
}

/// Parses a private key as Threema's tools print it: 64 hex digits,
/// optionally after `private:`.
pub fn parse_private_key(text: &str) -> Result<[u8; 32], TransportError> {
    let text = text.trim();
    let hex_part = text.strip_prefix("private:").unwrap_or(text);
    let bytes = hex::decode(hex_part)
        .map_err(|_| invalid("private key: 64 hex digits (optionally after \"private:\")"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| invalid("private key: 64 hex digits (32 bytes)"))
}

fn settings(record: &TransportRecord) -> Result<ThreemaSettings, TransportError> {
    serde_json::from_value(record.settings.clone())
        .map_err(|e| invalid(format!("stored threema settings: {e}")))
}

fn api_secret(secret: Option<&Secret>) -> Result<&str, TransportError> {
    secret
        .map(Secret::expose)
        .ok_or_else(|| invalid("no API secret stored"))
}

type KeyCache = Mutex<HashMap<String, ([u8; 32], Instant)>>;

fn key_cache() -> &'static KeyCache {
    static CACHE: std::sync::OnceLock<KeyCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn status_text(what: &str, status: reqwest::StatusCode) -> String {
    let meaning = match status.as_u16() {
        400 => "the recipient is invalid or cannot receive end-to-end messages",
        401 => "gateway ID or API secret wrong",
        402 => "no credits left",
        404 => "no such Threema ID",
        413 => "message too long",
        429 => "rate limit reached",
        500..=599 => "temporary failure at Threema",
        _ => "unexpected answer",
    };
    format!("threema {what}: HTTP {}: {meaning}", status.as_u16())
}

/// The recipient's public key, from the cache or the directory.
async fn public_key(
    s: &ThreemaSettings,
    secret: &str,
    id: &str,
) -> Result<[u8; 32], TransportError> {
    let cache_key = format!("{}|{}|{id}", s.endpoint, s.gateway_id);
    if let Ok(cache) = key_cache().lock() {
        if let Some((key, at)) = cache.get(&cache_key) {
            if at.elapsed() < KEY_TTL {
                return Ok(*key);
            }
        }
    }
    let response = http::client()?
        .get(format!("{}pubkeys/{id}", s.endpoint))
        .query(&[("from", s.gateway_id.as_str()), ("secret", secret)])
        .send()
        .await
        .map_err(|e| TransportError::Send(format!("threema pubkeys: {}", http::error_text(e))))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(invalid(format!("to {id:?}: no such Threema ID")));
    }
    if !status.is_success() {
        return Err(TransportError::Send(status_text("pubkeys", status)));
    }
    let text = response
        .text()
        .await
        .map_err(|e| TransportError::Send(format!("threema pubkeys: {}", http::error_text(e))))?;
    let key: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| TransportError::Send("threema pubkeys: not a 32-byte hex key".into()))?;
    if let Ok(mut cache) = key_cache().lock() {
        cache.insert(cache_key, (key, Instant::now()));
    }
    Ok(key)
}

/// The plaintext of a text message: type 0x01, the text, then 1 to 255
/// bytes of padding, each holding the padding's length (PKCS#7 style), at
/// least enough to reach [`MIN_PADDED`] bytes.
pub fn pad_text(text: &str, random: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1 + 256);
    out.push(0x01);
    out.extend_from_slice(text.as_bytes());
    let mut pad = usize::from(random.max(1));
    if out.len() + pad < MIN_PADDED {
        pad = MIN_PADDED - out.len();
    }
    // pad <= 255: the random byte, or less than MIN_PADDED.
    let byte = u8::try_from(pad).unwrap_or(u8::MAX);
    out.resize(out.len() + usize::from(byte), byte);
    out
}

/// Boxes `plain` from `private` to `public`: `(nonce, box)`.
pub fn seal_box(
    private: &[u8; 32],
    public: &[u8; 32],
    plain: &[u8],
) -> Result<([u8; 24], Vec<u8>), TransportError> {
    let sbox = SalsaBox::new(&PublicKey::from(*public), &SecretKey::from(*private));
    let nonce = SalsaBox::generate_nonce(&mut crypto_box::aead::OsRng);
    let boxed = sbox
        .encrypt(&nonce, plain)
        .map_err(|_| TransportError::Send("threema: encryption failed".into()))?;
    let mut n = [0u8; 24];
    n.copy_from_slice(nonce.as_slice());
    Ok((n, boxed))
}

/// The text sent: subject and text, one per line.
fn text_for(message: &OutboundMessage<'_>) -> String {
    if message.subject.is_empty() {
        message.text.to_string()
    } else {
        format!("{}\n{}", message.subject, message.text)
    }
}

/// Sends `message` to each recipient; the message ids Threema gave.
pub async fn send(
    record: &TransportRecord,
    secret: Option<&Secret>,
    private: &[u8; 32],
    message: &OutboundMessage<'_>,
) -> Result<String, TransportError> {
    let s = settings(record)?;
    let api_secret = api_secret(secret)?;
    let text = text_for(message);
    if text.len() > MAX_TEXT {
        return Err(invalid(format!("text: at most {MAX_TEXT} bytes")));
    }
    if message.to.is_empty() {
        return Err(invalid("to: at least one recipient"));
    }
    // Recipients that got this message in an earlier attempt are not sent
    // it again; their earlier answers stay in the result.
    let done = match &message.progress {
        Some(p) => p.done().await?,
        None => Vec::new(),
    };
    let mut ids = Vec::with_capacity(message.to.len());
    for to in message.to {
        check_address(to).map_err(|e| invalid(format!("to {to:?}: {e}")))?;
        if let Some((_, earlier)) = done.iter().find(|(r, _)| r == to) {
            ids.push(format!("{to}: {earlier}"));
            continue;
        }
        let public = public_key(&s, api_secret, to).await?;
        let mut random = [0u8; 1];
        getrandom::fill(&mut random)
            .map_err(|_| TransportError::Send("threema: no random source".into()))?;
        let plain = pad_text(&text, random[0]);
        let (nonce, boxed) = seal_box(private, &public, &plain)?;
        let response = http::client()?
            .post(format!("{}send_e2e", s.endpoint))
            .form(&[
                ("from", s.gateway_id.as_str()),
                ("to", to.as_str()),
                ("nonce", &hex::encode(nonce)),
                ("box", &hex::encode(&boxed)),
                ("secret", api_secret),
            ])
            .send()
            .await
            .map_err(|e| {
                TransportError::Send(format!("threema send_e2e: {}", http::error_text(e)))
            })?;
        let status = response.status();
        if !status.is_success() {
            let reason = status_text("send_e2e", status);
            return Err(if matches!(status.as_u16(), 400 | 413) {
                TransportError::Invalid(reason)
            } else {
                TransportError::Send(reason)
            });
        }
        let id = response.text().await.map_err(|e| {
            TransportError::Send(format!("threema send_e2e: {}", http::error_text(e)))
        })?;
        let id = id.trim();
        if let Some(p) = &message.progress {
            p.sent(to, id).await?;
        }
        ids.push(format!("{to}: {id}"));
    }
    Ok(format!("message id {}", ids.join(", ")))
}

/// The balance.
pub async fn credits(
    record: &TransportRecord,
    secret: Option<&Secret>,
) -> Result<String, TransportError> {
    let s = settings(record)?;
    let response = http::client()?
        .get(format!("{}credits", s.endpoint))
        .query(&[
            ("from", s.gateway_id.as_str()),
            ("secret", api_secret(secret)?),
        ])
        .send()
        .await
        .map_err(|e| TransportError::Send(format!("threema credits: {}", http::error_text(e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(TransportError::Send(status_text("credits", status)));
    }
    let text = response
        .text()
        .await
        .map_err(|e| TransportError::Send(format!("threema credits: {}", http::error_text(e))))?;
    let text = text.trim();
    if text.parse::<f64>().is_err() {
        return Err(TransportError::Send("threema credits: not a number".into()));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_pkcs7_style_and_at_least_32_bytes() {
        let p = pad_text("hi", 1);
        assert_eq!(p.len(), 32);
        assert_eq!(p[0], 1);
        assert_eq!(&p[1..3], b"hi");
        assert!(p[3..].iter().all(|&b| usize::from(b) == 29));
        let long = "x".repeat(100);
        let p = pad_text(&long, 200);
        assert_eq!(p.len(), 1 + 100 + 200);
        assert_eq!(p[p.len() - 1], 200);
        let p = pad_text(&long, 0);
        assert_eq!(p.len(), 102, "zero becomes one byte of padding");
    }

    #[test]
    fn box_opens_with_the_other_side() {
        let a = [7u8; 32];
        let b = [9u8; 32];
        let pa = SecretKey::from(a).public_key().to_bytes();
        let pb = SecretKey::from(b).public_key().to_bytes();
        let (nonce, boxed) = seal_box(&a, &pb, b"hello").unwrap();
        let opened = SalsaBox::new(&PublicKey::from(pa), &SecretKey::from(b))
            .decrypt(&nonce.into(), boxed.as_slice())
            .unwrap();
        assert_eq!(opened, b"hello");
    }

    #[test]
    fn settings_and_keys() {
        assert!(check_settings(serde_json::json!({"gateway_id": "*MFTGW01"})).is_ok());
        assert!(check_settings(serde_json::json!({"gateway_id": "MFTGW01"})).is_err());
        assert!(check_settings(
            serde_json::json!({"gateway_id": "*MFTGW01", "endpoint": "http://example.com/"})
        )
        .is_err());
        assert!(parse_private_key(&format!("private:{}", "ab".repeat(32))).is_ok());
        assert!(parse_private_key("abcd").is_err());
        assert!(check_address("ECHOECHO").is_ok());
        assert!(check_address("echo").is_err());
    }
}
