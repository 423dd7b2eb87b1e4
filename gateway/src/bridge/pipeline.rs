//! The delivery pipeline: a parsed message becomes one upload per attachment
//! plus one delivery, shared by the SMTP listener and the mailbox pollers.
//!
//! Exactly-once is the caller's idempotency key: the delivery is created
//! under it, so repeating `deliver` after a crash or a lost answer returns
//! the first delivery instead of a second one. Uploads made by an attempt
//! that failed later are remembered per key for an hour, so a retry in the
//! same process does not upload the same attachments again.

use super::message::Attachment;
use crate::backend_client::{
    BackendClient, BackendError, Body, CallContext, DeliveryInfo, NewDelivery,
};
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

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
    uploaded: moka::sync::Cache<String, Arc<Vec<(usize, String)>>>,
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
        Ok(DeliveryPipeline {
            backend,
            uploaded: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            outcomes,
        })
    }

    /// The backend client.
    pub fn backend(&self) -> &BackendClient {
        &self.backend
    }

    /// Uploads every attachment (or reuses this key's earlier uploads), then
    /// creates the delivery under the idempotency key.
    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<DeliveryInfo, PipelineError> {
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

    async fn deliver_inner(
        &self,
        req: &DeliveryRequest<'_>,
    ) -> Result<DeliveryInfo, PipelineError> {
        let err = |stage: String, source| PipelineError {
            key: req.idempotency_key.clone(),
            stage,
            source,
        };
        let mut done: Vec<(usize, String)> = self
            .uploaded
            .get(&req.idempotency_key)
            .map(|v| v.as_ref().clone())
            .unwrap_or_default();
        for (i, a) in req.attachments.iter().enumerate() {
            if done.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let file = self
                .backend
                .upload_file(
                    &req.ctx,
                    req.folder.as_deref(),
                    &a.name,
                    Body::Bytes(a.data.clone()),
                )
                .await;
            match file {
                Ok(f) => {
                    done.push((i, f.id));
                    self.uploaded
                        .insert(req.idempotency_key.clone(), Arc::new(done.clone()));
                }
                Err(e) => return Err(err(format!("upload {}", a.name), e)),
            }
        }
        done.sort_by_key(|(i, _)| *i);
        let delivery = NewDelivery {
            sender: req.sender.clone(),
            recipients: req.recipients.clone(),
            subject: req.subject.clone(),
            message: req.message.clone(),
            files: done.into_iter().map(|(_, id)| id).collect(),
        };
        let created = self
            .backend
            .create_delivery(&req.ctx, &req.idempotency_key, &delivery)
            .await
            .map_err(|e| err("delivery".to_string(), e))?;
        self.uploaded.invalidate(&req.idempotency_key);
        Ok(created)
    }
}
