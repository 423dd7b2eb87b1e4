//! The `delivery_relays` and `delivery_receipts` tables: what the gateway
//! reports about relaying a delivery to partner organisations.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

/// Where a relay to a partner stands for one recipient.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelayStatus {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt failed; the gateway will try again.
    Retrying,
    /// The partner's gateway accepted the delivery.
    Delivered,
    /// The gateway gave up.
    Failed,
}

impl RelayStatus {
    /// Every status, in the order the docs list them.
    pub const ALL: [RelayStatus; 4] = [
        RelayStatus::Queued,
        RelayStatus::Retrying,
        RelayStatus::Delivered,
        RelayStatus::Failed,
    ];

    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayStatus::Queued => "queued",
            RelayStatus::Retrying => "retrying",
            RelayStatus::Delivered => "delivered",
            RelayStatus::Failed => "failed",
        }
    }

    /// The status spelled `s`, if any.
    pub fn parse(s: &str) -> Option<RelayStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The relay status of one recipient, as returned in a delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Relay {
    /// The recipient, spelled as in the delivery.
    pub recipient: String,
    /// Connection name of the partner organisation.
    pub partner: String,
    /// Where the relay stands.
    pub status: RelayStatus,
    /// The gateway's explanation (last error, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The delivery's id at the partner, once it accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_delivery_id: Option<String>,
    /// Attempts made so far.
    pub attempts: i64,
    /// RFC 3339 UTC of the last change.
    pub updated_at: String,
}

/// A partner's report that it downloaded one file of a delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Receipt {
    /// The file downloaded, one of the delivery's files.
    pub file_id: String,
    /// Connection name of the partner that downloaded it.
    pub partner: String,
    /// When the partner says it was downloaded (RFC 3339 UTC).
    pub downloaded_at: String,
    /// When the backend recorded the receipt (RFC 3339 UTC).
    pub recorded_at: String,
}

/// A change of relay status for some recipients of one delivery.
pub struct RelayChange<'a> {
    /// Delivery id.
    pub delivery_id: &'a str,
    /// Recipients, each spelled as in the delivery.
    pub recipients: &'a [String],
    /// Partner connection name.
    pub partner: &'a str,
    /// New status.
    pub status: RelayStatus,
    /// Replaces the stored detail; `None` clears it.
    pub detail: Option<&'a str>,
    /// `None` keeps the stored id.
    pub remote_delivery_id: Option<&'a str>,
    /// `None` keeps the stored count (0 for a new row).
    pub attempts: Option<i64>,
    /// Time of the change.
    pub updated_at: &'a str,
}

/// Writes `change` for each of its recipients.
pub async fn upsert(conn: &mut SqliteConnection, change: &RelayChange<'_>) -> sqlx::Result<()> {
    for recipient in change.recipients {
        sqlx::query(
            "INSERT INTO delivery_relays (delivery_id, recipient, partner, status, detail,
                                          remote_delivery_id, attempts, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?)
             ON CONFLICT (delivery_id, recipient) DO UPDATE SET
                partner = excluded.partner,
                status = excluded.status,
                detail = excluded.detail,
                remote_delivery_id = COALESCE(excluded.remote_delivery_id,
                                              delivery_relays.remote_delivery_id),
                attempts = COALESCE(?, delivery_relays.attempts),
                updated_at = excluded.updated_at",
        )
        .bind(change.delivery_id)
        .bind(recipient)
        .bind(change.partner)
        .bind(change.status.as_str())
        .bind(change.detail)
        .bind(change.remote_delivery_id)
        .bind(change.attempts)
        .bind(change.updated_at)
        // excluded.attempts cannot tell "not given" from 0, so bind it again.
        .bind(change.attempts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records `receipt` for `delivery_id`; `false` if one for the same file
/// and partner exists, which is then left unchanged.
pub async fn insert_receipt(
    conn: &mut SqliteConnection,
    delivery_id: &str,
    receipt: &Receipt,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO delivery_receipts
             (delivery_id, file_id, partner, downloaded_at, recorded_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(delivery_id)
    .bind(&receipt.file_id)
    .bind(&receipt.partner)
    .bind(&receipt.downloaded_at)
    .bind(&receipt.recorded_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn relay_from_row(row: &SqliteRow) -> sqlx::Result<Relay> {
    let status: String = row.try_get("status")?;
    let status = RelayStatus::parse(&status).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown relay status {status:?} in the database").into())
    })?;
    Ok(Relay {
        recipient: row.try_get("recipient")?,
        partner: row.try_get("partner")?,
        status,
        detail: row.try_get("detail")?,
        remote_delivery_id: row.try_get("remote_delivery_id")?,
        attempts: row.try_get("attempts")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn receipt_from_row(row: &SqliteRow) -> sqlx::Result<Receipt> {
    Ok(Receipt {
        file_id: row.try_get("file_id")?,
        partner: row.try_get("partner")?,
        downloaded_at: row.try_get("downloaded_at")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Delivery ids as one JSON array parameter, so a page of any size is one
/// query (`json_each`) instead of one per delivery.
fn id_array(ids: &[&str]) -> sqlx::Result<String> {
    serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Relay rows of the deliveries `ids`, by delivery id, in no particular order.
pub async fn relays_of(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, Vec<Relay>>> {
    let rows = sqlx::query(
        "SELECT * FROM delivery_relays
         WHERE delivery_id IN (SELECT value FROM json_each(?))",
    )
    .bind(id_array(ids)?)
    .fetch_all(conn)
    .await?;
    let mut by_delivery: HashMap<String, Vec<Relay>> = HashMap::new();
    for row in &rows {
        let id: String = row.try_get("delivery_id")?;
        by_delivery
            .entry(id)
            .or_default()
            .push(relay_from_row(row)?);
    }
    Ok(by_delivery)
}

/// Receipts of the deliveries `ids`, by delivery id, each in recording order.
pub async fn receipts_of(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, Vec<Receipt>>> {
    // rowid breaks ties between receipts recorded in the same millisecond.
    let rows = sqlx::query(
        "SELECT * FROM delivery_receipts
         WHERE delivery_id IN (SELECT value FROM json_each(?))
         ORDER BY recorded_at, rowid",
    )
    .bind(id_array(ids)?)
    .fetch_all(conn)
    .await?;
    let mut by_delivery: HashMap<String, Vec<Receipt>> = HashMap::new();
    for row in &rows {
        let id: String = row.try_get("delivery_id")?;
        by_delivery
            .entry(id)
            .or_default()
            .push(receipt_from_row(row)?);
    }
    Ok(by_delivery)
}

/// `relays` in the order of `recipients`, the delivery's own order.
pub fn in_recipient_order(recipients: &[String], mut relays: Vec<Relay>) -> Vec<Relay> {
    // Rows are keyed by the delivery's spelling, so an exact match finds
    // each; one left over (impossible through the API) goes last, not lost.
    let mut ordered = Vec::with_capacity(relays.len());
    for r in recipients {
        if let Some(i) = relays.iter().position(|x| &x.recipient == r) {
            ordered.push(relays.swap_remove(i));
        }
    }
    relays.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    ordered.extend(relays);
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(recipient: &str) -> Relay {
        Relay {
            recipient: recipient.into(),
            partner: "beta".into(),
            status: RelayStatus::Queued,
            detail: None,
            remote_delivery_id: None,
            attempts: 0,
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_refused() {
        for s in RelayStatus::ALL {
            assert_eq!(RelayStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
        assert_eq!(RelayStatus::parse("Delivered"), None);
        assert_eq!(RelayStatus::parse("sent"), None);
    }

    #[test]
    fn relays_follow_the_delivery_recipient_order() {
        let recipients: Vec<String> = ["c@x", "a@x", "b@x", "a@x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let stored = vec![relay("zed@x"), relay("a@x"), relay("c@x")];
        let names: Vec<String> = in_recipient_order(&recipients, stored)
            .into_iter()
            .map(|r| r.recipient)
            .collect();
        assert_eq!(names, ["c@x", "a@x", "zed@x"]);
    }
}
