//! Download receipts, receiving side: when one of our users first
//! downloads a file a partner delivered, the partner gets a signed receipt
//! (`POST /federation/v1/receipts`).
//!
//! The first download is recorded in the key store before anything is
//! sent, and the receipt is retried with backoff until the partner takes
//! it, so a partner outage or a restart delays a receipt but never loses or
//! doubles it (the partner's backend keeps the first receipt per file).

use super::messages::Receipt;
use super::outbound::their_key_for;
use super::partner_client::{PartnerClient, Target};
use super::wire;
use crate::audit::AuditLog;
use crate::backend_client::RetryPolicy;
use crate::store::inbound_files::InboundFile;
use crate::store::Store;
use mft_config::Config;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Notify;

/// Receipts sent per round.
const BATCH: usize = 16;

/// The receipt sender; one per gateway process.
pub struct Receipts {
    store: Store,
    partners: Arc<super::directory::PartnerDirectory>,
    client: PartnerClient,
    config: Arc<Config>,
    audit: AuditLog,
    nudge: Notify,
    retry: RetryPolicy,
    metrics: super::metrics::FederationMetrics,
}

impl Receipts {
    /// A sender over `store`.
    pub fn new(
        store: Store,
        partners: Arc<super::directory::PartnerDirectory>,
        client: PartnerClient,
        config: Arc<Config>,
        audit: AuditLog,
        metrics: super::metrics::FederationMetrics,
    ) -> Receipts {
        let retry = super::retry_policy(&config.trust);
        Receipts {
            store,
            partners,
            client,
            config,
            audit,
            nudge: Notify::new(),
            retry,
            metrics,
        }
    }

    /// A local user downloaded `file_id` in full: if a partner delivered it
    /// and this is the first download, queue its receipt.
    pub async fn downloaded(&self, file_id: &str) {
        let known = match self.store.inbound_file(file_id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file_id, error = %e, "cannot check for a receipt");
                return;
            }
        };
        let Some(file) = known.filter(|f| f.downloaded_at.is_none()) else {
            return;
        };
        match self.store.mark_downloaded(file_id, SystemTime::now()).await {
            Ok(true) => {
                tracing::info!(file_id, partner = %file.partner, relay_id = %file.relay_id, "first download of a partner's file; receipt queued");
                self.nudge.notify_one();
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(file_id, error = %e, "cannot record a download"),
        }
    }

    /// Sends due receipts until the shutdown starts; a receipt being sent
    /// then is finished (a receipt cut by the exit is sent again after the
    /// restart, and the partner takes it once).
    pub async fn run(self: Arc<Self>, drain: crate::drain::Drain) {
        let interval = self.config.trust.relay_poll_interval;
        while !drain.is_stopping() {
            // No connection, no receipt to send: wait without polling.
            if self.partners.is_empty() {
                tokio::select! {
                    () = self.partners.wait_for_partners() => continue,
                    () = drain.stopping() => return,
                }
            }
            match self.store.due_receipts(BATCH).await {
                Ok(due) => {
                    for file in due {
                        if drain.is_stopping() {
                            return;
                        }
                        let _working = drain.work();
                        self.send(&file).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read due receipts"),
            }
            tokio::select! {
                _ = tokio::time::timeout(interval, self.nudge.notified()) => {}
                () = drain.stopping() => return,
            }
        }
    }

    async fn send(&self, file: &InboundFile) {
        let outcome = self.try_send(file).await;
        let stored = match &outcome {
            Ok(()) => {
                tracing::info!(file_id = %file.file_id, partner = %file.partner, "receipt sent");
                self.audit(file, "allow", None);
                self.metrics.receipt("sent", "delivered");
                self.store.receipt_outcome(&file.file_id, None, None).await
            }
            Err((message, true)) => {
                self.metrics.receipt("sent", "retry");
                let attempt = file.receipt_attempts.saturating_add(1);
                let delay = self.retry.next_delay(attempt, Some(self.retry.base));
                tracing::info!(file_id = %file.file_id, partner = %file.partner, ?delay, error = %message, "receipt not sent; will retry");
                self.store
                    .receipt_outcome(&file.file_id, Some(delay), Some(message))
                    .await
            }
            Err((message, false)) => {
                tracing::warn!(file_id = %file.file_id, partner = %file.partner, error = %message, "receipt refused for good");
                self.audit(file, "deny", Some(message));
                self.metrics.receipt("sent", "failed");
                self.store
                    .receipt_outcome(&file.file_id, None, Some(message))
                    .await
            }
        };
        if let Err(e) = stored {
            tracing::warn!(file_id = %file.file_id, error = %e, "cannot record a receipt attempt");
        }
    }

    /// `Err((why, transient))`.
    async fn try_send(&self, file: &InboundFile) -> Result<(), (String, bool)> {
        let partner = self
            .store
            .get_partner(&file.partner)
            .await
            .map_err(|e| (e.to_string(), true))?
            .ok_or_else(|| ("the connection was removed".to_string(), false))?;
        let key = their_key_for(&partner, &self.config).map_err(|e| (e.to_string(), true))?;
        let receipt = Receipt {
            relay_id: file.relay_id.clone(),
            file_id: file.source_file_id.clone(),
            downloaded_at: humantime::format_rfc3339_seconds(
                file.downloaded_at.unwrap_or_else(SystemTime::now),
            )
            .to_string(),
        };
        let body = serde_json::to_vec(&receipt).map_err(|e| (e.to_string(), false))?;
        let target = Target {
            partner: &partner,
            key: &key,
        };
        let idempotency = format!("receipt:{}", file.file_id);
        self.client
            .post_json(&target, wire::RECEIPTS_PATH, Some(&idempotency), body)
            .await
            .map(drop)
            .map_err(|e| {
                let transient = e.is_transient();
                (e.to_string(), transient)
            })
    }

    fn audit(&self, file: &InboundFile, decision: &'static str, reason: Option<&str>) {
        self.audit.record(super::outbound_audit(
            "federation_receipt_sent",
            &file.relay_id,
            &file.partner,
            wire::RECEIPTS_PATH,
            decision,
            reason,
        ));
    }
}
