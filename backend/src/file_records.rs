//! The `files` table: metadata of stored files.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteExecutor, SqlitePool};
use std::collections::HashSet;

/// Metadata of one stored file, as returned by the API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileRecord {
    /// UUID v7.
    pub id: String,
    /// Validated, NFC-normalised file name.
    pub name: String,
    /// Canonical folder path (`a/b`), `""` for the root.
    pub folder: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// `X-MFT-Principal` of the uploader, if the gateway named one.
    pub created_by: Option<String>,
}

const COLUMNS: &str = "id, name, folder, size, sha256, created_at, created_by";

fn from_row(row: &SqliteRow) -> sqlx::Result<FileRecord> {
    let size: i64 = row.try_get("size")?;
    Ok(FileRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        folder: row.try_get("folder")?,
        size: u64::try_from(size).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

fn to_i64(size: u64) -> sqlx::Result<i64> {
    i64::try_from(size).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Inserts `rec`; `INSERT OR IGNORE` so that finishing an interrupted tus
/// upload or transfer a second time is harmless.
pub async fn insert<'e>(exec: impl SqliteExecutor<'e>, rec: &FileRecord) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO files (id, name, folder, size, sha256, created_at, created_by)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&rec.id)
    .bind(&rec.name)
    .bind(&rec.folder)
    .bind(to_i64(rec.size)?)
    .bind(&rec.sha256)
    .bind(&rec.created_at)
    .bind(&rec.created_by)
    .execute(exec)
    .await?;
    Ok(())
}

/// The file stored earlier under idempotency `key` by `scope`, if it still exists.
pub async fn by_idempotency_key(
    db: &SqlitePool,
    scope: &str,
    key: &str,
) -> sqlx::Result<Option<FileRecord>> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT file_id FROM file_idempotency_keys WHERE scope = ? AND key = ?")
            .bind(scope)
            .bind(key)
            .fetch_optional(db)
            .await?;
    match id {
        Some(id) => get(db, &id).await,
        None => Ok(None),
    }
}

/// Inserts `rec` and remembers it under idempotency `key`, in one
/// transaction. If another request stored a file under the same key first,
/// that file is returned and `rec` is left unreferenced (its bytes stay; a
/// duplicate is cheaper than a lost upload).
pub async fn insert_with_key(
    db: &SqlitePool,
    rec: &FileRecord,
    scope: &str,
    key: &str,
) -> sqlx::Result<Option<FileRecord>> {
    let mut tx = db.begin().await?;
    insert(&mut *tx, rec).await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO file_idempotency_keys (scope, key, file_id, created_at)
         VALUES (?, ?, ?, ?)",
    )
    .bind(scope)
    .bind(key)
    .bind(&rec.id)
    .bind(&rec.created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if inserted == 1 {
        return Ok(None);
    }
    by_idempotency_key(db, scope, key).await
}

/// The file with `id`, if any.
pub async fn get<'e>(exec: impl SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<FileRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM files WHERE id = ?"))
        .bind(id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// All files, or those directly in `folder`, oldest first.
pub async fn list(db: &SqlitePool, folder: Option<&str>) -> sqlx::Result<Vec<FileRecord>> {
    let rows = match folder {
        Some(folder) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM files WHERE folder = ? ORDER BY created_at, id"
            ))
            .bind(folder)
            .fetch_all(db)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM files ORDER BY created_at, id"
            ))
            .fetch_all(db)
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// The files called `name` directly in `folder`, oldest first.
pub async fn list_named(
    db: &SqlitePool,
    folder: &str,
    name: &str,
) -> sqlx::Result<Vec<FileRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM files WHERE folder = ? AND name = ? ORDER BY created_at, id"
    ))
    .bind(folder)
    .bind(name)
    .fetch_all(db)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Where a page of a folder starts: after this file in the page order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PageKey {
    /// Name of the last file of the previous page.
    pub name: String,
    /// Its `created_at`.
    pub created_at: String,
    /// Its id.
    pub id: String,
}

/// Up to `limit` files directly in `folder`, by name, the newest first
/// within one name, starting after `after`; plus whether more follow.
pub async fn page(
    db: &SqlitePool,
    folder: &str,
    limit: i64,
    after: Option<&PageKey>,
) -> sqlx::Result<(Vec<FileRecord>, bool)> {
    // One more than asked tells whether another page follows.
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM files WHERE folder = ? \
                 ORDER BY name, created_at DESC, id DESC LIMIT ?"
            ))
            .bind(folder)
            .bind(limit + 1)
            .fetch_all(db)
            .await?
        }
        Some(k) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM files WHERE folder = ? AND (name > ? OR (name = ? AND \
                 (created_at < ? OR (created_at = ? AND id < ?)))) \
                 ORDER BY name, created_at DESC, id DESC LIMIT ?"
            ))
            .bind(folder)
            .bind(&k.name)
            .bind(&k.name)
            .bind(&k.created_at)
            .bind(&k.created_at)
            .bind(&k.id)
            .bind(limit + 1)
            .fetch_all(db)
            .await?
        }
    };
    let mut files = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let more = files.len() as i64 > limit;
    files.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((files, more))
}

/// Names of the folders directly below `folder` (`""`: the root) that hold
/// files somewhere beneath them, sorted. Reads only the distinct folder
/// paths below `folder`, never the files.
pub async fn child_folders(db: &SqlitePool, folder: &str) -> sqlx::Result<Vec<String>> {
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    // Paths below `a` sort from `a/` up to (not including) `a0`, `0`
    // being the character after `/`: a range over the folder index.
    let rows: Vec<(String,)> = if folder.is_empty() {
        sqlx::query_as("SELECT DISTINCT folder FROM files WHERE folder <> ''")
            .fetch_all(db)
            .await?
    } else {
        sqlx::query_as("SELECT DISTINCT folder FROM files WHERE folder >= ? AND folder < ?")
            .bind(&prefix)
            .bind(format!("{folder}0"))
            .fetch_all(db)
            .await?
    };
    let children: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|(f,)| f.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('/').next())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    Ok(children.into_iter().collect())
}

/// Renames or moves a file; `false` if there was no such row.
pub async fn rename(db: &SqlitePool, id: &str, name: &str, folder: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE files SET name = ?, folder = ? WHERE id = ?")
        .bind(name)
        .bind(folder)
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes the row; `false` if there was none.
pub async fn delete(db: &SqlitePool, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM files WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every name under `files/` that metadata refers to or reserves: stored
/// files, and the target ids of tus uploads not yet finished.
pub async fn referenced_ids(db: &SqlitePool) -> sqlx::Result<HashSet<String>> {
    let rows = sqlx::query("SELECT id FROM files UNION SELECT file_id FROM uploads")
        .fetch_all(db)
        .await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}
