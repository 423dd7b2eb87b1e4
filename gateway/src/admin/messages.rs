//! `/admin/v1/messages`: the internal API to send a message through a
//! transport provider (docs/transports.md). `POST` queues it durably and
//! answers 202 with its id; `GET /admin/v1/messages/{id}` tells where it is.

use crate::admin::{json_reply, problem, read_body, rejected, AdminApp, Reply};
use crate::transports::outbox::{self, Content};
use crate::transports::TransportError;
use mft_filters::decision::Rejection;
use mft_filters::problem_types;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

/// `to` as one address or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum To {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    provider: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    to: To,
    subject: String,
    text: String,
    html: Option<String>,
}

pub(crate) const USAGE: &str = "use POST /admin/v1/messages or GET /admin/v1/messages/{id}";

impl AdminApp {
    /// Serves `/admin/v1/messages[/id]` for an authorized caller.
    pub(crate) async fn messages_api(&self, session: &mut ServerSession, id: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let store = self.store.clone();
        let reply = match (method.as_str(), id) {
            ("POST", "") => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let req: SendMessage = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return problem(400, &format!("invalid JSON: {e}")),
                };
                let content = Content {
                    to: match req.to {
                        To::One(a) => vec![a],
                        To::Many(list) => list,
                    },
                    subject: req.subject,
                    text: req.text,
                    html: req.html,
                };
                let accepted = self
                    .control
                    .run(async move {
                        outbox::accept(
                            &store,
                            req.provider.as_deref(),
                            req.kind.as_deref(),
                            content,
                        )
                        .await
                    })
                    .await;
                match accepted {
                    Ok(Ok(id)) => json_reply(202, json!({"id": id, "state": "queued"})),
                    Ok(Err(TransportError::Invalid(reason))) => problem(400, &reason),
                    Ok(Err(e @ TransportError::Recipient { .. })) => rejected(&Rejection::new(
                        400,
                        problem_types::INVALID_RECIPIENT,
                        e.to_string(),
                        "admin",
                    )),
                    _ => problem(503, "key store unavailable"),
                }
            }
            ("GET", i) if !i.is_empty() && !i.contains('/') => {
                let i = i.to_string();
                match self
                    .control
                    .run(async move { store.get_message(&i).await })
                    .await
                {
                    Ok(Ok(Some(m))) => json_reply(200, m.to_json()),
                    Ok(Ok(None)) => problem(404, "no such message"),
                    _ => problem(503, "key store unavailable"),
                }
            }
            _ => problem(405, USAGE),
        };
        self.audit_admin_event(session, "message", &format!("{method} {id}"), reply.0);
        reply
    }
}
