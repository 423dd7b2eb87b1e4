//! The `uploads` table and the on-disk partial files of tus uploads.
//!
//! Invariant: the offset in SQLite never exceeds the bytes on disk, because
//! a PATCH fsyncs the partial file before it records the new offset. Bytes
//! beyond the recorded offset (a crash between the two) are cut off at
//! startup and before every PATCH, so HEAD's offset is always a safe
//! place to resume from.

use crate::error::BackendError;
use crate::file_records::{self, FileRecord};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::storage;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// One tus upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Upload id (UUID v7), the last segment of its URL.
    pub id: String,
    /// Declared `Upload-Length`; while `deferred`, the most it may reach
    /// (`Tus-Max-Size`), so the size checks need no special case.
    pub length: u64,
    /// Created with `Upload-Defer-Length: 1` and no length declared yet.
    pub deferred: bool,
    /// Bytes received, fsynced and recorded.
    pub offset: u64,
    /// The `Upload-Metadata` header as received, echoed by HEAD.
    pub metadata: String,
    /// Validated file name from the metadata.
    pub name: String,
    /// Canonical folder from the metadata.
    pub folder: String,
    /// Id the stored file gets when the upload completes.
    pub file_id: String,
    /// Whether the file record exists.
    pub completed: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// `X-MFT-Principal` of the creator.
    pub created_by: Option<String>,
}

fn u64_col(row: &SqliteRow, col: &str) -> sqlx::Result<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn i64_of(v: u64) -> sqlx::Result<i64> {
    i64::try_from(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// `upload_length` of an upload whose length is deferred (creation-defer-length).
const DEFERRED: i64 = -1;

fn from_row(row: &SqliteRow) -> sqlx::Result<Upload> {
    let raw_length: i64 = row.try_get("upload_length")?;
    let deferred = raw_length == DEFERRED;
    Ok(Upload {
        id: row.try_get("id")?,
        length: if deferred {
            crate::tus_protocol::MAX_SIZE
        } else {
            u64_col(row, "upload_length")?
        },
        deferred,
        offset: u64_col(row, "upload_offset")?,
        metadata: row.try_get("metadata")?,
        name: row.try_get("name")?,
        folder: row.try_get("folder")?,
        file_id: row.try_get("file_id")?,
        completed: row.try_get::<i64, _>("completed")? != 0,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

/// Records a new upload.
pub async fn insert(db: &SqlitePool, u: &Upload) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO uploads (id, upload_length, upload_offset, metadata, name, folder,
                              file_id, completed, created_at, created_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&u.id)
    .bind(if u.deferred {
        DEFERRED
    } else {
        i64_of(u.length)?
    })
    .bind(i64_of(u.offset)?)
    .bind(&u.metadata)
    .bind(&u.name)
    .bind(&u.folder)
    .bind(&u.file_id)
    .bind(i64::from(u.completed))
    .bind(&u.created_at)
    .bind(&u.created_by)
    .execute(db)
    .await?;
    Ok(())
}

/// The upload with `id`, if any.
pub async fn get(db: &SqlitePool, id: &str) -> sqlx::Result<Option<Upload>> {
    let row = sqlx::query("SELECT * FROM uploads WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Records a new offset; call only after the bytes are fsynced.
pub async fn set_offset(db: &SqlitePool, id: &str, offset: u64) -> sqlx::Result<()> {
    sqlx::query("UPDATE uploads SET upload_offset = ? WHERE id = ?")
        .bind(i64_of(offset)?)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Declares the length of a deferred upload.
pub async fn set_length(db: &SqlitePool, id: &str, length: u64) -> sqlx::Result<()> {
    sqlx::query("UPDATE uploads SET upload_length = ? WHERE id = ?")
        .bind(i64_of(length)?)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Removes the row; `false` if there was none.
pub async fn delete(db: &SqlitePool, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Turns a fully received upload into a stored file. Safe to repeat after
/// a crash at any step: the target id was fixed at creation and the insert
/// ignores an existing row.
pub async fn finalize(state: &AppState, upload: &Upload) -> Result<FileRecord, ApiError> {
    let partial = state.storage.upload_path(&upload.id);
    let target = state.storage.file_path(&upload.file_id);
    if tokio::fs::try_exists(&partial).await? {
        tokio::fs::rename(&partial, &target).await?;
        storage::sync_dir(state.storage.files_dir()).await?;
    }
    let (size, sha256) = storage::hash_file(&target).await?;
    if size != upload.length {
        tracing::error!(upload_id = %upload.id, size, length = upload.length,
            "finished upload has the wrong size on disk");
        return Err(ApiError::internal());
    }
    let record = FileRecord {
        id: upload.file_id.clone(),
        name: upload.name.clone(),
        folder: upload.folder.clone(),
        size,
        sha256,
        created_at: crate::ids::now(),
        created_by: upload.created_by.clone(),
    };
    let mut tx = state.db.begin().await?;
    file_records::insert(&mut *tx, &record).await?;
    sqlx::query("UPDATE uploads SET completed = 1, upload_offset = upload_length WHERE id = ?")
        .bind(&upload.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // The stored row wins if an earlier attempt already inserted it.
    Ok(file_records::get(&state.db, &record.id)
        .await?
        .unwrap_or(record))
}

/// Cuts the partial file back to the recorded offset (dropping bytes that
/// were written but never recorded) and returns it opened for writing.
pub async fn open_at_offset(state: &AppState, upload: &Upload) -> std::io::Result<tokio::fs::File> {
    let path = state.storage.upload_path(&upload.id);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .await?;
    let on_disk = file.metadata().await?.len();
    if on_disk < upload.offset {
        return Err(std::io::Error::other(format!(
            "{} holds {on_disk} bytes but {} are recorded",
            path.display(),
            upload.offset
        )));
    }
    if on_disk > upload.offset {
        file.set_len(upload.offset).await?;
        file.sync_all().await?;
    }
    Ok(file)
}

/// Startup: brings every unfinished upload back to a consistent state.
pub async fn recover(state: &AppState) -> Result<(), BackendError> {
    let db_err = |source| BackendError::Database {
        op: "read unfinished uploads",
        path: state.storage.database_path(),
        source,
    };
    let rows = sqlx::query("SELECT * FROM uploads WHERE completed = 0")
        .fetch_all(&state.db)
        .await
        .map_err(db_err)?;
    for row in &rows {
        let upload = from_row(row).map_err(db_err)?;
        if let Err(e) = recover_one(state, &upload).await {
            tracing::error!(upload_id = %upload.id, error = %e, "cannot recover upload");
        }
    }
    Ok(())
}

async fn recover_one(state: &AppState, upload: &Upload) -> Result<(), ApiError> {
    let partial = state.storage.upload_path(&upload.id);
    let target = state.storage.file_path(&upload.file_id);
    if !upload.deferred
        && upload.offset == upload.length
        && (tokio::fs::try_exists(&partial).await? || tokio::fs::try_exists(&target).await?)
    {
        finalize(state, upload).await?;
        tracing::info!(upload_id = %upload.id, "finished an upload interrupted at completion");
        return Ok(());
    }
    let on_disk = match tokio::fs::metadata(&partial).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    if on_disk < upload.offset {
        // Only possible if the partial file was damaged from outside; the
        // client resumes from what is really there.
        tracing::warn!(upload_id = %upload.id, on_disk, recorded = upload.offset,
            "partial upload is shorter than recorded; resetting offset");
        set_offset(&state.db, &upload.id, on_disk).await?;
    }
    let fixed = Upload {
        offset: upload.offset.min(on_disk),
        ..upload.clone()
    };
    open_at_offset(state, &fixed).await?;
    Ok(())
}
