//! Trust in exactly one certificate: the SHA-256 of the server's
//! end-entity certificate (DER) is pinned, for servers with a self-signed
//! certificate (an on-prem mail server, a DMZ gateway) where a private CA
//! would be the only other way. Never a switch that ignores certificate
//! errors: the certificate must be the pinned one, and the handshake
//! signatures are still verified, so only the holder of its key passes.
//!
//! Used by the connector (`[connector] gateway_pin_sha256`) and the mailbox
//! pollers (`[[imap]]` / `[[pop3]]` `tls_pin_sha256`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ConfigBuilder, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// The certificate presented is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("certificate sha256 {presented} is not the pinned one ({pinned})")]
pub struct PinMismatch {
    /// SHA-256 of the certificate the server presented (hex).
    pub presented: String,
    /// The pin.
    pub pinned: String,
}

/// Accepts exactly the certificate whose SHA-256 is pinned.
#[derive(Debug)]
pub struct PinnedCert {
    sha256: String,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    /// A verifier for `sha256` (64 lower-case hex digits, as
    /// `mft_config::pin::parse_pin_sha256` returns it), verifying handshake
    /// signatures with `provider`'s algorithms.
    pub fn new(sha256: &str, provider: &CryptoProvider) -> PinnedCert {
        PinnedCert {
            sha256: sha256.to_ascii_lowercase(),
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// `builder` finished with this verifier instead of WebPKI roots.
    pub fn client_builder(
        sha256: &str,
        provider: &Arc<CryptoProvider>,
        builder: ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    ) -> ConfigBuilder<rustls::ClientConfig, WantsClientCert> {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert::new(sha256, provider)))
    }
}

/// The pin mismatch inside a handshake error, if that is what it was
/// (rustls prints its certificate errors with `Debug`).
pub fn pin_mismatch(e: &rustls::Error) -> Option<&PinMismatch> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            o.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
    }
}

/// SHA-256 of a certificate's DER, lower-case hex.
pub fn cert_sha256(der: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der))
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = cert_sha256(end_entity.as_ref());
        // The pin is public; equality need not be constant time.
        if presented == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    presented,
                    pinned: self.sha256.clone(),
                }))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_certificate_passes() {
        let cert = rcgen::generate_simple_self_signed(vec!["mail.example".into()]).unwrap();
        let der = cert.cert.der().clone();
        let provider = rustls::crypto::ring::default_provider();
        let name = ServerName::try_from("other.example").unwrap();
        let right = PinnedCert::new(&cert_sha256(&der).to_uppercase(), &provider);
        assert!(right
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .is_ok());
        let wrong = PinnedCert::new(&"ab".repeat(32), &provider);
        let e = wrong
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        let m = pin_mismatch(&e).expect("a pin mismatch").to_string();
        assert!(m.contains(&cert_sha256(&der)), "{m}");
        assert!(m.contains("not the pinned one"), "{m}");
    }
}
