//! Prometheus metrics, served as text on the admin listener at `GET /metrics`.
//!
//! Every labelled series is resolved to its handle once at startup, so a
//! request pays one relaxed atomic add per counter and never a label lookup
//! or an allocation. The `prometheus` crate (text format only, no protobuf)
//! is used rather than `metrics` + `metrics-exporter-prometheus`: we serve
//! the page from our own admin listener, so the exporter's HTTP server and
//! global recorder would be dead weight.

use mft_filters::ratelimit::Scope;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The description of a series read at scrape time by a collector of its
/// own (`(name, help)`, label names).
pub(crate) fn scrape_desc(
    (name, help): (&str, &str),
    labels: &[&str],
) -> prometheus::Result<prometheus::core::Desc> {
    prometheus::core::Desc::new(
        name.to_string(),
        help.to_string(),
        labels.iter().map(|l| l.to_string()).collect(),
        Default::default(),
    )
}

/// Upper bounds of the request-duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The gateway's metrics; share it behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Responses by status class: 1xx..5xx, then "other" (no status: client gone).
    status_class: [IntCounter; 6],
    limited_ip: IntCounter,
    limited_key: IntCounter,
    /// Errors talking to Redis (timeouts included).
    pub redis_errors: IntCounter,
    /// 1 while the last Redis call succeeded.
    pub redis_up: IntGauge,
    /// Requests decided by this instance's memory while Redis was down.
    pub redis_fallbacks: IntCounter,
    /// Requests answered from "denied until" memory without a Redis call.
    pub redis_skipped: IntCounter,
    auth_allow: IntCounter,
    auth_deny: IntCounter,
    /// Request body bytes read from clients.
    bytes_in: IntCounter,
    /// Response body bytes sent to clients.
    bytes_out: IntCounter,
    /// From the request's head to its response's last byte.
    duration: Histogram,
}

impl Metrics {
    /// Registers every series; the Redis ones only `with_redis`, so an
    /// instance without Redis shows no `redis_up 0` that would page someone.
    /// Fails only on a programming error (a duplicate or malformed name),
    /// which the unit test below would catch.
    pub fn new(with_redis: bool) -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mft_http_requests_total",
                "Public HTTPS responses by status class.",
            ),
            &["class"],
        )?;
        let limited = IntCounterVec::new(
            Opts::new(
                "mft_ratelimit_limited_total",
                "Requests refused with 429 by a rate limit.",
            ),
            &["limit"],
        )?;
        let auth = IntCounterVec::new(
            Opts::new(
                "mft_auth_decisions_total",
                "Authentication and authorization decisions on the public API.",
            ),
            &["decision"],
        )?;
        let redis_errors = IntCounter::new(
            "mft_ratelimit_redis_errors_total",
            "Failed or timed-out Redis calls of the cluster-wide rate limiter.",
        )?;
        let redis_up = IntGauge::new(
            "mft_ratelimit_redis_up",
            "1 if the last Redis call of the rate limiter succeeded, else 0.",
        )?;
        let redis_fallbacks = IntCounter::new(
            "mft_ratelimit_redis_fallback_total",
            "Rate-limit decisions taken without Redis because it failed (on_redis_error applied).",
        )?;
        let redis_skipped = IntCounter::new(
            "mft_ratelimit_redis_skipped_total",
            "Refusals answered locally (local limit or remembered Redis refusal) without a Redis call.",
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "mft_http_body_bytes_total",
                "Public HTTPS body bytes: in (request bodies read), out (response bodies sent).",
            ),
            &["direction"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "mft_http_request_duration_seconds",
                "Public HTTPS exchanges from the request head to the response's last byte.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(limited.clone()))?;
        registry.register(Box::new(auth.clone()))?;
        if with_redis {
            registry.register(Box::new(redis_errors.clone()))?;
            registry.register(Box::new(redis_up.clone()))?;
            registry.register(Box::new(redis_fallbacks.clone()))?;
            registry.register(Box::new(redis_skipped.clone()))?;
        }
        let class = |c: &str| requests.with_label_values(&[c]);
        Ok(Metrics {
            status_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
                class("other"),
            ],
            limited_ip: limited.with_label_values(&["ip"]),
            limited_key: limited.with_label_values(&["key"]),
            auth_allow: auth.with_label_values(&["allow"]),
            auth_deny: auth.with_label_values(&["deny"]),
            bytes_in: bytes.with_label_values(&["in"]),
            bytes_out: bytes.with_label_values(&["out"]),
            duration,
            redis_errors,
            redis_up,
            redis_fallbacks,
            redis_skipped,
            registry,
        })
    }

    /// Counts one response with `status` (0: none was sent).
    pub fn response(&self, status: u16) {
        let i = match status {
            100..=599 => usize::from(status / 100) - 1,
            _ => 5,
        };
        self.status_class[i].inc();
    }

    /// Counts one finished exchange's body bytes and duration (the
    /// console's overview charts sample these).
    pub fn finished(&self, bytes_in: u64, bytes_out: u64, duration: std::time::Duration) {
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
        self.duration.observe(duration.as_secs_f64());
    }

    /// Counts one 429 from the `scope` limit.
    pub fn limited(&self, scope: Scope) {
        match scope {
            Scope::Ip => self.limited_ip.inc(),
            Scope::Key => self.limited_key.inc(),
        }
    }

    /// Counts one authentication/authorization decision.
    pub fn auth(&self, allowed: bool) {
        if allowed {
            self.auth_allow.inc()
        } else {
            self.auth_deny.inc()
        }
    }

    /// The registry, for subsystems (the bridges) that register their own series.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_its_labels() {
        let m = Metrics::new(true).unwrap();
        m.response(200);
        m.response(429);
        m.response(0);
        m.limited(Scope::Key);
        m.auth(true);
        m.redis_errors.inc();
        m.finished(10, 2000, std::time::Duration::from_millis(3));
        let text = m.render();
        for line in [
            "mft_http_requests_total{class=\"2xx\"} 1",
            "mft_http_requests_total{class=\"4xx\"} 1",
            "mft_http_requests_total{class=\"other\"} 1",
            "mft_ratelimit_limited_total{limit=\"key\"} 1",
            "mft_ratelimit_limited_total{limit=\"ip\"} 0",
            "mft_auth_decisions_total{decision=\"allow\"} 1",
            "mft_ratelimit_redis_errors_total 1",
            "mft_ratelimit_redis_up 0",
            "mft_http_body_bytes_total{direction=\"in\"} 10",
            "mft_http_body_bytes_total{direction=\"out\"} 2000",
            "mft_http_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "mft_http_request_duration_seconds_bucket{le=\"0.0025\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let plain = Metrics::new(false).unwrap().render();
        assert!(!plain.contains("redis"), "{plain}");
        assert!(plain.contains("mft_http_requests_total"), "{plain}");
    }
}
