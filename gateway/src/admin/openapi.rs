//! OpenAPI 3.1 description of the admin API, `GET /admin/v1/openapi.json`
//! (same token or console session as the rest of `/admin/v1`). Built by
//! utoipa from the annotated operations below; a unit test checks that
//! every route the resources' routers name in their usage messages (the
//! 405 answers) is described, so a new route without a description fails
//! the build's tests.

use crate::admin::Reply;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// RFC 9457 problem details, every error answer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Problem {
    /// `about:blank`.
    r#type: String,
    /// Short summary.
    title: String,
    /// HTTP status.
    status: u16,
    /// What went wrong.
    detail: Option<String>,
}

/// `POST /admin/v1/keys`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CreateKey {
    /// Service account (1 to 64 letters, digits, `-`, `_`, `.`).
    name: String,
    /// Scopes such as `files:read`.
    scopes: Vec<String>,
    /// Lifetime in days; absent: no expiry.
    expires_days: Option<u64>,
    /// Per-key rate limit such as `10/s burst 20`.
    rate_limit: Option<String>,
    /// Senders the key may name in `POST /api/v1/deliveries`: addresses or
    /// `*@domain`; absent or null: any sender (docs/keys.md).
    allowed_senders: Option<Vec<String>>,
}

/// `PUT /admin/v1/keys/{id}/senders`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SetSenders {
    /// Addresses or `*@domain`; null unbinds the key (any sender).
    allowed_senders: Option<Vec<String>>,
}

/// An API key as listed (never its secret or hash).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Key {
    id: String,
    account: String,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
    /// `active`, `revoked` or `expired`.
    status: String,
    rate_limit: Option<String>,
    /// Null: any sender.
    allowed_senders: Option<Vec<String>>,
}

/// A new key: the listed fields plus `key`, the secret, shown only here.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CreatedKey {
    id: String,
    account: String,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
    status: String,
    rate_limit: Option<String>,
    allowed_senders: Option<Vec<String>>,
    /// `mgw_<id>_<secret>`, shown once.
    key: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct KeyList {
    keys: Vec<Key>,
}

/// `POST /admin/v1/partners`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AddPartner {
    name: String,
    /// The partner gateway's base URL (https).
    url: String,
    email_domains: Vec<String>,
}

/// A trust-network connection.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Partner {
    name: String,
    url: String,
    email_domains: Vec<String>,
    key_id: String,
    /// `missing`, `stored encrypted` or `secret reference`.
    their_key: String,
    client_cert_sha256: Option<String>,
    inbox_folder: Option<String>,
    quota_bytes_per_day: Option<u64>,
    status: String,
    created_at: String,
    updated_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PartnerList {
    partners: Vec<Partner>,
}

/// `PUT /admin/v1/partners/{name}/key`: exactly one of the two.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SetKey {
    /// Their key, stored sealed.
    key: Option<String>,
    /// `env:NAME` or `file:PATH` holding their key.
    key_ref: Option<String>,
}

/// `PUT /admin/v1/partners/{name}/client-cert`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Pin {
    /// SHA-256 of their client certificate (64 hex digits), or null.
    sha256: Option<String>,
}

/// `PUT /admin/v1/partners/{name}/inbox`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Inbox {
    folder: Option<String>,
    quota_bytes_per_day: Option<u64>,
}

/// `POST /admin/v1/partners/{name}/test`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TestReport {
    name: String,
    connected: bool,
    organization: Option<String>,
    skew_secs: Option<i64>,
    reason: Option<String>,
}

/// `POST /admin/v1/connectors`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AddConnector {
    name: String,
    /// SHA-256 of the client certificate it must present (64 hex digits,
    /// `:` allowed); omitted: none required.
    client_cert_sha256: Option<String>,
}

/// A DMZ connector.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Connector {
    name: String,
    key_id: String,
    /// `connected` or `disconnected`.
    state: String,
    address: Option<String>,
    connections: u64,
    last_seen_at: Option<String>,
    bytes_out: u64,
    bytes_in: u64,
    /// SHA-256 of the client certificate it must present, or null.
    client_cert_sha256: Option<String>,
    created_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ConnectorList {
    connectors: Vec<Connector>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Removed {
    removed: String,
}

#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys",
    responses((status = 200, description = "OK", body = KeyList), (status = 401, description = "Token or session missing or wrong", body = Problem)))]
#[allow(dead_code)]
fn list_keys() {}

#[utoipa::path(post, path = "/admin/v1/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, description = "Created", body = CreatedKey), (status = 400, description = "Invalid input (problem details)", body = Problem)))]
#[allow(dead_code)]
fn create_key() {}

#[utoipa::path(get, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Public key id")),
    responses((status = 200, description = "OK", body = Key), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn get_key() {}

#[utoipa::path(delete, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Public key id")),
    responses((status = 204, description = "Revoked; running gateways refuse it within 5 s"),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn revoke_key() {}

#[utoipa::path(put, path = "/admin/v1/keys/{id}/senders", tag = "keys", request_body = SetSenders,
    params(("id" = String, Path, description = "Public key id")),
    responses((status = 200, description = "The key with its new binding; running gateways apply it within 5 s", body = Key),
        (status = 400, description = "Invalid list (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn set_key_senders() {}

#[utoipa::path(get, path = "/admin/v1/partners", tag = "partners",
    responses((status = 200, description = "OK", body = PartnerList)))]
#[allow(dead_code)]
fn list_partners() {}

#[utoipa::path(post, path = "/admin/v1/partners", tag = "partners", request_body = AddPartner,
    responses((status = 201, description = "Partner plus `key`, our key for them, shown once",
        body = Partner), (status = 400, description = "Invalid input (problem details)", body = Problem)))]
#[allow(dead_code)]
fn add_partner() {}

#[utoipa::path(get, path = "/admin/v1/partners/{name}", tag = "partners",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Partner), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn get_partner() {}

#[utoipa::path(delete, path = "/admin/v1/partners/{name}", tag = "partners",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Removed), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn remove_partner() {}

#[utoipa::path(put, path = "/admin/v1/partners/{name}/key", tag = "partners",
    params(("name" = String, Path)), request_body = SetKey,
    responses((status = 200, description = "Configured"), (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn set_partner_key() {}

#[utoipa::path(put, path = "/admin/v1/partners/{name}/client-cert", tag = "partners",
    params(("name" = String, Path)), request_body = Pin,
    responses((status = 200, description = "Pinned"), (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn set_partner_pin() {}

#[utoipa::path(put, path = "/admin/v1/partners/{name}/inbox", tag = "partners",
    params(("name" = String, Path)), request_body = Inbox,
    responses((status = 200, description = "Inbox set"), (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn set_partner_inbox() {}

#[utoipa::path(post, path = "/admin/v1/partners/{name}/test", tag = "partners",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = TestReport), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn test_partner() {}

#[utoipa::path(get, path = "/admin/v1/connectors", tag = "connectors",
    responses((status = 200, description = "OK", body = ConnectorList)))]
#[allow(dead_code)]
fn list_connectors() {}

#[utoipa::path(post, path = "/admin/v1/connectors", tag = "connectors",
    request_body = AddConnector,
    responses((status = 201, description = "Connector plus `key`, shown once", body = Connector),
        (status = 400, description = "Invalid input (problem details)", body = Problem)))]
#[allow(dead_code)]
fn add_connector() {}

#[utoipa::path(delete, path = "/admin/v1/connectors/{name}", tag = "connectors",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Removed), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn remove_connector() {}

#[utoipa::path(put, path = "/admin/v1/connectors/{name}/client-cert", tag = "connectors",
    params(("name" = String, Path)), request_body = Pin,
    responses((status = 200, description = "Pinned (or unpinned with null)"), (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn set_connector_pin() {}

#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document")))]
#[allow(dead_code)]
fn openapi_json() {}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "console_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::admin::console::COOKIE,
                "Console session (docs/console.md); changes also need X-CSRF-Token",
            ))),
        );
    }
}

/// `POST /admin/v1/webhooks`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AddWebhook {
    /// https:// target (http:// only with `allow_private`).
    url: String,
    /// `delivery.created`, `delivery.relayed`, `receipt.received`, `file.downloaded`.
    events: Vec<String>,
    /// Allow loopback, private and link-local targets (SSRF guard off).
    allow_private: Option<bool>,
}

/// A webhook subscription (never its secret).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Webhook {
    id: String,
    url: String,
    events: Vec<String>,
    allow_private: bool,
    /// `active`, `failing` or `disabled`.
    state: String,
    disabled_reason: Option<String>,
    failing_since: Option<String>,
    last_success_at: Option<String>,
    last_error: Option<String>,
    queued: u64,
    delivered: u64,
    created_at: String,
}

/// A new subscription: the listed fields plus `secret` (`whsec_...`),
/// shown only here.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CreatedWebhook {
    id: String,
    url: String,
    events: Vec<String>,
    allow_private: bool,
    state: String,
    disabled_reason: Option<String>,
    failing_since: Option<String>,
    last_success_at: Option<String>,
    last_error: Option<String>,
    queued: u64,
    delivered: u64,
    created_at: String,
    /// `whsec_<base64>`, shown once.
    secret: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookList {
    webhooks: Vec<Webhook>,
}

/// `POST /admin/v1/webhooks/{id}/test`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookTest {
    id: String,
    delivered: bool,
    status: Option<u16>,
    webhook_id: Option<String>,
    reason: Option<String>,
}

/// `POST /admin/v1/messages`: `provider` or `type`, one recipient or several.
/// Besides the admin token, an API key with scope `messages:send` may call
/// `/admin/v1/messages` (and nothing else on the admin listener).
#[derive(ToSchema)]
#[allow(dead_code)]
struct SendMessage {
    provider: Option<String>,
    r#type: Option<String>,
    /// One address, or a list.
    to: Vec<String>,
    subject: String,
    text: String,
    html: Option<String>,
}

/// A queued message as `GET /admin/v1/messages/{id}` shows it (never its content).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Message {
    id: String,
    transport: String,
    /// `queued`, `sent` or `failed`.
    state: String,
    attempts: u64,
    /// The provider's answer.
    answer: Option<String>,
    created_at: String,
}

/// `202` to `POST /admin/v1/messages`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct QueuedMessage {
    id: String,
    state: String,
}

#[utoipa::path(get, path = "/admin/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "OK", body = WebhookList)))]
#[allow(dead_code)]
fn list_webhooks() {}

#[utoipa::path(post, path = "/admin/v1/webhooks", tag = "webhooks", request_body = AddWebhook,
    responses((status = 201, description = "Created; the secret is shown only here", body = CreatedWebhook),
        (status = 400, description = "Invalid input or a refused target (problem details)", body = Problem)))]
#[allow(dead_code)]
fn add_webhook() {}

#[utoipa::path(get, path = "/admin/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Webhook), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn get_webhook() {}

#[utoipa::path(delete, path = "/admin/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Removed), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn remove_webhook() {}

#[utoipa::path(post, path = "/admin/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "Sent a test event; `delivered` tells the outcome", body = WebhookTest),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn test_webhook() {}

#[utoipa::path(post, path = "/admin/v1/messages", tag = "messages", request_body = SendMessage,
    responses((status = 202, description = "Queued", body = QueuedMessage),
        (status = 400, description = "Invalid input (problem details)", body = Problem)))]
#[allow(dead_code)]
fn send_message() {}

#[utoipa::path(get, path = "/admin/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Message), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn get_message() {}

/// `POST /admin/v1/transports`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AddTransport {
    name: String,
    /// `smtp`, `sms` or `threema`.
    r#type: String,
    /// The type's settings (docs/transports.md), e.g. smtp `host`, `port`,
    /// `tls`, `ca_file`, `username`, `from`; sms `userkey`, `originator`,
    /// `endpoint`; threema `gateway_id`, `endpoint`; sms and threema
    /// `credit_threshold`, `credit_warn_via`, `credit_warn_to`.
    settings: Option<serde_json::Value>,
    /// The secret (SMTP or aspsms password, Threema API secret): stored
    /// encrypted, never shown again.
    secret: Option<String>,
    /// Or a reference to it: `env:NAME`, `file:PATH`.
    secret_ref: Option<String>,
    /// threema: the gateway ID's private key (64 hex digits): stored encrypted.
    private_key: Option<String>,
}

/// A transport provider (never a secret).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Transport {
    name: String,
    r#type: String,
    settings: serde_json::Value,
    /// `none`, `stored encrypted` or `secret reference`.
    secret: String,
    /// `ready` or `not ready`.
    state: String,
    /// Why not ready.
    not_ready_reason: Option<String>,
    /// Every place naming this provider.
    used_by: Vec<String>,
    last_used_at: Option<String>,
    last_error: Option<String>,
    /// sms, threema: balance at the last credit check.
    credits: Option<String>,
    credits_checked_at: Option<String>,
    created_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct TransportList {
    transports: Vec<Transport>,
}

/// `POST /admin/v1/transports/{name}/copy`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CopyTransport {
    /// The new provider's name.
    name: String,
    /// Settings to change (`null` removes one).
    settings: Option<serde_json::Value>,
}

/// `POST /admin/v1/transports/{name}/test`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TestTransport {
    /// E-mail address, phone number (+41...) or Threema ID.
    to: String,
}

/// The outcome of a test message.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TransportTest {
    name: String,
    sent: bool,
    /// The provider's answer.
    answer: Option<String>,
    /// Why it was not sent.
    reason: Option<String>,
}

#[utoipa::path(get, path = "/admin/v1/transports", tag = "transports",
    responses((status = 200, description = "OK", body = TransportList)))]
#[allow(dead_code)]
fn list_transports() {}

#[utoipa::path(post, path = "/admin/v1/transports", tag = "transports", request_body = AddTransport,
    responses((status = 201, description = "Created", body = Transport),
        (status = 400, description = "Invalid input (problem details)", body = Problem)))]
#[allow(dead_code)]
fn add_transport() {}

#[utoipa::path(get, path = "/admin/v1/transports/{name}", tag = "transports",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Transport), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn get_transport() {}

#[utoipa::path(delete, path = "/admin/v1/transports/{name}", tag = "transports",
    params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Removed), (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn remove_transport() {}

#[utoipa::path(post, path = "/admin/v1/transports/{name}/copy", tag = "transports", request_body = CopyTransport,
    params(("name" = String, Path)),
    responses((status = 201, description = "Created", body = Transport),
        (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn copy_transport() {}

#[utoipa::path(post, path = "/admin/v1/transports/{name}/test", tag = "transports", request_body = TestTransport,
    params(("name" = String, Path)),
    responses((status = 200, description = "Sent a real test message; `sent` tells the outcome", body = TransportTest),
        (status = 400, description = "Invalid recipient (problem details)", body = Problem),
        (status = 404, description = "Not found", body = Problem)))]
#[allow(dead_code)]
fn test_transport() {}

/// `200` to `POST /admin/v1/reload`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Reloaded {
    /// `reloaded`.
    status: String,
    /// The file that was read: the one the gateway was started with.
    config: String,
    /// Sections (and `server.` keys) in force now.
    changed: Vec<String>,
    /// Sections (and keys) that changed but apply only after a restart.
    needs_restart: Vec<String>,
    /// Non-fatal findings, `file:line: key: message`.
    warnings: Vec<String>,
}

#[utoipa::path(post, path = "/admin/v1/reload", tag = "reload",
    responses((status = 200, description = "Applied", body = Reloaded),
        (status = 409, description = "Another reload is running; nothing changed (problem details)", body = Problem),
        (status = 422, description = "Invalid or not applicable; nothing changed (problem details with `errors`: `file:line: key: message` lines)", body = Problem)))]
#[allow(dead_code)]
fn reload_config() {}

/// `200` to `POST /admin/v1/upgrade`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Upgraded {
    /// `upgraded`.
    status: String,
    /// This process: it stops accepting, drains and exits 0.
    old_pid: u32,
    /// The new process: it serves on the same sockets.
    new_pid: u32,
    /// Listening sockets handed over.
    sockets: u32,
}

#[utoipa::path(post, path = "/admin/v1/upgrade", tag = "upgrade",
    responses((status = 200, description = "The new process serves; this one drains", body = Upgraded),
        (status = 409, description = "An upgrade is running or this process drains (problem details)", body = Problem),
        (status = 502, description = "The new process exited or was not ready in time; this process keeps serving (problem details)", body = Problem)))]
#[allow(dead_code)]
fn upgrade_binary() {}

/// One chart point: rates over the 10 s that ended at `at`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OverviewPoint {
    /// Unix seconds.
    at: u64,
    requests_per_s: f64,
    /// 5xx answers per second.
    errors_per_s: f64,
    bytes_in_per_s: f64,
    bytes_out_per_s: f64,
    /// 99th percentile of request durations (head to last byte); null: no request.
    p99_ms: Option<f64>,
}

/// The health of one part.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PartHealth {
    name: String,
    /// `up`/`down` (backend, bridges), the partner's status or `failing`,
    /// `connected`/`disconnected` (connectors), `ok`/`warning`/`expired`
    /// (certificates).
    state: String,
    detail: Option<String>,
    /// Partners: relays given up on (retry them in the trust network screen).
    failed_relays: Option<u64>,
    /// Certificates.
    expires_in_days: Option<f64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    /// `up`, `down` or `unknown` (probed while the overview is looked at, at most every 10 s).
    backend: PartHealth,
    bridges: Vec<PartHealth>,
    partners: Vec<PartHealth>,
    connectors: Vec<PartHealth>,
    certificates: Vec<PartHealth>,
}

/// `GET /admin/v1/overview`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OverviewReport {
    /// Seconds between points (10).
    interval_s: u64,
    /// The last hour, oldest first (at most 360 points).
    series: Vec<OverviewPoint>,
    health: Health,
}

#[utoipa::path(get, path = "/admin/v1/overview", tag = "overview",
    responses((status = 200, description = "Charts of the last hour from the gateway's own metrics, and health", body = OverviewReport)))]
#[allow(dead_code)]
fn overview() {}

/// A delivery relayed (or to be relayed) to a partner organisation.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Relay {
    delivery_id: String,
    partner: String,
    recipients: Vec<String>,
    /// `queued`, `delivered` or `failed`.
    state: String,
    attempts: u32,
    last_error: Option<String>,
    /// Files the partner has already received.
    files_sent: u64,
    remote_delivery_id: Option<String>,
    created_at: String,
    /// The partner's signed download receipts for files of this relay.
    receipts: Vec<RelayReceipt>,
}

/// A partner's signed receipt: their recipient downloaded the file.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RelayReceipt {
    /// Our file id.
    file_id: String,
    /// As the partner signed it (RFC 3339).
    downloaded_at: String,
    /// When we recorded it.
    recorded_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct RelayList {
    relays: Vec<Relay>,
}

/// `200` to a retry.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RelayRetried {
    delivery_id: String,
    partner: String,
    /// `queued`.
    state: String,
}

#[utoipa::path(get, path = "/admin/v1/relays", tag = "relays",
    responses((status = 200, description = "The relay queue, newest first", body = RelayList)))]
#[allow(dead_code)]
fn list_relays() {}

#[utoipa::path(post, path = "/admin/v1/relays/{delivery_id}/{partner}/retry", tag = "relays",
    params(("delivery_id" = String, Path, description = "Our delivery id"), ("partner" = String, Path, description = "Connection name")),
    responses((status = 200, description = "Queued again, due now (attempts from zero; files already sent are not sent again)", body = RelayRetried),
        (status = 404, description = "No failed relay of that delivery to that partner", body = Problem)))]
#[allow(dead_code)]
fn retry_relay() {}

/// `GET /admin/v1/audit`: one page of the audit trail, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AuditPage {
    /// Audit records as written to the trail (docs/security.md).
    records: Vec<serde_json::Value>,
    offset: u64,
    limit: u64,
    /// Older matches exist: ask again with `offset + limit`.
    more: bool,
}

#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit",
    params(
        ("event" = Option<String>, Query, description = "`request`, `auth`, `console`, `key`, `partner`, `relay`, ..."),
        ("principal" = Option<String>, Query, description = "e.g. `key:<id>`, `console:alice`"),
        ("decision" = Option<String>, Query, description = "`allow` or `deny`"),
        ("client_ip" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "RFC 3339"),
        ("until" = Option<String>, Query, description = "RFC 3339"),
        ("offset" = Option<u64>, Query, description = "Matches to skip, newest first (at most 50000)"),
        ("limit" = Option<u64>, Query, description = "1 to 1000, default 100"),
        ("format" = Option<String>, Query, description = "`json` (default) or `jsonl`: the page as JSON lines")),
    responses((status = 200, description = "One page, newest first", body = AuditPage),
        (status = 400, description = "A bad parameter (problem details)", body = Problem)))]
#[allow(dead_code)]
fn audit_trail() {}

/// `GET /admin/v1/bridges`: SMTP, mailboxes, SFTP.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Bridges {
    /// `{"enabled", "listen", "tls_listen", "spool_depth", "sessions": {outcome: n},
    /// "messages": {outcome: n}, "refusals": {reason: n}}` (counts since the start).
    smtp: serde_json::Value,
    mailboxes: Vec<Mailbox>,
    sftp: SftpBridge,
}

/// One `[[imap]]` or `[[pop3]]` mailbox.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Mailbox {
    name: String,
    /// `imap` or `pop3`.
    protocol: String,
    /// `host:port`.
    server: String,
    /// Logged in now.
    connected: bool,
    /// `ok`, `failing` (the last poll failed) or `waiting` (no poll yet).
    state: String,
    polls: u64,
    delivered: u64,
    failed: u64,
    last_poll: Option<String>,
    last_success: Option<String>,
    last_error_at: Option<String>,
    /// The last failure's text (since the start).
    last_error: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct SftpBridge {
    enabled: bool,
    listen: Option<String>,
    open_sessions: Option<u64>,
    auth_failures: Option<u64>,
    /// `[[sftp.users]]` of the running config, then the users added at
    /// run time (never a key or hash).
    users: Vec<SftpUser>,
}

/// An SFTP user (never a password, hash or key).
#[derive(ToSchema)]
#[allow(dead_code)]
struct SftpUser {
    name: String,
    /// `config` (`[[sftp.users]]`, changed in the file) or `store` (added
    /// at run time, removable here).
    source: String,
    folder: String,
    /// Any of `public key`, `password`, `api key`.
    login: Vec<String>,
    permissions: Vec<String>,
    max_connections: u32,
    /// Recipients of the delivery made per completed upload.
    deliver_to: Vec<String>,
    /// `store` users: SHA-256 fingerprints of their public keys.
    public_keys: Option<Vec<String>>,
    /// `store` users.
    created_at: Option<String>,
    /// `store` users: last successful login (recorded about once a second).
    last_login_at: Option<String>,
    open_sessions: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct SftpUserList {
    users: Vec<SftpUser>,
}

/// `POST /admin/v1/sftp/users`: a password and/or public keys.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AddSftpUser {
    /// 1 to 64 letters, digits, `-`, `_`, `.`; not a `[[sftp.users]]` name.
    name: String,
    /// At least 12 characters; stored as its argon2id hash only.
    password: Option<String>,
    /// Or an argon2id PHC string (`mft-gateway sftp hash-password`).
    password_hash: Option<String>,
    /// OpenSSH `authorized_keys` lines (no options); at most 32.
    authorized_keys: Option<Vec<String>>,
    /// The user's root folder in the backend (`""` = the backend root).
    folder: String,
    /// Any of `upload`, `download`, `list`, `delete`; absent:
    /// `upload`, `download`, `list`.
    permissions: Option<Vec<String>>,
    /// Concurrent sessions; absent: 10.
    max_connections: Option<u32>,
    /// A delivery (origin `sftp:<user>`) to these recipients per completed file.
    deliver_to: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/admin/v1/sftp/users", tag = "sftp",
    responses((status = 200, description = "Config users, then users added at run time", body = SftpUserList)))]
#[allow(dead_code)]
fn list_sftp_users() {}

#[utoipa::path(post, path = "/admin/v1/sftp/users", tag = "sftp", request_body = AddSftpUser,
    responses((status = 201, description = "Added; it can log in at once", body = SftpUser),
        (status = 400, description = "Invalid input (problem details)", body = Problem),
        (status = 409, description = "The name is taken, in the store or in the config file (problem details)", body = Problem)))]
#[allow(dead_code)]
fn add_sftp_user() {}

#[utoipa::path(delete, path = "/admin/v1/sftp/users/{name}", tag = "sftp",
    params(("name" = String, Path)),
    responses((status = 200, description = "Removed; its next login is refused and its open sessions are closed", body = Removed),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "A `[[sftp.users]]` user: remove it in the config file (problem details)", body = Problem)))]
#[allow(dead_code)]
fn remove_sftp_user() {}

#[utoipa::path(get, path = "/admin/v1/bridges", tag = "bridges",
    responses((status = 200, description = "The bridges from the gateway's own metrics and running config", body = Bridges)))]
#[allow(dead_code)]
fn bridges() {}

/// `GET /admin/v1/config`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RunningConfig {
    /// The config file the gateway was started with.
    source: String,
    /// That file as TOML with every secret replaced by `<redacted>`
    /// (`env:`/`file:` references are shown as written, never their targets).
    config: Option<String>,
    /// Whether the file still says what runs (false: edited since the last
    /// reload; null: a reload is running).
    matches_running: Option<bool>,
    /// Why the file cannot be shown.
    error: Option<String>,
}

/// `POST /admin/v1/config/validate`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct CandidateConfig {
    /// TOML text, checked as if it were the running config's file.
    config: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct Validation {
    valid: bool,
    /// `file:line: key: message`, as `mft-gateway check` prints them.
    errors: Vec<String>,
    warnings: Vec<String>,
}

#[utoipa::path(get, path = "/admin/v1/config", tag = "config",
    responses((status = 200, description = "The running config, secrets redacted", body = RunningConfig)))]
#[allow(dead_code)]
fn running_config() {}

#[utoipa::path(post, path = "/admin/v1/config/validate", tag = "config", request_body = CandidateConfig,
    responses((status = 200, description = "The verdict (nothing is written or applied)", body = Validation),
        (status = 400, description = "Not JSON with `config` (problem details)", body = Problem)))]
#[allow(dead_code)]
fn validate_config() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mft-gateway admin API",
        description = "Management API on the admin listener (docs/architecture.md, docs/console.md)."
    ),
    paths(
        list_keys, create_key, get_key, revoke_key, set_key_senders,
        list_partners, add_partner, get_partner, remove_partner, set_partner_key,
        set_partner_pin, set_partner_inbox, test_partner,
        list_connectors, add_connector, remove_connector, set_connector_pin,
        list_webhooks, add_webhook, get_webhook, remove_webhook, test_webhook,
        send_message, get_message,
        list_transports, add_transport, get_transport, remove_transport, copy_transport,
        test_transport,
        reload_config,
        upgrade_binary,
        overview,
        list_relays, retry_relay,
        audit_trail,
        bridges,
        list_sftp_users, add_sftp_user, remove_sftp_user,
        running_config, validate_config,
        openapi_json
    ),
    components(schemas(Problem)),
    modifiers(&Security),
    security(("admin_token" = []), ("console_session" = []))
)]
struct AdminApi;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminApi::openapi()
}

/// `GET /admin/v1/openapi.json`, rendered once.
pub(crate) fn document_reply() -> Reply {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_json().unwrap_or_default().into_bytes());
    (200, "application/json", body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(METHOD, /admin/v1/...)` pairs named in a router's usage message,
    /// e.g. "use GET/POST /admin/v1/keys, GET/DELETE /admin/v1/keys/{id}".
    fn routes(usage: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let words: Vec<&str> = usage
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if pair[1].starts_with("/admin/v1/")
                && pair[0].chars().all(|c| c.is_ascii_uppercase() || c == '/')
            {
                for m in pair[0].split('/') {
                    out.push((m.to_lowercase(), pair[1].to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn every_routed_operation_is_described() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let usages = [
            crate::admin::keys::USAGE,
            crate::admin::partners::USAGE,
            crate::admin::connectors::USAGE,
            crate::admin::webhooks::USAGE,
            crate::admin::messages::USAGE,
            crate::admin::transports::USAGE,
            crate::admin::reload::USAGE,
            crate::admin::upgrade::USAGE,
            crate::admin::overview::USAGE,
            crate::admin::relays::USAGE,
            crate::admin::audit_trail::USAGE,
            crate::admin::bridges::USAGE,
            crate::admin::sftp_users::USAGE,
            crate::admin::config_view::USAGE,
        ];
        let mut n = 0;
        for usage in usages {
            for (method, path) in routes(usage) {
                n += 1;
                assert!(
                    doc["paths"][&path][&method].is_object(),
                    "{method} {path} is routed but not in the OpenAPI document"
                );
            }
        }
        assert!(n >= 15, "{n} routes found");
        // OpenAPI 3.1 requires a description on every response.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
        assert!(doc["paths"]["/admin/v1/openapi.json"]["get"].is_object());
    }
}
