//! Outbound transport providers in the key store (migration 0007, table
//! `transports`): name, type, settings (JSON, no secret) and the provider's
//! secret, sealed or as a secret reference.

use super::{from_ms, Engine, KeyStore, Pool, StoreError};
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

type Raw = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<Vec<u8>>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn decode(r: Raw) -> Result<TransportRecord, StoreError> {
    let settings = serde_json::from_str(&r.2).map_err(|e| StoreError::CorruptPartner {
        what: format!("transport settings: {e}"),
    })?;
    Ok(TransportRecord {
        name: r.0,
        kind: r.1,
        settings,
        secret: match (r.3, r.4) {
            (Some(s), _) => TransportSecret::Sealed(s),
            (None, Some(reference)) => TransportSecret::Reference(reference),
            (None, None) => TransportSecret::None,
        },
        last_used_at: r.5.map(from_ms),
        last_error: r.6,
        created_at: from_ms(r.7),
        key_sealed: r.8,
        credits: r.9,
        credits_checked_at: r.10.map(from_ms),
        credit_warned_at: r.11.map(from_ms),
    })
}

impl KeyStore {
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
        let raw: Vec<Raw> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list transports"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The provider `name`.
    pub async fn get_transport(&self, name: &str) -> Result<Option<TransportRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM transports WHERE name = $1");
        let raw: Option<Raw> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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

impl KeyStore {
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

impl KeyStore {
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

/// A message in the outbound queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// `msg_<uuid>`.
    pub id: String,
    /// Provider name.
    pub transport: String,
    /// JSON `{"to","subject","text","html"}`.
    pub content: String,
    /// `queued`, `sent` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The provider's answer, or why it failed.
    pub answer: Option<String>,
    /// Accepted at.
    pub created_at: SystemTime,
}

impl QueuedMessage {
    /// As `GET /admin/v1/messages/{id}` shows it (never the content).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "transport": self.transport,
            "state": self.state,
            "attempts": self.attempts,
            "answer": self.answer,
            "created_at": super::rfc3339(self.created_at),
        })
    }
}

const MESSAGE_COLUMNS: &str = "id, transport, content, state, attempts, answer, created_at";

type RawMessage = (String, String, String, String, i64, Option<String>, i64);

fn decode_message(r: RawMessage) -> QueuedMessage {
    QueuedMessage {
        id: r.0,
        transport: r.1,
        content: r.2,
        state: r.3,
        attempts: u32::try_from(r.4).unwrap_or(u32::MAX),
        answer: r.5,
        created_at: from_ms(r.6),
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl KeyStore {
    /// Queues a message (durable once this returns).
    pub async fn queue_message(
        &self,
        id: &str,
        transport: &str,
        content: &str,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO outbound_messages (id, transport, content, state, next_attempt_at, \
             created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $4, $4)"
        )
        .bind(id)
        .bind(transport)
        .bind(content)
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err("queue a message"))?
        .rows_affected());
        Ok(())
    }

    /// The message `id`.
    pub async fn get_message(&self, id: &str) -> Result<Option<QueuedMessage>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM outbound_messages WHERE id = $1");
        let raw: Option<RawMessage> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("read a message"))?);
        Ok(raw.map(decode_message))
    }

    /// Takes up to `limit` due messages, leasing each for `lease`.
    pub async fn claim_due_messages(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let now = self.now_ms();
        let until = now.saturating_add(ms(lease));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbound_messages WHERE state = 'queued' \
             AND next_attempt_at <= $1 AND lease_until <= $1 ORDER BY next_attempt_at LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let candidates: Vec<RawMessage> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("read due messages"))?);
        let mut claimed = Vec::with_capacity(candidates.len());
        for raw in candidates {
            let taken = on_pool!(self, |pool, _e| sqlx::query(
                "UPDATE outbound_messages SET lease_until = $1 WHERE id = $2 \
                 AND state = 'queued' AND lease_until <= $3"
            )
            .bind(until)
            .bind(&raw.0)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err("lease a message"))?
            .rows_affected());
            if taken == 1 {
                claimed.push(decode_message(raw));
            }
        }
        Ok(claimed)
    }

    /// Gives a claimed message back at once (shutdown): the next process
    /// sends it without waiting for the lease.
    pub async fn release_message_lease(&self, id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE outbound_messages SET lease_until = 0 WHERE id = $1 AND state = 'queued'"
        )
        .bind(id)
        .execute(pool)
        .await
        .map_err(self.query_err("release a message lease"))?
        .rows_affected());
        Ok(())
    }

    /// After an attempt: `retry_in` = `Some` schedules another one, `None`
    /// ends the message as `sent` (no `error`) or `failed`.
    pub async fn message_outcome(
        &self,
        id: &str,
        retry_in: Option<std::time::Duration>,
        answer: &str,
        failed: bool,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let (state, next) = match retry_in {
            Some(d) => ("queued", now.saturating_add(ms(d))),
            None if failed => ("failed", now),
            None => ("sent", now),
        };
        let answer: String = answer.chars().take(500).collect();
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE outbound_messages SET state = $1, next_attempt_at = $2, lease_until = 0, \
             attempts = attempts + 1, answer = $3, updated_at = $4 WHERE id = $5"
        )
        .bind(state)
        .bind(next)
        .bind(&answer)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map_err(self.query_err("record a message attempt"))?
        .rows_affected());
        Ok(())
    }
}
