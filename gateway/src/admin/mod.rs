//! The admin listener: `/healthz`, `/metrics` (Prometheus text), the
//! management API under `/admin/v1/` (keys, partners, connectors, webhooks,
//! messages, one file each) and the browser console under `/console/` (console.rs). Bound to
//! loopback by default and never meant to be public; the API additionally
//! requires `Authorization: Bearer <[admin] token>` or a console session
//! (cookie, plus the CSRF token for changes; the viewer role reads only).
//! `/healthz` and `/metrics` need no token: scrapers and probes on the host
//! reach them, and they reveal counts, never keys or secrets.

use crate::audit::{AuditLog, AuditRecord};
use crate::metrics::Metrics;
use crate::runtime::ServiceRuntime;
use crate::store::Store;
use async_trait::async_trait;
use mft_config::Secret;
use mft_filters::decision::Rejection;
use mft_filters::problem::CONTENT_TYPE;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

use subtle::ConstantTimeEq;

mod audit_trail;
mod bridges;
mod config_view;
mod connectors;
pub mod console;
mod keys;
mod messages;
pub mod openapi;
pub mod overview;
mod partners;
mod relays;
mod reload;
mod sftp_users;
pub(crate) use sftp_users::{config_user_json, stored_user_json};
mod transports;
mod upgrade;
mod webhooks;

tokio::task_local! {
    /// Who the current admin request acts as (`admin` for the token,
    /// `console:NAME` for a session), for its audit records.
    static PRINCIPAL: String;
}

/// The API key scope that may queue messages on the admin listener.
pub const MESSAGES_SEND: &str = "messages:send";

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// The admin application.
pub struct AdminApp {
    token: Option<Secret>,
    pub(crate) store: Store,
    pub(crate) control: ServiceRuntime,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    pub(crate) config: Arc<mft_config::Config>,
    defender: Option<Arc<mft_filters::defender::Defender>>,
    reloader: Option<Arc<crate::reload::Reloader>>,
    overview: Arc<overview::Overview>,
}

pub(crate) type Reply = (u16, &'static str, Vec<u8>);

/// A refusal of the admin listener: `status` with a client-safe `detail`.
pub(crate) fn problem(status: u16, detail: &str) -> Reply {
    rejected(&Rejection::new(
        status,
        "about:blank",
        detail.to_string(),
        "admin",
    ))
}

/// Writes `rejection` as problem+json, through the same
/// [`Rejection::to_problem`] as the proxy's refusals.
pub(crate) fn rejected(rejection: &Rejection) -> Reply {
    (
        rejection.status,
        CONTENT_TYPE,
        rejection.to_problem().to_json(),
    )
}

pub(crate) fn json_reply(status: u16, value: serde_json::Value) -> Reply {
    (status, "application/json", value.to_string().into_bytes())
}

impl AdminApp {
    /// The admin app; without a token the key API answers 403.
    pub fn new(
        token: Option<Secret>,
        store: Store,
        control: ServiceRuntime,
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
            defender: None,
            reloader: None,
            overview: Arc::new(overview::Overview::default()),
        }
    }

    /// Starts sampling the metrics for `GET /admin/v1/overview` (and
    /// probing the backend through `backend`, a client of its own).
    pub fn with_overview(self, backend: Option<crate::backend_client::BackendClient>) -> Self {
        self.overview
            .start(&self.control, self.metrics.registry().clone(), backend);
        self
    }

    /// `POST /admin/v1/reload` reloads through `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<crate::reload::Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Failed console sign-ins feed this defender (the HTTPS listener's).
    pub fn with_defender(mut self, defender: Option<Arc<mft_filters::defender::Defender>>) -> Self {
        self.defender = defender;
        self
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
        r.principal = Some(
            PRINCIPAL
                .try_with(Clone::clone)
                .unwrap_or_else(|_| "admin".to_string()),
        );
        r.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        r.method = Some(crate::audit::method_text(
            session.req_header().method.as_str(),
        ));
        r.path = Some(session.req_header().uri.path().to_string());
        r.status = Some(status);
        r.decision = Some(if status < 400 { "allow" } else { "deny" });
        r.reason = Some(reason.to_string().into());
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
        let mut cookie = None;
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
        } else if path == "/admin/docs" || path == "/admin/docs/" {
            self.api_docs(session).await
        } else if path == "/console" || path.starts_with("/console/") {
            let (reply, set) = self.console(session, &path).await;
            cookie = set;
            reply
        } else if let Some(resource) = path.strip_prefix("/admin/v1/") {
            match self.admin_principal(session).await {
                Err(reply) => reply,
                Ok(principal) => {
                    PRINCIPAL
                        .scope(principal, self.admin_api(session, resource))
                        .await
                }
            }
        } else {
            problem(404, "no such endpoint")
        };
        let mut response = http::Response::new(body);
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        // Nothing here may be framed, sniffed, cached or load anything from
        // elsewhere (the console's pages included).
        let csp = if matches!(
            path.as_str(),
            "/console/api" | console::API_DOCS | "/admin/docs" | "/admin/docs/"
        ) {
            console::API_DOCS_CSP
        } else {
            console::CSP
        };
        headers.insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(csp),
        );
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        headers.insert(
            http::header::REFERRER_POLICY,
            http::HeaderValue::from_static("no-referrer"),
        );
        if let Some(value) = cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            headers.insert(http::header::SET_COOKIE, value);
        }
        response
    }
}

impl AdminApp {
    /// Who may call `/admin/v1`: the bearer token (exactly as before the
    /// console), or else a console session with its CSRF token for changes
    /// and the admin role for changes.
    async fn admin_principal(&self, session: &ServerSession) -> Result<String, Reply> {
        let bearer = session
            .req_header()
            .headers
            .contains_key(http::header::AUTHORIZATION);
        let cookie = console::cookie_token(session).is_some();
        if bearer || !cookie {
            if !self.authorized(session) {
                if let Some(principal) = self.message_sender_key(session).await {
                    return Ok(principal);
                }
            }
            return if self.token.is_none() {
                Err(problem(
                    403,
                    "admin API disabled: set [admin] token in the config",
                ))
            } else if !self.authorized(session) {
                self.audit_admin_event(session, "key", "unauthorized -", 401);
                Err(problem(401, "admin token missing or wrong"))
            } else {
                Ok("admin".to_string())
            };
        }
        let signed = match self.current_session(session).await? {
            Some(s) => s,
            None => {
                return Err(problem(
                    401,
                    "console session expired or unknown: sign in again",
                ))
            }
        };
        let principal = format!("console:{}", signed.record.admin);
        match console::check_admin_call(session, &signed) {
            Ok(()) => Ok(principal),
            Err((reply, why)) => {
                PRINCIPAL.sync_scope(principal, || {
                    self.audit_admin_event(session, "admin", why, reply.0)
                });
                Err(reply)
            }
        }
    }

    /// An API key with scope `messages:send` may use `/admin/v1/messages`
    /// (and nothing else here): its principal `key:<id>`, or `None`.
    async fn message_sender_key(&self, session: &ServerSession) -> Option<String> {
        let path = session.req_header().uri.path();
        if path != "/admin/v1/messages" && !path.starts_with("/admin/v1/messages/") {
            return None;
        }
        let token = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?
            .to_string();
        let id = mft_filters::auth::api_key::parse(&token)
            .ok()?
            .id
            .to_string();
        let store = self.store.clone();
        let record = self
            .control
            .run(async move { store.get_key(&id).await })
            .await
            .ok()?
            .ok()??;
        let parsed = mft_filters::auth::api_key::parse(&token).ok()?;
        let now = std::time::SystemTime::now();
        let usable = parsed.verify(&record.secret_hash)
            && record.revoked_at.is_none()
            && record.expires_at.is_none_or(|t| t > now)
            && record.scopes.iter().any(|s| s == MESSAGES_SEND);
        usable.then(|| format!("key:{}", record.id))
    }

    /// The `/admin/v1/` resources, one file each.
    async fn admin_api(&self, session: &mut ServerSession, resource: &str) -> Reply {
        let (name, rest) = resource.split_once('/').unwrap_or((resource, ""));
        match name {
            "keys" => self.keys_api(session, rest).await,
            "partners" => self.partners_api(session, rest).await,
            "connectors" => self.connectors_api(session, rest).await,
            "webhooks" => self.webhooks_api(session, rest).await,
            "messages" => self.messages_api(session, rest).await,
            "transports" => self.transports_api(session, rest).await,
            "reload" if rest.is_empty() => self.reload_api(session).await,
            "upgrade" if rest.is_empty() => self.upgrade_api(session).await,
            "overview" => self.overview_api(session, rest).await,
            "bridges" => self.bridges_api(session, rest).await,
            "sftp" => self.sftp_api(session, rest).await,
            "config" => self.config_api(session, rest).await,
            "relays" => self.relays_api(session, rest).await,
            "audit" => self.audit_api(session, rest).await,
            "openapi.json" if rest.is_empty() => openapi::document_reply(),
            _ => problem(404, "no such endpoint"),
        }
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
