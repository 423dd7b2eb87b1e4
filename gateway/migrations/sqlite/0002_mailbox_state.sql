-- Where the mailbox pollers are (SQLite). Keep in step with
-- ../postgres/0002_mailbox_state.sql. Times are Unix epoch milliseconds.

-- IMAP: per mailbox ("imap:<name>"), the folder's UIDVALIDITY and the
-- highest UID whose message was delivered (or skipped for good).
CREATE TABLE imap_state (
    mailbox     TEXT    NOT NULL PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- POP3: the UIDLs already delivered (or skipped for good), per mailbox
-- ("pop3:<name>"); rows whose message left the server are pruned.
CREATE TABLE pop3_seen (
    mailbox    TEXT    NOT NULL,
    uidl       TEXT    NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uidl)
);
