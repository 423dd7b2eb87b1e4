//! `[trust]`: the trust network (federated partner connections).
//!
//! Connections themselves live in the key store (`mft-gateway partners ...`),
//! not here: they carry keys shown once and change at runtime.

use crate::convert::Ctx;
use crate::defaults::trust as D;
use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

/// `[trust]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// Secret reference of the key that encrypts partners' keys at rest.
    pub encryption_key: Option<String>,
    /// Bound on every call to a partner gateway.
    pub request_timeout: Option<String>,
    /// Largest clock difference to a partner that `partners test` accepts,
    /// and the validity of federation signatures.
    pub max_clock_skew: Option<String>,
    /// Extra CA file (PEM) to trust for partner gateways' certificates.
    pub ca_file: Option<String>,
    /// Requests per partner connection (`"20/s burst 40"`); default `[rate_limit] per_key`.
    pub rate_limit: Option<String>,
    /// Ask clients of the public listener for a certificate (optional), so
    /// partner connections can be pinned to one.
    pub client_auth: Option<bool>,
    /// Certificate (PEM) presented to partner gateways; default `server.tls_cert`.
    pub client_cert: Option<String>,
    /// Its private key (PEM); default `server.tls_key`.
    pub client_key: Option<String>,
    /// How often the relay reads the backend's new deliveries.
    pub relay_poll_interval: Option<String>,
    /// First retry delay of a failed relay or receipt; doubles per attempt.
    pub relay_retry_base: Option<String>,
    /// Longest delay between two attempts.
    pub relay_retry_max: Option<String>,
    /// A relay still failing after this long is given up (status `failed`).
    pub relay_max_age: Option<String>,
}

/// `[trust]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    /// Encrypts partners' keys stored with `partners set-key`; without it
    /// only secret references (`env:`, `file:`) can be stored.
    pub encryption_key: Option<Secret>,
    /// Bound on every call to a partner gateway.
    pub request_timeout: Duration,
    /// Largest accepted clock difference.
    pub max_clock_skew: Duration,
    /// Extra trust root for partner gateways.
    pub ca_file: Option<std::path::PathBuf>,
    /// Requests per partner connection; `None`: `[rate_limit] per_key`.
    pub rate_limit: Option<crate::quota::Quota>,
    /// Whether the public listener asks for (optional) client certificates.
    pub client_auth: bool,
    /// Client certificate for partner gateways; `None`: `server.tls_cert`.
    pub client_cert: Option<std::path::PathBuf>,
    /// Its key; `None`: `server.tls_key`.
    pub client_key: Option<std::path::PathBuf>,
    /// How often the relay reads the backend's new deliveries.
    pub relay_poll_interval: Duration,
    /// First retry delay of a failed relay or receipt.
    pub relay_retry_base: Duration,
    /// Longest delay between two attempts.
    pub relay_retry_max: Duration,
    /// Age after which a failing relay is given up.
    pub relay_max_age: Duration,
}

pub(crate) fn convert(file: TrustFile, ctx: &mut Ctx<'_>) -> Trust {
    let (client_cert, client_key) = match (file.client_cert, file.client_key) {
        (Some(c), Some(k)) => (Some(c), Some(k)),
        (None, None) => (None, None),
        _ => {
            ctx.error(
                "trust.client_cert",
                "client_cert and client_key go together (or neither: the server certificate is used)",
            );
            (None, None)
        }
    };
    Trust {
        encryption_key: ctx.secret("trust.encryption_key", file.encryption_key),
        request_timeout: ctx.duration(
            "trust.request_timeout",
            file.request_timeout,
            D::REQUEST_TIMEOUT,
        ),
        max_clock_skew: ctx.duration(
            "trust.max_clock_skew",
            file.max_clock_skew,
            D::MAX_CLOCK_SKEW,
        ),
        ca_file: file.ca_file.map(|p| ctx.path(&p)),
        rate_limit: file
            .rate_limit
            .and_then(|text| match crate::quota::parse(&text) {
                Ok(q) => Some(q),
                Err(m) => {
                    ctx.error("trust.rate_limit", m);
                    None
                }
            }),
        client_auth: file.client_auth.unwrap_or(D::CLIENT_AUTH),
        client_cert: client_cert.map(|p| ctx.path(&p)),
        client_key: client_key.map(|p| ctx.path(&p)),
        relay_poll_interval: ctx.duration(
            "trust.relay_poll_interval",
            file.relay_poll_interval,
            D::RELAY_POLL_INTERVAL,
        ),
        relay_retry_base: ctx.duration(
            "trust.relay_retry_base",
            file.relay_retry_base,
            D::RELAY_RETRY_BASE,
        ),
        relay_retry_max: ctx.duration(
            "trust.relay_retry_max",
            file.relay_retry_max,
            D::RELAY_RETRY_MAX,
        ),
        relay_max_age: ctx.duration("trust.relay_max_age", file.relay_max_age, D::RELAY_MAX_AGE),
    }
}
