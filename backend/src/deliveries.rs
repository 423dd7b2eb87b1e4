//! Deliveries: a sender hands stored files to recipients, with a subject
//! and a message. Creation is idempotent under an `Idempotency-Key`.

use crate::delivery_store::{self, Delivery, Inserted, Page};
use crate::email;
use crate::ids;
use crate::problem::ApiError;
use crate::request_meta;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mft_filters::problem_types as pt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most recipients or files in one delivery.
const MAX_ITEMS: usize = 1000;
/// Longest subject, in characters.
const MAX_SUBJECT: usize = 998;
/// Longest idempotency key, in bytes.
const MAX_KEY: usize = 255;
/// Feed page size when `limit` is not given.
const DEFAULT_LIMIT: i64 = 100;
/// Largest feed page.
const MAX_LIMIT: i64 = 1000;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Body of `POST /api/v1/deliveries`.
#[derive(Debug, Deserialize, Serialize)]
pub struct NewDelivery {
    sender: String,
    recipients: Vec<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    files: Vec<String>,
}

/// Query of `GET /api/v1/deliveries`. The numbers arrive as text so that a
/// bad one gets a problem naming its parameter, not the extractor's 400.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    recipient: Option<String>,
    after_seq: Option<String>,
    limit: Option<String>,
}

/// Body of `GET /api/v1/deliveries`.
#[derive(Debug, Serialize)]
pub struct DeliveryList {
    deliveries: Vec<Delivery>,
    /// Where a poller continues: the last `seq` returned, else `after_seq`.
    next_after_seq: i64,
}

fn invalid(field: &str, detail: String) -> ApiError {
    ApiError::bad_request(format!("{field}: {detail}"))
        .with_type(pt::INVALID_DELIVERY)
        .with_field(field)
}

/// Trims addresses and checks every field's syntax.
fn validate(mut d: NewDelivery) -> Result<NewDelivery, ApiError> {
    d.sender = d.sender.trim().to_string();
    if !email::is_address(&d.sender) {
        return Err(invalid(
            "sender",
            format!("{:?} is not an e-mail address", d.sender),
        ));
    }
    if d.recipients.is_empty() {
        return Err(invalid(
            "recipients",
            "at least one recipient is required".into(),
        ));
    }
    if d.recipients.len() > MAX_ITEMS {
        return Err(invalid(
            "recipients",
            format!("at most {MAX_ITEMS} recipients"),
        ));
    }
    for (i, r) in d.recipients.iter_mut().enumerate() {
        *r = r.trim().to_string();
        if !email::is_address(r) {
            return Err(invalid(
                &format!("recipients[{i}]"),
                format!("{r:?} is not an e-mail address"),
            ));
        }
    }
    if d.subject.chars().count() > MAX_SUBJECT {
        return Err(invalid(
            "subject",
            format!("longer than {MAX_SUBJECT} characters"),
        ));
    }
    if d.subject.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(
            "subject",
            "must be one line without control characters".into(),
        ));
    }
    if d.message.contains('\0') {
        return Err(invalid("message", "must not contain NUL".into()));
    }
    if d.files.len() > MAX_ITEMS {
        return Err(invalid("files", format!("at most {MAX_ITEMS} files")));
    }
    Ok(d)
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"
            ))
            .with_field("Idempotency-Key")
        })
}

/// `POST /api/v1/deliveries`
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewDelivery = request_meta::json_body(&headers, &body, "delivery")?;
    let request = validate(request)?;
    let origin = request_meta::origin(&headers);
    let created_by = request_meta::principal(&headers);
    let key = idempotency_key(&headers)?;
    // Keys are per caller, so one principal cannot replay another's delivery.
    let scope = created_by.clone().unwrap_or_default();
    let digest = {
        let canonical = serde_json::to_vec(&(&request, &origin)).map_err(|e| {
            tracing::error!(error = %e, "cannot serialise delivery for its digest");
            ApiError::internal()
        })?;
        hex::encode(Sha256::digest(canonical))
    };

    if let Some(key) = &key {
        if let Some(replay) = replay(&state, &scope, key, &digest).await? {
            return Ok(replay);
        }
    }
    if let Some(i) = delivery_store::missing_files(&state.db, &request.files).await? {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("files[{i}]: no stored file with id {:?}", request.files[i]),
        )
        .with_type(pt::UNKNOWN_FILE)
        .with_field(format!("files[{i}]")));
    }

    let mut delivery = Delivery {
        id: ids::new_id(),
        // Assigned by the database when the row is inserted.
        seq: 0,
        sender: request.sender,
        recipients: request.recipients,
        subject: request.subject,
        message: request.message,
        files: request.files,
        origin,
        created_by,
        created_at: ids::now(),
        relay: Vec::new(),
        receipts: Vec::new(),
    };
    let key_row = key.as_deref().map(|k| (scope.as_str(), k, digest.as_str()));
    match delivery_store::insert(&state.db, &delivery, key_row).await? {
        Inserted::New(seq) => delivery.seq = seq,
        Inserted::KeyTaken => {
            // A concurrent request with the same key won the race.
            if let Some(key) = &key {
                if let Some(replay) = replay(&state, &scope, key, &digest).await? {
                    return Ok(replay);
                }
            }
            return Err(ApiError::internal());
        }
    }
    tracing::info!(delivery_id = %delivery.id, seq = delivery.seq, origin = %delivery.origin,
        recipients = delivery.recipients.len(), files = delivery.files.len(), "delivery created");
    let location = format!("/api/v1/deliveries/{}", delivery.id);
    let mut resp = (StatusCode::CREATED, Json(delivery)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The original answer for a reused key, or 422 if the key came with a
/// different request.
async fn replay(
    state: &AppState,
    scope: &str,
    key: &str,
    digest: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(used) = delivery_store::key_use(&state.db, scope, key).await? else {
        return Ok(None);
    };
    if used.request_sha256 != digest {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was already used with a different request",
        )
        .with_type(pt::IDEMPOTENCY_KEY_REUSED)
        .with_field("Idempotency-Key"));
    }
    let delivery = delivery_store::get(&state.db, &used.delivery_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let location = format!("/api/v1/deliveries/{}", delivery.id);
    let mut resp = (StatusCode::OK, Json(delivery)).into_response();
    resp.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(Some(resp))
}

/// `GET /api/v1/deliveries[?recipient=][&after_seq=N][&limit=M]`
///
/// Without `after_seq` and `limit` it lists everything, as before the feed
/// existed; with either it returns one page of the feed.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let recipient = query.recipient.as_deref().map(str::trim);
    let after_seq = number_param(query.after_seq.as_deref(), "after_seq", 0, i64::MAX)?;
    let limit = number_param(query.limit.as_deref(), "limit", 1, MAX_LIMIT)?;
    let page = (after_seq.is_some() || limit.is_some()).then(|| Page {
        after_seq: after_seq.unwrap_or(0),
        limit: limit.unwrap_or(DEFAULT_LIMIT),
    });
    let deliveries = delivery_store::list(&state.db, recipient, page).await?;
    let next_after_seq = deliveries.last().map_or(after_seq.unwrap_or(0), |d| d.seq);
    Ok(Json(DeliveryList {
        deliveries,
        next_after_seq,
    }))
}

/// A decimal query parameter in `min..=max`, or 400 naming it.
fn number_param(
    raw: Option<&str>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    // Digits only: i64::from_str would also take a sign.
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}: {raw:?} is not a whole number from {min} to {max}"
            ))
            .with_type(pt::INVALID_PARAMETER)
            .with_field(name)
        })
}

/// The delivery named in a path, 404 if the id is malformed or unknown.
pub(crate) async fn find(state: &AppState, id: &str) -> Result<Delivery, ApiError> {
    if !ids::is_valid_id(id) {
        return Err(ApiError::not_found("delivery", id));
    }
    delivery_store::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", id))
}

/// `GET /api/v1/deliveries/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    find(&state, &id).await.map(Json)
}
