//! The durable queue of outbound messages (table `outbound_messages`,
//! migration 0007): accepted once written, sent by the outbox worker; and
//! which recipients got a message already (`outbound_message_recipients`,
//! migration 0014), for providers that send to each on its own.

use super::{from_ms, ms, Engine, Pool, Store, StoreError};
use std::time::SystemTime;

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

/// One row as selected by [`MESSAGE_COLUMNS`].
#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    transport: String,
    content: String,
    state: String,
    attempts: i64,
    answer: Option<String>,
    created_at: i64,
}

fn decode_message(r: MessageRow) -> QueuedMessage {
    QueuedMessage {
        id: r.id,
        transport: r.transport,
        content: r.content,
        state: r.state,
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        answer: r.answer,
        created_at: from_ms(r.created_at),
    }
}

impl Store {
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
        let raw: Option<MessageRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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
        let candidates: Vec<MessageRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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
            .bind(&raw.id)
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

    /// Puts a claimed message back for `delay` without an attempt (its
    /// provider's rate says not yet).
    pub async fn postpone_message(
        &self,
        id: &str,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        let next = self.now_ms().saturating_add(ms(delay));
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE outbound_messages SET next_attempt_at = $1, lease_until = 0 \
             WHERE id = $2 AND state = 'queued'"
        )
        .bind(next)
        .bind(id)
        .execute(pool)
        .await
        .map_err(self.query_err("postpone a message"))?
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

    /// The recipients of message `id` that got it already, with the
    /// provider's answer for each.
    pub async fn message_recipients_sent(
        &self,
        id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT recipient, answer FROM outbound_message_recipients WHERE message_id = $1"
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .map_err(self.query_err("read a message's recipients"))?);
        Ok(rows)
    }

    /// Records that `recipient` got message `id` (`answer`: the provider's).
    pub async fn message_recipient_sent(
        &self,
        id: &str,
        recipient: &str,
        answer: &str,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let answer: String = answer.chars().take(200).collect();
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO outbound_message_recipients (message_id, recipient, answer, sent_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (message_id, recipient) DO NOTHING"
        )
        .bind(id)
        .bind(recipient)
        .bind(&answer)
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err("record a message's recipient"))?
        .rows_affected());
        Ok(())
    }
}
