//! `/admin/v1/relays`: the trust network's relay queue (deliveries to
//! partner organisations) and an operator's retry of a failed relay.

use crate::admin::{json_reply, problem, AdminApp, Reply};
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

pub(crate) const USAGE: &str =
    "use GET /admin/v1/relays, POST /admin/v1/relays/{delivery_id}/{partner}/retry";

impl AdminApp {
    pub(crate) async fn relays_api(&self, session: &mut ServerSession, rest: &str) -> Reply {
        let method = session.req_header().method.as_str().to_string();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let store = self.store.clone();
        match (method.as_str(), parts.as_slice()) {
            ("GET", []) => match self
                .control
                .run(async move {
                    let jobs = store.list_relays().await?;
                    let receipts = store.list_relay_receipts().await?;
                    Ok::<_, crate::store::StoreError>((jobs, receipts))
                })
                .await
            {
                Ok(Ok((jobs, receipts))) => json_reply(
                    200,
                    json!({"relays": jobs.iter().map(|j| {
                        // Which files the partner's signed receipts confirmed.
                        let got = receipts
                            .get(&(j.delivery_id.clone(), j.partner.clone()))
                            .map(Vec::as_slice)
                            .unwrap_or_default();
                        let mut v = j.to_json();
                        v["receipts"] = got.iter().map(|r| r.to_json()).collect();
                        v
                    }).collect::<Vec<_>>()}),
                ),
                _ => problem(503, "key store unavailable"),
            },
            ("POST", [delivery, partner, "retry"]) => {
                let (delivery, partner) = (delivery.to_string(), partner.to_string());
                if delivery.is_empty() || partner.is_empty() || delivery.len() > 128 {
                    return problem(400, "delivery id and partner name expected");
                }
                let (d, p) = (delivery.clone(), partner.clone());
                let reply = match self
                    .control
                    .run(async move { store.retry_failed_relay(&d, &p).await })
                    .await
                {
                    Ok(Ok(true)) => json_reply(
                        200,
                        json!({"delivery_id": delivery, "partner": partner, "state": "queued"}),
                    ),
                    Ok(Ok(false)) => {
                        problem(404, "no failed relay of that delivery to that partner")
                    }
                    _ => problem(503, "key store unavailable"),
                };
                self.audit_admin_event(
                    session,
                    "relay",
                    &format!("retry {delivery} to {partner}"),
                    reply.0,
                );
                reply
            }
            _ => problem(405, USAGE),
        }
    }
}
