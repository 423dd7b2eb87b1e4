//! `[limits]`: request size limits, per-route body limits and the timeouts
//! that keep slow clients from holding connections.
//!
//! Kept apart from `convert.rs` because it owns its schema, model and the
//! byte-size syntax (`"10 MiB"`), which nothing else uses.

use crate::convert::Ctx;
use crate::defaults::limits as D;
use serde::Deserialize;
use std::time::Duration;

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Default body limit for every route without its own (`"10 GiB"`, or bytes).
    pub max_body_bytes: Option<Size>,
    /// Most request header fields accepted.
    pub max_header_count: Option<usize>,
    /// Most bytes of all request header names and values together.
    pub max_header_bytes: Option<Size>,
    /// Longest request target (path and query) in bytes.
    pub max_url_bytes: Option<Size>,
    /// Open connections per client IP; 0 disables the cap.
    pub max_connections_per_ip: Option<u32>,
    /// Open HTTPS connections in all; 0 disables the cap.
    pub max_connections: Option<u32>,
    /// Time a client has to send a complete request header.
    pub request_header_timeout: Option<String>,
    /// Longest pause while a client sends a request body.
    pub body_idle_timeout: Option<String>,
    /// Slowest body a client may send, bytes per second; `0` disables.
    pub min_body_rate: Option<Size>,
    /// Time spent waiting on the client over which `min_body_rate` is measured.
    pub min_body_rate_window: Option<String>,
    /// `[[limits.routes]]` body limits per path prefix.
    #[serde(default)]
    pub routes: Vec<RouteLimitFile>,
}

/// `[[limits.routes]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitFile {
    /// Path prefix, e.g. `"/api/v1/deliveries"`.
    pub path_prefix: Option<String>,
    /// Methods the rule applies to; absent for all.
    pub methods: Option<Vec<String>>,
    /// Body limit; `0` for none.
    pub max_body_bytes: Option<Size>,
}

/// A byte size: a TOML integer or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Plain bytes.
    Bytes(u64),
    /// `"512 KiB"`, `"10MB"`, `"1 GiB"`.
    Text(String),
}

/// Validated `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Body limit for routes without a rule; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
    /// Most header fields.
    pub max_header_count: usize,
    /// Most header bytes in total.
    pub max_header_bytes: usize,
    /// Longest request target.
    pub max_url_bytes: usize,
    /// Connection cap per client IP; `None` when disabled.
    pub max_connections_per_ip: Option<u32>,
    /// Cap on the HTTPS connections served at once; `None` when disabled.
    pub max_connections: Option<u32>,
    /// Deadline for a complete request header from its first byte.
    pub request_header_timeout: Duration,
    /// Longest pause between body reads.
    pub body_idle_timeout: Duration,
    /// Slowest accepted body, bytes per second over
    /// [`Limits::min_body_rate_window`]; `None` when disabled.
    pub min_body_rate: Option<u64>,
    /// Waiting time over which the body rate is measured.
    pub min_body_rate_window: Duration,
    /// Per-route body limits: the operator's first, then the built-in ones.
    pub routes: Vec<RouteLimit>,
}

/// One per-route body limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    /// Upper-case methods; `None` for any.
    pub methods: Option<Vec<String>>,
    /// Path prefix.
    pub path_prefix: String,
    /// Body limit; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
}

/// JSON endpoints never need more; a large body there is an attack or a bug.
const JSON_BODY_LIMIT: u64 = 1024 * 1024;

fn builtin_routes() -> Vec<RouteLimit> {
    ["/api/v1/deliveries", "/api/v1/transfers"]
        .into_iter()
        .map(|prefix| RouteLimit {
            methods: None,
            path_prefix: prefix.to_string(),
            max_body_bytes: Some(JSON_BODY_LIMIT),
        })
        .collect()
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: None,
            max_header_count: D::MAX_HEADER_COUNT,
            max_header_bytes: D::MAX_HEADER_BYTES,
            max_url_bytes: D::MAX_URL_BYTES,
            max_connections_per_ip: Some(D::MAX_CONNECTIONS_PER_IP),
            max_connections: Some(D::MAX_CONNECTIONS),
            request_header_timeout: D::REQUEST_HEADER_TIMEOUT,
            body_idle_timeout: D::BODY_IDLE_TIMEOUT,
            min_body_rate: Some(D::MIN_BODY_RATE),
            min_body_rate_window: D::MIN_BODY_RATE_WINDOW,
            routes: builtin_routes(),
        }
    }
}

/// Parses `"10 MiB"`-style sizes: B, K/KiB (1024), KB (1000), M/MiB, MB, G/GiB, GB, T/TiB, TB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("expected a size like \"10 MiB\" or \"512KiB\" or bytes, got {text:?}");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "kiB" => 1 << 10,
        "KB" | "kB" => 1000,
        "M" | "MiB" => 1 << 20,
        "MB" => 1000 * 1000,
        "G" | "GiB" => 1 << 30,
        "GB" => 1000 * 1000 * 1000,
        "T" | "TiB" => 1 << 40,
        "TB" => 1000 * 1000 * 1000 * 1000,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub(crate) fn size(ctx: &mut Ctx<'_>, key: &str, value: Option<Size>) -> Option<u64> {
    match value? {
        Size::Bytes(n) => Some(n),
        Size::Text(text) => match parse_size(&text) {
            Ok(n) => Some(n),
            Err(m) => {
                ctx.error(key, m);
                None
            }
        },
    }
}

/// A positive size that fits in memory-sized fields.
fn bounded(ctx: &mut Ctx<'_>, key: &str, value: Option<Size>, default: usize) -> usize {
    match size(ctx, key, value) {
        None => default,
        Some(0) => {
            ctx.error(key, "must be greater than zero");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

pub(crate) fn convert(file: LimitsFile, ctx: &mut Ctx<'_>) -> Limits {
    let d = Limits::default();
    let max_body_bytes = match size(ctx, "limits.max_body_bytes", file.max_body_bytes) {
        Some(0) => None,
        Some(n) => Some(n),
        None => d.max_body_bytes,
    };
    let max_header_count = match file.max_header_count {
        Some(0) => {
            ctx.error("limits.max_header_count", "must be at least 1");
            d.max_header_count
        }
        Some(n) => n,
        None => d.max_header_count,
    };
    let mut routes = Vec::new();
    for (i, r) in file.routes.into_iter().enumerate() {
        let key = format!("limits.routes[{i}]");
        let Some(prefix) = r.path_prefix else {
            ctx.error(&format!("{key}.path_prefix"), "missing path_prefix");
            continue;
        };
        if !prefix.starts_with('/') {
            ctx.error(
                &format!("{key}.path_prefix"),
                format!("must start with '/', got {prefix:?}"),
            );
            continue;
        }
        let Some(limit) = size(ctx, &format!("{key}.max_body_bytes"), r.max_body_bytes) else {
            ctx.error(&format!("{key}.max_body_bytes"), "missing max_body_bytes");
            continue;
        };
        routes.push(RouteLimit {
            methods: r
                .methods
                .map(|m| m.into_iter().map(|s| s.to_ascii_uppercase()).collect()),
            path_prefix: prefix,
            max_body_bytes: (limit > 0).then_some(limit),
        });
    }
    // Built-in rules come last so an operator's rule for the same prefix wins.
    routes.extend(builtin_routes());
    Limits {
        max_body_bytes,
        max_header_count,
        max_header_bytes: bounded(
            ctx,
            "limits.max_header_bytes",
            file.max_header_bytes,
            d.max_header_bytes,
        ),
        max_url_bytes: bounded(
            ctx,
            "limits.max_url_bytes",
            file.max_url_bytes,
            d.max_url_bytes,
        ),
        max_connections_per_ip: match file.max_connections_per_ip {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_connections_per_ip,
        },
        max_connections: match file.max_connections {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_connections,
        },
        request_header_timeout: ctx.duration(
            "limits.request_header_timeout",
            file.request_header_timeout,
            d.request_header_timeout,
        ),
        body_idle_timeout: ctx.duration(
            "limits.body_idle_timeout",
            file.body_idle_timeout,
            d.body_idle_timeout,
        ),
        min_body_rate: match size(ctx, "limits.min_body_rate", file.min_body_rate) {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.min_body_rate,
        },
        min_body_rate_window: ctx.duration(
            "limits.min_body_rate_window",
            file.min_body_rate_window,
            d.min_body_rate_window,
        ),
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("ten MiB").is_err());
        assert!(parse_size("10 XB").is_err());
        assert!(parse_size("99999999999 TiB").is_err());
    }
}
