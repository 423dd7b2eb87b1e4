-- Webhook subscriptions and their durable outbox (sqlite). Keep in step with
-- ../postgres/0007_webhooks.sql. Times are Unix epoch milliseconds (UTC).

CREATE TABLE webhooks (
    -- wh_<16 hex>, shown by `webhooks list`.
    id              TEXT    NOT NULL PRIMARY KEY,
    -- http(s) URL the events are POSTed to.
    url             TEXT    NOT NULL,
    -- Event types, space separated (delivery.created delivery.relayed ...).
    events          TEXT    NOT NULL,
    -- 1: the target may resolve to loopback, private or link-local addresses.
    allow_private   INTEGER NOT NULL DEFAULT 0,
    -- The signing secret (whsec_...), sealed with [trust] encryption_key
    -- (AES-256-GCM, bound to the id). Never stored in clear.
    secret_sealed   BLOB    NOT NULL,
    -- enabled | disabled (failing for too long; reason in disabled_reason).
    state           TEXT    NOT NULL DEFAULT 'enabled',
    disabled_reason TEXT,
    -- First failure since the last success; NULL while deliveries succeed.
    failing_since   INTEGER,
    last_success_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL
);

-- One row per (event, subscription): the outbox. msg_id is the stable
-- webhook-id of the event; every retry sends the same id and body.
CREATE TABLE webhook_messages (
    msg_id          TEXT    NOT NULL,
    webhook_id      TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type      TEXT    NOT NULL,
    -- The exact JSON body that is signed and sent.
    payload         TEXT    NOT NULL,
    -- queued | delivered
    state           TEXT    NOT NULL,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at INTEGER  NOT NULL,
    -- Several gateways on one PostgreSQL store: a claimed message is
    -- leased so that only one sends it at a time.
    lease_until     INTEGER  NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL,
    PRIMARY KEY (msg_id, webhook_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages (state, next_attempt_at);
CREATE INDEX webhook_messages_by_webhook ON webhook_messages (webhook_id, state);

-- Outbound transport providers (docs/transports.md), in the same schema
-- version as webhooks: the gateway's ways out for messages.
CREATE TABLE transports (
    name            TEXT    NOT NULL PRIMARY KEY,
    -- smtp (sms, threema later)
    kind            TEXT    NOT NULL,
    -- JSON object of the type's settings (host, port, tls, from ...); no secret.
    settings        TEXT    NOT NULL,
    -- The provider's secret (an SMTP password): sealed with
    -- [trust] encryption_key, bound to the name, or a secret reference. At most one.
    secret_sealed   BLOB,
    secret_ref      TEXT,
    last_used_at    INTEGER,
    last_error      TEXT,
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL
);

-- Messages accepted by POST /admin/v1/messages: a durable queue, sent once
-- through their transport provider, retried with backoff.
CREATE TABLE outbound_messages (
    -- msg_<uuid>, returned with the 202.
    id              TEXT    NOT NULL PRIMARY KEY,
    transport       TEXT    NOT NULL,
    -- JSON: {"to": [...], "subject": ..., "text": ..., "html": ...}
    content         TEXT    NOT NULL,
    -- queued | sent | failed
    state           TEXT    NOT NULL,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at INTEGER  NOT NULL,
    lease_until     INTEGER  NOT NULL DEFAULT 0,
    -- The provider's answer (sent) or the reason (failed, retrying).
    answer          TEXT,
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL
);
CREATE INDEX outbound_messages_due ON outbound_messages (state, next_attempt_at);
