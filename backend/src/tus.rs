//! tus 1.0.0 resumable uploads under `/api/v1/uploads` (core, creation,
//! checksum, termination).

use crate::file_records::FileRecord;
use crate::ids;
use crate::names;
use crate::problem::ApiError;
use crate::request_meta;
use crate::state::{AppState, UploadLock};
use crate::storage;
use crate::tus_protocol::{self as proto, headers as h, ChunkChecksum};
use crate::tus_store::{self, Upload};
use crate::upload_stream::{self, BodyEnd};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use axum::{middleware, Router};
use mft_filters::problem_types as pt;
use std::io::SeekFrom;
use tokio::io::AsyncSeekExt;

/// Routes of the tus endpoint, with the version check around them.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/uploads", post(create).options(options))
        .route(
            "/api/v1/uploads/{id}",
            head(status).patch(patch).delete(terminate).options(options),
        )
        .layer(middleware::from_fn(proto::enforce_version))
        .layer(DefaultBodyLimit::disable())
}

fn value(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

fn file_id_header(headers: &mut HeaderMap, file_id: &str) {
    if let Ok(v) = HeaderValue::from_str(file_id) {
        headers.insert(h::X_FILE_ID, v);
    }
}

/// `OPTIONS`: what this server supports.
async fn options() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let headers = resp.headers_mut();
    headers.insert(h::TUS_VERSION, HeaderValue::from_static(proto::VERSION));
    headers.insert(
        h::TUS_EXTENSION,
        HeaderValue::from_static(proto::EXTENSIONS),
    );
    headers.insert(h::TUS_MAX_SIZE, value(proto::MAX_SIZE));
    headers.insert(
        h::TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(proto::CHECKSUM_ALGORITHMS),
    );
    resp
}

/// `POST /api/v1/uploads`: creation extension.
async fn create(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    // creation-defer-length: a streaming client (the SFTP bridge) learns
    // the size only at the end and declares it in its last PATCH.
    let deferred = match headers.get(h::UPLOAD_DEFER_LENGTH) {
        None => false,
        Some(v) if v.as_bytes() == b"1" => true,
        Some(_) => {
            return Err(ApiError::bad_request("Upload-Defer-Length must be 1")
                .with_field("Upload-Defer-Length"))
        }
    };
    let declared = proto::number_header(&headers, &h::UPLOAD_LENGTH)?;
    let length = match (declared, deferred) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "send either Upload-Length or Upload-Defer-Length, not both",
            )
            .with_field("Upload-Defer-Length"))
        }
        (Some(n), false) => n,
        (None, true) => proto::MAX_SIZE,
        (None, false) => {
            return Err(ApiError::bad_request(
                "Upload-Length (or Upload-Defer-Length: 1) is required",
            )
            .with_field("Upload-Length"))
        }
    };
    if length > proto::MAX_SIZE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Upload-Length exceeds Tus-Max-Size ({})", proto::MAX_SIZE),
        )
        .with_header(h::TUS_MAX_SIZE, value(proto::MAX_SIZE)));
    }
    let raw_metadata = match headers.get(h::UPLOAD_METADATA) {
        Some(v) => v
            .to_str()
            .map_err(|_| {
                ApiError::bad_request("Upload-Metadata must be ASCII").with_field("Upload-Metadata")
            })?
            .to_string(),
        None => String::new(),
    };
    let metadata = proto::parse_metadata(&raw_metadata)?;
    let name = proto::metadata_text(&metadata, "filename")?.ok_or_else(|| {
        ApiError::bad_request("Upload-Metadata must carry a filename").with_field("Upload-Metadata")
    })?;
    let name = names::file_name(&name, "Upload-Metadata filename")?;
    let folder = match proto::metadata_text(&metadata, "folder")? {
        Some(raw) => names::folder_path(&raw, "Upload-Metadata folder")?,
        None => String::new(),
    };
    let upload = Upload {
        id: ids::new_id(),
        length,
        deferred,
        offset: 0,
        metadata: raw_metadata,
        name,
        folder,
        file_id: ids::new_id(),
        completed: false,
        created_at: ids::now(),
        created_by: request_meta::principal(&headers),
    };

    let partial = state.storage.upload_path(&upload.id);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .await?;
    file.sync_all().await?;
    storage::sync_dir(state.storage.uploads_dir()).await?;
    drop(file);
    tus_store::insert(&state.db, &upload).await?;
    tracing::info!(upload_id = %upload.id, length, "tus upload created");

    let mut resp = StatusCode::CREATED.into_response();
    let location = format!("/api/v1/uploads/{}", upload.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if length == 0 && !deferred {
        // Nothing to PATCH: the upload is complete at creation.
        let record = tus_store::finalize(&state, &upload).await?;
        resp.headers_mut().insert(h::UPLOAD_OFFSET, value(0));
        file_id_header(resp.headers_mut(), &record.id);
    }
    Ok(resp)
}

async fn find(state: &AppState, id: &str) -> Result<Upload, ApiError> {
    if !ids::is_valid_id(id) {
        return Err(ApiError::not_found("upload", id));
    }
    tus_store::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload", id))
}

/// `HEAD /api/v1/uploads/{id}`: where to resume.
async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = find(&state, &id).await?;
    let mut resp = StatusCode::OK.into_response();
    let headers = resp.headers_mut();
    headers.insert(h::UPLOAD_OFFSET, value(upload.offset));
    if upload.deferred {
        headers.insert(h::UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1"));
    } else {
        headers.insert(h::UPLOAD_LENGTH, value(upload.length));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !upload.metadata.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&upload.metadata) {
            headers.insert(h::UPLOAD_METADATA, v);
        }
    }
    if upload.completed {
        file_id_header(headers, &upload.file_id);
    }
    Ok(resp)
}

/// `PATCH /api/v1/uploads/{id}`: appends the body at `Upload-Offset`.
async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(proto::PATCH_CONTENT_TYPE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("PATCH bodies must be {}", proto::PATCH_CONTENT_TYPE),
        ));
    }
    let offset = proto::number_header(headers, &h::UPLOAD_OFFSET)?.ok_or_else(|| {
        ApiError::bad_request("Upload-Offset is required").with_field("Upload-Offset")
    })?;
    let checksum = ChunkChecksum::from_headers(headers)?;
    let declared = proto::number_header(headers, &header::CONTENT_LENGTH)?;

    if !ids::is_valid_id(&id) {
        return Err(ApiError::not_found("upload", &id));
    }
    let lock = state.upload_locks.try_lock(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::LOCKED,
            "another request is writing this upload; retry when it has finished",
        )
    })?;
    let mut upload = find(&state, &id).await?;
    if offset != upload.offset {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Upload-Offset {offset} does not match the upload's offset {}",
                upload.offset
            ),
        )
        .with_header(h::UPLOAD_OFFSET, value(upload.offset)));
    }
    if let Some(length) = proto::number_header(headers, &h::UPLOAD_LENGTH)? {
        upload = declare_length(&state, upload, length, declared).await?;
    }
    if upload.completed || upload.offset == upload.length {
        if !upload.completed {
            // All bytes arrived but finishing was interrupted (a crash).
            tus_store::finalize(&state, &upload).await?;
        }
        return Ok(done(upload.length, Some(upload.file_id)));
    }
    if declared.is_some_and(|n| n > upload.length - upload.offset) {
        return Err(too_large(&upload));
    }
    // The write runs in its own task: when the client disconnects, the
    // server drops this handler's future, but the bytes that did arrive
    // must still be fsynced and recorded so HEAD tells the truth.
    let chunk = Chunk {
        body: req.into_body(),
        declared,
        checksum,
    };
    let task = tokio::spawn(write_chunk(state, upload, chunk, lock));
    task.await.map_err(|e| {
        tracing::error!(error = %e, "tus write task failed");
        ApiError::internal()
    })?
}

/// `Upload-Length` in a PATCH of a deferred upload fixes its length
/// (creation-defer-length); on any other upload it must repeat the length.
async fn declare_length(
    state: &AppState,
    upload: Upload,
    length: u64,
    body: Option<u64>,
) -> Result<Upload, ApiError> {
    if !upload.deferred {
        if length != upload.length {
            return Err(ApiError::bad_request(format!(
                "Upload-Length {length} differs from the declared {}",
                upload.length
            ))
            .with_field("Upload-Length"));
        }
        return Ok(upload);
    }
    let least = upload.offset + body.unwrap_or(0);
    if length < least || length > proto::MAX_SIZE {
        return Err(ApiError::bad_request(format!(
            "Upload-Length {length} must be between {least} (offset plus this body) and {}",
            proto::MAX_SIZE
        ))
        .with_field("Upload-Length"));
    }
    tus_store::set_length(&state.db, &upload.id, length).await?;
    Ok(Upload {
        length,
        deferred: false,
        ..upload
    })
}

fn done(offset: u64, file_id: Option<String>) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(h::UPLOAD_OFFSET, value(offset));
    if let Some(id) = file_id {
        file_id_header(resp.headers_mut(), &id);
    }
    resp
}

fn too_large(upload: &Upload) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is longer than the {} bytes this upload still expects",
            upload.length - upload.offset
        ),
    )
}

/// One PATCH body and what its headers promised about it.
struct Chunk {
    body: Body,
    declared: Option<u64>,
    checksum: Option<ChunkChecksum>,
}

async fn write_chunk(
    state: AppState,
    upload: Upload,
    chunk: Chunk,
    _lock: UploadLock,
) -> Result<Response, ApiError> {
    let Chunk {
        body,
        declared,
        mut checksum,
    } = chunk;
    let mut file = tus_store::open_at_offset(&state, &upload).await?;
    file.seek(SeekFrom::Start(upload.offset)).await?;
    let remaining = upload.length - upload.offset;
    let received = upload_stream::receive(body.into_data_stream(), &mut file, remaining, |c| {
        if let Some(cs) = checksum.as_mut() {
            cs.update(c);
        }
    })
    .await;
    let mut received = match received {
        Ok(r) => r,
        Err(e) => {
            rewind(&file, &upload).await;
            return Err(e.into());
        }
    };
    // A connection torn down without an error frame ends the stream early
    // but cleanly; the declared length tells the two apart.
    if let (BodyEnd::Complete, Some(declared)) = (&received.end, declared) {
        if received.written < declared {
            received.end = BodyEnd::Broken(format!(
                "body ended after {} of {declared} declared bytes",
                received.written
            ));
        }
    }
    let checksum_ok = checksum.map(ChunkChecksum::matches);
    let refused = match (&received.end, checksum_ok) {
        (BodyEnd::Overflow, _) => Some(too_large(&upload)),
        // A checksum covers the whole body, so a partial one is unverifiable.
        (BodyEnd::Broken(reason), Some(_)) => Some(ApiError::bad_request(format!(
            "the body broke off ({reason}); a chunk with Upload-Checksum is kept only whole"
        ))),
        (BodyEnd::Complete, Some(false)) => Some(
            ApiError::new(
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "the chunk does not match Upload-Checksum; it was discarded",
            )
            .with_type(pt::CHECKSUM_MISMATCH),
        ),
        _ => None,
    };
    if let Some(error) = refused {
        rewind(&file, &upload).await;
        return Err(error.with_header(h::UPLOAD_OFFSET, value(upload.offset)));
    }

    file.sync_all().await?;
    drop(file);
    let new_offset = upload.offset + received.written;
    tus_store::set_offset(&state.db, &upload.id, new_offset).await?;
    if let BodyEnd::Broken(reason) = received.end {
        tracing::info!(upload_id = %upload.id, kept = received.written, %reason,
            "PATCH body broke off; kept what arrived");
        return Err(ApiError::bad_request(format!(
            "the body broke off after {} bytes ({reason}); resume from Upload-Offset {new_offset}",
            received.written
        ))
        .with_header(h::UPLOAD_OFFSET, value(new_offset)));
    }
    if new_offset < upload.length {
        return Ok(done(new_offset, None));
    }
    let finished = Upload {
        offset: new_offset,
        ..upload
    };
    let record: FileRecord = tus_store::finalize(&state, &finished).await?;
    tracing::info!(upload_id = %finished.id, file_id = %record.id, "tus upload complete");
    Ok(done(new_offset, Some(record.id)))
}

/// Drops this PATCH's bytes so the file again ends at the recorded offset.
async fn rewind(file: &tokio::fs::File, upload: &Upload) {
    let result = async {
        file.set_len(upload.offset).await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = result {
        // The next PATCH or startup truncates to the recorded offset anyway.
        tracing::warn!(upload_id = %upload.id, error = %e, "cannot truncate partial upload");
    }
}

/// `DELETE /api/v1/uploads/{id}`: termination extension. A finished
/// upload's stored file is a resource of its own and stays.
async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !ids::is_valid_id(&id) {
        return Err(ApiError::not_found("upload", &id));
    }
    let _lock = state.upload_locks.try_lock(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::LOCKED,
            "another request is writing this upload; retry when it has finished",
        )
    })?;
    if !tus_store::delete(&state.db, &id).await? {
        return Err(ApiError::not_found("upload", &id));
    }
    match tokio::fs::remove_file(state.storage.upload_path(&id)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT)
}
