//! Loading whole files: defaults, relative paths, and errors that name key and line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use mft_config::{load, load_str, ConfigError};
use std::path::Path;
use std::time::Duration;

const MINIMAL: &str = r#"
[server]
tls_cert = "certs/gateway.pem"
tls_key = "certs/gateway.key"

[backend]
url = "http://127.0.0.1:8080"
"#;

fn issues(text: &str) -> Vec<String> {
    match load_str(text, Path::new("/etc/mft/gateway.toml")) {
        Err(ConfigError::Invalid { issues, path }) => issues
            .iter()
            .map(|i| i.display_in(&path).to_string())
            .collect(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("config was accepted"),
    }
}

#[test]
fn minimal_file_gets_defaults_and_paths_relative_to_the_file() {
    let loaded = load_str(MINIMAL, Path::new("/etc/mft/gateway.toml")).unwrap();
    let c = loaded.config;
    assert_eq!(c.server.https_listen.to_string(), "0.0.0.0:8443");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.server.tls_cert, Path::new("/etc/mft/certs/gateway.pem"));
    assert_eq!(c.server.data_dir, Path::new("/etc/mft/data"));
    assert_eq!(c.backend.connect_timeout, Duration::from_secs(5));
    assert!(c.backend.signing_key.is_none());
    assert!(loaded.warnings.is_empty());
}

#[test]
fn relative_url_is_named_with_file_line_and_key() {
    let text = MINIMAL.replace("http://127.0.0.1:8080", "backend.local/api");
    assert_eq!(
        issues(&text),
        vec!["gateway.toml:7: backend.url: relative URL without a base"]
    );
}

#[test]
fn h2_window_takes_a_size_within_h2s_range() {
    let with = |v: &str| MINIMAL.replace("[server]\n", &format!("[server]\nh2_window = {v}\n"));
    let c = load_str(&with("\"4 MiB\""), Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.server.h2_window, 4 << 20);
    for bad in ["1024", "\"2 GiB\""] {
        let found = issues(&with(bad));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("server.h2_window: must be between 65536 and 1073741824"),
            "{found:?}"
        );
    }
}

#[test]
fn a_data_dir_too_long_for_the_upgrade_socket_is_warned_about() {
    let long = format!("/srv/{}", "d".repeat(90));
    let text = MINIMAL.replace("[server]\n", &format!("[server]\ndata_dir = \"{long}\"\n"));
    let loaded = load_str(&text, Path::new("/etc/mft/gateway.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = loaded.warnings[0]
        .display_in(Path::new("gateway.toml"))
        .to_string();
    assert!(
        w.contains("server.data_dir") && w.contains("upgrade"),
        "{w}"
    );
    // 80 bytes: room left.
    let text = MINIMAL.replace(
        "[server]\n",
        &format!("[server]\ndata_dir = \"/srv/{}\"\n", "d".repeat(75)),
    );
    let loaded = load_str(&text, Path::new("/etc/mft/gateway.toml")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn retention_of_finished_work_is_a_duration_or_never() {
    let load = |text: &str| {
        load_str(text, Path::new("/etc/mft/gateway.toml"))
            .unwrap()
            .config
            .retention
            .finished
    };
    assert_eq!(load(MINIMAL), Some(Duration::from_secs(30 * 86_400)));
    let with = |v: &str| format!("{MINIMAL}\n[retention]\nfinished = {v}\n");
    assert_eq!(load(&with("\"7d\"")), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(load(&with("\"never\"")), None);
    for bad in ["\"0s\"", "\"soon\""] {
        let found = issues(&with(bad));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("retention.finished"), "{found:?}");
    }
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let text = MINIMAL.replace("[backend]\n", "[backend]\nurll = \"x\"\n");
    let found = issues(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("gateway.toml:7: backend.urll: unknown field `urll`"),
        "{found:?}"
    );
}

#[test]
fn unknown_table_is_an_error() {
    let found = issues(&format!("{MINIMAL}\n[servr]\nx = 1\n"));
    assert!(found[0].contains("unknown field `servr`"), "{found:?}");
    assert!(found[0].starts_with("gateway.toml:9: servr:"), "{found:?}");
}

#[test]
fn wrong_type_names_key_and_line() {
    let text = MINIMAL.replace("[server]\n", "[server]\nthreads = \"four\"\n");
    let found = issues(&text);
    assert!(
        found[0].starts_with("gateway.toml:3: server.threads:"),
        "{found:?}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = r#"
[server]
https_listen = "nowhere"
tls_cert = "c.pem"
tls_key = "k.pem"
shutdown_timeout = "soon"

[backend]
url = "ftp://x"
"#;
    let found = issues(text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("gateway.toml:3: server.https_listen: expected IP:PORT"));
    assert!(found[1].starts_with("gateway.toml:6: server.shutdown_timeout:"));
    assert!(found[2].starts_with("gateway.toml:9: backend.url: scheme must be http or https"));
}

#[test]
fn missing_required_keys_point_at_their_table() {
    let found = issues("[server]\ntls_cert = \"c\"\n\n[backend]\n");
    assert_eq!(
        found,
        vec![
            "gateway.toml:1: server.tls_key: missing: path of the PEM private key",
            "gateway.toml:4: backend.url: missing: base URL of the MFT backend, e.g. \"http://127.0.0.1:8080\"",
        ]
    );
}

#[test]
fn clear_text_secret_is_a_warning_and_env_reference_resolves() {
    let text = format!("{MINIMAL}signing_key = \"abc\"\n");
    let loaded = load_str(&text, Path::new("gateway.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "backend.signing_key");
    assert_eq!(loaded.warnings[0].line, Some(8));

    std::env::set_var("MFT_CONFIG_TEST_SIGNING_KEY", "from-env");
    let text = format!("{MINIMAL}signing_key = \"env:MFT_CONFIG_TEST_SIGNING_KEY\"\n");
    let loaded = load_str(&text, Path::new("gateway.toml")).unwrap();
    assert!(loaded.warnings.is_empty());
    assert_eq!(
        loaded.config.backend.signing_key.unwrap().expose(),
        "from-env"
    );
}

#[test]
fn missing_secret_reference_is_an_error_without_the_value() {
    let text = format!("{MINIMAL}signing_key = \"env:MFT_CONFIG_TEST_UNSET\"\n");
    let found = issues(&text);
    assert_eq!(
        found,
        vec!["gateway.toml:8: backend.signing_key: environment variable MFT_CONFIG_TEST_UNSET is not set (or not UTF-8)"]
    );
}

#[test]
fn signing_defaults_to_hmac_with_a_30_second_ttl() {
    use mft_config::model::SigningAlgorithm;
    let c = load_str(MINIMAL, Path::new("gateway.toml")).unwrap().config;
    assert_eq!(c.backend.signing_algorithm, SigningAlgorithm::HmacSha256);
    assert_eq!(c.backend.signature_ttl, Duration::from_secs(30));
    assert!(c.backend.signing_key_id.is_none());

    std::env::set_var("MFT_CONFIG_TEST_ED_KEY", "pem");
    let text = format!(
        "{MINIMAL}signing_key = \"env:MFT_CONFIG_TEST_ED_KEY\"\nsigning_algorithm = \"ed25519\"\nsigning_key_id = \"gw-2026\"\nsignature_ttl = \"1m\"\n"
    );
    let loaded = load_str(&text, Path::new("gateway.toml")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let b = loaded.config.backend;
    assert_eq!(b.signing_algorithm, SigningAlgorithm::Ed25519);
    assert_eq!(b.signing_key_id.as_deref(), Some("gw-2026"));
    assert_eq!(b.signature_ttl, Duration::from_secs(60));
}

#[test]
fn bad_signing_settings_name_their_keys() {
    let text = format!(
        "{MINIMAL}signing_algorithm = \"rsa\"\nsigning_key_id = \"a\\\"b\"\nsignature_ttl = \"10m\"\n"
    );
    let found = issues(&text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with(
            "gateway.toml:8: backend.signing_algorithm: expected \"hmac-sha256\" or \"ed25519\""
        ),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("gateway.toml:9: backend.signing_key_id:"),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("gateway.toml:10: backend.signature_ttl: at most 5m"),
        "{found:?}"
    );
}

#[test]
fn rate_limit_syntax_is_checked() {
    let found = issues(&format!("{MINIMAL}\n[rate_limit]\nper_key = \"fast\"\n"));
    assert!(
        found[0].starts_with("gateway.toml:10: rate_limit.per_key: expected"),
        "{found:?}"
    );
}

#[test]
fn unreadable_file_is_a_read_error() {
    let err = load(Path::new("/nonexistent/gateway.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/gateway.toml"));
}

#[test]
fn identity_sections_have_defaults() {
    let c = load_str(MINIMAL, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert!(c.admin.token.is_none());
    assert!(c.auth.store.is_none());
    assert!(c.auth.jwt.is_empty());
    assert!(c.defender.enabled);
    assert_eq!(c.defender.threshold, 10);
    assert_eq!(c.defender.ban_time, Duration::from_secs(900));
    assert_eq!(c.audit.file, Path::new("/etc/mft/data/audit.jsonl"));
}

#[test]
fn jwt_issuer_and_scope_rules_are_validated() {
    let text = format!(
        r#"{MINIMAL}
[[auth.jwt]]
issuer = "https://login.example/"
audience = ["mft"]
jwks = "http://login.example/jwks.json"
algorithms = ["RS256", "none"]

[[auth.scopes]]
path_prefix = "api/v1/reports"
scope = "reports:read"
"#
    );
    let found = issues(&text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("gateway.toml:12: auth.jwt[0].jwks: must be an https:// URL"),
        "{found:?}"
    );
    assert!(
        found[1]
            .starts_with("gateway.toml:13: auth.jwt[0].algorithms[1]: unknown algorithm \"none\""),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("gateway.toml:16: auth.scopes[0].path_prefix: must start with /"),
        "{found:?}"
    );
}

#[test]
fn jwt_issuer_accepts_file_jwks_and_defaults() {
    let text = format!(
        "{MINIMAL}\n[[auth.jwt]]\nissuer = \"i\"\naudience = [\"a\"]\njwks = \"file:jwks.json\"\n"
    );
    let c = load_str(&text, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    let j = &c.auth.jwt[0];
    assert_eq!(
        j.jwks,
        mft_config::model::JwksSource::File("/etc/mft/jwks.json".into())
    );
    assert_eq!(j.algorithms, vec!["RS256"]);
    assert_eq!(j.scopes_claim, "scope");
}

#[test]
fn limits_have_defaults_and_route_rules_come_before_built_ins() {
    let c = load_str(MINIMAL, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.limits.max_body_bytes, None);
    assert_eq!(c.limits.request_header_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_connections_per_ip, Some(512));
    assert_eq!(c.limits.max_connections, Some(16_384));
    assert_eq!(c.server.h2_window, 16 << 20);
    assert!(c
        .limits
        .routes
        .iter()
        .any(|r| r.path_prefix == "/api/v1/deliveries" && r.max_body_bytes == Some(1 << 20)));

    let text = format!(
        "{MINIMAL}\n[limits]\nmax_body_bytes = \"5 GiB\"\nmax_connections_per_ip = 0\nmax_connections = 0\n\
         request_header_timeout = \"3s\"\n\n[[limits.routes]]\npath_prefix = \"/api/v1/deliveries\"\n\
         methods = [\"post\"]\nmax_body_bytes = 4096\n"
    );
    let c = load_str(&text, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.limits.max_body_bytes, Some(5 << 30));
    assert_eq!(c.limits.max_connections_per_ip, None);
    assert_eq!(c.limits.max_connections, None);
    assert_eq!(c.limits.request_header_timeout, Duration::from_secs(3));
    let first = &c.limits.routes[0];
    assert_eq!(first.path_prefix, "/api/v1/deliveries");
    assert_eq!(first.methods.as_deref(), Some(&["POST".to_string()][..]));
    assert_eq!(first.max_body_bytes, Some(4096));
}

#[test]
fn limits_errors_name_key_and_line() {
    let text = format!(
        "{MINIMAL}\n[limits]\nmax_body_bytes = \"lots\"\n\n[[limits.routes]]\npath_prefix = \"api\"\nmax_body_bytes = 1\n"
    );
    let found = issues(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("gateway.toml:10: limits.max_body_bytes: expected a size"),
        "{found:?}"
    );
    assert!(
        found[1].contains("limits.routes[0].path_prefix: must start with '/'"),
        "{found:?}"
    );
}

#[test]
fn rate_limit_redis_settings_have_defaults_and_are_checked() {
    let text = format!("{MINIMAL}\n[rate_limit]\nper_key = \"10/s burst 20\"\n");
    let r = load_str(&text, Path::new("gateway.toml"))
        .unwrap()
        .config
        .rate_limit;
    assert!(r.redis.is_none());
    assert_eq!(r.on_redis_error, mft_config::model::OnRedisError::Local);
    assert_eq!(r.redis_timeout, Duration::from_millis(50));
    assert_eq!(r.max_tracked_keys, 100_000);

    let text = format!(
        "{MINIMAL}\n[rate_limit]\nredis = \"redis://127.0.0.1:6379/0\"\non_redis_error = \"deny\"\nredis_timeout = \"20ms\"\nmax_tracked_keys = 5000\n"
    );
    let loaded = load_str(&text, Path::new("gateway.toml")).unwrap();
    let r = loaded.config.rate_limit;
    assert_eq!(r.redis.unwrap().expose(), "redis://127.0.0.1:6379/0");
    assert_eq!(r.on_redis_error, mft_config::model::OnRedisError::Deny);
    assert_eq!(r.redis_timeout, Duration::from_millis(20));
    assert_eq!(r.max_tracked_keys, 5000);
    assert!(loaded.warnings.is_empty());

    let text = format!(
        "{MINIMAL}\n[rate_limit]\nredis = \"http://:hunter2@cache:6379\"\non_redis_error = \"open\"\nmax_tracked_keys = 3\n"
    );
    let found = issues(&text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("gateway.toml:10: rate_limit.redis: expected a redis://"),
        "{found:?}"
    );
    assert!(!found[0].contains("hunter2"), "{found:?}");
    assert!(
        found[1].starts_with(
            "gateway.toml:11: rate_limit.on_redis_error: expected \"local\" or \"deny\""
        ),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("gateway.toml:12: rate_limit.max_tracked_keys: must be at least 100"),
        "{found:?}"
    );
}

#[test]
fn redis_password_in_clear_is_a_warning() {
    let text = format!("{MINIMAL}\n[rate_limit]\nredis = \"redis://:hunter2@127.0.0.1:6379\"\n");
    let loaded = load_str(&text, Path::new("gateway.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "rate_limit.redis");
    assert!(!loaded.warnings[0].message.contains("hunter2"));
}

#[test]
fn dmz_mode_needs_the_connector_listener_and_the_hyper_engine() {
    let text = MINIMAL.replace("[backend]\n", "[backend]\nvia = \"connector\"\n");
    assert_eq!(
        issues(&text),
        vec![
            "gateway.toml:7: backend.via: \"connector\" needs [connector] listen = \"IP:PORT\" where connectors dial in"
        ]
    );
    let both = format!("{text}\n[connector]\nlisten = \"0.0.0.0:8444\"\n");
    let loaded = load_str(&both, Path::new("/etc/mft/gateway.toml")).unwrap();
    let c = loaded.config;
    assert_eq!(c.backend.via, mft_config::connector::Via::Connector);
    let listen = c.connector.expect("[connector] is kept");
    assert_eq!(listen.listen.to_string(), "0.0.0.0:8444");
    assert_eq!(listen.ping_interval, Duration::from_secs(4));
    assert_eq!(listen.link, mft_config::connector::LinkMode::Http1);
    let h2 = both.replace("[connector]\n", "[connector]\nlink = \"h2\"\n");
    let c = load_str(&h2, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(
        c.connector.map(|l| l.link),
        Some(mft_config::connector::LinkMode::H2)
    );
    let h3 = both.replace("[connector]\n", "[connector]\nlink = \"h3\"\n");
    assert!(
        issues(&h3)
            .iter()
            .any(|i| i.contains("connector.link: expected \"h2\" or \"http1\"")),
        "{:?}",
        issues(&h3)
    );
    let pingora = both.replace("[server]\n", "[server]\nhttp_engine = \"pingora\"\n");
    let found = issues(&pingora);
    assert!(
        found
            .iter()
            .any(|i| i.contains("backend.via") && i.contains("hyper")),
        "{found:?}"
    );
    let bad = MINIMAL.replace("[backend]\n", "[backend]\nvia = \"tunnel\"\n");
    assert_eq!(
        issues(&bad),
        vec!["gateway.toml:7: backend.via: expected \"direct\" or \"connector\", got \"tunnel\""]
    );
    let no_listen = format!("{MINIMAL}\n[connector]\nping_interval = \"2s\"\n");
    let found = issues(&no_listen);
    assert!(
        found
            .iter()
            .any(|i| i.contains("connector.listen: missing")),
        "{found:?}"
    );
}

#[test]
fn runtime_defaults_to_per_core_and_per_core_needs_hyper() {
    let loaded = load_str(MINIMAL, Path::new("/etc/mft/gateway.toml")).unwrap();
    assert_eq!(
        loaded.config.server.runtime,
        mft_config::model::Runtime::PerCore
    );
    let stealing = MINIMAL.replace("[server]\n", "[server]\nruntime = \"work-stealing\"\n");
    let loaded = load_str(&stealing, Path::new("/etc/mft/gateway.toml")).unwrap();
    assert_eq!(
        loaded.config.server.runtime,
        mft_config::model::Runtime::WorkStealing
    );
    // The pingora engine has one runtime: without a choice it gets it.
    let engine = MINIMAL.replace("[server]\n", "[server]\nhttp_engine = \"pingora\"\n");
    let loaded = load_str(&engine, Path::new("/etc/mft/gateway.toml")).unwrap();
    assert_eq!(
        loaded.config.server.runtime,
        mft_config::model::Runtime::WorkStealing
    );
    let per_core = MINIMAL.replace("[server]\n", "[server]\nruntime = \"per-core\"\n");
    let bad = MINIMAL.replace("[server]\n", "[server]\nruntime = \"green-threads\"\n");
    let found = issues(&bad);
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.runtime") && i.contains("per-core")),
        "{found:?}"
    );
    let pingora = per_core.replace("[server]\n", "[server]\nhttp_engine = \"pingora\"\n");
    let found = issues(&pingora);
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.runtime") && i.contains("hyper")),
        "{found:?}"
    );
}

#[test]
fn sni_certificates_are_read_and_checked() {
    let text = format!(
        "{MINIMAL}\n[[server.certificates]]\nnames = [\"MFT.Partner.example.\", \"*.files.example\"]\ncert = \"certs/p.pem\"\nkey = \"/abs/p.key\"\n"
    );
    let c = load_str(&text, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.server.certificates.len(), 1);
    let e = &c.server.certificates[0];
    assert_eq!(e.names, vec!["mft.partner.example", "*.files.example"]);
    assert_eq!(e.cert, Path::new("/etc/mft/certs/p.pem"));
    assert_eq!(e.key, Path::new("/abs/p.key"));
    assert_eq!(c.server.certificate_watch_interval, Duration::from_secs(5));
    let fast = MINIMAL.replace(
        "[server]\n",
        "[server]\ncertificate_watch_interval = \"10ms\"\n",
    );
    assert_eq!(
        issues(&fast),
        vec!["gateway.toml:3: server.certificate_watch_interval: must be at least 1s"]
    );

    let bad = format!(
        "{MINIMAL}\n[[server.certificates]]\nnames = [\"a.example\", \"not a name\", \"10.0.0.1\"]\ncert = \"a.pem\"\n\n[[server.certificates]]\nnames = [\"A.example\"]\ncert = \"b.pem\"\nkey = \"b.key\"\n"
    );
    let found = issues(&bad);
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.certificates[0].names[1]: not a host name")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.certificates[0].names[2]")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.certificates[0].key: missing")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|i| i.contains("server.certificates[1].names[0]: \"a.example\" is already served")),
        "{found:?}"
    );
}

#[test]
fn acme_hsts_and_cipher_suites_are_validated_with_lines() {
    let good = MINIMAL.replace(
        "[backend]",
        r#"[server.acme]
directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
contact = ["mailto:ops@example.com"]
names = ["GW.Example.com."]
ca_file = "pebble.pem"

[server.hsts]
max_age = "1d"

[backend]"#,
    )
    .replace(
        "[server]\n",
        "[server]\ntls_cipher_suites = [\"tls13_aes_256_gcm_sha384\", \"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\"]\n",
    );
    let c = load_str(&good, Path::new("/etc/mft/gateway.toml"))
        .unwrap()
        .config;
    let acme = c.server.acme.unwrap();
    assert_eq!(acme.names, ["gw.example.com"]);
    assert_eq!(
        acme.ca_file.as_deref(),
        Some(Path::new("/etc/mft/pebble.pem"))
    );
    assert_eq!(c.server.hsts.unwrap().header_value(), "max-age=86400");
    assert_eq!(
        c.server.tls_cipher_suites,
        [
            "TLS13_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        ]
    );

    let bad = MINIMAL
        .replace(
            "[backend]",
            r#"[server.acme]
directory = "http://acme.example/dir"
contact = ["ops@example.com"]
names = ["*.example.com"]

[backend]"#,
        )
        .replace(
            "[server]\n",
            "[server]\ntls_cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\"]\n",
        );
    let got = issues(&bad).join("\n");
    for want in [
        "gateway.toml:3: server.tls_cipher_suites[0]: unknown cipher suite",
        "server.tls_cipher_suites: needs at least one TLS 1.3 suite",
        "server.acme.directory: must be an https:// URL",
        "server.acme.contact[0]: expected \"mailto:",
        "server.acme.names[0]: wildcards need DNS-01",
    ] {
        assert!(got.contains(want), "{want}\n{got}");
    }
}

#[test]
fn acme_challenge_defaults_to_tls_alpn_and_http01_needs_its_listener() {
    use mft_config::model::AcmeChallenge;
    let acme = |extra: &str| {
        MINIMAL.replace(
            "[backend]",
            &format!(
                "[server.acme]\ndirectory = \"https://ca.example/dir\"\nnames = [\"gw.example.com\"]\n{extra}\n[backend]"
            ),
        )
    };
    let c = load_str(&acme(""), Path::new("gateway.toml"))
        .unwrap()
        .config;
    assert_eq!(c.server.acme.unwrap().challenge, AcmeChallenge::TlsAlpn01);
    let c = load_str(
        &acme("challenge = \"http-01\"\nhttp_listen = \"0.0.0.0:80\"\n"),
        Path::new("gateway.toml"),
    )
    .unwrap()
    .config;
    assert_eq!(
        c.server.acme.unwrap().challenge,
        AcmeChallenge::Http01 {
            listen: "0.0.0.0:80".parse().unwrap()
        }
    );
    for (extra, want) in [
        (
            "challenge = \"http-01\"\n",
            "server.acme.http_listen: missing",
        ),
        (
            "challenge = \"dns-01\"\n",
            "server.acme.challenge: expected",
        ),
        (
            "http_listen = \"0.0.0.0:80\"\n",
            "server.acme.http_listen: only used with",
        ),
        (
            "challenge = \"http-01\"\nhttp_listen = \"port 80\"\n",
            "server.acme.http_listen: expected IP:PORT",
        ),
    ] {
        let got = issues(&acme(extra)).join("\n");
        assert!(got.contains(want), "{want}\n{got}");
    }
}

#[test]
fn notify_rules_are_checked_and_default_to_one_message_an_hour() {
    let text = format!(
        "{MINIMAL}\n[[notify]]\nevent = \"credit_low\"\nprovider = \"mail\"\nto = [\"ops@ourcorp.example\"]\n\n\
         [[notify]]\nevent = \"relay_failed\"\nprovider = \"sms\"\nto = [\"+41791234567\"]\nperiod = \"10m\"\n"
    );
    let c = load_str(&text, Path::new("gateway.toml")).unwrap().config;
    assert_eq!(c.notify.len(), 2);
    assert_eq!(c.notify[0].period, Duration::from_secs(3600));
    assert_eq!(c.notify[1].period, Duration::from_secs(600));
    assert_eq!(c.notify[1].event, "relay_failed");
    let bad = format!(
        "{MINIMAL}\n[[notify]]\nevent = \"disk_full\"\nprovider = \"mail\"\nto = [\"a@b.example\"]\n\n\
         [[notify]]\nevent = \"credit_low\"\nto = [\"a@b.example\"]\n\n\
         [[notify]]\nevent = \"credit_low\"\nprovider = \"mail\"\n"
    );
    let found = issues(&bad).join("\n");
    assert!(found.contains("notify[0].event"), "{found}");
    assert!(found.contains("notify[1].provider"), "{found}");
    assert!(found.contains("notify[2].to"), "{found}");
}

#[test]
fn watched_notify_events_carry_their_thresholds() {
    use mft_config::notify::Trigger;
    let rule = |event: &str, extra: &str| {
        format!("[[notify]]\nevent = \"{event}\"\nprovider = \"mail\"\nto = [\"ops@ourcorp.example\"]\n{extra}\n")
    };
    let text = format!(
        "{MINIMAL}\n{}{}{}{}{}",
        rule("mailbox_stale", ""),
        rule("mailbox_stale", "stale_after = \"2m\""),
        rule("certificate_expiring", "expires_within = \"30d\""),
        rule("ban_storm", "bans = 3\nwindow = \"1m\""),
        rule("spool_growing", "spool_depth = 7\ngrowing_for = \"90s\""),
    );
    let c = load_str(&text, Path::new("gateway.toml")).unwrap().config;
    let triggers: Vec<Trigger> = c.notify.iter().map(|n| n.trigger).collect();
    assert_eq!(
        triggers,
        [
            Trigger::MailboxStale {
                after: Duration::from_secs(30 * 60)
            },
            Trigger::MailboxStale {
                after: Duration::from_secs(120)
            },
            Trigger::CertificateExpiring {
                within: Duration::from_secs(30 * 86_400)
            },
            Trigger::BanStorm {
                bans: 3,
                window: Duration::from_secs(60)
            },
            Trigger::SpoolGrowing {
                depth: 7,
                growing_for: Duration::from_secs(90)
            },
        ]
    );
    // A threshold of another event, or a zero, is an error naming the key.
    let bad = format!(
        "{MINIMAL}\n{}{}{}",
        rule("ban_storm", "stale_after = \"5m\""),
        rule("credit_low", "spool_depth = 3"),
        rule("ban_storm", "bans = 0"),
    );
    let found = issues(&bad).join("\n");
    assert!(
        found.contains("notify[0].stale_after") && found.contains("only for event mailbox_stale"),
        "{found}"
    );
    assert!(found.contains("notify[1].spool_depth"), "{found}");
    assert!(found.contains("notify[2].bans"), "{found}");
}
