-- SFTP users added at run time through the admin API, the console or
-- `mft-gateway sftp users` (postgres). Keep in step with
-- ../sqlite/0013_sftp_users.sql. `[[sftp.users]]` of the config file are
-- not stored here; a name taken there is refused when a user is added.
-- Times are Unix epoch milliseconds (UTC).
CREATE TABLE sftp_users (
    name            TEXT    NOT NULL PRIMARY KEY,
    -- argon2id PHC string of the password; never the password.
    password_hash   TEXT,
    -- Public keys, one OpenSSH authorized_keys line each, newline-separated
    -- (validated before they are stored).
    authorized_keys TEXT    NOT NULL DEFAULT '',
    -- The user's root folder in the backend ('' for the backend root).
    folder          TEXT    NOT NULL,
    -- Space-separated: upload, download, list, delete.
    permissions     TEXT    NOT NULL,
    max_connections BIGINT  NOT NULL CHECK (max_connections > 0),
    -- Space-separated recipients of the delivery made per completed upload.
    deliver_to      TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    -- Last successful login (written in batches, about once a second).
    last_login_at   BIGINT,
    CHECK (password_hash IS NOT NULL OR authorized_keys <> '')
);
