//! `mft-gateway demo`: everything needed to try the gateway in one process —
//! a self-signed CA and certificate for localhost, the reference backend on a
//! loopback port, a real config file, and curl commands that work as pasted.

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

struct DemoCerts {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Creates a CA and a localhost certificate signed by it, once; later runs reuse them
/// so a browser or curl that trusted the CA keeps trusting it.
fn ensure_certs(dir: &Path) -> anyhow::Result<DemoCerts> {
    let certs = DemoCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("gateway.pem"),
        key: dir.join("gateway.key"),
    };
    if certs.ca.exists() && certs.cert.exists() && certs.key.exists() {
        return Ok(certs);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mft-gateway demo CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    std::fs::write(&certs.ca, ca_cert.pem())?;
    std::fs::write(&certs.cert, format!("{}{}", leaf.pem(), ca_cert.pem()))?;
    write_private(&certs.key, leaf_key.serialize_pem().as_bytes())?;
    Ok(certs)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// The demo's HMAC signing key, created once; the gateway signs with it and
/// the embedded backend refuses anything not signed with it.
fn ensure_signing_key(dir: &Path) -> anyhow::Result<mft_backend::Verifier> {
    use mft_filters::signing::keys::{generate_hmac_secret, hmac_secret_from_text};
    let path = dir.join("backend-signing.key");
    if !path.exists() {
        let secret = generate_hmac_secret()?;
        write_private(&path, format!("{secret}\n").as_bytes())?;
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = hmac_secret_from_text(text.trim_end())
        .with_context(|| format!("{}: not a usable HMAC secret", path.display()))?;
    let key = mft_backend::VerifyingKey::hmac(&bytes, None)?;
    Ok(mft_backend::Verifier::new(
        vec![key],
        mft_backend::VerifyPolicy::default(),
    )?)
}

/// Starts the reference backend on its own runtime thread; returns its address.
fn start_backend(data_dir: PathBuf, verifier: mft_backend::Verifier) -> anyhow::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("backend")
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("backend-main".into())
        .spawn(move || {
            let mut config = mft_backend::BackendConfig::new(data_dir);
            config.signatures = Some(verifier);
            if let Err(e) =
                runtime.block_on(mft_backend::serve(listener, config, std::future::pending()))
            {
                tracing::error!(error = %e, "embedded backend stopped");
            }
        })?;
    Ok(addr)
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A fresh key for the demo account; secrets are stored hashed, so an old one
/// cannot be shown again.
fn create_demo_key(config: &mft_config::Config) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let data_dir = config.server.data_dir.clone();
    runtime.block_on(async move {
        let store = crate::store::Store::open(None, &data_dir).await?;
        let scopes: Vec<String> = [
            "files:read",
            "files:write",
            "deliveries:read",
            "deliveries:write",
            "transfers:read",
            "transfers:write",
        ]
        .map(String::from)
        .to_vec();
        let (_, token) = store
            .create_key(
                "demo",
                &scopes,
                Some(std::time::Duration::from_secs(30 * 86_400)),
            )
            .await?;
        store.close().await;
        Ok(token)
    })
}

/// Runs the demo until Ctrl+C.
pub fn run(dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let certs = ensure_certs(&dir).context("cannot create the demo certificates")?;
    std::net::TcpListener::bind(listen)
        .map(drop)
        .with_context(|| format!("{listen} is in use; pick another address with --listen"))?;
    let verifier = ensure_signing_key(&dir).context("cannot create the demo signing key")?;
    let backend = start_backend(dir.join("backend-data"), verifier)?;
    let admin = free_loopback_port()?;

    let config_path = dir.join("gateway.toml");
    let toml = format!(
        r#"# Written by `mft-gateway demo`; rewritten on every start.
[server]
https_listen = "{listen}"
tls_cert = "gateway.pem"
tls_key = "gateway.key"
admin_listen = "{admin}"
data_dir = "data"

[organization]
name = "demo"
email_domains = ["demo.example"]

[backend]
url = "http://{backend}"
# RFC 9421 request signing; the embedded backend refuses unsigned requests.
signing_key = "file:backend-signing.key"

[admin]
token = "file:admin.token"

[logging]
format = "pretty"
level = "info"
"#
    );
    let admin_token_file = dir.join("admin.token");
    if !admin_token_file.exists() {
        write_private(
            &admin_token_file,
            uuid::Uuid::new_v4().simple().to_string().as_bytes(),
        )?;
    }
    std::fs::write(&config_path, toml)?;
    let loaded = crate::cli::load_config(&config_path)?;
    crate::telemetry::init(&loaded.config.logging);
    let demo_key = create_demo_key(&loaded.config).context("cannot create the demo API key")?;

    let host = if listen.ip().is_loopback() {
        "localhost".to_string()
    } else {
        listen.ip().to_string()
    };
    let base = format!("https://{host}:{}", listen.port());
    let ca = certs.ca.display();
    println!(
        r#"
mft-gateway demo
  gateway   {base}   (TLS certificate signed by the demo CA {ca})
  backend   http://{backend}   (reference MFT backend, data in {dir}/backend-data;
            accepts only requests signed with {dir}/backend-signing.key)
  config    {config}

  API key   {demo_key}   (service account "demo", all scopes, valid 30 days)

Try it (paste into another terminal):

  export MFT_KEY={demo_key}
  curl --cacert {ca} {base}/healthz
  curl --cacert {ca} -H "X-API-Key: $MFT_KEY" -H "X-Filename: hello.txt" --data-binary "hello from mft-gateway" {base}/api/v1/files
  curl --cacert {ca} -H "Authorization: Bearer $MFT_KEY" {base}/api/v1/files
  ID=$(curl -s --cacert {ca} -H "X-API-Key: $MFT_KEY" -H "X-Filename: os-release" --data-binary @/etc/os-release {base}/api/v1/files | sed -E 's/.*"id":"([^"]+)".*/\1/')
  curl --cacert {ca} -H "X-API-Key: $MFT_KEY" -o /tmp/os-release.copy {base}/api/v1/files/$ID/content && sha256sum /etc/os-release /tmp/os-release.copy
  curl --cacert {ca} -H "X-API-Key: $MFT_KEY" -H "Range: bytes=0-15" {base}/api/v1/files/$ID/content
  curl --cacert {ca} {base}/api/v1/files            # no key: 401 problem+json

Keys: `mft-gateway keys list --config {config}`, or the admin API:
  curl -H "Authorization: Bearer $(cat {dir}/admin.token)" http://{admin}/admin/v1/keys

Stop with Ctrl+C.
"#,
        dir = dir.display(),
        config = config_path.display(),
    );
    crate::server::run(loaded.config)
}
