//! Trusted JWT issuers and their key sets: fetched at start, refreshed in the
//! background, and refetched at once (rate-limited) when a token names a key
//! id we do not know yet, so an identity provider's key rotation needs no restart.

use crate::runtime::ServiceRuntime;
use arc_swap::ArcSwapOption;
use mft_config::model::{JwksSource, JwtIssuer};
use mft_filters::auth::jwt::{self, JwksKeys, JwtError, JwtIdentity, JwtIssuerPolicy};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A forced refetch (unknown `kid`) happens at most this often per issuer.
const FORCED_REFETCH_EVERY: Duration = Duration::from_secs(30);
/// Until the first successful fetch, retry this often.
const RETRY_EVERY: Duration = Duration::from_secs(30);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The HTTP client for one issuer's JWKS URL: short timeout, no redirects,
/// the issuer's extra CA if configured.
pub fn http_client(issuer: &JwtIssuer) -> Result<reqwest::Client, String> {
    let mut client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &issuer.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        client = client.add_root_certificate(cert);
    }
    client.build().map_err(|e| e.to_string())
}

/// Reads and parses a key set from a file or an https URL (size-capped).
pub async fn fetch(source: &JwksSource, client: &reqwest::Client) -> Result<JwksKeys, String> {
    let body = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        JwksSource::Url(url) => {
            let response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{url}: HTTP {}", response.status().as_u16()));
            }
            if response
                .content_length()
                .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
            {
                return Err(format!("{url}: JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
            if bytes.len() > MAX_JWKS_BYTES {
                return Err(format!("{url}: JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            bytes.to_vec()
        }
    };
    JwksKeys::from_json(&body).map_err(|e| format!("invalid JWKS: {e}"))
}

/// One issuer with its current keys.
pub struct Issuer {
    /// `[[auth.jwt]] name`: the principal prefix `jwt:<name>:`.
    name: Option<String>,
    policy: JwtIssuerPolicy,
    source: JwksSource,
    refresh: Duration,
    client: reqwest::Client,
    /// None until the first successful fetch.
    keys: ArcSwapOption<JwksKeys>,
    last_forced: Mutex<Option<Instant>>,
}

impl Issuer {
    async fn fetch(&self) -> Result<JwksKeys, String> {
        fetch(&self.source, &self.client).await
    }

    async fn refetch(&self) -> bool {
        match self.fetch().await {
            Ok(keys) => {
                self.keys.store(Some(Arc::new(keys)));
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %self.policy.issuer, error = %e, "JWKS refresh failed; keeping the previous keys");
                false
            }
        }
    }

    fn may_force_refetch(&self) -> bool {
        let Ok(mut last) = self.last_forced.lock() else {
            return false;
        };
        match *last {
            Some(t) if t.elapsed() < FORCED_REFETCH_EVERY => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }
}

/// All configured issuers.
#[derive(Clone)]
pub struct IssuerSet {
    issuers: Arc<Vec<Arc<Issuer>>>,
    control: ServiceRuntime,
}

impl IssuerSet {
    /// Builds the issuers and fetches their keys once. A file that cannot be
    /// read is a startup error; an unreachable URL is logged and retried, so a
    /// brief identity-provider outage does not keep API-key users out.
    pub fn start(config: &[JwtIssuer], control: &ServiceRuntime) -> anyhow::Result<IssuerSet> {
        let mut issuers = Vec::new();
        for (i, c) in config.iter().enumerate() {
            let algorithms = c
                .algorithms
                .iter()
                .map(|a| jsonwebtoken::Algorithm::from_str(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("auth.jwt[{i}].algorithms: {e}"))?;
            let client = http_client(c).map_err(|e| anyhow::anyhow!("auth.jwt[{i}].{e}"))?;
            issuers.push(Arc::new(Issuer {
                name: c.name.clone(),
                policy: JwtIssuerPolicy {
                    issuer: c.issuer.clone(),
                    audience: c.audience.clone(),
                    algorithms,
                    scopes_claim: c.scopes_claim.clone(),
                    leeway: c.leeway,
                },
                source: c.jwks.clone(),
                refresh: c.refresh,
                client,
                keys: ArcSwapOption::empty(),
                last_forced: Mutex::new(None),
            }));
        }
        for (i, issuer) in issuers.iter().enumerate() {
            let it = issuer.clone();
            let first = control.block_on(async move { it.fetch().await })?;
            match (first, &issuer.source) {
                (Ok(keys), _) => issuer.keys.store(Some(Arc::new(keys))),
                (Err(e), JwksSource::File(_)) => anyhow::bail!("auth.jwt[{i}].jwks: {e}"),
                (Err(e), JwksSource::Url(_)) => {
                    tracing::warn!(issuer = %issuer.policy.issuer, error = %e, "JWKS not available yet; retrying in the background")
                }
            }
            // Weak: an issuer set replaced by a reload stops refreshing.
            let weak = Arc::downgrade(issuer);
            control.spawn(async move {
                while let Some(it) = weak.upgrade() {
                    let ok = it.refetch().await;
                    let pause = if ok {
                        it.refresh
                    } else {
                        RETRY_EVERY.min(it.refresh)
                    };
                    drop(it);
                    tokio::time::sleep(pause).await;
                }
            });
        }
        Ok(IssuerSet {
            issuers: Arc::new(issuers),
            control: control.clone(),
        })
    }

    /// The principal of `subject` from the issuer whose `iss` is `issuer`:
    /// `jwt:<name>:<sub>` for a named issuer, `jwt:<sub>` for a single
    /// unnamed one (the config refuses several unnamed issuers).
    pub fn principal(&self, issuer: &str, subject: &str) -> String {
        match self
            .issuers
            .iter()
            .find(|i| i.policy.issuer == issuer)
            .and_then(|i| i.name.as_deref())
        {
            Some(name) => format!("jwt:{name}:{subject}"),
            None => format!("jwt:{subject}"),
        }
    }

    /// Verifies `token` against the issuer named in it; returns the audit reason on failure.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<JwtIdentity, &'static str> {
        let Some(iss) = jwt::peek_issuer(token) else {
            return Err("malformed_jwt");
        };
        let Some(issuer) = self.issuers.iter().find(|i| i.policy.issuer == iss) else {
            return Err("unknown_issuer");
        };
        let attempt = |keys: Option<Arc<JwksKeys>>| match keys {
            Some(keys) => jwt::verify(token, &issuer.policy, &keys, now)
                .map_err(|e| (e.audit_reason(), matches!(e, JwtError::UnknownKid(_)))),
            None => Err(("jwks_unavailable", true)),
        };
        match attempt(issuer.keys.load_full()) {
            // A key id we have not seen (or no keys yet): the issuer may have
            // rotated; refetch once, rate-limited, and try again.
            Err((_, true)) if issuer.may_force_refetch() => {
                let it = issuer.clone();
                let _ = self.control.run(async move { it.refetch().await }).await;
                attempt(issuer.keys.load_full()).map_err(|(reason, _)| reason)
            }
            other => other.map_err(|(reason, _)| reason),
        }
    }
}
