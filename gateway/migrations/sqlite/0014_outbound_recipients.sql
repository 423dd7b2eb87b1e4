-- Per-recipient progress of outbound messages (sqlite). Keep in step with
-- ../postgres/0013_outbound_recipients.sql. Times are Unix epoch milliseconds (UTC).

-- A provider that sends to each recipient on its own (threema) records here
-- every recipient that got the message, with the provider's answer, right
-- after the provider accepted it: a retry or a restart skips them, so each
-- recipient gets the message once.
CREATE TABLE outbound_message_recipients (
    message_id      TEXT    NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    recipient       TEXT    NOT NULL,
    answer          TEXT    NOT NULL,
    sent_at         INTEGER  NOT NULL,
    PRIMARY KEY (message_id, recipient)
);
