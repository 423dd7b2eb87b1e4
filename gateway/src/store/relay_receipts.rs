//! Partners' signed receipts for files we relayed to them (table
//! `relay_receipts`, migration 0012): kept so the console can show, per
//! relay, which files the partner's recipient has downloaded.

use super::{from_ms, Engine, Pool, Store, StoreError};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A partner's signed receipt for one file of a delivery we relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayReceipt {
    /// Our file id.
    pub file_id: String,
    /// When their recipient downloaded it (their RFC 3339 text).
    pub downloaded_at: String,
    /// When we recorded the receipt.
    pub recorded_at: SystemTime,
}

impl RelayReceipt {
    /// As the relay list shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file_id": self.file_id,
            "downloaded_at": self.downloaded_at,
            "recorded_at": super::rfc3339(self.recorded_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReceiptRow {
    delivery_id: String,
    partner: String,
    file_id: String,
    downloaded_at: String,
    recorded_at: i64,
}

impl Store {
    /// Records a partner's receipt for `file_id` of our `delivery_id`
    /// relayed to `partner` (once; a repeat keeps the first).
    pub async fn record_relay_receipt(
        &self,
        delivery_id: &str,
        partner: &str,
        file_id: &str,
        downloaded_at: &str,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| {
            sqlx::query(
                "INSERT INTO relay_receipts (delivery_id, partner, file_id, downloaded_at, \
                 recorded_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (delivery_id, partner, file_id) DO NOTHING",
            )
            .bind(delivery_id)
            .bind(partner)
            .bind(file_id)
            .bind(downloaded_at)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err("record a partner's receipt"))?
            .rows_affected()
        });
        Ok(())
    }

    /// Every receipt partners sent us, by (delivery, partner), oldest first.
    pub async fn list_relay_receipts(
        &self,
    ) -> Result<BTreeMap<(String, String), Vec<RelayReceipt>>, StoreError> {
        let rows: Vec<ReceiptRow> = on_pool!(self, |pool, _e| {
            sqlx::query_as(
                "SELECT delivery_id, partner, file_id, downloaded_at, recorded_at \
                 FROM relay_receipts ORDER BY recorded_at",
            )
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list partners' receipts"))?
        });
        let mut out: BTreeMap<(String, String), Vec<RelayReceipt>> = BTreeMap::new();
        for r in rows {
            out.entry((r.delivery_id, r.partner))
                .or_default()
                .push(RelayReceipt {
                    file_id: r.file_id,
                    downloaded_at: r.downloaded_at,
                    recorded_at: from_ms(r.recorded_at),
                });
        }
        Ok(out)
    }
}
