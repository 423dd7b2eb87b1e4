//! Retention of finished work: the queues (relays and their receipts,
//! inbound files' receipts, webhook messages, outbound messages, SFTP
//! deliveries) keep a row per item for its whole life, and a row that
//! reached its successful end is only history. Without pruning the store
//! grows with every delivery, for ever.
//!
//! Only successful ends are pruned: a failed row stays until an operator
//! retries it (`partners relays retry`) or it is removed with its owner, so
//! nothing that still needs a decision disappears. Queued and leased rows
//! are never touched.

use super::{ms, Engine, Pool, Store, StoreError};
use std::time::Duration;

/// Rows deleted per statement: a SQLite store is one writer, and a long
/// delete would hold every other write (a relay claim, a key touch) back.
const BATCH: i64 = 500;

/// What one [`Store::prune_finished`] deleted, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Delivered `relay_jobs` (with their `relay_receipts`).
    pub relays: u64,
    /// `relay_receipts` of those relays.
    pub relay_receipts: u64,
    /// `inbound_files` whose receipt was sent.
    pub inbound_files: u64,
    /// Delivered `webhook_messages`.
    pub webhook_messages: u64,
    /// Sent `outbound_messages` (with their recipients' answers).
    pub outbound_messages: u64,
    /// Delivered `sftp_deliveries`.
    pub sftp_deliveries: u64,
}

impl Pruned {
    /// Per table, for logs and metrics.
    pub fn by_table(&self) -> [(&'static str, u64); 6] {
        [
            ("relay_jobs", self.relays),
            ("relay_receipts", self.relay_receipts),
            ("inbound_files", self.inbound_files),
            ("webhook_messages", self.webhook_messages),
            ("outbound_messages", self.outbound_messages),
            ("sftp_deliveries", self.sftp_deliveries),
        ]
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, n)| n).sum()
    }
}

/// Each step: the rows one batch deletes. Children first, so a crash
/// between two statements never leaves a child without its parent; a
/// child step picks only parents that still have children (each batch of
/// parents then deletes at least as many children, so "fewer than a
/// batch" means done), the parent step only parents without.
/// Where a step's deleted rows are counted (`None`: not reported apart).
type Counter = Option<fn(&mut Pruned) -> &mut u64>;

const STEPS: &[(Counter, &str)] = &[
    (
        Some(|p| &mut p.relay_receipts),
        "DELETE FROM relay_receipts WHERE (delivery_id, partner) IN \
         (SELECT j.delivery_id, j.partner FROM relay_jobs j \
          WHERE j.state = 'delivered' AND j.updated_at < $1 AND EXISTS \
           (SELECT 1 FROM relay_receipts r \
            WHERE r.delivery_id = j.delivery_id AND r.partner = j.partner) \
          LIMIT $2)",
    ),
    (
        Some(|p| &mut p.relays),
        "DELETE FROM relay_jobs WHERE (delivery_id, partner) IN \
         (SELECT j.delivery_id, j.partner FROM relay_jobs j \
          WHERE j.state = 'delivered' AND j.updated_at < $1 AND NOT EXISTS \
           (SELECT 1 FROM relay_receipts r \
            WHERE r.delivery_id = j.delivery_id AND r.partner = j.partner) \
          LIMIT $2)",
    ),
    (
        Some(|p| &mut p.inbound_files),
        "DELETE FROM inbound_files WHERE file_id IN \
         (SELECT file_id FROM inbound_files \
          WHERE receipt_state = 'sent' AND receipt_next_at < $1 LIMIT $2)",
    ),
    (
        Some(|p| &mut p.webhook_messages),
        "DELETE FROM webhook_messages WHERE (msg_id, webhook_id) IN \
         (SELECT msg_id, webhook_id FROM webhook_messages \
          WHERE state = 'delivered' AND updated_at < $1 LIMIT $2)",
    ),
    (
        None,
        "DELETE FROM outbound_message_recipients WHERE message_id IN \
         (SELECT m.id FROM outbound_messages m \
          WHERE m.state = 'sent' AND m.updated_at < $1 AND EXISTS \
           (SELECT 1 FROM outbound_message_recipients r WHERE r.message_id = m.id) \
          LIMIT $2)",
    ),
    (
        Some(|p| &mut p.outbound_messages),
        "DELETE FROM outbound_messages WHERE id IN \
         (SELECT m.id FROM outbound_messages m \
          WHERE m.state = 'sent' AND m.updated_at < $1 AND NOT EXISTS \
           (SELECT 1 FROM outbound_message_recipients r WHERE r.message_id = m.id) \
          LIMIT $2)",
    ),
    (
        Some(|p| &mut p.sftp_deliveries),
        "DELETE FROM sftp_deliveries WHERE id IN \
         (SELECT id FROM sftp_deliveries \
          WHERE state = 'delivered' AND updated_at < $1 LIMIT $2)",
    ),
];

impl Store {
    /// Deletes the rows of work that ended successfully more than `age`
    /// ago (on the store's clock), in batches of a few hundred rows.
    pub async fn prune_finished(&self, age: Duration) -> Result<Pruned, StoreError> {
        let cutoff = self.now_ms().saturating_sub(ms(age));
        let mut pruned = Pruned::default();
        for (counter, sql) in STEPS {
            loop {
                let n = on_pool!(self, |pool, _e| sqlx::query(sql)
                    .bind(cutoff)
                    .bind(BATCH)
                    .execute(pool)
                    .await
                    .map_err(self.query_err("prune finished work"))?
                    .rows_affected());
                if let Some(count) = counter {
                    *count(&mut pruned) += n;
                }
                if n < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}
