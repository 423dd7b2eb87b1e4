//! The receiving side of a connection: authenticating a partner's request
//! (bearer key, signature, replay) and signing our answer.

use super::wire;
use crate::audit::{AuditLog, AuditRecord};
use crate::proxy::names;
use crate::runtime::ServiceRuntime;
use crate::store::partners::PartnerRecord;
use crate::store::Store;
use mft_filters::auth::credential::{self, Credential};
use mft_filters::auth::partner_key;
use mft_filters::decision::Rejection;
use mft_filters::defender::Defender;
use mft_filters::problem_types as pt;
use mft_filters::signing::{unix_seconds, ReplayCache, RequestView};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A federation request as the gate needs it.
pub struct InboundRequest<'a> {
    /// Request id, for the audit trail.
    pub request_id: &'a str,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// Method.
    pub method: &'a str,
    /// `Host` as received.
    pub authority: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query, without `?`.
    pub query: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a [u8]>,
    /// `Signature-Input`.
    pub signature_input: Option<&'a str>,
    /// `Signature`.
    pub signature: Option<&'a str>,
    /// `Content-Digest`, when the request has a body.
    pub content_digest: Option<&'a str>,
    /// The partner's `X-Request-Id` (signed).
    pub partner_request_id: Option<&'a str>,
    /// SHA-256 of the TLS client certificate, if one was presented.
    pub client_cert_sha256: Option<&'a [u8]>,
}

impl<'a> InboundRequest<'a> {
    /// The gate's view of a request head, the same for both HTTP engines.
    pub fn from_head(
        request_id: &'a str,
        client_ip: Option<IpAddr>,
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
        client_cert_sha256: Option<&'a [u8]>,
    ) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        InboundRequest {
            request_id,
            client_ip,
            method: method.as_str(),
            authority: uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| text("host"))
                .unwrap_or(""),
            path: uri.path(),
            query: uri.query(),
            authorization: headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            signature_input: text("signature-input"),
            signature: text("signature"),
            content_digest: text("content-digest"),
            partner_request_id: text("x-request-id"),
            client_cert_sha256,
        }
    }
}

/// An authenticated partner request.
pub struct Authenticated {
    /// The connection.
    pub partner: PartnerRecord,
    /// The request signature's nonce, echoed in the answer.
    pub nonce: String,
    /// Unix seconds after which the nonce cannot be replayed anyway.
    forget_after: u64,
}

/// An answer body and the headers that sign it.
pub type SignedAnswer = (Vec<u8>, AnswerFields);

/// The fields that sign an answer (nonce, digest, signature), by name.
pub type AnswerFields = Vec<(http::HeaderName, std::borrow::Cow<'static, str>)>;

const REQUEST_NONCE: http::HeaderName = http::HeaderName::from_static(wire::REQUEST_NONCE);

/// Live nonces one partner may hold: what its rate limit lets through in
/// the longest time a nonce must be remembered (signature window plus clock
/// skew), twice over; without a partner rate limit a fixed share.
fn nonces_per_partner(config: &mft_config::Config) -> usize {
    const WITHOUT_LIMIT: usize = 20_000;
    const FLOOR: usize = 1_024;
    const CEILING: usize = 100_000;
    let lifetime = wire::SIGNATURE_TTL * 2 + config.trust.max_clock_skew;
    let Some(limit) = config
        .trust
        .rate_limit
        .as_ref()
        .and_then(crate::ratelimit::limit_of)
    else {
        return WITHOUT_LIMIT;
    };
    let per_nonce = limit.emission_interval().as_secs_f64().max(1e-6);
    let n = (lifetime.as_secs_f64() / per_nonce) as usize + limit.burst().get() as usize;
    n.saturating_mul(2).clamp(FLOOR, CEILING)
}

/// Checks partner requests; one per gateway.
pub struct PartnerGate {
    store: Store,
    control: ServiceRuntime,
    /// Connections cached: a known partner's request costs no query.
    partners: Arc<super::directory::PartnerDirectory>,
    /// Nonces per partner: one partner filling its cache refuses only its
    /// own requests, never another partner's.
    replay: Mutex<HashMap<String, ReplayCache>>,
    /// Nonces one partner may have live at once.
    nonces_per_partner: usize,
    skew: Duration,
    organization: String,
    email_domains: Vec<String>,
    defender: Option<Arc<Defender>>,
    audit: AuditLog,
    /// Partner uploads' folders and daily quotas.
    pub inboxes: super::inbox::PartnerInboxes,
}

fn reject(reason: &'static str) -> Rejection {
    let mut r = Rejection::unauthenticated(reason);
    r.headers = vec![(
        http::header::WWW_AUTHENTICATE,
        "Bearer realm=\"mft-federation\"".into(),
    )];
    r
}

impl PartnerGate {
    /// Counts partners' daily quotas in Redis (shared by every instance)
    /// when the rate limits are shared there.
    pub fn with_shared_quotas(
        mut self,
        redis: Option<(
            Arc<crate::ratelimit::redis::RedisLimiter>,
            mft_config::model::OnRedisError,
        )>,
    ) -> PartnerGate {
        let shared = redis.map(|(redis, on_error)| super::inbox::SharedQuota {
            redis,
            on_error,
            control: self.control.clone(),
        });
        self.inboxes = super::inbox::PartnerInboxes::shared(shared);
        self
    }

    /// A gate over the connections in `store`.
    pub fn new(
        store: Store,
        control: ServiceRuntime,
        partners: Arc<super::directory::PartnerDirectory>,
        config: &mft_config::Config,
        defender: Option<Arc<Defender>>,
        audit: AuditLog,
    ) -> PartnerGate {
        PartnerGate {
            store,
            control,
            partners,
            replay: Mutex::new(HashMap::new()),
            nonces_per_partner: nonces_per_partner(config),
            skew: config.trust.max_clock_skew,
            organization: config.organization.name.clone(),
            email_domains: config.organization.email_domains.clone(),
            defender,
            audit,
            inboxes: Default::default(),
        }
    }

    /// The defender's gate for this request's source.
    fn gate(&self, req: &InboundRequest<'_>) -> crate::auth::LoginGate<'_> {
        crate::auth::LoginGate::new(
            self.defender.as_ref(),
            &self.audit,
            req.client_ip,
            "federation",
        )
    }

    /// Authenticates `req`: a banned address, a missing, unknown or wrong
    /// key, a connection without their key yet, a bad or expired signature
    /// all get 401 (one generic detail; the audit record says which). The
    /// nonce is not checked yet: [`PartnerGate::admit`] does, after the
    /// partner's rate limit.
    pub async fn authenticate(&self, req: &InboundRequest<'_>) -> Result<Authenticated, Rejection> {
        let now = SystemTime::now();
        let gate = self.gate(req);
        if let Some(left) = gate.banned_for(now) {
            return Err(self.refused(req, None, Rejection::banned(left)));
        }
        match self.check(req).await {
            // A success counts for the defender only once the nonce is
            // fresh (`admit`): a replay must not clear the failures.
            Ok(ok) => Ok(ok),
            Err((partner, rejection)) => {
                if rejection.status == 401 && rejection.audit_reason != "missing_credential" {
                    gate.failed(partner.as_deref(), now);
                }
                Err(self.refused(req, partner.as_deref(), rejection))
            }
        }
    }

    /// Remembers the request's nonce; call once the partner is within its
    /// rate limit. A replay gets 401 (counted by the defender like any
    /// credential failure); more live nonces than the partner's rate
    /// allows get 429 for that partner alone.
    pub fn admit(&self, req: &InboundRequest<'_>, ok: &Authenticated) -> Result<(), Rejection> {
        let now = SystemTime::now();
        let fresh = {
            let mut caches = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            caches
                .entry(ok.partner.name.clone())
                .or_insert_with(|| ReplayCache::new(self.nonces_per_partner))
                .check_and_insert(&ok.nonce, ok.forget_after, unix_seconds(now))
        };
        let name = Some(ok.partner.name.as_str());
        match fresh {
            Ok(()) => {
                self.gate(req).succeeded(&ok.partner.name);
                Ok(())
            }
            // More live nonces than the partner's rate allows: its own
            // flood, answered like a rate limit (not a credential failure,
            // so the defender does not count it).
            Err(mft_filters::signing::verify::VerifyError::ReplayCacheFull) => {
                let r = Rejection::new(
                    429,
                    pt::RATE_LIMITED,
                    "too many requests from this partner; retry shortly",
                    "replay_cache_full",
                )
                .with_header(http::header::RETRY_AFTER, "5");
                Err(self.refused(req, name, r))
            }
            Err(_) => {
                self.gate(req).failed(name, now);
                Err(self.refused(req, name, reject("replayed")))
            }
        }
    }

    async fn check(
        &self,
        req: &InboundRequest<'_>,
    ) -> Result<Authenticated, (Option<String>, Rejection)> {
        let no_partner = |r| (None, r);
        let token = match credential::extract(req.authorization, None) {
            Ok(Some(Credential::ApiKey(t))) => t,
            Ok(Some(Credential::Jwt(_))) | Err(_) => {
                return Err(no_partner(reject("malformed_credential")))
            }
            Ok(None) => return Err(no_partner(reject("missing_credential"))),
        };
        let parsed =
            partner_key::parse(token).map_err(|_| no_partner(reject("malformed_credential")))?;
        let partner = match self.partners.cached(parsed.id) {
            Some(cached) => PartnerRecord::clone(&cached),
            None => self.lookup(parsed.id).await?,
        };
        let name = Some(partner.name.clone());
        if !parsed.verify(&partner.inbound_key_hash) {
            return Err((name, reject("bad_secret")));
        }
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(2);
        if let Some(id) = req.partner_request_id {
            fields.push(("x-request-id", id));
        }
        if let Some(d) = req.content_digest {
            fields.push(("content-digest", d));
        }
        let view = RequestView {
            method: req.method,
            authority: req.authority,
            path: req.path,
            query: req.query,
            fields: &fields,
        };
        let verified = wire::verify(
            &partner.inbound_signing_key,
            &partner.inbound_key_id,
            self.skew,
            &view,
            req.signature_input,
            req.signature,
        )
        .map_err(|e| {
            tracing::debug!(partner = %partner.name, error = %e, "partner signature refused");
            (name.clone(), reject("bad_signature"))
        })?;
        if let Some(pin) = &partner.client_cert_sha256 {
            let presented = req
                .client_cert_sha256
                .filter(|d| !d.is_empty())
                .map(hex::encode);
            if presented.as_deref() != Some(pin.as_str()) {
                return Err((name, reject("client_cert_mismatch")));
            }
        }
        if partner.outbound_key == crate::store::partners::OutboundKey::Missing {
            // Until our admin stored their key we could not answer them
            // (receipts, relays): the connection is not up on our side yet.
            return Err((
                name,
                Rejection::new(
                    403,
                    pt::PARTNER_PENDING,
                    "this connection is not complete on our side yet: our admin has \
                     not stored your key for us (partners set-key)",
                    "connection_pending",
                ),
            ));
        }
        // The nonce is remembered only by [`PartnerGate::admit`], after the
        // partner's rate limit: a flood refused by the limit must not fill
        // the partner's nonce cache (nor burn nonces of requests never served).
        let forget_after = verified.expires.saturating_add(self.skew.as_secs());
        Ok(Authenticated {
            partner,
            nonce: verified.nonce,
            forget_after,
        })
    }

    /// The connection with inbound key id `id`, from the store: the
    /// directory does not know it (yet), or it is pending.
    async fn lookup(&self, id: &str) -> Result<PartnerRecord, (Option<String>, Rejection)> {
        let no_partner = |r| (None, r);
        let id = id.to_string();
        let store = self.store.clone();
        let found = self
            .control
            .run(async move { store.partner_by_key_id(&id).await })
            .await;
        match found {
            Ok(Ok(Some(p))) => {
                self.partners.refresh_soon(&self.control);
                Ok(p)
            }
            Ok(Ok(None)) => Err(no_partner(reject("unknown_key"))),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "partner lookup failed");
                Err(no_partner(crate::auth::store_unavailable()))
            }
            Err(_) => Err(no_partner(reject("store_unavailable"))),
        }
    }

    fn refused(&self, req: &InboundRequest<'_>, partner: Option<&str>, r: Rejection) -> Rejection {
        let mut record = AuditRecord::new("federation_auth");
        record.request_id = Some(req.request_id.to_string());
        record.principal = partner.map(|p| format!("partner:{p}"));
        record.client_ip = req.client_ip;
        record.method = Some(crate::audit::method_text(req.method));
        record.path = Some(req.path.to_string());
        record.status = Some(r.status);
        record.decision = Some("deny");
        record.reason = Some(r.audit_reason.into());
        self.audit.record(record);
        r
    }

    /// The signed answer to `GET /federation/v1/ping`: body and headers.
    pub fn ping_answer(
        &self,
        req: &InboundRequest<'_>,
        ok: &Authenticated,
    ) -> Result<SignedAnswer, mft_filters::signing::SignError> {
        let body = serde_json::json!({
            "organization": self.organization,
            "email_domains": self.email_domains,
            "connection": ok.partner.name,
            "time": unix_seconds(SystemTime::now()),
        })
        .to_string()
        .into_bytes();
        let headers = sign_answer_body(
            req.method,
            req.authority,
            req.path,
            req.request_id,
            ok,
            &body,
        )?;
        let mut record = AuditRecord::new("federation_ping");
        record.request_id = Some(req.request_id.to_string());
        record.principal = Some(format!("partner:{}", ok.partner.name));
        record.client_ip = req.client_ip;
        record.status = Some(200);
        record.decision = Some("allow");
        self.audit.record(record);
        Ok((body, headers))
    }
}

/// The headers that sign an answer `body` to the request (`method`,
/// `authority`, `path`) of an authenticated partner: the echoed nonce, the
/// body's digest and the signature. `request_id` is the answer's `X-Request-Id`.
pub fn sign_answer_body(
    method: &str,
    authority: &str,
    path: &str,
    request_id: &str,
    ok: &Authenticated,
    body: &[u8],
) -> Result<AnswerFields, mft_filters::signing::SignError> {
    let digest = wire::content_digest(body);
    let fields = [
        ("x-request-id", request_id),
        (wire::REQUEST_NONCE, ok.nonce.as_str()),
        ("content-digest", digest.as_str()),
    ];
    let view = wire::answer_view(method, authority, path, &fields);
    let signed = wire::sign_answer(
        &ok.partner.inbound_signing_key,
        &ok.partner.inbound_key_id,
        &view,
    )?;
    Ok(vec![
        (REQUEST_NONCE, ok.nonce.clone().into()),
        (names::CONTENT_DIGEST, digest.into()),
        (names::SIGNATURE_INPUT, signed.signature_input.into()),
        (names::SIGNATURE, signed.signature.into()),
    ])
}
