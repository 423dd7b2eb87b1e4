//! One method per backend endpoint the gateway calls (docs/backend-api.md).
//! Callers never build a path: they name the endpoint and get its typed
//! answer, and an error answer as [`BackendError::Status`] with the
//! problem type to match on.

use super::model::{
    Delivery, DeliveryPage, FileInfo, FileList, FileQuery, NewDelivery, NewReceipt, RelayStatus,
};
use super::{decode, encoded_header, paths, BackendClient, BackendError, Body, Call, CallContext};
use http::{HeaderName, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A call of the tus protocol (every one carries `Tus-Resumable`).
fn tus(method: Method, path: impl Into<String>) -> Call {
    Call::new(method, path).header(TUS_RESUMABLE, HeaderValue::from_static("1.0.0"))
}

fn key_header(key: &str, what: &str) -> Result<HeaderValue, BackendError> {
    HeaderValue::from_str(key).map_err(|_| BackendError::Sign {
        what: what.into(),
        reason: "Idempotency-Key is not a valid header value".into(),
    })
}

/// The path and query of a file listing.
fn list_path(q: &FileQuery<'_>) -> String {
    let mut path = String::from(paths::FILES);
    let mut sep = '?';
    let mut param = |name: &str, value: &str| {
        path.push(sep);
        sep = '&';
        path.push_str(name);
        path.push('=');
        path.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    };
    if let Some(folder) = q.folder {
        param("folder", folder);
    }
    if let Some(name) = q.name {
        param("name", name);
    }
    if let Some(limit) = q.limit {
        param("limit", &limit.to_string());
    }
    if let Some(cursor) = q.cursor {
        param("cursor", cursor);
    }
    if q.subfolders {
        param("subfolders", "true");
    }
    path
}

/// A tus upload being written: its URL and the answer of one PATCH.
#[derive(Debug, Clone)]
pub struct TusPatched {
    /// `Upload-Offset` after the PATCH, when the backend sent it.
    pub offset: Option<u64>,
    /// `X-File-Id`: the stored file, once the PATCH completed the upload.
    pub file_id: Option<String>,
}

impl BackendClient {
    /// `GET /api/v1/files` with `query`.
    pub async fn list_files(
        &self,
        ctx: &CallContext,
        query: &FileQuery<'_>,
    ) -> Result<FileList, BackendError> {
        let call = Call::new(Method::GET, list_path(query));
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `GET /api/v1/files/{id}`.
    pub async fn file(&self, ctx: &CallContext, id: &str) -> Result<FileInfo, BackendError> {
        let call = Call::new(Method::GET, paths::file(id));
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `GET /api/v1/files/{id}/content` from byte `offset` on (a `Range`
    /// when not 0), the body left to stream; `expected_len` lets the
    /// overall timeout leave it time to.
    pub async fn file_content(
        &self,
        ctx: &CallContext,
        id: &str,
        offset: u64,
        expected_len: u64,
    ) -> Result<reqwest::Response, BackendError> {
        let mut call =
            Call::new(Method::GET, paths::file_content(id)).expect_response_bytes(expected_len);
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .unwrap_or(HeaderValue::from_static("bytes=0-"));
            call = call.header(http::header::RANGE, range);
        }
        self.send(ctx, &call).await
    }

    /// `DELETE /api/v1/files/{id}`.
    pub async fn delete_file(&self, ctx: &CallContext, id: &str) -> Result<(), BackendError> {
        let call = Call::new(Method::DELETE, paths::file(id));
        self.send(ctx, &call).await.map(drop)
    }

    /// `PATCH /api/v1/files/{id}`: moves or renames one file.
    pub async fn move_file(
        &self,
        ctx: &CallContext,
        id: &str,
        folder: &str,
        name: &str,
    ) -> Result<(), BackendError> {
        let body = serde_json::json!({ "folder": folder, "name": name });
        let call = Call::new(Method::PATCH, paths::file(id)).json(&body)?;
        self.send(ctx, &call).await.map(drop)
    }

    /// `POST /api/v1/files` with a raw body.
    pub async fn upload_file(
        &self,
        ctx: &CallContext,
        folder: Option<&str>,
        name: &str,
        body: Body,
    ) -> Result<FileInfo, BackendError> {
        self.upload(ctx, None, folder, name, body).await
    }

    /// `POST /api/v1/files` under `idempotency_key`: a retry after a lost
    /// answer, or after a crash, gets the file the first attempt stored.
    pub async fn upload_file_idempotent(
        &self,
        ctx: &CallContext,
        idempotency_key: &str,
        folder: Option<&str>,
        name: &str,
        body: Body,
    ) -> Result<FileInfo, BackendError> {
        self.upload(ctx, Some(idempotency_key), folder, name, body)
            .await
    }

    async fn upload(
        &self,
        ctx: &CallContext,
        idempotency_key: Option<&str>,
        folder: Option<&str>,
        name: &str,
        body: Body,
    ) -> Result<FileInfo, BackendError> {
        let mut call = Call::new(Method::POST, paths::FILES)
            .header(HeaderName::from_static("x-filename"), encoded_header(name))
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .body(body);
        if let Some(folder) = folder.filter(|f| !f.is_empty()) {
            call = call.header(HeaderName::from_static("x-folder"), encoded_header(folder));
        }
        if let Some(key) = idempotency_key {
            call = call.header(IDEMPOTENCY_KEY, key_header(key, "POST /api/v1/files")?);
        }
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `POST /api/v1/uploads`: a tus upload of `name` in `folder` with a
    /// deferred length; its URL (`/api/v1/uploads/{id}`).
    pub async fn tus_create(
        &self,
        ctx: &CallContext,
        folder: &str,
        name: &str,
    ) -> Result<String, BackendError> {
        use base64::Engine as _;
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t.as_bytes());
        let metadata = format!("filename {},folder {}", b64(name), b64(folder));
        let what = || format!("POST {}", paths::UPLOADS);
        // Base64 and the separators only: always a valid value.
        let meta = HeaderValue::from_str(&metadata).map_err(|_| BackendError::Decode {
            what: what(),
            reason: "Upload-Metadata is not a valid header value".into(),
        })?;
        let call = tus(Method::POST, paths::UPLOADS)
            .header(
                HeaderName::from_static("upload-defer-length"),
                HeaderValue::from_static("1"),
            )
            .header(HeaderName::from_static("upload-metadata"), meta);
        let response = self.send(ctx, &call).await?;
        response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|l| paths::is_upload_url(l))
            .map(str::to_string)
            .ok_or_else(|| BackendError::Decode {
                what: what(),
                reason: "tus creation without Location".into(),
            })
    }

    /// `PATCH /api/v1/uploads/{id}`: `bytes` at `offset`; with `length`,
    /// declares the upload's length (the last PATCH, which completes it).
    /// A retry whose first attempt was stored is refused with 409; the
    /// caller then asks [`BackendClient::tus_offset`] whether its bytes are in.
    pub async fn tus_patch(
        &self,
        ctx: &CallContext,
        location: &str,
        offset: u64,
        bytes: bytes::Bytes,
        length: Option<u64>,
    ) -> Result<TusPatched, BackendError> {
        let mut call = tus(Method::PATCH, location)
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/offset+octet-stream"),
            )
            .header(
                HeaderName::from_static("upload-offset"),
                HeaderValue::from(offset),
            )
            .body(Body::Bytes(bytes));
        if let Some(length) = length {
            call = call.header(
                HeaderName::from_static("upload-length"),
                HeaderValue::from(length),
            );
        }
        let response = self.send(ctx, &call).await?;
        Ok(TusPatched {
            offset: upload_offset(&response),
            file_id: response
                .headers()
                .get("x-file-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// `HEAD /api/v1/uploads/{id}`: the offset the backend holds.
    pub async fn tus_offset(
        &self,
        ctx: &CallContext,
        location: &str,
    ) -> Result<Option<u64>, BackendError> {
        let response = self.send(ctx, &tus(Method::HEAD, location)).await?;
        Ok(upload_offset(&response))
    }

    /// `DELETE /api/v1/uploads/{id}`: terminates the upload.
    pub async fn tus_terminate(
        &self,
        ctx: &CallContext,
        location: &str,
    ) -> Result<(), BackendError> {
        self.send(ctx, &tus(Method::DELETE, location))
            .await
            .map(drop)
    }

    /// `POST /api/v1/deliveries` under `idempotency_key`: a retry, or a
    /// second call with the same key and body, returns the first delivery.
    pub async fn create_delivery(
        &self,
        ctx: &CallContext,
        idempotency_key: &str,
        delivery: &NewDelivery,
    ) -> Result<Delivery, BackendError> {
        let key = key_header(idempotency_key, "POST /api/v1/deliveries")?;
        let call = Call::new(Method::POST, paths::DELIVERIES)
            .header(IDEMPOTENCY_KEY, key)
            .json(delivery)?;
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `GET /api/v1/deliveries/{id}`.
    pub async fn delivery(&self, ctx: &CallContext, id: &str) -> Result<Delivery, BackendError> {
        let call = Call::new(Method::GET, paths::delivery(id));
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `GET /api/v1/deliveries?after_seq=&limit=`: one page of the change feed.
    pub async fn delivery_feed(
        &self,
        ctx: &CallContext,
        after_seq: i64,
        limit: usize,
    ) -> Result<DeliveryPage, BackendError> {
        let path = format!("{}?after_seq={after_seq}&limit={limit}", paths::DELIVERIES);
        let call = Call::new(Method::GET, path);
        let response = self.send(ctx, &call).await?;
        decode(&call, response).await
    }

    /// `PUT /api/v1/deliveries/{id}/relay`.
    pub async fn put_relay_status(
        &self,
        ctx: &CallContext,
        delivery: &str,
        status: &RelayStatus<'_>,
    ) -> Result<(), BackendError> {
        let call = Call::new(Method::PUT, paths::delivery_relay(delivery)).json(status)?;
        self.send(ctx, &call).await.map(drop)
    }

    /// `POST /api/v1/deliveries/{id}/receipts`.
    pub async fn record_receipt(
        &self,
        ctx: &CallContext,
        delivery: &str,
        receipt: &NewReceipt<'_>,
    ) -> Result<(), BackendError> {
        let call = Call::new(Method::POST, paths::delivery_receipts(delivery)).json(receipt)?;
        self.send(ctx, &call).await.map(drop)
    }

    /// `GET /healthz`, once, through the breaker.
    pub async fn health(&self) -> Result<(), BackendError> {
        let ctx = CallContext::new("gateway", "", None);
        self.send_once(&ctx, &Call::new(Method::GET, paths::HEALTH))
            .await
            .map(drop)
    }
}

fn upload_offset(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_query() {
        assert_eq!(list_path(&FileQuery::default()), "/api/v1/files");
        let q = FileQuery {
            folder: Some("in/a b"),
            limit: Some(100),
            subfolders: true,
            ..FileQuery::default()
        };
        assert_eq!(
            list_path(&q),
            "/api/v1/files?folder=in%2Fa%20b&limit=100&subfolders=true"
        );
        let q = FileQuery {
            folder: Some(""),
            name: Some("x.txt"),
            cursor: Some("c="),
            ..FileQuery::default()
        };
        assert_eq!(
            list_path(&q),
            "/api/v1/files?folder=&name=x%2Etxt&cursor=c%3D"
        );
    }
}
