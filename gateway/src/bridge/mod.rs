//! Protocol bridges: legacy inputs (SMTP, IMAP, POP3, SFTP) that reach the
//! backend through the shared [`BackendClient`], never through the proxy.
//!
//! Every bridge runs on the bridge runtime (a
//! [`crate::runtime::ServiceRuntime`] named `bridge`) so a slow mailbox or a stalled SFTP client cannot take worker threads from the
//! HTTPS proxy, and the backend client's connection pool lives on one runtime.

pub mod imap;
pub mod mailbox;
pub mod oauth2;
pub mod pipeline;
pub mod pop3;
pub mod sftp;
pub mod smtp;
pub mod spool;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::backend_client::BackendClient;
use crate::metrics::Metrics;
use crate::store::Store;
use mft_config::Config;
use pipeline::DeliveryPipeline;
use std::sync::Arc;

/// What every bridge shares with the rest of the gateway.
pub struct BridgeContext {
    /// The whole validated configuration.
    pub config: Arc<Config>,
    /// Signed, retried, circuit-broken calls to the backend.
    pub backend: BackendClient,
    /// Parsed message -> uploads + one delivery.
    pub pipeline: Arc<DeliveryPipeline>,
    /// API keys (service accounts may log in to SMTP/SFTP with a key).
    pub auth: Arc<Authenticator>,
    /// Key store, for state the bridges keep (e.g. IMAP UIDs).
    pub store: Store,
    /// Audit trail.
    pub audit: AuditLog,
    /// Prometheus registry and the gateway's series.
    pub metrics: Arc<Metrics>,
    /// The HTTPS certificates (SNI, renewed files swapped in while
    /// running), reused for STARTTLS and implicit TLS.
    pub certificates: Arc<crate::tls::certs::CertResolver>,
    /// The runtime the bridges run on.
    pub runtime: crate::runtime::ServiceRuntime,
    /// SIGTERM: stop taking work, finish what was taken (drain.rs).
    pub drain: crate::drain::Drain,
}

/// Starts every configured bridge on the bridge runtime. A bridge that
/// cannot start (port in use, unreadable host key) is a startup error.
pub fn start_all(ctx: &Arc<BridgeContext>) -> anyhow::Result<()> {
    if !ctx.config.imap.is_empty() || !ctx.config.pop3.is_empty() {
        let data_dir = &ctx.config.server.data_dir;
        mailbox::tmpfile::prepare(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot prepare {}: {e}",
                mailbox::tmpfile::dir(data_dir).display()
            )
        })?;
    }
    smtp::start(ctx)?;
    imap::start(ctx)?;
    pop3::start(ctx)?;
    sftp::start(ctx)?;
    Ok(())
}
