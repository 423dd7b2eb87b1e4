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
//! of creating a second one. Retrying is the caller's, always from durable
//! state: the SMTP spool workers retry from the spool; the mailbox pollers
//! leave the mail on the server; the SFTP bridge retries from its job table
//! ([`super::sftp::delivery`]).

use crate::backend_client::{
    paths, BackendClient, BackendError, CallContext, Delivery, NewDelivery,
};
use mft_protocols::mime::Attachment;
use prometheus::{IntCounterVec, Opts, Registry};

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
