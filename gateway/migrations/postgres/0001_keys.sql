-- Service accounts and their API keys (PostgreSQL). Keep in step with
-- ../sqlite/0001_keys.sql: same tables, columns and meaning.
-- Times are Unix epoch milliseconds (UTC).

CREATE TABLE service_accounts (
    name       TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    -- The public id: 16 lowercase hex digits, the <id> in mgw_<id>_<secret>.
    id           TEXT   NOT NULL PRIMARY KEY,
    account      TEXT   NOT NULL REFERENCES service_accounts (name),
    -- Space-separated scopes (a scope never contains a space).
    scopes       TEXT   NOT NULL,
    -- SHA-256 of the 256-bit secret; the secret itself is never stored.
    secret_hash  BYTEA  NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    -- Per-key rate limit override such as "50/s burst 100"; NULL = [rate_limit] per_key.
    rate_limit   TEXT
);

CREATE INDEX api_keys_account ON api_keys (account);

-- One row per change that a running gateway must see (creation, revocation):
-- gateways poll for seq > their cursor and evict those ids from their cache.
-- Writers take LOCK TABLE key_changes IN EXCLUSIVE MODE before inserting, so
-- seq values become visible in commit order and a poller never skips one.
CREATE TABLE key_changes (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id     TEXT   NOT NULL,
    change     TEXT   NOT NULL,
    changed_at BIGINT NOT NULL
);
