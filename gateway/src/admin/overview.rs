//! `GET /admin/v1/overview`: the console's overview screen. A task on the
//! control plane samples the gateway's own Prometheus registry every
//! [`INTERVAL`] (in process: no scrape, nothing on the data path) into a
//! ring of [`SAMPLES`] points, an hour of request rate, error rate, body
//! bytes per second and p99 duration. The answer adds the health of the
//! backend (`GET /healthz`, probed only while someone looks at the overview,
//! at most once per [`INTERVAL`]), bridges, partners, connectors and the
//! served certificates, read when asked.

use crate::admin::{json_reply, problem, AdminApp, Reply};
use crate::backend_client::BackendClient;
use prometheus::proto::{MetricFamily, MetricType};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the registry is sampled.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Points kept: one hour at [`INTERVAL`].
pub const SAMPLES: usize = 360;
/// A certificate expiring within this many days is a warning.
const CERT_WARN_DAYS: f64 = 14.0;
/// The backend probe's time limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Running totals read from the registry at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Totals {
    requests: f64,
    errors: f64,
    bytes_in: f64,
    bytes_out: f64,
    /// Duration histogram: (upper bound in seconds, cumulative count).
    buckets: Vec<(f64, f64)>,
}

/// One chart point: rates over the interval that ended at `at`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Point {
    at: u64,
    requests_per_s: f64,
    errors_per_s: f64,
    bytes_in_per_s: f64,
    bytes_out_per_s: f64,
    /// None: no request finished in the interval.
    p99_ms: Option<f64>,
}

/// What the backend probe found.
#[derive(Clone, Debug)]
struct Probe {
    at: u64,
    up: bool,
    detail: String,
}

#[derive(Default)]
struct Ring {
    last: Option<(Instant, Totals)>,
    points: VecDeque<Point>,
    backend: Option<Probe>,
    probe_started: Option<Instant>,
}

/// The sampled history; shared by the sampler task and the admin app.
#[derive(Default)]
pub struct Overview {
    ring: Mutex<Ring>,
    backend: std::sync::OnceLock<BackendClient>,
}

fn counter_sum(families: &[MetricFamily], name: &str, label: Option<(&str, &str)>) -> f64 {
    families
        .iter()
        .filter(|f| f.name() == name && f.get_field_type() == MetricType::COUNTER)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// The totals the charts need, from a `gather()`.
pub(crate) fn totals(families: &[MetricFamily]) -> Totals {
    let requests = "mft_http_requests_total";
    let bytes = "mft_http_body_bytes_total";
    let buckets = families
        .iter()
        .find(|f| f.name() == "mft_http_request_duration_seconds")
        .and_then(|f| f.get_metric().first())
        .map(|m| {
            let h = m.get_histogram();
            let mut b: Vec<(f64, f64)> = h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                .collect();
            b.push((f64::INFINITY, h.get_sample_count() as f64));
            b
        })
        .unwrap_or_default();
    Totals {
        requests: counter_sum(families, requests, None),
        errors: counter_sum(families, requests, Some(("class", "5xx"))),
        bytes_in: counter_sum(families, bytes, Some(("direction", "in"))),
        bytes_out: counter_sum(families, bytes, Some(("direction", "out"))),
        buckets,
    }
}

/// The 0.99 quantile of the histogram increase between two readings, as
/// Prometheus' `histogram_quantile` computes it (linear within a bucket;
/// the highest finite bound when it falls in the +Inf bucket).
fn p99(prev: &[(f64, f64)], cur: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> = cur
        .iter()
        .enumerate()
        .map(|(i, (le, c))| (*le, c - prev.get(i).map_or(0.0, |p| p.1)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = 0.99 * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let inside = count - lower.1;
            let frac = if inside > 0.0 {
                (rank - lower.1) / inside
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * frac);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// The chart point for the `secs` between two readings. Counters that went
/// down (a restarted registry) count from zero.
pub(crate) fn point(prev: &Totals, cur: &Totals, secs: f64, at: u64) -> Point {
    let secs = secs.max(0.001);
    let rate = |a: f64, b: f64| {
        let d = if b >= a { b - a } else { b };
        d / secs
    };
    let prev_buckets = if cur.requests >= prev.requests {
        prev.buckets.as_slice()
    } else {
        &[]
    };
    Point {
        at,
        requests_per_s: rate(prev.requests, cur.requests),
        errors_per_s: rate(prev.errors, cur.errors),
        bytes_in_per_s: rate(prev.bytes_in, cur.bytes_in),
        bytes_out_per_s: rate(prev.bytes_out, cur.bytes_out),
        p99_ms: p99(prev_buckets, &cur.buckets).map(|s| s * 1000.0),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Overview {
    /// Records a reading taken at `now` (`wall` for the chart's time axis).
    pub(crate) fn record(&self, reading: Totals, now: Instant, wall: SystemTime) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        if let Some((then, prev)) = &ring.last {
            let p = point(
                prev,
                &reading,
                now.duration_since(*then).as_secs_f64(),
                unix(wall),
            );
            if ring.points.len() == SAMPLES {
                ring.points.pop_front();
            }
            ring.points.push_back(p);
        }
        ring.last = Some((now, reading));
    }

    fn record_probe(&self, up: bool, detail: String, wall: SystemTime) {
        if let Ok(mut ring) = self.ring.lock() {
            ring.backend = Some(Probe {
                at: unix(wall),
                up,
                detail,
            });
        }
    }

    fn series(&self) -> (Value, Value) {
        let Ok(ring) = self.ring.lock() else {
            return (json!([]), Value::Null);
        };
        let points: Vec<Value> = ring
            .points
            .iter()
            .map(|p| {
                json!({
                    "at": p.at,
                    "requests_per_s": p.requests_per_s,
                    "errors_per_s": p.errors_per_s,
                    "bytes_in_per_s": p.bytes_in_per_s,
                    "bytes_out_per_s": p.bytes_out_per_s,
                    "p99_ms": p.p99_ms,
                })
            })
            .collect();
        let backend = match &ring.backend {
            Some(p) => json!({
                "name": "backend",
                "state": if p.up { "up" } else { "down" },
                "detail": p.detail,
                "checked_at": p.at,
            }),
            None => {
                json!({"name": "backend", "state": "unknown", "detail": "not probed yet", "checked_at": null})
            }
        };
        (Value::Array(points), backend)
    }

    /// Samples `registry` every [`INTERVAL`] on the control plane, for the
    /// life of the process; `backend` is the client of [`Self::probe`].
    pub fn start(
        self: &Arc<Self>,
        control: &crate::runtime::ServiceRuntime,
        registry: prometheus::Registry,
        backend: Option<BackendClient>,
    ) {
        if let Some(client) = backend {
            let _ = self.backend.set(client);
        }
        let this = self.clone();
        control.spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.record(
                    totals(&registry.gather()),
                    Instant::now(),
                    SystemTime::now(),
                );
            }
        });
    }

    /// Probes the backend's `/healthz` if the last probe started more than
    /// [`INTERVAL`] ago: in the background, or (the first time, when
    /// nothing is known yet) waiting for its answer.
    async fn probe(self: &Arc<Self>, control: &crate::runtime::ServiceRuntime) {
        let Some(client) = self.backend.get().cloned() else {
            return;
        };
        let first = {
            let Ok(mut ring) = self.ring.lock() else {
                return;
            };
            if ring.probe_started.is_some_and(|t| t.elapsed() < INTERVAL) {
                return;
            }
            ring.probe_started = Some(Instant::now());
            ring.backend.is_none()
        };
        let this = self.clone();
        let probe = async move {
            let (up, detail) = match tokio::time::timeout(PROBE_TIMEOUT, client.health()).await {
                Ok(Ok(())) => (true, "GET /healthz answered".to_string()),
                Ok(Err(e)) => (false, e.to_string()),
                Err(_) => (false, "GET /healthz timed out".to_string()),
            };
            this.record_probe(up, detail, SystemTime::now());
        };
        if first {
            let _ = control.run(probe).await;
        } else {
            control.spawn(probe);
        }
    }
}

/// Gauges and counters by name and labels, from a `gather()`.
pub(crate) fn series_values(
    families: &[MetricFamily],
    name: &str,
) -> Vec<(Vec<(String, String)>, f64)> {
    families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| {
            let kind = f.get_field_type();
            f.get_metric().iter().map(move |m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                let v = match kind {
                    MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                };
                (labels, v)
            })
        })
        .collect()
}

pub(crate) fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Bridges' and certificates' health from the registry.
fn gauges_health(families: &[MetricFamily], now: u64) -> (Vec<Value>, Vec<Value>) {
    let mut bridges = Vec::new();
    if let Some((_, depth)) = series_values(families, "mft_smtp_spool_depth").first() {
        bridges.push(json!({
            "name": "smtp",
            "state": "up",
            "detail": format!("spool depth {depth}"),
        }));
    }
    let last_success = series_values(families, "mft_mailbox_last_success_timestamp_seconds");
    for (labels, connected) in series_values(families, "mft_mailbox_connected") {
        let mailbox = label(&labels, "mailbox").to_string();
        let last = last_success
            .iter()
            .find(|(l, _)| label(l, "mailbox") == mailbox)
            .map(|(_, v)| *v)
            .unwrap_or(0.0);
        let detail = if last > 0.0 {
            format!("last success {} s ago", now.saturating_sub(last as u64))
        } else {
            "no successful poll yet".to_string()
        };
        bridges.push(json!({
            "name": format!("mailbox {mailbox}"),
            "state": if connected >= 1.0 { "up" } else { "down" },
            "detail": detail,
        }));
    }
    if let Some((_, active)) = series_values(families, "mft_sftp_sessions_active").first() {
        bridges.push(json!({
            "name": "sftp",
            "state": "up",
            "detail": format!("{active} sessions open"),
        }));
    }
    let certificates = series_values(families, "mft_tls_certificate_expiry_seconds")
        .into_iter()
        .map(|(labels, secs)| {
            let days = secs / 86_400.0;
            json!({
                "name": label(&labels, "name"),
                "expires_in_days": (days * 10.0).round() / 10.0,
                "state": if secs <= 0.0 { "expired" } else if days < CERT_WARN_DAYS { "warning" } else { "ok" },
            })
        })
        .collect();
    (bridges, certificates)
}

impl AdminApp {
    /// `GET /admin/v1/overview`.
    pub(crate) async fn overview_api(
        &self,
        session: &pingora_core::protocols::http::ServerSession,
        rest: &str,
    ) -> Reply {
        if !rest.is_empty() {
            return problem(404, "no such endpoint");
        }
        if session.req_header().method != http::Method::GET {
            return problem(405, USAGE);
        }
        self.overview.probe(&self.control).await;
        let (series, backend) = self.overview.series();
        let now = SystemTime::now();
        let (bridges, certificates) = gauges_health(&self.metrics.registry().gather(), unix(now));
        let store = self.store.clone();
        let lists = self
            .control
            .run(async move {
                let partners = store.list_partners().await?;
                let connectors = store.list_connectors().await?;
                let relays = store.list_relays().await?;
                Ok::<_, crate::store::StoreError>((partners, connectors, relays))
            })
            .await;
        let Ok(Ok((partners, connectors, relays))) = lists else {
            return problem(503, "key store unavailable");
        };
        let partners: Vec<Value> = partners
            .iter()
            .map(|p| {
                let failed = relays
                    .iter()
                    .filter(|r| r.partner == p.name && r.state == crate::store::relay::RelayState::Failed)
                    .count();
                json!({
                    "name": p.name,
                    "state": if failed > 0 { "failing".to_string() } else { p.status().to_string() },
                    "failed_relays": failed,
                })
            })
            .collect();
        let connectors: Vec<Value> = connectors
            .iter()
            .map(|c| json!({"name": c.name, "state": c.state(now)}))
            .collect();
        json_reply(
            200,
            json!({
                "interval_s": INTERVAL.as_secs(),
                "series": series,
                "health": {
                    "backend": backend,
                    "bridges": bridges,
                    "partners": partners,
                    "connectors": connectors,
                    "certificates": certificates,
                },
            }),
        )
    }
}

/// The route, for the 405 answer and the OpenAPI check.
pub(crate) const USAGE: &str = "use GET /admin/v1/overview";

#[cfg(test)]
mod tests {
    use super::*;

    fn totals_with(requests: f64, errors: f64, buckets: &[(f64, f64)]) -> Totals {
        Totals {
            requests,
            errors,
            bytes_in: requests * 10.0,
            bytes_out: requests * 100.0,
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn rates_and_p99_over_an_interval() {
        let prev = totals_with(
            100.0,
            1.0,
            &[(0.01, 50.0), (0.1, 100.0), (f64::INFINITY, 100.0)],
        );
        // 100 more requests: 90 under 10 ms, 10 between 10 and 100 ms.
        let cur = totals_with(
            200.0,
            3.0,
            &[(0.01, 140.0), (0.1, 200.0), (f64::INFINITY, 200.0)],
        );
        let p = point(&prev, &cur, 10.0, 7);
        assert_eq!(p.requests_per_s, 10.0);
        assert_eq!(p.errors_per_s, 0.2);
        assert_eq!(p.bytes_in_per_s, 100.0);
        assert_eq!(p.bytes_out_per_s, 1000.0);
        // rank 99 of 100: 9 of the 10 in (10 ms, 100 ms] → 10 + 90 * 0.9 ms.
        let p99 = p.p99_ms.unwrap();
        assert!((p99 - 91.0).abs() < 1e-9, "{p99}");
        // Nothing finished: no p99; a restarted registry counts from zero.
        assert_eq!(point(&cur, &cur, 10.0, 8).p99_ms, None);
        let restarted = totals_with(5.0, 0.0, &[(0.01, 5.0), (0.1, 5.0), (f64::INFINITY, 5.0)]);
        let p = point(&cur, &restarted, 10.0, 9);
        assert_eq!(p.requests_per_s, 0.5);
        assert_eq!(p.p99_ms, Some(9.9));
    }

    #[test]
    fn p99_in_the_overflow_bucket_is_the_highest_bound() {
        let cur = [(0.01, 0.0), (0.1, 0.0), (f64::INFINITY, 4.0)];
        assert_eq!(p99(&[], &cur), Some(0.1));
    }

    #[test]
    fn the_ring_keeps_an_hour_from_the_real_registry() {
        let metrics = crate::metrics::Metrics::new(false).unwrap();
        let overview = Overview::default();
        let start = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        overview.record(totals(&metrics.registry().gather()), start, wall);
        for i in 1..=(SAMPLES as u64 + 5) {
            metrics.response(200);
            metrics.response(503);
            metrics.finished(1, 2, Duration::from_millis(3));
            metrics.finished(1, 2, Duration::from_millis(3));
            overview.record(
                totals(&metrics.registry().gather()),
                start + INTERVAL * i as u32,
                wall + INTERVAL * i as u32,
            );
        }
        let (series, _) = overview.series();
        let points = series.as_array().unwrap();
        assert_eq!(points.len(), SAMPLES);
        let last = points.last().unwrap();
        assert_eq!(last["requests_per_s"], 0.2);
        assert_eq!(last["errors_per_s"], 0.1);
        assert_eq!(last["bytes_out_per_s"], 0.4);
        let p99 = last["p99_ms"].as_f64().unwrap();
        assert!(p99 > 2.5 && p99 <= 5.0, "{p99}");
        assert_eq!(
            last["at"].as_u64().unwrap() - points[0]["at"].as_u64().unwrap(),
            (SAMPLES as u64 - 1) * 10
        );
    }
}
