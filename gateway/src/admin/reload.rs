//! `POST /admin/v1/reload`: re-read the config file the gateway was
//! started with and apply it (docs/operations.md, "Reload"). Admin role
//! only: the gate in `admin/mod.rs` refuses a viewer's change.

use crate::admin::{json_reply, problem, AdminApp, Reply, PRINCIPAL};
use crate::reload::ReloadError;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

/// The route, as the 405 answer names it.
pub(crate) const USAGE: &str = "use POST /admin/v1/reload";

impl AdminApp {
    pub(crate) async fn reload_api(&self, session: &mut ServerSession) -> Reply {
        if session.req_header().method != http::Method::POST {
            return problem(405, USAGE);
        }
        let Some(reloader) = &self.reloader else {
            return problem(503, "reload is not available in this process");
        };
        let principal = PRINCIPAL
            .try_with(Clone::clone)
            .unwrap_or_else(|_| "admin".to_string());
        // The reloader writes the `config_reloaded` audit record itself
        // (the same one SIGHUP writes).
        match reloader.reload(principal).await {
            Ok(report) => json_reply(
                200,
                json!({
                    "status": "reloaded",
                    "config": report.config,
                    "changed": report.changed,
                    "needs_restart": report.needs_restart,
                    "warnings": report.warnings,
                }),
            ),
            Err(e) => {
                let status = match e {
                    ReloadError::Busy => 409,
                    _ => 422,
                };
                let detail = match e {
                    ReloadError::Invalid(_) => "the config file is invalid; nothing changed",
                    ReloadError::Apply(_) => "the config cannot be applied; nothing changed",
                    ReloadError::Busy => "another reload is in progress; nothing changed",
                };
                (
                    status,
                    mft_filters::problem::CONTENT_TYPE,
                    json!({
                        "type": "about:blank",
                        "title": if status == 409 { "Conflict" } else { "Unprocessable Content" },
                        "status": status,
                        "detail": detail,
                        "errors": e.lines(),
                    })
                    .to_string()
                    .into_bytes(),
                )
            }
        }
    }
}
