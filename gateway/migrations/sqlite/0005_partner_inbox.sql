-- Where a partner's uploads land and its daily quota (SQLite). Keep in step
-- with ../postgres/0005_partner_inbox.sql.

-- Canonical folder of the partner's uploads; NULL = partners/<name>.
ALTER TABLE partners ADD COLUMN inbox_folder TEXT;
-- Bytes the partner may upload per UTC day; NULL = no quota.
ALTER TABLE partners ADD COLUMN quota_bytes_per_day INTEGER CHECK (quota_bytes_per_day > 0);
