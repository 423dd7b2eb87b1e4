//! Dialling the gateway: TCP, TLS, the attach request, and the upgraded
//! stream the connector then serves HTTP/2 on. Each failure is typed so the
//! log and `connector --check` say what is wrong.

use crate::connector::liveness::TcpLiveness;
use crate::connector::wire;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use mft_config::connector::{Lan, LinkMode};
use mft_config::Secret;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Why a connection to the gateway could not be attached.
#[derive(Debug, Error)]
pub enum DialError {
    /// TCP connect failed or timed out.
    #[error("gateway {addr} unreachable: {reason}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The gateway's certificate is not the pinned one or not signed by the CA.
    #[error("gateway certificate not trusted: {0}")]
    Untrusted(String),
    /// Any other TLS failure.
    #[error("TLS handshake with the gateway failed: {0}")]
    Tls(String),
    /// The gateway refused the key (401): wrong, unknown or removed.
    #[error("connector key refused by the gateway (it is unknown there or was removed)")]
    KeyRefused,
    /// The key is right but the gateway wants the client certificate this
    /// connector is pinned to (403): `client_cert` missing or another one.
    #[error("the gateway refused this connector's client certificate (it is pinned to another one, or client_cert is missing)")]
    CertificateRefused,
    /// Any other answer to the attach request.
    #[error("the gateway answered {status} to the attach request: {detail}")]
    Refused {
        /// Status.
        status: u16,
        /// The problem's detail, if any.
        detail: String,
    },
    /// The attach request failed below HTTP.
    #[error("attach request failed: {0}")]
    Http(String),
}

impl DialError {
    /// Whether the operator has to change something (the key or the trust
    /// setting) before a retry can succeed; logged as an error then. The
    /// connector keeps retrying anyway: the fix may be on the gateway side.
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            DialError::KeyRefused | DialError::CertificateRefused | DialError::Untrusted(_)
        )
    }
}

/// An attached connection and the protocol the gateway chose for it.
pub struct Attached {
    /// The stream, after the `101`.
    pub stream: Upgraded,
    /// The link protocol the gateway speaks on it.
    pub mode: LinkMode,
    /// With HTTP/1.1: the gateway's heartbeat interval on idle links.
    pub heartbeat: Duration,
}

/// Everything needed to open one attached connection.
pub struct Dialer {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    authority: String,
    key: Secret,
    connect_timeout: Duration,
}

impl Dialer {
    /// A dialer for `config` with the TLS client config `tls`.
    pub fn new(config: &Lan, tls: Arc<rustls::ClientConfig>) -> Result<Dialer, DialError> {
        let host = config
            .gateway
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = config.gateway.port_or_known_default().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| DialError::Tls(format!("{host}: {e}")))?;
        Ok(Dialer {
            tls: tokio_rustls::TlsConnector::from(tls),
            server_name,
            authority: format!("{}:{port}", config.gateway.host_str().unwrap_or_default()),
            host,
            port,
            key: config.key.clone(),
            connect_timeout: config.connect_timeout,
        })
    }

    /// `host:port` of the gateway.
    pub fn target(&self) -> &str {
        &self.authority
    }

    /// Opens one connection and attaches it.
    pub async fn dial(&self) -> Result<Attached, DialError> {
        let unreachable = |reason: String| DialError::Unreachable {
            addr: self.authority.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| unreachable("connect timed out".to_string()))?
        .map_err(|e| unreachable(e.to_string()))?;
        // Small requests must not wait for Nagle's timer.
        let _ = tcp.set_nodelay(true);
        // A silent path ends the link in every state, not only when idle.
        if let Err(e) = TcpLiveness::connector().apply(&tcp) {
            tracing::warn!(error = %e, "cannot set keepalive on the gateway connection");
        }
        let tls = tokio::time::timeout(
            self.connect_timeout,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| DialError::Tls("handshake timed out".to_string()))?
        .map_err(tls_error)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| DialError::Http(e.to_string()))?;
        let driver = tokio::spawn(conn.with_upgrades());
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = http::Uri::from_static(wire::ATTACH_PATH);
        let h = req.headers_mut();
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&self.authority)
                .map_err(|e| DialError::Http(e.to_string()))?,
        );
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        h.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static(wire::UPGRADE_TOKEN),
        );
        h.insert(
            wire::LINK_HEADER,
            http::HeaderValue::from_static(wire::OFFERED_LINKS),
        );
        let mut bearer =
            http::HeaderValue::from_str(&format!("Bearer {}", self.key.expose().trim()))
                .map_err(|_| DialError::KeyRefused)?;
        bearer.set_sensitive(true);
        h.insert(http::header::AUTHORIZATION, bearer);
        let response = tokio::time::timeout(self.connect_timeout, sender.send_request(req))
            .await
            .map_err(|_| DialError::Http("no answer to the attach request".to_string()))?
            .map_err(|e| DialError::Http(e.to_string()))?;
        let status = response.status();
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            // A gateway that names no protocol speaks HTTP/2.
            let mode = match header(wire::LINK_HEADER) {
                None => LinkMode::H2,
                Some(m) => LinkMode::parse(&m).ok_or_else(|| {
                    DialError::Http(format!("the gateway chose an unknown link protocol {m:?}"))
                })?,
            };
            let heartbeat = header(wire::HEARTBEAT_HEADER)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(60), Duration::from_secs);
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(|e| DialError::Http(e.to_string()));
            drop(driver);
            return upgraded.map(|stream| Attached {
                stream,
                mode,
                heartbeat,
            });
        }
        driver.abort();
        if status == http::StatusCode::UNAUTHORIZED {
            return Err(DialError::KeyRefused);
        }
        if status == http::StatusCode::FORBIDDEN {
            return Err(DialError::CertificateRefused);
        }
        Err(DialError::Refused {
            status: status.as_u16(),
            detail: problem_detail(response).await,
        })
    }
}

/// The `detail` of a small problem+json answer, read at most 16 KiB.
async fn problem_detail(response: http::Response<hyper::body::Incoming>) -> String {
    let body = Limited::new(response.into_body(), 16 * 1024);
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return String::new();
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A certificate problem is named as such; anything else stays a TLS error.
fn tls_error(e: std::io::Error) -> DialError {
    let text = e.to_string();
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => DialError::Untrusted(format!("{c:?}")),
        _ => DialError::Tls(text),
    }
}
