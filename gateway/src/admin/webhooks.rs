//! `/admin/v1/webhooks`: webhook subscriptions over the admin API, the same
//! operations as `mft-gateway webhooks ...` (docs/webhooks.md).

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use crate::webhooks::subscriptions::{self, AddError};
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddWebhook {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    allow_private: bool,
}

pub(crate) const USAGE: &str =
    "use GET/POST /admin/v1/webhooks, GET/DELETE /admin/v1/webhooks/{id}, \
                     POST /admin/v1/webhooks/{id}/test";

impl AdminApp {
    /// Serves `/admin/v1/webhooks[/rest]` for an authorized caller.
    pub(crate) async fn webhooks_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let store = self.store.clone();
        let cfg = self.config.clone();
        let (id, action) = match rest.split_once('/') {
            Some((i, a)) => (i.to_string(), a),
            None => (rest.to_string(), ""),
        };
        let reply = match (method.as_str(), id.as_str(), action) {
            ("GET", "", "") => {
                match self
                    .control
                    .run(async move { store.list_webhooks().await })
                    .await
                {
                    Ok(Ok(list)) => json_reply(
                        200,
                        json!({"webhooks": list.iter().map(|w| w.to_json()).collect::<Vec<_>>()}),
                    ),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", "", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: AddWebhook = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let added = self
                    .control
                    .run(async move {
                        subscriptions::add(&store, &cfg, &req.url, &req.events, req.allow_private)
                            .await
                    })
                    .await;
                match added {
                    Ok(Ok((record, secret))) => {
                        let mut v = record.to_json();
                        v["secret"] = secret.into();
                        json_reply(201, v)
                    }
                    Ok(Err(AddError::Invalid(reason))) => problem(400, &reason),
                    Ok(Err(AddError::Webhook(e))) => problem(409, &e.to_string()),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("GET", i, "") if !i.is_empty() => {
                let i = i.to_string();
                match self
                    .control
                    .run(async move { store.get_webhook(&i).await })
                    .await
                {
                    Ok(Ok(Some(w))) => json_reply(200, w.to_json()),
                    Ok(Ok(None)) => problem(404, "no such webhook"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("DELETE", i, "") if !i.is_empty() => {
                let i = i.to_string();
                match self
                    .control
                    .run(async move { store.remove_webhook(&i).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(200, json!({"removed": id})),
                    Ok(Ok(false)) => problem(404, "no such webhook"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", i, "test") if !i.is_empty() => {
                let i = i.to_string();
                let tested = self
                    .control
                    .run(async move {
                        match store.get_webhook(&i).await {
                            Ok(Some(w)) => Ok(Some(subscriptions::test(&cfg, &w).await)),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
                match tested {
                    Ok(Ok(Some(Ok((msg_id, status))))) => json_reply(
                        200,
                        json!({"id": id, "delivered": true, "status": status, "webhook_id": msg_id}),
                    ),
                    Ok(Ok(Some(Err(e)))) => json_reply(
                        200,
                        json!({"id": id, "delivered": false, "reason": e.to_string()}),
                    ),
                    Ok(Ok(None)) => problem(404, "no such webhook"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        };
        self.audit_admin_event(session, "webhook", &format!("{method} {rest}"), reply.0);
        reply
    }
}
