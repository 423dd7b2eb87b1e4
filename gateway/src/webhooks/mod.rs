//! Webhooks: signed event notifications to partners' systems
//! (docs/webhooks.md).
//!
//! Subscriptions live in the key store (`webhooks add` prints the signing
//! secret once; the store keeps it sealed with `[trust] encryption_key`).
//! Events come from the backend's delivery feed (`delivery.created`, read
//! from a position of its own kept in the store, like the trust relay's)
//! and from the gateway itself (`delivery.relayed`, `receipt.received`,
//! `file.downloaded`). Each event is written to the store's outbox, one row
//! per subscription, before anything is sent, under a stable webhook-id;
//! the worker sends due rows following the Standard Webhooks specification
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC>`) and
//! retries with exponential backoff until the receiver answers 2xx. A crash
//! only repeats a send, with the same id (at-least-once). A subscription
//! that has not had a single success for [`DISABLE_AFTER`] is disabled.
//!
//! Targets go through the SSRF guard ([`ssrf`]) unless the subscription
//! allows private addresses; redirects are never followed.

pub mod ssrf;
pub mod subscriptions;

use crate::audit::{AuditLog, AuditRecord};
use crate::backend_client::{BackendClient, CallContext, Delivery, RetryPolicy};
use crate::store::webhook_messages::{NewEvent, WebhookMessage};
use crate::store::Store;
use crate::trust::seal::Sealer;
use base64::Engine as _;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// The event types a subscription can name.
pub const EVENT_TYPES: &[&str] = &[
    "delivery.created",
    "delivery.relayed",
    "receipt.received",
    "file.downloaded",
];

/// The type of the message `webhooks test` sends.
pub const TEST_EVENT: &str = "webhook.test";

/// A subscription without a successful delivery for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// Prefix of a signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

/// Messages sent at the same time.
const PARALLEL: usize = 4;
/// How long a claimed message is ours (a send takes at most
/// [`SEND_TIMEOUT`]); after a crash mid-send, the message waits this long.
const LEASE: Duration = Duration::from_secs(60);
/// Overall bound of one send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect bound of one send.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Feed page size.
const PAGE: usize = 100;

/// What went wrong with a webhook. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The stored or given secret is not `whsec_<base64>`.
    #[error("the signing secret is not whsec_<base64>")]
    BadSecret,
    /// The sealed secret does not open (wrong `[trust] encryption_key`?).
    #[error("the stored signing secret cannot be decrypted (wrong trust.encryption_key?)")]
    Sealed,
    /// No `[trust] encryption_key`: secrets cannot be sealed or opened.
    #[error(
        "[trust] encryption_key is not set: webhook signing secrets are stored encrypted with it"
    )]
    NoEncryptionKey,
    /// The target is refused by the SSRF guard.
    #[error(transparent)]
    Refused(#[from] ssrf::TargetRefused),
    /// The URL cannot be used.
    #[error("url {0}")]
    Url(String),
    /// No answer (connect, TLS, timeout).
    #[error("no answer: {0}")]
    Unreachable(String),
    /// A redirect, which is never followed.
    #[error("the receiver answered {status} (a redirect, not followed)")]
    Redirect {
        /// HTTP status.
        status: u16,
    },
    /// Any other non-2xx answer.
    #[error("the receiver answered {status}")]
    Status {
        /// HTTP status.
        status: u16,
    },
    /// The system random source failed.
    #[error("cannot read operating system randomness")]
    Random,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// The stable webhook-id of an event named by `parts` (its type and what
/// identifies it): the same event always gets the same id, so a feed page
/// read twice or a relay reported twice does not make a second message.
pub fn msg_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("msg_{}", &hex::encode(h.finalize())[..32])
}

/// A fresh webhook-id for an event that happens once by nature.
pub fn random_msg_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// The JSON body of an event (Standard Webhooks' recommended envelope).
pub fn payload(event_type: &str, at: SystemTime, data: serde_json::Value) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": humantime::format_rfc3339_millis(at).to_string(),
        "data": data,
    })
    .to_string()
}

/// A new signing secret, `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> Result<String, WebhookError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|_| WebhookError::Random)?;
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    raw.fill(0);
    Ok(secret)
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
/// base64-decoded part of `secret` after `whsec_`.
pub fn signature(
    secret: &str,
    msg_id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<String, WebhookError> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(WebhookError::BadSecret)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| WebhookError::BadSecret)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    ))
}

/// What a sealed secret is bound to (the AEAD's associated data): another
/// row's sealed secret copied here does not open.
fn seal_name(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}")
}

/// The sealer for webhook secrets, from `[trust] encryption_key`.
pub fn sealer(config: &mft_config::Config) -> Result<Sealer, WebhookError> {
    let key = config
        .trust
        .encryption_key
        .as_ref()
        .ok_or(WebhookError::NoEncryptionKey)?;
    Sealer::new(key).map_err(|_| WebhookError::NoEncryptionKey)
}

/// Seals `secret` for subscription `id`.
pub fn seal_secret(sealer: &Sealer, id: &str, secret: &str) -> Result<Vec<u8>, WebhookError> {
    sealer
        .seal(&seal_name(id), secret.as_bytes())
        .map_err(|_| WebhookError::Random)
}

/// Opens the sealed secret of subscription `id`.
pub fn open_secret(sealer: &Sealer, id: &str, sealed: &[u8]) -> Result<String, WebhookError> {
    sealer
        .open(&seal_name(id), sealed)
        .map_err(|_| WebhookError::Sealed)
}

/// The HTTP side: two clients that never follow redirects and ignore proxy
/// environment variables; one resolves through the SSRF guard.
#[derive(Clone)]
pub struct Sender {
    guarded: reqwest::Client,
    open: reqwest::Client,
}

impl Sender {
    /// Builds both clients.
    pub fn new() -> Result<Sender, WebhookError> {
        let build = |guarded: bool| {
            let mut b = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(SEND_TIMEOUT)
                .user_agent(concat!(
                    "mft-gateway/",
                    env!("CARGO_PKG_VERSION"),
                    " webhooks"
                ));
            if guarded {
                b = b.dns_resolver(Arc::new(ssrf::GuardedResolver));
            }
            b.build()
                .map_err(|e| WebhookError::Client(crate::error_chain::error_chain(&e)))
        };
        Ok(Sender {
            guarded: build(true)?,
            open: build(false)?,
        })
    }

    /// POSTs one signed message; the receiver's status if it was 2xx.
    pub async fn send(
        &self,
        url: &str,
        allow_private: bool,
        secret: &str,
        msg_id: &str,
        body: &str,
    ) -> Result<u16, WebhookError> {
        let url = url::Url::parse(url).map_err(|e| WebhookError::Url(e.to_string()))?;
        let client = if allow_private {
            &self.open
        } else {
            ssrf::check_literal(&url)?;
            &self.guarded
        };
        let timestamp = mft_filters::signing::unix_seconds(SystemTime::now());
        let sig = signature(secret, msg_id, timestamp, body.as_bytes())?;
        let response = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                // The guard's refusal surfaces as a connect error: name it.
                let chain = crate::error_chain::error_chain(&e);
                WebhookError::Unreachable(chain)
            })?;
        let status = response.status().as_u16();
        // The answer's body is of no interest; do not read it.
        drop(response);
        match status {
            200..=299 => Ok(status),
            300..=399 => Err(WebhookError::Redirect { status }),
            _ => Err(WebhookError::Status { status }),
        }
    }
}

/// The webhook worker and event intake; one per gateway process.
pub struct Webhooks {
    store: Store,
    backend: BackendClient,
    sender: Sender,
    sealer: Option<Sealer>,
    audit: AuditLog,
    nudge: Notify,
    retry: RetryPolicy,
    poll: Duration,
    /// Whether an enabled subscription wants `file.downloaded`, as of the
    /// last check (every worker round); only a gateway where one does pays
    /// a query per download.
    downloads_wanted: AtomicBool,
    /// [`Store::webhook_adds`] at that check; `u64::MAX` before the first.
    downloads_checked: AtomicU64,
}

impl Webhooks {
    /// The worker over `store`; retries follow `[trust] relay_retry_base`
    /// and `relay_retry_max`, polling `relay_poll_interval`.
    pub fn new(
        store: Store,
        backend: BackendClient,
        config: &mft_config::Config,
        audit: AuditLog,
    ) -> Result<Webhooks, WebhookError> {
        Ok(Webhooks {
            store,
            backend,
            sender: Sender::new()?,
            sealer: sealer(config).ok(),
            audit,
            nudge: Notify::new(),
            retry: crate::trust::retry_policy(&config.trust),
            poll: config.trust.relay_poll_interval,
            downloads_wanted: AtomicBool::new(false),
            downloads_checked: AtomicU64::new(u64::MAX),
        })
    }

    /// Whether a complete download may be a `file.downloaded` event: `false`
    /// only when the last check found no subscription wanting it and no
    /// subscription was added through this process since (one added by the
    /// CLI is seen at the worker's next round).
    pub fn wants_downloads(&self) -> bool {
        self.downloads_checked.load(Ordering::Acquire) != self.store.webhook_adds()
            || self.downloads_wanted.load(Ordering::Relaxed)
    }

    /// Asks the store whether a subscription wants `file.downloaded` and
    /// remembers the answer for [`Webhooks::wants_downloads`].
    async fn check_downloads_wanted(&self) -> Result<bool, crate::store::StoreError> {
        let adds = self.store.webhook_adds();
        let wanted = self.store.webhooks_want("file.downloaded").await?;
        self.downloads_wanted.store(wanted, Ordering::Relaxed);
        self.downloads_checked.store(adds, Ordering::Release);
        Ok(wanted)
    }

    /// Work now (a delivery was created, an event queued).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Queues gateway events (relay, receipt, download) durably, then wakes
    /// the worker. Failures are logged: the event's own work already happened.
    pub async fn emit(&self, events: Vec<NewEvent>) {
        match self.store.queue_webhook_events(&events, None).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(messages = n, "webhook events queued");
                self.nudge();
            }
            Err(e) => tracing::warn!(error = %e, "cannot queue webhook events"),
        }
    }

    /// `emit` of one event named by `type` and the parts that identify it.
    pub async fn emit_one(&self, event_type: &str, id_parts: &[&str], data: serde_json::Value) {
        let mut parts = vec![event_type];
        parts.extend_from_slice(id_parts);
        let now = SystemTime::now();
        self.emit(vec![NewEvent {
            msg_id: msg_id(&parts),
            event_type: event_type.to_string(),
            payload: payload(event_type, now, data),
            occurred_at: now,
        }])
        .await;
    }

    /// A local user downloaded `file_id` in full: a `file.downloaded` event
    /// (each download its own event), if any subscription wants it.
    pub async fn file_downloaded(&self, file_id: &str, principal: Option<&str>) {
        match self.check_downloads_wanted().await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read webhook subscriptions");
                return;
            }
        }
        let once = uuid::Uuid::now_v7().to_string();
        self.emit_one(
            "file.downloaded",
            &[file_id, &once],
            serde_json::json!({"file_id": file_id, "principal": principal}),
        )
        .await;
    }

    /// Reads the feed and sends what is due until the shutdown starts;
    /// sends under way then finish, or release their lease at the timeout.
    pub async fn run(self: Arc<Self>, drain: crate::drain::Drain) {
        if self.sealer.is_none() {
            tracing::info!(
                "webhooks: [trust] encryption_key is not set; no webhook can be added or sent"
            );
        }
        while !drain.is_stopping() {
            if let Err(e) = self.round(&drain).await {
                tracing::warn!(error = %e, "webhook round failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::timeout(self.poll, self.nudge.notified()) => {}
                () = drain.stopping() => return,
            }
        }
    }

    /// One pass: queue new deliveries from the feed, then send what is due.
    async fn round(&self, drain: &crate::drain::Drain) -> anyhow::Result<()> {
        self.check_downloads_wanted().await?;
        if self.sealer.is_none() {
            return Ok(());
        }
        if self.store.webhooks_want("delivery.created").await? {
            self.read_feed().await?;
        }
        while !drain.is_stopping() {
            let due = self
                .store
                .claim_due_webhook_messages(PARALLEL * 4, LEASE)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            let _working = drain.work();
            futures_util::stream::iter(due)
                .for_each_concurrent(PARALLEL, |m| async move {
                    if drain.is_stopping() {
                        // Claimed but not sent: free for the next process now.
                        self.release(&m).await;
                        return;
                    }
                    tokio::select! {
                        () = self.work(&m) => {}
                        () = drain.aborting() => {
                            // The receiver dedupes on webhook-id; the next
                            // process sends it again at once.
                            tracing::info!(webhook = %m.webhook_id, webhook_id = %m.msg_id, "shutdown: webhook send abandoned, lease released");
                            self.release(&m).await;
                        }
                    }
                })
                .await;
        }
        Ok(())
    }

    async fn release(&self, m: &WebhookMessage) {
        if let Err(e) = self.store.release_webhook_lease(m).await {
            tracing::warn!(webhook = %m.webhook_id, error = %e, "cannot release a webhook lease; it expires on its own");
        }
    }

    async fn read_feed(&self) -> anyhow::Result<()> {
        let mut cursor = self.store.webhook_cursor().await?.unwrap_or(0);
        let ctx = CallContext::new("gateway", "", None);
        loop {
            let page = self.backend.delivery_feed(&ctx, cursor, PAGE).await?;
            let count = page.deliveries.len();
            let mut last = cursor;
            let events: Vec<NewEvent> = page
                .deliveries
                .iter()
                .map(|d| {
                    last = last.max(d.seq);
                    delivery_created(d)
                })
                .collect();
            let next = page.next_after_seq.unwrap_or(last).max(last);
            if next == cursor && events.is_empty() {
                return Ok(());
            }
            let queued = self.store.queue_webhook_events(&events, Some(next)).await?;
            if queued > 0 {
                tracing::info!(
                    messages = queued,
                    "webhook messages queued from the delivery feed"
                );
            }
            cursor = next;
            if count < PAGE {
                return Ok(());
            }
        }
    }

    async fn work(&self, m: &WebhookMessage) {
        let outcome = match &self.sealer {
            Some(sealer) => match open_secret(sealer, &m.webhook_id, &m.secret_sealed) {
                Ok(secret) => {
                    self.sender
                        .send(&m.url, m.allow_private, &secret, &m.msg_id, &m.payload)
                        .await
                }
                Err(e) => Err(e),
            },
            None => Err(WebhookError::NoEncryptionKey),
        };
        let attempts = m.attempts.saturating_add(1);
        let recorded = match outcome {
            Ok(status) => {
                tracing::info!(webhook = %m.webhook_id, webhook_id = %m.msg_id, event = %m.event_type, status, attempts, "webhook delivered");
                self.store.webhook_delivered(m).await.map(|()| false)
            }
            Err(e) => {
                let delay = self.retry.next_delay(attempts, Some(self.retry.base));
                let message = e.to_string();
                tracing::info!(webhook = %m.webhook_id, webhook_id = %m.msg_id, event = %m.event_type, attempts, ?delay, error = %message, "webhook not delivered; will retry");
                self.store
                    .webhook_failed(m, delay, &message, DISABLE_AFTER)
                    .await
            }
        };
        match recorded {
            Ok(true) => {
                tracing::warn!(webhook = %m.webhook_id, url = %m.url, "webhook subscription disabled: failing for 5 days");
                let mut r = AuditRecord::new("webhook_disabled");
                r.principal = Some(format!("webhook:{}", m.webhook_id));
                r.decision = Some("deny");
                r.reason = Some("failing for 5 days without a successful delivery".into());
                self.audit.record(r);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(webhook = %m.webhook_id, error = %e, "cannot record a webhook attempt; it is sent again after its lease")
            }
        }
    }
}

/// The `delivery.created` event of a feed delivery.
fn delivery_created(d: &Delivery) -> NewEvent {
    let at = humantime::parse_rfc3339_weak(&d.created_at).unwrap_or_else(|_| SystemTime::now());
    NewEvent {
        msg_id: msg_id(&["delivery.created", &d.id]),
        event_type: "delivery.created".into(),
        payload: payload(
            "delivery.created",
            at,
            serde_json::json!({
                "delivery_id": d.id,
                "sender": d.sender,
                "recipients": d.recipients,
                "subject": d.subject,
                "files": d.files,
                "origin": d.origin,
                "created_at": d.created_at,
            }),
        ),
        occurred_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The worked example of the Standard Webhooks specification
        // (and of its reference libraries' tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(secret, id, 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signature("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, 1, body).is_err());
        assert!(signature("whsec_***", id, 1, body).is_err());
    }

    #[test]
    fn ids_are_stable_per_event() {
        let a = msg_id(&["delivery.created", "d1"]);
        assert_eq!(a, msg_id(&["delivery.created", "d1"]));
        assert_ne!(a, msg_id(&["delivery.created", "d2"]));
        assert_ne!(a, msg_id(&["delivery.relayed", "d1"]));
        // No ambiguity from joining: ("a", "bc") is not ("ab", "c").
        assert_ne!(msg_id(&["a", "bc"]), msg_id(&["ab", "c"]));
        assert!(a.starts_with("msg_") && a.len() == 36);
        assert_ne!(random_msg_id(), random_msg_id());
    }

    #[test]
    fn secrets_are_fresh_and_decodable() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert!(signature(&a, "msg_x", 1, b"{}").is_ok());
    }
}
