//! Input limits of the public listener: the request head before
//! authentication, then body size and the file names an upload carries.

use mft_config::limits::Limits;
use mft_filters::decision::Rejection;
use mft_filters::limits::{check_declared, BodyLimits, BodyMeter, BodyRule, HeadLimits};
use mft_filters::validation::upload_names::{header_filename, header_folder, tus_metadata};
use mft_protocols::multipart::MultipartGuard;
use std::time::Duration;

/// The configured limits, ready for per-request use.
pub struct InputLimits {
    head: HeadLimits,
    body: BodyLimits,
    /// Longest pause while reading a request body.
    pub body_idle_timeout: Duration,
    /// Slowest accepted request body (`[limits] min_body_rate`).
    pub min_body_rate: Option<MinBodyRate>,
}

/// `[limits] min_body_rate` over `min_body_rate_window`: a body that,
/// over a window of time spent waiting on the client, brings fewer than
/// `rate × window` bytes is cut off with 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinBodyRate {
    /// Bytes per second.
    pub bytes_per_sec: u64,
    /// The waiting time the rate is measured over.
    pub window: Duration,
}

impl MinBodyRate {
    /// The bytes a window must bring.
    pub fn bytes_per_window(&self) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * self.window.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// What to watch while the body streams.
#[derive(Default)]
pub struct BodyWatch {
    /// Byte count against the route's limit.
    pub meter: Option<BodyMeter>,
    /// File names in multipart parts.
    pub multipart: Option<MultipartGuard>,
}

impl InputLimits {
    /// From `[limits]`.
    pub fn new(l: &Limits) -> Self {
        InputLimits {
            head: HeadLimits {
                max_header_count: l.max_header_count,
                max_header_bytes: l.max_header_bytes,
                max_url_bytes: l.max_url_bytes,
            },
            body: BodyLimits::new(
                l.max_body_bytes,
                l.routes
                    .iter()
                    .map(|r| BodyRule {
                        methods: r.methods.clone(),
                        prefix: r.path_prefix.clone(),
                        limit: r.max_body_bytes,
                    })
                    .collect(),
            ),
            body_idle_timeout: l.body_idle_timeout,
            min_body_rate: l.min_body_rate.map(|bytes_per_sec| MinBodyRate {
                bytes_per_sec,
                window: l.min_body_rate_window,
            }),
        }
    }

    /// Request line and header sizes; cheap enough to run before anything else.
    pub fn check_head(&self, uri: &http::Uri, headers: &http::HeaderMap) -> Result<(), Rejection> {
        let target = uri
            .path_and_query()
            .map_or(uri.path().len(), |pq| pq.as_str().len());
        self.head.check(
            target,
            headers
                .iter()
                .map(|(n, v)| (n.as_str().len(), v.as_bytes().len())),
        )
    }

    /// Declared body size and upload names; returns what to watch in the body.
    pub fn check_request(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<BodyWatch, Rejection> {
        let method = method.as_str();
        let path = uri.path();
        let limit = self.body.limit_for(method, path);
        let declared = match headers.get(http::header::CONTENT_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| bad_request("Content-Length is not a number"))?,
            ),
            None => None,
        };
        check_declared(declared, limit)?;
        let mut watch = BodyWatch {
            // A declared length within the limit is enforced by HTTP framing
            // itself; only bodies of unknown length need counting.
            meter: limit.filter(|_| declared.is_none()).map(BodyMeter::new),
            multipart: None,
        };
        if method == "POST" && trimmed(path) == crate::backend_client::paths::FILES {
            if let Some(v) = headers.get(super::names::X_FILENAME) {
                header_filename(v.as_bytes())
                    .map_err(|e| Rejection::invalid_name("X-Filename", &e))?;
            }
            if let Some(v) = headers.get(super::names::X_FOLDER) {
                header_folder(v.as_bytes()).map_err(|e| Rejection::invalid_name("X-Folder", &e))?;
            }
            let boundary = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .filter(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("multipart/form-data")
                })
                .map(|ct| {
                    let boundary =
                        mft_protocols::multipart::parse_boundary(ct).ok_or_else(|| {
                            bad_request("multipart/form-data without a valid boundary")
                        })?;
                    // RFC 2046 5.1.1. A longer one made the boundary search
                    // quadratic in body bytes fed one at a time (fuzzing,
                    // docs/reliability.md finding 3).
                    if boundary.len() > MAX_BOUNDARY {
                        return Err(bad_request(
                            "multipart/form-data boundary longer than 70 characters (RFC 2046)",
                        ));
                    }
                    Ok(boundary)
                });
            if let Some(boundary) = boundary {
                watch.multipart = Some(MultipartGuard::start(boundary?));
            }
        }
        if method == "POST" && trimmed(path) == crate::backend_client::paths::UPLOADS {
            if let Some(v) = headers.get(super::names::UPLOAD_METADATA) {
                tus_metadata(v.as_bytes())
                    .map_err(|(field, e)| Rejection::invalid_name(field, &e))?;
            }
        }
        Ok(watch)
    }
}

/// Longest multipart boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

fn trimmed(path: &str) -> &str {
    path.strip_suffix('/').unwrap_or(path)
}

fn bad_request(detail: &str) -> Rejection {
    Rejection::bad_request(detail.to_string(), "bad_request")
}
