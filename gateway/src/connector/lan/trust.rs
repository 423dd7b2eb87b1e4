//! How the connector trusts the gateway's certificate: a CA file (the usual
//! WebPKI checks, name from the gateway URL), or a SHA-256 pin of the
//! certificate itself for a gateway with a self-signed one.

use mft_config::connector::{ClientCert, GatewayTrust};
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
    /// `client_cert` / `client_key` cannot be used.
    #[error("connector.client_cert: {0}")]
    ClientCert(#[from] crate::tls::TlsError),
    /// rustls refused the protocol versions (a build problem).
    #[error("TLS client setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// ring's provider with AES-128-GCM first: the gateway follows the
/// client's order, and every byte of every transfer is sealed once here and
/// opened once at the gateway. AES-128 does 10 rounds where AES-256 does
/// 14, and both sides are ours, on a link the operator chose.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            && s.suite() != rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            && s.suite() != rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    });
    provider
}

/// The rustls client config toward the gateway (ALPN http/1.1: the attach
/// request is HTTP/1.1, then the roles flip).
pub fn client_config(
    trust: &GatewayTrust,
    client_cert: Option<&ClientCert>,
) -> Result<Arc<ClientConfig>, TrustError> {
    let provider = Arc::new(provider());
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
            let builder = builder.with_root_certificates(roots);
            match client_cert {
                Some(c) => builder.with_client_cert_resolver(resolver(c)?),
                None => builder.with_no_client_auth(),
            }
        }
        GatewayTrust::Pin(hex) => {
            let builder = crate::tls::pin::PinnedCert::client_builder(hex, &provider, builder);
            match client_cert {
                Some(c) => builder.with_client_cert_resolver(resolver(c)?),
                None => builder.with_no_client_auth(),
            }
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The connector's client certificate, loaded and checked against its key.
fn resolver(
    c: &ClientCert,
) -> Result<Arc<dyn rustls::client::ResolvesClientCert>, crate::tls::TlsError> {
    let key = crate::tls::load_certified_key(&c.cert, &c.key)?;
    Ok(Arc::new(OneCert(key)))
}

/// Presents the one configured certificate, whatever the gateway hints.
#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
