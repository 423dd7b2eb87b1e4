//! How the connector trusts the gateway's certificate: a CA file (the usual
//! WebPKI checks, name from the gateway URL), or a SHA-256 pin of the
//! certificate itself for a gateway with a self-signed one.

use mft_config::connector::GatewayTrust;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
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
        GatewayTrust::Pin(hex) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: hex.clone(),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly the certificate whose SHA-256 is pinned; the handshake
/// signatures are still verified, so only the holder of its key passes.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(end_entity.as_ref()));
        // The pin is public; equality need not be constant time.
        if digest == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
