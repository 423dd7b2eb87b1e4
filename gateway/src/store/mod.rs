//! The gateway's database: SQLite (one file in `data_dir`) by default,
//! PostgreSQL when several gateway instances share it. One [`Store`] handle
//! holds API keys, trust partners, the relay queue and inbound files, the
//! mailbox pollers' positions, DMZ connectors, webhooks, outbound transports,
//! admins and SFTP users added at run time; one file per table (or pair of
//! tables that only make sense together), each adding its methods to
//! [`Store`].
//!
//! Only runtime queries (`sqlx::query`), never the compile-time checked
//! macros, so building needs no database. Both engines get the same schema
//! (see [`migrations`]) and the same SQL: `$1`-style parameters work in both,
//! and every column is an integer, text or bytes. Rows are read into
//! `sqlx::FromRow` structs by column name, then turned into the public
//! records.

mod error;
pub mod migrations;
mod validate;

pub use error::StoreError;
pub use validate::{
    validate_account, validate_scopes, validate_senders, MAX_ACCOUNT_LEN, MAX_SCOPES, MAX_SCOPE_LEN,
};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File name of the default SQLite store inside `data_dir`.
pub const SQLITE_FILE: &str = "keys.sqlite";

/// How long a SQLite statement waits for another process's write lock (the
/// CLI and a running gateway share the file) before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where "now" comes from; tests inject a fake one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

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
/// Every store operation passes here once, which [`Store::operations`] counts.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $engine:ident| $body:expr) => {{
        $store.counters.operation();
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
    }};
}

/// Counters shared by every clone of one [`Store`] handle.
#[derive(Default)]
struct Counters {
    /// Operations (one `on_pool!` each) since the store was opened.
    operations: AtomicU64,
    /// Writes to `partners` through this handle since it was opened.
    partner_writes: AtomicU64,
    /// Subscriptions added through this handle since it was opened.
    webhook_adds: AtomicU64,
    /// SFTP users added or removed through this handle since it was opened.
    sftp_user_writes: AtomicU64,
}

impl Counters {
    fn operation(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }
}

/// Handle on the gateway's database; cheap to clone (the pool and the
/// counters are shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Human description of the store without any password, for errors.
    target: Arc<str>,
    clock: Clock,
    counters: Arc<Counters>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store and brings its schema up to date.
    ///
    /// `url`: `None` → SQLite file `data_dir/keys.sqlite` (directory and file
    /// created if missing); `Some("postgres://...")` (or `postgresql://`) →
    /// a PostgreSQL pool; `Some("sqlite:PATH")` → that SQLite file.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
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
    pub async fn open_sqlite_file(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        create_private_file(path);
        Self::open_sqlite(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<Store, StoreError> {
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

    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
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

    fn with_pool(pool: Pool, target: String) -> Store {
        Store {
            pool,
            target: target.into(),
            clock: Arc::new(SystemTime::now),
            counters: Arc::default(),
        }
    }

    /// Store operations (queries or transactions) made through this handle
    /// and its clones: lets tests prove a path never reaches the database.
    pub fn operations(&self) -> u64 {
        self.counters.operations.load(Ordering::Relaxed)
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Store {
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

    /// Now, on the store's clock (tests move it): what job ages and due
    /// times are measured against.
    pub fn now(&self) -> SystemTime {
        (self.clock)()
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
}

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

/// A duration in whole milliseconds, as the store keeps delays.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

// After `on_pool!`, which they use (textual macro scope).
pub mod admin_sessions;
pub mod admins;
pub mod connectors;
mod gateway_state;
pub mod inbound_files;
pub mod keys;
pub mod lease;
pub mod mailbox_state;
pub mod outbound_messages;
pub mod partners;
pub mod relay;
pub mod relay_receipts;
pub mod retention;
pub mod sftp_deliveries;
pub mod sftp_users;
pub mod transports;
pub mod webhook_messages;
pub mod webhooks;

pub use keys::{KeyRecord, KeyStatus, CHANGES_BATCH};

#[cfg(test)]
mod tests;
