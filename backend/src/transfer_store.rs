//! The `transfers` table.

use crate::file_records::{self, FileRecord};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// Waiting for a worker.
pub const QUEUED: &str = "queued";
/// Being copied.
pub const RUNNING: &str = "running";
/// Copied; `result_file_id` names the copy.
pub const COMPLETED: &str = "completed";
/// Gave up; `error` says why.
pub const FAILED: &str = "failed";

/// A server-side copy of a stored file into a folder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Transfer {
    /// UUID v7.
    pub id: String,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    /// The file being copied.
    pub file_id: String,
    /// Target folder of the copy.
    pub folder: String,
    /// Name of the copy; the source's name when absent.
    pub name: Option<String>,
    /// The copy, once completed.
    pub result_file_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC of the last status change.
    pub updated_at: String,
    /// `X-MFT-Principal` of the caller.
    pub created_by: Option<String>,
}

fn from_row(row: &SqliteRow) -> sqlx::Result<Transfer> {
    Ok(Transfer {
        id: row.try_get("id")?,
        status: row.try_get("status")?,
        file_id: row.try_get("file_id")?,
        folder: row.try_get("folder")?,
        name: row.try_get("name")?,
        result_file_id: row.try_get("result_file_id")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        created_by: row.try_get("created_by")?,
    })
}

/// Records a new transfer.
pub async fn insert(db: &SqlitePool, t: &Transfer) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO transfers (id, status, file_id, folder, name, result_file_id, error,
                                created_at, updated_at, created_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(&t.status)
    .bind(&t.file_id)
    .bind(&t.folder)
    .bind(&t.name)
    .bind(&t.result_file_id)
    .bind(&t.error)
    .bind(&t.created_at)
    .bind(&t.updated_at)
    .bind(&t.created_by)
    .execute(db)
    .await?;
    Ok(())
}

/// The transfer with `id`, if any.
pub async fn get(db: &SqlitePool, id: &str) -> sqlx::Result<Option<Transfer>> {
    let row = sqlx::query("SELECT * FROM transfers WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Sets `status` (and `error`, for `failed`).
pub async fn set_status(
    db: &SqlitePool,
    id: &str,
    status: &str,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE transfers SET status = ?, error = ?, updated_at = ? WHERE id = ?")
        .bind(status)
        .bind(error)
        .bind(crate::ids::now())
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Stores the copy's record and marks the transfer completed, atomically,
/// so a crash never shows a completed transfer without its file.
pub async fn complete(db: &SqlitePool, id: &str, copy: &FileRecord) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    file_records::insert(&mut *tx, copy).await?;
    sqlx::query(
        "UPDATE transfers SET status = ?, result_file_id = ?, error = NULL, updated_at = ?
         WHERE id = ?",
    )
    .bind(COMPLETED)
    .bind(&copy.id)
    .bind(crate::ids::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Ids of transfers a previous run left unfinished, oldest first.
pub async fn unfinished(db: &SqlitePool) -> sqlx::Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT id FROM transfers WHERE status IN (?, ?) ORDER BY created_at, id")
            .bind(QUEUED)
            .bind(RUNNING)
            .fetch_all(db)
            .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}
