//! What the gateway reports about a delivery it relays to partner
//! organisations: per-recipient relay status and download receipts.
//!
//! Only the gateway itself may write these. It calls with the principal
//! `gateway`, while every client request it proxies carries the client's
//! `key:`/`jwt:`/`partner:` principal, so no client can forge a status.

use crate::deliveries::{find, IDEMPOTENT_REPLAYED};
use crate::delivery_store::{self, Delivery};
use crate::ids;
use crate::problem::ApiError;
use crate::relay_store::{self, Receipt, RelayChange, RelayStatus};
use crate::request_meta;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mft_filters::problem_types as pt;
use serde::Deserialize;

/// Longest `detail`, in characters.
const MAX_DETAIL: usize = 500;
/// Longest `remote_delivery_id`, in bytes.
const MAX_REMOTE_ID: usize = 255;
/// Longest partner (connection) name, as the gateway allows.
const MAX_PARTNER: usize = 64;
/// Most recipients in one relay update, as in a delivery.
const MAX_RECIPIENTS: usize = 1000;

/// Body of `PUT /api/v1/deliveries/{id}/relay`.
#[derive(Debug, Deserialize)]
pub struct RelayUpdate {
    partner: String,
    recipients: Vec<String>,
    status: String,
    detail: Option<String>,
    remote_delivery_id: Option<String>,
    attempts: Option<u32>,
}

/// Body of `POST /api/v1/deliveries/{id}/receipts`.
#[derive(Debug, Deserialize)]
pub struct NewReceipt {
    partner: String,
    file_id: String,
    downloaded_at: String,
}

fn invalid(kind: &str, field: &str, detail: String) -> ApiError {
    ApiError::bad_request(format!("{field}: {detail}"))
        .with_type(kind)
        .with_field(field)
}

fn invalid_relay(field: &str, detail: String) -> ApiError {
    invalid(pt::INVALID_RELAY, field, detail)
}

fn invalid_receipt(field: &str, detail: String) -> ApiError {
    invalid(pt::INVALID_RECEIPT, field, detail)
}

/// 403 unless the gateway itself is calling.
fn require_gateway(headers: &HeaderMap) -> Result<(), ApiError> {
    if request_meta::is_gateway(headers) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "only the gateway (X-MFT-Principal: {}) may report relay status and receipts",
            request_meta::GATEWAY_PRINCIPAL
        ),
    )
    .with_type(pt::GATEWAY_ONLY))
}

/// Whether `name` can be a gateway connection name: the gateway's rule
/// (`store::partners::valid_name`), so that every partner it can relay to
/// is accepted here.
fn is_partner_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARTNER
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn partner(raw: &str, invalid: fn(&str, String) -> ApiError) -> Result<String, ApiError> {
    if is_partner_name(raw) {
        return Ok(raw.to_string());
    }
    Err(invalid(
        "partner",
        format!(
            "{raw:?} is not a connection name (1 to {MAX_PARTNER} letters, digits, '-', '_', '.')"
        ),
    ))
}

/// Each requested recipient as the delivery spells it (the first
/// case-insensitive match), or 400 naming the one that is not a recipient.
fn delivery_spellings(requested: &[String], delivery: &Delivery) -> Result<Vec<String>, ApiError> {
    if requested.is_empty() {
        return Err(invalid_relay(
            "recipients",
            "at least one recipient is required".into(),
        ));
    }
    if requested.len() > MAX_RECIPIENTS {
        return Err(invalid_relay(
            "recipients",
            format!("at most {MAX_RECIPIENTS} recipients"),
        ));
    }
    let mut spellings: Vec<String> = Vec::with_capacity(requested.len());
    for (i, raw) in requested.iter().enumerate() {
        let wanted = delivery_store::fold(raw.trim());
        let Some(found) = delivery
            .recipients
            .iter()
            .find(|r| delivery_store::fold(r) == wanted)
        else {
            return Err(invalid_relay(
                &format!("recipients[{i}]"),
                format!("{raw:?} is not a recipient of this delivery"),
            ));
        };
        if !spellings.contains(found) {
            spellings.push(found.clone());
        }
    }
    Ok(spellings)
}

/// `detail` if it is short text; an empty one counts as none.
fn detail(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(text) = raw.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_DETAIL {
        return Err(invalid_relay(
            "detail",
            format!("longer than {MAX_DETAIL} characters"),
        ));
    }
    // Line breaks and tabs are fine in an error text; other controls are not.
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid_relay(
            "detail",
            "must not contain control characters other than tab and line feed".into(),
        ));
    }
    Ok(Some(text))
}

fn remote_delivery_id(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(id) = raw else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > MAX_REMOTE_ID || id.chars().any(char::is_control) {
        return Err(invalid_relay(
            "remote_delivery_id",
            format!("must be 1 to {MAX_REMOTE_ID} bytes without control characters"),
        ));
    }
    Ok(Some(id))
}

fn relay_status(raw: &str) -> Result<RelayStatus, ApiError> {
    RelayStatus::parse(raw).ok_or_else(|| {
        let known: Vec<&str> = RelayStatus::ALL.iter().map(|s| s.as_str()).collect();
        invalid_relay(
            "status",
            format!("{raw:?} is not one of {}", known.join(", ")),
        )
    })
}

/// `PUT /api/v1/deliveries/{id}/relay`
pub async fn put_relay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Delivery>, ApiError> {
    require_gateway(&headers)?;
    let update: RelayUpdate = request_meta::json_body(&headers, &body, "relay status")?;
    let partner = partner(&update.partner, invalid_relay)?;
    let status = relay_status(&update.status)?;
    let detail = detail(update.detail.as_deref())?;
    let remote_delivery_id = remote_delivery_id(update.remote_delivery_id.as_deref())?;
    // A delivery never changes once created, so checking the recipients
    // outside the write transaction below cannot go stale.
    let delivery = find(&state, &id).await?;
    let recipients = delivery_spellings(&update.recipients, &delivery)?;

    let updated_at = ids::now();
    let change = RelayChange {
        delivery_id: &delivery.id,
        recipients: &recipients,
        partner: &partner,
        status,
        detail,
        remote_delivery_id,
        attempts: update.attempts.map(i64::from),
        updated_at: &updated_at,
    };
    let mut tx = state.db.begin().await?;
    relay_store::upsert(&mut tx, &change).await?;
    let answer = delivery_store::load(&mut tx, &delivery.id).await?;
    tx.commit().await?;
    tracing::info!(delivery_id = %delivery.id, %partner, status = status.as_str(),
        recipients = recipients.len(), "relay status recorded");
    answer.map(Json).ok_or_else(ApiError::internal)
}

/// `POST /api/v1/deliveries/{id}/receipts`
pub async fn post_receipt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_gateway(&headers)?;
    let request: NewReceipt = request_meta::json_body(&headers, &body, "receipt")?;
    let partner = partner(&request.partner, invalid_receipt)?;
    let downloaded_at =
        ids::normalize_timestamp(request.downloaded_at.trim()).ok_or_else(|| {
            invalid_receipt(
                "downloaded_at",
                format!("{:?} is not an RFC 3339 time", request.downloaded_at),
            )
        })?;
    let delivery = find(&state, &id).await?;
    let file_id = request.file_id.trim();
    if !delivery.files.iter().any(|f| f == file_id) {
        return Err(invalid_receipt(
            "file_id",
            format!("{file_id:?} is not a file of this delivery"),
        ));
    }

    let receipt = Receipt {
        file_id: file_id.to_string(),
        partner,
        downloaded_at,
        recorded_at: ids::now(),
    };
    let mut tx = state.db.begin().await?;
    let new = relay_store::insert_receipt(&mut tx, &delivery.id, &receipt).await?;
    let answer = delivery_store::load(&mut tx, &delivery.id).await?;
    tx.commit().await?;
    let answer = answer.ok_or_else(ApiError::internal)?;
    if !new {
        let mut resp = (StatusCode::OK, Json(answer)).into_response();
        resp.headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        return Ok(resp);
    }
    tracing::info!(delivery_id = %delivery.id, file_id = %receipt.file_id,
        partner = %receipt.partner, "download receipt recorded");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_names_follow_the_gateway_connection_rule() {
        for good in ["beta", "acme-2", "Beta_EU", "gw.acme", &"a".repeat(64)] {
            assert!(is_partner_name(good), "{good}");
        }
        for bad in ["", "beta corp", "beta/x", "bêta", "beta:1", &"a".repeat(65)] {
            assert!(!is_partner_name(bad), "{bad}");
        }
    }

    #[test]
    fn detail_is_bounded_text() {
        assert_eq!(detail(None).ok(), Some(None));
        assert_eq!(detail(Some("")).ok(), Some(None));
        assert_eq!(
            detail(Some("503 from beta\n\tretry")).ok(),
            Some(Some("503 from beta\n\tretry"))
        );
        let long = "é".repeat(MAX_DETAIL + 1);
        let at_limit = "é".repeat(MAX_DETAIL);
        assert!(detail(Some(&long)).is_err());
        assert!(detail(Some(&at_limit)).is_ok());
        assert!(detail(Some("nul\0")).is_err());
    }
}
