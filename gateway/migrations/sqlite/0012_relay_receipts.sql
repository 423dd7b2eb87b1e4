-- Download receipts our partners sent for the deliveries we relayed to
-- them (sqlite). Keep in step with ../postgres/0012_relay_receipts.sql.
-- The backend records each receipt on the delivery too; this copy lets the
-- admin console show per relay which files the partner confirmed without
-- asking the backend. Times are Unix epoch milliseconds (UTC), except
-- downloaded_at: the partner's RFC 3339 text as signed.
CREATE TABLE relay_receipts (
    delivery_id   TEXT    NOT NULL,
    partner       TEXT    NOT NULL,
    -- Our file id (a key of relay_jobs.files_sent).
    file_id       TEXT    NOT NULL,
    downloaded_at TEXT    NOT NULL,
    recorded_at   INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, partner, file_id)
);
