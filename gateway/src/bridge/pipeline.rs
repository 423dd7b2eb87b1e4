//! The delivery pipeline, the one way a bridge makes a delivery: a parsed
//! message becomes one upload per attachment plus one delivery (the SMTP
//! listener, the mailbox pollers), or files already stored become one
//! delivery (an SFTP upload with `deliver_to`).
//!
//! Exactly-once rests on the caller's idempotency key: attachment `i` is
//! uploaded under `<key>:file:<i>` ([`paths::file_idempotency_key`]) and
//! the delivery is created under `<key>`, so repeating `deliver` after a
//! crash or a lost answer gets the same file ids back, sends a
//! byte-identical delivery request and receives the first delivery instead
//! of creating a second one. Retrying is the caller's: the SMTP spool
//! workers retry from the durable spool; the mailbox pollers leave the mail
//! on the server; [`DeliveryPipeline::deliver_retrying`] retries in the
//! background per the gateway's backoff while the process runs.

use super::message::Attachment;
use crate::backend_client::{
    paths, BackendClient, BackendError, CallContext, Delivery, NewDelivery,
};
use crate::backoff::Backoff;
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Cap of the first background retry of a delivery.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Largest cap of the background retries.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One delivery to make.
#[derive(Debug, Clone)]
pub struct DeliveryRequest<'a> {
    /// Principal, scopes and origin of the calls.
    pub ctx: CallContext,
    /// Stable per message (e.g. `smtp:<spool id>`, `imap:<name>:<uidvalidity>:<uid>`).
    pub idempotency_key: String,
    /// Delivery sender address.
    pub sender: String,
    /// Delivery recipients.
    pub recipients: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Message text.
    pub message: String,
    /// Files already in the backend, attached first (an SFTP upload).
    pub stored_files: Vec<String>,
    /// Files to upload and attach.
    pub attachments: &'a [Attachment],
    /// Backend folder for the uploads (`None`: the root).
    pub folder: Option<String>,
}

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
#[error("delivery {key}: {stage}: {source}")]
pub struct PipelineError {
    /// The idempotency key.
    pub key: String,
    /// `upload <name>` or `delivery`.
    pub stage: String,
    /// The backend's answer or the transport failure.
    #[source]
    pub source: BackendError,
}

impl PipelineError {
    /// Whether trying again later may succeed (backend down or overloaded).
    /// A permanent failure (the backend refused the content) needs a human.
    pub fn is_transient(&self) -> bool {
        self.source.is_transient()
    }
}

/// What [`DeliveryPipeline::deliver_retrying`] did.
#[derive(Debug)]
pub enum Retried {
    /// Made at the first attempt.
    Delivered(Delivery),
    /// The first attempt failed transiently; retried in the background.
    Retrying,
    /// Refused for good (the backend will not take it as it is).
    Failed(PipelineError),
}

/// Shared by every bridge; cheap to call concurrently.
pub struct DeliveryPipeline {
    backend: BackendClient,
    outcomes: IntCounterVec,
}

impl DeliveryPipeline {
    /// A pipeline over `backend`, counting outcomes in `registry`.
    pub fn new(backend: BackendClient, registry: &Registry) -> prometheus::Result<Self> {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "mft_bridge_deliveries_total",
                "Deliveries attempted by the bridges, by bridge and outcome \
                 (delivered, retry, failed).",
            ),
            &["bridge", "outcome"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        Ok(DeliveryPipeline { backend, outcomes })
    }

    /// [`DeliveryPipeline::deliver`]; a transient failure is retried in the
    /// background under the same idempotency key, per the gateway's backoff
    /// ([`crate::backoff`]), until it succeeds, fails for good or the
    /// process stops. The first attempt is awaited.
    pub async fn deliver_retrying(
        self: &Arc<Self>,
        req: DeliveryRequest<'static>,
        drain: &crate::drain::Drain,
    ) -> Retried {
        let e = match self.deliver(&req).await {
            Ok(d) => return Retried::Delivered(d),
            Err(e) if e.is_transient() => e,
            Err(e) => return Retried::Failed(e),
        };
        tracing::warn!(key = %req.idempotency_key, error = %e, "delivery failed; retrying in the background");
        let me = self.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX, RETRY_FIRST / 2);
            loop {
                if !drain.sleep(backoff.next_delay()).await {
                    tracing::warn!(key = %req.idempotency_key, "shutdown: delivery not made");
                    return;
                }
                match me.deliver(&req).await {
                    Ok(d) => {
                        tracing::info!(key = %req.idempotency_key, delivery = %d.id, "delivery made on retry");
                        return;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::info!(key = %req.idempotency_key, error = %e, "delivery still failing; retrying");
                    }
                    Err(e) => {
                        tracing::error!(key = %req.idempotency_key, error = %e, "delivery failed for good");
                        return;
                    }
                }
            }
        });
        Retried::Retrying
    }

    /// Uploads every attachment (or reuses this key's earlier uploads), then
    /// creates the delivery under the idempotency key.
    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivery, PipelineError> {
        let bridge = req
            .ctx
            .origin
            .as_deref()
            .and_then(|o| o.split(':').next())
            .unwrap_or("other")
            .to_string();
        let result = self.deliver_inner(req).await;
        let outcome = match &result {
            Ok(_) => "delivered",
            Err(e) if e.is_transient() => "retry",
            Err(_) => "failed",
        };
        self.outcomes.with_label_values(&[&bridge, outcome]).inc();
        result
    }

    async fn deliver_inner(&self, req: &DeliveryRequest<'_>) -> Result<Delivery, PipelineError> {
        let err = |stage: String, source| PipelineError {
            key: req.idempotency_key.clone(),
            stage,
            source,
        };
        let mut files = Vec::with_capacity(req.stored_files.len() + req.attachments.len());
        files.extend(req.stored_files.iter().cloned());
        for (i, a) in req.attachments.iter().enumerate() {
            let key = paths::file_idempotency_key(&req.idempotency_key, i);
            let file = self
                .backend
                .upload_file_idempotent(
                    &req.ctx,
                    &key,
                    req.folder.as_deref(),
                    &a.name,
                    a.data.clone(),
                )
                .await
                .map_err(|e| err(format!("upload {}", a.name), e))?;
            files.push(file.id);
        }
        let delivery = NewDelivery {
            sender: req.sender.clone(),
            recipients: req.recipients.clone(),
            subject: req.subject.clone(),
            message: req.message.clone(),
            files,
        };
        let created = self
            .backend
            .create_delivery(&req.ctx, &req.idempotency_key, &delivery)
            .await
            .map_err(|e| err("delivery".to_string(), e))?;
        Ok(created)
    }
}
