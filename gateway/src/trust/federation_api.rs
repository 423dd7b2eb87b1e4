//! The federation endpoints the gateway answers itself, after the partner
//! gate authenticated the request: a partner's delivery of files it sent
//! before (domain rules, file ownership and digests checked, then created
//! in our backend as `partner:<name>`), and a partner's download receipt for
//! one of our relays (recorded on our delivery).

use super::messages::{DeliveryAccepted, Receipt, ReceiptRecorded, RelayedDelivery};
use super::wire;
use crate::audit::{AuditLog, AuditRecord};
use crate::backend_client::{BackendClient, BackendError, CallContext, NewDelivery, NewReceipt};
use crate::store::inbound_files::InboundFile;
use crate::store::partners::PartnerRecord;
use crate::store::Store;
use mft_config::Config;
use mft_filters::problem::Problem;
use mft_filters::problem_types as pt;
use mft_filters::trust::domain_rules::{check_inbound, RuleViolation};
use std::net::IpAddr;
use std::sync::Arc;

/// Longest relay id (it is also an idempotency key, with `:file:<n>` added).
const MAX_RELAY_ID: usize = 200;

/// What the proxy writes back: a JSON body with a status (signed by the
/// gate), or a problem.
#[derive(Debug)]
pub enum Reply {
    /// Success.
    Json(u16, Vec<u8>),
    /// Refusal or failure.
    Problem(Problem),
}

impl Reply {
    /// Status and, for a problem, its detail (the audit reason).
    fn outcome(&self) -> (u16, Option<String>) {
        match self {
            Reply::Json(s, _) => (*s, None),
            Reply::Problem(p) => (p.status, p.detail.clone()),
        }
    }
}

/// Who is calling, as the gate established it.
pub struct InboundCall<'a> {
    /// The connection.
    pub partner: &'a PartnerRecord,
    /// Our request id.
    pub request_id: &'a str,
    /// Their address.
    pub client_ip: Option<IpAddr>,
}

/// Handlers of the locally answered federation endpoints.
pub struct FederationApi {
    store: Store,
    backend: BackendClient,
    config: Arc<Config>,
    audit: AuditLog,
    metrics: super::metrics::FederationMetrics,
    webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

fn problem(status: u16, kind: &str, detail: String) -> Reply {
    Reply::Problem(Problem::new(status, Some(detail)).with_type(kind))
}

/// Our backend failed: 4xx are passed on (the partner's request is wrong),
/// anything else is 503 so the partner's relay tries again later.
fn backend_reply(e: &BackendError) -> Reply {
    match e {
        BackendError::Status {
            status,
            problem_type,
            detail,
            ..
        } if (400..500).contains(status) && *status != 429 && *status != 408 => {
            problem(*status, problem_type, detail.clone())
        }
        _ => problem(
            503,
            pt::BACKEND_UNAVAILABLE,
            "our backend is unavailable; try again later".into(),
        ),
    }
}

impl FederationApi {
    /// Handlers over `store` and `backend`.
    pub fn new(
        store: Store,
        backend: BackendClient,
        config: Arc<Config>,
        audit: AuditLog,
        metrics: super::metrics::FederationMetrics,
    ) -> FederationApi {
        FederationApi {
            store,
            backend,
            config,
            audit,
            metrics,
            webhooks: None,
        }
    }

    /// Receipts become `receipt.received` webhook events.
    pub fn with_webhooks(mut self, webhooks: Arc<crate::webhooks::Webhooks>) -> FederationApi {
        self.webhooks = Some(webhooks);
        self
    }

    fn audit(
        &self,
        event: &'static str,
        path: &str,
        call: &InboundCall<'_>,
        status: u16,
        reason: Option<String>,
    ) {
        let mut r = AuditRecord::new(event);
        r.request_id = Some(call.request_id.to_string());
        r.principal = Some(format!("partner:{}", call.partner.name));
        r.client_ip = call.client_ip;
        r.method = Some("POST".into());
        r.path = Some(path.to_string());
        r.status = Some(status);
        r.decision = Some(if status < 400 { "allow" } else { "deny" });
        r.reason = reason.map(Into::into);
        self.audit.record(r);
    }

    /// `POST /federation/v1/deliveries`.
    pub async fn delivery(&self, call: &InboundCall<'_>, body: &[u8]) -> Reply {
        let reply = self.accept_delivery(call, body).await;
        let (status, reason) = reply.outcome();
        self.audit(
            "federation_delivery",
            wire::DELIVERIES_PATH,
            call,
            status,
            reason,
        );
        self.metrics.inbound(&call.partner.name, status < 400);
        reply
    }

    async fn accept_delivery(&self, call: &InboundCall<'_>, body: &[u8]) -> Reply {
        let d: RelayedDelivery = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => {
                return problem(
                    400,
                    pt::INVALID_DELIVERY,
                    format!("not a federation delivery: {e}"),
                )
            }
        };
        if d.relay_id.is_empty()
            || d.relay_id.len() > MAX_RELAY_ID
            || !d.relay_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return problem(
                400,
                pt::INVALID_DELIVERY,
                format!("relay_id: 1 to {MAX_RELAY_ID} printable ASCII characters"),
            );
        }
        let partner = call.partner;
        let ours = &self.config.organization.email_domains;
        if let Err(v) = check_inbound(&d.sender, &d.recipients, &partner.email_domains, ours) {
            return match v {
                RuleViolation::Malformed { .. } | RuleViolation::NoRecipients => {
                    problem(400, pt::INVALID_DELIVERY, v.to_string())
                }
                _ => problem(
                    403,
                    pt::DOMAIN_RULE,
                    format!("domain rule {}: {v}", v.rule()),
                ),
            };
        }
        let principal = format!("partner:{}", partner.name);
        let ctx = CallContext::new(
            principal.clone(),
            "files:read deliveries:write",
            Some(&principal),
        );
        for (i, f) in d.files.iter().enumerate() {
            if let Some(reply) = self.check_file(&ctx, i, &f.id, &f.sha256).await {
                return reply;
            }
        }
        let new = NewDelivery {
            sender: d.sender.clone(),
            recipients: d.recipients.clone(),
            subject: d.subject.clone(),
            message: d.message.clone(),
            files: d.files.iter().map(|f| f.id.clone()).collect(),
        };
        let created = match self.backend.create_delivery(&ctx, &d.relay_id, &new).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partner = %partner.name, relay_id = %d.relay_id, error = %e, "partner delivery not created");
                return backend_reply(&e);
            }
        };
        let inbound: Vec<InboundFile> = d
            .files
            .iter()
            .map(|f| InboundFile {
                file_id: f.id.clone(),
                partner: partner.name.clone(),
                relay_id: d.relay_id.clone(),
                source_file_id: f.source_id.clone(),
                delivery_id: created.id.clone(),
                downloaded_at: None,
                receipt_attempts: 0,
            })
            .collect();
        if let Err(e) = self.store.record_inbound_files(&inbound).await {
            // The delivery exists; the partner's retry replays it (same
            // idempotency key) and records the files then.
            tracing::warn!(error = %e, "cannot record a partner's files for receipts");
            return problem(503, pt::STORE_UNAVAILABLE, "try again later".into());
        }
        tracing::info!(partner = %partner.name, relay_id = %d.relay_id, delivery_id = %created.id,
            recipients = d.recipients.len(), files = d.files.len(), "partner delivery accepted");
        let answer = DeliveryAccepted {
            id: created.id,
            relay_id: d.relay_id,
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => Reply::Json(201, body),
            Err(_) => problem(500, "about:blank", "cannot encode the answer".into()),
        }
    }

    /// A problem if file `id` (position `i`) was not sent by this partner
    /// or does not have the declared digest.
    async fn check_file(
        &self,
        ctx: &CallContext,
        i: usize,
        id: &str,
        sha256: &str,
    ) -> Option<Reply> {
        let unknown = || {
            problem(
                422,
                pt::UNKNOWN_FILE,
                format!("files[{i}]: no file {id:?} sent over this connection"),
            )
        };
        if id.is_empty()
            || id.len() > 100
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some(unknown());
        }
        let stored = match self.backend.file(ctx, id).await {
            Ok(s) => s,
            Err(BackendError::Status { status: 404, .. }) => return Some(unknown()),
            Err(e) => return Some(backend_reply(&e)),
        };
        // A partner may only hand on files it sent itself, never other
        // files of our backend whose ids it might have learnt.
        if stored.created_by.as_deref() != Some(ctx.principal.as_str()) {
            return Some(unknown());
        }
        if !stored.sha256.eq_ignore_ascii_case(sha256) {
            return Some(problem(
                422,
                pt::DIGEST_MISMATCH,
                format!("files[{i}]: sha256 differs from the file stored"),
            ));
        }
        None
    }

    /// `POST /federation/v1/receipts`.
    pub async fn receipt(&self, call: &InboundCall<'_>, body: &[u8]) -> Reply {
        let reply = self.record_receipt(call, body).await;
        let (status, reason) = reply.outcome();
        self.audit(
            "federation_receipt",
            wire::RECEIPTS_PATH,
            call,
            status,
            reason,
        );
        let outcome = if status < 400 { "recorded" } else { "refused" };
        self.metrics.receipt("received", outcome);
        reply
    }

    async fn record_receipt(&self, call: &InboundCall<'_>, body: &[u8]) -> Reply {
        let r: Receipt = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return problem(400, pt::INVALID_RECEIPT, format!("not a receipt: {e}")),
        };
        if humantime::parse_rfc3339_weak(&r.downloaded_at).is_err() {
            return problem(
                400,
                pt::INVALID_RECEIPT,
                "downloaded_at: not an RFC 3339 time".into(),
            );
        }
        let job = match self.store.relay_job(&r.relay_id, &call.partner.name).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a relay for a receipt");
                return problem(503, pt::STORE_UNAVAILABLE, "try again later".into());
            }
        };
        // Only the partner a delivery was relayed to may confirm it.
        let Some(job) = job else {
            return problem(
                404,
                pt::UNKNOWN_RELAY,
                format!("relay_id: no delivery {:?} was relayed to you", r.relay_id),
            );
        };
        if !job.files_sent.contains_key(&r.file_id) {
            return problem(
                422,
                pt::UNKNOWN_FILE,
                format!("file_id: {:?} was not relayed to you", r.file_id),
            );
        }
        let receipt = NewReceipt {
            partner: &call.partner.name,
            file_id: &r.file_id,
            downloaded_at: &r.downloaded_at,
        };
        let ctx = CallContext::new("gateway", "", None);
        if let Err(e) = self
            .backend
            .record_receipt(&ctx, &job.delivery_id, &receipt)
            .await
        {
            tracing::warn!(relay_id = %r.relay_id, error = %e, "receipt not recorded");
            return backend_reply(&e);
        }
        tracing::info!(partner = %call.partner.name, delivery_id = %job.delivery_id, file_id = %r.file_id, "download receipt recorded");
        // Our own copy for the console's relay queue; the backend's record
        // above is the one that counts, so a failure here only logs.
        if let Err(e) = self
            .store
            .record_relay_receipt(
                &job.delivery_id,
                &call.partner.name,
                &r.file_id,
                &r.downloaded_at,
            )
            .await
        {
            tracing::warn!(relay_id = %r.relay_id, error = %e, "receipt not kept for the console");
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks
                .emit_one(
                    "receipt.received",
                    &[&job.delivery_id, &call.partner.name, &r.file_id],
                    serde_json::json!({
                        "delivery_id": job.delivery_id,
                        "partner": call.partner.name,
                        "file_id": r.file_id,
                        "downloaded_at": r.downloaded_at,
                    }),
                )
                .await;
        }
        let answer = ReceiptRecorded {
            relay_id: r.relay_id,
            file_id: r.file_id,
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => Reply::Json(200, body),
            Err(_) => problem(500, "about:blank", "cannot encode the answer".into()),
        }
    }
}

/// Paths answered here rather than proxied.
pub fn is_local_endpoint(path: &str) -> bool {
    path == wire::DELIVERIES_PATH || path == wire::RECEIPTS_PATH
}
