//! Named positions the gateway keeps in its own table (`gateway_state`):
//! how far the relay and the webhooks have read the backend's delivery
//! feed. Each is written in the same transaction as the work it queued.

use super::{Engine, Pool, Store, StoreError};

/// Sets one position (inside the caller's transaction).
pub(super) const SET_POSITION: &str = "INSERT INTO gateway_state (name, value, updated_at) \
    VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
    updated_at = excluded.updated_at";

impl Store {
    /// The feed position stored under `name`, if any; `what` names it in
    /// an error.
    pub(super) async fn feed_position(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<Option<i64>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT value FROM gateway_state WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(self.query_err(what))?);
        Ok(row.and_then(|(v,)| v.parse().ok()))
    }
}
