//! Managing subscriptions, shared by the `webhooks` CLI and the admin API
//! so both check input the same way.

use super::{ssrf, WebhookError, EVENT_TYPES, TEST_EVENT};
use crate::store::webhooks::{NewWebhook, WebhookRecord};
use crate::store::Store;
use std::time::SystemTime;

/// Why a subscription could not be added. The caller's fault unless `Store`.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Bad URL, bad events, refused target: a 400.
    #[error("{0}")]
    Invalid(String),
    /// The store failed: a 503.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No sealing key, no randomness.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Longest target URL.
const MAX_URL_LEN: usize = 2048;

/// Checks a target URL: http(s), a host, no credentials in it, and (unless
/// `allow_private`) https and no internal address behind the host.
pub async fn check_url(url: &str, allow_private: bool) -> Result<String, AddError> {
    let invalid = |m: String| AddError::Invalid(m);
    if url.len() > MAX_URL_LEN {
        return Err(invalid(format!("url: longer than {MAX_URL_LEN} bytes")));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(invalid(
            "url: must be https:// (plain http only with --allow-private, for internal receivers)"
                .into(),
        )),
        other => return Err(invalid(format!("url: scheme {other:?}, expected https"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "url: no user name or password in the URL (they would be stored in clear)".into(),
        ));
    }
    let Some(host) = parsed.host_str() else {
        return Err(invalid("url: no host".into()));
    };
    if !allow_private {
        ssrf::check_literal(&parsed).map_err(|e| invalid(e.to_string()))?;
        if matches!(parsed.host(), Some(url::Host::Domain(_))) {
            let port = parsed.port_or_known_default().unwrap_or(443);
            ssrf::resolve_and_check(host, port)
                .await
                .map_err(|e| invalid(e.to_string()))?;
        }
    }
    Ok(parsed.to_string())
}

/// Checks and normalizes event types (comma- or space-separated allowed).
pub fn check_events(events: &[String]) -> Result<Vec<String>, AddError> {
    let mut out: Vec<String> = Vec::new();
    for e in events
        .iter()
        .flat_map(|e| e.split([',', ' ']))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if !EVENT_TYPES.contains(&e) {
            return Err(AddError::Invalid(format!(
                "unknown event {e:?}; known: {}",
                EVENT_TYPES.join(", ")
            )));
        }
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    if out.is_empty() {
        return Err(AddError::Invalid(format!(
            "events: name at least one of {}",
            EVENT_TYPES.join(", ")
        )));
    }
    Ok(out)
}

/// Adds a subscription; returns it and its signing secret (`whsec_...`),
/// which exists only in the return value: show it once.
pub async fn add(
    store: &Store,
    config: &mft_config::Config,
    url: &str,
    events: &[String],
    allow_private: bool,
) -> Result<(WebhookRecord, String), AddError> {
    let url = check_url(url, allow_private).await?;
    let events = check_events(events)?;
    let sealer = super::sealer(config)?;
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|_| WebhookError::Random)?;
    let id = format!("wh_{}", hex::encode(raw));
    let secret = super::generate_secret()?;
    let sealed = super::seal_secret(&sealer, &id, &secret)?;
    let record = store
        .add_webhook(&NewWebhook {
            id: &id,
            url: &url,
            events: &events,
            allow_private,
            secret_sealed: &sealed,
        })
        .await?;
    Ok((record, secret))
}

/// Sends one `webhook.test` message to the subscription now (not through
/// the outbox); the receiver's status or why it failed.
pub async fn test(
    config: &mft_config::Config,
    record: &WebhookRecord,
) -> Result<(String, u16), WebhookError> {
    let sealer = super::sealer(config)?;
    let secret = super::open_secret(&sealer, &record.id, &record.secret_sealed)?;
    let msg_id = super::random_msg_id();
    let body = super::payload(
        TEST_EVENT,
        SystemTime::now(),
        serde_json::json!({"webhook": record.id}),
    );
    let status = super::Sender::new()?
        .send(&record.url, record.allow_private, &secret, &msg_id, &body)
        .await?;
    Ok((msg_id, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_and_deduplicated() {
        let ok = check_events(&[
            "delivery.created,receipt.received".into(),
            "delivery.created".into(),
        ])
        .unwrap();
        assert_eq!(ok, vec!["delivery.created", "receipt.received"]);
        assert!(check_events(&["delivery.deleted".into()]).is_err());
        assert!(check_events(&[",".into()]).is_err());
    }

    #[tokio::test]
    async fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/hook", false).await.is_err());
        assert!(check_url("https://127.0.0.1:9/hook", false).await.is_err());
        assert!(check_url("https://localhost:9/hook", false).await.is_err());
        assert!(check_url("https://169.254.169.254/latest", false)
            .await
            .is_err());
        assert!(check_url("https://u:p@hooks.example/", true).await.is_err());
        assert!(check_url("ftp://hooks.example/", true).await.is_err());
        assert_eq!(
            check_url("http://127.0.0.1:9/hook", true).await.unwrap(),
            "http://127.0.0.1:9/hook"
        );
    }
}
