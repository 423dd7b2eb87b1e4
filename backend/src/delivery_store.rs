//! The `deliveries`, `delivery_recipients` and `idempotency_keys` tables,
//! and deliveries read back with their relay status and receipts.

use crate::relay_store::{self, Receipt, Relay};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

/// A delivery as stored and returned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// UUID v7.
    pub id: String,
    /// Position in the change feed: increases in commit order.
    pub seq: i64,
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
    /// Relay status per recipient, in recipient order.
    pub relay: Vec<Relay>,
    /// Download receipts from partners, in recording order.
    pub receipts: Vec<Receipt>,
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
        seq: row.try_get("seq")?,
        sender: row.try_get("sender")?,
        recipients: json_list(row, "recipients")?,
        subject: row.try_get("subject")?,
        message: row.try_get("message")?,
        files: json_list(row, "files")?,
        origin: row.try_get("origin")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        relay: Vec::new(),
        receipts: Vec::new(),
    })
}

/// The case-folded form the recipient filter compares.
pub fn fold(address: &str) -> String {
    address.to_lowercase()
}

/// Outcome of [`insert`].
pub enum Inserted {
    /// The delivery was stored under this `seq`.
    New(i64),
    /// Another request stored a delivery under the same idempotency key first.
    KeyTaken,
}

/// Stores `d` (all but its `seq`, which is assigned here), its recipient
/// index and, if given, its idempotency key (`scope`, `key`, request digest)
/// in one transaction.
pub async fn insert(
    db: &SqlitePool,
    d: &Delivery,
    key: Option<(&str, &str, &str)>,
) -> sqlx::Result<Inserted> {
    let encode =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)));
    let mut tx = db.begin().await?;
    // The first statement writes, so it takes SQLite's single write lock
    // before reading MAX(seq): seqs are handed out in the order the
    // transactions commit, and a reader never sees seq n+1 without n.
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO deliveries (id, seq, sender, recipients, subject, message, files, origin,
                                 created_by, created_at)
         VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries), ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING seq",
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
    .fetch_one(&mut *tx)
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
    Ok(Inserted::New(seq))
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
    // One read transaction, so the delivery and its relay rows and
    // receipts come from the same snapshot.
    let mut tx = db.begin().await?;
    let found = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(found)
}

/// The delivery with `id` with its relay status and receipts, read on `conn`.
pub async fn load(conn: &mut SqliteConnection, id: &str) -> sqlx::Result<Option<Delivery>> {
    let row = sqlx::query("SELECT * FROM deliveries WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut found = vec![from_row(&row)?];
    attach(conn, &mut found).await?;
    Ok(found.pop())
}

/// A page of the change feed: deliveries with `seq > after_seq`, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Exclusive lower bound of `seq`.
    pub after_seq: i64,
    /// Most deliveries returned.
    pub limit: i64,
}

/// Deliveries in `seq` order: all of them, or those addressed to
/// `recipient` (case-insensitive), optionally only one `page`.
pub async fn list(
    db: &SqlitePool,
    recipient: Option<&str>,
    page: Option<Page>,
) -> sqlx::Result<Vec<Delivery>> {
    // seq starts at 1, and SQLite reads a negative LIMIT as "no limit".
    let Page { after_seq, limit } = page.unwrap_or(Page {
        after_seq: 0,
        limit: -1,
    });
    let mut tx = db.begin().await?;
    let rows = match recipient {
        Some(r) => {
            sqlx::query(
                "SELECT d.* FROM deliveries d
                 JOIN delivery_recipients r ON r.delivery_id = d.id
                 WHERE r.address_folded = ? AND d.seq > ?
                 ORDER BY d.seq LIMIT ?",
            )
            .bind(fold(r))
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        }
        None => {
            sqlx::query("SELECT * FROM deliveries WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
        }
    };
    let mut found = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    attach(&mut tx, &mut found).await?;
    tx.commit().await?;
    Ok(found)
}

/// Fills in the relay status and receipts of `deliveries`.
async fn attach(conn: &mut SqliteConnection, deliveries: &mut [Delivery]) -> sqlx::Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    let mut relays = relay_store::relays_of(conn, &ids).await?;
    let mut receipts = relay_store::receipts_of(conn, &ids).await?;
    for d in deliveries.iter_mut() {
        let rows = relays.remove(&d.id).unwrap_or_default();
        d.relay = relay_store::in_recipient_order(&d.recipients, rows);
        d.receipts = receipts.remove(&d.id).unwrap_or_default();
    }
    Ok(())
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
