//! `/admin/v1/partners`: the trust-network connections over the admin API,
//! the same operations as `mft-gateway partners ...` (docs/trust-network.md).

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use crate::trust::connections::{self, KeyInput};
use mft_filters::trust::partner_inbox;
use mft_filters::validation::folder::validate_folder;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPartner {
    name: String,
    url: String,
    email_domains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetKey {
    key: Option<String>,
    key_ref: Option<String>,
}

pub(crate) const USAGE: &str =
    "use GET/POST /admin/v1/partners, GET/DELETE /admin/v1/partners/{name}, \
                     PUT /admin/v1/partners/{name}/key, PUT /admin/v1/partners/{name}/client-cert, \
                     PUT /admin/v1/partners/{name}/inbox, POST /admin/v1/partners/{name}/test";

impl AdminApp {
    /// Serves `/admin/v1/partners[/rest]` for an authorized caller.
    pub(crate) async fn partners_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let store = self.store.clone();
        let cfg = self.config.clone();
        let (name, action) = match rest.split_once('/') {
            Some((n, a)) => (n.to_string(), a),
            None => (rest.to_string(), ""),
        };
        let reply = match (method.as_str(), name.as_str(), action) {
            ("GET", "", "") => {
                match self
                    .control
                    .run(async move { store.list_partners().await })
                    .await
                {
                    Ok(Ok(list)) => json_reply(
                        200,
                        json!({"partners": list.iter().map(|p| p.to_json()).collect::<Vec<_>>()}),
                    ),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", "", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: AddPartner = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let added = self
                    .control
                    .run(async move {
                        connections::add(&store, &cfg, &req.name, &req.url, &req.email_domains)
                            .await
                    })
                    .await;
                match added {
                    Ok(Ok((record, token))) => {
                        let mut v = record.to_json();
                        v["key"] = token.into();
                        json_reply(201, v)
                    }
                    Ok(Err(e)) => problem(400, &format!("{e:#}")),
                    Err(_) => problem(503, "key store unavailable"),
                }
            }
            ("GET", n, "") if !n.is_empty() => {
                let n = n.to_string();
                match self
                    .control
                    .run(async move { store.get_partner(&n).await })
                    .await
                {
                    Ok(Ok(Some(p))) => json_reply(200, p.to_json()),
                    Ok(Ok(None)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("DELETE", n, "") if !n.is_empty() => {
                let n = n.to_string();
                match self
                    .control
                    .run(async move { store.remove_partner(&n).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(200, json!({"removed": name})),
                    Ok(Ok(false)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("PUT", n, "key") if !n.is_empty() => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: SetKey = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let input = match (&req.key, &req.key_ref) {
                    (Some(k), None) => KeyInput::Key(k),
                    (None, Some(r)) => KeyInput::Reference(r),
                    _ => return problem(400, "give exactly one of \"key\" and \"key_ref\""),
                };
                let stored = match connections::outbound_key(&cfg, n, input) {
                    Ok(k) => k,
                    Err(e) => return problem(400, &format!("{e:#}")),
                };
                let n = n.to_string();
                match self
                    .control
                    .run(async move { store.set_partner_key(&n, &stored).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(200, json!({"name": name, "status": "configured"})),
                    Ok(Ok(false)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("PUT", n, "client-cert") if !n.is_empty() => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                #[derive(serde::Deserialize)]
                struct Pin {
                    sha256: Option<String>,
                }
                let req: Pin = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let pin = match req
                    .sha256
                    .as_deref()
                    .map(crate::store::partners::normalize_pin)
                {
                    Some(None) => {
                        return problem(
                            400,
                            "sha256: 64 hex digits (':' separators allowed) or null",
                        )
                    }
                    Some(Some(p)) => Some(p),
                    None => None,
                };
                let n = n.to_string();
                let stored = pin.clone();
                match self
                    .control
                    .run(async move { store.set_partner_pin(&n, stored.as_deref()).await })
                    .await
                {
                    Ok(Ok(true)) => {
                        json_reply(200, json!({"name": name, "client_cert_sha256": pin}))
                    }
                    Ok(Ok(false)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("PUT", n, "inbox") if !n.is_empty() => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Inbox {
                    folder: Option<String>,
                    quota_bytes_per_day: Option<u64>,
                }
                let req: Inbox = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let folder = match req.folder.as_deref().map(validate_folder) {
                    Some(Err(e)) => return problem(400, &format!("folder: {e}")),
                    Some(Ok(f)) => Some(f),
                    None => None,
                };
                if req.quota_bytes_per_day == Some(0) {
                    return problem(400, "quota_bytes_per_day: more than 0, or null");
                }
                let inbox = match partner_inbox::inbox(n, folder.as_deref()) {
                    Ok(i) => i,
                    Err(e) => return problem(400, &format!("folder: needed ({e})")),
                };
                let n = n.to_string();
                let quota = req.quota_bytes_per_day;
                match self
                    .control
                    .run(async move { store.set_partner_inbox(&n, folder.as_deref(), quota).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(
                        200,
                        json!({"name": name, "inbox_folder": inbox, "quota_bytes_per_day": quota}),
                    ),
                    Ok(Ok(false)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", n, "test") if !n.is_empty() => {
                let n = n.to_string();
                let tested = self
                    .control
                    .run(async move {
                        match store.get_partner(&n).await {
                            Ok(Some(p)) => Ok(Some(connections::test(&cfg, &p).await)),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
                match tested {
                    Ok(Ok(Some(Ok(report)))) => json_reply(
                        200,
                        json!({"name": name, "connected": true,
                               "organization": report.organization,
                               "skew_secs": report.skew_secs}),
                    ),
                    Ok(Ok(Some(Err(e)))) => json_reply(
                        200,
                        json!({"name": name, "connected": false, "reason": e.to_string()}),
                    ),
                    Ok(Ok(None)) => problem(404, "no such connection"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        };
        self.audit_admin_event(session, "partner", &format!("{method} {rest}"), reply.0);
        reply
    }
}
