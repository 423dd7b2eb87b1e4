//! `[[imap]]` and `[[pop3]]`: mailboxes the gateway polls for messages.
//!
//! Both share the connection, authentication and mapping keys
//! ([`ConnectionFile`] flattened into each), so one converter validates
//! them; IMAP adds the folder, IDLE and what happens to a message after its
//! delivery, POP3 whether delivered messages are deleted.

use crate::convert::Ctx;
use crate::defaults::imap as D;
use crate::limits::{parse_size, Size};
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Keys shared by `[[imap]]` and `[[pop3]]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFile {
    /// Unique among the mailboxes of one protocol; part of origin and state keys.
    pub name: Option<String>,
    /// Server host name (also the TLS server name).
    pub host: Option<String>,
    /// Server port; defaults to 993/995 (implicit) or 143/110 (starttls).
    pub port: Option<u16>,
    /// `"implicit"` (default) or `"starttls"`.
    pub tls: Option<String>,
    /// Extra PEM trust roots besides the public web PKI.
    pub ca_file: Option<String>,
    /// SHA-256 of the server's certificate (DER, hex, ':' allowed): trust
    /// exactly that certificate (a self-signed server); exclusive with `ca_file`.
    pub tls_pin_sha256: Option<String>,
    /// Login name (also the `user=` of XOAUTH2).
    pub username: Option<String>,
    /// `env:NAME` or `file:PATH`; exclusive with `oauth2`.
    pub password: Option<String>,
    /// `[imap.oauth2]` / `[pop3.oauth2]`: XOAUTH2 instead of a password.
    pub oauth2: Option<OAuth2File>,
    /// Pause between polls (and between IDLE-less checks), e.g. `"60s"`.
    pub poll_secs: Option<u64>,
    /// Longest wait for any one command's answer, e.g. `"30s"`.
    pub command_timeout: Option<String>,
    /// Largest message fetched; bigger ones are skipped and audited.
    pub max_message_bytes: Option<Size>,
    /// Most attachments per message (default 100); more: skipped, audited.
    pub max_attachments: Option<usize>,
    /// `"from"` (default) or a fixed sender address.
    pub sender: Option<String>,
    /// `"to"`, `"to+cc"` or a list of fixed addresses.
    pub recipients: Option<RecipientsFile>,
    /// `"subject"` (default: the mail's) or a fixed subject.
    pub subject: Option<String>,
    /// `"text"` (default: the mail's text body) or a fixed message.
    pub message: Option<String>,
    /// Principal the backend calls are made as; default `imap:<name>` / `pop3:<name>`.
    pub principal: Option<String>,
    /// Scopes of the calls; default `["files:write", "deliveries:write"]`.
    pub scopes: Option<Vec<String>>,
    /// Backend folder the attachments are uploaded to (default: the root).
    pub upload_folder: Option<String>,
    /// Relay this mailbox's deliveries to trust partners (default false):
    /// the sender comes from an unauthenticated `From:` field.
    pub relay_to_partners: Option<bool>,
    /// Senders whose messages may be relayed: addresses or `@domain`.
    pub relay_senders: Option<Vec<String>>,
    /// authserv-id of our own MX; its `Authentication-Results` must show an
    /// aligned DKIM, SPF or DMARC pass before a message is relayed.
    pub trusted_authserv_id: Option<String>,
}

/// `recipients` as written: a keyword or a fixed list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RecipientsFile {
    /// `"to"` or `"to+cc"`.
    Keyword(String),
    /// Fixed addresses.
    List(Vec<String>),
}

/// `[imap.oauth2]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2File {
    /// `"microsoft"`, `"google"` or `"custom"` (default).
    pub provider: Option<String>,
    /// Token endpoint; filled by the microsoft and google presets.
    pub token_url: Option<String>,
    /// Microsoft tenant id or domain (default `organizations`).
    pub tenant: Option<String>,
    /// OAuth2 client id.
    pub client_id: Option<String>,
    /// `env:`/`file:` secret; absent for public clients.
    pub client_secret: Option<String>,
    /// `env:`/`file:` secret: the long-lived refresh token.
    pub refresh_token: Option<String>,
    /// Space-separated scopes; filled by the presets.
    pub scope: Option<String>,
}

/// `[[imap]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapFile {
    /// Shared keys.
    #[serde(flatten)]
    pub conn: ConnectionFile,
    /// Mailbox folder polled (default `INBOX`).
    pub folder: Option<String>,
    /// Use IDLE when the server offers it (default true).
    pub idle: Option<bool>,
    /// `"seen"` (default), `"move:<folder>"` or `"delete"`.
    pub after_upload: Option<String>,
}

/// `[[pop3]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3File {
    /// Shared keys.
    #[serde(flatten)]
    pub conn: ConnectionFile,
    /// Delete delivered messages (default true).
    pub delete: Option<bool>,
}

/// How TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (993, 995).
    Implicit,
    /// Plain greeting, then STARTTLS / STLS.
    StartTls,
}

/// OAuth2 refresh-token grant settings, presets applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    /// Token endpoint.
    pub token_url: url::Url,
    /// Client id.
    pub client_id: String,
    /// Client secret, for confidential clients.
    pub client_secret: Option<Secret>,
    /// The refresh token.
    pub refresh_token: Secret,
    /// Requested scopes (space separated); `None` asks for the grant's own.
    pub scope: Option<String>,
}

/// How the poller logs in.
#[derive(Debug, Clone, PartialEq)]
pub enum MailboxAuth {
    /// LOGIN / USER+PASS.
    Password(Secret),
    /// XOAUTH2 with a refreshed access token.
    OAuth2(OAuth2),
}

/// Where the delivery's sender comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderMap {
    /// The message's From.
    From,
    /// Always this address.
    Fixed(String),
}

/// Where the delivery's recipients come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientsMap {
    /// The message's To.
    To,
    /// To and Cc.
    ToCc,
    /// Always these.
    Fixed(Vec<String>),
}

/// Subject or message: from the mail or fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMap {
    /// Taken from the message.
    FromMail,
    /// Always this text.
    Fixed(String),
}

/// Message fields → delivery fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Sender.
    pub sender: SenderMap,
    /// Recipients.
    pub recipients: RecipientsMap,
    /// Subject.
    pub subject: TextMap,
    /// Message text.
    pub message: TextMap,
}

/// What IMAP and POP3 mailboxes share, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Mailbox name.
    pub name: String,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Implicit TLS or STARTTLS.
    pub tls: TlsMode,
    /// Extra trust roots.
    pub ca_file: Option<PathBuf>,
    /// Pinned server certificate (SHA-256 of its DER, lower-case hex):
    /// when set, exactly that certificate is trusted and nothing else.
    pub tls_pin_sha256: Option<String>,
    /// Login name.
    pub username: String,
    /// Password or OAuth2.
    pub auth: MailboxAuth,
    /// Pause between polls.
    pub poll_interval: Duration,
    /// Deadline of every command.
    pub command_timeout: Duration,
    /// Largest message fetched.
    pub max_message_bytes: u64,
    /// Most attachments per message.
    pub max_attachments: usize,
    /// Field mapping.
    pub mapping: Mapping,
    /// Principal of the backend calls.
    pub principal: String,
    /// Scopes of the backend calls.
    pub scopes: Vec<String>,
    /// Upload folder in the backend.
    pub upload_folder: Option<String>,
    /// Who may be relayed to trust partners from this mailbox.
    pub relay: MailboxRelay,
}

/// `relay_to_partners`, `relay_senders`, `trusted_authserv_id`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxRelay {
    /// Relaying to partners is allowed at all.
    pub enabled: bool,
    /// Allowed senders (addresses, or `@domain`), lower-cased.
    pub senders: Vec<String>,
    /// The authserv-id whose verdict is required, if any.
    pub authserv_id: Option<String>,
}

/// What IMAP does with a message once its delivery exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterUpload {
    /// Set `\Seen`.
    Seen,
    /// Move to this folder.
    Move(String),
    /// Flag `\Deleted` and expunge.
    Delete,
}

/// One `[[imap]]` mailbox, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Imap {
    /// Connection, auth, mapping.
    pub conn: Connection,
    /// Folder polled.
    pub folder: String,
    /// IDLE when offered.
    pub idle: bool,
    /// Action after delivery.
    pub after_upload: AfterUpload,
}

/// One `[[pop3]]` mailbox, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Pop3 {
    /// Connection, auth, mapping.
    pub conn: Connection,
    /// DELE delivered messages.
    pub delete: bool,
}

/// Largest message fetched unless configured: what the backend's JSON limit
/// does not matter for (attachments are uploads), but memory does.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = D::MAX_MESSAGE_BYTES;

/// Attachments per message unless configured (SMTP and mailboxes): each one
/// is a backend upload, so a message of tiny parts must not fan out without
/// bound.
pub const DEFAULT_MAX_ATTACHMENTS: usize = D::MAX_ATTACHMENTS;

const MICROSOFT_IMAP_SCOPE: &str =
    "https://outlook.office.com/IMAP.AccessAsUser.All offline_access";
const MICROSOFT_POP_SCOPE: &str = "https://outlook.office.com/POP.AccessAsUser.All offline_access";
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_SCOPE: &str = "https://mail.google.com/";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Whether the URL's host is this machine (`localhost` or a loopback IP).
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn oauth2(ctx: &mut Ctx<'_>, key: &str, f: OAuth2File, imap: bool) -> Option<OAuth2> {
    let provider = f.provider.as_deref().unwrap_or("custom");
    let (preset_url, preset_scope) = match provider {
        "microsoft" => {
            let tenant = f.tenant.as_deref().unwrap_or("organizations");
            (
                Some(format!(
                    "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
                )),
                Some(
                    if imap {
                        MICROSOFT_IMAP_SCOPE
                    } else {
                        MICROSOFT_POP_SCOPE
                    }
                    .to_string(),
                ),
            )
        }
        "google" => (
            Some(GOOGLE_TOKEN_URL.to_string()),
            Some(GOOGLE_SCOPE.to_string()),
        ),
        "custom" => (None, None),
        other => {
            ctx.error(
                &format!("{key}.provider"),
                format!("expected \"microsoft\", \"google\" or \"custom\", got {other:?}"),
            );
            return None;
        }
    };
    if f.tenant.is_some() && provider != "microsoft" {
        ctx.error(
            &format!("{key}.tenant"),
            "only for provider = \"microsoft\"",
        );
    }
    let token_url = match f.token_url.or(preset_url) {
        Some(u) => match url::Url::parse(&u) {
            Ok(u) if u.scheme() == "https" => Some(u),
            // The client secret and refresh token travel in the request:
            // in clear only to a token endpoint on this host.
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
            Ok(u) if u.scheme() == "http" => {
                ctx.error(
                    &format!("{key}.token_url"),
                    format!("{u}: http:// would send the client secret and refresh token in clear; use https:// (http only for a loopback host)"),
                );
                None
            }
            _ => {
                ctx.error(
                    &format!("{key}.token_url"),
                    format!("not an http(s) URL: {u:?}"),
                );
                None
            }
        },
        None => {
            ctx.error(
                &format!("{key}.token_url"),
                "missing (or set provider = \"microsoft\" / \"google\")",
            );
            None
        }
    };
    let client_id = f.client_id.filter(|c| !c.is_empty());
    if client_id.is_none() {
        ctx.error(&format!("{key}.client_id"), "missing");
    }
    let client_secret = ctx.secret(&format!("{key}.client_secret"), f.client_secret);
    let refresh_token = ctx.secret(&format!("{key}.refresh_token"), f.refresh_token.clone());
    if f.refresh_token.is_none() {
        ctx.error(
            &format!("{key}.refresh_token"),
            "missing: \"env:NAME\" or \"file:PATH\" of the refresh token",
        );
    }
    Some(OAuth2 {
        token_url: token_url?,
        client_id: client_id?,
        client_secret,
        refresh_token: refresh_token?,
        scope: f.scope.or(preset_scope),
    })
}

fn mapping(ctx: &mut Ctx<'_>, key: &str, f: &ConnectionFile) -> Mapping {
    let sender = match f.sender.as_deref() {
        None | Some(D::SENDER) => SenderMap::From,
        Some(a) if a.contains('@') => SenderMap::Fixed(a.to_string()),
        Some(a) => {
            ctx.error(
                &format!("{key}.sender"),
                format!("expected \"from\" or an e-mail address, got {a:?}"),
            );
            SenderMap::From
        }
    };
    let recipients = match &f.recipients {
        None => RecipientsMap::To,
        Some(RecipientsFile::Keyword(k)) if k == D::RECIPIENTS => RecipientsMap::To,
        Some(RecipientsFile::Keyword(k)) if k == "to+cc" => RecipientsMap::ToCc,
        Some(RecipientsFile::Keyword(k)) => {
            ctx.error(
                &format!("{key}.recipients"),
                format!("expected \"to\", \"to+cc\" or a list of addresses, got {k:?}"),
            );
            RecipientsMap::To
        }
        Some(RecipientsFile::List(list)) => {
            if list.is_empty() || list.iter().any(|a| !a.contains('@')) {
                ctx.error(
                    &format!("{key}.recipients"),
                    "a fixed list needs at least one address, each with an '@'",
                );
            }
            RecipientsMap::Fixed(list.clone())
        }
    };
    let text = |v: &Option<String>, keyword: &str| match v.as_deref() {
        None => TextMap::FromMail,
        Some(s) if s == keyword => TextMap::FromMail,
        Some(s) => TextMap::Fixed(s.to_string()),
    };
    Mapping {
        sender,
        recipients,
        subject: text(&f.subject, D::SUBJECT),
        message: text(&f.message, D::MESSAGE),
    }
}

fn relay(ctx: &mut Ctx<'_>, key: &str, f: &ConnectionFile) -> MailboxRelay {
    let enabled = f.relay_to_partners.unwrap_or(D::RELAY_TO_PARTNERS);
    let senders: Vec<String> = f
        .relay_senders
        .iter()
        .flatten()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for s in &senders {
        let (local, domain) = s.rsplit_once('@').unwrap_or(("", ""));
        if domain.is_empty() || !domain.contains('.') || (local.is_empty() && !s.starts_with('@')) {
            ctx.error(
                &format!("{key}.relay_senders"),
                format!("{s:?}: expected an address or \"@domain\""),
            );
        }
    }
    if enabled && senders.is_empty() {
        ctx.error(
            &format!("{key}.relay_to_partners"),
            "needs relay_senders: the sender of a polled message is whatever its From: says, so list who may be relayed",
        );
    }
    if !enabled && (!senders.is_empty() || f.trusted_authserv_id.is_some()) {
        ctx.warn(
            &format!("{key}.relay_senders"),
            "has no effect while relay_to_partners is off",
        );
    }
    let authserv_id = f
        .trusted_authserv_id
        .clone()
        .filter(|s| !s.trim().is_empty());
    if f.trusted_authserv_id.is_some() && authserv_id.is_none() {
        ctx.error(&format!("{key}.trusted_authserv_id"), "empty");
    }
    MailboxRelay {
        enabled,
        senders,
        authserv_id,
    }
}

fn connection(
    ctx: &mut Ctx<'_>,
    key: &str,
    mut f: ConnectionFile,
    imap: bool,
) -> Option<Connection> {
    let proto = if imap { "imap" } else { "pop3" };
    let name = match f.name.as_deref() {
        Some(n) if valid_name(n) => Some(n.to_string()),
        Some(n) => {
            ctx.error(
                &format!("{key}.name"),
                format!("{n:?}: use 1-64 letters, digits, '-', '_' or '.'"),
            );
            None
        }
        None => {
            ctx.error(&format!("{key}.name"), "missing");
            None
        }
    };
    let host = f.host.clone().filter(|h| !h.is_empty());
    if host.is_none() {
        ctx.error(&format!("{key}.host"), "missing");
    }
    let tls = match f.tls.as_deref() {
        None | Some(D::TLS) => TlsMode::Implicit,
        Some("starttls") => TlsMode::StartTls,
        Some(other) => {
            ctx.error(
                &format!("{key}.tls"),
                format!("expected \"implicit\" or \"starttls\", got {other:?}"),
            );
            TlsMode::Implicit
        }
    };
    let port = f.port.unwrap_or(match (imap, tls) {
        (true, TlsMode::Implicit) => 993,
        (true, TlsMode::StartTls) => 143,
        (false, TlsMode::Implicit) => 995,
        (false, TlsMode::StartTls) => 110,
    });
    let ca_file = f.ca_file.as_deref().map(|p| ctx.path(p));
    let tls_pin_sha256 = match f.tls_pin_sha256.as_deref() {
        None => None,
        Some(_) if ca_file.is_some() => {
            ctx.error(
                &format!("{key}.tls_pin_sha256"),
                "give either ca_file or tls_pin_sha256, not both",
            );
            None
        }
        Some(pin) => {
            let parsed = crate::pin::parse_pin_sha256(pin);
            if parsed.is_none() {
                ctx.error(&format!("{key}.tls_pin_sha256"), crate::pin::PIN_EXPECTED);
            }
            parsed
        }
    };
    let username = f.username.clone().filter(|u| !u.is_empty());
    if username.is_none() {
        ctx.error(&format!("{key}.username"), "missing");
    }
    let auth = match (f.password.clone(), f.oauth2.take()) {
        (Some(p), None) => ctx
            .secret(&format!("{key}.password"), Some(p))
            .map(MailboxAuth::Password),
        (None, Some(o)) => oauth2(ctx, &format!("{key}.oauth2"), o, imap).map(MailboxAuth::OAuth2),
        (Some(_), Some(_)) => {
            ctx.error(
                &format!("{key}.password"),
                "set either password or oauth2, not both",
            );
            None
        }
        (None, None) => {
            ctx.error(&format!("{key}.password"), "missing: password or [oauth2]");
            None
        }
    };
    let poll_interval = match f.poll_secs {
        Some(0) => {
            ctx.error(&format!("{key}.poll_secs"), "must be at least 1");
            Duration::from_secs(D::POLL_SECS)
        }
        Some(n) => Duration::from_secs(n),
        None => Duration::from_secs(D::POLL_SECS),
    };
    let command_timeout = ctx.duration(
        &format!("{key}.command_timeout"),
        f.command_timeout.clone(),
        D::COMMAND_TIMEOUT,
    );
    let max_message_bytes = match f.max_message_bytes.clone() {
        None => DEFAULT_MAX_MESSAGE_BYTES,
        Some(Size::Bytes(n)) if n > 0 => n,
        Some(Size::Text(t)) => match parse_size(&t) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                ctx.error(
                    &format!("{key}.max_message_bytes"),
                    "must be greater than zero",
                );
                DEFAULT_MAX_MESSAGE_BYTES
            }
            Err(m) => {
                ctx.error(&format!("{key}.max_message_bytes"), m);
                DEFAULT_MAX_MESSAGE_BYTES
            }
        },
        Some(Size::Bytes(_)) => {
            ctx.error(
                &format!("{key}.max_message_bytes"),
                "must be greater than zero",
            );
            DEFAULT_MAX_MESSAGE_BYTES
        }
    };
    let max_attachments = match f.max_attachments {
        Some(0) => {
            ctx.error(&format!("{key}.max_attachments"), "must be at least 1");
            DEFAULT_MAX_ATTACHMENTS
        }
        Some(n) => n,
        None => DEFAULT_MAX_ATTACHMENTS,
    };
    let mapping = mapping(ctx, key, &f);
    let relay = relay(ctx, key, &f);
    let scopes = f
        .scopes
        .clone()
        .unwrap_or_else(|| D::SCOPES.iter().map(|s| s.to_string()).collect());
    let name = name?;
    Some(Connection {
        principal: f
            .principal
            .clone()
            .unwrap_or_else(|| format!("{proto}:{name}")),
        name,
        host: host?,
        port,
        tls,
        ca_file,
        tls_pin_sha256,
        username: username?,
        auth: auth?,
        poll_interval,
        command_timeout,
        max_message_bytes,
        max_attachments,
        mapping,
        relay,
        scopes,
        upload_folder: f.upload_folder.clone(),
    })
}

/// Names must be unique per protocol (they key the stored state); checked
/// on the file so a mailbox with other errors still counts.
fn unique(ctx: &mut Ctx<'_>, proto: &str, names: &[Option<String>]) {
    for (i, n) in names.iter().enumerate() {
        let Some(n) = n else { continue };
        if names[..i].iter().any(|m| m.as_ref() == Some(n)) {
            ctx.error(
                &format!("{proto}[{i}].name"),
                format!("{n:?} is used twice"),
            );
        }
    }
}

pub(crate) fn convert_imap(file: Vec<ImapFile>, ctx: &mut Ctx<'_>) -> Vec<Imap> {
    let names: Vec<Option<String>> = file.iter().map(|f| f.conn.name.clone()).collect();
    unique(ctx, "imap", &names);
    let mut out = Vec::new();
    for (i, f) in file.into_iter().enumerate() {
        let key = format!("imap[{i}]");
        let after_upload = match f.after_upload.as_deref() {
            None | Some(D::AFTER_UPLOAD) => AfterUpload::Seen,
            Some("delete") => AfterUpload::Delete,
            Some(m) if m.starts_with("move:") && m.len() > 5 => {
                AfterUpload::Move(m[5..].to_string())
            }
            Some(other) => {
                ctx.error(
                    &format!("{key}.after_upload"),
                    format!("expected \"seen\", \"move:<folder>\" or \"delete\", got {other:?}"),
                );
                AfterUpload::Seen
            }
        };
        let folder = f.folder.unwrap_or_else(|| D::FOLDER.to_string());
        if folder.is_empty() || folder.contains(['"', '\\', '\r', '\n']) {
            ctx.error(
                &format!("{key}.folder"),
                "empty or contains quotes/backslashes",
            );
        }
        if let AfterUpload::Move(m) = &after_upload {
            if m.contains(['"', '\\', '\r', '\n']) || *m == folder {
                ctx.error(
                    &format!("{key}.after_upload"),
                    "move target contains quotes/backslashes or is the polled folder",
                );
            }
        }
        if let Some(conn) = connection(ctx, &key, f.conn, true) {
            out.push(Imap {
                conn,
                folder,
                idle: f.idle.unwrap_or(D::IDLE),
                after_upload,
            });
        }
    }
    out
}

pub(crate) fn convert_pop3(file: Vec<Pop3File>, ctx: &mut Ctx<'_>) -> Vec<Pop3> {
    let names: Vec<Option<String>> = file.iter().map(|f| f.conn.name.clone()).collect();
    unique(ctx, "pop3", &names);
    let mut out = Vec::new();
    for (i, f) in file.into_iter().enumerate() {
        let key = format!("pop3[{i}]");
        if let Some(conn) = connection(ctx, &key, f.conn, false) {
            out.push(Pop3 {
                conn,
                delete: f.delete.unwrap_or(D::DELETE),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[backend]\nurl = \"http://127.0.0.1:1\"\n";

    fn load(extra: &str) -> Result<crate::Loaded, String> {
        crate::load_str(
            &format!("{BASE}{extra}"),
            Path::new("/etc/mft/gateway.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_the_microsoft_preset() {
        let c = load(
            r#"
[[imap]]
name = "m365"
host = "outlook.office365.com"
username = "svc@ourcorp.example"
[imap.oauth2]
provider = "microsoft"
tenant = "ourcorp.example"
client_id = "abc"
refresh_token = "literal-refresh"

[[pop3]]
name = "pop"
host = "outlook.office365.com"
username = "svc@ourcorp.example"
recipients = ["a@ourcorp.example"]
sender = "fixed@ourcorp.example"
subject = "From the mailbox"
[pop3.oauth2]
provider = "microsoft"
client_id = "abc"
refresh_token = "literal-refresh"
"#,
        )
        .unwrap()
        .config;
        let m = &c.imap[0];
        assert_eq!((m.conn.port, m.conn.tls), (993, TlsMode::Implicit));
        assert_eq!(m.folder, "INBOX");
        assert!(m.idle);
        assert_eq!(m.after_upload, AfterUpload::Seen);
        assert_eq!(m.conn.principal, "imap:m365");
        assert_eq!(m.conn.scopes, ["files:write", "deliveries:write"]);
        assert_eq!(m.conn.mapping.sender, SenderMap::From);
        assert_eq!(m.conn.mapping.recipients, RecipientsMap::To);
        let MailboxAuth::OAuth2(o) = &m.conn.auth else {
            panic!("oauth2 expected")
        };
        assert_eq!(
            o.token_url.as_str(),
            "https://login.microsoftonline.com/ourcorp.example/oauth2/v2.0/token"
        );
        assert_eq!(o.scope.as_deref(), Some(MICROSOFT_IMAP_SCOPE));
        let p = &c.pop3[0];
        assert_eq!(p.conn.port, 995);
        assert!(p.delete);
        let MailboxAuth::OAuth2(o) = &p.conn.auth else {
            panic!("oauth2 expected")
        };
        assert!(o.token_url.as_str().contains("/organizations/"));
        assert_eq!(o.scope.as_deref(), Some(MICROSOFT_POP_SCOPE));
        assert_eq!(
            p.conn.mapping.sender,
            SenderMap::Fixed("fixed@ourcorp.example".into())
        );
        assert_eq!(
            p.conn.mapping.recipients,
            RecipientsMap::Fixed(vec!["a@ourcorp.example".into()])
        );
        assert_eq!(
            p.conn.mapping.subject,
            TextMap::Fixed("From the mailbox".into())
        );
        assert_eq!(p.conn.mapping.message, TextMap::FromMail);
    }

    #[test]
    fn mistakes_are_reported_with_their_key() {
        let e = load(
            r#"
[[imap]]
name = "a"
host = "h"
username = "u"
password = "p"
after_upload = "archive"
recipients = "bcc"
tls = "ssl"
[imap.oauth2]
provider = "google"
client_id = "x"
refresh_token = "r"

[[imap]]
name = "a"
host = "h"
username = "u"
password = "p"
"#,
        )
        .unwrap_err();
        for key in [
            "imap[0].after_upload",
            "imap[0].recipients",
            "imap[0].tls",
            "imap[0].password",
            "imap[1].name",
        ] {
            assert!(e.contains(key), "{key} missing in: {e}");
        }
        let e = load("[[pop3]]\nname = \"p\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nfolder = \"INBOX\"\n")
            .unwrap_err();
        assert!(e.contains("folder"), "{e}");
    }

    #[test]
    fn a_pinned_mail_server_certificate() {
        let pin = vec!["AB"; 32].join(":");
        let c = load(&format!(
            "[[pop3]]\nname = \"p\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls_pin_sha256 = \"{pin}\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.config.pop3[0].conn.tls_pin_sha256.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        let e = load("[[imap]]\nname = \"a\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls_pin_sha256 = \"nope\"\n[[pop3]]\nname = \"p\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nca_file = \"ca.pem\"\ntls_pin_sha256 = \"nope\"\n")
            .unwrap_err();
        assert!(
            e.contains("imap[0].tls_pin_sha256: expected 64 hex digits"),
            "{e}"
        );
        assert!(
            e.contains("pop3[0].tls_pin_sha256: give either ca_file or tls_pin_sha256"),
            "{e}"
        );
    }
}
