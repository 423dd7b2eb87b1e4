//! The one "send this request to the backend" of the hyper engine, with
//! its two ways there: [`forward`](super::forward) dials the backend itself
//! (`[backend] via = "direct"`), the connector pool carries the request over
//! a connection a LAN connector opened (`via = "connector"`, docs/dmz.md).

use super::body::GuardedBody;
use super::forward::{ForwardError, Forwarder, Target, UpstreamFailure};
use super::pool::Checkin;
use super::sign::RequestSigner;
use crate::connector::pool::PoolError;
use crate::connector::{body as up_body, ConnectorPool};
use futures_util::future::{Either, FutureExt as _};
use hyper::body::Incoming;
use mft_config::model::Backend;
use std::future::Future;
use std::sync::Arc;

/// How requests reach the backend.
pub enum BackendPath {
    /// hyper-util's pool toward `[backend] url`.
    Direct(Box<Forwarder>),
    /// Connector connections; `[backend] url` only names the authority.
    Connectors {
        /// The live connections.
        pool: Arc<ConnectorPool>,
        /// `[backend] url`, parsed: the authority sent as `Host` (and signed).
        target: Target,
        /// Signs the one retry of a lost GET or HEAD afresh.
        signer: Option<Arc<RequestSigner>>,
    },
}

impl BackendPath {
    /// The connector path for `backend`.
    pub fn connectors(
        backend: &Backend,
        pool: Arc<ConnectorPool>,
        signer: Option<Arc<RequestSigner>>,
    ) -> Result<Self, ForwardError> {
        Ok(BackendPath::Connectors {
            pool,
            target: Target::from_url(&backend.url)?,
            signer,
        })
    }

    /// Where requests go.
    /// `[backend] read_timeout`: the longest silence of the backend, for
    /// the response head and between pieces of its body.
    pub fn read_timeout(&self) -> std::time::Duration {
        match self {
            BackendPath::Direct(f) => f.read_timeout(),
            BackendPath::Connectors { pool, .. } => pool.read_timeout(),
        }
    }

    pub fn target(&self) -> &Target {
        match self {
            BackendPath::Direct(f) => &f.target,
            BackendPath::Connectors { target, .. } => target,
        }
    }

    /// `host[:port]` of the backend, sent as `Host`.
    pub fn authority(&self) -> &str {
        &self.target().authority
    }

    /// The absolute URI for `path_and_query` on the backend.
    pub fn uri(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<http::Uri, http::uri::InvalidUriParts> {
        self.target().uri(path_and_query)
    }

    /// Sends `req` and waits for the response header. A direct connection
    /// comes with its [`Checkin`]: it goes back to the pool once the
    /// response body was read to its end.
    ///
    /// Not an async fn, for the reason given at [`Forwarder::send`].
    pub fn send(
        &self,
        req: http::Request<GuardedBody>,
    ) -> impl Future<Output = Result<(http::Response<Incoming>, Option<Checkin>), UpstreamFailure>>
           + Send
           + '_ {
        match self {
            BackendPath::Direct(f) => {
                Either::Left(f.send(req).map(|sent| sent.map(|(r, c)| (r, Some(c)))))
            }
            BackendPath::Connectors { pool, signer, .. } => {
                let signer = signer.as_ref();
                // Boxed: the connector path's state would otherwise sit inline
                // in every direct request's future too.
                Either::Right(Box::pin(async move {
                    let resign = |copy: &mut http::Request<()>| match signer {
                        None => true,
                        Some(signer) => {
                            let (method, uri) = (copy.method().clone(), copy.uri().clone());
                            signer.sign_map(&method, &uri, copy.headers_mut()).is_ok()
                        }
                    };
                    pool.send(req.map(up_body::boxed), &resign)
                        .await
                        .map(|r| (r, None))
                        .map_err(failure)
                }))
            }
        }
    }
}

/// The pool's errors in the proxy's terms: 503, 504 or 502.
pub fn failure(e: PoolError) -> UpstreamFailure {
    match e {
        // Every connection busy for as long as one may be waited for:
        // as good as none, and as transient (503 with Retry-After).
        PoolError::NoConnector | PoolError::Busy => UpstreamFailure::NoConnector,
        PoolError::Timeout(_) => UpstreamFailure::Timeout,
        lost @ PoolError::Lost { .. } => UpstreamFailure::Failed(Box::new(lost)),
    }
}
