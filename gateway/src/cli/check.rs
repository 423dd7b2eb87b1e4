//! `mft-gateway check`: validate the config, then test each connection the
//! gateway will need, one line per check, like a "test connection" button.

use crate::error_chain::error_chain;
use crate::proxy::upstream::Upstream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

struct Report {
    failed: bool,
}

impl Report {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        println!("ok    {what}: {detail}");
    }
    fn warn(&self, what: &str, detail: impl std::fmt::Display) {
        println!("warn  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.failed = true;
        println!("FAIL  {what}: {detail}");
    }
}

/// Runs every check (with `offline`, only those that dial nothing); exit
/// status 1 if any failed.
pub fn run(path: &Path, offline: bool) -> ExitCode {
    let mut r = Report { failed: false };
    let loaded = match mft_config::load(path) {
        Ok(l) => l,
        Err(e) => {
            for line in e.to_string().lines() {
                r.fail("config", line);
            }
            return ExitCode::FAILURE;
        }
    };
    r.ok("config", format!("{} is valid", path.display()));
    for w in &loaded.warnings {
        r.warn("config", w.display_in(path));
    }
    let c = &loaded.config;

    let mut pairs = vec![("default".to_string(), &c.server.tls_cert, &c.server.tls_key)];
    for (i, cert) in c.server.certificates.iter().enumerate() {
        pairs.push((
            format!("server.certificates[{i}] {}", cert.names.join(",")),
            &cert.cert,
            &cert.key,
        ));
    }
    for (name, cert, key) in pairs {
        match crate::tls::load_certified_key(cert, key) {
            Ok(k) => {
                r.ok(
                    "tls",
                    format!(
                        "{name}: {} ({} certificate(s) in chain) matches its key",
                        cert.display(),
                        k.cert.len()
                    ),
                );
                check_expiry(&mut r, &name, cert, &k);
            }
            Err(e) => r.fail("tls", format!("{name}: {e}")),
        }
    }

    if let Some(acme) = &c.server.acme {
        check_acme(&mut r, acme, &c.server.data_dir);
    }

    let probe = c.server.data_dir.join(".check-write");
    match std::fs::create_dir_all(&c.server.data_dir).and_then(|_| std::fs::write(&probe, b"ok")) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.ok(
                "data_dir",
                format!("{} is writable", c.server.data_dir.display()),
            );
        }
        Err(e) => r.fail("data_dir", format!("{}: {e}", c.server.data_dir.display())),
    }

    if offline {
        r.ok("backend", "not probed (--offline)");
    } else if c.backend.via == mft_config::connector::Via::Connector {
        // The gateway never dials the backend in DMZ mode: what can be
        // checked from here is whether connectors are enrolled and attached.
        match probe_connectors(c) {
            Ok(detail) => r.ok("backend", detail),
            Err(detail) => r.fail("backend", detail),
        }
    } else {
        match Upstream::new(&c.backend) {
            Err(e) => r.fail("backend", e),
            Ok(_) => match probe_backend(&c.backend) {
                Ok(detail) => r.ok("backend", detail),
                Err(detail) => r.fail("backend", detail),
            },
        }
    }

    match crate::proxy::sign::signing_key(&c.backend) {
        Ok(Some(key)) => r.ok(
            "signing",
            format!(
                "{} key id {} (signatures valid {} s)",
                key.algorithm(),
                key.id(),
                c.backend.signature_ttl.as_secs()
            ),
        ),
        Ok(None) => r.warn(
            "signing",
            "backend.signing_key is not set: requests go unsigned and the backend cannot tell gateway traffic from direct traffic",
        ),
        Err(e) => r.fail("signing", e),
    }

    if offline && c.auth.store.is_some() {
        r.ok("key store", "not probed (--offline)");
    } else {
        match probe_store(c) {
            Ok(detail) => r.ok("key store", detail),
            Err(detail) => r.fail("key store", detail),
        }
    }
    if offline {
        return check_local_only(c, r);
    }
    for (i, issuer) in c.auth.jwt.iter().enumerate() {
        let what = format!("jwt issuer {}", issuer.issuer);
        match probe_jwks(issuer) {
            Ok(n) => r.ok(
                &what,
                format!("auth.jwt[{i}] key set has {n} usable key(s)"),
            ),
            Err(e) => r.fail(&what, format!("auth.jwt[{i}]: {e}")),
        }
    }

    if let Some(url) = &c.rate_limit.redis {
        match runtime().and_then(|rt| {
            rt.block_on(crate::ratelimit::redis::probe(
                url.expose(),
                c.rate_limit.redis_timeout,
            ))
        }) {
            Ok(detail) => r.ok("redis", detail),
            Err(detail) => r.fail("redis", format!("rate_limit.redis: {detail}")),
        }
    }

    check_mailboxes(c, &mut r);

    match probe_partners(c) {
        Ok(lines) => {
            for (name, result) in lines {
                let what = format!("partner {name}");
                match result {
                    Ok(detail) => r.ok(&what, detail),
                    Err(detail) => r.fail(&what, detail),
                }
            }
        }
        Err(detail) => r.fail("partners", detail),
    }

    match transport_lines(c) {
        Ok(lines) => {
            for (name, result) in lines {
                let what = format!("transport {name}");
                match result {
                    Ok(detail) => r.ok(&what, detail),
                    Err(detail) => r.fail(&what, format!("not ready: {detail}")),
                }
            }
        }
        Err(detail) => r.fail("transports", detail),
    }

    check_local_only(c, r)
}

/// Each transport provider's ready state (docs/transports.md), without
/// sending anything; smtp with S/MIME names the certificate's state.
fn transport_lines(c: &mft_config::Config) -> Result<PartnerLines, String> {
    with_store(c, async |store| {
        let list = store.list_transports().await.map_err(|e| error_chain(&e))?;
        Ok(list
            .iter()
            .map(|t| {
                let state = crate::transports::ready(t, c).map(|()| {
                    let described = crate::transports::describe(t, &list, c);
                    match described["smime"].as_str() {
                        Some(smime) => format!("ready ({}; {smime})", t.kind),
                        None => format!("ready ({})", t.kind),
                    }
                });
                (t.name.clone(), state)
            })
            .collect())
    })
}

/// The checks that dial nothing, after the others; the exit status.
fn check_local_only(c: &mft_config::Config, mut r: Report) -> ExitCode {
    if c.sftp.is_some() {
        match crate::bridge::sftp::host_keys(c) {
            Ok(keys) => {
                for k in &keys {
                    r.ok(
                        "sftp host key",
                        crate::bridge::sftp::hostkey::fingerprint(k),
                    );
                }
            }
            Err(e) => r.fail("sftp host key", e),
        }
    }

    if r.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per `[[imap]]` / `[[pop3]]` mailbox: logs in and counts messages.
fn check_mailboxes(c: &mft_config::Config, r: &mut Report) {
    if c.imap.is_empty() && c.pop3.is_empty() {
        return;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            r.fail("mailboxes", e);
            return;
        }
    };
    for m in &c.imap {
        let what = format!("imap {}", m.conn.name);
        match rt.block_on(crate::bridge::imap::probe(m)) {
            Ok(n) => r.ok(
                &what,
                format!(
                    "{n} message(s) in {} on {}:{}",
                    m.folder, m.conn.host, m.conn.port
                ),
            ),
            Err(e) => r.fail(&what, e),
        }
    }
    for m in &c.pop3 {
        let what = format!("pop3 {}", m.conn.name);
        match rt.block_on(crate::bridge::pop3::probe(m)) {
            Ok(n) => r.ok(
                &what,
                format!("{n} message(s) on {}:{}", m.conn.host, m.conn.port),
            ),
            Err(e) => r.fail(&what, e),
        }
    }
}

/// Below this a certificate's coming expiry is a warning.
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

fn check_expiry(r: &mut Report, name: &str, file: &Path, key: &rustls::sign::CertifiedKey) {
    let Some(not_after) = crate::tls::certs::not_after(key) else {
        r.fail(
            "tls",
            format!(
                "{name}: {}: cannot read the certificate's validity",
                file.display()
            ),
        );
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = not_after - now;
    let when = u64::try_from(not_after)
        .ok()
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .map_or_else(
            || not_after.to_string(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        );
    if left <= 0 {
        r.fail(
            "tls",
            format!("{name}: {} expired at {when}", file.display()),
        );
    } else if (left as u64) < EXPIRY_WARNING.as_secs() {
        r.warn(
            "tls",
            format!(
                "{name}: {} expires in {} day(s), at {when}: renew it (the gateway picks up the new file without a restart)",
                file.display(),
                left / 86_400
            ),
        );
    }
}

fn probe_backend(backend: &mft_config::model::Backend) -> Result<String, String> {
    let url = backend.url.join("healthz").map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(backend.connect_timeout)
            .timeout(backend.connect_timeout + backend.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let response = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let ms = started.elapsed().as_millis();
        if response.status().is_success() {
            Ok(format!(
                "{url} answered HTTP {} in {ms} ms",
                response.status().as_u16()
            ))
        } else {
            Err(format!(
                "{url} answered HTTP {} in {ms} ms",
                response.status().as_u16()
            ))
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

/// Opens the configured key store on a runtime of its own, runs `work`
/// with it, and closes it whatever `work` returned.
fn with_store<T>(
    c: &mft_config::Config,
    work: impl AsyncFnOnce(&crate::store::Store) -> Result<T, String>,
) -> Result<T, String> {
    runtime()?.block_on(async {
        let url = c.auth.store.as_ref().map(|s| s.expose());
        let store = crate::store::Store::open(url, &c.server.data_dir)
            .await
            .map_err(|e| error_chain(&e))?;
        let result = work(&store).await;
        store.close().await;
        result
    })
}

fn probe_store(c: &mft_config::Config) -> Result<String, String> {
    with_store(c, async |store| {
        let keys = store.list_keys().await.map_err(|e| error_chain(&e))?;
        let now = std::time::SystemTime::now();
        let active = keys.iter().filter(|k| k.is_active(now)).count();
        Ok(format!(
            "{}: {} key(s), {active} active",
            store.target(),
            keys.len()
        ))
    })
}

/// DMZ mode: the connectors as the running gateway last reported them.
fn probe_connectors(c: &mft_config::Config) -> Result<String, String> {
    with_store(c, async |store| {
        let listed = store.list_connectors().await.map_err(|e| error_chain(&e))?;
        let now = std::time::SystemTime::now();
        if listed.is_empty() {
            return Err("via connector, but no connector is enrolled: run `mft-gateway connectors add NAME`".to_string());
        }
        let connected: Vec<&str> = listed
            .iter()
            .filter(|k| k.state(now) == "connected")
            .map(|k| k.name.as_str())
            .collect();
        if connected.is_empty() {
            return Err(format!(
                "via connector: none of {} enrolled connector(s) is connected (is the gateway running, and `mft-gateway connector --check` fine on the LAN side?)",
                listed.len()
            ));
        }
        Ok(format!(
            "via connector: {} of {} connected ({})",
            connected.len(),
            listed.len(),
            connected.join(", ")
        ))
    })
}

/// Tests every trust-network connection like `partners test`.
type PartnerLines = Vec<(String, Result<String, String>)>;

fn probe_partners(c: &mft_config::Config) -> Result<PartnerLines, String> {
    let partners = with_store(c, async |store| {
        store.list_partners().await.map_err(|e| error_chain(&e))
    })?;
    runtime()?.block_on(async move {
        let mut lines = Vec::new();
        for p in partners {
            let result = match crate::trust::connections::test(c, &p).await {
                // A pin nobody can satisfy refuses the partner's relays.
                Ok(_) if p.client_cert_sha256.is_some() && !c.trust.client_auth => Err(
                    "pinned to a client certificate, but [trust] client_auth is off: \
                     the partner's requests will be refused"
                        .to_string(),
                ),
                Ok(report) => Ok(format!(
                    "connected to {} ({}), clock skew {} s",
                    report.organization, p.url, report.skew_secs
                )),
                Err(e) => Err(format!("not connected: {e}")),
            };
            lines.push((p.name.clone(), result));
        }
        Ok(lines)
    })
}

fn probe_jwks(issuer: &mft_config::model::JwtIssuer) -> Result<usize, String> {
    let client = crate::auth::jwks::http_client(issuer)?;
    runtime()?
        .block_on(crate::auth::jwks::fetch(&issuer.jwks, &client))
        .map(|keys| keys.len())
}

/// `[server.acme]`: what is stored in `data_dir/acme/` and when it renews
/// (the certificate is ordered by the running gateway, not here).
fn check_acme(r: &mut Report, acme: &mft_config::model::Acme, data_dir: &Path) {
    use crate::tls::acme::{load_stored, AcmePaths};
    let paths = AcmePaths::new(data_dir);
    let account = if paths.account().exists() {
        "account registered"
    } else {
        "no account yet"
    };
    match load_stored(&paths) {
        Ok(None) => r.ok(
            "acme",
            format!(
                "no certificate obtained yet ({account}); the gateway orders one for {} from {} at start",
                acme.names.join(","),
                acme.directory
            ),
        ),
        Ok(Some(s)) if !s.covers(&acme.names) => r.warn(
            "acme",
            format!(
                "stored certificate names {} but server.acme.names is {}: the gateway orders a new one at start",
                s.names.join(","),
                acme.names.join(",")
            ),
        ),
        Ok(Some(s)) => {
            let fmt = |t: i64| {
                std::time::UNIX_EPOCH
                    .checked_add(std::time::Duration::from_secs(t.max(0) as u64))
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                    .unwrap_or_default()
            };
            r.ok(
                "acme",
                format!(
                    "certificate for {} ({account}), valid until {}, renewed from {}",
                    s.names.join(","),
                    fmt(s.not_after),
                    fmt(s.renew_at())
                ),
            );
            check_expiry(r, "acme", &paths.cert(), &s.key);
        }
        Err(e) => r.warn(
            "acme",
            format!("stored certificate cannot be used ({e}): the gateway orders a new one at start"),
        ),
    }
}
