//! `POST /api/v1/files`: one-shot uploads, as a raw body or multipart/form-data.
//!
//! Either way the bytes stream into `tmp/` while SHA-256 and size are
//! computed, and the file is committed only once the whole body arrived.

use crate::file_records::{self, FileRecord};
use crate::ids;
use crate::names;
use crate::problem::ApiError;
use crate::request_meta;
use crate::state::AppState;
use crate::storage::TempFile;
use crate::upload_stream::{self, BodyEnd};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};

/// What a received body became: where it is, how big, its digest.
struct Received {
    temp: TempFile,
    size: u64,
    sha256: String,
}

/// `POST /api/v1/files`
pub async fn upload(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let created_by = request_meta::principal(req.headers());
    let key = crate::deliveries::idempotency_key(req.headers())?;
    let scope = created_by.clone().unwrap_or_default();
    if let Some(key) = &key {
        let earlier = file_records::by_idempotency_key(&state.db, &scope, key).await?;
        if let Some(earlier) = earlier {
            // The body is the same bytes sent again; it is not stored twice.
            drain(req).await;
            return Ok(replayed(earlier));
        }
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let (received, name, folder) = if is_multipart {
        receive_multipart(&state, req).await?
    } else {
        receive_raw(&state, req).await?
    };
    let record = FileRecord {
        id: ids::new_id(),
        name,
        folder,
        size: received.size,
        sha256: received.sha256,
        created_at: ids::now(),
        created_by,
    };
    state.storage.commit(received.temp, &record.id).await?;
    if let Some(key) = &key {
        let winner = file_records::insert_with_key(&state.db, &record, &scope, key).await?;
        if let Some(winner) = winner {
            return Ok(replayed(winner));
        }
    } else {
        file_records::insert(&state.db, &record).await?;
    }
    tracing::info!(file_id = %record.id, size = record.size, "file stored");
    Ok(created(record))
}

/// 200 with the file stored by the first request under the same key.
fn replayed(record: FileRecord) -> Response {
    let mut resp = (StatusCode::OK, Json(record)).into_response();
    resp.headers_mut().insert(
        crate::deliveries::IDEMPOTENT_REPLAYED,
        HeaderValue::from_static("true"),
    );
    resp
}

/// Reads and drops a body nobody needs, so the client sees the answer
/// rather than a reset while it is still sending.
async fn drain(req: Request) {
    use futures_util::StreamExt;
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            break;
        }
    }
}

/// 201 with `Location` and the record.
fn created(record: FileRecord) -> Response {
    let location = format!("/api/v1/files/{}", record.id);
    let mut resp = (StatusCode::CREATED, Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

async fn receive_raw(
    state: &AppState,
    req: Request,
) -> Result<(Received, String, String), ApiError> {
    let headers = req.headers();
    let name = match decoded_header(headers, "x-filename")? {
        Some(raw) => names::file_name(&raw, "X-Filename")?,
        None => {
            return Err(ApiError::bad_request(
                "a raw upload needs the file name in the X-Filename header \
                 (or send multipart/form-data with a file part)",
            )
            .with_field("X-Filename"))
        }
    };
    let folder = match decoded_header(headers, "x-folder")? {
        Some(raw) => names::folder_path(&raw, "X-Folder")?,
        None => String::new(),
    };
    let declared = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?,
        ),
        None => None,
    };
    let received = receive(state, req.into_body().into_data_stream()).await?;
    if let Some(declared) = declared {
        if declared != received.size {
            let got = received.size;
            received.temp.discard().await;
            return Err(ApiError::bad_request(format!(
                "body ended after {got} of {declared} declared bytes"
            )));
        }
    }
    Ok((received, name, folder))
}

async fn receive_multipart(
    state: &AppState,
    req: Request,
) -> Result<(Received, String, String), ApiError> {
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("not a valid multipart body: {e}")))?;
    let mut file: Option<(Received, String)> = None;
    let mut folder = String::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                if let Some((received, _)) = file {
                    received.temp.discard().await;
                }
                return Err(ApiError::bad_request(format!(
                    "multipart body is broken: {e}"
                )));
            }
        };
        match field.name() {
            Some("file") => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        "only one file part is accepted per request",
                    )
                    .with_field("file"));
                }
                let Some(raw_name) = field.file_name() else {
                    return Err(ApiError::bad_request(
                        "the file part has no filename in its Content-Disposition",
                    )
                    .with_field("file"));
                };
                let name = names::file_name(raw_name, "file")?;
                file = Some((receive(state, Box::pin(field)).await?, name));
            }
            Some("folder") => {
                let raw = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("folder field: {e}")))?;
                folder = names::folder_path(&raw, "folder")?;
            }
            _ => {
                // Unknown parts are skipped without buffering them.
                let mut field = field;
                while field
                    .chunk()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("multipart body is broken: {e}")))?
                    .is_some()
                {}
            }
        }
    }
    match file {
        Some((received, name)) => Ok((received, name, folder)),
        None => Err(
            ApiError::bad_request("the multipart body has no part named \"file\"")
                .with_field("file"),
        ),
    }
}

/// Streams `body` into a new temp file; a body that breaks off stores nothing.
async fn receive<S, E>(state: &AppState, body: S) -> Result<Received, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut temp = state.storage.temp_file().await?;
    let mut hasher = Sha256::new();
    let result = upload_stream::receive(body, temp.file()?, u64::MAX, |c| hasher.update(c)).await;
    let received = match result {
        Ok(r) => r,
        Err(e) => {
            temp.discard().await;
            return Err(e.into());
        }
    };
    match received.end {
        BodyEnd::Complete | BodyEnd::Overflow => Ok(Received {
            temp,
            size: received.written,
            sha256: hex::encode(hasher.finalize()),
        }),
        BodyEnd::Broken(reason) => {
            temp.discard().await;
            tracing::info!(bytes = received.written, %reason, "upload body broke off; nothing stored");
            Err(ApiError::bad_request(format!(
                "the request body ended early after {} bytes: {reason}",
                received.written
            )))
        }
    }
}

/// A header's value, percent-decoded as UTF-8; 400 if it is not UTF-8.
fn decoded_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    percent_decode(value.as_bytes())
        .decode_utf8()
        .map(|s| Some(s.into_owned()))
        .map_err(|_| {
            ApiError::bad_request(format!("{name} is not percent-encoded UTF-8")).with_field(name)
        })
}
