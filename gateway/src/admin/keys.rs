//! `/admin/v1/keys`: create, list, show and revoke service-account API keys.

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use crate::store::StoreError;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, SystemTime};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Vec<String>,
    expires_days: Option<u64>,
    /// Per-account rate limit such as `"10/s burst 20"`.
    rate_limit: Option<String>,
    /// Senders the key may name in a delivery; absent or null: any.
    allowed_senders: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSenders {
    /// The new list; null unbinds the key.
    allowed_senders: Option<Vec<String>>,
}

/// The routes, as the 405 answer names them (and the OpenAPI test reads them).
pub(crate) const USAGE: &str = "use GET/POST /admin/v1/keys, GET/DELETE /admin/v1/keys/{id}, \
     PUT /admin/v1/keys/{id}/senders";

impl AdminApp {
    fn audit_key_event(&self, session: &ServerSession, action: &str, id: &str, status: u16) {
        self.audit_admin_event(session, "key", &format!("{action} {id}"), status);
    }

    pub(crate) async fn keys_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.clone();
        let store = self.store.clone();
        let now = SystemTime::now();
        match (method.as_str(), rest) {
            ("GET", "") => match self
                .control
                .run(async move { store.list_keys().await })
                .await
            {
                Ok(Ok(keys)) => json_reply(
                    200,
                    json!({ "keys": keys.iter().map(|k| k.to_json(now)).collect::<Vec<_>>() }),
                ),
                _ => problem(503, "key store unavailable"),
            },
            ("POST", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: CreateKey = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let expires = req
                    .expires_days
                    .map(|d| Duration::from_secs(d.saturating_mul(86_400)));
                if let Some(text) = &req.rate_limit {
                    if let Err(e) = crate::ratelimit::parse_limit(text) {
                        return problem(400, &format!("rate_limit: {e}"));
                    }
                }
                let senders = req.allowed_senders.map(|l| l.join(","));
                let created = self
                    .control
                    .run(async move {
                        store
                            .create_key_bound(
                                &req.name,
                                &req.scopes,
                                expires,
                                req.rate_limit.as_deref(),
                                senders.as_deref(),
                            )
                            .await
                    })
                    .await;
                match created {
                    Ok(Ok((record, token))) => {
                        self.audit_key_event(session, "create", &record.id, 201);
                        let mut v = record.to_json(now);
                        v["key"] = serde_json::Value::String(token);
                        json_reply(201, v)
                    }
                    Ok(Err(
                        e @ (StoreError::InvalidAccount { .. }
                        | StoreError::NoScopes
                        | StoreError::InvalidScope { .. }
                        | StoreError::InvalidExpiry(_)
                        | StoreError::InvalidSenders(_)),
                    )) => problem(400, &e.to_string()),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("PUT", path) if path.split('/').count() == 2 && path.ends_with("/senders") => {
                let id = path.trim_end_matches("/senders").to_string();
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: SetSenders = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let senders = req.allowed_senders.map(|l| l.join(","));
                let owned = id.clone();
                let done = self
                    .control
                    .run(async move {
                        if !store
                            .set_allowed_senders(&owned, senders.as_deref())
                            .await?
                        {
                            return Ok(None);
                        }
                        store.get_key(&owned).await
                    })
                    .await;
                match done {
                    Ok(Ok(Some(record))) => {
                        self.audit_key_event(session, "set senders of", &id, 200);
                        json_reply(200, record.to_json(now))
                    }
                    Ok(Ok(None)) => problem(404, "no such key"),
                    Ok(Err(e @ StoreError::InvalidSenders(_))) => problem(400, &e.to_string()),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("GET", id) if !id.contains('/') => {
                let id = id.to_string();
                match self
                    .control
                    .run(async move { store.get_key(&id).await })
                    .await
                {
                    Ok(Ok(Some(k))) => json_reply(200, k.to_json(now)),
                    Ok(Ok(None)) => problem(404, "no such key"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("DELETE", id) if !id.contains('/') => {
                let owned = id.to_string();
                match self
                    .control
                    .run(async move { store.revoke_key(&owned).await })
                    .await
                {
                    Ok(Ok(true)) => {
                        self.audit_key_event(session, "revoke", id, 204);
                        (204, "application/json", Vec::new())
                    }
                    Ok(Ok(false)) => problem(404, "no such key"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        }
    }
}
