//! Reading and deleting stored files: metadata, listing, content, delete.

use crate::file_records::{self, FileRecord};
use crate::ids;
use crate::names;
use crate::problem::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use mft_filters::problem_types as pt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeFile;

/// RFC 8187 `attr-char`: everything else in `filename*` is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Query of `GET /api/v1/files`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    folder: Option<String>,
    /// Also name the folders directly below `folder` (the root without
    /// one), so a client can browse one level without listing every file.
    #[serde(default)]
    subfolders: bool,
    /// Page size (1 to 1000): files by name, the newest first per name.
    limit: Option<String>,
    /// Where the page starts: `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only the files of this name (in `folder`, the root without one).
    name: Option<String>,
}

/// Largest page of `GET /api/v1/files?limit=`.
const MAX_PAGE: i64 = 1000;

/// Body of `GET /api/v1/files`.
#[derive(Debug, Serialize)]
pub struct FileList {
    files: Vec<FileRecord>,
    /// With `subfolders=true`: names of the folders directly below.
    #[serde(skip_serializing_if = "Option::is_none")]
    folders: Option<Vec<String>>,
    /// With `limit`: the cursor of the next page, `null` on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
}

fn invalid_parameter(name: &str, detail: String) -> ApiError {
    ApiError::bad_request(detail)
        .with_type(pt::INVALID_PARAMETER)
        .with_field(name)
}

/// The opaque cursor of the page after `last`: base64url of its sort key.
fn cursor_after(last: &FileRecord) -> String {
    let key = file_records::PageKey {
        name: last.name.clone(),
        created_at: last.created_at.clone(),
        id: last.id.clone(),
    };
    let json = serde_json::to_vec(&key).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn parse_cursor(raw: &str) -> Result<file_records::PageKey, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim())
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| invalid_parameter("cursor", "cursor: not a cursor this listing gave".into()))
}

/// Loads the record for a path id, 404 if the id is malformed or unknown.
pub async fn find(state: &AppState, id: &str) -> Result<FileRecord, ApiError> {
    if !ids::is_valid_id(id) {
        return Err(ApiError::not_found("file", id));
    }
    file_records::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("file", id))
}

/// `GET /api/v1/files[?folder=][&subfolders=true]`
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<FileList>, ApiError> {
    let folder = match query.folder {
        Some(raw) => Some(names::folder_path(&raw, "folder")?),
        None if query.subfolders => Some(String::new()),
        None => None,
    };
    let limit = match query.limit.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| raw.parse::<i64>().ok())
                .flatten()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    invalid_parameter(
                        "limit",
                        format!("limit: {raw:?} is not a whole number from 1 to {MAX_PAGE}"),
                    )
                })?,
        ),
    };
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    if after.is_some() && limit.is_none() {
        return Err(invalid_parameter("cursor", "cursor: needs limit".into()));
    }
    if let Some(raw) = query.name.as_deref() {
        if limit.is_some() {
            return Err(invalid_parameter(
                "name",
                "name: cannot be combined with limit".into(),
            ));
        }
        let name = names::file_name(raw, "name")?;
        let files =
            file_records::list_named(&state.db, folder.as_deref().unwrap_or(""), &name).await?;
        return Ok(Json(FileList {
            files,
            folders: None,
            next_cursor: None,
        }));
    }
    let Some(limit) = limit else {
        let files = file_records::list(&state.db, folder.as_deref()).await?;
        let folders = match (&folder, query.subfolders) {
            (Some(f), true) => Some(file_records::child_folders(&state.db, f).await?),
            _ => None,
        };
        return Ok(Json(FileList {
            files,
            folders,
            next_cursor: None,
        }));
    };
    // Pages are of one folder (the root without `folder`).
    let folder = folder.unwrap_or_default();
    let (files, more) = file_records::page(&state.db, &folder, limit, after.as_ref()).await?;
    let next_cursor = Some(more.then(|| files.last().map(cursor_after)).flatten());
    // Sub-folders come whole, with the first page only.
    let folders = if query.subfolders && after.is_none() {
        Some(file_records::child_folders(&state.db, &folder).await?)
    } else {
        None
    };
    Ok(Json(FileList {
        files,
        folders,
        next_cursor,
    }))
}

/// `GET /api/v1/files/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FileRecord>, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

/// Body of `PATCH /api/v1/files/{id}`: the new name and/or folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    name: Option<String>,
    folder: Option<String>,
}

/// `PATCH /api/v1/files/{id}`: renames or moves a file (the SFTP bridge's
/// RENAME). The bytes, id and sha256 stay; only `name`/`folder` change.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<FilePatch>,
) -> Result<Json<FileRecord>, ApiError> {
    let current = find(&state, &id).await?;
    let name = match body.name {
        Some(raw) => names::file_name(&raw, "name")?,
        None => current.name.clone(),
    };
    let folder = match body.folder {
        Some(raw) => names::folder_path(&raw, "folder")?,
        None => current.folder.clone(),
    };
    if !file_records::rename(&state.db, &id, &name, &folder).await? {
        return Err(ApiError::not_found("file", &id));
    }
    tracing::info!(file_id = %id, %name, %folder, "file renamed");
    Ok(Json(FileRecord {
        name,
        folder,
        ..current
    }))
}

/// `DELETE /api/v1/files/{id}`
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    find(&state, &id).await?;
    // Row first: a crash before the unlink leaves an unreferenced file that
    // the startup sweep removes, never a row whose bytes are gone.
    if !file_records::delete(&state.db, &id).await? {
        return Err(ApiError::not_found("file", &id));
    }
    match tokio::fs::remove_file(state.storage.file_path(&id)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file_id = %id, error = %e, "cannot remove deleted file's bytes"),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET|HEAD /api/v1/files/{id}/content`: ranges and `If-Modified-Since`
/// are handled by `ServeFile`; the ETag preconditions it lacks are here.
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let rec = find(&state, &id).await?;
    let etag = format!("\"{}\"", rec.sha256);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;

    if let Some(wanted) = req.headers().get(header::IF_MATCH) {
        if !etag_listed(wanted, &etag, false) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "If-Match does not list this file's ETag",
            ));
        }
    }
    if let Some(cached) = req.headers().get(header::IF_NONE_MATCH) {
        if etag_listed(cached, &etag, true) {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            resp.headers_mut().insert(header::ETAG, etag_value);
            return Ok(resp);
        }
    }
    // If-Range with anything but the current ETag means the client's copy is
    // stale: ignore Range and send the whole file (RFC 9110 13.1.5).
    if let Some(if_range) = req.headers_mut().remove(header::IF_RANGE) {
        if if_range.as_bytes() != etag.as_bytes() {
            req.headers_mut().remove(header::RANGE);
        }
    }

    let served = ServeFile::new(state.storage.file_path(&rec.id))
        .try_call(req)
        .await
        .map_err(ApiError::from)?;
    if served.status() == StatusCode::NOT_FOUND {
        // Deleted between the lookup and the open.
        return Err(ApiError::not_found("file", &id));
    }
    let mut resp = served.map(Body::new);
    if resp.status().is_success() {
        set_download_headers(resp.headers_mut(), &rec.name);
    }
    resp.headers_mut().insert(header::ETAG, etag_value);
    Ok(resp)
}

fn set_download_headers(headers: &mut HeaderMap, name: &str) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let disposition = format!(
        "attachment; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    );
    // Percent-encoding leaves only ASCII, so this cannot fail.
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
}

/// Whether an `If-Match` / `If-None-Match` list names `etag` (or is `*`).
/// `weak` is the comparison If-None-Match uses, where `W/"x"` equals `"x"`;
/// If-Match compares strongly (RFC 9110 8.8.3.2).
fn etag_listed(list: &HeaderValue, etag: &str, weak: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    list.split(',').map(str::trim).any(|tag| {
        let tag = if weak {
            tag.strip_prefix("W/").unwrap_or(tag)
        } else {
            tag
        };
        tag == "*" || tag == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_lists_match_strong_weak_and_star() {
        let e = "\"abc\"";
        assert!(etag_listed(&HeaderValue::from_static("\"abc\""), e, false));
        assert!(etag_listed(
            &HeaderValue::from_static("\"x\", W/\"abc\""),
            e,
            true
        ));
        assert!(!etag_listed(
            &HeaderValue::from_static("W/\"abc\""),
            e,
            false
        ));
        assert!(etag_listed(&HeaderValue::from_static("*"), e, false));
        assert!(!etag_listed(&HeaderValue::from_static("\"abd\""), e, true));
    }

    #[test]
    fn disposition_percent_encodes_non_attr_chars() {
        let mut h = HeaderMap::new();
        set_download_headers(&mut h, "Übersicht 2026;\"x\".pdf");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "attachment; filename*=UTF-8''%C3%9Cbersicht%202026%3B%22x%22.pdf"
        );
    }
}
