//! Who is calling, and may they do this? The decision chain of the public
//! API, in order: defender (banned IP) → credential → API key or JWT →
//! scope for the route. Every decision is audited; the client only learns
//! a generic reason.

pub mod jwks;
pub mod keys;
pub mod login;
pub mod password;

use crate::audit::{AuditLog, AuditRecord};
use jwks::IssuerSet;
use keys::KeyCache;
use mft_filters::auth::api_key;
use mft_filters::auth::credential::{self, Credential};
use mft_filters::auth::scope::{has_scope, ScopePolicy};
use mft_filters::clock::Clock;
use mft_filters::decision::{Decision, Rejection};
use mft_filters::defender::Defender;
use mft_filters::problem_types as pt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `key:<id>` or `jwt:<sub>`, sent as `X-MFT-Principal`.
    pub principal: Arc<str>,
    /// Granted scopes.
    pub scopes: Arc<[String]>,
    /// Space-separated scopes, sent as `X-MFT-Scopes`.
    pub scopes_header: Arc<str>,
    /// The account's own rate limit (`keys create --rate-limit`); `None`:
    /// `[rate_limit] per_key` applies.
    pub rate_limit: Option<mft_filters::ratelimit::Limit>,
    /// The senders an API key may name in a delivery (`keys create
    /// --allowed-senders`); `None`: any sender.
    pub senders: Option<Arc<mft_filters::auth::senders::SenderBinding>>,
}

pub use login::{record_failure, LoginGate};

/// What the decision needs from a request.
pub struct AuthRequest<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path (no query).
    pub path: &'a str,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// `X-API-Key` header.
    pub x_api_key: Option<&'a [u8]>,
}

impl<'a> AuthRequest<'a> {
    /// The decision's view of a request head (either HTTP engine's).
    pub fn from_head(
        request_id: &'a str,
        client_ip: Option<IpAddr>,
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
    ) -> Self {
        AuthRequest {
            request_id,
            method: method.as_str(),
            path: uri.path(),
            client_ip,
            authorization: headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            x_api_key: headers
                .get(crate::proxy::names::X_API_KEY)
                .map(|v| v.as_bytes()),
        }
    }
}

/// How long a verified JWT is remembered (never beyond its `exp`).
/// RS256 verification costs hundreds of microseconds in pure Rust; clients
/// reuse one token for many requests, so a hash lookup replaces it.
const JWT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

struct VerifiedJwt {
    identity: Identity,
    expires_at: SystemTime,
}

/// The authentication and authorization chain.
pub struct Authenticator {
    keys: KeyCache,
    /// Verified tokens by SHA-256, each with the moment it leaves the cache.
    jwt_cache: quick_cache::sync::Cache<[u8; 32], (Arc<VerifiedJwt>, std::time::Instant)>,
    issuers: IssuerSet,
    policy: ScopePolicy,
    defender: Option<Arc<Defender>>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
}

/// 503 while the key store cannot be read (API keys and partner keys alike).
pub(crate) fn store_unavailable() -> Rejection {
    Rejection::new(
        503,
        pt::AUTH_UNAVAILABLE,
        "authentication is temporarily unavailable; retry shortly",
        "store_unavailable",
    )
    .with_header(http::header::RETRY_AFTER, "5")
}

impl Authenticator {
    /// Assembles the chain.
    pub fn new(
        keys: KeyCache,
        issuers: IssuerSet,
        policy: ScopePolicy,
        defender: Option<Arc<Defender>>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Authenticator {
            keys,
            jwt_cache: quick_cache::sync::Cache::new(100_000),
            issuers,
            policy,
            defender,
            audit,
            clock,
        }
    }

    /// The same chain (key cache, defender, audit, clock) with new JWT
    /// issuers and scope policy, for a reload; the JWT cache starts empty
    /// so no token is accepted under the issuers it replaces.
    pub fn with_policy(&self, issuers: IssuerSet, policy: ScopePolicy) -> Authenticator {
        Authenticator::new(
            self.keys.clone(),
            issuers,
            policy,
            self.defender.clone(),
            self.audit.clone(),
            self.clock.clone(),
        )
    }

    /// `auth.cache_ttl` for API keys cached from now on (a reload; the
    /// cache is shared by every snapshot and the bridges).
    pub fn set_key_cache_ttl(&self, ttl: std::time::Duration) {
        self.keys.set_ttl(ttl);
    }

    /// Whether the key `id` is still valid (not revoked, removed or
    /// expired), for sessions opened with it; `true` when the store cannot
    /// be asked (an outage must not cut every session).
    pub async fn key_still_valid(&self, id: &str) -> bool {
        match self.keys.lookup(id).await {
            Ok(Some(k)) => k.usable(self.clock.now()),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Ids of keys that changed from now on (see [`KeyCache::changes`]).
    pub fn key_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.keys.changes()
    }

    /// The shared defender, for the bridges.
    pub fn defender(&self) -> Option<&Arc<Defender>> {
        self.defender.as_ref()
    }

    /// How long `ip` stays banned, if the defender bans it now (one shard
    /// lookup; `None` without a defender). For refusals before any
    /// credential is looked at: at accept, and on the per-IP limit's.
    pub fn banned_for(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        self.defender.as_ref()?.check(ip, self.clock.now())
    }

    /// Decides on one request.
    pub async fn authorize(&self, req: &AuthRequest<'_>) -> Decision<Identity> {
        let now = self.clock.now();
        if let Some(left) = self.gate(req).banned_for(now) {
            return self.deny(req, None, Rejection::banned(left));
        }
        let identity = match self.authenticate(req, now).await {
            Ok(identity) => identity,
            Err(rejection) => {
                if rejection.status == 401 && rejection.audit_reason != "missing_credential" {
                    self.failed(req, now);
                }
                return self.deny(req, None, rejection);
            }
        };
        let Some(needed) = self.policy.required_scope(req.method, req.path) else {
            return self.deny(req, Some(&identity), Rejection::no_scope_for_route());
        };
        if !has_scope(&identity.scopes, needed) {
            return self.deny(req, Some(&identity), Rejection::forbidden_scope(needed));
        }
        // An allowed request is audited once, by the proxy's request record
        // (principal, route, status, bytes); a second record here would
        // double the audit work on the hot path for no new fact.
        Decision::Continue(identity)
    }

    /// Checks an API key's secret, revocation and expiry.
    async fn verify_api_key(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<keys::CachedKey>, Rejection> {
        let parsed = api_key::parse(token)
            .map_err(|_| Rejection::unauthenticated("malformed_credential"))?;
        let key = match self.keys.lookup(parsed.id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Rejection::unauthenticated("unknown_key")),
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                return Err(store_unavailable());
            }
        };
        // The secret is checked first, so only a holder of the real key
        // can learn (from the audit log) that it was revoked or expired.
        if !parsed.verify(&key.secret_hash) {
            return Err(Rejection::unauthenticated("bad_secret"));
        }
        if key.revoked {
            return Err(Rejection::unauthenticated("revoked"));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(Rejection::unauthenticated("expired"));
        }
        self.keys.mark_used(&key, now);
        Ok(key)
    }

    /// An API key given to a bridge as a password (`via`: `SFTP`, ...):
    /// the defender, the key checks and the audit record of a refusal are
    /// those of HTTPS; which rights the key gives there is the bridge's
    /// decision, so no route scope is checked here.
    pub async fn authenticate_api_key(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
        via: &'static str,
    ) -> Result<Arc<keys::CachedKey>, Rejection> {
        let now = self.clock.now();
        let request_id = uuid::Uuid::now_v7().to_string();
        let req = AuthRequest {
            request_id: &request_id,
            method: via,
            path: "-",
            client_ip,
            authorization: None,
            x_api_key: None,
        };
        if let (Some(defender), Some(ip)) = (&self.defender, client_ip) {
            if let Some(left) = defender.check(ip, now) {
                let rejection = Rejection::banned(left);
                self.deny(&req, None, rejection.clone());
                return Err(rejection);
            }
        }
        match self.verify_api_key(token, now).await {
            Ok(key) => Ok(key),
            Err(rejection) => {
                if let (401, Some(defender), Some(ip)) =
                    (rejection.status, &self.defender, client_ip)
                {
                    record_failure(defender, &self.audit, ip, None, now, via);
                }
                self.deny(&req, None, rejection.clone());
                Err(rejection)
            }
        }
    }

    async fn authenticate(
        &self,
        req: &AuthRequest<'_>,
        now: SystemTime,
    ) -> Result<Identity, Rejection> {
        let credential =
            credential::extract(req.authorization, req.x_api_key).map_err(|e| e.rejection())?;
        match credential {
            None => Err(Rejection::unauthenticated("missing_credential")),
            Some(Credential::ApiKey(token)) => {
                Ok(self.verify_api_key(token, now).await?.identity())
            }
            Some(Credential::Jwt(token)) => self.verify_jwt(token, now).await,
        }
    }

    async fn verify_jwt(&self, token: &str, now: SystemTime) -> Result<Identity, Rejection> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some((hit, _)) = self
            .jwt_cache
            .get(&digest)
            .filter(|(_, until)| *until > std::time::Instant::now())
        {
            if hit.expires_at > now {
                return Ok(hit.identity.clone());
            }
            return Err(Rejection::invalid_token("expired"));
        }
        let jwt = self
            .issuers
            .verify(token, now)
            .await
            .map_err(Rejection::invalid_token)?;
        let identity = Identity {
            principal: self.issuers.principal(&jwt.issuer, &jwt.subject).into(),
            scopes_header: jwt.scopes.join(" ").into(),
            scopes: jwt.scopes.into(),
            // Token subjects have no record of their own: the default applies.
            rate_limit: None,
            senders: None,
        };
        self.jwt_cache.insert(
            digest,
            (
                Arc::new(VerifiedJwt {
                    identity: identity.clone(),
                    expires_at: jwt.expires_at,
                }),
                std::time::Instant::now() + JWT_CACHE_TTL,
            ),
        );
        Ok(identity)
    }

    fn gate(&self, req: &AuthRequest<'_>) -> LoginGate<'_> {
        LoginGate::new(self.defender.as_ref(), &self.audit, req.client_ip, "HTTPS")
    }

    fn failed(&self, req: &AuthRequest<'_>, now: SystemTime) {
        self.gate(req).failed(None, now);
    }

    fn record(
        &self,
        req: &AuthRequest<'_>,
        identity: Option<&Identity>,
        decision: &'static str,
    ) -> AuditRecord {
        let mut r = AuditRecord::new("auth");
        r.request_id = Some(req.request_id.to_string());
        r.principal = identity.map(|i| String::from(&*i.principal));
        r.client_ip = req.client_ip;
        r.method = Some(crate::audit::method_text(req.method));
        r.path = Some(req.path.to_string());
        r.decision = Some(decision);
        r
    }

    fn deny(
        &self,
        req: &AuthRequest<'_>,
        identity: Option<&Identity>,
        rejection: Rejection,
    ) -> Decision<Identity> {
        let mut r = self.record(req, identity, "deny");
        r.status = Some(rejection.status);
        r.reason = Some(rejection.audit_reason.into());
        self.audit.record(r);
        Decision::Reject(rejection)
    }
}
