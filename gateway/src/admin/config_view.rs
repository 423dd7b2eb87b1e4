//! `/admin/v1/config`: the running config with every secret redacted
//! (`mft_config::redact`), and the validation of a candidate config an
//! operator pastes in, with the same `file:line: key: message` lines as
//! `mft-gateway check`. Applying a config stays `POST /admin/v1/reload`
//! (the file on disk is the source of truth; nothing here writes it).

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;

pub(crate) const USAGE: &str = "use GET /admin/v1/config, POST /admin/v1/config/validate";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidate {
    /// The TOML text.
    config: String,
}

/// What the config page shows of the file at `source`.
fn shown(source: PathBuf, running: Option<mft_config::Config>) -> serde_json::Value {
    let text = match std::fs::read_to_string(&source) {
        Ok(t) => t,
        Err(e) => {
            return json!({
                "source": source.display().to_string(),
                "config": null,
                "matches_running": null,
                "error": format!("cannot read {}: {}", source.display(), e.kind()),
            })
        }
    };
    let (config, error) = match mft_config::redact::redacted(&text, &source) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // The file may have been edited since the last (re)load: say so, so the
    // page never passes an edited file off as the running config.
    let matches_running = running
        .map(|r| mft_config::load_str(&text, &source).is_ok_and(|loaded| loaded.config == r));
    json!({
        "source": source.display().to_string(),
        "config": config,
        "matches_running": matches_running,
        "error": error,
    })
}

/// `check`'s verdict on `text` as if it were the file at `source`.
fn validate(text: &str, source: &std::path::Path) -> serde_json::Value {
    match mft_config::load_str(text, source) {
        Ok(loaded) => json!({
            "valid": true,
            "errors": [],
            "warnings": loaded.warnings.iter().map(|w| w.display_in(source).to_string()).collect::<Vec<_>>(),
        }),
        Err(mft_config::ConfigError::Invalid { path, issues }) => json!({
            "valid": false,
            "errors": issues.iter().map(|i| i.display_in(&path).to_string()).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Err(e) => json!({"valid": false, "errors": [e.to_string()], "warnings": []}),
    }
}

impl AdminApp {
    /// The config the process runs with now: the reloader's (it changes
    /// with each reload), or the one it started with.
    fn running_config(&self) -> Option<mft_config::Config> {
        match &self.reloader {
            Some(r) => r.running(),
            None => Some((*self.config).clone()),
        }
    }

    /// Serves `/admin/v1/config[/validate]`.
    pub(crate) async fn config_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let source = self.config.source.clone();
        match (method.as_str(), rest) {
            ("GET", "") => {
                let running = self.running_config();
                match self
                    .control
                    .run(async move {
                        tokio::task::spawn_blocking(move || shown(source, running)).await
                    })
                    .await
                {
                    Ok(Ok(v)) => json_reply(200, v),
                    _ => problem(503, "cannot read the config file"),
                }
            }
            ("POST", "validate") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let candidate: Candidate = match serde_json::from_slice(&body) {
                    Ok(c) => c,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                // Resolving secret references and reading files blocks.
                let reply = match self
                    .control
                    .run(async move {
                        tokio::task::spawn_blocking(move || validate(&candidate.config, &source))
                            .await
                    })
                    .await
                {
                    Ok(Ok(v)) => json_reply(200, v),
                    _ => problem(503, "cannot validate now"),
                };
                self.audit_admin_event(session, "config", "validate", reply.0);
                reply
            }
            _ => problem(405, USAGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_gets_checks_lines() {
        let v = validate(
            "[server]\nhttps_listen = \"nope\"\n",
            std::path::Path::new("/tmp/gateway.toml"),
        );
        assert_eq!(v["valid"], false);
        let errors = v["errors"].to_string();
        assert!(
            errors.contains("gateway.toml:2: server.https_listen: "),
            "{errors}"
        );
    }
}
