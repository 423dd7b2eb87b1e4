//! Optional client certificates on the public listener, for trust-partner
//! pinning: any certificate a client offers is accepted at the TLS layer
//! (the handshake still proves the client holds its key), and its SHA-256
//! is then compared with the pin of the partner connection the request
//! authenticates as. Clients without a certificate connect as before.
//!
//! No chain is checked here on purpose: the pin is the trust anchor, and
//! a partner's gateway certificate usually chains to a public server CA.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Accepts any client certificate, or none.
#[derive(Debug)]
pub struct PinnedLater {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedLater {
    /// A verifier checking handshake signatures with `algorithms`.
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> PinnedLater {
        PinnedLater { algorithms }
    }
}

impl ClientCertVerifier for PinnedLater {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
