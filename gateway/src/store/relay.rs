//! Trust-network relay state in the key store (migration 0004): the
//! outbound relay queue, the position in the backend's delivery feed, and
//! the inbound files whose first download owes the partner a receipt.
//!
//! Everything that must survive a restart lives here, so a relay or a
//! receipt interrupted by a crash or a partner outage resumes where it was.

pub use super::lease::LeaseToken;
use super::{from_ms, Engine, Pool, Store, StoreError};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// State of a relay job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Waiting for its (next) attempt.
    Queued,
    /// The partner accepted the delivery.
    Delivered,
    /// Given up; `last_error` says why.
    Failed,
}

impl RelayState {
    /// `queued`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Queued => "queued",
            RelayState::Delivered => "delivered",
            RelayState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<RelayState, StoreError> {
        match s {
            "queued" => Ok(RelayState::Queued),
            "delivered" => Ok(RelayState::Delivered),
            "failed" => Ok(RelayState::Failed),
            other => Err(corrupt(format!("relay state {other:?}"))),
        }
    }
}

/// One local delivery's relay to one partner.
#[derive(Debug, Clone)]
pub struct RelayJob {
    /// Our delivery.
    pub delivery_id: String,
    /// Connection name.
    pub partner: String,
    /// The delivery's recipients in that partner's domains.
    pub recipients: Vec<String>,
    /// Where it stands.
    pub state: RelayState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Our file id → the partner's file id, for files already sent.
    pub files_sent: BTreeMap<String, String>,
    /// The partner's delivery id, once accepted.
    pub remote_delivery_id: Option<String>,
    /// Queued at.
    pub created_at: SystemTime,
    /// The lease this worker holds, from [`Store::claim_due_relays`].
    pub lease: LeaseToken,
}

impl RelayJob {
    /// The job as `partners relays --json` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "delivery_id": self.delivery_id,
            "partner": self.partner,
            "recipients": self.recipients,
            "state": self.state.as_str(),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "files_sent": self.files_sent.len(),
            "remote_delivery_id": self.remote_delivery_id,
            "created_at": super::rfc3339(self.created_at),
        })
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::CorruptPartner { what }
}

fn json_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("relay recipients: {e}")))
}

fn json_map(text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("relay files: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(format!("cannot encode relay state: {e}")))
}

const JOB_COLUMNS: &str = "delivery_id, partner, recipients, state, attempts, last_error, \
    files_sent, remote_delivery_id, created_at";

/// One row as selected by [`JOB_COLUMNS`].
#[derive(sqlx::FromRow)]
struct JobRow {
    delivery_id: String,
    partner: String,
    recipients: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    files_sent: String,
    remote_delivery_id: Option<String>,
    created_at: i64,
}

fn decode_job(r: JobRow) -> Result<RelayJob, StoreError> {
    Ok(RelayJob {
        delivery_id: r.delivery_id,
        partner: r.partner,
        recipients: json_list(&r.recipients)?,
        state: RelayState::parse(&r.state)?,
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        last_error: r.last_error,
        files_sent: json_map(&r.files_sent)?,
        remote_delivery_id: r.remote_delivery_id,
        created_at: from_ms(r.created_at),
        lease: LeaseToken::default(),
    })
}

/// A job to queue: (delivery id, partner, recipients).
pub type NewRelay = (String, String, Vec<String>);

/// Name of the delivery-feed position in `gateway_state`.
const FEED_CURSOR: &str = "relay.feed_after_seq";

impl Store {
    /// The backend delivery-feed position the relay has read up to.
    pub async fn relay_cursor(&self) -> Result<Option<i64>, StoreError> {
        self.feed_position(FEED_CURSOR, "read the relay feed position")
            .await
    }

    /// Queues `jobs` (a job already queued is left as it is) and moves the
    /// feed position to `cursor`, in one transaction: a crash between the two
    /// neither loses a delivery nor queues one twice.
    pub async fn queue_relays(&self, jobs: &[NewRelay], cursor: i64) -> Result<(), StoreError> {
        let now = self.now_ms();
        on_pool!(self, |pool, engine| {
            let err = || self.query_err("queue relays");
            let mut tx = pool.begin_with(engine.begin()).await.map_err(err())?;
            for (delivery, partner, recipients) in jobs {
                sqlx::query(
                    "INSERT INTO relay_jobs (delivery_id, partner, recipients, state, \
                     next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $4, $4) \
                     ON CONFLICT (delivery_id, partner) DO NOTHING",
                )
                .bind(delivery)
                .bind(partner)
                .bind(encode(recipients)?)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            }
            sqlx::query(super::gateway_state::SET_POSITION)
                .bind(FEED_CURSOR)
                .bind(cursor.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err())?;
            tx.commit().await.map_err(err())?;
        });
        Ok(())
    }

    /// Takes up to `limit` queued jobs whose attempt is due, leasing each for
    /// `lease` so another gateway on the same store leaves them alone.
    pub async fn claim_due_relays(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<RelayJob>, StoreError> {
        let now = self.now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM relay_jobs WHERE state = 'queued' \
             AND next_attempt_at <= $1 AND lease_until <= $1 \
             ORDER BY next_attempt_at LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let candidates: Vec<JobRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("read due relays"))?);
        let mut claimed = Vec::with_capacity(candidates.len());
        for raw in candidates {
            let taken = on_pool!(self, |pool, _e| {
                sqlx::query(
                "UPDATE relay_jobs SET lease_until = $1 \
                 WHERE delivery_id = $2 AND partner = $3 AND state = 'queued' AND lease_until <= $4"
            )
            .bind(until)
            .bind(&raw.delivery_id)
            .bind(&raw.partner)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err("lease a relay"))
            .map(|r| r.rows_affected())
            });
            match taken {
                Ok(1) => {
                    let job = decode_job(raw)?;
                    job.lease.set(until);
                    claimed.push(job);
                }
                Ok(_) => {}
                // The store went away midway: the jobs leased so far are
                // worked rather than left leased by nobody until they expire.
                Err(e) if !claimed.is_empty() => {
                    tracing::warn!(error = %e, claimed = claimed.len(), "relay claim cut short");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(claimed)
    }

    /// Keeps a job leased for another `lease` while it is worked; `false`
    /// if the lease is no longer this worker's (it ran out and another
    /// gateway claimed the job): the worker must stop.
    pub async fn renew_relay_lease(
        &self,
        job: &RelayJob,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let until = self
            .now_ms()
            .saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
            // Always a new value, so the token changes with every renewal.
            .max(job.lease.until().saturating_add(1));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE relay_jobs SET lease_until = $1 \
             WHERE delivery_id = $2 AND partner = $3 AND state = 'queued' AND lease_until = $4"
        )
        .bind(until)
        .bind(&job.delivery_id)
        .bind(&job.partner)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("renew a relay lease"))?
        .rows_affected());
        if n == 1 {
            job.lease.set(until);
        }
        Ok(n == 1)
    }

    /// Gives a claimed job back at once (shutdown): another gateway, or
    /// this one after its restart, may take it without waiting for the lease.
    pub async fn release_relay_lease(&self, job: &RelayJob) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE relay_jobs SET lease_until = 0 \
             WHERE delivery_id = $1 AND partner = $2 AND state = 'queued' AND lease_until = $3"
        )
        .bind(&job.delivery_id)
        .bind(&job.partner)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("release a relay lease"))?
        .rows_affected());
        Ok(())
    }

    /// The job relaying `delivery_id` to `partner`.
    pub async fn relay_job(
        &self,
        delivery_id: &str,
        partner: &str,
    ) -> Result<Option<RelayJob>, StoreError> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM relay_jobs WHERE delivery_id = $1 AND partner = $2");
        let raw: Option<JobRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(delivery_id)
            .bind(partner)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("read a relay"))?);
        raw.map(decode_job).transpose()
    }

    /// Every job, newest first (for operators and tests).
    pub async fn list_relays(&self) -> Result<Vec<RelayJob>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM relay_jobs ORDER BY created_at DESC");
        let raw: Vec<JobRow> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list relays"))?);
        raw.into_iter().map(decode_job).collect()
    }

    /// An operator's retry of a failed job (console, `POST
    /// /admin/v1/relays/.../retry`): queued again, due now, attempts from
    /// zero; files already sent stay sent. False if no such failed job.
    pub async fn retry_failed_relay(
        &self,
        delivery_id: &str,
        partner: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE relay_jobs SET state = 'queued', attempts = 0, next_attempt_at = $1, \
             lease_until = 0, updated_at = $2 \
             WHERE delivery_id = $3 AND partner = $4 AND state = 'failed'"
        )
        .bind(now)
        .bind(now)
        .bind(delivery_id)
        .bind(partner)
        .execute(pool)
        .await
        .map_err(self.query_err("retry a relay"))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Records a file sent to the partner, so a retry does not send it again.
    pub async fn relay_file_sent(
        &self,
        job: &RelayJob,
        local_file: &str,
        remote_file: &str,
    ) -> Result<(), StoreError> {
        let mut sent = job.files_sent.clone();
        sent.insert(local_file.to_string(), remote_file.to_string());
        let text = encode(&sent)?;
        let now = self.now_ms();
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE relay_jobs SET files_sent = $1, updated_at = $2 \
             WHERE delivery_id = $3 AND partner = $4"
        )
        .bind(&text)
        .bind(now)
        .bind(&job.delivery_id)
        .bind(&job.partner)
        .execute(pool)
        .await
        .map_err(self.query_err("record a relayed file"))?
        .rows_affected());
        Ok(())
    }

    /// After a failed attempt: count it and schedule the next one after
    /// `delay`; `false` if the job's lease is no longer this worker's.
    pub async fn relay_retry_later(
        &self,
        job: &RelayJob,
        delay: Duration,
        error: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let n = on_pool!(self, |pool, _e| {
            sqlx::query(
            "UPDATE relay_jobs SET attempts = attempts + 1, next_attempt_at = $1, lease_until = 0, \
             last_error = $2, updated_at = $3 WHERE delivery_id = $4 AND partner = $5 \
             AND lease_until = $6"
        )
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(&job.delivery_id)
        .bind(&job.partner)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("reschedule a relay"))?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Ends a job: delivered (with the partner's delivery id) or failed;
    /// `false` if the job's lease is no longer this worker's.
    pub async fn relay_finish(
        &self,
        job: &RelayJob,
        state: RelayState,
        remote_delivery_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE relay_jobs SET state = $1, attempts = attempts + 1, lease_until = 0, \
             remote_delivery_id = $2, last_error = $3, updated_at = $4 \
             WHERE delivery_id = $5 AND partner = $6 AND lease_until = $7"
        )
        .bind(state.as_str())
        .bind(remote_delivery_id)
        .bind(error)
        .bind(now)
        .bind(&job.delivery_id)
        .bind(&job.partner)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("finish a relay"))?
        .rows_affected());
        Ok(n == 1)
    }
}
