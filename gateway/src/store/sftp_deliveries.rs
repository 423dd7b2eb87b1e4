//! The SFTP bridge's on_upload delivery jobs (table `sftp_deliveries`,
//! migration 0015): written when an uploaded file is closed, before the
//! first attempt, and worked under a lease ([`LeaseToken`]) until the
//! backend made the delivery or it is given up. Every write about a claimed
//! job is fenced by its lease, as for the relay queue.

use super::lease::LeaseToken;
use super::{from_ms, ms, Engine, Pool, Store, StoreError};
use std::time::{Duration, SystemTime};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SftpDeliveryState {
    /// Waiting for its (next) attempt.
    Queued,
    /// The backend made the delivery.
    Delivered,
    /// Given up (refused by the backend, or too old); `last_error` says why.
    Failed,
}

impl SftpDeliveryState {
    /// `queued`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SftpDeliveryState::Queued => "queued",
            SftpDeliveryState::Delivered => "delivered",
            SftpDeliveryState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<SftpDeliveryState, StoreError> {
        match s {
            "queued" => Ok(SftpDeliveryState::Queued),
            "delivered" => Ok(SftpDeliveryState::Delivered),
            "failed" => Ok(SftpDeliveryState::Failed),
            other => Err(StoreError::CorruptSftpDelivery {
                what: format!("state {other:?}"),
            }),
        }
    }
}

/// A job to write.
#[derive(Debug, Clone)]
pub struct NewSftpDelivery {
    /// The SFTP user.
    pub user: String,
    /// The file's path as the user saw it.
    pub path: String,
    /// The backend's file id.
    pub file_id: String,
    /// `sftp:<user>:<file id>`.
    pub idempotency_key: String,
    /// The delivery request (JSON), sent the same at every attempt.
    pub request: String,
}

/// One on_upload delivery job.
#[derive(Debug, Clone)]
pub struct SftpDelivery {
    /// `sd_<hex>`.
    pub id: String,
    /// The SFTP user.
    pub user: String,
    /// The file's path as the user saw it.
    pub path: String,
    /// The backend's file id.
    pub file_id: String,
    /// `sftp:<user>:<file id>`.
    pub idempotency_key: String,
    /// The delivery request (JSON).
    pub request: String,
    /// Where it stands.
    pub state: SftpDeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (queued jobs).
    pub next_attempt_at: SystemTime,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The backend's delivery id, once made.
    pub delivery_id: Option<String>,
    /// Written at (the upload's close).
    pub created_at: SystemTime,
    /// The lease this worker holds; `0` for a job read without claiming it.
    pub lease: LeaseToken,
}

impl SftpDelivery {
    /// The job as `sftp deliveries list --json` shows it (not the request:
    /// the recipients are the operator's, the rest is derived).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "user": self.user,
            "path": self.path,
            "file_id": self.file_id,
            "idempotency_key": self.idempotency_key,
            "state": self.state.as_str(),
            "attempts": self.attempts,
            "next_attempt_at": super::rfc3339(self.next_attempt_at),
            "last_error": self.last_error,
            "delivery_id": self.delivery_id,
            "created_at": super::rfc3339(self.created_at),
        })
    }
}

const COLUMNS: &str = "id, sftp_user, path, file_id, idempotency_key, request, state, attempts, \
    next_attempt_at, last_error, delivery_id, created_at";

/// One row as selected by [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    sftp_user: String,
    path: String,
    file_id: String,
    idempotency_key: String,
    request: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    delivery_id: Option<String>,
    created_at: i64,
}

fn decode(r: Row) -> Result<SftpDelivery, StoreError> {
    Ok(SftpDelivery {
        id: r.id,
        user: r.sftp_user,
        path: r.path,
        file_id: r.file_id,
        idempotency_key: r.idempotency_key,
        request: r.request,
        state: SftpDeliveryState::parse(&r.state)?,
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        next_attempt_at: from_ms(r.next_attempt_at),
        last_error: r.last_error,
        delivery_id: r.delivery_id,
        created_at: from_ms(r.created_at),
        lease: LeaseToken::default(),
    })
}

/// Longest `last_error` kept: a backend's problem detail, not its body.
const MAX_ERROR: usize = 500;

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR).collect()
}

/// Jobs per state, for the series and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SftpDeliveryCounts {
    /// Waiting for an attempt.
    pub queued: u64,
    /// Given up.
    pub failed: u64,
}

impl Store {
    /// Writes a job, leased for `lease` by the caller, which makes the
    /// first attempt itself (the close of the file waits for it); durable
    /// once this returns. `None` if a job under the same idempotency key
    /// exists already (its owner delivers it).
    pub async fn queue_sftp_delivery(
        &self,
        new: &NewSftpDelivery,
        lease: Duration,
    ) -> Result<Option<SftpDelivery>, StoreError> {
        let now = self.now_ms();
        let until = now.saturating_add(ms(lease));
        let id = format!("sd_{}", uuid::Uuid::now_v7().simple());
        let n = on_pool!(self, |pool, _e| {
            sqlx::query(
            "INSERT INTO sftp_deliveries (id, sftp_user, path, file_id, idempotency_key, request, \
             state, next_attempt_at, lease_until, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $7, $7) \
             ON CONFLICT (idempotency_key) DO NOTHING"
        )
        .bind(&id)
        .bind(&new.user)
        .bind(&new.path)
        .bind(&new.file_id)
        .bind(&new.idempotency_key)
        .bind(&new.request)
        .bind(now)
        .bind(until)
        .execute(pool)
        .await
        .map_err(self.query_err("queue an sftp delivery"))?
        .rows_affected()
        });
        if n == 0 {
            return Ok(None);
        }
        let job = SftpDelivery {
            id,
            user: new.user.clone(),
            path: new.path.clone(),
            file_id: new.file_id.clone(),
            idempotency_key: new.idempotency_key.clone(),
            request: new.request.clone(),
            state: SftpDeliveryState::Queued,
            attempts: 0,
            next_attempt_at: from_ms(now),
            last_error: None,
            delivery_id: None,
            created_at: from_ms(now),
            lease: LeaseToken::default(),
        };
        job.lease.set(until);
        Ok(Some(job))
    }

    /// Takes up to `limit` queued jobs whose attempt is due and whose lease
    /// (if any) ran out, leasing each for `lease`.
    pub async fn claim_due_sftp_deliveries(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<SftpDelivery>, StoreError> {
        let now = self.now_ms();
        let until = now.saturating_add(ms(lease));
        let sql = format!(
            "SELECT {COLUMNS} FROM sftp_deliveries WHERE state = 'queued' \
             AND next_attempt_at <= $1 AND lease_until <= $1 ORDER BY next_attempt_at LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let candidates: Vec<Row> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("read due sftp deliveries"))?);
        let mut claimed = Vec::with_capacity(candidates.len());
        for raw in candidates {
            // Only if nobody claimed it since the SELECT: of two gateways
            // racing for a job, one UPDATE matches.
            let taken = on_pool!(self, |pool, _e| sqlx::query(
                "UPDATE sftp_deliveries SET lease_until = $1 \
                 WHERE id = $2 AND state = 'queued' AND lease_until <= $3"
            )
            .bind(until)
            .bind(&raw.id)
            .bind(now)
            .execute(pool)
            .await
            .map_err(self.query_err("lease an sftp delivery"))
            .map(|r| r.rows_affected()));
            match taken {
                Ok(1) => {
                    let job = decode(raw)?;
                    job.lease.set(until);
                    claimed.push(job);
                }
                Ok(_) => {}
                // The jobs leased so far are worked rather than left
                // leased by nobody until they expire.
                Err(e) if !claimed.is_empty() => {
                    tracing::warn!(error = %e, claimed = claimed.len(), "sftp delivery claim cut short");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(claimed)
    }

    /// Keeps a job leased for another `lease` while it is worked; `false`
    /// if the lease is no longer this worker's: it must stop.
    pub async fn renew_sftp_delivery_lease(
        &self,
        job: &SftpDelivery,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let until = self
            .now_ms()
            .saturating_add(ms(lease))
            // Always a new value, so the token changes with every renewal.
            .max(job.lease.until().saturating_add(1));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE sftp_deliveries SET lease_until = $1 \
             WHERE id = $2 AND state = 'queued' AND lease_until = $3"
        )
        .bind(until)
        .bind(&job.id)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("renew an sftp delivery lease"))?
        .rows_affected());
        if n == 1 {
            job.lease.set(until);
        }
        Ok(n == 1)
    }

    /// Gives a claimed job back at once (shutdown): the next process, or
    /// another gateway, takes it without waiting for the lease.
    pub async fn release_sftp_delivery_lease(&self, job: &SftpDelivery) -> Result<(), StoreError> {
        on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE sftp_deliveries SET lease_until = 0 \
             WHERE id = $1 AND state = 'queued' AND lease_until = $2"
        )
        .bind(&job.id)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("release an sftp delivery lease"))?
        .rows_affected());
        Ok(())
    }

    /// After a failed attempt: count it and schedule the next one after
    /// `delay`; `false` if the job's lease is no longer this worker's.
    pub async fn sftp_delivery_retry_later(
        &self,
        job: &SftpDelivery,
        delay: Duration,
        error: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let next = now.saturating_add(ms(delay));
        let n = on_pool!(self, |pool, _e| sqlx::query(
            "UPDATE sftp_deliveries SET attempts = attempts + 1, next_attempt_at = $1, \
             lease_until = 0, last_error = $2, updated_at = $3 \
             WHERE id = $4 AND state = 'queued' AND lease_until = $5"
        )
        .bind(next)
        .bind(clip(error))
        .bind(now)
        .bind(&job.id)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("reschedule an sftp delivery"))?
        .rows_affected());
        Ok(n == 1)
    }

    /// Ends a job: delivered (with the backend's delivery id) or failed
    /// (with why), after an attempt (`attempted`, counted) or without one
    /// (given up for its age); `false` if the lease is no longer this
    /// worker's (the new owner records its own outcome).
    pub async fn sftp_delivery_finish(
        &self,
        job: &SftpDelivery,
        state: SftpDeliveryState,
        delivery_id: Option<&str>,
        error: Option<&str>,
        attempted: bool,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let n = on_pool!(self, |pool, _e| {
            sqlx::query(
            "UPDATE sftp_deliveries SET state = $1, attempts = attempts + $2, lease_until = 0, \
             delivery_id = $3, last_error = $4, updated_at = $5 \
             WHERE id = $6 AND state = 'queued' AND lease_until = $7"
        )
        .bind(state.as_str())
        .bind(i64::from(attempted))
        .bind(delivery_id)
        .bind(error.map(clip))
        .bind(now)
        .bind(&job.id)
        .bind(job.lease.until())
        .execute(pool)
        .await
        .map_err(self.query_err("finish an sftp delivery"))?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// When the worker has something to do next: the earliest time a
    /// queued job is due and free of its lease; `None` when no job is
    /// queued (the worker then sleeps until a new one is written).
    pub async fn next_sftp_delivery_due(&self) -> Result<Option<SystemTime>, StoreError> {
        let next: Option<i64> = on_pool!(self, |pool, _e| sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until \
             ELSE next_attempt_at END) FROM sftp_deliveries WHERE state = 'queued'"
        )
        .fetch_one(pool)
        .await
        .map_err(self.query_err("read the next sftp delivery"))?);
        Ok(next.map(from_ms))
    }

    /// Queued and failed jobs.
    pub async fn sftp_delivery_counts(&self) -> Result<SftpDeliveryCounts, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool, _e| sqlx::query_as(
            "SELECT state, COUNT(*) FROM sftp_deliveries \
             WHERE state IN ('queued', 'failed') GROUP BY state"
        )
        .fetch_all(pool)
        .await
        .map_err(self.query_err("count sftp deliveries"))?);
        let mut counts = SftpDeliveryCounts::default();
        for (state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "queued" => counts.queued = n,
                _ => counts.failed = n,
            }
        }
        Ok(counts)
    }

    /// The job `id`.
    pub async fn sftp_delivery(&self, id: &str) -> Result<Option<SftpDelivery>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sftp_deliveries WHERE id = $1");
        let raw: Option<Row> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(self.query_err("read an sftp delivery"))?);
        raw.map(decode).transpose()
    }

    /// The newest `limit` jobs, newest first (operators, tests).
    pub async fn list_sftp_deliveries(
        &self,
        limit: usize,
    ) -> Result<Vec<SftpDelivery>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sftp_deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw: Vec<Row> = on_pool!(self, |pool, _e| sqlx::query_as(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(self.query_err("list sftp deliveries"))?);
        raw.into_iter().map(decode).collect()
    }
}
