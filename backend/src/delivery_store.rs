//! The `deliveries`, `delivery_recipients` and `idempotency_keys` tables.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// A delivery as stored and returned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// UUID v7.
    pub id: String,
    /// Sender address.
    pub sender: String,
    /// Recipient addresses, in request order.
    pub recipients: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Message text.
    pub message: String,
    /// Ids of the stored files delivered.
    pub files: Vec<String>,
    /// Where the delivery came from (`api`, `smtp`, `imap:<name>`, ...).
    pub origin: String,
    /// `X-MFT-Principal` of the caller.
    pub created_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// An idempotency key and the delivery it produced.
pub struct KeyUse {
    /// Digest of the request the key was first used with.
    pub request_sha256: String,
    /// The delivery created then.
    pub delivery_id: String,
}

fn json_list(row: &SqliteRow, col: &str) -> sqlx::Result<Vec<String>> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn from_row(row: &SqliteRow) -> sqlx::Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        sender: row.try_get("sender")?,
        recipients: json_list(row, "recipients")?,
        subject: row.try_get("subject")?,
        message: row.try_get("message")?,
        files: json_list(row, "files")?,
        origin: row.try_get("origin")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The case-folded form the recipient filter compares.
pub fn fold(address: &str) -> String {
    address.to_lowercase()
}

/// Outcome of [`insert`].
pub enum Inserted {
    /// The delivery was stored.
    New,
    /// Another request stored a delivery under the same idempotency key first.
    KeyTaken,
}

/// Stores `d`, its recipient index and, if given, its idempotency key
/// (`scope`, `key`, request digest) in one transaction.
pub async fn insert(
    db: &SqlitePool,
    d: &Delivery,
    key: Option<(&str, &str, &str)>,
) -> sqlx::Result<Inserted> {
    let encode =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)));
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO deliveries (id, sender, recipients, subject, message, files, origin,
                                 created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&d.id)
    .bind(&d.sender)
    .bind(encode(&d.recipients)?)
    .bind(&d.subject)
    .bind(&d.message)
    .bind(encode(&d.files)?)
    .bind(&d.origin)
    .bind(&d.created_by)
    .bind(&d.created_at)
    .execute(&mut *tx)
    .await?;
    for address in &d.recipients {
        sqlx::query(
            "INSERT OR IGNORE INTO delivery_recipients (delivery_id, address_folded) VALUES (?, ?)",
        )
        .bind(&d.id)
        .bind(fold(address))
        .execute(&mut *tx)
        .await?;
    }
    if let Some((scope, key, digest)) = key {
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_sha256, delivery_id, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(scope)
        .bind(key)
        .bind(digest)
        .bind(&d.id)
        .bind(&d.created_at)
        .execute(&mut *tx)
        .await;
        match stored {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(Inserted::KeyTaken);
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(Inserted::New)
}

/// What an idempotency key was used for, if it was.
pub async fn key_use(db: &SqlitePool, scope: &str, key: &str) -> sqlx::Result<Option<KeyUse>> {
    let row = sqlx::query(
        "SELECT request_sha256, delivery_id FROM idempotency_keys WHERE scope = ? AND key = ?",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(KeyUse {
            request_sha256: r.try_get(0)?,
            delivery_id: r.try_get(1)?,
        })
    })
    .transpose()
}

/// The delivery with `id`, if any.
pub async fn get(db: &SqlitePool, id: &str) -> sqlx::Result<Option<Delivery>> {
    let row = sqlx::query("SELECT * FROM deliveries WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// All deliveries, or those addressed to `recipient` (case-insensitive), oldest first.
pub async fn list(db: &SqlitePool, recipient: Option<&str>) -> sqlx::Result<Vec<Delivery>> {
    let rows = match recipient {
        Some(r) => {
            sqlx::query(
                "SELECT d.* FROM deliveries d
                 JOIN delivery_recipients r ON r.delivery_id = d.id
                 WHERE r.address_folded = ?
                 ORDER BY d.created_at, d.id",
            )
            .bind(fold(r))
            .fetch_all(db)
            .await?
        }
        None => {
            sqlx::query("SELECT * FROM deliveries ORDER BY created_at, id")
                .fetch_all(db)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Position of the first of `ids` that names no stored file.
pub async fn missing_files(db: &SqlitePool, ids: &[String]) -> sqlx::Result<Option<usize>> {
    for (i, id) in ids.iter().enumerate() {
        let found = sqlx::query("SELECT 1 FROM files WHERE id = ?")
            .bind(id)
            .fetch_optional(db)
            .await?;
        if found.is_none() {
            return Ok(Some(i));
        }
    }
    Ok(None)
}
