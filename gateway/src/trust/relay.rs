//! Outbound relay: local deliveries with recipients in a partner's domains
//! are sent to that partner's gateway.
//!
//! The backend is the source of truth. The relay reads its delivery feed
//! (`GET /api/v1/deliveries?after_seq=`) from a position kept in the key
//! store, queues one job per (delivery, partner) in the same transaction
//! that moves the position, and works the queue: each file is streamed from
//! our backend to the partner (`POST /federation/v1/files`, content digest,
//! idempotency key per file), then the delivery is created there
//! (`POST /federation/v1/deliveries`, idempotency key = our delivery id).
//! Every step is idempotent at the partner, so a crash or an outage at any
//! point means the step is simply repeated: the partner ends up with one
//! delivery. The per-recipient status is written back to our backend.
//!
//! Whatever created the delivery (the API, a bridge) is irrelevant: the
//! feed sees them all. Deliveries a partner made here (origin `partner:*`)
//! are never relayed on, so two connections cannot bounce a delivery.

use super::messages::{DeliveryAccepted, RelayedDelivery, RelayedFile};
use super::outbound::their_key_for;
use super::partner_client::{FileUpload, PartnerCallError, PartnerClient, Target};
use super::wire;
use crate::audit::AuditLog;
use crate::backend_client::{
    paths, BackendClient, BackendError, CallContext, Delivery, FileInfo, RelayStatus, RetryPolicy,
};
use crate::store::partners::PartnerRecord;
use crate::store::relay::{NewRelay, RelayJob, RelayState};
use crate::store::Store;
use futures_util::StreamExt;
use mft_config::Config;
use mft_filters::trust::domain_rules::split_recipients;
use mft_filters::trust::mail_sender::{sender_listed, RelayRefusal};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Feed page size.
const PAGE: usize = 100;
/// Jobs worked at the same time.
const PARALLEL: usize = 4;
/// How long a claimed job is ours before another gateway (or this one
/// after a crash) may take it; renewed while the job is worked.
const LEASE: Duration = Duration::from_secs(120);
/// How often a lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_secs(30);
/// First and longest wait between tries to record an outcome while the
/// store is unreachable.
const RECORD_RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Why a delivery made by a mailbox poller (origin `imap:<name>` or
/// `pop3:<name>`) may not leave for a partner, judged on the mailbox's
/// settings alone (the poller also checked our MX's verdict).
fn mailbox_refusal(config: &Config, d: &Delivery) -> Option<RelayRefusal> {
    let (proto, name) = d.origin.split_once(':')?;
    let conn = match proto {
        "imap" => config.imap.iter().map(|m| &m.conn).find(|c| c.name == name),
        "pop3" => config.pop3.iter().map(|m| &m.conn).find(|c| c.name == name),
        _ => return None,
    };
    // A mailbox no longer configured has no permission to relay.
    let Some(conn) = conn else {
        return Some(RelayRefusal::NotEnabled);
    };
    if !conn.relay.enabled {
        return Some(RelayRefusal::NotEnabled);
    }
    if !sender_listed(&conn.relay.senders, &d.sender) {
        return Some(RelayRefusal::SenderNotAllowed);
    }
    None
}

/// Why an attempt failed, and whether to try again.
struct Failure {
    message: String,
    transient: bool,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            transient: true,
        }
    }

    fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            transient: false,
        }
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Failure {
        Failure {
            transient: e.is_transient(),
            message: format!("our backend: {e}"),
        }
    }
}

impl From<PartnerCallError> for Failure {
    fn from(e: PartnerCallError) -> Failure {
        Failure {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

/// The relay worker; one per gateway process.
pub struct Relay {
    store: Store,
    partners: Arc<super::directory::PartnerDirectory>,
    backend: BackendClient,
    client: PartnerClient,
    config: Arc<Config>,
    audit: AuditLog,
    nudge: Notify,
    retry: RetryPolicy,
    metrics: super::metrics::FederationMetrics,
    webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    notifier: Option<Arc<crate::transports::notify::Notifier>>,
}

fn gateway_ctx() -> CallContext {
    CallContext::new("gateway", "", None)
}

impl Relay {
    /// A relay over `store` and `backend`.
    pub fn new(
        store: Store,
        partners: Arc<super::directory::PartnerDirectory>,
        backend: BackendClient,
        client: PartnerClient,
        config: Arc<Config>,
        audit: AuditLog,
        metrics: super::metrics::FederationMetrics,
    ) -> Relay {
        let retry = super::retry_policy(&config.trust);
        Relay {
            store,
            partners,
            backend,
            client,
            config,
            audit,
            nudge: Notify::new(),
            retry,
            metrics,
            webhooks: None,
            notifier: None,
        }
    }

    /// Relays failed for good raise `relay_failed` (`[[notify]]`).
    pub fn with_notifier(mut self, notifier: Arc<crate::transports::notify::Notifier>) -> Relay {
        self.notifier = Some(notifier);
        self
    }

    /// Relays delivered become `delivery.relayed` webhook events.
    pub fn with_webhooks(mut self, webhooks: Arc<crate::webhooks::Webhooks>) -> Relay {
        self.webhooks = Some(webhooks);
        self
    }

    /// Asks the worker to read the feed now (a delivery was just created).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Reads the feed and works the queue until the shutdown starts; jobs
    /// being worked then finish, or release their lease at the timeout.
    pub async fn run(self: Arc<Self>, drain: crate::drain::Drain) {
        let interval = self.config.trust.relay_poll_interval;
        while !drain.is_stopping() {
            // No connection, nothing to relay: wait without polling. The
            // feed position stays, so deliveries made meanwhile are read
            // once a connection appears (and skipped if made before it).
            if self.partners.is_empty() {
                tokio::select! {
                    () = self.partners.wait_for_partners() => continue,
                    () = drain.stopping() => return,
                }
            }
            if let Err(e) = self.round(&drain).await {
                tracing::warn!(error = %e, "relay round failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::timeout(interval, self.nudge.notified()) => {}
                () = drain.stopping() => return,
            }
        }
    }

    /// One pass: read new deliveries, then work what is due.
    async fn round(&self, drain: &crate::drain::Drain) -> anyhow::Result<()> {
        // Fresh from the store, not the directory's copy: a connection
        // added a moment ago must not have its deliveries skipped.
        let partners = self.store.list_partners().await?;
        if partners.is_empty() {
            return Ok(());
        }
        self.read_feed(&partners).await?;
        if drain.is_stopping() {
            return Ok(());
        }
        let due = self.store.claim_due_relays(PARALLEL * 2, LEASE).await?;
        let _working = drain.work();
        futures_util::stream::iter(due)
            .for_each_concurrent(PARALLEL, |job| async move {
                if drain.is_stopping() {
                    // Claimed but not started: free for the next process now.
                    self.release(&job).await;
                    return;
                }
                self.work(job, drain).await;
            })
            .await;
        Ok(())
    }

    async fn release(&self, job: &RelayJob) {
        if let Err(e) = self.store.release_relay_lease(job).await {
            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot release a relay lease; it expires on its own");
        }
    }

    async fn read_feed(&self, partners: &[PartnerRecord]) -> anyhow::Result<()> {
        let domains: Vec<(String, Vec<String>)> = partners
            .iter()
            .map(|p| (p.name.clone(), p.email_domains.clone()))
            .collect();
        let ours = &self.config.organization.email_domains;
        let mut cursor = self.store.relay_cursor().await?.unwrap_or(0);
        loop {
            let page = self
                .backend
                .delivery_feed(&gateway_ctx(), cursor, PAGE)
                .await?;
            let count = page.deliveries.len();
            let mut jobs: Vec<NewRelay> = Vec::new();
            let mut last = cursor;
            for d in &page.deliveries {
                last = last.max(d.seq);
                if d.origin.starts_with("partner:") {
                    continue;
                }
                if let Some(refusal) = mailbox_refusal(&self.config, d) {
                    // The poller already took these recipients off; this
                    // catches deliveries made before it did.
                    tracing::warn!(delivery_id = %d.id, origin = %d.origin, reason = refusal.reason(),
                        "delivery from a mailbox not relayed: {refusal}");
                    continue;
                }
                let split = split_recipients(&d.recipients, ours, &domains);
                for (partner, recipients) in split.relay {
                    let connected_since = partners
                        .iter()
                        .find(|p| p.name == partner)
                        .map(|p| p.created_at);
                    // A delivery made before the connection existed was
                    // meant for whoever those addresses were then; do not
                    // surprise anyone by relaying history.
                    if created_before(&d.created_at, connected_since) {
                        continue;
                    }
                    jobs.push((d.id.clone(), partner, recipients));
                }
            }
            let next = page.next_after_seq.unwrap_or(last).max(last);
            if next == cursor && jobs.is_empty() {
                return Ok(());
            }
            self.store.queue_relays(&jobs, next).await?;
            for (delivery, partner, recipients) in &jobs {
                tracing::info!(delivery_id = %delivery, partner = %partner, recipients = recipients.len(), "delivery queued for relay");
                let status = RelayStatus {
                    partner,
                    recipients,
                    status: "queued",
                    detail: None,
                    remote_delivery_id: None,
                    attempts: 0,
                };
                if let Err(e) = self.report(delivery, &status).await {
                    tracing::warn!(delivery_id = %delivery, error = %e, "cannot record relay status in the backend");
                }
            }
            cursor = next;
            if count < PAGE {
                return Ok(());
            }
        }
    }

    async fn report(&self, delivery: &str, status: &RelayStatus<'_>) -> Result<(), BackendError> {
        self.backend
            .put_relay_status(&gateway_ctx(), delivery, status)
            .await
    }

    async fn work(&self, job: RelayJob, drain: &crate::drain::Drain) {
        // Until when the job is surely ours: the lease written at the claim
        // or the last renewal, measured on our clock.
        let mut held_until = tokio::time::Instant::now() + LEASE;
        let attempt = self.attempt(&job);
        tokio::pin!(attempt);
        let mut renewal = tokio::time::interval(LEASE_RENEWAL);
        renewal.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut attempt => break outcome,
                () = drain.aborting() => {
                    // Every step is idempotent at the partner: the next
                    // process repeats this attempt at once, not after the lease.
                    tracing::info!(delivery_id = %job.delivery_id, partner = %job.partner, "shutdown: relay attempt abandoned, lease released");
                    self.release(&job).await;
                    return;
                }
                _ = renewal.tick() => {
                    match self.store.renew_relay_lease(&job, LEASE).await {
                        Ok(true) => held_until = tokio::time::Instant::now() + LEASE,
                        Ok(false) => {
                            // Another gateway holds it now: it sends, we stop.
                            tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, "relay lease lost to another gateway; this attempt stops");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot renew a relay lease");
                            // The store is away and the lease would run out
                            // before the next renewal: stop before another
                            // gateway may claim the job, so it is never sent
                            // by two at once (the next owner repeats the
                            // steps, idempotently at the partner).
                            if tokio::time::Instant::now() + LEASE_RENEWAL >= held_until {
                                tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, "relay lease about to run out with the store unreachable; this attempt stops");
                                return;
                            }
                        }
                    }
                }
            }
        };
        let attempts = job.attempts.saturating_add(1);
        // The outcome is recorded while the lease lasts, retried while the
        // store is unreachable: the job is then neither sent again after
        // the outage (delivered) nor left leased by nobody until it expires.
        let mut backoff =
            crate::backoff::Backoff::new(RECORD_RETRY.0, RECORD_RETRY.1, RECORD_RETRY.0);
        loop {
            let result = match &outcome {
                Ok(remote) => self.delivered(&job, remote, attempts).await,
                Err(f) => self.failed(&job, f, attempts).await,
            };
            let e = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            let wait = backoff.next_delay();
            if drain.is_stopping()
                || tokio::time::Instant::now() + wait + RECORD_RETRY.1 >= held_until
            {
                tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, error = %e, "cannot record relay outcome; the job is repeated once its lease runs out");
                return;
            }
            tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot record relay outcome; trying again");
            tokio::time::sleep(wait).await;
        }
    }

    async fn delivered(&self, job: &RelayJob, remote: &str, attempts: u32) -> anyhow::Result<()> {
        let status = RelayStatus {
            partner: &job.partner,
            recipients: &job.recipients,
            status: "delivered",
            detail: None,
            remote_delivery_id: Some(remote),
            attempts,
        };
        if let Err(e) = self.report(&job.delivery_id, &status).await {
            // The partner has it; only our backend's record is behind. The
            // job stays queued, and the next attempt (an idempotent replay
            // at the partner) writes the status again.
            let delay = self.retry.next_delay(attempts, Some(self.retry.base));
            if !self
                .store
                .relay_retry_later(job, delay, &format!("recording the status: {e}"))
                .await?
            {
                self.lease_lost(job);
            }
            return Ok(());
        }
        // Queued before the job is finished: a crash in between repeats the
        // event under the same webhook-id instead of losing it.
        if let Some(webhooks) = &self.webhooks {
            webhooks
                .emit_one(
                    "delivery.relayed",
                    &[&job.delivery_id, &job.partner],
                    serde_json::json!({
                        "delivery_id": job.delivery_id,
                        "partner": job.partner,
                        "recipients": job.recipients,
                        "remote_delivery_id": remote,
                    }),
                )
                .await;
        }
        if !self
            .store
            .relay_finish(job, RelayState::Delivered, Some(remote), None)
            .await?
        {
            self.lease_lost(job);
            return Ok(());
        }
        tracing::info!(delivery_id = %job.delivery_id, partner = %job.partner, remote_delivery_id = %remote, attempts, "delivery relayed");
        self.metrics.relay(&job.partner, "delivered");
        self.audit_outcome(job, "allow", None);
        Ok(())
    }

    /// The job's lease ran out and another gateway claimed it: its outcome
    /// is that gateway's to record.
    fn lease_lost(&self, job: &RelayJob) {
        tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, "relay lease lost to another gateway; its outcome is not recorded here");
    }

    async fn failed(&self, job: &RelayJob, f: &Failure, attempts: u32) -> anyhow::Result<()> {
        let age = SystemTime::now()
            .duration_since(job.created_at)
            .unwrap_or_default();
        let give_up = !f.transient || age > self.config.trust.relay_max_age;
        let status = if give_up { "failed" } else { "retrying" };
        let report = RelayStatus {
            partner: &job.partner,
            recipients: &job.recipients,
            status,
            detail: Some(&f.message),
            remote_delivery_id: None,
            attempts,
        };
        if let Err(e) = self.report(&job.delivery_id, &report).await {
            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot record relay status in the backend");
        }
        if give_up {
            if !self
                .store
                .relay_finish(job, RelayState::Failed, None, Some(&f.message))
                .await?
            {
                self.lease_lost(job);
                return Ok(());
            }
            tracing::warn!(delivery_id = %job.delivery_id, partner = %job.partner, attempts, error = %f.message, "relay failed for good");
            self.audit_outcome(job, "deny", Some(&f.message));
            self.metrics.relay(&job.partner, "failed");
            if let Some(n) = &self.notifier {
                n.raise(
                    "relay_failed",
                    &format!("relay to {} failed for good", job.partner),
                    &format!(
                        "Delivery {} to partner {} failed for good after {attempts} attempt(s): {}\n",
                        job.delivery_id, job.partner, f.message
                    ),
                )
                .await;
            }
        } else {
            let delay = self.retry.next_delay(attempts, Some(self.retry.base));
            if !self.store.relay_retry_later(job, delay, &f.message).await? {
                self.lease_lost(job);
                return Ok(());
            }
            self.metrics.relay(&job.partner, "retry");
            tracing::info!(delivery_id = %job.delivery_id, partner = %job.partner, attempts, ?delay, error = %f.message, "relay failed; will retry");
        }
        Ok(())
    }

    fn audit_outcome(&self, job: &RelayJob, decision: &'static str, reason: Option<&str>) {
        self.audit.record(super::outbound_audit(
            "federation_relay",
            &job.delivery_id,
            &job.partner,
            wire::DELIVERIES_PATH,
            decision,
            reason,
        ));
    }

    /// Sends what is left of `job`; the partner's delivery id on success.
    async fn attempt(&self, job: &RelayJob) -> Result<String, Failure> {
        let partner = self
            .store
            .get_partner(&job.partner)
            .await
            .map_err(|e| Failure::transient(e.to_string()))?
            .ok_or_else(|| Failure::permanent("the connection was removed"))?;
        let key =
            their_key_for(&partner, &self.config).map_err(|e| Failure::transient(e.to_string()))?;
        let target = Target {
            partner: &partner,
            key: &key,
        };
        let delivery = self
            .backend
            .delivery(&gateway_ctx(), &job.delivery_id)
            .await?;
        let mut sent = job.files_sent.clone();
        let mut files = Vec::with_capacity(delivery.files.len());
        for (i, file_id) in delivery.files.iter().enumerate() {
            let info = self.file_info(file_id).await?;
            let remote = match sent.get(file_id) {
                Some(r) => r.clone(),
                None => {
                    let r = self.send_file(&target, job, i, &info).await?;
                    self.store
                        .relay_file_sent(job, file_id, &r)
                        .await
                        .map_err(|e| Failure::transient(e.to_string()))?;
                    sent.insert(file_id.clone(), r.clone());
                    r
                }
            };
            files.push(RelayedFile {
                id: remote,
                source_id: file_id.clone(),
                sha256: info.sha256,
            });
        }
        let body = RelayedDelivery {
            relay_id: job.delivery_id.clone(),
            sender: delivery.sender,
            recipients: job.recipients.clone(),
            subject: delivery.subject,
            message: delivery.message,
            files,
        };
        let json = serde_json::to_vec(&body).map_err(|e| Failure::permanent(e.to_string()))?;
        let (_, answer) = self
            .client
            .post_json(&target, wire::DELIVERIES_PATH, Some(&job.delivery_id), json)
            .await?;
        let accepted: DeliveryAccepted = serde_json::from_slice(&answer)
            .map_err(|e| Failure::transient(format!("the partner's answer: {e}")))?;
        Ok(accepted.id)
    }

    async fn file_info(&self, file_id: &str) -> Result<FileInfo, Failure> {
        match self.backend.file(&gateway_ctx(), file_id).await {
            Ok(info) => Ok(info),
            Err(BackendError::Status { status: 404, .. }) => Err(Failure::permanent(format!(
                "file {file_id} of the delivery no longer exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams one file from our backend to the partner; its id there.
    async fn send_file(
        &self,
        target: &Target<'_>,
        job: &RelayJob,
        index: usize,
        info: &FileInfo,
    ) -> Result<String, Failure> {
        let response = self
            .backend
            .file_content(&gateway_ctx(), &info.id, 0, info.size)
            .await?;
        let upload = FileUpload {
            name: info.name.clone(),
            size: info.size,
            sha256: info.sha256.clone(),
            idempotency_key: paths::file_idempotency_key(&job.delivery_id, index),
            body: reqwest::Body::wrap_stream(response.bytes_stream()),
        };
        let answer = self.client.post_file(target, upload).await?;
        let stored: FileInfo = serde_json::from_slice(&answer)
            .map_err(|e| Failure::transient(format!("the partner's answer: {e}")))?;
        if stored.sha256.is_empty() {
            return Err(Failure::transient(
                "the partner's answer: missing field `sha256`",
            ));
        }
        if !stored.sha256.eq_ignore_ascii_case(&info.sha256) || stored.size != info.size {
            return Err(Failure::permanent(format!(
                "the partner stored {} with another size or SHA-256",
                info.name
            )));
        }
        self.metrics.relayed(info.size);
        Ok(stored.id)
    }
}

/// Whether a delivery made at `created_at` (RFC 3339) predates `since`.
fn created_before(created_at: &str, since: Option<SystemTime>) -> bool {
    match (humantime::parse_rfc3339_weak(created_at), since) {
        // Second precision on both sides: a delivery in the same second as
        // the connection counts as after it.
        (Ok(at), Some(since)) => {
            let secs = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            };
            secs(at) < secs(since)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_before_the_connection_is_not_relayed() {
        let since = humantime::parse_rfc3339("2026-11-23T10:00:00Z").ok();
        assert!(created_before("2026-11-23T09:59:59.900Z", since));
        assert!(!created_before("2026-11-23T10:00:00.100Z", since));
        assert!(!created_before("2026-11-24T00:00:00Z", since));
        assert!(!created_before("not a time", since));
        assert!(!created_before("2026-11-23T09:00:00Z", None));
    }
}
