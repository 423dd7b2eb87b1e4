//! The webhooks' durable outbox (table `webhook_messages`, migration 0007):
//! every event is written here, one row per subscribed subscription,
//! before anything is sent; the worker claims due rows with a lease, so a
//! crash or a receiver outage only delays a message (at-least-once, always
//! with the same webhook-id).

use super::{ms, Engine, Pool, Store, StoreError};
use std::time::{Duration, SystemTime};

/// An event to queue for every subscription that wants it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The stable webhook-id.
    pub msg_id: String,
    /// Event type, e.g. `delivery.created`.
    pub event_type: String,
    /// The JSON body.
    pub payload: String,
    /// When it happened: subscriptions created later do not get it.
    pub occurred_at: SystemTime,
}

/// A message due to be sent to one subscription.
#[derive(Debug, Clone)]
pub struct WebhookMessage {
    /// The stable webhook-id.
    pub msg_id: String,
    /// Subscription.
    pub webhook_id: String,
    /// Event type.
    pub event_type: String,
    /// The JSON body.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Target URL.
    pub url: String,
    /// Whether private targets are allowed.
    pub allow_private: bool,
    /// The sealed secret.
    pub secret_sealed: Vec<u8>,
}

/// One row as selected by [`MESSAGE_COLUMNS`].
#[derive(sqlx::FromRow)]
struct MessageRow {
    msg_id: String,
    webhook_id: String,
    event_type: String,
    payload: String,
    attempts: i64,
    url: String,
    allow_private: i64,
    secret_sealed: Vec<u8>,
}

fn decode_message(r: MessageRow) -> WebhookMessage {
    WebhookMessage {
        msg_id: r.msg_id,
        webhook_id: r.webhook_id,
        event_type: r.event_type,
        payload: r.payload,
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        url: r.url,
        allow_private: r.allow_private != 0,
        secret_sealed: r.secret_sealed,
    }
}

const MESSAGE_COLUMNS: &str = "m.msg_id, m.webhook_id, m.event_type, m.payload, m.attempts, \
    w.url, w.allow_private, w.secret_sealed";

/// Name of the webhooks' delivery-feed position in `gateway_state`.
const FEED_CURSOR: &str = "webhooks.feed_after_seq";

impl Store {
    /// The delivery-feed position the webhooks have read up to.
    pub async fn webhook_cursor(&self) -> Result<Option<i64>, StoreError> {
        self.feed_position(FEED_CURSOR, "read the webhook feed position")
            .await
    }

    /// Queues each event for every enabled subscription that wants its type
    /// and existed when it happened (an event queued before is left as it
    /// is: same webhook-id, no second row), and moves the feed position to
    /// `cursor` if given, all in one transaction.
    pub async fn queue_webhook_events(
        &self,
        events: &[NewEvent],
        cursor: Option<i64>,
    ) -> Result<u64, StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err("queue webhook events");
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            let mut queued = 0;
            for e in events {
                queued += sqlx::query(
                    "INSERT INTO webhook_messages (msg_id, webhook_id, event_type, payload, state, \
                     next_attempt_at, created_at, updated_at) \
                     SELECT $1, id, $2, $3, 'queued', $4, $4, $4 FROM webhooks \
                     WHERE state = 'enabled' AND (' ' || events || ' ') LIKE ('% ' || $2 || ' %') \
                     AND created_at <= $5 \
                     ON CONFLICT (msg_id, webhook_id) DO NOTHING",
                )
                .bind(&e.msg_id)
                .bind(&e.event_type)
                .bind(&e.payload)
                .bind(now)
                .bind(super::to_ms(e.occurred_at))
                .execute(&mut *tx)
                .await
                .map_err(err())?
                .rows_affected();
            }
            if let Some(cursor) = cursor {
                sqlx::query(super::gateway_state::SET_POSITION)
                    .bind(FEED_CURSOR)
                    .bind(cursor.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err())?;
            }
            tx.commit().await.map_err(err())?;
            Ok(queued)
        })
    }

    /// Takes up to `limit` due messages of enabled subscriptions, leasing
    /// each for `lease`.
    pub async fn claim_due_webhook_messages(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        let now = self.now_ms();
        let until = now.saturating_add(ms(lease));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM webhook_messages m JOIN webhooks w ON w.id = m.webhook_id \
             WHERE m.state = 'queued' AND w.state = 'enabled' AND m.next_attempt_at <= $1 \
             AND m.lease_until <= $1 ORDER BY m.next_attempt_at, m.created_at LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let candidates: Vec<MessageRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("read due webhook messages"))?);
        let mut claimed = Vec::with_capacity(candidates.len());
        for raw in candidates {
            let taken = on_pool!(self, |pool, _e| sqlx::query(
                "UPDATE webhook_messages SET lease_until = $1 WHERE msg_id = $2 \
                 AND webhook_id = $3 AND state = 'queued' AND lease_until <= $4"
            )
            .bind(until)
            .bind(&raw.msg_id)
            .bind(&raw.webhook_id)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err("lease a webhook message"))?
            .rows_affected());
            if taken == 1 {
                claimed.push(decode_message(raw));
            }
        }
        Ok(claimed)
    }

    /// Gives a claimed message back at once (shutdown): the next process
    /// sends it without waiting for the lease.
    pub async fn release_webhook_lease(&self, msg: &WebhookMessage) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE webhook_messages SET lease_until = 0 \
             WHERE msg_id = $1 AND webhook_id = $2 AND state = 'queued'"
        )
        .bind(&msg.msg_id)
        .bind(&msg.webhook_id)
        .execute(pool)
        .await
        .map_err(self.query_err("release a webhook lease"))?
        .rows_affected());
        Ok(())
    }

    /// The receiver took the message: done, and the subscription is healthy.
    pub async fn webhook_delivered(&self, msg: &WebhookMessage) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err("record a webhook delivery");
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            sqlx::query(
                "UPDATE webhook_messages SET state = 'delivered', attempts = attempts + 1, \
                 lease_until = 0, last_error = NULL, updated_at = $1 \
                 WHERE msg_id = $2 AND webhook_id = $3",
            )
            .bind(now)
            .bind(&msg.msg_id)
            .bind(&msg.webhook_id)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
            sqlx::query(
                "UPDATE webhooks SET failing_since = NULL, last_success_at = $1, \
                 last_error = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(&msg.webhook_id)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
            tx.commit().await.map_err(err())?;
            Ok(())
        })
    }

    /// A failed attempt: the message is tried again after `delay`; the
    /// subscription is disabled if it has been failing (no success) for
    /// `disable_after`. `true` if this call disabled it.
    pub async fn webhook_failed(
        &self,
        msg: &WebhookMessage,
        delay: Duration,
        error: &str,
        disable_after: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let next = now.saturating_add(ms(delay));
        let error: String = error.chars().take(500).collect();
        let cutoff = now.saturating_sub(ms(disable_after));
        let reason = format!(
            "failing for {} without a successful delivery; last error: {error}",
            humantime::format_duration(Duration::from_secs(disable_after.as_secs()))
        );
        on_pool!(self, |pool, engine| {
            let err = || self.query_err("record a failed webhook delivery");
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            sqlx::query(
                "UPDATE webhook_messages SET attempts = attempts + 1, next_attempt_at = $1, \
                 lease_until = 0, last_error = $2, updated_at = $3 \
                 WHERE msg_id = $4 AND webhook_id = $5",
            )
            .bind(next)
            .bind(&error)
            .bind(now)
            .bind(&msg.msg_id)
            .bind(&msg.webhook_id)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
            sqlx::query(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, $1), \
                 last_error = $2, updated_at = $1 WHERE id = $3",
            )
            .bind(now)
            .bind(&error)
            .bind(&msg.webhook_id)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
            let disabled = sqlx::query(
                "UPDATE webhooks SET state = 'disabled', disabled_reason = $1, updated_at = $2 \
                 WHERE id = $3 AND state = 'enabled' AND failing_since <= $4",
            )
            .bind(&reason)
            .bind(now)
            .bind(&msg.webhook_id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(err())?
            .rows_affected();
            tx.commit().await.map_err(err())?;
            Ok(disabled == 1)
        })
    }

    /// Every message of a subscription as (webhook-id, state, attempts),
    /// oldest first (operators and tests).
    pub async fn webhook_messages(
        &self,
        webhook_id: &str,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT msg_id, state, attempts FROM webhook_messages WHERE webhook_id = $1 \
             ORDER BY created_at, msg_id"
        )
        .bind(webhook_id)
        .fetch_all(pool)
        .await
        .map_err(self.query_err("list webhook messages"))?);
        Ok(rows
            .into_iter()
            .map(|(id, state, n)| (id, state, u32::try_from(n).unwrap_or(u32::MAX)))
            .collect())
    }
}
