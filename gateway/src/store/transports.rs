//! Outbound transport providers in the key store (migration 0007, table
//! `transports`): name, type, settings (JSON, no secret) and the provider's
//! secret, sealed or as a secret reference.

use super::{from_ms, ms, Engine, Pool, Store, StoreError};
use std::time::SystemTime;

/// How the provider's secret is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum TransportSecret {
    /// None (an SMTP server without AUTH).
    None,
    /// Sealed with `[trust] encryption_key`.
    Sealed(Vec<u8>),
    /// A secret reference (`env:NAME`, `file:PATH`), resolved when used.
    Reference(String),
}

/// One provider as stored.
#[derive(Clone)]
pub struct TransportRecord {
    /// Name.
    pub name: String,
    /// Type (`smtp`).
    pub kind: String,
    /// The type's settings (JSON object).
    pub settings: serde_json::Value,
    /// The secret.
    pub secret: TransportSecret,
    /// Last successful send.
    pub last_used_at: Option<SystemTime>,
    /// Why the last send failed (cleared by a success).
    pub last_error: Option<String>,
    /// Created.
    pub created_at: SystemTime,
    /// A second sealed secret (threema: the private key).
    pub key_sealed: Option<Vec<u8>>,
    /// The balance at the last credit check, as the provider reported it.
    pub credits: Option<String>,
    /// When credits were last checked.
    pub credits_checked_at: Option<SystemTime>,
    /// The last low-credit warning.
    pub credit_warned_at: Option<SystemTime>,
}

impl std::fmt::Debug for TransportRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl TransportRecord {
    /// The record as `transports show --json` prints it (never the secret).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "type": self.kind,
            "settings": self.settings,
            "secret": match &self.secret {
                TransportSecret::None => "none",
                TransportSecret::Sealed(_) => "stored encrypted",
                TransportSecret::Reference(_) => "secret reference",
            },
            "last_used_at": self.last_used_at.map(super::rfc3339),
            "last_error": self.last_error,
            "created_at": super::rfc3339(self.created_at),
            "credits": self.credits,
            "credits_checked_at": self.credits_checked_at.map(super::rfc3339),
        })
    }
}

const COLUMNS: &str = "name, kind, settings, secret_sealed, secret_ref, last_used_at, \
    last_error, created_at, key_sealed, credits, credits_checked_at, credit_warned_at";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct TransportRow {
    name: String,
    kind: String,
    settings: String,
    secret_sealed: Option<Vec<u8>>,
    secret_ref: Option<String>,
    last_used_at: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    key_sealed: Option<Vec<u8>>,
    credits: Option<String>,
    credits_checked_at: Option<i64>,
    credit_warned_at: Option<i64>,
}

fn decode(r: TransportRow) -> Result<TransportRecord, StoreError> {
    let settings = serde_json::from_str(&r.settings).map_err(|e| StoreError::CorruptPartner {
        what: format!("transport settings: {e}"),
    })?;
    Ok(TransportRecord {
        name: r.name,
        kind: r.kind,
        settings,
        secret: match (r.secret_sealed, r.secret_ref) {
            (Some(s), _) => TransportSecret::Sealed(s),
            (None, Some(reference)) => TransportSecret::Reference(reference),
            (None, None) => TransportSecret::None,
        },
        last_used_at: r.last_used_at.map(from_ms),
        last_error: r.last_error,
        created_at: from_ms(r.created_at),
        key_sealed: r.key_sealed,
        credits: r.credits,
        credits_checked_at: r.credits_checked_at.map(from_ms),
        credit_warned_at: r.credit_warned_at.map(from_ms),
    })
}

impl Store {
    /// Adds a provider; `Ok(false)` if the name is taken.
    pub async fn add_transport(
        &self,
        name: &str,
        kind: &str,
        settings: &serde_json::Value,
        secret: &TransportSecret,
        key_sealed: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let (sealed, reference): (Option<&[u8]>, Option<&str>) = match secret {
            TransportSecret::None => (None, None),
            TransportSecret::Sealed(b) => (Some(b), None),
            TransportSecret::Reference(r) => (None, Some(r)),
        };
        let now = self.now_ms();
        let text = settings.to_string();
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO transports (name, kind, settings, secret_sealed, secret_ref, \
             created_at, updated_at, key_sealed) VALUES ($1, $2, $3, $4, $5, $6, $6, $7) \
             ON CONFLICT (name) DO NOTHING"
        )
        .bind(name)
        .bind(kind)
        .bind(&text)
        .bind(sealed)
        .bind(reference)
        .bind(now)
        .bind(key_sealed)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("add transport {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Every provider, by name.
    pub async fn list_transports(&self) -> Result<Vec<TransportRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM transports ORDER BY name");
        let raw: Vec<TransportRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list transports"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The provider `name`.
    pub async fn get_transport(&self, name: &str) -> Result<Option<TransportRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM transports WHERE name = $1");
        let raw: Option<TransportRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err(format!("read transport {name}")))?);
        raw.map(decode).transpose()
    }

    /// Removes a provider; `false` if absent.
    pub async fn remove_transport(&self, name: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "DELETE FROM transports WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("remove transport {name}")))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Records a send's outcome: `None` = success (last use now, error
    /// cleared), `Some` = the error.
    pub async fn transport_used(&self, name: &str, error: Option<&str>) -> Result<(), StoreError> {
        let now = self.now_ms();
        let sql = if error.is_none() {
            "UPDATE transports SET last_used_at = $1, last_error = $2, updated_at = $1 WHERE name = $3"
        } else {
            "UPDATE transports SET last_error = $2, updated_at = $1 WHERE name = $3"
        };
        on_pool!(self, |pool, _e| sqlx::query(sql)
            .bind(now)
            .bind(error)
            .bind(name)
            .execute(pool)
            .await
            .map_err(self.query_err(format!("record use of transport {name}")))?
            .rows_affected());
        Ok(())
    }
}

impl Store {
    /// Records a credit check's result.
    pub async fn transport_credits(&self, name: &str, credits: &str) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE transports SET credits = $1, credits_checked_at = $2 WHERE name = $3"
        )
        .bind(credits)
        .bind(now)
        .bind(name)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("record credits of transport {name}")))?
        .rows_affected());
        Ok(())
    }

    /// Takes the right to send the low-credit warning for `name`: `true` at
    /// most once per `period` (across gateways sharing the store).
    pub async fn claim_credit_warning(
        &self,
        name: &str,
        period: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let before = now.saturating_sub(ms(period));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE transports SET credit_warned_at = $1 WHERE name = $2 \
             AND (credit_warned_at IS NULL OR credit_warned_at <= $3)"
        )
        .bind(now)
        .bind(name)
        .bind(before)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("claim the credit warning of transport {name}")))?
        .rows_affected());
        Ok(n == 1)
    }
}

impl Store {
    /// Takes the right to send for notification rule `rule`: `true` at
    /// most once per `period` (across gateways and restarts).
    pub async fn claim_notification(
        &self,
        rule: &str,
        period: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let before = now.saturating_sub(ms(period));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO notify_sent (rule, sent_at) VALUES ($1, $2) \
             ON CONFLICT (rule) DO UPDATE SET sent_at = $2 WHERE notify_sent.sent_at <= $3"
        )
        .bind(rule)
        .bind(now)
        .bind(before)
        .execute(pool)
        .await
        .map_err(self.query_err("claim a notification"))?
        .rows_affected());
        Ok(n == 1)
    }
}

impl Store {}
