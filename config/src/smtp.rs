//! `[smtp]`: the SMTP listener that turns e-mail into deliveries.
//!
//! The file schema is kept apart from the validated model: addresses,
//! networks, durations and sizes are checked once here, so the listener
//! only ever sees values it can use.

use crate::convert::Ctx;
use crate::defaults::smtp as D;
use crate::limits::Size;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[smtp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    /// Plain listener with STARTTLS, e.g. `"0.0.0.0:2525"` (required).
    pub listen: Option<String>,
    /// Implicit-TLS listener (SMTPS), e.g. `"0.0.0.0:4650"`.
    pub tls_listen: Option<String>,
    /// Name in the greeting and EHLO reply.
    pub hostname: Option<String>,
    /// Largest message accepted (the `SIZE` announced), `"35 MiB"` or bytes.
    pub max_message_bytes: Option<Size>,
    /// AUTH only over TLS; `false` is refused (kept for explicitness).
    pub require_tls_for_auth: Option<bool>,
    /// Every message needs an authenticated client (default `true`).
    pub require_auth: Option<bool>,
    /// CIDRs allowed to connect; absent or empty: everyone.
    pub allowed_client_networks: Option<Vec<String>>,
    /// Envelope sender domains accepted; absent or empty: any.
    pub allowed_sender_domains: Option<Vec<String>>,
    /// Most RCPT TO per message.
    pub max_recipients: Option<usize>,
    /// Most attachments per message (default 100).
    pub max_attachments: Option<usize>,
    /// Longest wait for the next command.
    pub command_timeout: Option<String>,
    /// Longest pause while the client sends DATA.
    pub data_timeout: Option<String>,
    /// Most concurrent SMTP sessions.
    pub max_connections: Option<usize>,
    /// Most concurrent sessions from one client (IPv4 address or IPv6 /64).
    pub max_connections_per_ip: Option<usize>,
    /// Longest session, however busy, e.g. `"30m"`.
    pub max_session_time: Option<String>,
    /// Longest DATA transfer, from `354` to the final dot, e.g. `"10m"`.
    pub max_data_time: Option<String>,
    /// Backend folder for uploaded attachments (absent: the root).
    pub folder: Option<String>,
    /// Longest wait between delivery attempts of a spooled message while
    /// the backend is unavailable.
    pub retry_max_interval: Option<String>,
    /// Spool workers delivering in parallel.
    pub spool_workers: Option<usize>,
    /// Free space the spool's file system must keep: below it, MAIL and
    /// RCPT get 452 (insufficient system storage); `0` disables.
    pub spool_min_free: Option<Size>,
    /// `[[smtp.users]]`: bridge users with their own password.
    #[serde(default)]
    pub users: Vec<SmtpUserFile>,
}

/// `[[smtp.users]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpUserFile {
    /// Login name.
    pub name: Option<String>,
    /// argon2id PHC string (`$argon2id$v=19$m=...`).
    pub password_hash: Option<String>,
    /// Scopes sent to the backend for this user's deliveries.
    pub scopes: Option<Vec<String>>,
    /// Envelope senders (MAIL FROM) this user may use: addresses or
    /// `*@domain`; absent: any sender `allowed_sender_domains` allows.
    pub allowed_senders: Option<Vec<String>>,
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address (a host network).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("expected a network like \"10.0.0.0/8\", got {text:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length must be 0..={max}, got {text:?}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A bridge user.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpUser {
    /// Login name.
    pub name: String,
    /// argon2id PHC string; verified by the listener.
    pub password_hash: String,
    /// Scopes for the backend calls made for this user.
    pub scopes: Vec<String>,
    /// Envelope senders this user may use (checked by the listener at
    /// start); `None`: any.
    pub allowed_senders: Option<Vec<String>>,
}

/// `[smtp]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    /// Plain listener (STARTTLS).
    pub listen: SocketAddr,
    /// Implicit-TLS listener.
    pub tls_listen: Option<SocketAddr>,
    /// Greeting and EHLO name.
    pub hostname: String,
    /// SIZE limit in bytes.
    pub max_message_bytes: usize,
    /// Whether every message needs AUTH.
    pub require_auth: bool,
    /// Allowed client networks; empty: all.
    pub allowed_client_networks: Vec<Cidr>,
    /// Allowed envelope sender domains (lower case); empty: any.
    pub allowed_sender_domains: Vec<String>,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Most attachments per message: each becomes a backend upload.
    pub max_attachments: usize,
    /// Idle limit between commands.
    pub command_timeout: Duration,
    /// Idle limit while receiving DATA.
    pub data_timeout: Duration,
    /// Most concurrent sessions.
    pub max_connections: usize,
    /// Most concurrent sessions per client (IPv4 address or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Deadline of a whole session.
    pub max_session_time: Duration,
    /// Deadline of one DATA transfer.
    pub max_data_time: Duration,
    /// Backend folder for attachments.
    pub folder: Option<String>,
    /// Longest backoff of the spool worker.
    pub retry_max_interval: Duration,
    /// Spool workers delivering in parallel (each entry by one of them).
    pub spool_workers: usize,
    /// Free bytes the spool's file system must keep before a transaction
    /// starts (MAIL, RCPT answer 452 below it); `None` when disabled.
    pub spool_min_free: Option<u64>,
    /// Bridge users.
    pub users: Vec<SmtpUser>,
}

/// Default SIZE: a 25 MiB attachment grows by a third in base64.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = D::MAX_MESSAGE_BYTES;
/// Default `smtp.spool_workers`.
pub const DEFAULT_SPOOL_WORKERS: usize = D::SPOOL_WORKERS;
/// Largest `smtp.spool_workers`.
pub const MAX_SPOOL_WORKERS: usize = 64;
/// Sessions one client may hold unless configured: enough for a sending
/// MTA's parallel connections, far from the global cap.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = D::MAX_CONNECTIONS_PER_IP;
/// A session is cut after this, however active (RFC 5321 timeouts are per
/// read; a trickling client would otherwise hold its slot for ever).
pub const DEFAULT_MAX_SESSION_TIME: Duration = D::MAX_SESSION_TIME;
/// One DATA transfer may take at most this long.
pub const DEFAULT_MAX_DATA_TIME: Duration = D::MAX_DATA_TIME;

pub(crate) fn convert(file: Option<SmtpFile>, ctx: &mut Ctx<'_>) -> Option<Smtp> {
    let f = file?;
    let listen = match f.listen {
        Some(l) => ctx.addr("smtp.listen", Some(l), ""),
        None => {
            ctx.error(
                "smtp.listen",
                "missing: address of the SMTP listener, e.g. \"0.0.0.0:2525\"",
            );
            None
        }
    };
    let tls_listen = match f.tls_listen {
        Some(l) => ctx.addr("smtp.tls_listen", Some(l), ""),
        None => None,
    };
    let hostname = f.hostname.unwrap_or_else(|| D::HOSTNAME.to_string());
    if hostname.is_empty() || hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
        ctx.error("smtp.hostname", format!("not a host name: {hostname:?}"));
    }
    let max_message_bytes = match f.max_message_bytes {
        None => DEFAULT_MAX_MESSAGE_BYTES,
        Some(size) => {
            let n = match size {
                Size::Bytes(n) => Ok(n),
                Size::Text(t) => crate::limits::parse_size(&t),
            };
            match n {
                // The whole message is held in memory for parsing: keep it sane.
                Ok(n) if (1024..=(1 << 30)).contains(&n) => n as usize,
                Ok(_) => {
                    ctx.error("smtp.max_message_bytes", "must be between 1 KiB and 1 GiB");
                    DEFAULT_MAX_MESSAGE_BYTES
                }
                Err(m) => {
                    ctx.error("smtp.max_message_bytes", m);
                    DEFAULT_MAX_MESSAGE_BYTES
                }
            }
        }
    };
    if f.require_tls_for_auth == Some(false) {
        ctx.error(
            "smtp.require_tls_for_auth",
            "AUTH is only offered over TLS; false is not supported",
        );
    }
    let mut allowed_client_networks = Vec::new();
    for (i, n) in f
        .allowed_client_networks
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match Cidr::parse(n) {
            Ok(c) => allowed_client_networks.push(c),
            Err(m) => ctx.error(&format!("smtp.allowed_client_networks[{i}]"), m),
        }
    }
    let mut allowed_sender_domains = Vec::new();
    for (i, d) in f
        .allowed_sender_domains
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
            ctx.error(
                &format!("smtp.allowed_sender_domains[{i}]"),
                format!("not a domain name: {d:?}"),
            );
        } else {
            allowed_sender_domains.push(d);
        }
    }
    let positive = |ctx: &mut Ctx<'_>, key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => {
            ctx.error(key, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_recipients = positive(
        ctx,
        "smtp.max_recipients",
        f.max_recipients,
        D::MAX_RECIPIENTS,
    );
    let max_attachments = positive(
        ctx,
        "smtp.max_attachments",
        f.max_attachments,
        D::MAX_ATTACHMENTS,
    );
    let max_connections = positive(
        ctx,
        "smtp.max_connections",
        f.max_connections,
        D::MAX_CONNECTIONS,
    );
    let command_timeout = ctx.duration(
        "smtp.command_timeout",
        f.command_timeout,
        D::COMMAND_TIMEOUT,
    );
    let data_timeout = ctx.duration("smtp.data_timeout", f.data_timeout, D::DATA_TIMEOUT);
    let max_connections_per_ip = positive(
        ctx,
        "smtp.max_connections_per_ip",
        f.max_connections_per_ip,
        DEFAULT_MAX_CONNECTIONS_PER_IP.min(max_connections),
    );
    if max_connections_per_ip > max_connections {
        ctx.error(
            "smtp.max_connections_per_ip",
            format!("more than smtp.max_connections ({max_connections})"),
        );
    }
    let max_session_time = ctx.duration(
        "smtp.max_session_time",
        f.max_session_time,
        DEFAULT_MAX_SESSION_TIME,
    );
    let max_data_time = ctx.duration("smtp.max_data_time", f.max_data_time, DEFAULT_MAX_DATA_TIME);
    let retry_max_interval = ctx.duration(
        "smtp.retry_max_interval",
        f.retry_max_interval,
        D::RETRY_MAX_INTERVAL,
    );
    let spool_workers = positive(
        ctx,
        "smtp.spool_workers",
        f.spool_workers,
        DEFAULT_SPOOL_WORKERS,
    );
    if spool_workers > MAX_SPOOL_WORKERS {
        ctx.error("smtp.spool_workers", format!("at most {MAX_SPOOL_WORKERS}"));
    }
    let spool_min_free = match f.spool_min_free {
        None => Some(D::SPOOL_MIN_FREE),
        Some(Size::Bytes(n)) => Some(n),
        Some(Size::Text(t)) => match crate::limits::parse_size(&t) {
            Ok(n) => Some(n),
            Err(m) => {
                ctx.error("smtp.spool_min_free", m);
                Some(D::SPOOL_MIN_FREE)
            }
        },
    }
    .filter(|n| *n > 0);
    let mut users = Vec::new();
    for (i, u) in f.users.into_iter().enumerate() {
        let key = format!("smtp.users[{i}]");
        let Some(name) = u.name.filter(|n| !n.is_empty()) else {
            ctx.error(&format!("{key}.name"), "missing: the login name");
            continue;
        };
        if users.iter().any(|x: &SmtpUser| x.name == name) {
            ctx.error(&format!("{key}.name"), format!("duplicate user {name:?}"));
            continue;
        }
        let Some(hash) = u.password_hash else {
            ctx.error(
                &format!("{key}.password_hash"),
                "missing: an argon2id hash (`$argon2id$v=19$...`)",
            );
            continue;
        };
        if !hash.starts_with("$argon2id$") {
            ctx.error(
                &format!("{key}.password_hash"),
                "expected an argon2id PHC string starting with `$argon2id$`",
            );
            continue;
        }
        let scopes = u
            .scopes
            .unwrap_or_else(|| vec!["files:write".to_string(), "deliveries:write".to_string()]);
        users.push(SmtpUser {
            name,
            password_hash: hash,
            scopes,
            allowed_senders: u.allowed_senders,
        });
    }
    let folder = f.folder.filter(|s| !s.is_empty());
    Some(Smtp {
        listen: listen?,
        tls_listen,
        hostname,
        max_message_bytes,
        require_auth: f.require_auth.unwrap_or(D::REQUIRE_AUTH),
        allowed_client_networks,
        allowed_sender_domains,
        max_recipients,
        command_timeout,
        data_timeout,
        max_attachments,
        max_connections,
        max_connections_per_ip,
        max_session_time,
        max_data_time,
        folder,
        retry_max_interval,
        spool_workers,
        spool_min_free,
        users,
    })
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use crate::{load_str, ConfigError};
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
        [backend]\nurl = \"http://127.0.0.1:8080\"\n";

    fn issues(smtp: &str) -> Vec<String> {
        match load_str(&format!("{BASE}{smtp}"), Path::new("gateway.toml")) {
            Err(ConfigError::Invalid { issues, path }) => issues
                .iter()
                .map(|i| i.display_in(&path).to_string())
                .collect(),
            Err(e) => panic!("unexpected error kind: {e}"),
            Ok(_) => panic!("config was accepted"),
        }
    }

    #[test]
    fn defaults_and_values() {
        let text = format!(
            "{BASE}[smtp]\nlisten = \"127.0.0.1:2525\"\nmax_message_bytes = \"10 MiB\"\n\
             allowed_client_networks = [\"10.0.0.0/8\"]\nallowed_sender_domains = [\"Partner.Example\"]\n\
             [[smtp.users]]\nname = \"scanner\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\"\n"
        );
        let c = load_str(&text, Path::new("gateway.toml")).unwrap().config;
        let s = c.smtp.unwrap();
        assert_eq!(s.listen, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(s.max_message_bytes, 10 << 20);
        assert!(s.require_auth);
        assert_eq!(s.allowed_sender_domains, ["partner.example"]);
        assert_eq!(s.command_timeout, Duration::from_secs(300));
        assert_eq!(s.users[0].scopes, ["files:write", "deliveries:write"]);
        let none = load_str(BASE, Path::new("gateway.toml")).unwrap().config;
        assert!(none.smtp.is_none());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let all = issues(
            "[smtp]\nrequire_tls_for_auth = false\nallowed_client_networks = [\"10.0.0.0/40\"]\n\
             max_message_bytes = 10\nmax_recipients = 0\n\
             [[smtp.users]]\nname = \"x\"\npassword_hash = \"plain\"\n",
        )
        .join("\n");
        for key in [
            "smtp.listen",
            "smtp.require_tls_for_auth",
            "smtp.allowed_client_networks[0]",
            "smtp.max_message_bytes",
            "smtp.max_recipients",
            "smtp.users[0].password_hash",
        ] {
            assert!(all.contains(key), "{key} missing in:\n{all}");
        }
        assert!(issues("[smtp]\nlisten = \"127.0.0.1:25\"\nbogus = 1\n")
            .join("\n")
            .contains("bogus"));
    }

    #[test]
    fn cidr_contains() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }
}
