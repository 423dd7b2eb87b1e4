-- DMZ connectors (postgres). Keep in step with the other engine's 0005_connectors.sql.
-- Times are Unix epoch milliseconds (UTC).

CREATE TABLE connectors (
    name          TEXT    NOT NULL PRIMARY KEY,
    -- The connector key (mgc_<id>_<secret>): its public id and the SHA-256
    -- of its secret. The secret itself is never stored.
    key_id        TEXT    NOT NULL UNIQUE,
    key_hash      BYTEA   NOT NULL CHECK (octet_length(key_hash) = 32),
    created_at    BIGINT NOT NULL,
    -- Written by the gateway that holds the connections, every few seconds
    -- while any is open, so `connectors list` shows them from any process.
    last_seen_at  BIGINT,
    address       TEXT,
    connections   BIGINT NOT NULL DEFAULT 0,
    bytes_in      BIGINT NOT NULL DEFAULT 0,
    bytes_out     BIGINT NOT NULL DEFAULT 0
);
