//! DMZ mode: the gateway's `[connector]` table (where connectors dial in)
//! and the LAN side's own file, read by `mft-gateway connector --config`.
//!
//! Connectors themselves (their names and hashed keys) live in the key
//! store (`mft-gateway connectors ...`), not here: keys are shown once and
//! connectors come and go at runtime.

use crate::convert::Ctx;
use crate::defaults::connector as D;
use crate::defaults::lan as L;
use crate::error::{ConfigError, Issue};
use crate::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// `[connector]` of `gateway.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorListenFile {
    /// `IP:PORT` of the TLS listener that only connectors dial.
    pub listen: Option<String>,
    /// Longest time a connector has to finish TLS and authenticate.
    pub handshake_timeout: Option<String>,
    /// Interval of the HTTP/2 PINGs (or HTTP/1.1 heartbeats) that detect a
    /// dead connection.
    pub ping_interval: Option<String>,
    /// `"h2"` or `"http1"`: the protocol on each connector connection.
    pub link: Option<String>,
}

/// The protocol the gateway speaks as the client on a connector connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// HTTP/2: many requests at once per connection, PINGs find a dead
    /// one. What a connector that names no protocol at attach speaks.
    #[default]
    H2,
    /// HTTP/1.1: one exchange at a time per connection; the connector keeps
    /// `connections` idle ones ready and opens more under load. The
    /// default of `[connector] link`.
    Http1,
}

impl LinkMode {
    /// The name used in the config file and on the wire (`x-mft-link`).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::H2 => "h2",
            LinkMode::Http1 => "http1",
        }
    }

    /// The mode named `text`, if any.
    pub fn parse(text: &str) -> Option<LinkMode> {
        match text.trim() {
            "h2" => Some(LinkMode::H2),
            "http1" => Some(LinkMode::Http1),
            _ => None,
        }
    }
}

/// `[connector]` of `gateway.toml`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorListen {
    /// Where connectors dial in (TLS with the gateway's certificate).
    pub listen: SocketAddr,
    /// TLS plus authentication must finish within this.
    pub handshake_timeout: Duration,
    /// A connection that does not answer a PING within this is dead; with
    /// the PING sent after this much silence, death is seen within twice it.
    pub ping_interval: Duration,
    /// The protocol on each connection.
    pub link: LinkMode,
}

pub(crate) fn convert_listen(
    file: Option<ConnectorListenFile>,
    ctx: &mut Ctx<'_>,
) -> Option<ConnectorListen> {
    let f = file?;
    let Some(text) = f.listen else {
        ctx.error(
            "connector.listen",
            "missing: IP:PORT where connectors dial in, e.g. \"0.0.0.0:8444\"",
        );
        return None;
    };
    let listen = ctx.addr("connector.listen", Some(text), "")?;
    let handshake_timeout = ctx.duration(
        "connector.handshake_timeout",
        f.handshake_timeout,
        D::HANDSHAKE_TIMEOUT,
    );
    let ping_interval = ctx.duration("connector.ping_interval", f.ping_interval, D::PING_INTERVAL);
    if ping_interval > Duration::from_secs(60) {
        ctx.error(
            "connector.ping_interval",
            "at most 60s: a dead connector would hold requests that long",
        );
    }
    let link = match f.link.as_deref() {
        None => LinkMode::parse(D::LINK).unwrap_or_default(),
        Some(text) => LinkMode::parse(text).unwrap_or_else(|| {
            ctx.error(
                "connector.link",
                format!("expected \"h2\" or \"http1\", got {text:?}"),
            );
            LinkMode::default()
        }),
    };
    Some(ConnectorListen {
        listen,
        handshake_timeout,
        ping_interval,
        link,
    })
}

/// How the gateway reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// It dials `[backend] url` itself.
    #[default]
    Direct,
    /// Only over connections connectors opened to `[connector] listen`; the
    /// gateway never dials the backend.
    Connector,
}

pub(crate) fn convert_via(text: Option<&str>, ctx: &mut Ctx<'_>) -> Via {
    match text {
        None | Some(crate::defaults::backend::VIA) => Via::Direct,
        Some("connector") => Via::Connector,
        Some(other) => {
            ctx.error(
                "backend.via",
                format!("expected \"direct\" or \"connector\", got {other:?}"),
            );
            Via::Direct
        }
    }
}

/// The LAN side's file (`connector.toml`) as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanFile {
    /// `[connector]`
    pub connector: Option<LanConnectorFile>,
    /// `[logging]`
    #[serde(default)]
    pub logging: crate::file::LoggingFile,
}

/// `[connector]` of `connector.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanConnectorFile {
    /// `https://HOST:PORT` of the gateway's `[connector] listen`.
    pub gateway: Option<String>,
    /// CA (PEM) that signed the gateway's certificate.
    pub ca_file: Option<String>,
    /// SHA-256 of the gateway's certificate (hex, `:` allowed) instead of a CA.
    pub gateway_pin_sha256: Option<String>,
    /// Secret reference of the connector key (`mgc_...`).
    pub key: Option<String>,
    /// Client certificate (PEM chain) presented to the gateway, for a
    /// connector pinned there (`connectors set-pin`).
    pub client_cert: Option<String>,
    /// Its private key (PEM).
    pub client_key: Option<String>,
    /// The backend this connector forwards to, and only to.
    pub backend: Option<String>,
    /// Connections kept open to the gateway (with an HTTP/1.1 link: idle
    /// ones kept ready).
    pub connections: Option<u32>,
    /// With an HTTP/1.1 link: most connections open at once, busy and idle.
    pub max_connections: Option<u32>,
    /// Connect (TCP + TLS) timeout toward the gateway and the backend.
    pub connect_timeout: Option<String>,
    /// First reconnect delay; doubled per failure, with full jitter.
    pub reconnect_base: Option<String>,
    /// Longest reconnect delay.
    pub reconnect_max: Option<String>,
}

/// How the connector trusts the gateway's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayTrust {
    /// A CA file (PEM); the certificate must name the gateway URL's host.
    CaFile(PathBuf),
    /// The SHA-256 of the gateway's certificate, lower-case hex.
    Pin(String),
}

/// `client_cert` and `client_key` of `connector.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `connector.toml`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Lan {
    /// The gateway's connector listener.
    pub gateway: Url,
    /// How its certificate is trusted.
    pub trust: GatewayTrust,
    /// The connector key.
    pub key: Secret,
    /// Client certificate and key files presented to the gateway.
    pub client_cert: Option<ClientCert>,
    /// The only place requests are forwarded to.
    pub backend: Url,
    /// Connections kept open (1 to 64); with an HTTP/1.1 link, idle ones
    /// kept ready for the gateway.
    pub connections: u32,
    /// With an HTTP/1.1 link: most connections at once (`connections` to 1024).
    pub max_connections: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// `[logging]`
    pub logging: crate::model::Logging,
}

/// A validated `connector.toml` plus the warnings that did not stop it.
#[derive(Debug)]
pub struct LoadedLan {
    /// The model.
    pub config: Lan,
    /// Non-fatal findings.
    pub warnings: Vec<Issue>,
}

/// Reads and validates a connector's file, reporting every problem with its
/// key and line.
pub fn load_lan(path: &Path) -> Result<LoadedLan, ConfigError> {
    load_lan_str(&crate::read(path)?, path)
}

/// [`load_lan`] on text read from `path`.
pub fn load_lan_str(text: &str, path: &Path) -> Result<LoadedLan, ConfigError> {
    let (config, warnings) = crate::parse_and_convert(text, path, convert_lan)?;
    Ok(LoadedLan { config, warnings })
}

fn url_of(ctx: &mut Ctx<'_>, key: &str, text: Option<String>, schemes: &[&str]) -> Option<Url> {
    let Some(text) = text else {
        ctx.error(key, "missing");
        return None;
    };
    match Url::parse(&text) {
        Err(e) => {
            ctx.error(key, e.to_string());
            None
        }
        Ok(u) if !schemes.contains(&u.scheme()) => {
            ctx.error(
                key,
                format!(
                    "scheme must be {}, got {:?}",
                    schemes.join(" or "),
                    u.scheme()
                ),
            );
            None
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            ctx.error(key, "URL has no host");
            None
        }
        Ok(u) if u.path() != "/" || u.query().is_some() => {
            ctx.error(key, "give only scheme, host and port");
            None
        }
        Ok(u) => Some(u),
    }
}

fn convert_lan(file: LanFile, ctx: &mut Ctx<'_>) -> Option<Lan> {
    let Some(c) = file.connector else {
        ctx.error(
            "connector",
            "missing table [connector] with gateway, key and backend",
        );
        return None;
    };
    let gateway = url_of(ctx, "connector.gateway", c.gateway, &["https"]);
    let backend = url_of(ctx, "connector.backend", c.backend, &["http", "https"]);
    let trust = match (c.ca_file, c.gateway_pin_sha256) {
        (Some(_), Some(_)) => {
            ctx.error(
                "connector.gateway_pin_sha256",
                "give either ca_file or gateway_pin_sha256, not both",
            );
            None
        }
        (None, None) => {
            ctx.error(
                "connector.ca_file",
                "missing: the CA that signed the gateway's certificate (or gateway_pin_sha256)",
            );
            None
        }
        (Some(ca), None) => {
            let path = ctx.path(&ca);
            if path.is_file() {
                Some(GatewayTrust::CaFile(path))
            } else {
                ctx.error(
                    "connector.ca_file",
                    format!("{} is not a readable file", path.display()),
                );
                None
            }
        }
        (None, Some(pin)) => match crate::pin::parse_pin_sha256(&pin) {
            Some(hex) => Some(GatewayTrust::Pin(hex)),
            None => {
                ctx.error("connector.gateway_pin_sha256", crate::pin::PIN_EXPECTED);
                None
            }
        },
    };
    let key = if c.key.is_none() {
        ctx.error(
            "connector.key",
            "missing: \"env:NAME\" or \"file:PATH\" holding the key `connectors add` printed",
        );
        None
    } else {
        ctx.secret("connector.key", c.key)
    };
    if key
        .as_ref()
        .is_some_and(|k| !k.expose().trim().starts_with("mgc_"))
    {
        ctx.error(
            "connector.key",
            "not a connector key: they start with mgc_ (see `mft-gateway connectors add`)",
        );
    }
    let client_cert = match (c.client_cert, c.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let (cert, key) = (ctx.path(&cert), ctx.path(&key));
            for (name, path) in [
                ("connector.client_cert", &cert),
                ("connector.client_key", &key),
            ] {
                if !path.is_file() {
                    ctx.error(name, format!("{} is not a readable file", path.display()));
                }
            }
            Some(ClientCert { cert, key })
        }
        (Some(_), None) => {
            ctx.error("connector.client_key", "missing: client_cert needs its key");
            None
        }
        (None, Some(_)) => {
            ctx.error(
                "connector.client_cert",
                "missing: client_key needs its certificate",
            );
            None
        }
    };
    let connections = match c.connections {
        None => L::CONNECTIONS,
        Some(n @ 1..=64) => n,
        Some(_) => {
            ctx.error("connector.connections", "must be 1 to 64");
            L::CONNECTIONS
        }
    };
    let max_connections = match c.max_connections {
        None => L::MAX_CONNECTIONS.max(connections),
        Some(n) if n >= connections && n <= 1024 => n,
        Some(_) => {
            ctx.error(
                "connector.max_connections",
                "must be at least `connections` and at most 1024",
            );
            L::MAX_CONNECTIONS.max(connections)
        }
    };
    let connect_timeout = ctx.duration(
        "connector.connect_timeout",
        c.connect_timeout,
        L::CONNECT_TIMEOUT,
    );
    let reconnect_base = ctx.duration(
        "connector.reconnect_base",
        c.reconnect_base,
        L::RECONNECT_BASE,
    );
    let reconnect_max = ctx.duration("connector.reconnect_max", c.reconnect_max, L::RECONNECT_MAX);
    if reconnect_max < reconnect_base {
        ctx.error(
            "connector.reconnect_max",
            "must not be shorter than reconnect_base",
        );
    }
    let logging = crate::convert::convert_logging(file.logging, ctx);
    Some(Lan {
        gateway: gateway?,
        trust: trust?,
        key: key?,
        client_cert,
        backend: backend?,
        connections,
        max_connections,
        connect_timeout,
        reconnect_base,
        reconnect_max,
        logging,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedLan, ConfigError> {
        load_lan_str(text, Path::new("/nonexistent/connector.toml"))
    }

    fn issues(text: &str) -> Vec<Issue> {
        match load(text) {
            Err(ConfigError::Invalid { issues, .. }) => issues,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    const PIN: &str = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89";

    #[test]
    fn a_complete_file_loads_with_defaults() {
        std::env::set_var("MFT_TEST_LAN_KEY_OK", "mgc_0123456789abcdef_secret");
        let text = format!(
            "[connector]\ngateway = \"https://dmz.example:8444\"\ngateway_pin_sha256 = \"{PIN}\"\n\
             key = \"env:MFT_TEST_LAN_KEY_OK\"\nbackend = \"http://mft.internal:8080\"\n"
        );
        let loaded = load(&text).unwrap();
        let c = loaded.config;
        assert_eq!(c.connections, crate::defaults::lan::CONNECTIONS);
        assert_eq!(c.max_connections, crate::defaults::lan::MAX_CONNECTIONS);
        assert_eq!(c.connect_timeout, crate::defaults::lan::CONNECT_TIMEOUT);
        assert_eq!(c.gateway.as_str(), "https://dmz.example:8444/");
        assert_eq!(c.backend.port(), Some(8080));
        assert!(matches!(c.trust, GatewayTrust::Pin(ref p) if p.len() == 64 && !p.contains(':')));
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn every_bad_key_is_reported_with_its_line() {
        let text = "[connector]\ngateway = \"http://dmz.example:8444\"\nbackend = \"ftp://x\"\n\
                    connections = 0\ngateway_pin_sha256 = \"zz\"\n";
        let found = issues(text);
        let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
        for k in [
            "connector.gateway",
            "connector.backend",
            "connector.connections",
            "connector.gateway_pin_sha256",
            "connector.key",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        let gw = found.iter().find(|i| i.key == "connector.gateway").unwrap();
        assert_eq!(gw.line, Some(2));
    }

    #[test]
    fn max_connections_may_not_be_below_connections() {
        std::env::set_var("MFT_TEST_LAN_KEY_MAX", "mgc_0123456789abcdef_secret");
        let base = format!(
            "[connector]\ngateway = \"https://dmz.example:8444\"\ngateway_pin_sha256 = \"{PIN}\"\n\
             key = \"env:MFT_TEST_LAN_KEY_MAX\"\nbackend = \"http://mft.internal:8080\"\n"
        );
        let found = issues(&format!("{base}connections = 8\nmax_connections = 4\n"));
        assert!(
            found.iter().any(|i| i.key == "connector.max_connections"),
            "{found:?}"
        );
        let c = load(&format!("{base}connections = 8\nmax_connections = 20\n"))
            .unwrap()
            .config;
        assert_eq!((c.connections, c.max_connections), (8, 20));
    }

    #[test]
    fn the_link_mode_is_h2_or_http1() {
        assert_eq!(LinkMode::parse("http1"), Some(LinkMode::Http1));
        assert_eq!(
            LinkMode::parse(crate::defaults::connector::LINK),
            Some(LinkMode::Http1)
        );
        assert_eq!(LinkMode::parse("h3"), None);
        for mode in [LinkMode::H2, LinkMode::Http1] {
            assert_eq!(LinkMode::parse(mode.as_str()), Some(mode));
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_both_files() {
        std::env::set_var("MFT_TEST_LAN_KEY_CC", "mgc_0123456789abcdef_secret");
        let base = format!(
            "[connector]\ngateway = \"https://dmz.example:8444\"\ngateway_pin_sha256 = \"{PIN}\"\n\
             key = \"env:MFT_TEST_LAN_KEY_CC\"\nbackend = \"http://mft.internal:8080\"\n"
        );
        let found = issues(&format!("{base}client_cert = \"/etc/mft/c.pem\"\n"));
        assert!(
            found.iter().any(|i| i.key == "connector.client_key"),
            "{found:?}"
        );
        let found = issues(&format!(
            "{base}client_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/c.key\"\n"
        ));
        let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"connector.client_cert"), "{keys:?}");
        assert!(keys.contains(&"connector.client_key"), "{keys:?}");
        assert_eq!(load(&base).unwrap().config.client_cert, None);
    }

    #[test]
    fn a_key_that_is_not_a_connector_key_is_refused() {
        std::env::set_var("MFT_TEST_LAN_KEY_API", "mgw_0123456789abcdef_secret");
        let text = format!(
            "[connector]\ngateway = \"https://dmz.example:8444\"\ngateway_pin_sha256 = \"{PIN}\"\n\
             key = \"env:MFT_TEST_LAN_KEY_API\"\nbackend = \"http://mft.internal:8080\"\n"
        );
        let found = issues(&text);
        assert!(found.iter().any(|i| i.key == "connector.key"), "{found:?}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let found = issues("[connector]\ngatway = \"https://x\"\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("unknown field"), "{found:?}");
    }
}
