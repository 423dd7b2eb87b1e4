//! OCSP stapling (RFC 6960, RFC 6066 §8): for a served certificate whose
//! Authority Information Access names an OCSP responder, the gateway asks
//! that responder for the certificate's status and hands the answer to
//! clients in the handshake, so they need not ask the CA themselves.
//!
//! A response is stapled only after it is checked: it answers for this
//! certificate (CertID), says `good`, is signed by the issuer or by a
//! responder the issuer delegated to (id-kp-OCSPSigning), and is current
//! (thisUpdate not in the future, nextUpdate not past). It is refreshed
//! halfway to its nextUpdate. A responder that fails leaves the staple
//! in place while it is current; after that the certificate is served
//! without one (logged and counted), never with an expired one.

use super::certs::CertStore;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use x509_cert::der::asn1::{Null, OctetString};
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A responder's answer is a few KiB; anything past this is refused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// First wait after a failed fetch; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Refresh interval for a response without nextUpdate.
const REFRESH_WITHOUT_NEXT_UPDATE: i64 = 3600;
/// How long a response without nextUpdate is stapled when refreshes fail.
const KEEP_WITHOUT_NEXT_UPDATE: i64 = 7 * 86400;
/// Clock skew allowed between the responder and this host.
const SKEW: i64 = 300;
/// How often the stapler looks for certificates that are due.
const TICK: Duration = Duration::from_secs(1);

/// sha1 (1.3.14.3.2.26): the CertID hash every responder knows (RFC 5019).
const OID_SHA1: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-pkix-ocsp-basic.
const OID_OCSP_BASIC: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// Why no staple could be had.
#[derive(Debug, Error)]
pub enum OcspError {
    /// A certificate or the response is not valid DER of its kind.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was parsed.
        what: &'static str,
        /// The parser's reason.
        detail: String,
    },
    /// The chain has no issuer certificate after the leaf.
    #[error("the certificate file holds no issuer certificate after the leaf, so no OCSP request can be made")]
    NoIssuer,
    /// The responder cannot be reached or answered with an HTTP error.
    #[error("OCSP responder {url}: {detail}")]
    Fetch {
        /// The responder.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The response is not usable.
    #[error("OCSP response from {url}: {detail}")]
    Response {
        /// The responder.
        url: String,
        /// Why it is refused.
        detail: String,
    },
}

fn parse(what: &'static str) -> impl Fn(x509_cert::der::Error) -> OcspError {
    move |e| OcspError::Parse {
        what,
        detail: e.to_string(),
    }
}

/// What is needed to ask for and check one certificate's status.
#[derive(Debug)]
pub struct OcspTarget {
    /// The responder (the leaf's AIA OCSP URL).
    pub url: String,
    /// The DER OCSPRequest.
    request: Vec<u8>,
    cert_id: CertId,
    /// The issuer certificate (DER): signs the response or the responder.
    issuer: Vec<u8>,
}

impl OcspTarget {
    /// The target of `chain`'s leaf; `Ok(None)` when it names no OCSP
    /// responder (nothing to staple).
    pub fn of(chain: &[CertificateDer<'_>]) -> Result<Option<OcspTarget>, OcspError> {
        let Some(leaf) = chain.first() else {
            return Ok(None);
        };
        let Some(url) = ocsp_url(leaf.as_ref())? else {
            return Ok(None);
        };
        let issuer_der = chain.get(1).ok_or(OcspError::NoIssuer)?;
        let leaf = x509_cert::Certificate::from_der(leaf.as_ref()).map_err(parse("certificate"))?;
        let issuer = x509_cert::Certificate::from_der(issuer_der.as_ref())
            .map_err(parse("issuer certificate"))?;
        let sha1 = |bytes: &[u8]| {
            OctetString::new(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
                    .as_ref()
                    .to_vec(),
            )
        };
        let subject = issuer
            .tbs_certificate
            .subject
            .to_der()
            .map_err(parse("issuer name"))?;
        let cert_id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: OID_SHA1,
                parameters: Some(Null.into()),
            },
            issuer_name_hash: sha1(&subject).map_err(parse("CertID"))?,
            issuer_key_hash: sha1(
                issuer
                    .tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes(),
            )
            .map_err(parse("CertID"))?,
            serial_number: leaf.tbs_certificate.serial_number.clone(),
        };
        let request = OcspRequest {
            tbs_request: TbsRequest {
                version: Default::default(),
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: cert_id.clone(),
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        }
        .to_der()
        .map_err(parse("OCSP request"))?;
        Ok(Some(OcspTarget {
            url,
            request,
            cert_id,
            issuer: issuer_der.as_ref().to_vec(),
        }))
    }

    fn refuse(&self, detail: impl Into<String>) -> OcspError {
        OcspError::Response {
            url: self.url.clone(),
            detail: detail.into(),
        }
    }

    /// Checks `der` (an OCSPResponse) against this certificate at `now`
    /// (seconds since the epoch): the validity it may be stapled for.
    pub fn check(&self, der: &[u8], now: i64) -> Result<Validity, OcspError> {
        let response = OcspResponse::from_der(der).map_err(parse("OCSP response"))?;
        if response.response_status != OcspResponseStatus::Successful {
            return Err(self.refuse(format!("status {:?}", response.response_status)));
        }
        let bytes = response
            .response_bytes
            .ok_or_else(|| self.refuse("no response bytes"))?;
        if bytes.response_type != OID_OCSP_BASIC {
            return Err(self.refuse(format!("response type {}", bytes.response_type)));
        }
        let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
            .map_err(parse("basic OCSP response"))?;
        self.verify_signature(&basic)?;
        let single = basic
            .tbs_response_data
            .responses
            .iter()
            .find(|r| {
                r.cert_id.issuer_name_hash == self.cert_id.issuer_name_hash
                    && r.cert_id.issuer_key_hash == self.cert_id.issuer_key_hash
                    && r.cert_id.serial_number == self.cert_id.serial_number
            })
            .ok_or_else(|| self.refuse("no answer for this certificate"))?;
        match &single.cert_status {
            CertStatus::Good(_) => {}
            CertStatus::Revoked(info) => {
                return Err(self.refuse(format!(
                    "the certificate is REVOKED (since {}); replace it",
                    info.revocation_time.0.to_date_time()
                )))
            }
            CertStatus::Unknown(_) => {
                return Err(self.refuse("the responder does not know this certificate"))
            }
        }
        let secs = |t: &x509_ocsp::OcspGeneralizedTime| t.0.to_unix_duration().as_secs() as i64;
        let this_update = secs(&single.this_update);
        if this_update > now + SKEW {
            return Err(self.refuse("thisUpdate is in the future"));
        }
        let next_update = single.next_update.as_ref().map(secs);
        if let Some(next) = next_update {
            if next <= now {
                return Err(self.refuse("nextUpdate has passed (a stale response)"));
            }
        }
        Ok(Validity {
            this_update,
            next_update,
        })
    }

    /// The response is signed by the issuer, or by a certificate in it that
    /// the issuer signed for OCSP signing.
    fn verify_signature(&self, basic: &BasicOcspResponse) -> Result<(), OcspError> {
        use x509_parser::asn1_rs::FromDer as _;
        let tbs = basic
            .tbs_response_data
            .to_der()
            .map_err(parse("OCSP response data"))?;
        let alg_der = basic
            .signature_algorithm
            .to_der()
            .map_err(parse("OCSP signature algorithm"))?;
        let sig_der = basic.signature.to_der().map_err(parse("OCSP signature"))?;
        let bad = |what: &'static str| OcspError::Parse {
            what,
            detail: "invalid DER".into(),
        };
        let (_, alg) = x509_parser::x509::AlgorithmIdentifier::from_der(&alg_der)
            .map_err(|_| bad("OCSP signature algorithm"))?;
        let (_, sig) = x509_parser::asn1_rs::BitString::from_der(&sig_der)
            .map_err(|_| bad("OCSP signature"))?;
        let (_, issuer) = x509_parser::parse_x509_certificate(&self.issuer)
            .map_err(|_| bad("issuer certificate"))?;
        let verify = |key: &x509_parser::x509::SubjectPublicKeyInfo<'_>| {
            x509_parser::verify::verify_signature(key, &alg, &sig, &tbs).is_ok()
        };
        if verify(issuer.public_key()) {
            return Ok(());
        }
        for cert in basic.certs.iter().flatten() {
            let Ok(der) = cert.to_der() else { continue };
            let Ok((_, responder)) = x509_parser::parse_x509_certificate(&der) else {
                continue;
            };
            let delegated = responder
                .extended_key_usage()
                .ok()
                .flatten()
                .is_some_and(|eku| eku.value.ocsp_signing);
            if delegated
                && responder
                    .verify_signature(Some(issuer.public_key()))
                    .is_ok()
                && verify(responder.public_key())
            {
                return Ok(());
            }
        }
        Err(self.refuse(
            "signature is neither the issuer's nor a delegated responder's (id-kp-OCSPSigning)",
        ))
    }

    /// Asks the responder (HTTP POST, RFC 6960 appendix A).
    async fn fetch(&self, client: &reqwest::Client) -> Result<Vec<u8>, OcspError> {
        let fail = |detail: String| OcspError::Fetch {
            url: self.url.clone(),
            detail,
        };
        let mut response = client
            .post(&self.url)
            .header("Content-Type", "application/ocsp-request")
            .header("Accept", "application/ocsp-response")
            .body(self.request.clone())
            .send()
            .await
            .map_err(|e| fail(crate::error_chain::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(crate::error_chain::error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(fail(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// When a checked response was issued and until when it may be stapled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// thisUpdate, seconds since the epoch.
    pub this_update: i64,
    /// nextUpdate, if the responder gave one.
    pub next_update: Option<i64>,
}

impl Validity {
    /// When to ask again: halfway to nextUpdate (at least [`BACKOFF_MIN`]).
    fn refresh_at(&self, now: i64) -> i64 {
        match self.next_update {
            Some(next) => now + ((next - now) / 2).max(BACKOFF_MIN.as_secs() as i64),
            None => now + REFRESH_WITHOUT_NEXT_UPDATE,
        }
    }

    /// Until when it is stapled if refreshes fail.
    fn keep_until(&self) -> i64 {
        self.next_update
            .unwrap_or(self.this_update + KEEP_WITHOUT_NEXT_UPDATE)
    }
}

/// `leaf`'s AIA OCSP URL (http or https), if any.
fn ocsp_url(leaf: &[u8]) -> Result<Option<String>, OcspError> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| OcspError::Parse {
        what: "certificate",
        detail: e.to_string(),
    })?;
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for desc in &aia.accessdescs {
                if desc.access_method.to_id_string() != "1.3.6.1.5.5.7.48.1" {
                    continue;
                }
                if let GeneralName::URI(uri) = &desc.access_location {
                    if uri.starts_with("http://") || uri.starts_with("https://") {
                        return Ok(Some(uri.to_string()));
                    }
                }
            }
        }
    }
    Ok(None)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `mft_tls_ocsp_fetches_total{result}` and `mft_tls_ocsp_stapled{name}`.
#[derive(Clone)]
pub struct OcspMetrics {
    fetches: IntCounterVec,
    stapled: IntGaugeVec,
}

impl OcspMetrics {
    /// Registers the series.
    pub fn new(registry: &Registry) -> prometheus::Result<OcspMetrics> {
        let fetches = IntCounterVec::new(
            Opts::new(
                "mft_tls_ocsp_fetches_total",
                "OCSP responses fetched for stapling, by result (failure: not stapled from it)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(fetches.clone()))?;
        for r in ["success", "failure"] {
            fetches.with_label_values(&[r]).reset();
        }
        let stapled = IntGaugeVec::new(
            Opts::new(
                "mft_tls_ocsp_stapled",
                "1 while a current OCSP response is stapled to the certificate, else 0",
            ),
            &["name"],
        )?;
        registry.register(Box::new(stapled.clone()))?;
        Ok(OcspMetrics { fetches, stapled })
    }
}

/// Per certificate: when to ask next and until when the staple holds.
struct Schedule {
    next: i64,
    keep_until: i64,
    backoff: Duration,
    stapled: bool,
}

/// The stapling loop; ends when the store is gone.
pub async fn run(store: Weak<CertStore>, metrics: OcspMetrics) {
    let client = match reqwest::Client::builder().timeout(FETCH_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the OCSP client; no certificate is stapled");
            return;
        }
    };
    let mut schedules: HashMap<[u8; 32], Schedule> = HashMap::new();
    loop {
        let Some(targets) = store.upgrade().map(|s| s.ocsp_targets()) else {
            return;
        };
        schedules.retain(|fp, _| targets.iter().any(|t| t.fingerprint == *fp));
        for t in targets {
            let s = schedules.entry(t.fingerprint).or_insert(Schedule {
                next: 0,
                keep_until: 0,
                backoff: BACKOFF_MIN,
                stapled: false,
            });
            if now() < s.next {
                continue;
            }
            let result = match t.target.fetch(&client).await {
                Ok(der) => t.target.check(&der, now()).map(|v| (der, v)),
                Err(e) => Err(e),
            };
            let Some(store) = store.upgrade() else { return };
            let gauge = metrics.stapled.with_label_values(&[t.label.as_str()]);
            match result {
                Ok((der, validity)) => {
                    metrics.fetches.with_label_values(&["success"]).inc();
                    store.set_staple(t.fingerprint, Some(der));
                    gauge.set(1);
                    let at = now();
                    if !s.stapled {
                        tracing::info!(certificate = %t.label, responder = %t.target.url,
                            next_update = ?validity.next_update, "OCSP response stapled");
                    }
                    *s = Schedule {
                        next: validity.refresh_at(at),
                        keep_until: validity.keep_until(),
                        backoff: BACKOFF_MIN,
                        stapled: true,
                    };
                }
                Err(e) => {
                    metrics.fetches.with_label_values(&["failure"]).inc();
                    let at = now();
                    if s.stapled && at >= s.keep_until {
                        store.set_staple(t.fingerprint, None);
                        s.stapled = false;
                    }
                    gauge.set(i64::from(s.stapled));
                    tracing::warn!(certificate = %t.label, error = %e,
                        retry_in_secs = s.backoff.as_secs(), stapled = s.stapled,
                        "OCSP fetch failed; serving the certificate with the current staple or none");
                    s.next = at + s.backoff.as_secs() as i64;
                    s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// A served certificate with an OCSP responder.
pub struct Due {
    /// The metric label (`default` or the entry's first name).
    pub label: String,
    /// SHA-256 of the leaf: which served certificate the staple belongs to.
    pub fingerprint: [u8; 32],
    /// How to ask.
    pub target: Arc<OcspTarget>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_without_aia_has_no_target() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(OcspTarget::of(&[cert.der().clone()]).unwrap().is_none());
    }

    #[test]
    fn validity_refreshes_halfway_and_keeps_until_next_update() {
        let v = Validity {
            this_update: 1000,
            next_update: Some(2000),
        };
        assert_eq!(v.refresh_at(1000), 1500);
        assert_eq!(v.keep_until(), 2000);
        let none = Validity {
            this_update: 1000,
            next_update: None,
        };
        assert_eq!(none.refresh_at(1000), 1000 + REFRESH_WITHOUT_NEXT_UPDATE);
        assert_eq!(none.keep_until(), 1000 + KEEP_WITHOUT_NEXT_UPDATE);
    }
}
