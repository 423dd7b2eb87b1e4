//! Downstream TLS: certificate loading with clean errors, the rustls server
//! config (tickets, session cache, ALPN), and the TLS front of the HTTP app.
//!
//! We build rustls ourselves instead of pingora's `TlsSettings`: its `build()`
//! panics on a bad file and it configures no session tickets, which decide
//! handshake throughput for clients that reconnect.

pub mod acme;
pub mod acme_http;
pub mod certs;
mod client_auth;
pub mod ocsp;
pub mod pin;

use crate::conn_guard::{ConnLimiter, GuardedStream};
use async_trait::async_trait;
use mft_config::model::TlsVersion;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Why the certificate or key cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("no PEM certificate found in {}", .0.display())]
    NoCertificate(PathBuf),
    /// The file holds no PEM private key (or an unsupported kind).
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) found in {}", .0.display())]
    NoKey(PathBuf),
    /// The key cannot be used for signing.
    #[error("private key {} is not usable: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The key is not the one the certificate was issued for.
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    Mismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        what: "certificate",
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        what: "private key",
        path: key.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    let signer = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|source| TlsError::BadKey {
            path: key.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })?;
    Ok(Arc::new(certified))
}

#[derive(Debug)]
struct SingleCert(Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Number of TLS 1.2 sessions (and TLS 1.3 stateful fallbacks) remembered.
const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// The public listener's rustls config: TLS 1.3 and 1.2, ALPN h2 then
/// http/1.1, stateless session tickets with rotating keys, and a session cache.
pub fn server_config(key: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(key, false, TlsVersion::V1_2)
}

/// [`server_config`]; with `client_auth`, clients may present a
/// certificate (`[trust] client_auth`, for partner pinning); `min` is
/// `[server] tls_min_version`.
pub fn server_config_with(
    key: Arc<CertifiedKey>,
    client_auth: bool,
    min: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_resolving(
        Arc::new(SingleCert(key)),
        &TlsPolicy {
            client_auth,
            min,
            ..TlsPolicy::default()
        },
    )
}

/// The listener's TLS settings beyond its certificates.
#[derive(Debug, Clone, Default)]
pub struct TlsPolicy {
    /// Clients may present a certificate (`[trust] client_auth`).
    pub client_auth: bool,
    /// `[server] tls_min_version`.
    pub min: TlsVersion,
    /// `[server] tls_cipher_suites` (rustls names, checked by the config);
    /// empty: rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// Offer ALPN `acme-tls/1` for TLS-ALPN-01 challenges (`[server.acme]`).
    pub acme_tls_alpn: bool,
}

impl TlsPolicy {
    /// The public listener's policy from `[server]` and `[trust] client_auth`.
    pub fn of(server: &mft_config::model::Server, client_auth: bool) -> TlsPolicy {
        TlsPolicy {
            client_auth,
            min: server.tls_min_version,
            cipher_suites: server.tls_cipher_suites.clone(),
            acme_tls_alpn: server.acme.is_some(),
        }
    }
}

/// The ring provider with only `names` (in that order); all when empty.
fn provider_with_suites(names: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let all = std::mem::take(&mut provider.cipher_suites);
    for name in names {
        match all.iter().find(|s| suite_name(s) == *name) {
            Some(s) => provider.cipher_suites.push(*s),
            None => {
                return Err(TlsError::Config(rustls::Error::General(format!(
                    "unknown cipher suite {name}"
                ))))
            }
        }
    }
    Ok(provider)
}

/// A suite's name as rustls spells it (`TLS13_AES_128_GCM_SHA256`).
pub fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// [`server_config_with`], the certificate chosen per handshake by
/// `resolver` (SNI, files swapped while running: [`certs::CertStore`]).
pub fn server_config_resolving(
    resolver: Arc<dyn ResolvesServerCert>,
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let client_auth = policy.client_auth;
    let provider = Arc::new(provider_with_suites(&policy.cipher_suites)?);
    let algorithms = provider.signature_verification_algorithms;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match policy.min {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
    let builder = if client_auth {
        builder.with_client_cert_verifier(Arc::new(client_auth::PinnedLater::new(algorithms)))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if policy.acme_tls_alpn {
        // Last: chosen only by a client that offers nothing else (the CA's
        // validator, RFC 8737); the resolver then serves the challenge.
        config.alpn_protocols.push(acme::ACME_TLS_ALPN.to_vec());
    }
    // Our order of suites (strongest first), not the client's.
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}

/// Terminates TLS (with a handshake deadline) and hands the decrypted stream
/// to the HTTP application, which picks h2 or HTTP/1.1 from ALPN.
pub struct TlsFront<A> {
    acceptor: Acceptor,
    app: Arc<A>,
    handshake_timeout: Duration,
    conns: Arc<ConnLimiter>,
    header_timeout: Duration,
}

impl<A> TlsFront<A> {
    /// Wraps `app` behind TLS with `config`; `conns` caps connections per
    /// client IP and `header_timeout` bounds each HTTP/1.1 request header.
    pub fn new(
        config: Arc<ServerConfig>,
        app: Arc<A>,
        handshake_timeout: Duration,
        conns: Arc<ConnLimiter>,
        header_timeout: Duration,
    ) -> Self {
        TlsFront {
            acceptor: Acceptor::from_server_config(config),
            app,
            handshake_timeout,
            conns,
            header_timeout,
        }
    }
}

#[async_trait]
impl<A> ServerApp for TlsFront<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer_addr = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let peer = peer_addr.map(|a| a.to_string());
        // Refused before the handshake: a client at its cap costs us no crypto.
        let Ok(slot) = self.conns.admit(peer_addr) else {
            return None;
        };
        // The listener hands out its L4 stream boxed; the TLS layer needs the concrete type.
        let l4: L4Stream = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => *l4,
            Err(_) => {
                tracing::error!("listener produced a stream that is not a TCP stream");
                return None;
            }
        };
        // Boxed so the handshake's state is freed once it is done: inline it
        // would size this connection-long future for as long as the client
        // keeps the connection open (measured: see docs/benchmarks.md, idle).
        let handshake = Box::pin(tokio::time::timeout(
            self.handshake_timeout,
            self.acceptor.tls_handshake(l4),
        ));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(peer = peer.as_deref().unwrap_or("-"), error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(
                    peer = peer.as_deref().unwrap_or("-"),
                    "TLS handshake timed out"
                );
                return None;
            }
        };
        // The HTTP app keeps the connection for keep-alive itself and returns
        // None; a returned stream would be fed back here and handshaken twice.
        let guarded = GuardedStream::new(Box::new(tls), self.header_timeout, slot);
        let _ = self.app.process_new(Box::new(guarded), shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the config accepts are exactly the provider's suites.
    #[test]
    fn config_knows_every_suite_of_the_provider_by_its_rustls_name() {
        let names: Vec<String> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(suite_name)
            .collect();
        let mut ours: Vec<String> = mft_config::model::CIPHER_SUITES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut theirs = names.clone();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        let only = provider_with_suites(&["TLS13_AES_128_GCM_SHA256".to_string()]).unwrap();
        assert_eq!(only.cipher_suites.len(), 1);
        assert!(provider_with_suites(&["TLS_NULL".to_string()]).is_err());
    }
}
