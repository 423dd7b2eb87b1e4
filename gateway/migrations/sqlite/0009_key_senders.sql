-- Sender binding per API key (SQLite). Keep in step with
-- ../postgres/0009_key_senders.sql.

-- Senders the key may name in POST /api/v1/deliveries, canonical and
-- comma-separated ("ops@ourcorp.example,*@billing.ourcorp.example");
-- NULL = any sender (the key is not bound).
ALTER TABLE api_keys ADD COLUMN allowed_senders TEXT;
