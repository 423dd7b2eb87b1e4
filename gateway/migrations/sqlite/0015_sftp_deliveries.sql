-- Durable on_upload deliveries of the SFTP bridge (sqlite). Keep in step with
-- ../postgres/0015_sftp_deliveries.sql. Times are Unix epoch milliseconds (UTC).

-- One job per completed upload of a user with on_upload.deliver_to,
-- written when the file is closed and before the first attempt, so a
-- restart or a crash loses no delivery. Its lease lets several gateways
-- share a PostgreSQL store without two of them working one job at once;
-- the backend's idempotency key makes a repeated attempt harmless.
CREATE TABLE sftp_deliveries (
    -- sd_<uuid v7, hex>
    id              TEXT    NOT NULL PRIMARY KEY,
    -- The SFTP user (principal and origin sftp:<user>).
    sftp_user       TEXT    NOT NULL,
    -- The file's path as the user saw it, for the audit trail.
    path            TEXT    NOT NULL,
    -- The backend's id of the uploaded file.
    file_id         TEXT    NOT NULL,
    -- sftp:<user>:<file id>: the backend makes one delivery per key.
    idempotency_key TEXT    NOT NULL UNIQUE,
    -- JSON: the delivery request as first made (scopes, sender,
    -- recipients, subject, message, audit context), so every attempt sends
    -- the same request whatever the user's settings became since.
    request         TEXT    NOT NULL,
    -- queued | delivered | failed
    state           TEXT    NOT NULL,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at INTEGER  NOT NULL,
    lease_until     INTEGER  NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- The backend's delivery id, once made.
    delivery_id     TEXT,
    created_at      INTEGER  NOT NULL,
    updated_at      INTEGER  NOT NULL
);
CREATE INDEX sftp_deliveries_due ON sftp_deliveries (state, next_attempt_at);
