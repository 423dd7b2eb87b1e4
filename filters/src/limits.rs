//! Size limits on the request head and body, decided before any byte of the
//! body is read (from `Content-Length`) and again while it streams.

use crate::decision::Rejection;
use crate::problem_types as pt;

/// Limits on the request line and header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most header fields.
    pub max_header_count: usize,
    /// Most bytes of names plus values over all fields.
    pub max_header_bytes: usize,
    /// Longest request target (path and query).
    pub max_url_bytes: usize,
}

impl HeadLimits {
    /// Checks the request target length and every header field.
    ///
    /// `headers` yields `(name length, value length)`; counting lengths rather
    /// than copying keeps this allocation-free on the hot path.
    pub fn check(
        &self,
        target_len: usize,
        headers: impl Iterator<Item = (usize, usize)>,
    ) -> Result<(), Rejection> {
        if target_len > self.max_url_bytes {
            return Err(Rejection::uri_too_long(self.max_url_bytes));
        }
        let (mut count, mut bytes) = (0usize, 0usize);
        for (name, value) in headers {
            count += 1;
            bytes = bytes.saturating_add(name).saturating_add(value);
        }
        if count > self.max_header_count {
            return Err(Rejection::head_too_large(format!(
                "more than {} header fields",
                self.max_header_count
            )));
        }
        if bytes > self.max_header_bytes {
            return Err(Rejection::head_too_large(format!(
                "header fields larger than {} bytes in total",
                self.max_header_bytes
            )));
        }
        Ok(())
    }
}

/// A body limit for requests whose path starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRule {
    /// Upper-case methods; `None` for any.
    pub methods: Option<Vec<String>>,
    /// Path prefix, matched on segment boundaries.
    pub prefix: String,
    /// Largest body; `None` for unlimited.
    pub limit: Option<u64>,
}

/// Per-route body limits: the longest matching prefix wins; among rules of
/// equal length the earlier one (the operator's before the built-in) wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimits {
    default: Option<u64>,
    rules: Vec<BodyRule>,
}

impl BodyLimits {
    /// Limits with `default` for routes no rule covers.
    pub fn new(default: Option<u64>, mut rules: Vec<BodyRule>) -> Self {
        // Stable sort keeps configuration order among equal lengths.
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        BodyLimits { default, rules }
    }

    /// The body limit for `method path`.
    pub fn limit_for(&self, method: &str, path: &str) -> Option<u64> {
        self.rules
            .iter()
            .find(|r| {
                prefix_matches(&r.prefix, path)
                    && r.methods
                        .as_ref()
                        .is_none_or(|m| m.iter().any(|x| x == method))
            })
            .map_or(self.default, |r| r.limit)
    }
}

/// `/a/b` matches `/a/b`, `/a/b/` and `/a/b/c`, not `/a/bc`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Counts body bytes as they stream and says when the limit is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyMeter {
    limit: u64,
    seen: u64,
}

impl BodyMeter {
    /// A meter for `limit` bytes.
    pub fn new(limit: u64) -> Self {
        BodyMeter { limit, seen: 0 }
    }

    /// Adds `n` bytes; a rejection once the total passes the limit.
    pub fn add(&mut self, n: usize) -> Result<(), Rejection> {
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.limit {
            Err(Rejection::payload_too_large(self.limit))
        } else {
            Ok(())
        }
    }
}

/// Checks a declared `Content-Length` against `limit` before reading the body.
pub fn check_declared(content_length: Option<u64>, limit: Option<u64>) -> Result<(), Rejection> {
    match (content_length, limit) {
        (Some(len), Some(max)) if len > max => Err(Rejection::payload_too_large(max)),
        _ => Ok(()),
    }
}

impl Rejection {
    /// 413 for a body over `limit` bytes.
    pub fn payload_too_large(limit: u64) -> Self {
        Rejection::new(
            413,
            pt::BODY_TOO_LARGE,
            format!("the request body is larger than this route allows ({limit} bytes)"),
            "body_too_large",
        )
    }

    /// 414 for a request target over `limit` bytes.
    pub fn uri_too_long(limit: usize) -> Self {
        Rejection::new(
            414,
            pt::HEAD_TOO_LARGE,
            format!("the request target is longer than {limit} bytes"),
            "uri_too_long",
        )
    }

    /// 431 for too many or too large header fields.
    pub fn head_too_large(detail: String) -> Self {
        Rejection::new(431, pt::HEAD_TOO_LARGE, detail, "header_too_large")
    }

    /// 400 for a request that cannot be processed as sent (a malformed
    /// length or multipart body); `audit_reason` names the check.
    pub fn bad_request(detail: String, audit_reason: &'static str) -> Self {
        Rejection::new(400, "about:blank", detail, audit_reason)
    }

    /// 400 for a file or folder name that could change directories or is
    /// otherwise unsafe; `field` names where it came from.
    pub fn invalid_name(field: &str, reason: &dyn std::fmt::Display) -> Self {
        Rejection::new(
            400,
            pt::INVALID_NAME,
            format!("{field}: {reason}"),
            "invalid_name",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: Option<&[&str]>, prefix: &str, limit: Option<u64>) -> BodyRule {
        BodyRule {
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            prefix: prefix.to_string(),
            limit,
        }
    }

    #[test]
    fn longest_prefix_wins_and_operator_rules_come_first() {
        let limits = BodyLimits::new(
            Some(100),
            vec![
                rule(None, "/api/v1/deliveries", Some(5)),
                rule(Some(&["POST"]), "/api/v1/files", Some(50)),
                rule(None, "/api/v1/deliveries", Some(1)),
                rule(None, "/api/v1/files/big", None),
            ],
        );
        assert_eq!(limits.limit_for("POST", "/api/v1/deliveries"), Some(5));
        assert_eq!(limits.limit_for("POST", "/api/v1/deliveries/x"), Some(5));
        assert_eq!(limits.limit_for("POST", "/api/v1/deliveriesx"), Some(100));
        assert_eq!(limits.limit_for("POST", "/api/v1/files"), Some(50));
        assert_eq!(limits.limit_for("PUT", "/api/v1/files"), Some(100));
        assert_eq!(limits.limit_for("POST", "/api/v1/files/big"), None);
        assert_eq!(limits.limit_for("GET", "/other"), Some(100));
    }

    #[test]
    fn head_limits_count_fields_bytes_and_target() {
        let l = HeadLimits {
            max_header_count: 2,
            max_header_bytes: 10,
            max_url_bytes: 8,
        };
        assert!(l.check(8, [(3, 3), (2, 2)].into_iter()).is_ok());
        assert_eq!(l.check(9, std::iter::empty()).unwrap_err().status, 414);
        let many = l
            .check(1, [(1, 1), (1, 1), (1, 1)].into_iter())
            .unwrap_err();
        assert_eq!(many.status, 431);
        let big = l.check(1, [(5, 6)].into_iter()).unwrap_err();
        assert_eq!(big.status, 431);
    }

    #[test]
    fn declared_and_streamed_bodies_are_measured() {
        assert!(check_declared(Some(10), Some(10)).is_ok());
        assert_eq!(check_declared(Some(11), Some(10)).unwrap_err().status, 413);
        assert!(check_declared(None, Some(10)).is_ok());
        assert!(check_declared(Some(u64::MAX), None).is_ok());
        let mut m = BodyMeter::new(10);
        assert!(m.add(6).is_ok());
        assert!(m.add(4).is_ok());
        assert_eq!(m.add(1).unwrap_err().status, 413);
    }
}
