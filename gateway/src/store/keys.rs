//! API keys and their service accounts (tables `service_accounts`,
//! `api_keys`, `key_changes`).
//!
//! Keys are generated and verified by [`mft_filters::auth::api_key`]: the
//! store sees the public id and the SHA-256 of the secret, never the secret.
//!
//! # Revocation reaching running gateways
//!
//! Every write that a gateway's key cache must notice (creation, revocation)
//! appends a row to `key_changes` in the same transaction. Rows get a
//! monotonically increasing `seq`; a gateway remembers the highest `seq` it
//! has seen and calls [`Store::changes_since`] every second to evict the
//! changed ids. This works across processes (the `keys` CLI writes, the
//! gateway reads) and across hosts with PostgreSQL. See docs/keys.md.

use super::validate::{self, validate_account, validate_scopes, validate_senders};
use super::{from_ms, rfc3339, to_ms, Engine, Pool, Store, StoreError, MAX_TIME_MS};
use mft_filters::auth::api_key;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Most change rows one [`Store::changes_since`] call returns; the caller
/// simply polls again with the new cursor.
pub const CHANGES_BATCH: i64 = 1000;

/// One API key as stored (never its secret).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Public id: the `<id>` in `mgw_<id>_<secret>`.
    pub id: String,
    /// Service account that owns the key.
    pub account: String,
    /// Granted scopes, e.g. `files:read`.
    pub scopes: Vec<String>,
    /// Creation time (millisecond precision).
    pub created_at: SystemTime,
    /// When the key stops working; `None` = never.
    pub expires_at: Option<SystemTime>,
    /// When the key was revoked; `None` = not revoked.
    pub revoked_at: Option<SystemTime>,
    /// Last successful use as reported by gateways (batched, so a little late).
    pub last_used_at: Option<SystemTime>,
    /// SHA-256 of the secret, for `ParsedKey::verify`.
    pub secret_hash: [u8; 32],
    /// Per-key rate limit override such as `"50/s burst 100"`.
    pub rate_limit: Option<String>,
    /// Senders the key may name in a delivery, canonical and
    /// comma-separated; `None`: any sender (not bound).
    pub allowed_senders: Option<String>,
}

impl fmt::Debug for KeyRecord {
    // The hash is not the secret, but it has no business in logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("account", &self.account)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .field("secret_hash", &"<redacted>")
            .field("rate_limit", &self.rate_limit)
            .field("allowed_senders", &self.allowed_senders)
            .finish()
    }
}

/// Whether a key can be used at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Neither revoked nor expired.
    Active,
    /// Revoked (wins over expired).
    Revoked,
    /// Past its expiry time.
    Expired,
}

impl KeyStatus {
    /// `active`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl KeyRecord {
    /// The key's status at `now`: a key expires at the instant `expires_at`.
    pub fn status(&self, now: SystemTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Whether the key may authenticate a request at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.status(now) == KeyStatus::Active
    }

    /// The allowed senders as a list (`None`: the key is not bound).
    pub fn allowed_senders_list(&self) -> Option<Vec<String>> {
        self.allowed_senders.as_deref().map(|l| {
            l.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    /// The public view of a key, shared by `keys list --json` and the admin
    /// API: never the hash.
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        let time = |t: Option<SystemTime>| t.map_or(serde_json::Value::Null, |t| rfc3339(t).into());
        serde_json::json!({
            "id": self.id,
            "account": self.account,
            "scopes": self.scopes,
            "created_at": rfc3339(self.created_at),
            "expires_at": time(self.expires_at),
            "revoked_at": time(self.revoked_at),
            "last_used_at": time(self.last_used_at),
            "status": self.status(now).as_str(),
            "rate_limit": self.rate_limit,
            "allowed_senders": self.allowed_senders_list(),
        })
    }
}

/// The columns of [`KeyRow`].
const KEY_COLUMNS: &str =
    "id, account, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at, rate_limit, allowed_senders";

/// One `api_keys` row as stored: times in milliseconds, scopes
/// space-separated.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    account: String,
    scopes: String,
    secret_hash: Vec<u8>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    rate_limit: Option<String>,
    allowed_senders: Option<String>,
}

impl Store {
    /// Creates a key for `account` (creating the account if it does not
    /// exist) and returns its record and the token `mgw_<id>_<secret>`. The
    /// token exists only in the return value: show it once, do not log it.
    pub async fn create_key(
        &self,
        account: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
    ) -> Result<(KeyRecord, String), StoreError> {
        self.create_key_with_limit(account, scopes, expires_in, None)
            .await
    }

    /// Like [`Store::create_key`], with the account's own rate limit
    /// (`"10/s burst 20"`, checked by the caller with the config's quota
    /// parser) instead of `[rate_limit] per_key`.
    pub async fn create_key_with_limit(
        &self,
        account: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
        rate_limit: Option<&str>,
    ) -> Result<(KeyRecord, String), StoreError> {
        self.create_key_bound(account, scopes, expires_in, rate_limit, None)
            .await
    }

    /// Like [`Store::create_key_with_limit`], bound to `allowed_senders`
    /// (a list [`validate_senders`] accepts; `None`: any sender).
    pub async fn create_key_bound(
        &self,
        account: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
        rate_limit: Option<&str>,
        allowed_senders: Option<&str>,
    ) -> Result<(KeyRecord, String), StoreError> {
        validate_account(account)?;
        let allowed_senders = allowed_senders.map(validate_senders).transpose()?;
        let scopes = validate_scopes(scopes)?;
        let now = self.now_ms();
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() => return Err(StoreError::InvalidExpiry("it must be positive")),
            Some(d) => Some(
                i64::try_from(d.as_millis())
                    .ok()
                    .and_then(|ms| now.checked_add(ms))
                    .filter(|&t| t <= MAX_TIME_MS)
                    .ok_or(StoreError::InvalidExpiry("it is too far in the future"))?,
            ),
        };
        let scope_text = scopes.join(" ");
        const ATTEMPTS: u32 = 3;
        for _ in 0..ATTEMPTS {
            let mut random = [0u8; 40];
            getrandom::fill(&mut random).map_err(StoreError::Random)?;
            let generated = api_key::generate(&random);
            random.fill(0);
            let id = generated.id.clone();
            let inserted = on_pool!(self, |pool, engine| {
                let err = || self.query_err(format!("create key for account {account}"));
                let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
                if let Some(lock) = engine.lock_changes() {
                    sqlx::query(lock).execute(&mut *tx).await.map_err(err())?;
                }
                sqlx::query(
                    "INSERT INTO service_accounts (name, created_at) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(account)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
                let done = sqlx::query(
                    "INSERT INTO api_keys (id, account, scopes, secret_hash, created_at, expires_at, rate_limit, allowed_senders) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id.as_str())
                .bind(account)
                .bind(&scope_text)
                .bind(&generated.secret_hash[..])
                .bind(now)
                .bind(expires_at)
                .bind(rate_limit)
                .bind(allowed_senders.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(err())?;
                if done.rows_affected() == 1 {
                    sqlx::query(INSERT_CHANGE)
                        .bind(id.as_str())
                        .bind("created")
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(err())?;
                    tx.commit().await.map_err(err())?;
                    true
                } else {
                    // The id exists already: draw a new key.
                    tx.rollback().await.map_err(err())?;
                    false
                }
            });
            if inserted {
                let record = KeyRecord {
                    id,
                    account: account.to_string(),
                    scopes,
                    created_at: from_ms(now),
                    expires_at: expires_at.map(from_ms),
                    revoked_at: None,
                    last_used_at: None,
                    secret_hash: generated.secret_hash,
                    rate_limit: rate_limit.map(str::to_string),
                    allowed_senders,
                };
                return Ok((record, generated.token));
            }
        }
        Err(StoreError::IdCollision(ATTEMPTS))
    }

    /// Looks a key up by its public id (the proxy's cache-miss path).
    /// Revoked and expired keys are returned too: check [`KeyRecord::status`].
    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        if !validate::plausible_key_id(id) {
            return Ok(None);
        }
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let raw: Option<KeyRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err(format!("read key {id}")))?);
        raw.map(|r| self.decode(r)).transpose()
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        let raw: Vec<KeyRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list keys"))?);
        raw.into_iter().map(|r| self.decode(r)).collect()
    }

    /// Revokes a key now. `Ok(false)` if no key has this id; revoking a
    /// revoked key again is `Ok(true)` and keeps the first revocation time.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        if !validate::plausible_key_id(id) {
            return Ok(false);
        }
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err(format!("revoke key {id}"));
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            if let Some(lock) = engine.lock_changes() {
                sqlx::query(lock).execute(&mut *tx).await.map_err(err())?;
            }
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
            let known = if done.rows_affected() == 1 {
                sqlx::query(INSERT_CHANGE)
                    .bind(id)
                    .bind("revoked")
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err())?;
                true
            } else {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM api_keys WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(err())?;
                row.is_some()
            };
            tx.commit().await.map_err(err())?;
            Ok(known)
        })
    }

    /// Binds key `id` to `allowed_senders` (canonicalised by
    /// [`validate_senders`]; `None` unbinds it). Running gateways see the
    /// change through the change feed within seconds. `Ok(false)` if no key
    /// has this id.
    pub async fn set_allowed_senders(
        &self,
        id: &str,
        allowed_senders: Option<&str>,
    ) -> Result<bool, StoreError> {
        let canonical = allowed_senders.map(validate_senders).transpose()?;
        if !validate::plausible_key_id(id) {
            return Ok(false);
        }
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err(format!("set the allowed senders of key {id}"));
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            if let Some(lock) = engine.lock_changes() {
                sqlx::query(lock).execute(&mut *tx).await.map_err(err())?;
            }
            let done = sqlx::query("UPDATE api_keys SET allowed_senders = $1 WHERE id = $2")
                .bind(canonical.as_deref())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            let known = done.rows_affected() == 1;
            if known {
                sqlx::query(INSERT_CHANGE)
                    .bind(id)
                    .bind("senders")
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err())?;
            }
            tx.commit().await.map_err(err())?;
            Ok(known)
        })
    }

    /// Records when keys were last used (the proxy batches these). Unknown
    /// ids are ignored; a time older than the stored one does not win.
    pub async fn touch_last_used(
        &self,
        ids_and_times: &[(String, SystemTime)],
    ) -> Result<(), StoreError> {
        if ids_and_times.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool, engine| {
            let err = || self.query_err(format!("record last use of {} keys", ids_and_times.len()));
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            for (id, at) in ids_and_times {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1 \
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                )
                .bind(to_ms(*at))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            }
            tx.commit().await.map_err(err())?;
            Ok(())
        })
    }

    /// Ids of keys created or revoked after `cursor`, and the new cursor
    /// (unchanged when nothing happened). Start with [`Self::change_cursor`]
    /// (or 0 to see everything); poll about once a second and evict the
    /// returned ids from any cache. At most [`CHANGES_BATCH`] changes per
    /// call; an id appears once even if it changed several times.
    pub async fn changes_since(&self, cursor: i64) -> Result<(i64, Vec<String>), StoreError> {
        let rows: Vec<(i64, String)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT seq, key_id FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
        .bind(cursor)
        .bind(CHANGES_BATCH)
        .fetch_all(pool)
        .await
        .map_err(self.query_err("read key changes"))?);
        let next = rows.last().map_or(cursor, |(seq, _)| *seq);
        let mut ids: Vec<String> = Vec::with_capacity(rows.len());
        for (_, id) in rows {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok((next, ids))
    }

    /// The newest change's cursor (0 if none): where a gateway that has just
    /// loaded nothing into its cache starts polling.
    pub async fn change_cursor(&self) -> Result<i64, StoreError> {
        let (max,): (Option<i64>,) = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT MAX(seq) FROM key_changes"
        )
        .fetch_one(pool)
        .await
        .map_err(self.query_err("read key change cursor"))?);
        Ok(max.unwrap_or(0))
    }

    fn decode(&self, row: KeyRow) -> Result<KeyRecord, StoreError> {
        let KeyRow {
            id,
            account,
            scopes,
            secret_hash: hash,
            created_at: created,
            expires_at: expires,
            revoked_at: revoked,
            last_used_at: last_used,
            rate_limit,
            allowed_senders: senders,
        } = row;
        let secret_hash: [u8; 32] =
            hash.as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    target: self.target.to_string(),
                    id: id.clone(),
                    field: "secret_hash",
                })?;
        Ok(KeyRecord {
            scopes: scopes.split_whitespace().map(str::to_string).collect(),
            created_at: from_ms(created),
            expires_at: expires.map(from_ms),
            revoked_at: revoked.map(from_ms),
            last_used_at: last_used.map(from_ms),
            secret_hash,
            rate_limit,
            allowed_senders: senders,
            id,
            account,
        })
    }
}

/// Appends one row to `key_changes`; run inside the writer's transaction.
const INSERT_CHANGE: &str =
    "INSERT INTO key_changes (key_id, change, changed_at) VALUES ($1, $2, $3)";
