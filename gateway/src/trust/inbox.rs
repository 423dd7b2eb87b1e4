//! A partner's uploads: into its inbox folder, within its daily quota.
//! The rules are in `mft_filters::trust::partner_inbox`; this keeps the
//! per-partner byte counts of the day and turns a partner upload's headers
//! into the folder the backend gets.
//!
//! The count is per gateway process, or, when `[rate_limit] redis` is set,
//! one count in Redis shared by every instance (`mft:quota:partner:<name>:
//! <day>`, an atomic check-and-add that expires at the end of the UTC day;
//! a failed upload gives its bytes back). If Redis cannot be asked,
//! `rate_limit.on_redis_error` decides, as for the rate limits: `local`
//! counts in this process, `deny` answers 503.

use crate::ratelimit::redis::RedisLimiter;
use crate::runtime::ServiceRuntime;
use crate::store::partners::PartnerRecord;
use http::header::HeaderValue;
use mft_config::model::OnRedisError;
use mft_filters::decision::Rejection;
use mft_filters::problem_types as pt;
use mft_filters::trust::partner_inbox::{self, DailyUse, DAY_SECS};
use mft_filters::validation::upload_names::header_folder;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What stays readable in an `X-Folder` value; the backend percent-decodes it.
const FOLDER_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

type Usage = Arc<Mutex<HashMap<String, DailyUse>>>;

/// The count shared through Redis.
#[derive(Clone)]
pub struct SharedQuota {
    /// The rate limiter's Redis client.
    pub redis: Arc<RedisLimiter>,
    /// `rate_limit.on_redis_error`.
    pub on_error: OnRedisError,
    /// Where a refund runs (it outlives the request).
    pub control: ServiceRuntime,
}

/// Today's uploaded bytes per partner.
#[derive(Default)]
pub struct PartnerInboxes {
    used: Usage,
    shared: Option<SharedQuota>,
}

/// Where a reservation's bytes were counted.
enum Counted {
    /// In this process.
    Local(Usage),
    /// In Redis under this key.
    Shared(SharedQuota, String),
}

/// Bytes counted against a partner's quota for one upload: given back when
/// dropped unless the upload was stored ([`Reservation::keep`]).
pub struct Reservation {
    counted: Counted,
    partner: String,
    day: u64,
    bytes: u64,
    kept: AtomicBool,
}

impl Reservation {
    /// The upload was stored: its bytes stay counted.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept.load(Ordering::Relaxed) {
            return;
        }
        match &self.counted {
            Counted::Local(used) => {
                let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(u) = used.get_mut(&self.partner) {
                    u.refund(self.day, self.bytes);
                }
            }
            Counted::Shared(shared, key) => {
                let (redis, key, bytes) = (shared.redis.clone(), key.clone(), self.bytes);
                shared.control.spawn(async move {
                    if let Err(e) = redis.quota_refund(&key, bytes).await {
                        tracing::warn!(error = %e, "cannot give a partner's quota bytes back in Redis");
                    }
                });
            }
        }
    }
}

/// Where a partner upload goes and what it reserved.
pub struct UploadTarget {
    /// The `X-Folder` sent to the backend in place of the partner's.
    pub folder: HeaderValue,
    /// Present when the connection has a quota.
    pub reservation: Option<Reservation>,
}

impl PartnerInboxes {
    /// Counts daily quotas in Redis, shared by every instance.
    pub fn shared(shared: Option<SharedQuota>) -> PartnerInboxes {
        PartnerInboxes {
            used: Usage::default(),
            shared,
        }
    }

    /// Checks a partner's `POST /federation/v1/files` before its body is
    /// read: a raw body (a multipart body could name its own folder), into
    /// the inbox or below it, within the day's quota by `Content-Length`
    /// (which partner uploads must send, so nothing is left to count
    /// while the body streams).
    pub async fn admit(
        &self,
        partner: &PartnerRecord,
        headers: &http::HeaderMap,
    ) -> Result<UploadTarget, Rejection> {
        let multipart = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
            });
        if multipart {
            return Err(Rejection::new(
                415,
                "about:blank",
                "a partner upload is a raw body named by X-Filename",
                "partner_multipart",
            ));
        }
        let Some(inbox) = partner.inbox() else {
            return Err(no_inbox(&partner.name));
        };
        let requested = match headers.get("x-folder") {
            Some(raw) => Some(
                header_folder(raw.as_bytes())
                    .map_err(|e| Rejection::invalid_name("X-Folder", &e))?,
            ),
            None => None,
        };
        let folder = partner_inbox::upload_folder(&inbox, requested.as_deref())?;
        let folder = HeaderValue::from_str(&utf8_percent_encode(&folder, FOLDER_VALUE).to_string())
            .map_err(|_| no_inbox(&partner.name))?;
        let Some(limit) = partner.quota_bytes_per_day else {
            return Ok(UploadTarget {
                folder,
                reservation: None,
            });
        };
        let bytes = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Rejection::bad_request(
                    "a partner upload needs a valid Content-Length".into(),
                    "length_required",
                )
            })?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(shared) = &self.shared {
            let day = now / DAY_SECS;
            let key = format!("mft:quota:partner:{}:{day}", partner.name);
            // Kept one hour past the day's end: a gateway with a clock a
            // little behind still finds the day's count.
            let expire_at = (day + 1) * DAY_SECS + 3600;
            match shared
                .redis
                .quota_reserve(&key, bytes, limit, expire_at)
                .await
            {
                Ok(Ok(())) => {
                    return Ok(UploadTarget {
                        folder,
                        reservation: Some(Reservation {
                            counted: Counted::Shared(shared.clone(), key),
                            partner: partner.name.clone(),
                            day,
                            bytes,
                            kept: AtomicBool::new(false),
                        }),
                    });
                }
                Ok(Err(used)) => {
                    return Err(partner_inbox::quota_exceeded(now, bytes, limit, used));
                }
                // Logged and counted by the Redis client.
                Err(_) => match shared.on_error {
                    OnRedisError::Local => {}
                    OnRedisError::Deny => {
                        return Err(Rejection::rate_limit_unavailable(
                            std::time::Duration::from_secs(1),
                        ))
                    }
                },
            }
        }
        let day = {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            used.entry(partner.name.clone())
                .or_default()
                .reserve(now, bytes, limit)?
        };
        Ok(UploadTarget {
            folder,
            reservation: Some(Reservation {
                counted: Counted::Local(self.used.clone()),
                partner: partner.name.clone(),
                day,
                bytes,
                kept: AtomicBool::new(false),
            }),
        })
    }
}

fn no_inbox(name: &str) -> Rejection {
    Rejection::new(
        403,
        pt::FOLDER_NOT_ALLOWED,
        format!(
            "the connection {name:?} has no usable inbox folder; our admin sets one \
             (partners set-inbox)"
        ),
        "no_inbox_folder",
    )
}
