//! TLS to the mail server: the public web PKI plus the mailbox's `ca_file`,
//! or exactly the certificate pinned by `tls_pin_sha256` (a self-signed
//! server; see tls::pin).

use mft_config::mailbox::Connection;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// Why no TLS client could be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `ca_file` unreadable or not PEM.
    #[error("ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// `host` is not a valid DNS name or IP address.
    #[error("host {0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A connector and the server name to verify, for one mailbox.
#[derive(Clone)]
pub struct MailTls {
    /// The connector.
    pub connector: TlsConnector,
    /// The name in the server certificate (the configured host).
    pub server_name: ServerName<'static>,
}

/// Builds the TLS client for `conn` (reads `ca_file` once, at start).
pub fn client(conn: &Connection) -> Result<MailTls, TlsSetupError> {
    let server_name = ServerName::try_from(conn.host.clone())
        .map_err(|_| TlsSetupError::ServerName(conn.host.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    if let Some(pin) = &conn.tls_pin_sha256 {
        let config = crate::tls::pin::PinnedCert::client_builder(pin, &provider, builder)
            .with_no_client_auth();
        return Ok(MailTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &conn.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| TlsSetupError::CaFile {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| TlsSetupError::CaFile {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| TlsSetupError::CaFile {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsSetupError::CaFile {
                path: shown,
                message: "no PEM certificate in it".to_string(),
            });
        }
    }
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    Ok(MailTls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// A failed handshake's error for the operator: a pin mismatch says which
/// certificate came; a certificate the web PKI does not trust names the way
/// out (`ca_file` for a private CA, `tls_pin_sha256` for a self-signed one).
pub fn describe(e: &std::io::Error) -> String {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    if let Some(m) = tls.and_then(crate::tls::pin::pin_mismatch) {
        return format!("invalid peer certificate: {m}");
    }
    match tls {
        Some(rustls::Error::InvalidCertificate(_)) => format!(
            "{e} (the server's certificate is not trusted: for a private CA set ca_file, \
             for a self-signed certificate set tls_pin_sha256 to its SHA-256; see docs/mailboxes.md)"
        ),
        _ => e.to_string(),
    }
}
