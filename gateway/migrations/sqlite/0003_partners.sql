-- Trust-network connections (SQLite). Keep in step with ../postgres/0003_partners.sql.
-- Times are Unix epoch milliseconds (UTC).

CREATE TABLE partners (
    name                TEXT    NOT NULL PRIMARY KEY,
    -- https URL of the partner's gateway.
    url                 TEXT    NOT NULL,
    -- The partner's e-mail domains, lower case, space separated.
    email_domains       TEXT    NOT NULL,
    -- The key we generated for them (mgp_<id>_<secret>): its public id, the
    -- SHA-256 of its secret, and the HMAC key derived from the secret that
    -- verifies their signatures. The secret itself is never stored.
    inbound_key_id      TEXT    NOT NULL UNIQUE,
    inbound_key_hash    BLOB    NOT NULL CHECK (length(inbound_key_hash) = 32),
    inbound_signing_key BLOB    NOT NULL CHECK (length(inbound_signing_key) = 32),
    -- The key they generated for us: sealed with [trust] encryption_key
    -- (AES-256-GCM), or a secret reference (env:NAME, file:PATH). At most one.
    outbound_key_sealed BLOB,
    outbound_key_ref    TEXT,
    -- Optional SHA-256 (hex) of the partner's client certificate (mTLS pin).
    client_cert_sha256  TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
