//! A partner's uploads: into its inbox folder, within its daily quota.
//! The rules are in `mft_filters::trust::partner_inbox`; this keeps the
//! per-partner byte counts of the day (per gateway process) and turns a
//! partner upload's headers into the folder the backend gets.

use crate::store::partners::PartnerRecord;
use http::header::HeaderValue;
use mft_filters::decision::Rejection;
use mft_filters::trust::partner_inbox::{self, DailyUse};
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

/// Today's uploaded bytes per partner.
#[derive(Default)]
pub struct PartnerInboxes {
    used: Usage,
}

/// Bytes counted against a partner's quota for one upload: given back when
/// dropped unless the upload was stored ([`Reservation::keep`]).
pub struct Reservation {
    used: Usage,
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
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = used.get_mut(&self.partner) {
            u.refund(self.day, self.bytes);
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
    /// Checks a partner's `POST /federation/v1/files` before its body is
    /// read: a raw body (a multipart body could name its own folder), into
    /// the inbox or below it, within the day's quota by `Content-Length`
    /// (which partner uploads must send, so nothing is left to count
    /// while the body streams).
    pub fn admit(
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
            return Err(Rejection {
                status: 415,
                problem_type: "about:blank",
                detail: "a partner upload is a raw body named by X-Filename".into(),
                audit_reason: "partner_multipart",
                headers: Vec::new(),
            });
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
        let day = {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            used.entry(partner.name.clone())
                .or_default()
                .reserve(now, bytes, limit)?
        };
        Ok(UploadTarget {
            folder,
            reservation: Some(Reservation {
                used: self.used.clone(),
                partner: partner.name.clone(),
                day,
                bytes,
                kept: AtomicBool::new(false),
            }),
        })
    }
}

fn no_inbox(name: &str) -> Rejection {
    Rejection {
        status: 403,
        problem_type: partner_inbox::PROBLEM_FOLDER_NOT_ALLOWED,
        detail: format!(
            "the connection {name:?} has no usable inbox folder; our admin sets one \
             (partners set-inbox)"
        ),
        audit_reason: "no_inbox_folder",
        headers: Vec::new(),
    }
}
