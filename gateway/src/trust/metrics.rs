//! Trust-network series for `/metrics`.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Counters of relays, inbound deliveries and receipts.
#[derive(Clone)]
pub struct FederationMetrics {
    relays: IntCounterVec,
    relayed_bytes: IntCounter,
    inbound: IntCounterVec,
    receipts: IntCounterVec,
}

impl FederationMetrics {
    /// Registers the series in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<FederationMetrics> {
        let relays = IntCounterVec::new(
            Opts::new(
                "mft_federation_relay_attempts_total",
                "Relay attempts to partners, by outcome (delivered, retry, failed).",
            ),
            &["partner", "outcome"],
        )?;
        let relayed_bytes = IntCounter::new(
            "mft_federation_relayed_bytes_total",
            "File bytes streamed to partners.",
        )?;
        let inbound = IntCounterVec::new(
            Opts::new(
                "mft_federation_inbound_deliveries_total",
                "Deliveries from partners, by outcome (accepted, refused).",
            ),
            &["partner", "outcome"],
        )?;
        let receipts = IntCounterVec::new(
            Opts::new(
                "mft_federation_receipts_total",
                "Download receipts, sent to or received from partners, by outcome.",
            ),
            &["direction", "outcome"],
        )?;
        registry.register(Box::new(relays.clone()))?;
        registry.register(Box::new(relayed_bytes.clone()))?;
        registry.register(Box::new(inbound.clone()))?;
        registry.register(Box::new(receipts.clone()))?;
        Ok(FederationMetrics {
            relays,
            relayed_bytes,
            inbound,
            receipts,
        })
    }

    /// One relay attempt ended with `outcome`.
    pub fn relay(&self, partner: &str, outcome: &str) {
        self.relays.with_label_values(&[partner, outcome]).inc();
    }

    /// A file of `bytes` reached a partner.
    pub fn relayed(&self, bytes: u64) {
        self.relayed_bytes.inc_by(bytes);
    }

    /// A partner's delivery was accepted or refused.
    pub fn inbound(&self, partner: &str, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "refused" };
        self.inbound.with_label_values(&[partner, outcome]).inc();
    }

    /// A receipt went out (`sent`) or came in (`received`).
    pub fn receipt(&self, direction: &str, outcome: &str) {
        self.receipts.with_label_values(&[direction, outcome]).inc();
    }
}
