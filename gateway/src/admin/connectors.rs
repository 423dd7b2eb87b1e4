//! `/admin/v1/connectors`: DMZ connectors over the admin API, the same
//! operations as `mft-gateway connectors ...` (docs/dmz.md).

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;
use std::time::SystemTime;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddConnector {
    name: String,
    /// SHA-256 of the client certificate it must present (hex).
    #[serde(default)]
    client_cert_sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinConnector {
    /// Hex SHA-256, or null to unpin.
    sha256: Option<String>,
}

pub(crate) const USAGE: &str =
    "use GET/POST /admin/v1/connectors, DELETE /admin/v1/connectors/{name} \
     or PUT /admin/v1/connectors/{name}/client-cert";

const PIN_EXPECTED: &str = "64 hex digits (':' separators allowed)";

impl AdminApp {
    /// Serves `/admin/v1/connectors[/name]` for an authorized caller.
    pub(crate) async fn connectors_api(&self, session: &mut ServerSession, name: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let store = self.store.clone();
        let (name, sub) = name.split_once('/').unwrap_or((name, ""));
        let reply = match (method.as_str(), name) {
            ("PUT", n) if !n.is_empty() && sub == "client-cert" => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: PinConnector = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let pin = match req
                    .sha256
                    .as_deref()
                    .map(crate::store::partners::normalize_pin)
                {
                    Some(None) => return problem(400, &format!("sha256: {PIN_EXPECTED} or null")),
                    Some(Some(p)) => Some(p),
                    None => None,
                };
                let n = n.to_string();
                let stored = pin.clone();
                match self
                    .control
                    .run(async move { store.set_connector_pin(&n, stored.as_deref()).await })
                    .await
                {
                    Ok(Ok(true)) => {
                        json_reply(200, json!({"name": name, "client_cert_sha256": pin}))
                    }
                    Ok(Ok(false)) => problem(404, "no such connector"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ if !sub.is_empty() => problem(404, "no such endpoint"),
            ("GET", "") => {
                match self
                    .control
                    .run(async move { store.list_connectors().await })
                    .await
                {
                    Ok(Ok(list)) => {
                        let now = SystemTime::now();
                        json_reply(
                            200,
                            json!({"connectors": list.iter().map(|c| c.to_json(now)).collect::<Vec<_>>()}),
                        )
                    }
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: AddConnector = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let pin = match req
                    .client_cert_sha256
                    .as_deref()
                    .map(crate::store::partners::normalize_pin)
                {
                    Some(None) => {
                        return problem(400, &format!("client_cert_sha256: {PIN_EXPECTED}"))
                    }
                    Some(Some(p)) => Some(p),
                    None => None,
                };
                let added = self
                    .control
                    .run(async move { store.add_connector(&req.name, pin.as_deref()).await })
                    .await;
                match added {
                    Ok(Ok((record, key))) => {
                        let mut v = record.to_json(SystemTime::now());
                        v["key"] = key.into();
                        json_reply(201, v)
                    }
                    Ok(Err(crate::store::StoreError::Connector { reason, .. })) => {
                        problem(400, reason)
                    }
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("DELETE", n) if !n.is_empty() => {
                let n = n.to_string();
                match self
                    .control
                    .run(async move { store.remove_connector(&n).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(200, json!({"removed": name})),
                    Ok(Ok(false)) => problem(404, "no such connector"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        };
        let slash = if sub.is_empty() { "" } else { "/" };
        self.audit_admin_event(
            session,
            "connector",
            &format!("{method} {name}{slash}{sub}"),
            reply.0,
        );
        reply
    }
}
