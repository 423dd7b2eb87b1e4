//! `POST /api/v1/transfers` and `GET /api/v1/transfers/{id}`: asynchronous
//! server-side copies of stored files into folders.

use crate::file_records;
use crate::ids;
use crate::names;
use crate::problem::ApiError;
use crate::request_meta;
use crate::state::AppState;
use crate::transfer_store::{self as store, Transfer};
use crate::transfer_worker;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mft_filters::problem_types as pt;
use serde::Deserialize;

/// Body of `POST /api/v1/transfers`.
#[derive(Debug, Deserialize)]
pub struct NewTransfer {
    file_id: String,
    folder: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/v1/transfers`: 202, the copy runs in the background.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewTransfer = request_meta::json_body(&headers, &body, "transfer")?;
    let folder = names::folder_path(&request.folder, "folder")?;
    let name = match &request.name {
        Some(raw) => Some(names::file_name(raw, "name")?),
        None => None,
    };
    let source_exists = ids::is_valid_id(&request.file_id)
        && file_records::get(&state.db, &request.file_id)
            .await?
            .is_some();
    if !source_exists {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("file_id: no stored file with id {:?}", request.file_id),
        )
        .with_type(pt::UNKNOWN_FILE)
        .with_field("file_id"));
    }
    let now = ids::now();
    let transfer = Transfer {
        id: ids::new_id(),
        status: store::QUEUED.to_string(),
        file_id: request.file_id,
        folder,
        name,
        result_file_id: None,
        error: None,
        created_at: now.clone(),
        updated_at: now,
        created_by: request_meta::principal(&headers),
    };
    store::insert(&state.db, &transfer).await?;
    transfer_worker::spawn(state, transfer.id.clone());
    let location = format!("/api/v1/transfers/{}", transfer.id);
    let mut resp = (StatusCode::ACCEPTED, Json(transfer)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /api/v1/transfers/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Transfer>, ApiError> {
    if !ids::is_valid_id(&id) {
        return Err(ApiError::not_found("transfer", &id));
    }
    store::get(&state.db, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("transfer", &id))
}
