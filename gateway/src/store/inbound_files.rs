//! Files partners delivered to us (table `inbound_files`, migration 0004):
//! the first local download of each owes the partner a receipt, queued
//! and retried here so a partner outage or a restart never loses one.

use super::{from_ms, to_ms, Engine, Pool, Store, StoreError};
use std::time::{Duration, SystemTime};

/// A file a partner delivered to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundFile {
    /// Our file id.
    pub file_id: String,
    /// Connection name.
    pub partner: String,
    /// The partner's delivery id.
    pub relay_id: String,
    /// The partner's id of the file.
    pub source_file_id: String,
    /// Our delivery carrying it.
    pub delivery_id: String,
    /// First download, if any.
    pub downloaded_at: Option<SystemTime>,
    /// Receipt attempts so far.
    pub receipt_attempts: u32,
}

const INBOUND_COLUMNS: &str = "file_id, partner, relay_id, source_file_id, delivery_id, \
    downloaded_at, receipt_attempts";

/// One row as selected by [`INBOUND_COLUMNS`].
#[derive(sqlx::FromRow)]
struct InboundRow {
    file_id: String,
    partner: String,
    relay_id: String,
    source_file_id: String,
    delivery_id: String,
    downloaded_at: Option<i64>,
    receipt_attempts: i64,
}

fn decode_inbound(r: InboundRow) -> InboundFile {
    InboundFile {
        file_id: r.file_id,
        partner: r.partner,
        relay_id: r.relay_id,
        source_file_id: r.source_file_id,
        delivery_id: r.delivery_id,
        downloaded_at: r.downloaded_at.map(from_ms),
        receipt_attempts: u32::try_from(r.receipt_attempts).unwrap_or(u32::MAX),
    }
}

impl Store {
    /// Remembers the files of an accepted partner delivery (a replay of the
    /// same delivery changes nothing).
    pub async fn record_inbound_files(&self, files: &[InboundFile]) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err("record inbound files");
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            for f in files {
                sqlx::query(
                    "INSERT INTO inbound_files (file_id, partner, relay_id, source_file_id, \
                     delivery_id, received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (file_id) DO NOTHING",
                )
                .bind(&f.file_id)
                .bind(&f.partner)
                .bind(&f.relay_id)
                .bind(&f.source_file_id)
                .bind(&f.delivery_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            }
            tx.commit().await.map_err(err())?;
        });
        Ok(())
    }

    /// The inbound file `file_id`, if a partner delivered it.
    pub async fn inbound_file(&self, file_id: &str) -> Result<Option<InboundFile>, StoreError> {
        let sql = format!("SELECT {INBOUND_COLUMNS} FROM inbound_files WHERE file_id = $1");
        let raw: Option<InboundRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(file_id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("read an inbound file"))?);
        Ok(raw.map(decode_inbound))
    }

    /// Records the first download of an inbound file and queues its receipt;
    /// `true` only for the first download.
    pub async fn mark_downloaded(&self, file_id: &str, at: SystemTime) -> Result<bool, StoreError> {
        let at = to_ms(at);
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE inbound_files SET downloaded_at = $1, receipt_state = 'queued', \
             receipt_next_at = $1 WHERE file_id = $2 AND downloaded_at IS NULL"
        )
        .bind(at)
        .bind(file_id)
        .execute(pool)
        .await
        .map_err(self.query_err("record a download"))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Receipts due now, at most `limit`.
    pub async fn due_receipts(&self, limit: usize) -> Result<Vec<InboundFile>, StoreError> {
        let now = self.now_ms();
        let sql = format!(
            "SELECT {INBOUND_COLUMNS} FROM inbound_files WHERE receipt_state = 'queued' \
             AND receipt_next_at <= $1 ORDER BY receipt_next_at LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw: Vec<InboundRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("read due receipts"))?);
        Ok(raw.into_iter().map(decode_inbound).collect())
    }

    /// After a receipt attempt: `None` delay marks it done (`sent`, or
    /// `failed` with an error), `Some` schedules a retry.
    pub async fn receipt_outcome(
        &self,
        file_id: &str,
        retry_in: Option<Duration>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let (state, next) = match retry_in {
            Some(d) => (
                "queued",
                now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
            None if error.is_some() => ("failed", now),
            None => ("sent", now),
        };
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE inbound_files SET receipt_state = $1, receipt_next_at = $2, \
             receipt_attempts = receipt_attempts + 1, receipt_error = $3 WHERE file_id = $4"
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(file_id)
        .execute(pool)
        .await
        .map_err(self.query_err("record a receipt attempt"))?
        .rows_affected());
        Ok(())
    }

    /// The receipt state of an inbound file (`none`, `queued`, `sent`, `failed`).
    pub async fn receipt_state(&self, file_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT receipt_state FROM inbound_files WHERE file_id = $1"
        )
        .bind(file_id)
        .fetch_optional(pool)
        .await
        .map_err(self.query_err("read a receipt state"))?);
        Ok(row.map(|(s,)| s))
    }
}
