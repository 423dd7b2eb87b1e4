//! `[trust]`: the trust network (federated partner connections).
//!
//! Connections themselves live in the key store (`mft-gateway partners ...`),
//! not here: they carry keys shown once and change at runtime.

use crate::convert::Ctx;
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
}

/// `[trust]`, validated.
#[derive(Debug, Clone)]
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
}

pub(crate) fn convert(file: TrustFile, ctx: &mut Ctx<'_>) -> Trust {
    Trust {
        encryption_key: ctx.secret("trust.encryption_key", file.encryption_key),
        request_timeout: ctx.duration(
            "trust.request_timeout",
            file.request_timeout,
            Duration::from_secs(10),
        ),
        max_clock_skew: ctx.duration(
            "trust.max_clock_skew",
            file.max_clock_skew,
            Duration::from_secs(60),
        ),
        ca_file: file.ca_file.map(|p| ctx.path(&p)),
    }
}
