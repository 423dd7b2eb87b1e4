//! The outbound message queue's worker: messages accepted by
//! `POST /admin/v1/messages` are in the key store before the 202; this
//! sends each through its provider, retrying transient failures with the
//! relay's backoff (`[trust] relay_retry_base`/`relay_retry_max`) until
//! `relay_max_age`, across restarts. A crash between the provider's answer
//! and recording it sends the message again (at least once).

use super::{OutboundMessage, TransportError};
use crate::backend_client::RetryPolicy;
use crate::store::outbound_messages::QueuedMessage;
use crate::store::Store;
use futures_util::StreamExt;
use mft_config::Config;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Messages sent at the same time.
const PARALLEL: usize = 2;
/// A claimed message is ours this long (an SMTP conversation is bounded
/// by a few 30 s steps).
const LEASE: Duration = Duration::from_secs(300);

/// What `content` holds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Content {
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// Optional HTML.
    #[serde(default)]
    pub html: Option<String>,
}

/// The worker; one per gateway process.
pub struct Outbox {
    store: Store,
    config: Arc<Config>,
    retry: RetryPolicy,
    rates: super::rate::Rates,
}

impl Outbox {
    /// A worker over `store`.
    pub fn new(store: Store, config: Arc<Config>) -> Outbox {
        let retry = crate::trust::retry_policy(&config.trust);
        Outbox {
            store,
            config,
            retry,
            rates: super::rate::Rates::default(),
        }
    }

    /// Sends due messages until the shutdown starts; sends under way then
    /// finish, or release their lease at the timeout.
    pub async fn run(self: Arc<Self>, drain: crate::drain::Drain) {
        while !drain.is_stopping() {
            if let Err(e) = self.round(&drain).await {
                tracing::warn!(error = %e, "message queue round failed; trying again");
            }
            if !drain.sleep(self.config.trust.relay_poll_interval).await {
                return;
            }
        }
    }

    async fn round(&self, drain: &crate::drain::Drain) -> anyhow::Result<()> {
        while !drain.is_stopping() {
            let due = self.store.claim_due_messages(PARALLEL * 2, LEASE).await?;
            if due.is_empty() {
                return Ok(());
            }
            let _working = drain.work();
            futures_util::stream::iter(due)
                .for_each_concurrent(PARALLEL, |m| async move {
                    if drain.is_stopping() {
                        self.release(&m).await;
                        return;
                    }
                    tokio::select! {
                        () = self.work(&m) => {}
                        () = drain.aborting() => {
                            tracing::info!(message_id = %m.id, "shutdown: message send abandoned, lease released");
                            self.release(&m).await;
                        }
                    }
                })
                .await;
        }
        Ok(())
    }

    async fn release(&self, m: &QueuedMessage) {
        if let Err(e) = self.store.release_message_lease(&m.id).await {
            tracing::warn!(message_id = %m.id, error = %e, "cannot release a message lease; it expires on its own");
        }
    }

    async fn work(&self, m: &QueuedMessage) {
        let record = match self.store.get_transport(&m.transport).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(message_id = %m.id, error = %e, "cannot read a message's provider; it is tried again after its lease");
                return;
            }
        };
        let rate = record.as_ref().and_then(|r| super::rate::of(&r.settings));
        if let Some(wait) = self.rates.wait(&m.transport, rate) {
            tracing::debug!(message_id = %m.id, transport = %m.transport, ?wait, "provider rate: message waits");
            if let Err(e) = self.store.postpone_message(&m.id, wait).await {
                tracing::warn!(message_id = %m.id, error = %e, "cannot postpone a message; it is tried again after its lease");
            }
            return;
        }
        let outcome = self.attempt(m, record).await;
        let attempts = m.attempts.saturating_add(1);
        let age = SystemTime::now()
            .duration_since(m.created_at)
            .unwrap_or_default();
        let recorded = match outcome {
            Ok(answer) => {
                tracing::info!(message_id = %m.id, transport = %m.transport, attempts, "message sent");
                self.store
                    .message_outcome(&m.id, None, &answer, false)
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                let permanent = matches!(
                    e,
                    TransportError::Invalid(_) | TransportError::Recipient { .. }
                ) || age > self.config.trust.relay_max_age;
                if permanent {
                    tracing::warn!(message_id = %m.id, transport = %m.transport, error = %reason, "message failed for good");
                    self.store.message_outcome(&m.id, None, &reason, true).await
                } else {
                    let delay = self.retry.next_delay(attempts, Some(self.retry.base));
                    tracing::info!(message_id = %m.id, transport = %m.transport, ?delay, error = %reason, "message not sent; will retry");
                    self.store
                        .message_outcome(&m.id, Some(delay), &reason, false)
                        .await
                }
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(message_id = %m.id, error = %e, "cannot record a message attempt; it is tried again after its lease");
        }
    }

    async fn attempt(
        &self,
        m: &QueuedMessage,
        record: Option<crate::store::transports::TransportRecord>,
    ) -> Result<String, TransportError> {
        let content: Content = serde_json::from_str(&m.content)
            .map_err(|e| TransportError::Invalid(format!("stored message: {e}")))?;
        let Some(record) = record else {
            return Err(TransportError::Invalid(format!(
                "no transport named {:?} (removed?)",
                m.transport
            )));
        };
        let message = OutboundMessage {
            to: &content.to,
            subject: &content.subject,
            text: &content.text,
            html: content.html.as_deref(),
            progress: Some(super::Progress::new(&self.store, &m.id)),
        };
        super::send(&self.store, &self.config, &record, &message).await
    }
}

/// Checks a message for `POST /admin/v1/messages` and queues it; its id.
pub async fn accept(
    store: &Store,
    provider: Option<&str>,
    kind: Option<&str>,
    content: Content,
) -> Result<String, TransportError> {
    let invalid = |m: String| TransportError::Invalid(m);
    let record = match (provider, kind) {
        (Some(p), None) => store
            .get_transport(p)
            .await?
            .ok_or_else(|| invalid(format!("provider: no transport named {p:?}")))?,
        (None, Some(k)) => store
            .list_transports()
            .await?
            .into_iter()
            .find(|t| t.kind == k)
            .ok_or_else(|| invalid(format!("type: no transport of type {k:?}")))?,
        _ => {
            return Err(invalid(
                "give exactly one of \"provider\" and \"type\"".into(),
            ))
        }
    };
    if content.to.is_empty() || content.to.len() > 100 {
        return Err(invalid("to: 1 to 100 recipients".into()));
    }
    let mut normalized: Vec<String> = Vec::with_capacity(content.to.len());
    for to in &content.to {
        let address = super::normalize_address(&record.kind, to).map_err(|reason| {
            TransportError::Recipient {
                to: to.clone(),
                reason,
            }
        })?;
        // Two spellings of one number are one recipient.
        if !normalized.contains(&address) {
            normalized.push(address);
        }
    }
    let content = Content {
        to: normalized,
        ..content
    };
    if content.subject.len() > 998 || content.subject.contains(['\r', '\n']) {
        return Err(invalid("subject: one line of at most 998 bytes".into()));
    }
    let text = serde_json::to_string(&content).map_err(|e| invalid(e.to_string()))?;
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    store.queue_message(&id, &record.name, &text).await?;
    Ok(id)
}
