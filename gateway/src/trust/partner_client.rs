//! Signed calls to a partner's gateway for relays and receipts: JSON
//! requests whose answers must be signed with the connection's key, and
//! file uploads streamed with their `Content-Digest`.

use super::wire;
use crate::store::partners::PartnerRecord;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::TryStreamExt;
use mft_config::Config;
use mft_filters::auth::partner_key;
use mft_filters::problem_types as pt;
use mft_filters::signing::RequestView;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Why a call to a partner did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum PartnerCallError {
    /// No answer (DNS, TCP, TLS, timeout) or a broken one.
    #[error("partner unreachable: {0}")]
    Unreachable(String),
    /// The partner answered with an error status.
    #[error("partner answered {status}: {detail}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Problem `type`.
        problem_type: String,
        /// Problem `detail` (the partner's words).
        detail: String,
    },
    /// The answer is not signed with this connection's key.
    #[error("the partner's answer is not signed with this connection's key: {0}")]
    BadAnswer(String),
    /// Our side cannot make the call (key unreadable, bad URL).
    #[error("{0}")]
    Local(String),
}

impl PartnerCallError {
    /// Whether trying again later may succeed. A refused key or a connection
    /// the partner has not completed can be fixed by the admins while the
    /// relay waits; a rule the delivery breaks cannot.
    pub fn is_transient(&self) -> bool {
        match self {
            PartnerCallError::Unreachable(_)
            | PartnerCallError::BadAnswer(_)
            | PartnerCallError::Local(_) => true,
            PartnerCallError::Status { status, .. } => {
                matches!(status, 401 | 408 | 425 | 429) || *status >= 500 || self.is_pending()
            }
        }
    }

    fn is_pending(&self) -> bool {
        matches!(self, PartnerCallError::Status { problem_type, .. }
            if problem_type == pt::PARTNER_PENDING)
    }
}

/// Largest answer read from a partner.
const MAX_ANSWER: usize = 256 * 1024;

/// Lowest rate a file upload may fall to before it times out.
const MIN_RATE: u64 = 512 * 1024;

/// How often `ca_file` is looked at for a change (one `stat` off the
/// runtime at most this often, not one per call).
const CA_RECHECK: Duration = Duration::from_secs(2);

/// Calls partner gateways; cheap to clone.
#[derive(Clone)]
pub struct PartnerClient {
    http: Arc<ArcSwap<Http>>,
    /// When `ca_file` is due to be looked at again, in ms since `origin`.
    ca_next_check: Arc<AtomicU64>,
    origin: Instant,
    tls: TlsFiles,
    timeout: Duration,
    skew: Duration,
}

/// What the client's TLS is built from.
#[derive(Clone)]
pub struct TlsFiles {
    ca_file: Option<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    /// `[trust] ca_file`, and the client certificate: `[trust] client_cert`
    /// or else the server's own.
    pub fn of(config: &Config) -> TlsFiles {
        let t = &config.trust;
        let (cert, key) = match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => (
                config.server.tls_cert.clone(),
                config.server.tls_key.clone(),
            ),
        };
        TlsFiles {
            ca_file: t.ca_file.clone(),
            cert,
            key,
        }
    }
}

/// The HTTP client and the `ca_file` version it trusts.
struct Http {
    client: reqwest::Client,
    ca_modified: Option<SystemTime>,
}

/// One connection's target and key, for a series of calls.
pub struct Target<'a> {
    /// The connection.
    pub partner: &'a PartnerRecord,
    /// Their key for us, in clear.
    pub key: &'a str,
}

/// A file to upload to the partner.
pub struct FileUpload {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// `Idempotency-Key`.
    pub idempotency_key: String,
    /// The bytes, streamed.
    pub body: reqwest::Body,
}

struct Prepared {
    url: url::Url,
    authority: String,
    signing: [u8; 32],
    key_id: String,
    request_id: String,
}

impl PartnerClient {
    /// A client with `[trust]`'s timeouts and trust roots. No overall
    /// timeout on the client: a file upload gets one from its size.
    pub fn new(config: &Config) -> anyhow::Result<PartnerClient> {
        let trust = &config.trust;
        let tls = TlsFiles::of(config);
        let ca_modified = tls.ca_file.as_deref().and_then(modified);
        let client = builder(trust.request_timeout, &tls)?.build()?;
        Ok(PartnerClient {
            http: Arc::new(ArcSwap::from_pointee(Http {
                client,
                ca_modified,
            })),
            ca_next_check: Arc::new(AtomicU64::new(millis(CA_RECHECK))),
            origin: Instant::now(),
            tls,
            timeout: trust.request_timeout,
            skew: trust.max_clock_skew,
        })
    }

    /// The HTTP client, rebuilt when `ca_file` changed since: an admin
    /// adding a partner's private CA should not have to restart the gateway.
    /// The file is looked at every [`CA_RECHECK`] at most, off the runtime;
    /// every other call is one atomic load.
    async fn http(&self) -> reqwest::Client {
        if let Some(ca) = &self.tls.ca_file {
            let now = millis(self.origin.elapsed());
            let due = self.ca_next_check.load(Ordering::Relaxed);
            // One caller per interval wins the check; the others go on.
            if now >= due
                && self
                    .ca_next_check
                    .compare_exchange(
                        due,
                        now + millis(CA_RECHECK),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                self.reload_if_changed(ca.clone()).await;
            }
        }
        self.http.load().client.clone()
    }

    async fn reload_if_changed(&self, ca: PathBuf) {
        let modified = tokio::fs::metadata(&ca)
            .await
            .and_then(|m| m.modified())
            .ok();
        if modified == self.http.load().ca_modified {
            return;
        }
        let (timeout, tls) = (self.timeout, self.tls.clone());
        let built = tokio::task::spawn_blocking(move || {
            builder(timeout, &tls).and_then(|b| Ok(b.build()?))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match built {
            Ok(client) => {
                tracing::info!("trust.ca_file changed; partner connections use it now");
                self.http.store(Arc::new(Http {
                    client,
                    ca_modified: modified,
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "trust.ca_file changed but cannot be used; keeping the previous one")
            }
        }
    }

    fn prepare(&self, target: &Target<'_>, path: &str) -> Result<Prepared, PartnerCallError> {
        let parsed = partner_key::parse(target.key)
            .map_err(|_| PartnerCallError::Local("their key is not an mgp_ partner key".into()))?;
        let signing = partner_key::signing_key(&parsed);
        let base = url::Url::parse(&target.partner.url)
            .map_err(|e| PartnerCallError::Local(format!("partner URL: {e}")))?;
        let url = base
            .join(path)
            .map_err(|e| PartnerCallError::Local(format!("partner URL: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| PartnerCallError::Local("the partner URL has no host".into()))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(Prepared {
            authority,
            signing,
            key_id: parsed.id.to_string(),
            url,
            request_id: uuid::Uuid::now_v7().to_string(),
        })
    }

    /// Signs a POST of a body with `digest` to the prepared target.
    fn sign_post(
        p: &Prepared,
        digest: &str,
    ) -> Result<mft_filters::signing::SignatureHeaders, PartnerCallError> {
        let fields = [
            ("x-request-id", p.request_id.as_str()),
            ("content-digest", digest),
        ];
        let view = RequestView {
            method: "POST",
            authority: &p.authority,
            path: p.url.path(),
            query: p.url.query(),
            fields: &fields,
        };
        wire::sign_request(&p.signing, &p.key_id, &view)
            .map_err(|e| PartnerCallError::Local(e.to_string()))
    }

    /// POSTs `body` (JSON) to `path` and returns the 2xx answer's status and
    /// body after checking its signature.
    pub async fn post_json(
        &self,
        target: &Target<'_>,
        path: &str,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), PartnerCallError> {
        let p = self.prepare(target, path)?;
        let digest = wire::content_digest(&body);
        let signed = Self::sign_post(&p, &digest)?;
        let nonce = wire::nonce_of(&signed.signature_input)
            .unwrap_or_default()
            .to_string();
        let mut request = self
            .http()
            .await
            .post(p.url.clone())
            .timeout(self.timeout)
            .bearer_auth(target.key)
            .header("x-request-id", &p.request_id)
            .header("content-type", "application/json")
            .header("content-digest", &digest)
            .header("signature-input", &signed.signature_input)
            .header("signature", &signed.signature)
            .body(body);
        if let Some(k) = idempotency_key {
            request = request.header("idempotency-key", k);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let headers = wire::AnswerHeaders::of(response.headers());
        let answer = read_capped(response).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &answer));
        }
        let check = wire::AnswerCheck {
            method: "POST",
            authority: &p.authority,
            path: p.url.path(),
            nonce: &nonce,
        };
        wire::verify_answer(&p.signing, &p.key_id, self.skew, &check, &headers, &answer)
            .map_err(PartnerCallError::BadAnswer)?;
        Ok((status, answer))
    }

    /// Streams a file to the partner's `POST /federation/v1/files`; returns
    /// the partner's answer (its stored file) as JSON bytes.
    pub async fn post_file(
        &self,
        target: &Target<'_>,
        file: FileUpload,
    ) -> Result<Bytes, PartnerCallError> {
        let p = self.prepare(target, wire::FILES_PATH)?;
        let digest = wire::content_digest_of_hex(&file.sha256).ok_or_else(|| {
            PartnerCallError::Local("the stored file has no valid SHA-256".into())
        })?;
        let signed = Self::sign_post(&p, &digest)?;
        let timeout = self.timeout + Duration::from_secs(file.size / MIN_RATE);
        let response = self
            .http()
            .await
            .post(p.url.clone())
            .timeout(timeout)
            .bearer_auth(target.key)
            .header("x-request-id", &p.request_id)
            .header("content-type", "application/octet-stream")
            .header("content-length", file.size)
            .header("content-digest", &digest)
            .header(
                "x-filename",
                crate::backend_client::encoded_header(&file.name),
            )
            .header("idempotency-key", &file.idempotency_key)
            .header("signature-input", &signed.signature_input)
            .header("signature", &signed.signature)
            .body(file.body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let answer = read_capped(response).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &answer));
        }
        Ok(answer)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The HTTP client settings for partner gateways: TLS 1.2+ with the system
/// roots plus `ca_file`, our client certificate (for partners that pin it),
/// no redirects (a signed request must not wander).
pub fn builder(timeout: Duration, tls: &TlsFiles) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        // Relays are one large sequential upload each, which h2 does not
        // speed up; through pingora's h2 server a 1 GiB upload measured
        // half the HTTP/1.1 rate (docs/benchmarks.md).
        .http1_only()
        .https_only(true);
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("{what} {}: {e}", p.display()))
    };
    let mut identity = read(&tls.cert, "client certificate")?;
    identity.push(b'\n');
    identity.extend_from_slice(&read(&tls.key, "client key")?);
    let identity = reqwest::Identity::from_pem(&identity)
        .map_err(|e| anyhow::anyhow!("client certificate {}: {e}", tls.cert.display()))?;
    b = b.identity(identity);
    if let Some(ca) = tls.ca_file.as_deref() {
        let pem = std::fs::read(ca)
            .map_err(|e| anyhow::anyhow!("trust.ca_file {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("trust.ca_file {}: {e}", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b)
}

fn unreachable(e: reqwest::Error) -> PartnerCallError {
    PartnerCallError::Unreachable(crate::error_chain::error_chain(&e))
}

async fn read_capped(response: reqwest::Response) -> Result<Bytes, PartnerCallError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.try_next().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(PartnerCallError::BadAnswer(
                "the answer is too large".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn status_error(status: u16, body: &[u8]) -> PartnerCallError {
    #[derive(serde::Deserialize, Default)]
    struct Problem {
        #[serde(rename = "type")]
        problem_type: Option<String>,
        detail: Option<String>,
        title: Option<String>,
    }
    let p: Problem = serde_json::from_slice(body).unwrap_or_default();
    PartnerCallError::Status {
        status,
        problem_type: p.problem_type.unwrap_or_else(|| "about:blank".into()),
        detail: p
            .detail
            .or(p.title)
            .map(|d| d.chars().take(300).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, problem_type: &str) -> PartnerCallError {
        PartnerCallError::Status {
            status,
            problem_type: problem_type.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn what_is_worth_retrying() {
        assert!(PartnerCallError::Unreachable("refused".into()).is_transient());
        for s in [401, 408, 429, 500, 502, 503] {
            assert!(status(s, "about:blank").is_transient(), "{s}");
        }
        assert!(status(403, pt::PARTNER_PENDING).is_transient());
        for s in [400, 404, 413, 422] {
            assert!(!status(s, "about:blank").is_transient(), "{s}");
        }
        assert!(!status(403, pt::DOMAIN_RULE).is_transient());
    }

    #[test]
    fn problem_details_are_kept_short() {
        let body = format!(r#"{{"type":"urn:x","detail":"{}"}}"#, "d".repeat(1000));
        match status_error(422, body.as_bytes()) {
            PartnerCallError::Status {
                status,
                problem_type,
                detail,
            } => {
                assert_eq!((status, problem_type.as_str()), (422, "urn:x"));
                assert_eq!(detail.len(), 300);
            }
            other => panic!("{other:?}"),
        }
    }
}
