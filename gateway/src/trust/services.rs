//! The trust network's moving parts in one bundle, started once per
//! gateway process on their own runtime: the relay worker, the receipt
//! sender and the locally answered federation endpoints.

use super::federation_api::FederationApi;
use super::partner_client::PartnerClient;
use super::receipts::Receipts;
use super::relay::Relay;
use crate::audit::AuditLog;
use crate::backend_client::BackendClient;
use crate::bridge::runtime::BridgeRuntime;
use crate::proxy::sign::RequestSigner;
use crate::store::KeyStore;
use anyhow::Context;
use mft_config::Config;
use mft_filters::ratelimit::Limit;
use std::sync::Arc;

/// Federation services shared by the proxy and the workers.
pub struct Federation {
    /// `/federation/v1/deliveries` and `/receipts`.
    pub api: Arc<FederationApi>,
    /// Outbound relays.
    pub relay: Arc<Relay>,
    /// Outbound receipts.
    pub receipts: Arc<Receipts>,
    /// Where their I/O runs.
    pub runtime: BridgeRuntime,
    /// Requests per partner connection.
    pub rate_limit: Option<Limit>,
}

impl Federation {
    /// Builds the services and starts the relay and receipt workers.
    pub fn start(
        config: Arc<Config>,
        store: KeyStore,
        signer: Option<Arc<RequestSigner>>,
        audit: AuditLog,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Federation> {
        let metrics = super::metrics::FederationMetrics::new(registry)
            .context("cannot register federation metrics")?;
        let runtime = BridgeRuntime::start_named(2, "federation")
            .context("cannot start the federation runtime")?;
        let backend = BackendClient::new(&config.backend, signer)?;
        let client = PartnerClient::new(&config)?;
        let api = Arc::new(FederationApi::new(
            store.clone(),
            backend.clone(),
            config.clone(),
            audit.clone(),
            metrics.clone(),
        ));
        let relay = Arc::new(Relay::new(
            store.clone(),
            backend,
            client.clone(),
            config.clone(),
            audit.clone(),
            metrics.clone(),
        ));
        let receipts = Arc::new(Receipts::new(store, client, config.clone(), audit, metrics));
        runtime.spawn(relay.clone().run());
        runtime.spawn(receipts.clone().run());
        let rate_limit = config
            .trust
            .rate_limit
            .as_ref()
            .and_then(crate::ratelimit::limit_of);
        Ok(Federation {
            api,
            relay,
            receipts,
            runtime,
            rate_limit,
        })
    }

    /// A local delivery was just created: read the feed now.
    pub fn delivery_created(&self) {
        self.relay.nudge();
    }

    /// A local user downloaded `file_id` in full.
    pub fn file_downloaded(&self, file_id: String) {
        let receipts = self.receipts.clone();
        self.runtime
            .spawn(async move { receipts.downloaded(&file_id).await });
    }
}
