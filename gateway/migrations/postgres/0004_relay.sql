-- Trust-network relay state (postgres). Keep in step with ../sqlite/0004_relay.sql.
-- Times are Unix epoch milliseconds (UTC).

-- Small named values kept across restarts (the relay's position in the
-- backend's delivery feed).
CREATE TABLE gateway_state (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- Outbound: one job per (local delivery, partner) whose recipients are in
-- that partner's domains. A job survives restarts; its lease lets several
-- gateways share a PostgreSQL store without sending a delivery twice.
CREATE TABLE relay_jobs (
    delivery_id        TEXT    NOT NULL,
    partner            TEXT    NOT NULL,
    -- JSON array of the recipients relayed to this partner.
    recipients         TEXT    NOT NULL,
    -- queued | delivered | failed
    state              TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT  NOT NULL,
    lease_until        BIGINT  NOT NULL DEFAULT 0,
    last_error         TEXT,
    -- JSON object: local file id -> the partner's file id, for files sent.
    files_sent         TEXT    NOT NULL DEFAULT '{}',
    remote_delivery_id TEXT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    PRIMARY KEY (delivery_id, partner)
);
CREATE INDEX relay_jobs_due ON relay_jobs (state, next_attempt_at);

-- Inbound: files a partner delivered to us, so that the first download by
-- one of our users sends that partner a receipt (once).
CREATE TABLE inbound_files (
    file_id          TEXT    NOT NULL PRIMARY KEY,
    partner          TEXT    NOT NULL,
    -- The partner's delivery id (their relay id) and their file id.
    relay_id         TEXT    NOT NULL,
    source_file_id   TEXT    NOT NULL,
    -- Our delivery that carries the file.
    delivery_id      TEXT    NOT NULL,
    received_at      BIGINT  NOT NULL,
    -- Set by the first download; the receipt is due from then on.
    downloaded_at    BIGINT,
    -- none | queued | sent | failed
    receipt_state    TEXT    NOT NULL DEFAULT 'none',
    receipt_attempts BIGINT  NOT NULL DEFAULT 0,
    receipt_next_at  BIGINT  NOT NULL DEFAULT 0,
    receipt_error    TEXT
);
CREATE INDEX inbound_files_receipts ON inbound_files (receipt_state, receipt_next_at);
