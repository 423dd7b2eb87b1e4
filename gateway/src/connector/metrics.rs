//! Per-connector series for `/metrics`. Labelled by connector name; the
//! handful of connectors an operator enrols keeps the label set small.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Connections, requests, failures and refusals per connector.
#[derive(Clone)]
pub struct ConnectorMetrics {
    /// `mft_connector_connections{name}`: open connections.
    pub connections: IntGaugeVec,
    /// `mft_connector_requests_total{name,outcome}`: `ok`, `failed`, `retried`.
    pub requests: IntCounterVec,
    /// `mft_connector_bytes_total{name,direction}`: `out` (requests), `in` (responses).
    pub bytes: IntCounterVec,
    /// `mft_connector_refused_total{reason}`: attach attempts refused.
    pub refused: IntCounterVec,
    /// `mft_connector_unavailable_total`: requests answered 503, no connection.
    pub unavailable: prometheus::IntCounter,
}

/// One connector's `mft_connector_requests_total` series, looked up once
/// per connection rather than by label on every request.
#[derive(Clone)]
pub struct Outcomes {
    /// `outcome="ok"`.
    pub ok: prometheus::IntCounter,
    /// `outcome="failed"`.
    pub failed: prometheus::IntCounter,
    /// `outcome="retried"`.
    pub retried: prometheus::IntCounter,
}

impl ConnectorMetrics {
    /// The request counters of connector `name`.
    pub fn outcomes(&self, name: &str) -> Outcomes {
        Outcomes {
            ok: self.requests.with_label_values(&[name, "ok"]),
            failed: self.requests.with_label_values(&[name, "failed"]),
            retried: self.requests.with_label_values(&[name, "retried"]),
        }
    }

    /// Registers the series in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<ConnectorMetrics> {
        let connections = IntGaugeVec::new(
            Opts::new(
                "mft_connector_connections",
                "Open connections from each DMZ connector.",
            ),
            &["name"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "mft_connector_requests_total",
                "Requests sent over connector connections, by connector and outcome (ok, failed, retried).",
            ),
            &["name", "outcome"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "mft_connector_bytes_total",
                "Body bytes through each connector: out = requests, in = declared response lengths.",
            ),
            &["name", "direction"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "mft_connector_refused_total",
                "Connector attach attempts refused, by reason.",
            ),
            &["reason"],
        )?;
        let unavailable = prometheus::IntCounter::new(
            "mft_connector_unavailable_total",
            "Backend calls refused with 503 because no connector was connected.",
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(unavailable.clone()))?;
        Ok(ConnectorMetrics {
            connections,
            requests,
            bytes,
            refused,
            unavailable,
        })
    }
}
