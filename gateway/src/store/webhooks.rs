//! Webhook subscriptions and their durable outbox (migration 0007).
//!
//! A subscription keeps its signing secret sealed (the store sees only the
//! sealed bytes, see `webhooks::secret`). Every event is written here, one
//! row per subscribed subscription, before anything is sent; the worker
//! claims due rows with a lease, so a crash or a receiver outage only
//! delays a message (at-least-once, always with the same webhook-id).

use super::{from_ms, Engine, KeyStore, Pool, StoreError};
use std::time::{Duration, SystemTime};

/// Whether a subscription receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Events are queued and sent.
    Enabled,
    /// Failing for too long; nothing is queued or sent.
    Disabled,
}

impl WebhookState {
    /// `enabled` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Enabled => "enabled",
            WebhookState::Disabled => "disabled",
        }
    }
}

/// One subscription, as stored (the secret only sealed).
#[derive(Clone)]
pub struct WebhookRecord {
    /// `wh_<16 hex>`.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Whether the target may be a loopback/private/link-local address.
    pub allow_private: bool,
    /// The `whsec_` secret, sealed.
    pub secret_sealed: Vec<u8>,
    /// Enabled or disabled.
    pub state: WebhookState,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// First failure since the last success.
    pub failing_since: Option<SystemTime>,
    /// Last delivered message.
    pub last_success_at: Option<SystemTime>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Messages waiting to be sent.
    pub queued: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Created.
    pub created_at: SystemTime,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WebhookRecord {
    /// The record as `webhooks list --json` and the admin API show it.
    pub fn to_json(&self) -> serde_json::Value {
        let time =
            |t: Option<SystemTime>| t.map_or(serde_json::Value::Null, |t| super::rfc3339(t).into());
        serde_json::json!({
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "allow_private": self.allow_private,
            "state": self.state.as_str(),
            "disabled_reason": self.disabled_reason,
            "failing_since": time(self.failing_since),
            "last_success_at": time(self.last_success_at),
            "last_error": self.last_error,
            "queued": self.queued,
            "delivered": self.delivered,
            "created_at": super::rfc3339(self.created_at),
        })
    }
}

/// A new subscription (id and sealed secret made by the caller, who binds
/// the seal to the id).
pub struct NewWebhook<'a> {
    /// `wh_<16 hex>`.
    pub id: &'a str,
    /// Checked target URL.
    pub url: &'a str,
    /// Checked event types.
    pub events: &'a [String],
    /// See [`WebhookRecord::allow_private`].
    pub allow_private: bool,
    /// The sealed `whsec_` secret.
    pub secret_sealed: &'a [u8],
}

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

const COLUMNS: &str = "w.id, w.url, w.events, w.allow_private, w.secret_sealed, w.state, \
    w.disabled_reason, w.failing_since, w.last_success_at, w.last_error, w.created_at, \
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.webhook_id = w.id AND m.state = 'queued'), \
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.webhook_id = w.id AND m.state = 'delivered')";

type Raw = (
    String,
    String,
    String,
    i64,
    Vec<u8>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    i64,
);

fn decode(r: Raw) -> Result<WebhookRecord, StoreError> {
    let state = match r.5.as_str() {
        "enabled" => WebhookState::Enabled,
        "disabled" => WebhookState::Disabled,
        other => {
            return Err(StoreError::CorruptPartner {
                what: format!("webhook state {other:?}"),
            })
        }
    };
    Ok(WebhookRecord {
        id: r.0,
        url: r.1,
        events: r.2.split_whitespace().map(str::to_string).collect(),
        allow_private: r.3 != 0,
        secret_sealed: r.4,
        state,
        disabled_reason: r.6,
        failing_since: r.7.map(from_ms),
        last_success_at: r.8.map(from_ms),
        last_error: r.9,
        created_at: from_ms(r.10),
        queued: u64::try_from(r.11).unwrap_or(0),
        delivered: u64::try_from(r.12).unwrap_or(0),
    })
}

type RawMessage = (String, String, String, String, i64, String, i64, Vec<u8>);

fn decode_message(r: RawMessage) -> WebhookMessage {
    WebhookMessage {
        msg_id: r.0,
        webhook_id: r.1,
        event_type: r.2,
        payload: r.3,
        attempts: u32::try_from(r.4).unwrap_or(u32::MAX),
        url: r.5,
        allow_private: r.6 != 0,
        secret_sealed: r.7,
    }
}

const MESSAGE_COLUMNS: &str = "m.msg_id, m.webhook_id, m.event_type, m.payload, m.attempts, \
    w.url, w.allow_private, w.secret_sealed";

/// Name of the webhooks' delivery-feed position in `gateway_state`.
const FEED_CURSOR: &str = "webhooks.feed_after_seq";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl KeyStore {
    /// Adds a subscription.
    pub async fn add_webhook(&self, new: &NewWebhook<'_>) -> Result<WebhookRecord, StoreError> {
        let now = self.now_ms();
        let events = new.events.join(" ");
        on_pool!(self, |pool, _e| sqlx::query(
            "INSERT INTO webhooks (id, url, events, allow_private, secret_sealed, state, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $6)"
        )
        .bind(new.id)
        .bind(new.url)
        .bind(&events)
        .bind(i64::from(new.allow_private))
        .bind(new.secret_sealed)
        .bind(now)
        .execute(pool)
        .await
        .map_err(self.query_err(format!("add webhook {}", new.id)))?
        .rows_affected());
        Ok(WebhookRecord {
            id: new.id.to_string(),
            url: new.url.to_string(),
            events: new.events.to_vec(),
            allow_private: new.allow_private,
            secret_sealed: new.secret_sealed.to_vec(),
            state: WebhookState::Enabled,
            disabled_reason: None,
            failing_since: None,
            last_success_at: None,
            last_error: None,
            queued: 0,
            delivered: 0,
            created_at: from_ms(now),
        })
    }

    /// Every subscription, oldest first, with its message counts.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks w ORDER BY w.created_at, w.id");
        let raw: Vec<Raw> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list webhooks"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The subscription `id`.
    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1");
        let raw: Option<Raw> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("read a webhook"))?);
        raw.map(decode).transpose()
    }

    /// Removes a subscription and its queued messages; `false` if absent.
    pub async fn remove_webhook(&self, id: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool, engine| {
            let err = || self.query_err(format!("remove webhook {id}"));
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            sqlx::query("DELETE FROM webhook_messages WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            let n = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err())?
                .rows_affected();
            tx.commit().await.map_err(err())?;
            Ok(n == 1)
        })
    }

    /// Whether any enabled subscription wants `event_type`.
    pub async fn webhooks_want(&self, event_type: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT id FROM webhooks WHERE state = 'enabled' \
             AND (' ' || events || ' ') LIKE ('% ' || $1 || ' %') LIMIT 1"
        )
        .bind(event_type)
        .fetch_optional(pool)
        .await
        .map_err(self.query_err("read webhook subscriptions"))?);
        Ok(row.is_some())
    }

    /// The delivery-feed position the webhooks have read up to.
    pub async fn webhook_cursor(&self) -> Result<Option<i64>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT value FROM gateway_state WHERE name = $1"
        )
        .bind(FEED_CURSOR)
        .fetch_optional(pool)
        .await
        .map_err(self.query_err("read the webhook feed position"))?);
        Ok(row.and_then(|(v,)| v.parse().ok()))
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
                sqlx::query(
                    "INSERT INTO gateway_state (name, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at",
                )
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
        let candidates: Vec<RawMessage> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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
            .bind(&raw.0)
            .bind(&raw.1)
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
