//! The public listener's certificates: the default one (`tls_cert`/`tls_key`)
//! plus `[[server.certificates]]` chosen by SNI, behind one snapshot that a
//! handshake reads with one atomic load; a watcher thread swaps in new files
//! when they change on disk, and `mft-gateway reload` swaps in a new list.
//!
//! A file that changed but cannot be used (half written, key and certificate
//! not matching yet) keeps the certificate served now; the watcher logs why
//! and tries again at its next look.

use super::ocsp::{Due, OcspTarget};
use super::{load_certified_key, TlsError};
use arc_swap::ArcSwap;
use mft_config::model::Server;
use prometheus::{GaugeVec, Opts, Registry};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a handshake chooses from.
#[derive(Debug)]
struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

/// What `[server.acme]` serves: the issued certificate for its names and
/// the TLS-ALPN-01 challenge certificates of an order in progress.
#[derive(Debug, Default)]
struct AcmeSet {
    issued: HashMap<String, Arc<CertifiedKey>>,
    challenges: HashMap<String, Arc<CertifiedKey>>,
}

/// The rustls certificate resolver over the current [`CertSet`].
#[derive(Debug)]
pub struct CertResolver {
    set: ArcSwap<CertSet>,
    acme: ArcSwap<AcmeSet>,
}

/// Whether the client offered exactly ALPN `acme-tls/1` (RFC 8737 §3): the
/// CA's validator, which must get the challenge certificate.
fn is_acme_challenge(hello: &ClientHello<'_>) -> bool {
    let Some(mut alpn) = hello.alpn() else {
        return false;
    };
    alpn.next() == Some(super::acme::ACME_TLS_ALPN) && alpn.next().is_none()
}

impl CertSet {
    /// The certificate for SNI `name` (lower case, as rustls hands it over):
    /// an exact name, else a wildcard one label up, else the default.
    fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        if let Some(name) = name {
            if let Some(key) = self.exact.get(name) {
                return key;
            }
            if let Some(key) = name
                .split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
            {
                return key;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        if is_acme_challenge(&hello) {
            // No challenge for this name: fail the handshake rather than
            // show the validator some other certificate.
            return name.and_then(|n| self.acme.load().challenges.get(n).cloned());
        }
        if let Some(key) = name.and_then(|n| self.acme.load().issued.get(n).cloned()) {
            return Some(key);
        }
        Some(self.set.load().pick(name).clone())
    }
}

/// One certificate file pair as loaded.
struct Entry {
    /// The metric label: `default`, or the entry's first name.
    label: String,
    /// SNI names (empty for the default).
    names: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
    /// SHA-256 over both files' bytes as loaded.
    digest: [u8; 32],
    /// The digest of a change that could not be used (logged once).
    refused: Option<[u8; 32]>,
    loaded: Arc<CertifiedKey>,
    /// notAfter of the leaf, seconds since the epoch.
    not_after: i64,
    /// SHA-256 of the leaf: the key of its OCSP staple.
    fingerprint: [u8; 32],
    /// Its OCSP responder, if the certificate names one.
    ocsp: Option<Arc<OcspTarget>>,
}

/// Certificates loaded and checked, not yet served.
pub struct LoadedCerts {
    entries: Vec<Entry>,
}

/// Reads the two files and their combined digest.
fn read_pair(cert: &Path, key: &Path) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(std::fs::read(cert)?);
    h.update([0u8]);
    h.update(std::fs::read(key)?);
    Ok(h.finalize().into())
}

/// notAfter of the leaf certificate, seconds since the epoch.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

fn load_entry(
    label: String,
    names: Vec<String>,
    cert: &Path,
    key: &Path,
) -> Result<Entry, TlsError> {
    let digest = read_pair(cert, key).map_err(|source| TlsError::Read {
        what: "certificate or key",
        path: cert.to_path_buf(),
        source,
    })?;
    let loaded = load_certified_key(cert, key)?;
    let not_after =
        not_after(&loaded).ok_or_else(|| TlsError::NoCertificate(cert.to_path_buf()))?;
    let fingerprint = loaded
        .cert
        .first()
        .map(|leaf| Sha256::digest(leaf.as_ref()).into())
        .unwrap_or_default();
    let ocsp = match OcspTarget::of(&loaded.cert) {
        Ok(t) => t.map(Arc::new),
        Err(e) => {
            tracing::warn!(certificate = %label, error = %e, "certificate is served without OCSP stapling");
            None
        }
    };
    Ok(Entry {
        label,
        names,
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        digest,
        refused: None,
        loaded,
        not_after,
        fingerprint,
        ocsp,
    })
}

/// Loads every certificate `server` names; the first error stops.
pub fn load_all(server: &Server) -> Result<LoadedCerts, TlsError> {
    let mut entries = vec![load_entry(
        "default".to_string(),
        Vec::new(),
        &server.tls_cert,
        &server.tls_key,
    )?];
    for c in &server.certificates {
        let label = c.names.first().cloned().unwrap_or_default();
        entries.push(load_entry(label, c.names.clone(), &c.cert, &c.key)?);
    }
    Ok(LoadedCerts { entries })
}

/// What an entry serves: its certificate with its OCSP staple, if any.
fn served(e: &Entry, staples: &Staples) -> Arc<CertifiedKey> {
    match staples.get(&e.fingerprint) {
        Some(der) => Arc::new(CertifiedKey {
            ocsp: Some(der.clone()),
            ..(*e.loaded).clone()
        }),
        None => e.loaded.clone(),
    }
}

/// Checked OCSP responses by leaf SHA-256.
type Staples = HashMap<[u8; 32], Vec<u8>>;

fn build_set(entries: &[Entry], staples: &Staples) -> Option<CertSet> {
    let default = served(entries.first()?, staples);
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for e in entries.iter().skip(1) {
        let key = served(e, staples);
        for name in &e.names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_string(), key.clone()),
                None => exact.insert(name.clone(), key.clone()),
            };
        }
    }
    Some(CertSet {
        default,
        exact,
        wildcard,
    })
}

/// The served certificates, their files' watcher and the expiry gauge.
pub struct CertStore {
    resolver: Arc<CertResolver>,
    /// Locked by the watcher thread and a reload, never by a handshake.
    state: Mutex<WatchState>,
    expiry: GaugeVec,
    /// notAfter of the ACME certificate served, if any.
    acme_not_after: Mutex<Option<i64>>,
}

struct WatchState {
    entries: Vec<Entry>,
    interval: Duration,
    /// OCSP staples (ocsp.rs), applied whenever the set is built.
    staples: Staples,
}

impl CertStore {
    /// Serves `loaded`; registers `mft_tls_certificate_expiry_seconds`.
    pub fn new(
        loaded: LoadedCerts,
        interval: Duration,
        registry: &Registry,
    ) -> anyhow::Result<Arc<CertStore>> {
        let set = build_set(&loaded.entries, &Staples::new())
            .ok_or_else(|| anyhow::anyhow!("server.tls_cert: no certificate"))?;
        let expiry = GaugeVec::new(
            Opts::new(
                "mft_tls_certificate_expiry_seconds",
                "Seconds until the served certificate expires (negative: expired), by certificate",
            ),
            &["name"],
        )?;
        registry.register(Box::new(expiry.clone()))?;
        let store = Arc::new(CertStore {
            resolver: Arc::new(CertResolver {
                set: ArcSwap::from_pointee(set),
                acme: ArcSwap::from_pointee(AcmeSet::default()),
            }),
            state: Mutex::new(WatchState {
                entries: loaded.entries,
                interval,
                staples: Staples::new(),
            }),
            expiry,
            acme_not_after: Mutex::new(None),
        });
        store.update_expiry();
        Ok(store)
    }

    /// The resolver for rustls server configs.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Serves `loaded` from the next handshake on (a reload).
    pub fn replace(&self, loaded: LoadedCerts, interval: Duration) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(set) = build_set(&loaded.entries, &state.staples) else {
            return;
        };
        self.resolver.set.store(Arc::new(set));
        for old in &state.entries {
            if !loaded.entries.iter().any(|e| e.label == old.label) {
                let _ = self.expiry.remove_label_values(&[old.label.as_str()]);
            }
        }
        state.entries = loaded.entries;
        state.interval = interval;
        drop(state);
        self.update_expiry();
    }

    /// The served certificates that name an OCSP responder.
    pub fn ocsp_targets(&self) -> Vec<Due> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .entries
            .iter()
            .filter_map(|e| {
                e.ocsp.as_ref().map(|t| Due {
                    label: e.label.clone(),
                    fingerprint: e.fingerprint,
                    target: t.clone(),
                })
            })
            .collect()
    }

    /// Staples `response` (checked) to the certificate whose leaf has
    /// `fingerprint` from the next handshake on; `None` removes it.
    pub fn set_staple(&self, fingerprint: [u8; 32], response: Option<Vec<u8>>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match response {
            Some(der) => state.staples.insert(fingerprint, der),
            None => state.staples.remove(&fingerprint),
        };
        // Staples of certificates no longer served go with them.
        let WatchState {
            entries, staples, ..
        } = &mut *state;
        staples.retain(|fp, _| entries.iter().any(|e| e.fingerprint == *fp));
        if let Some(set) = build_set(&state.entries, &state.staples) {
            self.resolver.set.store(Arc::new(set));
        }
    }

    /// Serves `key` for `names` from the next handshake on (an ACME
    /// certificate, issued or renewed); connections keep the one they got.
    pub fn install_acme(&self, names: &[String], key: Arc<CertifiedKey>) {
        let current = self.resolver.acme.load();
        let issued = names.iter().map(|n| (n.clone(), key.clone())).collect();
        self.resolver.acme.store(Arc::new(AcmeSet {
            issued,
            challenges: current.challenges.clone(),
        }));
        if let Ok(mut n) = self.acme_not_after.lock() {
            *n = not_after(&key);
        }
        self.update_expiry();
    }

    /// Serves `key` to the CA's TLS-ALPN-01 validator for `name`; `None`
    /// removes the challenge.
    pub fn set_acme_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let current = self.resolver.acme.load();
        let mut challenges = current.challenges.clone();
        match key {
            Some(k) => challenges.insert(name.to_string(), k),
            None => challenges.remove(name),
        };
        self.resolver.acme.store(Arc::new(AcmeSet {
            issued: current.issued.clone(),
            challenges,
        }));
    }

    fn update_expiry(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Some(at) = self.acme_not_after.lock().ok().and_then(|n| *n) {
            self.expiry
                .with_label_values(&["acme"])
                .set((at - now) as f64);
        }
        let Ok(state) = self.state.lock() else {
            return;
        };
        for e in &state.entries {
            self.expiry
                .with_label_values(&[e.label.as_str()])
                .set((e.not_after - now) as f64);
        }
    }

    /// One look at every file pair: a changed pair that loads is served from
    /// the next handshake on; one that does not is logged and left alone.
    pub fn poll(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut changed = false;
        for e in state.entries.iter_mut() {
            let digest = match read_pair(&e.cert, &e.key) {
                Ok(d) => d,
                Err(err) => {
                    if e.refused != Some([0; 32]) {
                        tracing::warn!(certificate = %e.label, file = %e.cert.display(), error = %err,
                            "certificate files cannot be read; keeping the certificate served now");
                        e.refused = Some([0; 32]);
                    }
                    continue;
                }
            };
            if digest == e.digest || e.refused == Some(digest) {
                continue;
            }
            match load_entry(e.label.clone(), e.names.clone(), &e.cert, &e.key) {
                Ok(new) => {
                    tracing::info!(certificate = %e.label, file = %e.cert.display(),
                        not_after = new.not_after, "certificate file changed; serving the new certificate");
                    *e = new;
                    changed = true;
                }
                Err(err) => {
                    tracing::warn!(certificate = %e.label, error = %err,
                        "changed certificate cannot be used; keeping the certificate served now");
                    e.refused = Some(digest);
                }
            }
        }
        if changed {
            if let Some(set) = build_set(&state.entries, &state.staples) {
                self.resolver.set.store(Arc::new(set));
            }
        }
        drop(state);
        self.update_expiry();
    }

    /// Starts the watcher thread: [`CertStore::poll`] every
    /// `certificate_watch_interval`. Reading files blocks, so it has a
    /// thread of its own rather than a runtime's worker.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("cert-watch".into())
            .spawn(move || loop {
                let Some(s) = store.upgrade() else { return };
                let interval = match s.state.lock() {
                    Ok(st) => st.interval,
                    Err(_) => Duration::from_secs(5),
                };
                drop(s);
                std::thread::sleep(interval);
                match store.upgrade() {
                    Some(s) => s.poll(),
                    None => return,
                }
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a self-signed certificate for `names` as `dir/<file>.pem|key`.
    fn issue(dir: &Path, file: &str, names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        cert.der().to_vec()
    }

    fn server(dir: &Path) -> Server {
        let text = format!(
            r#"[server]
tls_cert = "{d}/default.pem"
tls_key = "{d}/default.key"

[[server.certificates]]
names = ["alpha.test", "Alpha2.test"]
cert = "{d}/alpha.pem"
key = "{d}/alpha.key"

[[server.certificates]]
names = ["*.beta.test"]
cert = "{d}/beta.pem"
key = "{d}/beta.key"

[backend]
url = "http://127.0.0.1:1"
"#,
            d = dir.display()
        );
        match mft_config::load_str(&text, &dir.join("gateway.toml")) {
            Ok(l) => l.config.server,
            Err(e) => panic!("{e}"),
        }
    }

    fn served(store: &CertStore, name: Option<&str>) -> Vec<u8> {
        store.resolver.set.load().pick(name).cert[0]
            .as_ref()
            .to_vec()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let default = issue(d, "default", &["localhost"]);
        let alpha = issue(d, "alpha", &["alpha.test"]);
        let beta = issue(d, "beta", &["*.beta.test"]);
        let store = CertStore::new(
            load_all(&server(d)).unwrap(),
            Duration::from_secs(5),
            &Registry::new(),
        )
        .unwrap();
        assert_eq!(served(&store, Some("alpha.test")), alpha);
        assert_eq!(served(&store, Some("alpha2.test")), alpha);
        assert_eq!(served(&store, Some("x.beta.test")), beta);
        assert_eq!(served(&store, Some("x.y.beta.test")), default);
        assert_eq!(served(&store, Some("beta.test")), default);
        assert_eq!(served(&store, Some("other.test")), default);
        assert_eq!(served(&store, None), default);
    }

    #[test]
    fn a_changed_file_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(d, "default", &["localhost"]);
        issue(d, "alpha", &["alpha.test"]);
        issue(d, "beta", &["*.beta.test"]);
        let registry = Registry::new();
        let store = CertStore::new(
            load_all(&server(d)).unwrap(),
            Duration::from_secs(5),
            &registry,
        )
        .unwrap();
        let renewed = issue(d, "alpha", &["alpha.test"]);
        store.poll();
        assert_eq!(served(&store, Some("alpha.test")), renewed);

        // Half written: the certificate is garbage; the renewed one stays.
        std::fs::write(d.join("alpha.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        store.poll();
        assert_eq!(served(&store, Some("alpha.test")), renewed);
        // A key that does not match its certificate is refused too.
        let other = rcgen::KeyPair::generate().unwrap();
        issue(d, "alpha", &["alpha.test"]);
        std::fs::write(d.join("alpha.key"), other.serialize_pem()).unwrap();
        store.poll();
        assert_eq!(served(&store, Some("alpha.test")), renewed);

        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("mft_tls_certificate_expiry_seconds{name=\"alpha.test\"}"),
            "{text}"
        );
        assert!(text.contains("mft_tls_certificate_expiry_seconds{name=\"default\"}"));
    }

    #[test]
    fn load_all_names_the_file_that_fails() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        issue(d, "default", &["localhost"]);
        issue(d, "alpha", &["alpha.test"]);
        let e = load_all(&server(d))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("beta"), "{e}");
    }
}
