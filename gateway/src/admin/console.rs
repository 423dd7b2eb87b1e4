//! The admin console at `/console/` (docs/console.md): embedded static
//! pages, sign-in with password + TOTP (enrolled at the first sign-in),
//! server-side sessions and their CSRF tokens.
//!
//! A session is a random token in an HttpOnly, SameSite=Strict cookie; the
//! store keeps its SHA-256 only. Its CSRF token is derived from the session
//! token (SHA-256 with a label), so nothing more is stored and a database
//! copy gives neither. Every state change (any method but GET/HEAD) needs
//! the CSRF token in `X-CSRF-Token` and a JSON body type, and the `viewer`
//! role may change nothing: both are checked here, on the server, for the
//! console's own calls and for `/admin/v1/*` reached with the cookie.

use crate::admin::{json_reply, problem, read_body, AdminApp, Reply};
use crate::store::admin_sessions::SessionRecord;
use crate::store::admins::{AdminRecord, Role};
use crate::trust::seal::Sealer;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

use pingora_core::protocols::http::ServerSession;

/// The session cookie.
pub const COOKIE: &str = "mft_console";
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The console's Content-Security-Policy: nothing but its own origin, no
/// inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");
/// Swagger UI (vendored swagger-ui-dist, console/swagger-ui/README.md) and
/// our page and start script for it.
const API_HTML: &str = include_str!("console/api.html");
const API_JS: &str = include_str!("console/api.js");
const SWAGGER_JS: &[u8] = include_bytes!("console/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("console/swagger-ui/swagger-ui.css");
/// Where Swagger UI lives; `/admin/docs` (the contract's name) shows it too.
pub const API_DOCS: &str = "/console/api/";
/// The Swagger UI page's CSP: the console's, plus `data:` images (the
/// stylesheet draws its icons as data URIs). Still no script but ours.
pub const API_DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";
const SIGN_IN_FIRST: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
    <title>Sign in first</title></head><body><p>The admin API description needs a console \
    session: <a href=\"/console/\">sign in</a>, then come back.</p></body></html>";

/// Issuer shown in authenticator apps.
const ISSUER: &str = "mft-gateway";

/// A console reply and the `Set-Cookie` value it carries, if any.
pub(crate) type ConsoleReply = (Reply, Option<String>);

/// A signed-in caller of the console or of `/admin/v1` with the cookie.
pub(crate) struct Signed {
    pub(crate) token: String,
    pub(crate) record: SessionRecord,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    name: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrol {
    code: String,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The CSRF token of the session whose token is `token`.
pub(crate) fn csrf_token(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"mft-console-csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// The session token from the `Cookie` header(s), if any.
pub(crate) fn cookie_token(session: &ServerSession) -> Option<String> {
    session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the request carries the session's CSRF token.
pub(crate) fn csrf_ok(session: &ServerSession, token: &str) -> bool {
    let presented = session
        .req_header()
        .headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    bool::from(presented.ct_eq(csrf_token(token).as_bytes()))
}

/// Whether the method changes nothing.
pub(crate) fn is_read(session: &ServerSession) -> bool {
    matches!(session.req_header().method.as_str(), "GET" | "HEAD")
}

/// Whether a session is past its idle or its absolute timeout at `now`.
fn expired(record: &SessionRecord, now: SystemTime) -> bool {
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    age(record.last_seen_at) > IDLE_TIMEOUT || age(record.created_at) > ABSOLUTE_TIMEOUT
}

fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        ABSOLUTE_TIMEOUT.as_secs()
    )
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Recovery codes are `xxxx-xxxx-xxxx` (hex); TOTP codes six digits.
fn normalize_recovery(code: &str) -> Option<String> {
    let c = code.trim().to_ascii_lowercase();
    let ok = c.len() == 14
        && c.chars().enumerate().all(|(i, ch)| {
            if i == 4 || i == 9 {
                ch == '-'
            } else {
                ch.is_ascii_hexdigit()
            }
        });
    ok.then_some(c)
}

fn new_recovery_code() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b)?;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}", &h[0..4], &h[4..8], &h[8..12]))
}

fn totp_for(name: &str, secret: Vec<u8>) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(name)
        .build()
        .ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Associated data of a sealed TOTP secret: not a partner's name.
fn seal_label(name: &str) -> String {
    format!("admin-totp:{name}")
}

impl AdminApp {
    fn sealer(&self) -> Result<Sealer, Reply> {
        let Some(secret) = &self.config.trust.encryption_key else {
            return Err(problem(
                503,
                "the console seals TOTP secrets with [trust] encryption_key: set it",
            ));
        };
        Sealer::new(secret).map_err(|e| problem(503, &e.to_string()))
    }

    /// The administrator's TOTP generator, from the sealed secret.
    fn totp(&self, admin: &AdminRecord) -> Result<totp_rs::Totp, Reply> {
        let sealed = admin
            .totp_sealed
            .as_deref()
            .ok_or_else(|| problem(409, "no TOTP enrolment in progress: sign in again"))?;
        let text = self
            .sealer()?
            .open(&seal_label(&admin.name), sealed)
            .map_err(|e| problem(503, &e.to_string()))?;
        let bytes = hex::decode(text).map_err(|_| problem(503, "stored TOTP secret unusable"))?;
        totp_for(&admin.name, bytes).ok_or_else(|| problem(503, "stored TOTP secret unusable"))
    }

    fn client_ip(session: &ServerSession) -> Option<std::net::IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    fn audit_console(&self, session: &ServerSession, principal: &str, reason: &str, status: u16) {
        let mut r = crate::audit::AuditRecord::new("console");
        r.principal = Some(principal.to_string());
        r.client_ip = Self::client_ip(session);
        r.method = Some(crate::audit::method_text(
            session.req_header().method.as_str(),
        ));
        r.path = Some(session.req_header().uri.path().to_string());
        r.status = Some(status);
        r.decision = Some(if status < 400 { "allow" } else { "deny" });
        r.reason = Some(reason.to_string().into());
        self.audit.record(r);
    }

    /// The caller's live session, if the cookie names one. An expired
    /// session is deleted and counts as none; a live one is marked used.
    pub(crate) async fn current_session(
        &self,
        session: &ServerSession,
    ) -> Result<Option<Signed>, Reply> {
        let Some(token) = cookie_token(session) else {
            return Ok(None);
        };
        let id = sha256(token.as_bytes());
        let store = self.store.clone();
        let found = self
            .control
            .run(async move { store.admin_session(&id).await })
            .await;
        let record = match found {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Ok(None),
            _ => return Err(problem(503, "key store unavailable")),
        };
        let now = SystemTime::now();
        let store = self.store.clone();
        if expired(&record, now) {
            let _ = self
                .control
                .run(async move { store.end_admin_session(&id).await })
                .await;
            return Ok(None);
        }
        let _ = self
            .control
            .run(async move { store.touch_admin_session(&id, false).await })
            .await;
        Ok(Some(Signed { token, record }))
    }

    /// Everything under `/console`.
    pub(crate) async fn console(&self, session: &mut ServerSession, path: &str) -> ConsoleReply {
        let method = session.req_header().method.as_str().to_string();
        let reply = match (method.as_str(), path) {
            ("GET" | "HEAD", "/console" | "/console/" | "/console/index.html") => (
                200,
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes().to_vec(),
            ),
            ("GET" | "HEAD", "/console/app.js") => (
                200,
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes().to_vec(),
            ),
            ("GET" | "HEAD", "/console/app.css") => {
                (200, "text/css; charset=utf-8", APP_CSS.as_bytes().to_vec())
            }
            ("GET" | "HEAD", "/console/api/swagger-ui-bundle.js") => {
                (200, "text/javascript; charset=utf-8", SWAGGER_JS.to_vec())
            }
            ("GET" | "HEAD", "/console/api/swagger-ui.css") => {
                (200, "text/css; charset=utf-8", SWAGGER_CSS.to_vec())
            }
            ("GET" | "HEAD", "/console/api/api.js") => (
                200,
                "text/javascript; charset=utf-8",
                API_JS.as_bytes().to_vec(),
            ),
            ("GET" | "HEAD", "/console/api" | API_DOCS) => self.api_docs(session).await,
            (_, p) if p.starts_with("/console/api/") => {
                return self
                    .console_api(session, &method, &p["/console/api/".len()..])
                    .await
            }
            _ => problem(404, "no such console page"),
        };
        (reply, None)
    }

    /// Swagger UI's page, for a complete session only (the document it
    /// loads is behind the session anyway; this says so in the browser).
    pub(crate) async fn api_docs(&self, session: &ServerSession) -> Reply {
        match self.current_session(session).await {
            Ok(Some(signed)) if signed.record.full => (
                200,
                "text/html; charset=utf-8",
                API_HTML.as_bytes().to_vec(),
            ),
            Ok(_) => (
                401,
                "text/html; charset=utf-8",
                SIGN_IN_FIRST.as_bytes().to_vec(),
            ),
            Err(reply) => reply,
        }
    }

    async fn console_api(
        &self,
        session: &mut ServerSession,
        method: &str,
        rest: &str,
    ) -> ConsoleReply {
        if method != "GET" {
            let json_body = session
                .req_header()
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !json_body {
                return (
                    problem(415, "console calls send Content-Type: application/json"),
                    None,
                );
            }
        }
        if (method, rest) == ("POST", "sign-in") {
            return self.sign_in(session).await;
        }
        let signed = match self.current_session(session).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return (
                    problem(401, "not signed in, or the session expired"),
                    Some(clear_cookie()),
                )
            }
            Err(reply) => return (reply, None),
        };
        if method != "GET" && !csrf_ok(session, &signed.token) {
            self.audit_console(
                session,
                &signed.record.admin,
                "csrf token missing or wrong",
                403,
            );
            return (
                problem(403, "CSRF token missing or wrong: send X-CSRF-Token"),
                None,
            );
        }
        let reply = match (method, rest) {
            ("GET", "me") => json_reply(200, self.me(&signed)),
            ("POST", "sign-out") => {
                let id = sha256(signed.token.as_bytes());
                let store = self.store.clone();
                let _ = self
                    .control
                    .run(async move { store.end_admin_session(&id).await })
                    .await;
                self.audit_console(session, &signed.record.admin, "sign-out", 204);
                return ((204, "application/json", Vec::new()), Some(clear_cookie()));
            }
            ("GET", "enrol") | ("GET", "enrol/qr.svg") | ("POST", "enrol")
                if signed.record.full =>
            {
                problem(409, "TOTP is enrolled already")
            }
            ("GET", "enrol") => match self.enrolment_uri(&signed.record.admin).await {
                Ok((uri, secret)) => json_reply(200, json!({ "uri": uri, "secret": secret })),
                Err(reply) => reply,
            },
            ("GET", "enrol/qr.svg") => match self.enrolment_uri(&signed.record.admin).await {
                Ok((uri, _)) => match qrcode::QrCode::new(uri.as_bytes()) {
                    Ok(code) => {
                        let svg = code
                            .render::<qrcode::render::svg::Color<'_>>()
                            .min_dimensions(240, 240)
                            .quiet_zone(true)
                            .build();
                        (200, "image/svg+xml", svg.into_bytes())
                    }
                    Err(_) => problem(500, "cannot render the QR code"),
                },
                Err(reply) => reply,
            },
            ("POST", "enrol") => return self.confirm_enrolment(session, &signed).await,
            (_, "me" | "sign-out" | "enrol" | "enrol/qr.svg") => {
                problem(405, "method not allowed here")
            }
            _ => problem(404, "no such console call"),
        };
        (reply, None)
    }

    fn me(&self, signed: &Signed) -> serde_json::Value {
        let mut scopes: Vec<String> = crate::server::scope_policy(&self.config)
            .rules()
            .iter()
            .map(|r| r.scope.clone())
            .collect();
        scopes.sort();
        scopes.dedup();
        json!({
            "name": signed.record.admin,
            "role": signed.record.role.as_str(),
            "stage": if signed.record.full { "full" } else { "enrol" },
            "csrf": csrf_token(&signed.token),
            "idle_timeout_s": IDLE_TIMEOUT.as_secs(),
            "scopes": scopes,
        })
    }

    async fn admin(&self, name: &str) -> Result<AdminRecord, Reply> {
        let store = self.store.clone();
        let name = name.to_string();
        match self
            .control
            .run(async move { store.get_admin(&name).await })
            .await
        {
            Ok(Ok(Some(a))) => Ok(a),
            Ok(Ok(None)) => Err(problem(401, "no such admin")),
            _ => Err(problem(503, "key store unavailable")),
        }
    }

    async fn enrolment_uri(&self, name: &str) -> Result<(String, String), Reply> {
        let admin = self.admin(name).await?;
        let totp = self.totp(&admin)?;
        let uri = totp
            .to_url()
            .map_err(|_| problem(500, "cannot build the otpauth URI"))?;
        Ok((uri, totp.secret().to_base32()))
    }

    async fn confirm_enrolment(
        &self,
        session: &mut ServerSession,
        signed: &Signed,
    ) -> ConsoleReply {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(reply) => return (reply, None),
        };
        let req: Enrol = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return (problem(400, &format!("invalid JSON: {e}")), None),
        };
        let name = signed.record.admin.clone();
        let admin = match self.admin(&name).await {
            Ok(a) => a,
            Err(reply) => return (reply, None),
        };
        let totp = match self.totp(&admin) {
            Ok(t) => t,
            Err(reply) => return (reply, None),
        };
        let Some(step) = totp.check(req.code.trim(), unix_now()) else {
            self.feed_defender(session, &name);
            self.audit_console(session, &name, "enrolment code wrong", 401);
            return (
                problem(401, "the code is wrong: check the time on the phone"),
                None,
            );
        };
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            match new_recovery_code() {
                Ok(c) => codes.push(c),
                Err(_) => {
                    return (
                        problem(503, "cannot read operating system randomness"),
                        None,
                    )
                }
            }
        }
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| hex::encode(sha256(c.as_bytes())))
            .collect();
        let id = sha256(signed.token.as_bytes());
        let store = self.store.clone();
        let done = self
            .control
            .run(async move {
                if !store.enable_admin_totp(&name, &hashes).await? {
                    return Ok(false);
                }
                // The enrolment code is used up like any other.
                store.accept_admin_totp_step(&name, step).await?;
                store.touch_admin_session(&id, true).await?;
                store.record_admin_sign_in(&name).await?;
                Ok::<bool, crate::store::StoreError>(true)
            })
            .await;
        match done {
            Ok(Ok(true)) => {
                self.audit_console(session, &signed.record.admin, "totp enrolled", 200);
                (
                    json_reply(
                        200,
                        json!({ "recovery_codes": codes, "csrf": csrf_token(&signed.token) }),
                    ),
                    None,
                )
            }
            Ok(Ok(false)) => (problem(409, "TOTP is enrolled already"), None),
            _ => (problem(503, "key store unavailable"), None),
        }
    }

    fn gate(&self, ip: Option<std::net::IpAddr>) -> crate::auth::LoginGate<'_> {
        crate::auth::LoginGate::new(self.defender.as_ref(), &self.audit, ip, "console")
    }

    fn feed_defender(&self, session: &ServerSession, name: &str) {
        self.gate(Self::client_ip(session))
            .failed(Some(name), SystemTime::now());
    }

    async fn sign_in(&self, session: &mut ServerSession) -> ConsoleReply {
        let ip = Self::client_ip(session);
        if self.gate(ip).is_banned() {
            return (
                problem(
                    429,
                    "too many failed sign-ins from this address: try again later",
                ),
                None,
            );
        }
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(reply) => return (reply, None),
        };
        let req: SignIn = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return (problem(400, &format!("invalid JSON: {e}")), None),
        };
        let name: String = req.name.chars().take(64).collect();
        let store = self.store.clone();
        let lookup = name.clone();
        let admin = match self
            .control
            .run(async move { store.get_admin(&lookup).await })
            .await
        {
            Ok(Ok(a)) => a,
            _ => return (problem(503, "key store unavailable"), None),
        };
        let phc = admin.as_ref().map(|a| a.password_hash.clone());
        let password_ok = crate::auth::password::verify_blocking(phc, &req.password).await;
        let fail = |this: &Self, session: &ServerSession, why: &str| {
            this.feed_defender(session, &name);
            this.audit_console(session, &name, why, 401);
            (problem(401, "name, password or code wrong"), None)
        };
        let Some(admin) = admin.filter(|_| password_ok) else {
            return fail(self, &*session, "sign-in failed: name or password");
        };
        let full = if admin.totp_enabled {
            let code = req.code.as_deref().unwrap_or("").trim().to_string();
            let ok = if let Some(recovery) = normalize_recovery(&code) {
                let hash = hex::encode(sha256(recovery.as_bytes()));
                let store = self.store.clone();
                let n = name.clone();
                matches!(
                    self.control
                        .run(async move { store.use_admin_recovery_code(&n, &hash).await })
                        .await,
                    Ok(Ok(true))
                )
            } else {
                let step = match self.totp(&admin) {
                    Ok(totp) => totp.check(&code, unix_now()),
                    Err(reply) => return (reply, None),
                };
                // A code is accepted once (RFC 6238 section 5.2): a code
                // seen over someone's shoulder or replayed is refused.
                match step {
                    Some(step) => {
                        let store = self.store.clone();
                        let n = name.clone();
                        matches!(
                            self.control
                                .run(async move { store.accept_admin_totp_step(&n, step).await })
                                .await,
                            Ok(Ok(true))
                        )
                    }
                    None => false,
                }
            };
            if !ok {
                return fail(self, &*session, "sign-in failed: code");
            }
            true
        } else {
            // First sign-in (or after reset-totp): a fresh secret, sealed.
            let mut secret = [0u8; 20];
            if getrandom::fill(&mut secret).is_err() {
                return (
                    problem(503, "cannot read operating system randomness"),
                    None,
                );
            }
            let sealed = match self.sealer() {
                Ok(s) => s.seal(&seal_label(&name), hex::encode(secret).as_bytes()),
                Err(reply) => return (reply, None),
            };
            secret.fill(0);
            let Ok(sealed) = sealed else {
                return (problem(503, "cannot seal the TOTP secret"), None);
            };
            let store = self.store.clone();
            let n = name.clone();
            if !matches!(
                self.control
                    .run(async move { store.set_admin_totp_pending(&n, &sealed).await })
                    .await,
                Ok(Ok(()))
            ) {
                return (problem(503, "key store unavailable"), None);
            }
            false
        };
        let mut raw = [0u8; 32];
        if getrandom::fill(&mut raw).is_err() {
            return (
                problem(503, "cannot read operating system randomness"),
                None,
            );
        }
        let token = hex::encode(raw);
        let id = sha256(token.as_bytes());
        let store = self.store.clone();
        let n = name.clone();
        let opened = self
            .control
            .run(async move {
                store.create_admin_session(&id, &n, full).await?;
                if full {
                    store.record_admin_sign_in(&n).await?;
                }
                Ok::<(), crate::store::StoreError>(())
            })
            .await;
        if !matches!(opened, Ok(Ok(()))) {
            return (problem(503, "key store unavailable"), None);
        }
        self.gate(ip).succeeded(&name);
        self.audit_console(
            session,
            &name,
            if full {
                "sign-in"
            } else {
                "sign-in, totp enrolment"
            },
            200,
        );
        let body = json!({
            "name": name,
            "role": admin.role.as_str(),
            "stage": if full { "full" } else { "enrol" },
            "csrf": csrf_token(&token),
        });
        (json_reply(200, body), Some(set_cookie(&token)))
    }
}

/// What the session may do on `/admin/v1`: `Err` with the refusal.
pub(crate) fn check_admin_call(
    session: &ServerSession,
    signed: &Signed,
) -> Result<(), (Reply, &'static str)> {
    if !signed.record.full {
        return Err((
            problem(401, "finish the TOTP enrolment first"),
            "session without totp",
        ));
    }
    if is_read(session) {
        return Ok(());
    }
    if !csrf_ok(session, &signed.token) {
        return Err((
            problem(403, "CSRF token missing or wrong: send X-CSRF-Token"),
            "csrf token missing or wrong",
        ));
    }
    if signed.record.role != Role::Admin {
        return Err((
            problem(403, "the viewer role cannot change anything"),
            "viewer may not change",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_one_shape() {
        let c = new_recovery_code().unwrap();
        assert_eq!(normalize_recovery(&c), Some(c.clone()));
        assert_eq!(
            normalize_recovery(&format!(" {} ", c.to_uppercase())),
            Some(c)
        );
        assert_eq!(normalize_recovery("123456"), None);
        assert_eq!(normalize_recovery("abcd-efgh-1234"), None);
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1 seed, T = 59 s: 94287082 (8 digits);
        // the 6-digit code is its last six.
        let totp = totp_for("a", b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(totp.check("287082", 59), Some(1));
        assert_eq!(totp.check("287083", 59), None);
    }

    #[test]
    fn sessions_end_after_15_idle_minutes_or_8_hours() {
        let start = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let session = |created: u64, seen: u64| SessionRecord {
            admin: "a".into(),
            role: Role::Admin,
            full: true,
            created_at: start + Duration::from_secs(created),
            last_seen_at: start + Duration::from_secs(seen),
        };
        let at = |s: u64| start + Duration::from_secs(s);
        assert!(!expired(&session(0, 0), at(15 * 60)));
        assert!(expired(&session(0, 0), at(15 * 60 + 1)));
        // Used every 10 minutes: lives until 8 h after sign-in, not longer.
        assert!(!expired(&session(0, 8 * 3600 - 60), at(8 * 3600)));
        assert!(expired(&session(0, 8 * 3600), at(8 * 3600 + 1)));
    }

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_eq!(csrf_token("a").len(), 64);
    }
}
