//! The service-account API-key store: SQLite (one file in `data_dir`) by
//! default, PostgreSQL when several gateway instances share keys.
//!
//! Only runtime queries (`sqlx::query`), never the compile-time checked
//! macros, so building needs no database. Both engines get the same schema
//! (see [`migrations`]) and the same SQL: `$1`-style parameters work in both,
//! and every column is an integer, text or bytes.
//!
//! Keys are generated and verified by [`mft_filters::auth::api_key`]: the
//! store sees the public id and the SHA-256 of the secret, never the secret.
//!
//! # Revocation reaching running gateways
//!
//! Every write that a gateway's key cache must notice (creation, revocation)
//! appends a row to `key_changes` in the same transaction. Rows get a
//! monotonically increasing `seq`; a gateway remembers the highest `seq` it
//! has seen and calls [`KeyStore::changes_since`] every second to evict the
//! changed ids. This works across processes (the `keys` CLI writes, the
//! gateway reads) and across hosts with PostgreSQL. See docs/keys.md.

mod error;
pub mod migrations;
mod validate;

pub use error::StoreError;
pub use validate::{
    validate_account, validate_scopes, validate_senders, MAX_ACCOUNT_LEN, MAX_SCOPES, MAX_SCOPE_LEN,
};

use mft_filters::auth::api_key;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File name of the default SQLite store inside `data_dir`.
pub const SQLITE_FILE: &str = "keys.sqlite";

/// How long a SQLite statement waits for another process's write lock (the
/// CLI and a running gateway share the file) before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Most change rows one [`KeyStore::changes_since`] call returns; the caller
/// simply polls again with the new cursor.
pub const CHANGES_BATCH: i64 = 1000;

/// Where "now" comes from; tests inject a fake one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

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

/// `2025-01-31T12:00:00Z`, whole seconds, as key times are shown everywhere.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The two engines differ in how a writing transaction starts.
#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// SQLite: take the write lock up front, so the busy timeout applies and a
    /// transaction never fails halfway on a lock upgrade.
    fn begin(self) -> &'static str {
        match self {
            Engine::Sqlite => "BEGIN IMMEDIATE",
            Engine::Postgres => "BEGIN",
        }
    }

    /// PostgreSQL: identity values are handed out before commit, so two
    /// concurrent writers could commit seq 11 before seq 10 and a poller that
    /// already moved its cursor to 11 would never see 10. Serialising the
    /// writers of `key_changes` (readers are not blocked) makes seq order
    /// commit order. SQLite has a single writer anyway.
    fn lock_changes(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some("LOCK TABLE key_changes IN EXCLUSIVE MODE"),
        }
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$engine` to its
/// [`Engine`]: the SQL is the same for both, only the Rust types differ.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $engine:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $engine = Engine::Sqlite;
                $body
            }
            Pool::Postgres($pool) => {
                #[allow(unused_variables)]
                let $engine = Engine::Postgres;
                $body
            }
        }
    };
}

// After the macro: textual scope.
pub mod partners;

/// `id, account, scopes, secret_hash, created_at, expires_at, revoked_at,
/// last_used_at, rate_limit, allowed_senders` — the order of [`RawKey`].
const KEY_COLUMNS: &str =
    "id, account, scopes, secret_hash, created_at, expires_at, revoked_at, last_used_at, rate_limit, allowed_senders";

type RawKey = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Handle on the key store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct KeyStore {
    pool: Pool,
    /// Human description of the store without any password, for errors.
    target: Arc<str>,
    clock: Clock,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens the store and brings its schema up to date.
    ///
    /// `url`: `None` → SQLite file `data_dir/keys.sqlite` (directory and file
    /// created if missing); `Some("postgres://...")` (or `postgresql://`) →
    /// a PostgreSQL pool; `Some("sqlite:PATH")` → that SQLite file.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<KeyStore, StoreError> {
        match url {
            None => Self::open_sqlite_file(&data_dir.join(SQLITE_FILE)).await,
            Some(url) => match url.split_once(':').map(|(scheme, _)| scheme) {
                Some("postgres" | "postgresql") => Self::open_postgres(url).await,
                Some("sqlite") => {
                    let options =
                        SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Open {
                            target: "sqlite (URL)".to_string(),
                            source,
                        })?;
                    Self::open_sqlite(options).await
                }
                other => Err(StoreError::UnsupportedUrl {
                    scheme: other.unwrap_or(url).chars().take(32).collect(),
                }),
            },
        }
    }

    /// Opens (creating it if needed) the SQLite store at `path`.
    pub async fn open_sqlite_file(path: &Path) -> Result<KeyStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        create_private_file(path);
        Self::open_sqlite(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<KeyStore, StoreError> {
        let target = format!("sqlite {}", options.get_filename().display());
        let options = options
            .create_if_missing(true)
            // WAL: readers (the gateway) never block the writer (the CLI) and
            // the other way round; NORMAL is durable across process crashes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        // Switching a new file to WAL needs an exclusive lock that SQLite's
        // busy timeout does not wait for: when the CLI and the gateway create
        // the file at the same moment, one gets "database is locked" at once.
        // Once the file is in WAL mode (persistent) this cannot happen, so
        // retrying the open for a while is enough.
        let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        let pool = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(SQLITE_BUSY_TIMEOUT + Duration::from_secs(5))
                .connect_with(options.clone())
                .await;
            match opened {
                Ok(pool) => break pool,
                Err(e) if is_sqlite_busy(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        target: target.clone(),
                        source,
                    })
                }
            }
        };
        let migrator = migrations::sqlite()
            .await
            .map_err(|source| StoreError::Migrate {
                target: target.clone(),
                source,
            })?;
        // SQLite has no migration lock: two processes opening a new file at
        // the same moment may both try version 1; the loser fails (table
        // exists / duplicate version) and, run again, finds it applied.
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                // Only statement failures can be the race; a schema newer than
                // this binary or an edited migration is reported at once.
                Err(
                    sqlx::migrate::MigrateError::Execute(_)
                    | sqlx::migrate::MigrateError::ExecuteMigration(..),
                ) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(source) => {
                    return Err(StoreError::Migrate { target, source });
                }
            }
        }
        Ok(Self::with_pool(Pool::Sqlite(pool), target))
    }

    async fn open_postgres(url: &str) -> Result<KeyStore, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
            target: "postgres (URL)".to_string(),
            source,
        })?;
        let target = describe_postgres(&options);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                target: target.clone(),
                source,
            })?;
        // The PostgreSQL migrator holds an advisory lock: concurrent starts are safe.
        let migrator = migrations::postgres()
            .await
            .map_err(|source| StoreError::Migrate {
                target: target.clone(),
                source,
            })?;
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                target: target.clone(),
                source,
            })?;
        Ok(Self::with_pool(Pool::Postgres(pool), target))
    }

    fn with_pool(pool: Pool, target: String) -> KeyStore {
        KeyStore {
            pool,
            target: target.into(),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> KeyStore {
        self.clock = clock;
        self
    }

    /// The store, described without any password: `sqlite /path/keys.sqlite`
    /// or `postgres://user@host:port/db`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether this store is PostgreSQL (shared by several instances).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Closes every pooled connection (SQLite: checkpoints the WAL when the
    /// last connection closes). Clones of this handle stop working.
    pub async fn close(&self) {
        on_pool!(self, |pool, _e| pool.close().await)
    }

    fn now_ms(&self) -> i64 {
        to_ms((self.clock)())
    }

    /// Writes a consistent copy of a SQLite store to `dest`, a file that
    /// must not exist yet (SQLite's `VACUUM INTO`: one read transaction, so
    /// it is safe while the gateway runs and writes). A PostgreSQL store is
    /// backed up with PostgreSQL's own tools (`pg_dump`): `Ok(false)`.
    pub async fn backup_sqlite(&self, dest: &Path) -> Result<bool, StoreError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(false);
        };
        let dest_text = dest.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO ?")
            .bind(&dest_text)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("write a backup to {dest_text}")))?;
        Ok(true)
    }

    fn query_err(&self, action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        let action = action.into();
        move |source| StoreError::Query {
            target: self.target.to_string(),
            action,
            source,
        }
    }

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

    /// Like [`KeyStore::create_key`], with the account's own rate limit
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

    /// Like [`KeyStore::create_key_with_limit`], bound to `allowed_senders`
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
        let raw: Option<RawKey> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err(format!("read key {id}")))?);
        raw.map(|r| self.decode(r)).transpose()
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        let raw: Vec<RawKey> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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

    fn decode(&self, raw: RawKey) -> Result<KeyRecord, StoreError> {
        let (id, account, scopes, hash, created, expires, revoked, last_used, rate_limit, senders) =
            raw;
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

/// SQLITE_BUSY or one of its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...).
fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 5),
        _ => false,
    }
}

/// Year 9999: far enough for any expiry, small enough for every formatter.
const MAX_TIME_MS: i64 = 253_402_300_799_000;

fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis())
            .unwrap_or(i64::MAX)
            .min(MAX_TIME_MS),
        Err(_) => 0,
    }
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `postgres://user@host:port/db`: enough to tell stores apart, no password.
fn describe_postgres(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_string(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Creates the SQLite file readable by its owner only (SQLite gives its WAL
/// and shared-memory files the same mode). Best effort: if this fails, SQLite
/// reports the real problem when it opens the file.
fn create_private_file(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
}

// After `on_pool!`, which the tests use too.
// After `on_pool!`, which it uses.
pub mod admins;
pub mod connectors;
pub mod mailbox_state;
pub mod relay;
pub mod transports;
pub mod webhooks;

#[cfg(test)]
mod tests;
