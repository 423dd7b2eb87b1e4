-- DMZ connectors (sqlite). Keep in step with the other engine's 0005_connectors.sql.
-- Times are Unix epoch milliseconds (UTC).

CREATE TABLE connectors (
    name          TEXT    NOT NULL PRIMARY KEY,
    -- The connector key (mgc_<id>_<secret>): its public id and the SHA-256
    -- of its secret. The secret itself is never stored.
    key_id        TEXT    NOT NULL UNIQUE,
    key_hash      BLOB   NOT NULL CHECK (length(key_hash) = 32),
    created_at    INTEGER NOT NULL,
    -- Written by the gateway that holds the connections, every few seconds
    -- while any is open, so `connectors list` shows them from any process.
    last_seen_at  INTEGER,
    address       TEXT,
    connections   INTEGER NOT NULL DEFAULT 0,
    bytes_in      INTEGER NOT NULL DEFAULT 0,
    bytes_out     INTEGER NOT NULL DEFAULT 0
);
