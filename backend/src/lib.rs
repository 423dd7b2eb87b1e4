//! The reference MFT REST backend.
//!
//! It implements the backend API of `docs/backend-api.md`: stored files
//! (one-shot and tus resumable uploads, ranged downloads), deliveries (with
//! a change feed, relay status and download receipts for the gateway's
//! trust network) and asynchronous transfers. File bytes live in a directory, metadata in
//! SQLite, so the data survives restarts. The gateway embeds it for
//! `mft-gateway demo`; the `mft-backend` binary runs it on its own.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access_log;
mod db;
mod deliveries;
mod delivery_relay;
mod delivery_store;
mod email;
mod error;
mod file_records;
mod file_upload;
mod files;
mod ids;
mod names;
mod problem;
mod relay_store;
mod request_meta;
mod signature;
mod state;
mod storage;
mod transfer_store;
mod transfer_worker;
mod transfers;
mod tus;
mod tus_protocol;
mod tus_store;
mod upload_stream;

pub use error::BackendError;
pub use mft_filters::signing::{Verifier, VerifyPolicy, VerifyingKey};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use state::AppState;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests may run on after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the backend keeps its data, and whom it trusts.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Data directory: `metadata.db`, `files/`, `uploads/`, `tmp/`.
    /// Created if missing; one backend at a time may use it.
    pub data_dir: PathBuf,
    /// With a verifier, every request but `/healthz` must carry a valid
    /// RFC 9421 signature by one of its keys, used once; otherwise 401.
    /// `None` accepts unsigned requests (anyone who reaches the port is trusted).
    pub signatures: Option<Verifier>,
}

impl BackendConfig {
    /// A config that accepts unsigned requests.
    pub fn new(data_dir: impl Into<PathBuf>) -> BackendConfig {
        BackendConfig {
            data_dir: data_dir.into(),
            signatures: None,
        }
    }
}

/// Opens or creates the data directory and database, repairs what an
/// earlier crash left half-done, restarts unfinished transfers, and
/// returns the application.
pub async fn router(config: BackendConfig) -> Result<Router, BackendError> {
    let guard = config
        .signatures
        .clone()
        .map(signature::SignatureGuard::new);
    Ok(app(open(config).await?, guard))
}

/// Serves the backend on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (at most 10 seconds) and closes the database.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    config: BackendConfig,
    shutdown: F,
) -> Result<(), BackendError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let data_dir = config.data_dir.clone();
    let guard = config
        .signatures
        .clone()
        .map(signature::SignatureGuard::new);
    match &config.signatures {
        Some(v) => tracing::info!(
            keys = v.keys().len(),
            max_window_s = v.policy().max_window.as_secs(),
            "requests must carry an RFC 9421 signature"
        ),
        None => tracing::warn!(
            "no signing key: requests are not verified, anyone reaching this port is trusted"
        ),
    }
    let state = open(config).await?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "mft-backend serving");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(());
    };
    let server = axum::serve(listener, app(state.clone(), guard)).with_graceful_shutdown(signal);
    let drain_deadline = async {
        if stop_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = server.into_future() => r,
        () = drain_deadline => {
            tracing::warn!("requests still running after the drain timeout; stopping anyway");
            Ok(())
        }
    };
    // Queued transfers stay queued and resume at the next start.
    state.transfer_slots.close();
    state.db.close().await;
    state.storage.release();
    tracing::info!(%addr, "mft-backend stopped");
    result.map_err(|source| BackendError::Serve { addr, source })
}

async fn open(config: BackendConfig) -> Result<AppState, BackendError> {
    let storage = storage::Storage::open(&config.data_dir).await?;
    let db_path = storage.database_path();
    let db_err = |op: &'static str| {
        let path = db_path.clone();
        move |source| BackendError::Database { op, path, source }
    };
    let pool = db::open(&db_path).await?;
    let state = AppState::new(pool, storage);
    tus_store::recover(&state).await?;
    let referenced = file_records::referenced_ids(&state.db)
        .await
        .map_err(db_err("list stored files"))?;
    state.storage.sweep_orphans(&referenced).await?;
    transfer_worker::resume(&state)
        .await
        .map_err(db_err("resume transfers"))?;
    Ok(state)
}

fn app(state: AppState, guard: Option<Arc<signature::SignatureGuard>>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/api/v1/files",
            get(files::list)
                .post(file_upload::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/files/{id}",
            get(files::get).patch(files::patch).delete(files::delete),
        )
        .route("/api/v1/files/{id}/content", get(files::content))
        .merge(tus::routes())
        .route(
            "/api/v1/deliveries",
            get(deliveries::list).post(deliveries::create),
        )
        .route("/api/v1/deliveries/{id}", get(deliveries::get))
        .route(
            "/api/v1/deliveries/{id}/relay",
            put(delivery_relay::put_relay),
        )
        .route(
            "/api/v1/deliveries/{id}/receipts",
            post(delivery_relay::post_receipt),
        )
        .route("/api/v1/transfers", post(transfers::create))
        .route("/api/v1/transfers/{id}", get(transfers::get))
        .fallback(problem::not_found_route);
    // Inside finish_problems and the access log, so a refusal is logged and
    // carries the request id like any other problem.
    let routes = match guard {
        Some(g) => routes.layer(middleware::from_fn_with_state(g, signature::require)),
        None => routes,
    };
    routes
        .layer(middleware::from_fn(problem::finish_problems))
        .layer(middleware::from_fn(access_log::log))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
