//! `/admin/v1/transports`: transport providers over the admin API, the same
//! operations as `mft-gateway transports ...` (docs/transports.md). Secrets
//! go in (`secret`, `secret_ref`, `private_key`) and never come out.

use crate::admin::{json_reply, problem, read_body, rejected, AdminApp, Reply};
use crate::transports::{self, NewTransport, OutboundMessage, SecretInput, TransportError};
use mft_filters::decision::Rejection;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTransport {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    settings: serde_json::Map<String, serde_json::Value>,
    secret: Option<String>,
    secret_ref: Option<String>,
    private_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyTransport {
    name: String,
    #[serde(default)]
    settings: serde_json::Map<String, serde_json::Value>,
}

/// How long a test message may take in all. A provider's client bounds
/// each step (connect, greeting, STARTTLS, AUTH, DATA: 30 s each for SMTP),
/// which adds up to minutes against a server that answers slowly; the one
/// who clicked "send test" gets an answer before a browser gives up.
const TEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(40);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestTransport {
    to: String,
}

pub(crate) const USAGE: &str =
    "use GET/POST /admin/v1/transports, GET/DELETE /admin/v1/transports/{name}, \
     POST /admin/v1/transports/{name}/copy, POST /admin/v1/transports/{name}/test";

fn error_reply(e: TransportError) -> Reply {
    match e {
        TransportError::Invalid(reason) => problem(400, &reason),
        TransportError::Store(_) => problem(503, "key store unavailable"),
        e @ TransportError::Recipient { .. } => rejected(&Rejection::new(
            400,
            mft_filters::problem_types::INVALID_RECIPIENT,
            e.to_string(),
            "admin",
        )),
        other => problem(400, &other.to_string()),
    }
}

impl AdminApp {
    /// Serves `/admin/v1/transports[/rest]` for an authorized caller.
    pub(crate) async fn transports_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let store = self.store.clone();
        let cfg = self.config.clone();
        let (name, action) = match rest.split_once('/') {
            Some((n, a)) => (n.to_string(), a.to_string()),
            None => (rest.to_string(), String::new()),
        };
        let reply = match (method.as_str(), name.as_str(), action.as_str()) {
            ("GET", "", "") => {
                let listed = self
                    .control
                    .run(async move {
                        store.list_transports().await.map(|list| {
                            list.iter()
                                .map(|t| transports::describe(t, &list, &cfg))
                                .collect::<Vec<_>>()
                        })
                    })
                    .await;
                match listed {
                    Ok(Ok(list)) => json_reply(200, json!({"transports": list})),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", "", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: AddTransport = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let added = self
                    .control
                    .run(async move {
                        let secret = match (&req.secret, &req.secret_ref) {
                            (Some(_), Some(_)) => {
                                return Err(TransportError::Invalid(
                                    "give secret or secret_ref, not both".into(),
                                ))
                            }
                            (Some(s), None) => SecretInput::Value(s),
                            (None, Some(r)) => SecretInput::Reference(r),
                            (None, None) => SecretInput::None,
                        };
                        let record = transports::add(
                            &store,
                            &cfg,
                            NewTransport {
                                name: &req.name,
                                kind: &req.kind,
                                settings: serde_json::Value::Object(req.settings.clone()),
                                secret,
                                private_key: req.private_key.as_deref(),
                            },
                        )
                        .await?;
                        let list = store.list_transports().await?;
                        Ok(transports::describe(&record, &list, &cfg))
                    })
                    .await;
                match added {
                    Ok(Ok(v)) => json_reply(201, v),
                    Ok(Err(e)) => error_reply(e),
                    Err(_) => problem(503, "key store unavailable"),
                }
            }
            ("GET", n, "") if !n.is_empty() => {
                let n = n.to_string();
                let shown = self
                    .control
                    .run(async move {
                        let list = store.list_transports().await?;
                        Ok::<_, crate::store::StoreError>(
                            list.iter()
                                .find(|t| t.name == n)
                                .map(|t| transports::describe(t, &list, &cfg)),
                        )
                    })
                    .await;
                match shown {
                    Ok(Ok(Some(v))) => json_reply(200, v),
                    Ok(Ok(None)) => problem(404, "no such transport"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("DELETE", n, "") if !n.is_empty() => {
                let n = n.to_string();
                match self
                    .control
                    .run(async move { store.remove_transport(&n).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(200, json!({"removed": name})),
                    Ok(Ok(false)) => problem(404, "no such transport"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("POST", n, "copy") if !n.is_empty() => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: CopyTransport = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let n = n.to_string();
                let copied = self
                    .control
                    .run(async move {
                        if store.get_transport(&n).await?.is_none() {
                            return Ok(None);
                        }
                        let record =
                            transports::copy(&store, &cfg, &n, &req.name, req.settings).await?;
                        let list = store.list_transports().await?;
                        Ok::<_, TransportError>(Some(transports::describe(&record, &list, &cfg)))
                    })
                    .await;
                match copied {
                    Ok(Ok(Some(v))) => json_reply(201, v),
                    Ok(Ok(None)) => problem(404, "no such transport"),
                    Ok(Err(e)) => error_reply(e),
                    Err(_) => problem(503, "key store unavailable"),
                }
            }
            ("POST", n, "test") if !n.is_empty() => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: TestTransport = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let n = n.to_string();
                let tested =
                    self.control
                        .run(async move {
                            let Some(t) = store.get_transport(&n).await? else {
                                return Ok(None);
                            };
                            let to = transports::normalize_address(&t.kind, &req.to).map_err(
                                |reason| TransportError::Recipient {
                                    to: req.to.clone(),
                                    reason,
                                },
                            )?;
                            let text = format!(
                            "This is a test message from mft-gateway ({}) through transport {n}.\n",
                            cfg.organization.name
                        );
                            let message = OutboundMessage {
                                to: std::slice::from_ref(&to),
                                subject: "mft-gateway transport test",
                                text: &text,
                                html: None,
                                progress: None,
                            };
                            let sent = tokio::time::timeout(
                                TEST_DEADLINE,
                                transports::send(&store, &cfg, &t, &message),
                            )
                            .await
                            .unwrap_or_else(|_| {
                                Err(TransportError::Send(format!(
                                    "no answer from the provider within {} s",
                                    TEST_DEADLINE.as_secs()
                                )))
                            });
                            Ok::<_, TransportError>(Some(sent))
                        })
                        .await;
                match tested {
                    Ok(Ok(Some(Ok(answer)))) => {
                        json_reply(200, json!({"name": name, "sent": true, "answer": answer}))
                    }
                    Ok(Ok(Some(Err(e)))) => json_reply(
                        200,
                        json!({"name": name, "sent": false, "reason": e.to_string()}),
                    ),
                    Ok(Ok(None)) => problem(404, "no such transport"),
                    Ok(Err(e)) => error_reply(e),
                    Err(_) => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        };
        self.audit_admin_event(session, "transport", &format!("{method} {rest}"), reply.0);
        reply
    }
}
