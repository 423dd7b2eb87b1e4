-- Transport providers: a second sealed secret and the credit check's state
-- (PostgreSQL). Keep in step with ../sqlite/0010_transport_credits.sql. Times
-- are Unix epoch milliseconds (UTC).

-- threema: the gateway ID's private key, sealed with [trust]
-- encryption_key (AES-256-GCM, bound to the provider's name). NULL for
-- other types.
ALTER TABLE transports ADD COLUMN key_sealed BYTEA;
-- sms, threema: the balance at the last credit check, as the provider
-- reported it ("123.5"); NULL before the first check.
ALTER TABLE transports ADD COLUMN credits TEXT;
ALTER TABLE transports ADD COLUMN credits_checked_at BIGINT;
-- The last low-credit warning sent (one a day).
ALTER TABLE transports ADD COLUMN credit_warned_at BIGINT;

-- [[notify]] rules: when each last sent a message (at most one per period).
-- The key is the rule's event, provider and recipients.
CREATE TABLE notify_sent (
    rule    TEXT    NOT NULL PRIMARY KEY,
    sent_at BIGINT  NOT NULL
);
