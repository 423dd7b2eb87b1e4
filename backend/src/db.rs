//! The SQLite metadata database: connection settings and schema.
//!
//! WAL lets readers (listings, downloads) run beside the single writer, and
//! `synchronous = FULL` makes a committed row survive a power cut, which the
//! tus offset bookkeeping relies on.

use crate::error::BackendError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;

/// One step of the schema, each idempotent, run in order at every start.
enum Step {
    /// A statement that is safe to repeat (`CREATE ... IF NOT EXISTS`).
    Sql(&'static str, &'static str),
    /// A column that databases created by an older schema lack: added when
    /// missing, then `backfill` fills it for the rows that existed, all in
    /// one transaction so a crash cannot leave the column half filled.
    AddColumn {
        op: &'static str,
        table: &'static str,
        column: &'static str,
        decl: &'static str,
        backfill: &'static str,
    },
}

use Step::{AddColumn, Sql};

const SCHEMA: &[Step] = &[
    Sql(
        "create table files",
        "CREATE TABLE IF NOT EXISTS files (
            id TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            folder TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT
        )",
    ),
    Sql(
        "create index files_folder",
        "CREATE INDEX IF NOT EXISTS files_folder ON files (folder, created_at)",
    ),
    Sql(
        "create table uploads",
        // file_id is reserved at creation so that finishing an upload is
        // idempotent: a restart in the middle finds the same target name.
        "CREATE TABLE IF NOT EXISTS uploads (
            id TEXT PRIMARY KEY NOT NULL,
            upload_length INTEGER NOT NULL,
            upload_offset INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            name TEXT NOT NULL,
            folder TEXT NOT NULL,
            file_id TEXT NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            created_by TEXT
        )",
    ),
    Sql(
        "create table deliveries",
        // seq is added by the next step, for new and old databases alike.
        "CREATE TABLE IF NOT EXISTS deliveries (
            id TEXT PRIMARY KEY NOT NULL,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            message TEXT NOT NULL,
            files TEXT NOT NULL,
            origin TEXT NOT NULL,
            created_by TEXT,
            created_at TEXT NOT NULL
        )",
    ),
    AddColumn {
        op: "add column deliveries.seq",
        // The change feed's position (GET /api/v1/deliveries?after_seq=).
        // Not the implicit rowid: VACUUM may renumber that on a table without
        // an INTEGER PRIMARY KEY, and a poller's saved position must stay
        // valid. Rows from before the column keep their insertion order.
        table: "deliveries",
        column: "seq",
        decl: "INTEGER",
        backfill: "UPDATE deliveries SET seq = rowid WHERE seq IS NULL",
    },
    Sql(
        "create index deliveries_seq",
        "CREATE UNIQUE INDEX IF NOT EXISTS deliveries_seq ON deliveries (seq)",
    ),
    Sql(
        "create table delivery_recipients",
        // Lower-cased copies for the case-insensitive ?recipient= filter;
        // SQLite's lower() only folds ASCII.
        "CREATE TABLE IF NOT EXISTS delivery_recipients (
            delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            address_folded TEXT NOT NULL,
            PRIMARY KEY (delivery_id, address_folded)
        )",
    ),
    Sql(
        "create index delivery_recipients_address",
        "CREATE INDEX IF NOT EXISTS delivery_recipients_address
            ON delivery_recipients (address_folded)",
    ),
    Sql(
        "create table idempotency_keys",
        "CREATE TABLE IF NOT EXISTS idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (scope, key)
        )",
    ),
    Sql(
        "create table delivery_relays",
        // Per recipient, how the gateway's relay to a partner organisation
        // went. `recipient` is spelled as in the delivery.
        "CREATE TABLE IF NOT EXISTS delivery_relays (
            delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            partner TEXT NOT NULL,
            status TEXT NOT NULL,
            detail TEXT,
            remote_delivery_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (delivery_id, recipient)
        )",
    ),
    Sql(
        "create table delivery_receipts",
        "CREATE TABLE IF NOT EXISTS delivery_receipts (
            delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            file_id TEXT NOT NULL,
            partner TEXT NOT NULL,
            downloaded_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (delivery_id, file_id, partner)
        )",
    ),
    Sql(
        "create table file_idempotency_keys",
        // A retried POST /api/v1/files with the same key returns the first
        // file, so a bridge that lost the answer cannot store a file twice and
        // its retried delivery stays byte-identical (same file ids).
        "CREATE TABLE IF NOT EXISTS file_idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (scope, key)
        )",
    ),
    Sql(
        "create index files_folder_name",
        // Pages of one folder by name (`GET /api/v1/files?folder=&limit=`).
        "CREATE INDEX IF NOT EXISTS files_folder_name ON files (folder, name, created_at, id)",
    ),
    Sql(
        "create table transfers",
        "CREATE TABLE IF NOT EXISTS transfers (
            id TEXT PRIMARY KEY NOT NULL,
            file_id TEXT NOT NULL,
            folder TEXT NOT NULL,
            name TEXT,
            status TEXT NOT NULL,
            result_file_id TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            created_by TEXT
        )",
    ),
];

/// Opens (creating if needed) the database at `path` and applies the schema.
pub async fn open(path: &Path) -> Result<SqlitePool, BackendError> {
    let db_err = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| BackendError::Database { op, path, source }
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(db_err("open"))?;
    for step in SCHEMA {
        match step {
            Sql(op, sql) => {
                sqlx::query(sql).execute(&pool).await.map_err(db_err(op))?;
            }
            AddColumn {
                op,
                table,
                column,
                decl,
                backfill,
            } => add_column(&pool, table, column, decl, backfill)
                .await
                .map_err(db_err(op))?,
        }
    }
    Ok(pool)
}

/// Adds `table.column` unless it exists, and runs `backfill` when it was added.
async fn add_column(
    pool: &SqlitePool,
    table: &str,
    column: &str,
    decl: &str,
    backfill: &str,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let present = sqlx::query("SELECT 1 FROM pragma_table_info(?) WHERE name = ?")
        .bind(table)
        .bind(column)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if present {
        return tx.commit().await;
    }
    // Names come from the SCHEMA constant, never from a request.
    sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(backfill).execute(&mut *tx).await?;
    tx.commit().await
}
