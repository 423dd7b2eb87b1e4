//! Durable on_upload deliveries: a completed upload of a user with
//! `on_upload.deliver_to` becomes a job in the store (`sftp_deliveries`)
//! when its file is closed and before the first attempt, so neither a
//! backend outage nor a restart or crash loses the delivery.
//!
//! The close makes the first attempt itself (holding the job's lease from
//! the insert on); a transient failure leaves the job queued for the worker,
//! which retries it with the gateway's backoff ([`crate::backoff`]) until
//! the backend makes it, refuses it, or `sftp.delivery_max_age` passed.
//! Every attempt goes through the delivery pipeline under the idempotency
//! key `sftp:<user>:<file id>` with the request stored in the job, so an
//! attempt repeated after a crash or a lost answer gets the first delivery
//! back instead of a second one; the lease ([`crate::store::lease`]) keeps
//! two gateways on one PostgreSQL store from working a job at once.
//!
//! The worker costs nothing while no job is queued: one look at start,
//! then it sleeps until a job is written (or, on a shared PostgreSQL store,
//! a slow sweep for jobs another instance left when it stopped).

use crate::audit::{AuditLog, AuditRecord};
use crate::backend_client::CallContext;
use crate::backoff::RetryPolicy;
use crate::bridge::pipeline::{DeliveryPipeline, DeliveryRequest};
use crate::drain::Drain;
use crate::store::sftp_deliveries::{NewSftpDelivery, SftpDelivery, SftpDeliveryState};
use crate::store::Store;
use futures_util::StreamExt;
use prometheus::{IntGaugeVec, Opts, Registry};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A claimed job is ours this long; renewed while an attempt runs (the
/// backend client bounds one attempt well below this).
const LEASE: Duration = Duration::from_secs(30);
/// How often the lease of a running attempt is renewed.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// Jobs attempted at the same time by the worker.
const PARALLEL: usize = 4;
/// The retries' backoff: from 1 s, doubling up to 5 min, full jitter.
const RETRY: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    base: Duration::from_secs(1),
    max: Duration::from_secs(300),
};
/// The shortest wait between two attempts of one job.
const RETRY_FLOOR: Duration = Duration::from_millis(500);
/// The wait before the worker looks again after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// A shared (PostgreSQL) store: how often a worker with nothing queued
/// looks for jobs another instance left when it stopped.
const SHARED_SWEEP: Duration = Duration::from_secs(300);

/// What a job's `request` column holds: the delivery as first made, and
/// the audit context of the upload.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRequest {
    scopes: String,
    sender: String,
    recipients: Vec<String>,
    subject: String,
    message: String,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    client_ip: Option<IpAddr>,
}

/// A completed upload whose delivery is due.
#[derive(Debug, Clone)]
pub struct CompletedUpload {
    /// The SFTP user.
    pub user: String,
    /// The file's path as the user saw it.
    pub path: String,
    /// The backend's file id.
    pub file_id: String,
    /// Scopes of the session's backend calls.
    pub scopes: String,
    /// Sender address (the user's own).
    pub sender: String,
    /// The user's `deliver_to`.
    pub recipients: Vec<String>,
    /// `key:<id>` of an API-key login, audited.
    pub credential: Option<String>,
    /// Client address, audited.
    pub client_ip: Option<IpAddr>,
}

/// How an attempt ended, as audited.
enum Outcome {
    Delivered(String),
    Retrying(String),
    Failed(String),
}

/// The job store, the first attempts and the retry worker; one per process.
pub struct SftpDeliveries {
    store: Store,
    pipeline: Arc<DeliveryPipeline>,
    audit: AuditLog,
    max_age: Duration,
    jobs: IntGaugeVec,
    nudge: Notify,
}

impl SftpDeliveries {
    /// Deliveries through `pipeline`, jobs in `store`, given up after
    /// `max_age`; the job series registered in `registry`.
    pub fn new(
        store: Store,
        pipeline: Arc<DeliveryPipeline>,
        audit: AuditLog,
        max_age: Duration,
        registry: &Registry,
    ) -> prometheus::Result<SftpDeliveries> {
        let jobs = IntGaugeVec::new(
            Opts::new(
                "mft_sftp_delivery_jobs",
                "SFTP on_upload delivery jobs in the store by state (queued: waiting \
                 for an attempt; failed: given up). Read when the worker runs.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        Ok(SftpDeliveries {
            store,
            pipeline,
            audit,
            max_age,
            jobs,
            nudge: Notify::new(),
        })
    }

    /// The close of an uploaded file: writes the job, then makes the first
    /// attempt (awaited). Audited as `sftp_delivery`: `allow`, `retry` (the
    /// worker goes on) or `fail`.
    pub async fn submit(&self, upload: CompletedUpload, drain: &Drain) {
        let key = format!("sftp:{}:{}", upload.user, upload.file_id);
        let stored = StoredRequest {
            scopes: upload.scopes.clone(),
            sender: upload.sender.clone(),
            recipients: upload.recipients.clone(),
            subject: format!("SFTP upload {}", upload.path),
            message: format!("{} uploaded {} over SFTP.", upload.user, upload.path),
            credential: upload.credential.clone(),
            client_ip: upload.client_ip,
        };
        let new = serde_json::to_string(&stored).map(|request| NewSftpDelivery {
            user: upload.user.clone(),
            path: upload.path.clone(),
            file_id: upload.file_id.clone(),
            idempotency_key: key.clone(),
            request,
        });
        let queued = match new {
            Ok(new) => self
                .store
                .queue_sftp_delivery(&new, LEASE)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match queued {
            Ok(Some(job)) => {
                if let Some(Outcome::Retrying(_) | Outcome::Failed(_)) =
                    self.work(&job, &stored, drain, true).await
                {
                    // The worker takes the retry, and shows the failure.
                    self.nudge.notify_one();
                }
            }
            // The same file closed twice: its job is being worked.
            Ok(None) => tracing::info!(key = %key, "sftp delivery queued already"),
            Err(e) => {
                // No durable job: one attempt now, and a loud trail if it fails.
                tracing::error!(key = %key, error = %e, "cannot queue the sftp delivery; one attempt without retries");
                let request = delivery_request(&upload.user, &key, &upload.file_id, &stored);
                let outcome = match self.pipeline.deliver(&request).await {
                    Ok(d) => Outcome::Delivered(d.id),
                    Err(err) => Outcome::Failed(format!("{err} (not queued for retries: {e})")),
                };
                self.audit_outcome(&upload.user, &upload.path, &stored, &outcome);
            }
        }
    }

    /// Works due jobs until the shutdown starts; sleeps while none is due.
    pub async fn run(self: Arc<Self>, drain: Drain) {
        let shared = self.store.is_postgres();
        loop {
            if drain.is_stopping() {
                return;
            }
            if let Err(e) = self.round(&drain).await {
                tracing::warn!(error = %e, "sftp delivery round failed; trying again");
            }
            self.count().await;
            let wait = match self.store.next_sftp_delivery_due().await {
                Ok(Some(at)) => Some(
                    at.duration_since(self.store.now())
                        .unwrap_or_default()
                        // Past the due millisecond, not a hair before it.
                        .saturating_add(Duration::from_millis(5)),
                ),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the sftp delivery queue; trying again");
                    Some(STORE_RETRY)
                }
            };
            let wait = if shared {
                Some(wait.map_or(SHARED_SWEEP, |w| w.min(SHARED_SWEEP)))
            } else {
                wait
            };
            let sleep = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = self.nudge.notified() => {}
                () = drain.stopping() => return,
            }
        }
    }

    async fn round(&self, drain: &Drain) -> Result<(), crate::store::StoreError> {
        while !drain.is_stopping() {
            let due = self
                .store
                .claim_due_sftp_deliveries(PARALLEL * 2, LEASE)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            let _working = drain.work();
            futures_util::stream::iter(due)
                .for_each_concurrent(PARALLEL, |job| async move {
                    if drain.is_stopping() {
                        // Claimed, not started: free for the next process now.
                        self.release(&job).await;
                        return;
                    }
                    match serde_json::from_str::<StoredRequest>(&job.request) {
                        Ok(stored) => {
                            self.work(&job, &stored, drain, false).await;
                        }
                        Err(e) => self.unreadable(&job, &e.to_string()).await,
                    }
                })
                .await;
        }
        Ok(())
    }

    /// One attempt of a leased job and its recorded outcome; `None` if the
    /// attempt did not end here (shutdown, lease lost, store away).
    async fn work(
        &self,
        job: &SftpDelivery,
        stored: &StoredRequest,
        drain: &Drain,
        first: bool,
    ) -> Option<Outcome> {
        let age = self
            .store
            .now()
            .duration_since(job.created_at)
            .unwrap_or_default();
        if !first && age > self.max_age {
            let reason = format!(
                "not delivered within sftp.delivery_max_age ({}) after {} attempts; last error: {}",
                humantime::format_duration(self.max_age),
                job.attempts,
                job.last_error.as_deref().unwrap_or("none"),
            );
            let outcome = Outcome::Failed(reason);
            return self.record(job, stored, outcome, false).await;
        }
        let request = delivery_request(&job.user, &job.idempotency_key, &job.file_id, stored);
        let attempt = self.pipeline.deliver(&request);
        tokio::pin!(attempt);
        // Until when the job is surely ours, on our clock.
        let mut held_until = tokio::time::Instant::now() + LEASE;
        let mut renewal = tokio::time::interval(LEASE_RENEWAL);
        renewal.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut attempt => break r,
                () = drain.aborting() => {
                    // Idempotent at the backend: the next process repeats
                    // the attempt at once instead of after the lease.
                    tracing::info!(key = %job.idempotency_key, "shutdown: sftp delivery attempt abandoned, lease released");
                    self.release(job).await;
                    return None;
                }
                _ = renewal.tick() => match self.store.renew_sftp_delivery_lease(job, LEASE).await {
                    Ok(true) => held_until = tokio::time::Instant::now() + LEASE,
                    Ok(false) => {
                        tracing::warn!(key = %job.idempotency_key, "sftp delivery lease lost to another gateway; this attempt stops");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(key = %job.idempotency_key, error = %e, "cannot renew an sftp delivery lease");
                        // Stop before the lease may pass to another
                        // gateway, so two never attempt one job at once.
                        if tokio::time::Instant::now() + LEASE_RENEWAL >= held_until {
                            return None;
                        }
                    }
                },
            }
        };
        let outcome = match result {
            Ok(d) => Outcome::Delivered(d.id),
            Err(e) if e.is_transient() => Outcome::Retrying(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.record(job, stored, outcome, true).await
    }

    /// Writes an attempt's outcome (fenced by the job's lease) and audits
    /// it: every outcome of a first attempt, the final one of a retry.
    async fn record(
        &self,
        job: &SftpDelivery,
        stored: &StoredRequest,
        outcome: Outcome,
        attempted: bool,
    ) -> Option<Outcome> {
        let first = job.attempts == 0 && attempted;
        let written = match &outcome {
            Outcome::Delivered(id) => {
                self.store
                    .sftp_delivery_finish(
                        job,
                        SftpDeliveryState::Delivered,
                        Some(id.as_str()),
                        None,
                        true,
                    )
                    .await
            }
            Outcome::Retrying(error) => {
                let delay = RETRY.next_delay(job.attempts.saturating_add(1), Some(RETRY_FLOOR));
                tracing::info!(key = %job.idempotency_key, error = %error, retry_in_ms = delay.as_millis() as u64,
                    "sftp delivery not made; will retry");
                self.store
                    .sftp_delivery_retry_later(job, delay, error)
                    .await
            }
            Outcome::Failed(error) => {
                tracing::error!(key = %job.idempotency_key, error = %error, "sftp delivery failed for good");
                self.store
                    .sftp_delivery_finish(
                        job,
                        SftpDeliveryState::Failed,
                        None,
                        Some(error.as_str()),
                        attempted,
                    )
                    .await
            }
        };
        match written {
            Ok(true) => {}
            Ok(false) => {
                // Another gateway took the job over: it records (and audits)
                // its own outcome.
                tracing::warn!(key = %job.idempotency_key, "sftp delivery lease lost; outcome left to the new owner");
                return None;
            }
            Err(e) => {
                // The lease runs out and the job is attempted again: a
                // replay at the backend, not a second delivery.
                tracing::warn!(key = %job.idempotency_key, error = %e, "cannot record an sftp delivery outcome; it is repeated after its lease");
                return None;
            }
        }
        if first || !matches!(outcome, Outcome::Retrying(_)) {
            self.audit_outcome(&job.user, &job.path, stored, &outcome);
        }
        if let Outcome::Delivered(id) = &outcome {
            if !first {
                tracing::info!(key = %job.idempotency_key, delivery = %id, attempts = job.attempts + 1, "sftp delivery made on retry");
            }
        }
        Some(outcome)
    }

    /// A job whose stored request cannot be read (edited by hand?): given
    /// up, since no attempt could send what the first one sent.
    async fn unreadable(&self, job: &SftpDelivery, error: &str) {
        let reason = format!("stored request unreadable: {error}");
        tracing::error!(key = %job.idempotency_key, error = %reason, "sftp delivery failed for good");
        match self
            .store
            .sftp_delivery_finish(
                job,
                SftpDeliveryState::Failed,
                None,
                Some(reason.as_str()),
                false,
            )
            .await
        {
            Ok(_) => {
                let mut r = AuditRecord::new("sftp_delivery");
                r.principal = Some(format!("sftp:{}", job.user));
                r.path = Some(job.path.clone());
                r.decision = Some("fail");
                r.reason = Some(reason.into());
                self.audit.record(r);
            }
            Err(e) => {
                tracing::warn!(key = %job.idempotency_key, error = %e, "cannot record an sftp delivery outcome")
            }
        }
    }

    async fn release(&self, job: &SftpDelivery) {
        if let Err(e) = self.store.release_sftp_delivery_lease(job).await {
            tracing::warn!(key = %job.idempotency_key, error = %e, "cannot release an sftp delivery lease; it expires on its own");
        }
    }

    async fn count(&self) {
        match self.store.sftp_delivery_counts().await {
            Ok(c) => {
                self.jobs
                    .with_label_values(&["queued"])
                    .set(i64::try_from(c.queued).unwrap_or(i64::MAX));
                self.jobs
                    .with_label_values(&["failed"])
                    .set(i64::try_from(c.failed).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "cannot count sftp delivery jobs"),
        }
    }

    fn audit_outcome(&self, user: &str, path: &str, stored: &StoredRequest, outcome: &Outcome) {
        let (decision, reason) = match outcome {
            Outcome::Delivered(id) => ("allow", format!("delivery:{id}")),
            Outcome::Retrying(_) => ("retry", "backend_unavailable".to_string()),
            Outcome::Failed(e) => ("fail", e.clone()),
        };
        let mut r = AuditRecord::new("sftp_delivery");
        r.principal = Some(format!("sftp:{user}"));
        r.credential = stored.credential.clone();
        r.client_ip = stored.client_ip;
        r.path = Some(path.to_string());
        r.decision = Some(decision);
        r.reason = Some(reason.into());
        self.audit.record(r);
    }
}

/// The pipeline request of a job: the same bytes at every attempt.
fn delivery_request(
    user: &str,
    key: &str,
    file_id: &str,
    stored: &StoredRequest,
) -> DeliveryRequest<'static> {
    let principal = format!("sftp:{user}");
    DeliveryRequest {
        ctx: CallContext::new(principal.clone(), &stored.scopes, Some(&principal)),
        idempotency_key: key.to_string(),
        sender: stored.sender.clone(),
        recipients: stored.recipients.clone(),
        subject: stored.subject.clone(),
        message: stored.message.clone(),
        stored_files: vec![file_id.to_string()],
        attachments: &[],
        folder: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_client::BackendClient;
    use mft_config::model::{Audit, AuditFailure};

    /// A worker over a fresh SQLite store, delivering to a backend address
    /// nothing listens on (every attempt fails transiently).
    async fn worker(dir: &tempfile::TempDir) -> (Arc<SftpDeliveries>, Store) {
        let store = Store::open(None, &dir.path().join("data")).await.unwrap();
        let config = mft_config::load_str(
            "[server]\ntls_cert = \"c.pem\"\ntls_key = \"c.key\"\n\
             [backend]\nurl = \"http://127.0.0.1:9\"\nretry_attempts = 1\n",
            &dir.path().join("gateway.toml"),
        )
        .unwrap()
        .config;
        let registry = Registry::new();
        let backend = BackendClient::new(&config.backend, None).unwrap();
        let pipeline = Arc::new(DeliveryPipeline::new(backend, &registry).unwrap());
        let audit = AuditLog::open(&Audit {
            file: dir.path().join("audit.jsonl"),
            max_bytes: 1 << 20,
            keep: 2,
            on_failure: AuditFailure::Deny,
        })
        .unwrap();
        let deliveries = SftpDeliveries::new(
            store.clone(),
            pipeline,
            audit,
            Duration::from_secs(3600),
            &registry,
        )
        .unwrap();
        (Arc::new(deliveries), store)
    }

    async fn settled(store: &Store) -> u64 {
        let mut last = store.operations();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = store.operations();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// With no job queued the worker looks once at start and then costs no
    /// store operation; a job written by an upload wakes it, and it retries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_queue_costs_no_query_and_an_upload_wakes_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (deliveries, store) = worker(&dir).await;
        let before = store.operations();
        let drain = Drain::new();
        tokio::spawn(deliveries.clone().run(drain.clone()));
        let idle = settled(&store).await;
        assert!(idle > before, "one look at start");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.operations(), idle, "no query while nothing is queued");

        deliveries
            .submit(
                CompletedUpload {
                    user: "bob".into(),
                    path: "/inv.pdf".into(),
                    file_id: "f1".into(),
                    scopes: "files:read files:write".into(),
                    sender: "bob@ourcorp.example".into(),
                    recipients: vec!["ops@ourcorp.example".into()],
                    credential: None,
                    client_ip: None,
                },
                &drain,
            )
            .await;
        let job = store.list_sftp_deliveries(1).await.unwrap().remove(0);
        assert_eq!(job.idempotency_key, "sftp:bob:f1");
        assert_eq!(job.state, SftpDeliveryState::Queued);
        assert!(job.attempts >= 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let job = store.sftp_delivery(&job.id).await.unwrap().unwrap();
            if job.attempts >= 2 {
                assert_eq!(job.state, SftpDeliveryState::Queued);
                assert!(job.last_error.is_some());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker did not retry"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
