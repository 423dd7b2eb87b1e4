//! `[server.acme]`: certificates from an ACME CA (RFC 8555, instant-acme),
//! validated with TLS-ALPN-01 (RFC 8737) on the public HTTPS listener, so no
//! port 80 is needed; or with HTTP-01 on a plain-HTTP listener of its own
//! (`challenge = "http-01"`, acme_http.rs).
//!
//! One task on the control plane: at start it serves the certificate stored
//! in `data_dir/acme/` if it covers the configured names, else orders one;
//! it renews at two thirds of the lifetime and swaps the new certificate
//! into the resolver (connections in flight keep theirs). A failed order is
//! logged and retried with exponential backoff.

use super::acme_http::Http01Tokens;
use super::certs::CertStore;
use super::TlsError;
use crate::trust::seal::{SealError, Sealer};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use mft_config::model::{Acme, AcmeChallenge};
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// First wait after a failed order, and the least one; the cap doubles per
/// failure up to [`BACKOFF_MAX`] ([`crate::backoff`]).
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Why an order failed.
#[derive(Debug, Error)]
pub enum AcmeError {
    /// The CA refused or could not be reached.
    #[error("ACME CA {directory}: {source}")]
    Ca {
        /// Directory URL.
        directory: String,
        /// instant-acme's error (carries the CA's problem document).
        source: instant_acme::Error,
    },
    /// An authorization ended in a state other than valid.
    #[error("authorization for {name}: {status}")]
    Authorization {
        /// The host name.
        name: String,
        /// What went wrong.
        status: String,
    },
    /// A file in `data_dir/acme/` cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stored account cannot be read.
    #[error("{}: not an ACME account file: {source}", path.display())]
    Account {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The stored account's credentials cannot be sealed or opened.
    #[error("{}: {source}", path.display())]
    AccountSeal {
        /// The file.
        path: PathBuf,
        /// Why.
        source: AccountSealError,
    },
    /// The challenge certificate cannot be made.
    #[error("TLS-ALPN-01 challenge certificate: {0}")]
    Challenge(#[from] rcgen::Error),
    /// The issued certificate cannot be served.
    #[error("issued certificate: {0}")]
    Issued(#[from] TlsError),
}

/// `data_dir/acme/account.json`: the account and the directory it belongs
/// to. The credentials hold the account's private key: sealed under
/// `[trust] encryption_key` when one is configured (like partner keys and
/// webhook secrets), else readable by the gateway's user only (0600).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredAccount {
    /// AES-256-GCM of the credentials' JSON, base64.
    Sealed { directory: String, sealed: String },
    /// As written before sealing existed, or without an encryption key.
    Plain {
        directory: String,
        credentials: Box<AccountCredentials>,
    },
}

/// What the sealed account credentials are bound to (AEAD associated data).
const ACCOUNT_SEAL_NAME: &str = "acme-account";

impl StoredAccount {
    fn directory(&self) -> &str {
        match self {
            StoredAccount::Sealed { directory, .. } | StoredAccount::Plain { directory, .. } => {
                directory
            }
        }
    }

    fn is_sealed(&self) -> bool {
        matches!(self, StoredAccount::Sealed { .. })
    }

    /// The file's form of `credentials`: sealed when `sealer` is given.
    fn new(
        directory: String,
        credentials: AccountCredentials,
        sealer: Option<&Sealer>,
    ) -> Result<StoredAccount, AccountSealError> {
        use base64::Engine as _;
        let Some(sealer) = sealer else {
            return Ok(StoredAccount::Plain {
                directory,
                credentials: Box::new(credentials),
            });
        };
        let json = serde_json::to_vec(&credentials).map_err(AccountSealError::Json)?;
        let sealed = sealer
            .seal(ACCOUNT_SEAL_NAME, &json)
            .map_err(AccountSealError::Seal)?;
        Ok(StoredAccount::Sealed {
            directory,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        })
    }

    fn credentials(self, sealer: Option<&Sealer>) -> Result<AccountCredentials, AccountSealError> {
        use base64::Engine as _;
        match self {
            StoredAccount::Plain { credentials, .. } => Ok(*credentials),
            StoredAccount::Sealed { sealed, .. } => {
                let sealer = sealer.ok_or(AccountSealError::NoKey)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(sealed)
                    .map_err(|_| AccountSealError::Seal(SealError::Open))?;
                let json = sealer
                    .open(ACCOUNT_SEAL_NAME, &bytes)
                    .map_err(AccountSealError::Seal)?;
                serde_json::from_str(&json).map_err(AccountSealError::Json)
            }
        }
    }
}

/// Why the stored account's credentials cannot be sealed or opened.
#[derive(Debug, Error)]
pub enum AccountSealError {
    /// The file is sealed and no `[trust] encryption_key` is configured.
    #[error("the account is sealed and [trust] encryption_key is not set")]
    NoKey,
    /// Wrong key or damaged file (never any key material).
    #[error("{0}")]
    Seal(SealError),
    /// The credentials are not the JSON instant-acme writes.
    #[error("credentials: {0}")]
    Json(serde_json::Error),
}

/// Where the ACME state lives.
#[derive(Debug, Clone)]
pub struct AcmePaths {
    /// `data_dir/acme`.
    pub dir: PathBuf,
}

impl AcmePaths {
    /// The paths under `data_dir`.
    pub fn new(data_dir: &Path) -> AcmePaths {
        AcmePaths {
            dir: data_dir.join("acme"),
        }
    }
    /// Account credentials (mode 0600).
    pub fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }
    /// Issued certificate chain.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    /// Its private key (mode 0600).
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// What is known about a stored certificate.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The served key.
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf.
    pub names: Vec<String>,
    /// Validity, seconds since the epoch.
    pub not_before: i64,
    /// Validity, seconds since the epoch.
    pub not_after: i64,
}

impl Stored {
    /// When to renew: two thirds into the lifetime.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// Whether the certificate names every host in `names`.
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|n| self.names.contains(n))
    }
}

/// Reads `data_dir/acme/cert.pem` and `key.pem` (blocking).
pub fn load_stored(paths: &AcmePaths) -> Result<Option<Stored>, TlsError> {
    if !paths.cert().exists() {
        return Ok(None);
    }
    let key = super::load_certified_key(&paths.cert(), &paths.key())?;
    let leaf = key
        .cert
        .first()
        .ok_or_else(|| TlsError::NoCertificate(paths.cert()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| TlsError::NoCertificate(paths.cert()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let v = parsed.validity();
    Ok(Some(Stored {
        names,
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        key,
    }))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Writes `bytes` to `path` through a temporary file and a rename, with
/// `mode` (blocking).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| AcmeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The self-signed certificate RFC 8737 §3 asks for: `name` as its only
/// SAN and the critical acmeIdentifier extension over the key authorization.
fn challenge_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Issued(TlsError::Config(e)))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Obtains and renews the `[server.acme]` certificate.
pub struct AcmeManager {
    config: Acme,
    paths: AcmePaths,
    certs: Arc<CertStore>,
    renewals: IntCounterVec,
    /// The HTTPS listener, awaited before the first order (the CA's
    /// validator connects to it).
    https: SocketAddr,
    /// HTTP-01 answers in progress (served by `acme_http::Http01App`).
    http01: Arc<Http01Tokens>,
    /// Seals the stored account (`[trust] encryption_key`), if configured.
    sealer: Option<Sealer>,
}

impl AcmeManager {
    /// Registers `mft_acme_renewals_total{result}`.
    pub fn new(
        config: Acme,
        data_dir: &Path,
        certs: Arc<CertStore>,
        registry: &Registry,
        https: SocketAddr,
        sealer: Option<Sealer>,
    ) -> prometheus::Result<AcmeManager> {
        let renewals = IntCounterVec::new(
            Opts::new(
                "mft_acme_renewals_total",
                "ACME orders (first certificate and renewals), by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(renewals.clone()))?;
        for r in ["success", "failure"] {
            renewals.with_label_values(&[r]).reset();
        }
        Ok(AcmeManager {
            config,
            paths: AcmePaths::new(data_dir),
            certs,
            renewals,
            https,
            http01: Arc::new(Http01Tokens::default()),
            sealer,
        })
    }

    /// The tokens the HTTP-01 listener answers (`challenge = "http-01"`).
    pub fn http01_tokens(&self) -> Arc<Http01Tokens> {
        self.http01.clone()
    }

    /// Serves the stored certificate (blocking read, before the listener
    /// starts) so the first handshakes already get it.
    pub fn serve_stored(&self) -> Option<Stored> {
        match load_stored(&self.paths) {
            Ok(Some(s)) if s.covers(&self.config.names) => {
                self.certs.install_acme(&self.config.names, s.key.clone());
                tracing::info!(names = ?self.config.names, not_after = s.not_after,
                    renew_at = s.renew_at(), "serving the stored ACME certificate");
                Some(s)
            }
            Ok(Some(s)) => {
                tracing::info!(stored = ?s.names, wanted = ?self.config.names,
                    "stored ACME certificate does not cover server.acme.names; ordering a new one");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate cannot be used; ordering a new one");
                None
            }
        }
    }

    /// The renewal loop; runs until the process ends.
    pub async fn run(self, mut current: Option<Stored>) {
        self.wait_for_listener().await;
        let mut backoff = crate::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX, BACKOFF_MIN);
        loop {
            if let Some(s) = &current {
                let wait = (s.renew_at() - now()).max(0) as u64;
                if wait > 0 {
                    tracing::debug!(
                        seconds = wait,
                        "next ACME renewal at two thirds of the lifetime"
                    );
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }
            match self.obtain().await {
                Ok(s) => {
                    self.renewals.with_label_values(&["success"]).inc();
                    tracing::info!(names = ?self.config.names, not_after = s.not_after,
                        renew_at = s.renew_at(), "ACME certificate obtained; serving it to new connections");
                    current = Some(s);
                    backoff.reset();
                }
                Err(e) => {
                    self.renewals.with_label_values(&["failure"]).inc();
                    let delay = backoff.next_delay();
                    tracing::error!(names = ?self.config.names, error = %e,
                        retry_in_secs = delay.as_secs(), "ACME order failed; the current certificate stays served");
                    tokio::time::sleep(delay).await;
                    // Retry now, whatever the stored certificate's schedule says.
                    if let Some(s) = &mut current {
                        s.not_before = 0;
                        s.not_after = 0;
                    }
                }
            }
        }
    }

    async fn wait_for_listener(&self) {
        let mut addr = self.https;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn ca(&self) -> impl Fn(instant_acme::Error) -> AcmeError + '_ {
        move |source| AcmeError::Ca {
            directory: self.config.directory.clone(),
            source,
        }
    }

    /// The stored account for this directory, or a new one (then stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || match &self.config.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let path = self.paths.account();
        let sealer = self.sealer.as_ref();
        let seal_error = |source| AcmeError::AccountSeal {
            path: path.clone(),
            source,
        };
        if let Ok(text) = tokio::fs::read(&path).await {
            let stored: StoredAccount =
                serde_json::from_slice(&text).map_err(|source| AcmeError::Account {
                    path: path.clone(),
                    source,
                })?;
            if stored.directory() == self.config.directory {
                let reseal = sealer.is_some() && !stored.is_sealed();
                let credentials = stored.credentials(sealer).map_err(seal_error)?;
                if reseal {
                    // Written before an encryption key was configured: seal it now.
                    let copy = serde_json::to_value(&credentials)
                        .and_then(serde_json::from_value)
                        .map_err(|source| AcmeError::Account {
                            path: path.clone(),
                            source,
                        })?;
                    self.store_account(copy).await?;
                    tracing::info!("the stored ACME account is now sealed");
                }
                return builder()
                    .map_err(self.ca())?
                    .from_credentials(credentials)
                    .await
                    .map_err(self.ca());
            }
            tracing::info!("server.acme.directory changed; registering a new account there");
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()
            .map_err(self.ca())?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                None,
            )
            .await
            .map_err(self.ca())?;
        self.store_account(credentials).await?;
        tracing::info!(account = account.id(), "ACME account registered");
        Ok(account)
    }

    /// Writes the account file (0600), sealed when a sealer is configured.
    async fn store_account(&self, credentials: AccountCredentials) -> Result<(), AcmeError> {
        let path = self.paths.account();
        let stored = StoredAccount::new(
            self.config.directory.clone(),
            credentials,
            self.sealer.as_ref(),
        )
        .map_err(|source| AcmeError::AccountSeal {
            path: path.clone(),
            source,
        })?;
        let bytes = serde_json::to_vec(&stored).map_err(|source| AcmeError::Account {
            path: path.clone(),
            source,
        })?;
        let dir = self.paths.dir.clone();
        blocking(move || {
            create_dir(&dir)?;
            write_atomic(&path, &bytes, 0o600)
        })
        .await
    }

    /// One order: TLS-ALPN-01 for every name, finalize, store, serve.
    async fn obtain(&self) -> Result<Stored, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .names
            .iter()
            .map(|n| Identifier::Dns(n.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(self.ca())?;
        let mut challenged = Vec::new();
        let result = self.answer(&mut order, &mut challenged).await;
        for name in &challenged {
            match self.config.challenge {
                AcmeChallenge::TlsAlpn01 => self.certs.set_acme_challenge(name, None),
                AcmeChallenge::Http01 { .. } => self.http01.remove(name),
            }
        }
        result?;
        let key_pem = order.finalize().await.map_err(self.ca())?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(120)))
            .await
            .map_err(self.ca())?;
        let paths = self.paths.clone();
        let stored = blocking(move || {
            create_dir(&paths.dir)?;
            // Key first: a crash between the two leaves a pair that does
            // not match, which the next start refuses and orders anew.
            write_atomic(&paths.key(), key_pem.as_bytes(), 0o600)?;
            write_atomic(&paths.cert(), chain_pem.as_bytes(), 0o644)?;
            load_stored(&paths)?
                .ok_or_else(|| AcmeError::Issued(TlsError::NoCertificate(paths.cert())))
        })
        .await?;
        self.certs
            .install_acme(&self.config.names, stored.key.clone());
        Ok(stored)
    }

    /// Serves a challenge certificate per pending authorization, tells the
    /// CA to validate, and waits until the order is ready.
    async fn answer(
        &self,
        order: &mut instant_acme::Order,
        challenged: &mut Vec<String>,
    ) -> Result<(), AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(self.ca())?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Authorization {
                        name,
                        status: format!("{other:?}"),
                    })
                }
            }
            let (kind, label) = match self.config.challenge {
                AcmeChallenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
                AcmeChallenge::Http01 { .. } => (ChallengeType::Http01, "http-01"),
            };
            let mut challenge = authz
                .challenge(kind)
                .ok_or_else(|| AcmeError::Authorization {
                    name: name.clone(),
                    status: format!("the CA offers no {label} challenge"),
                })?;
            match self.config.challenge {
                AcmeChallenge::TlsAlpn01 => {
                    let digest = challenge.key_authorization().digest();
                    self.certs
                        .set_acme_challenge(&name, Some(challenge_cert(&name, digest.as_ref())?));
                    challenged.push(name);
                }
                AcmeChallenge::Http01 { .. } => {
                    let token = challenge.token.clone();
                    self.http01
                        .insert(&token, challenge.key_authorization().as_str().to_string());
                    // Removed by token after the order (see `obtain`).
                    challenged.push(token);
                }
            }
            challenge.set_ready().await.map_err(self.ca())?;
        }
        let status = order
            .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(120)))
            .await
            .map_err(self.ca())?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Authorization {
                name: self.config.names.join(","),
                status: format!("order is {status:?} (see the CA's validation error)"),
            });
        }
        Ok(())
    }
}

fn create_dir(dir: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AcmeError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Runs file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AcmeError> + Send + 'static,
) -> Result<T, AcmeError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(AcmeError::Io {
            path: PathBuf::from("data_dir/acme"),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> AccountCredentials {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().expect("key");
        let json = serde_json::json!({
            "id": "https://ca.example/acct/1",
            "key_pkcs8": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.serialize_der()),
            "directory": "https://ca.example/dir",
        });
        serde_json::from_value(json).expect("credentials")
    }

    fn sealer(secret: &str) -> Sealer {
        Sealer::new(&mft_config::secret::Secret::new(secret.to_string())).expect("sealer")
    }

    #[test]
    fn the_account_file_holds_no_private_key_in_the_clear_when_sealed() {
        let creds = credentials();
        let plain_json = serde_json::to_string(&creds).expect("json");
        let key_b64 = serde_json::from_str::<serde_json::Value>(&plain_json).expect("value")
            ["key_pkcs8"]
            .as_str()
            .expect("key")
            .to_string();
        let s = sealer("an encryption key of at least thirty-two bytes");
        let stored =
            StoredAccount::new("https://ca.example/dir".into(), creds, Some(&s)).expect("sealed");
        let file = serde_json::to_string(&stored).expect("file");
        assert!(
            !file.contains(&key_b64),
            "the key must not be in the file: {file}"
        );
        let back: StoredAccount = serde_json::from_str(&file).expect("parse");
        assert!(back.is_sealed());
        assert_eq!(back.directory(), "https://ca.example/dir");
        let opened = back.credentials(Some(&s)).expect("opens with the key");
        assert_eq!(serde_json::to_string(&opened).expect("json"), plain_json);
    }

    #[test]
    fn a_sealed_account_does_not_open_without_or_with_another_key() {
        let s = sealer("an encryption key of at least thirty-two bytes");
        let stored = StoredAccount::new("d".into(), credentials(), Some(&s)).expect("sealed");
        let file = serde_json::to_string(&stored).expect("file");
        let parse = || serde_json::from_str::<StoredAccount>(&file).expect("parse");
        assert!(matches!(
            parse().credentials(None),
            Err(AccountSealError::NoKey)
        ));
        let other = sealer("another encryption key, also thirty-two bytes");
        assert!(matches!(
            parse().credentials(Some(&other)),
            Err(AccountSealError::Seal(SealError::Open))
        ));
    }

    #[test]
    fn an_account_written_before_sealing_still_reads() {
        let creds = credentials();
        let old = serde_json::json!({ "directory": "d", "credentials": creds });
        let stored: StoredAccount = serde_json::from_value(old).expect("old format");
        assert!(!stored.is_sealed());
        let creds = stored.credentials(None).expect("plain credentials");
        assert!(!creds.private_key().secret_pkcs8_der().is_empty());
    }

    #[test]
    fn challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = challenge_cert("gw.example.test", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &digest);
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let key = challenge_cert("a.test", &[0; 32]).unwrap();
        let s = Stored {
            key,
            names: vec!["a.test".into(), "b.test".into()],
            not_before: 1000,
            not_after: 1900,
        };
        assert_eq!(s.renew_at(), 1600);
        assert!(s.covers(&["b.test".into()]));
        assert!(!s.covers(&["c.test".into()]));
    }
}
