//! The admin listener: `/healthz`, `/metrics` (Prometheus text) and the
//! management API under `/admin/v1/` (keys, partners, connectors, webhooks, one file
//! each). Bound to loopback by default and never meant to be public; the API
//! additionally requires
//! `Authorization: Bearer <[admin] token>`. `/healthz` and `/metrics` need no
//! token: scrapers and probes on the host reach them, and they reveal counts,
//! never keys or secrets.

use crate::audit::{AuditLog, AuditRecord};
use crate::control::ControlPlane;
use crate::metrics::Metrics;
use crate::store::KeyStore;
use async_trait::async_trait;
use mft_config::Secret;
use mft_filters::problem::{Problem, CONTENT_TYPE};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

use subtle::ConstantTimeEq;

mod connectors;
mod keys;
mod messages;
mod partners;
mod webhooks;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// The admin application.
pub struct AdminApp {
    token: Option<Secret>,
    pub(crate) store: KeyStore,
    pub(crate) control: ControlPlane,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    pub(crate) config: Arc<mft_config::Config>,
}

pub(crate) type Reply = (u16, &'static str, Vec<u8>);

pub(crate) fn problem(status: u16, detail: &str) -> Reply {
    (
        status,
        CONTENT_TYPE,
        Problem::new(status, Some(detail.to_string())).to_json(),
    )
}

pub(crate) fn json_reply(status: u16, value: serde_json::Value) -> Reply {
    (status, "application/json", value.to_string().into_bytes())
}

impl AdminApp {
    /// The admin app; without a token the key API answers 403.
    pub fn new(
        token: Option<Secret>,
        store: KeyStore,
        control: ControlPlane,
        audit: AuditLog,
        metrics: Arc<Metrics>,
        config: Arc<mft_config::Config>,
    ) -> Self {
        AdminApp {
            token,
            store,
            control,
            audit,
            metrics,
            config,
        }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
    }

    /// One audit record per admin action (`event` names the resource).
    pub(crate) fn audit_admin_event(
        &self,
        session: &ServerSession,
        event: &'static str,
        reason: &str,
        status: u16,
    ) {
        let mut r = AuditRecord::new(event);
        r.principal = Some("admin".to_string());
        r.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        r.method = Some(session.req_header().method.to_string());
        r.path = Some(session.req_header().uri.path().to_string());
        r.status = Some(status);
        r.decision = Some(if status < 400 { "allow" } else { "deny" });
        r.reason = Some(reason.to_string());
        self.audit.record(r);
    }
}

pub(crate) async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(problem(413, "admin request body too large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(problem(400, "cannot read request body")),
        }
    }
}

/// Whether the admin listener answers a request for `host` (the `Host`
/// header, with or without port): IP literals, `localhost`, and the names
/// in `[admin] allowed_hosts`. Anything else is a name someone pointed at
/// this address, e.g. a web page in a browser on this host reading
/// `/metrics` through DNS rebinding.
fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: no browser sends that.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| session.req_header().uri.host());
        let (status, content_type, body) = if !host_allowed(host, &self.config.admin.allowed_hosts)
        {
            problem(
                421,
                "this admin listener does not answer to that Host; add it to [admin] allowed_hosts",
            )
        } else if path == "/healthz" {
            json_reply(200, json!({"status": "ok"}))
        } else if path == "/metrics" {
            (
                200,
                crate::metrics::CONTENT_TYPE,
                self.metrics.render().into_bytes(),
            )
        } else if let Some(resource) = path.strip_prefix("/admin/v1/") {
            if self.token.is_none() {
                problem(403, "admin API disabled: set [admin] token in the config")
            } else if !self.authorized(session) {
                self.audit_admin_event(session, "key", "unauthorized -", 401);
                problem(401, "admin token missing or wrong")
            } else {
                let (name, rest) = resource.split_once('/').unwrap_or((resource, ""));
                match name {
                    "keys" => self.keys_api(session, rest).await,
                    "partners" => self.partners_api(session, rest).await,
                    "connectors" if !rest.contains('/') => self.connectors_api(session, rest).await,
                    "webhooks" => self.webhooks_api(session, rest).await,
                    "messages" => self.messages_api(session, rest).await,
                    _ => problem(404, "no such endpoint"),
                }
            }
        } else {
            problem(404, "no such endpoint")
        };
        let mut response = http::Response::new(body);
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }
}

#[cfg(test)]
mod host_tests {
    use super::host_allowed;

    #[test]
    fn ip_literals_localhost_and_listed_names() {
        let listed = vec!["gw1.internal".to_string()];
        for ok in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "[::1]:9901",
            "localhost:9901",
            "LOCALHOST",
            "gw1.internal:9901",
        ] {
            assert!(host_allowed(Some(ok), &listed), "{ok}");
        }
        for bad in [
            "attacker.example:9901",
            "127.0.0.1.nip.io:9901",
            "gw2.internal",
            "",
        ] {
            assert!(!host_allowed(Some(bad), &listed), "{bad}");
        }
        assert!(host_allowed(None, &listed));
    }
}
