//! Webhook subscriptions and their durable outbox (migration 0007).
//!
//! A subscription keeps its signing secret sealed (the store sees only the
//! sealed bytes, see `webhooks::secret`). Every event is written here, one
//! row per subscribed subscription, before anything is sent; the worker
//! claims due rows with a lease, so a crash or a receiver outage only
//! delays a message (at-least-once, always with the same webhook-id).

use super::{from_ms, Engine, Pool, Store, StoreError};
use std::time::SystemTime;

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

const COLUMNS: &str = "w.id, w.url, w.events, w.allow_private, w.secret_sealed, w.state, \
    w.disabled_reason, w.failing_since, w.last_success_at, w.last_error, w.created_at, \
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.webhook_id = w.id AND m.state = 'queued') AS queued, \
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.webhook_id = w.id AND m.state = 'delivered') AS delivered";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    url: String,
    events: String,
    allow_private: i64,
    secret_sealed: Vec<u8>,
    state: String,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
    last_success_at: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    queued: i64,
    delivered: i64,
}

fn decode(r: WebhookRow) -> Result<WebhookRecord, StoreError> {
    let state = match r.state.as_str() {
        "enabled" => WebhookState::Enabled,
        "disabled" => WebhookState::Disabled,
        other => {
            return Err(StoreError::CorruptPartner {
                what: format!("webhook state {other:?}"),
            })
        }
    };
    Ok(WebhookRecord {
        id: r.id,
        url: r.url,
        events: r.events.split_whitespace().map(str::to_string).collect(),
        allow_private: r.allow_private != 0,
        secret_sealed: r.secret_sealed,
        state,
        disabled_reason: r.disabled_reason,
        failing_since: r.failing_since.map(from_ms),
        last_success_at: r.last_success_at.map(from_ms),
        last_error: r.last_error,
        created_at: from_ms(r.created_at),
        queued: u64::try_from(r.queued).unwrap_or(0),
        delivered: u64::try_from(r.delivered).unwrap_or(0),
    })
}

impl Store {
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
        self.counters
            .webhook_adds
            .fetch_add(1, std::sync::atomic::Ordering::Release);
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
        let raw: Vec<WebhookRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list webhooks"))?);
        raw.into_iter().map(decode).collect()
    }

    /// The subscription `id`.
    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1");
        let raw: Option<WebhookRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
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

    /// Subscriptions added through this handle since it was opened: a
    /// cached "nobody wants this event" in the same process is stale once
    /// this moves.
    pub fn webhook_adds(&self) -> u64 {
        self.counters
            .webhook_adds
            .load(std::sync::atomic::Ordering::Acquire)
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
}
