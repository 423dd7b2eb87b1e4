//! `POST /admin/v1/upgrade`: start the binary on disk with this process's
//! listening sockets, wait until it serves, then drain this process
//! (docs/operations.md, "Upgrade the binary"). Admin role only: the gate in
//! `admin/mod.rs` refuses a viewer's change.

use crate::admin::{json_reply, problem, AdminApp, Reply, PRINCIPAL};
use crate::upgrade::UpgradeError;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

/// The route, as the 405 answer names it.
pub(crate) const USAGE: &str = "use POST /admin/v1/upgrade";

impl AdminApp {
    pub(crate) async fn upgrade_api(&self, session: &mut ServerSession) -> Reply {
        if session.req_header().method != http::Method::POST {
            return problem(405, USAGE);
        }
        let principal = PRINCIPAL
            .try_with(Clone::clone)
            .unwrap_or_else(|_| "admin".to_string());
        let outcome = crate::upgrade::upgrade(principal).await;
        let mut record = crate::audit::AuditRecord::new("binary_upgrade");
        record.principal = PRINCIPAL.try_with(Clone::clone).ok();
        record.decision = Some(if outcome.is_ok() { "allow" } else { "deny" });
        record.reason = Some(
            match &outcome {
                Ok(h) => format!("new pid {}, {} socket(s) handed over", h.new_pid, h.sockets),
                Err(e) => e.to_string(),
            }
            .into(),
        );
        self.audit.record(record);
        match outcome {
            Ok(h) => json_reply(
                200,
                json!({
                    "status": "upgraded",
                    "old_pid": h.old_pid,
                    "new_pid": h.new_pid,
                    "sockets": h.sockets,
                }),
            ),
            Err(e) => match e {
                UpgradeError::Busy => problem(409, &e.to_string()),
                UpgradeError::Unavailable => problem(503, &e.to_string()),
                // The new process failed, not this one: it keeps serving.
                _ => problem(502, &format!("{e}; this process keeps serving")),
            },
        }
    }
}
