-- Where the mailbox pollers are (PostgreSQL). Keep in step with
-- ../sqlite/0002_mailbox_state.sql. Times are Unix epoch milliseconds.

-- IMAP: per mailbox ("imap:<name>"), the folder's UIDVALIDITY and the
-- highest UID whose message was delivered (or skipped for good).
CREATE TABLE imap_state (
    mailbox     TEXT    NOT NULL PRIMARY KEY,
    uidvalidity BIGINT  NOT NULL,
    last_uid    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- POP3: the UIDLs already delivered (or skipped for good), per mailbox
-- ("pop3:<name>"); rows whose message left the server are pruned.
CREATE TABLE pop3_seen (
    mailbox    TEXT    NOT NULL,
    uidl       TEXT    NOT NULL,
    seen_at    BIGINT  NOT NULL,
    PRIMARY KEY (mailbox, uidl)
);
