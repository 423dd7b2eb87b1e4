//! What can go wrong calling the backend, and whether trying again can help.

use std::time::Duration;

/// A failed backend call. Never carries a credential: only statuses, the
/// backend's problem `type`/`detail` and transport causes.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The circuit breaker is open: the backend failed repeatedly just now.
    #[error("backend unavailable (circuit open, next probe in {retry_in:?})")]
    CircuitOpen {
        /// When the breaker lets the next probe through.
        retry_in: Duration,
    },
    /// No response in time.
    #[error("backend {what}: timed out")]
    Timeout {
        /// The call, e.g. `POST /api/v1/files`.
        what: String,
    },
    /// Connection refused or reset, DNS, TLS.
    #[error("backend {what}: {source}")]
    Transport {
        /// The call.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// DMZ mode with no connector connected: nothing was sent; the work
    /// stays queued until a connector is back.
    #[error("backend {what}: no connector is connected (DMZ mode)")]
    NoConnector {
        /// The call.
        what: String,
    },
    /// The connector connection carrying the call failed.
    #[error("backend {what}: {source}")]
    Connector {
        /// The call.
        what: String,
        /// The pool's error.
        #[source]
        source: crate::connector::pool::PoolError,
    },
    /// The backend answered with an error status.
    #[error("backend {what}: {status} {problem_type}: {detail}")]
    Status {
        /// The call.
        what: String,
        /// HTTP status.
        status: u16,
        /// Problem `type`, `about:blank` if none was sent.
        problem_type: String,
        /// Problem `detail` (or `title`), possibly empty.
        detail: String,
        /// `Retry-After` in seconds, if sent.
        retry_after: Option<Duration>,
    },
    /// A 2xx answer whose body was not what the API promises.
    #[error("backend {what}: unexpected response: {reason}")]
    Decode {
        /// The call.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A request body could not be read (a spooled file vanished).
    #[error("backend {what}: cannot read the request body: {source}")]
    Body {
        /// The call.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be signed.
    #[error("backend {what}: cannot sign the request: {reason}")]
    Sign {
        /// The call.
        what: String,
        /// Why.
        reason: String,
    },
}

impl BackendError {
    /// Whether the same call may succeed later: outages, timeouts, overload
    /// and server-side failures. A 4xx (other than 408/429) will fail the
    /// same way every time, so retrying it would only hide a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::CircuitOpen { .. }
            | BackendError::Timeout { .. }
            | BackendError::Transport { .. }
            | BackendError::NoConnector { .. }
            | BackendError::Connector { .. } => true,
            BackendError::Status { status, .. } => is_transient_status(*status),
            BackendError::Decode { .. } | BackendError::Body { .. } | BackendError::Sign { .. } => {
                false
            }
        }
    }

    /// The HTTP status, for an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this failure says something about the backend's health (and
    /// so counts toward opening the breaker). A 4xx is the caller's fault.
    pub(crate) fn counts_as_failure(&self) -> bool {
        match self {
            BackendError::Timeout { .. }
            | BackendError::Transport { .. }
            | BackendError::NoConnector { .. }
            | BackendError::Connector { .. } => true,
            BackendError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// 408, 425, 429 and 5xx except those that will never change (501, 505).
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (status >= 500 && !matches!(status, 501 | 505))
}
