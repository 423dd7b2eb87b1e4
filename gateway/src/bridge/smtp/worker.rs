//! The spool workers: deliver spooled messages through the pipeline,
//! oldest first, and remove an entry only after the backend confirmed.
//!
//! `smtp.spool_workers` of them run in parallel; each entry is delivered by
//! the one worker that claimed it ([`Spool::claim`]). A message is parsed
//! from its spool file and its attachments are uploaded from there
//! ([`message::parse_file`]), so a worker holds headers and text, never
//! the message.
//!
//! A transient failure (backend down, 5xx, timeout, open breaker) stops the
//! pass and retries after the gateway's backoff ([`crate::backoff`]) from
//! 500 ms, capped at `retry_max_interval`; the idempotency key `smtp:<id>` makes a repeated
//! attempt return the first delivery. A permanent refusal moves the entry to
//! `spool/failed/` with the reason, audited, for an operator to look at.

use super::metrics::SmtpMetrics;
use crate::audit::AuditRecord;
use crate::backend_client::{BackendError, CallContext};
use crate::backoff::Backoff;
use crate::bridge::pipeline::DeliveryRequest;
use crate::bridge::spool::{Spool, SpoolMeta};
use crate::bridge::BridgeContext;
use mft_config::smtp::Smtp;
use mft_protocols::mime as message;
use std::sync::Arc;
use std::time::Duration;

/// Cap of the first retry delay after a transient failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Least retry delay: a failing pass never spins.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// How often the spool is rescanned without news (a safety net only).
const IDLE_RESCAN: Duration = Duration::from_secs(30);

enum Attempt {
    Done,
    Retry,
}

/// One worker; runs on the bridge runtime until the shutdown starts; a
/// delivery under way then finishes (one cut by the exit stays spooled and
/// is delivered, under the same idempotency key, after the restart).
pub async fn run(ctx: Arc<BridgeContext>, spool: Spool, cfg: Arc<Smtp>, metrics: SmtpMetrics) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, cfg.retry_max_interval, MIN_BACKOFF);
    let drain = ctx.drain.clone();
    while !drain.is_stopping() {
        let ids = match spool.pending().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the SMTP spool");
                Vec::new()
            }
        };
        let mut retry = false;
        let mut worked = false;
        for id in ids {
            if drain.is_stopping() {
                return;
            }
            // audit.on_failure = "deny": a delivery is not made while its
            // record cannot be written; the entry stays spooled (durable)
            // and is delivered once the trail is writable again.
            if ctx.audit.denying() {
                tracing::warn!("smtp spool: the audit trail cannot be written (audit.on_failure = \"deny\"); deliveries wait");
                retry = true;
                break;
            }
            // Another worker has it.
            let Some(_claim) = spool.claim(&id) else {
                continue;
            };
            worked = true;
            let _working = drain.work();
            if let Attempt::Retry = deliver(&ctx, &spool, &cfg, &metrics, &id).await {
                retry = true;
                break;
            }
        }
        if retry {
            let wait = backoff.next_delay();
            tracing::info!(
                retry_in_ms = wait.as_millis() as u64,
                "smtp spool: delivery postponed"
            );
            if !drain.sleep(wait).await {
                return;
            }
        } else if !worked {
            // Nothing this worker could take: wait for news. (After a pass
            // that delivered, look again at once: entries stored meanwhile
            // woke at most one worker.)
            backoff.reset();
            tokio::select! {
                () = spool.wait_new(IDLE_RESCAN) => {}
                () = drain.stopping() => return,
            }
        } else {
            backoff.reset();
        }
    }
}

async fn deliver(
    ctx: &Arc<BridgeContext>,
    spool: &Spool,
    cfg: &Smtp,
    metrics: &SmtpMetrics,
    id: &str,
) -> Attempt {
    let entry = match spool.entry(id).await {
        Ok(e) => e,
        Err(crate::bridge::spool::SpoolError::Corrupt { reason, .. }) => {
            fail(ctx, spool, metrics, id, None, "corrupt", &reason).await;
            return Attempt::Done;
        }
        Err(crate::bridge::spool::SpoolError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            // Delivered by another worker since this one listed the spool.
            return Attempt::Done;
        }
        Err(e) => {
            // Unreadable: the next pass sees it again.
            tracing::warn!(error = %e, "smtp spool entry unreadable");
            return Attempt::Retry;
        }
    };
    let meta = entry.meta;
    let parsed = match message::parse_file(&entry.path, entry.body_offset).await {
        Ok(p) => p,
        Err(message::ParseFileError::Message(e)) => {
            fail(
                ctx,
                spool,
                metrics,
                id,
                Some(&meta),
                "parse",
                &e.to_string(),
            )
            .await;
            return Attempt::Done;
        }
        Err(e) => {
            tracing::warn!(error = %e, "smtp spool entry unreadable");
            return Attempt::Retry;
        }
    };
    let request = DeliveryRequest {
        ctx: CallContext::new(meta.principal.clone(), &meta.scopes, Some("smtp")),
        idempotency_key: format!("smtp:{id}"),
        sender: meta.sender.clone(),
        recipients: meta.recipients.clone(),
        subject: parsed.subject.clone(),
        message: parsed.text.clone(),
        stored_files: Vec::new(),
        attachments: &parsed.attachments,
        folder: cfg.folder.clone(),
    };
    match ctx.pipeline.deliver(&request).await {
        Ok(delivery) => {
            tracing::info!(id, delivery = %delivery.id, files = parsed.attachments.len(),
                "smtp message delivered");
            let mut r = AuditRecord::new("smtp_delivery");
            r.principal = Some(meta.principal.clone());
            r.client_ip = meta.client_ip.as_deref().and_then(|i| i.parse().ok());
            r.decision = Some("allow");
            r.path = Some(format!("spool:{id} delivery:{}", delivery.id));
            ctx.audit.record(r);
            if let Err(e) = spool.remove(id).await {
                // Delivered; if the entry comes back the idempotency key
                // returns the same delivery.
                tracing::error!(error = %e, "cannot remove a delivered spool entry");
            }
            Attempt::Done
        }
        Err(e) if already_delivered(&e) => {
            // The pipeline's uploads are idempotent too, so a retry after a
            // crash normally gets the first delivery back as a replay. A 422
            // on the key can only mean a backend without idempotent uploads
            // (new file ids): the key is this entry's alone, so it was delivered.
            tracing::warn!(
                id,
                "smtp message was delivered before (idempotency key in use)"
            );
            if let Err(e) = spool.remove(id).await {
                tracing::error!(error = %e, "cannot remove a delivered spool entry");
            }
            Attempt::Done
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(id, error = %e, "smtp delivery will be retried");
            Attempt::Retry
        }
        Err(e) => {
            fail(
                ctx,
                spool,
                metrics,
                id,
                Some(&meta),
                "delivery",
                &e.to_string(),
            )
            .await;
            Attempt::Done
        }
    }
}

/// The backend's 422 for an idempotency key already used with another body.
fn already_delivered(e: &crate::bridge::pipeline::PipelineError) -> bool {
    e.stage == "delivery"
        && matches!(&e.source, BackendError::Status { status: 422, problem_type, .. }
            if problem_type == mft_filters::problem_types::IDEMPOTENCY_KEY_REUSED)
}

async fn fail(
    ctx: &Arc<BridgeContext>,
    spool: &Spool,
    metrics: &SmtpMetrics,
    id: &str,
    meta: Option<&SpoolMeta>,
    stage: &str,
    reason: &str,
) {
    tracing::error!(
        id,
        stage,
        reason,
        "smtp message refused permanently; moved to spool/failed"
    );
    metrics.spool_failed.with_label_values(&[stage]).inc();
    let mut r = AuditRecord::new("smtp_delivery");
    r.principal = meta.map(|m| m.principal.clone());
    r.client_ip = meta
        .and_then(|m| m.client_ip.as_deref())
        .and_then(|i| i.parse().ok());
    r.decision = Some("deny");
    r.path = Some(format!("spool:{id}"));
    r.reason = Some(format!("{stage}: {reason}").into());
    ctx.audit.record(r);
    if let Err(e) = spool.fail(id, &format!("{stage}: {reason}")).await {
        tracing::error!(error = %e, "cannot move a failed spool entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::pipeline::PipelineError;

    fn answer(stage: &str, status: u16, problem_type: &str, detail: &str) -> PipelineError {
        PipelineError {
            key: "smtp:x".into(),
            stage: stage.into(),
            source: BackendError::Status {
                what: "POST /api/v1/deliveries".into(),
                status,
                problem_type: problem_type.into(),
                detail: detail.into(),
                retry_after: None,
            },
        }
    }

    #[test]
    fn a_reused_key_is_told_by_its_problem_type_not_its_detail() {
        let reused = mft_filters::problem_types::IDEMPOTENCY_KEY_REUSED;
        assert!(already_delivered(&answer("delivery", 422, reused, "")));
        // The detail is for people: another wording changes nothing.
        assert!(already_delivered(&answer(
            "delivery", 422, reused, "anders"
        )));
        assert!(!already_delivered(&answer(
            "delivery",
            422,
            "urn:mft:problem:invalid-delivery",
            "Idempotency-Key"
        )));
        assert!(!already_delivered(&answer("upload a.pdf", 422, reused, "")));
    }
}
