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

/// One statement per table or index, each idempotent, run at every start.
const SCHEMA: &[(&str, &str)] = &[
    (
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
    (
        "create index files_folder",
        "CREATE INDEX IF NOT EXISTS files_folder ON files (folder, created_at)",
    ),
    (
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
    (
        "create table deliveries",
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
    (
        "create table delivery_recipients",
        // Lower-cased copies for the case-insensitive ?recipient= filter;
        // SQLite's lower() only folds ASCII.
        "CREATE TABLE IF NOT EXISTS delivery_recipients (
            delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
            address_folded TEXT NOT NULL,
            PRIMARY KEY (delivery_id, address_folded)
        )",
    ),
    (
        "create index delivery_recipients_address",
        "CREATE INDEX IF NOT EXISTS delivery_recipients_address
            ON delivery_recipients (address_folded)",
    ),
    (
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
    (
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
    (
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
    for (op, sql) in SCHEMA {
        sqlx::query(sql).execute(&pool).await.map_err(db_err(op))?;
    }
    Ok(pool)
}
