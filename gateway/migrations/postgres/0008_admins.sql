-- Console administrators and their sessions (postgres). Keep in step with the
-- other engine's 0008_admins.sql. Times are Unix epoch milliseconds (UTC).

CREATE TABLE admins (
    name             TEXT    NOT NULL PRIMARY KEY,
    role             TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- argon2id PHC string of the password.
    password_hash    TEXT    NOT NULL,
    -- The TOTP secret, AES-256-GCM sealed under [trust] encryption_key
    -- (like partners' keys); set when enrolment starts.
    totp_sealed      BYTEA,
    -- 1 once a code from the authenticator app confirmed the enrolment.
    totp_enabled     BIGINT NOT NULL DEFAULT 0,
    -- The last TOTP time step accepted: a code is accepted once (RFC 6238 5.2).
    totp_last_step   BIGINT NOT NULL DEFAULT 0,
    -- SHA-256 (hex, space-separated) of the unused recovery codes.
    recovery_hashes  TEXT    NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    last_sign_in_at  BIGINT
);

-- Console sessions: the cookie holds a random token, the row its SHA-256.
CREATE TABLE admin_sessions (
    id_hash       BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    admin         TEXT    NOT NULL REFERENCES admins (name) ON DELETE CASCADE,
    -- 'enrol' (password checked, TOTP not yet confirmed) or 'full'.
    stage         TEXT    NOT NULL CHECK (stage IN ('enrol', 'full')),
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin);
