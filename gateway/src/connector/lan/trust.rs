//! How the connector trusts the gateway's certificate: a CA file (the usual
//! WebPKI checks, name from the gateway URL), or a SHA-256 pin of the
//! certificate itself for a gateway with a self-signed one.

use mft_config::connector::GatewayTrust;
use rustls::ClientConfig;
use std::sync::Arc;
use thiserror::Error;

/// Why the TLS client config cannot be built.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The CA file cannot be read.
    #[error("connector.ca_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It holds no usable certificate.
    #[error("connector.ca_file {0}: no usable CA certificate in it")]
    Empty(String),
    /// rustls refused the protocol versions (a build problem).
    #[error("TLS client setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls client config toward the gateway (ALPN http/1.1: the attach
/// request is HTTP/1.1, then the roles flip).
pub fn client_config(trust: &GatewayTrust) -> Result<Arc<ClientConfig>, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match trust {
        GatewayTrust::CaFile(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| TrustError::Read {
                path: shown.clone(),
                source,
            })?;
            let mut roots = rustls::RootCertStore::empty();
            let mut reader = pem.as_slice();
            let certs = rustls_pemfile::certs(&mut reader).filter_map(Result::ok);
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TrustError::Empty(shown));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        GatewayTrust::Pin(hex) => {
            crate::tls::pin::PinnedCert::client_builder(hex, &provider, builder)
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
