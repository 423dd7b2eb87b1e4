//! The calling side of a connection: `partners test` (and, later, relays)
//! reach the partner's gateway with the key they generated for us.

use super::seal::{SealError, Sealer};
use super::wire;
use crate::store::partners::{OutboundKey, PartnerRecord};
use mft_config::trust::Trust;
use mft_filters::auth::partner_key;
use mft_filters::signing::RequestView;
use std::time::{Duration, SystemTime};

/// Why a partner is not connected. Each says what to fix; none contains a key.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// `partners set-key` was not run for this connection.
    #[error("their key is not set: run `mft-gateway partners set-key {0} --key-file FILE`")]
    NoKey(String),
    /// The stored key cannot be read.
    #[error("their key cannot be read: {0}")]
    Key(String),
    /// Sealed key, wrong or missing `[trust] encryption_key`.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The stored key is not a partner key.
    #[error("their key is not an mgp_ partner key; ask the partner admin for the key `partners add` printed")]
    NotPartnerKey,
    /// No TCP/TLS connection or no HTTP answer.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The partner refused our key.
    #[error("refused by the partner ({status}): our key for them is wrong or they removed the connection")]
    Refused {
        /// HTTP status.
        status: u16,
    },
    /// The partner knows our key but has not stored theirs for us yet.
    #[error("the partner has not completed the connection yet: their admin must run `partners set-key` with the key we generated for them")]
    Pending,
    /// Any other answer.
    #[error("unexpected answer {status} from {url}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The ping URL.
        url: String,
    },
    /// The answer's signature is missing or wrong: not the partner we configured.
    #[error("the answer is not signed with this connection's key ({0}): wrong URL, or their connection uses another key")]
    BadAnswer(String),
    /// Clocks too far apart for signatures to be checked reliably.
    #[error(
        "clock skew of {0} s with the partner exceeds trust.max_clock_skew; fix NTP on one side"
    )]
    Skew(u64),
}

/// A successful ping.
#[derive(Debug, Clone)]
pub struct PingReport {
    /// The partner's organisation name.
    pub organization: String,
    /// What they call the connection to us.
    pub connection: String,
    /// Their clock minus ours, seconds.
    pub skew_secs: i64,
}

/// The HTTP client for one-off partner calls (`partners test`): the relay's
/// TLS settings with an overall timeout.
pub fn http_client(config: &mft_config::Config) -> anyhow::Result<reqwest::Client> {
    let trust = &config.trust;
    let tls = super::partner_client::TlsFiles::of(config);
    Ok(super::partner_client::builder(trust.request_timeout, &tls)?
        .timeout(trust.request_timeout)
        .build()?)
}

/// The key the partner generated for us, in clear, for one call.
pub fn their_key(
    partner: &PartnerRecord,
    trust: &Trust,
    base: &std::path::Path,
) -> Result<String, PingError> {
    match &partner.outbound_key {
        OutboundKey::Missing => Err(PingError::NoKey(partner.name.clone())),
        OutboundKey::Sealed(sealed) => {
            let secret = trust
                .encryption_key
                .as_ref()
                .ok_or_else(|| PingError::Key("trust.encryption_key is not set".into()))?;
            Ok(Sealer::new(secret)?.open(&partner.name, sealed)?)
        }
        OutboundKey::Reference(r) => mft_config::secret::resolve(r, base)
            .map(|(s, _)| s.expose().trim().to_string())
            .map_err(PingError::Key),
    }
}

/// [`their_key`] with secret references resolved next to the config file.
pub fn their_key_for(
    partner: &PartnerRecord,
    config: &mft_config::Config,
) -> Result<String, PingError> {
    let base = config.source.parent().unwrap_or(std::path::Path::new("."));
    their_key(partner, &config.trust, base)
}

/// `GET /federation/v1/ping` on the partner, checking the signed answer.
pub async fn ping(
    http: &reqwest::Client,
    partner: &PartnerRecord,
    key: &str,
    max_skew: Duration,
) -> Result<PingReport, PingError> {
    let parsed = partner_key::parse(key).map_err(|_| PingError::NotPartnerKey)?;
    let signing = partner_key::signing_key(&parsed);
    let base = url::Url::parse(&partner.url).map_err(|e| PingError::Unreachable(e.to_string()))?;
    let url = base
        .join(wire::PING_PATH)
        .map_err(|e| PingError::Unreachable(e.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| PingError::Unreachable("the URL has no host".into()))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let view = RequestView {
        method: "GET",
        authority: &authority,
        path: url.path(),
        query: url.query(),
        fields: &[("x-request-id", &request_id)],
    };
    let signed = wire::sign_request(&signing, parsed.id, &view)
        .map_err(|e| PingError::Key(e.to_string()))?;
    let nonce = wire::nonce_of(&signed.signature_input)
        .unwrap_or_default()
        .to_string();
    let response = http
        .get(url.clone())
        .bearer_auth(key)
        .header("x-request-id", &request_id)
        .header("signature-input", &signed.signature_input)
        .header("signature", &signed.signature)
        .send()
        .await
        .map_err(|e| PingError::Unreachable(crate::error_chain::error_chain(&e)))?;
    let status = response.status().as_u16();
    if status == 403 {
        return Err(PingError::Pending);
    }
    if status == 401 {
        return Err(PingError::Refused { status });
    }
    if status != 200 {
        return Err(PingError::Unexpected {
            status,
            url: url.to_string(),
        });
    }
    let answer = wire::AnswerHeaders::of(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| PingError::Unreachable(crate::error_chain::error_chain(&e)))?;
    let check = wire::AnswerCheck {
        method: "GET",
        authority: &authority,
        path: url.path(),
        nonce: &nonce,
    };
    wire::verify_answer(&signing, parsed.id, max_skew, &check, &answer, &body)
        .map_err(PingError::BadAnswer)?;
    #[derive(serde::Deserialize)]
    struct Pong {
        organization: String,
        connection: String,
        time: u64,
    }
    let pong: Pong =
        serde_json::from_slice(&body).map_err(|e| PingError::BadAnswer(format!("body: {e}")))?;
    let ours = mft_filters::signing::unix_seconds(SystemTime::now()) as i64;
    let skew = pong.time as i64 - ours;
    if skew.unsigned_abs() > max_skew.as_secs() {
        return Err(PingError::Skew(skew.unsigned_abs()));
    }
    Ok(PingReport {
        organization: pong.organization,
        connection: pong.connection,
        skew_secs: skew,
    })
}
