//! The trust network's moving parts in one bundle, started once per
//! gateway process on their own runtime: the relay worker, the receipt
//! sender and the locally answered federation endpoints.

use super::federation_api::FederationApi;
use super::federation_api::Reply;
use super::inbound::Authenticated;
use super::partner_client::PartnerClient;
use super::receipts::Receipts;
use super::relay::Relay;
use crate::audit::AuditLog;
use crate::backend_client::BackendClient;
use crate::proxy::sign::RequestSigner;
use crate::runtime::ServiceRuntime;
use crate::webhooks::Webhooks;
use anyhow::Context;
use mft_config::Config;
use mft_filters::decision::Rejection;
use mft_filters::problem::Problem;
use mft_filters::ratelimit::Limit;
use std::net::IpAddr;
use std::sync::Arc;

/// The answer to a local federation call, or why there is none.
pub enum LocalAnswer {
    /// Status, JSON body and the answer's signature headers.
    Signed(u16, Vec<u8>, super::inbound::AnswerFields),
    /// A filter decision (the body does not match its digest).
    Refused(Rejection),
    /// A problem of ours or the handler's.
    Problem(Problem),
}

/// A checked partner's `POST /federation/v1/deliveries` or `/receipts`.
pub struct LocalCall<'a> {
    /// Who, as the gate authenticated them.
    pub ok: &'a Authenticated,
    /// `:authority` and path the signature covered (the answer covers them too).
    pub authority: &'a str,
    /// Path.
    pub path: &'a str,
    /// Our request id.
    pub request_id: &'a str,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// The whole (bounded) body.
    pub body: Vec<u8>,
    /// SHA-256 the signed `Content-Digest` claims.
    pub expected: [u8; 32],
}

/// Federation services shared by the proxy and the workers.
pub struct Federation {
    /// The connections, cached: with none, the hooks below cost one atomic load.
    pub partners: Arc<super::directory::PartnerDirectory>,
    /// `/federation/v1/deliveries` and `/receipts`.
    pub api: Arc<FederationApi>,
    /// Outbound relays.
    pub relay: Arc<Relay>,
    /// Outbound receipts.
    pub receipts: Arc<Receipts>,
    /// Where their I/O runs.
    pub runtime: ServiceRuntime,
    /// Requests per partner connection.
    pub rate_limit: Option<Limit>,
    /// Webhook intake and worker (runs on the same runtime).
    pub webhooks: Arc<Webhooks>,
    /// `[[notify]]` rules' sender, shared with the watcher of server.rs.
    pub notifier: Arc<crate::transports::notify::Notifier>,
}

impl Federation {
    /// Checks the body against its digest, handles it on the federation
    /// runtime and signs the answer: the same for either HTTP engine.
    pub async fn answer_local(&self, call: LocalCall<'_>) -> LocalAnswer {
        let actual: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&call.body).into();
        if actual != call.expected {
            return LocalAnswer::Refused(mft_filters::validation::content_digest::mismatch());
        }
        let api = self.api.clone();
        let partner = call.ok.partner.clone();
        let request_id = call.request_id.to_string();
        let client_ip = call.client_ip;
        let is_delivery = call.path == super::wire::DELIVERIES_PATH;
        let body = call.body;
        let handled = self
            .runtime
            .handle()
            .spawn(async move {
                let inbound = super::federation_api::InboundCall {
                    partner: &partner,
                    request_id: &request_id,
                    client_ip,
                };
                if is_delivery {
                    api.delivery(&inbound, &body).await
                } else {
                    api.receipt(&inbound, &body).await
                }
            })
            .await;
        match handled {
            Ok(Reply::Json(status, body)) => match super::inbound::sign_answer_body(
                "POST",
                call.authority,
                call.path,
                call.request_id,
                call.ok,
                &body,
            ) {
                Ok(headers) => LocalAnswer::Signed(status, body, headers),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a federation answer");
                    LocalAnswer::Problem(Problem::new(500, None))
                }
            },
            Ok(Reply::Problem(problem)) => LocalAnswer::Problem(problem),
            Err(e) => {
                tracing::error!(error = %e, "federation handler failed");
                LocalAnswer::Problem(Problem::new(500, None))
            }
        }
    }

    /// Builds the services (over the directory's store) and starts the
    /// relay and receipt workers.
    pub fn start(
        config: Arc<Config>,
        partners: Arc<super::directory::PartnerDirectory>,
        signer: Option<Arc<RequestSigner>>,
        audit: AuditLog,
        registry: &prometheus::Registry,
        connectors: Option<Arc<crate::connector::ConnectorPool>>,
        drain: crate::drain::Drain,
    ) -> anyhow::Result<Federation> {
        let store = partners.store().clone();
        let metrics = super::metrics::FederationMetrics::new(registry)
            .context("cannot register federation metrics")?;
        let runtime = ServiceRuntime::start("federation", 2)
            .context("cannot start the federation runtime")?;
        let backend = BackendClient::new_via(&config.backend, signer, connectors)?;
        let client = PartnerClient::new(&config)?;
        let store_for_outbox = store.clone();
        let notifier = Arc::new(crate::transports::notify::Notifier::new(
            store.clone(),
            config.clone(),
            audit.clone(),
        ));
        let credit_check = Arc::new(
            crate::transports::credits::CreditCheck::new(
                store.clone(),
                config.clone(),
                audit.clone(),
                registry,
            )
            .context("cannot register transport credit metrics")?
            .with_notifier(notifier.clone()),
        );
        let webhooks = Arc::new(
            Webhooks::new(store.clone(), backend.clone(), &config, audit.clone())
                .context("cannot start webhooks")?,
        );
        let api = Arc::new(
            FederationApi::new(
                store.clone(),
                backend.clone(),
                config.clone(),
                audit.clone(),
                metrics.clone(),
            )
            .with_webhooks(webhooks.clone()),
        );
        let relay = Arc::new(
            Relay::new(
                store.clone(),
                partners.clone(),
                backend,
                client.clone(),
                config.clone(),
                audit.clone(),
                metrics.clone(),
            )
            .with_webhooks(webhooks.clone())
            .with_notifier(notifier.clone()),
        );
        let receipts = Arc::new(Receipts::new(
            store,
            partners.clone(),
            client,
            config.clone(),
            audit,
            metrics,
        ));
        runtime.spawn(relay.clone().run(drain.clone()));
        runtime.spawn(receipts.clone().run(drain.clone()));
        runtime.spawn(webhooks.clone().run(drain.clone()));
        runtime.spawn(
            Arc::new(crate::transports::outbox::Outbox::new(
                store_for_outbox,
                config.clone(),
            ))
            .run(drain.clone()),
        );
        runtime.spawn(credit_check.run(drain));
        let rate_limit = config
            .trust
            .rate_limit
            .as_ref()
            .and_then(crate::ratelimit::limit_of);
        Ok(Federation {
            partners,
            api,
            relay,
            receipts,
            runtime,
            rate_limit,
            webhooks,
            notifier,
        })
    }

    /// A local delivery was just created: read the feed now (the relay
    /// only when a connection exists).
    pub fn delivery_created(&self) {
        if !self.partners.is_empty() {
            self.relay.nudge();
        }
        self.webhooks.nudge();
    }

    /// A local user (`principal`) downloaded `file_id` in full. Only a
    /// gateway with a connection (a partner's file owes a receipt) or a
    /// webhook wanting `file.downloaded` spawns work and asks the store;
    /// the others stop here, without a query.
    pub fn file_downloaded(&self, file_id: &str, principal: Option<&str>) {
        let receipts = (!self.partners.is_empty()).then(|| self.receipts.clone());
        let webhooks = self
            .webhooks
            .wants_downloads()
            .then(|| self.webhooks.clone());
        if receipts.is_none() && webhooks.is_none() {
            return;
        }
        let (file_id, principal) = (file_id.to_string(), principal.map(str::to_string));
        self.runtime.spawn(async move {
            if let Some(receipts) = receipts {
                receipts.downloaded(&file_id).await;
            }
            if let Some(webhooks) = webhooks {
                webhooks
                    .file_downloaded(&file_id, principal.as_deref())
                    .await;
            }
        });
    }
}
