//! Errors that stop the backend from starting or serving.
//!
//! Request-level failures are [`crate::problem::ApiError`]s and never reach
//! this type; a `BackendError` always means the process cannot do its job, so
//! each variant names the operation and the path or resource involved.

use std::path::PathBuf;

/// Name of the lock file inside the data directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Why the backend could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A file-system operation on the data directory failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, for example `create directory`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another backend (in this or another process) is using the data directory.
    #[error("data directory {} is in use by another mft-backend (lock file {})", dir.display(), dir.join(LOCK_FILE).display())]
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// Opening or preparing the SQLite metadata database failed.
    #[error("database {}: cannot {op}: {source}", path.display())]
    Database {
        /// What was being done, for example `create table files`.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The HTTP server failed while accepting or serving connections.
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        /// The listening address, or `unknown` if the socket could not tell.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// Shorthand for [`BackendError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BackendError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
