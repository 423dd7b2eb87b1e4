//! The `smtp` provider: a submission server reached with implicit TLS or
//! STARTTLS (required, never opportunistic), optional AUTH, certificates
//! checked against the system roots plus an optional `ca_file`. Plain text
//! only toward a loopback host. Optionally from a chosen local address and
//! at a limited rate. Sent with lettre.

use super::{OutboundMessage, TransportError};
use crate::store::transports::TransportRecord;
use lettre::message::header::{ContentDisposition, ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use mft_config::secret::Secret;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound of one SMTP conversation step.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain connect, then STARTTLS, required (port 587).
    Starttls,
    /// No TLS: only toward a loopback host (a local MTA).
    None,
}

/// The settings of an `smtp` provider (stored as JSON; no secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Server host name (checked against its certificate) or address.
    pub host: String,
    /// Port; default by TLS mode: 465 implicit, 587 STARTTLS, 25 none.
    #[serde(default)]
    pub port: Option<u16>,
    /// TLS mode; default `starttls`.
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted for this server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// AUTH user name; with a secret.
    #[serde(default)]
    pub username: Option<String>,
    /// From address.
    pub from: String,
    /// Reply-To address.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// EHLO name; default this host's name.
    #[serde(default)]
    pub ehlo_name: Option<String>,
    /// S/MIME: the From address's certificate (PEM, chain after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smime_cert: Option<PathBuf>,
    /// S/MIME: its private key (PEM; RSA or ECDSA P-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smime_key: Option<PathBuf>,
    /// S/MIME instead from one PKCS#12 file (key, certificate, chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smime_p12: Option<PathBuf>,
    /// Its password as a secret reference (`env:NAME`, `file:PATH`),
    /// resolved at every use; none: a file without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smime_p12_password: Option<String>,
    /// The local address connections are made from (an address of this
    /// host), for a server that admits only known senders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<IpAddr>,
    /// At most this many messages (`"10/m"`; see `super::rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}

impl SmtpSettings {
    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        })
    }
}

fn invalid(m: impl Into<String>) -> TransportError {
    TransportError::Invalid(m.into())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks settings given as JSON; returns them normalized.
pub fn check_settings(
    value: serde_json::Value,
    base: &Path,
) -> Result<serde_json::Value, TransportError> {
    let s: SmtpSettings =
        serde_json::from_value(value).map_err(|e| invalid(format!("smtp settings: {e}")))?;
    if s.host.is_empty() || s.host.contains(char::is_whitespace) {
        return Err(invalid("host: a host name or address"));
    }
    if s.tls == TlsMode::None && !is_loopback(&s.host) {
        return Err(invalid(
            "tls = none only toward a loopback host (a local MTA); use starttls or implicit",
        ));
    }
    s.from
        .parse::<Mailbox>()
        .map_err(|e| invalid(format!("from {:?}: {e}", s.from)))?;
    if let Some(r) = &s.reply_to {
        r.parse::<Mailbox>()
            .map_err(|e| invalid(format!("reply_to {r:?}: {e}")))?;
    }
    if let Some(ca) = &s.ca_file {
        load_ca(ca, base)?;
    }
    if let Some(ip) = s.source_address {
        // Binding a socket is the one sure test that the address is ours
        // (UDP: no port is held beyond this call).
        std::net::UdpSocket::bind((ip, 0)).map_err(|e| {
            invalid(format!(
                "source_address {ip}: not an address of this host ({e})"
            ))
        })?;
    }
    super::rate::check(s.rate.as_deref())?;
    if let Some(r) = &s.smime_p12_password {
        if !(r.starts_with("env:") || r.starts_with("file:")) {
            return Err(invalid(
                "smime_p12_password: a secret reference, env:NAME or file:PATH (never the password itself)",
            ));
        }
    }
    if s.smime_p12.is_some() && (s.smime_cert.is_some() || s.smime_key.is_some()) {
        return Err(invalid(
            "S/MIME: smime_p12, or smime_cert with smime_key, not both",
        ));
    }
    if s.smime_p12_password.is_some() && s.smime_p12.is_none() {
        return Err(invalid("smime_p12_password: only with smime_p12"));
    }
    if s.smime_wanted() {
        smime_state(&s, base).map_err(|e| invalid(format!("S/MIME: {e}")))?;
    }
    serde_json::to_value(&s).map_err(|e| invalid(format!("smtp settings: {e}")))
}

fn from_address(s: &SmtpSettings) -> Result<String, String> {
    s.from
        .parse::<Mailbox>()
        .map(|m| m.email.to_string())
        .map_err(|e| format!("from: {e}"))
}

impl SmtpSettings {
    fn smime_wanted(&self) -> bool {
        self.smime_cert.is_some() || self.smime_key.is_some() || self.smime_p12.is_some()
    }

    /// Runs `f` with the S/MIME identity of these settings (the PKCS#12
    /// password resolved for this use only).
    fn with_identity<T>(
        &self,
        base: &Path,
        f: impl FnOnce(&super::smime::Identity<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        use super::smime::Identity;
        match (&self.smime_p12, &self.smime_cert, &self.smime_key) {
            (Some(file), None, None) => {
                let password = match &self.smime_p12_password {
                    Some(r) => Some(
                        mft_config::secret::resolve(r, base)
                            .map_err(|e| format!("smime_p12_password: {e}"))?
                            .0,
                    ),
                    None => None,
                };
                let password = password
                    .as_ref()
                    .map(|p| p.expose().trim_end_matches(['\r', '\n']))
                    .unwrap_or("");
                f(&Identity::Pkcs12 { file, password })
            }
            (None, Some(cert), Some(key)) => f(&Identity::Pem { cert, key }),
            (None, None, None) => Err("certificate missing".into()),
            (None, _, _) => Err("smime_cert and smime_key go together".into()),
            (Some(_), _, _) => Err("smime_p12, or smime_cert with smime_key, not both".into()),
        }
    }
}

/// The S/MIME certificate's state: "certificate ready ..." or why not.
pub fn smime_state(s: &SmtpSettings, base: &Path) -> Result<String, String> {
    let from = from_address(s)?;
    s.with_identity(base, |id| super::smime::check(id, base, &from))
}

/// The stored settings' S/MIME state, `None` without S/MIME.
pub fn smime_of(settings: &serde_json::Value, base: &Path) -> Option<Result<String, String>> {
    let s: SmtpSettings = serde_json::from_value(settings.clone()).ok()?;
    s.smime_wanted().then(|| smime_state(&s, base))
}

/// When the stored settings' S/MIME certificate ends; `None` without one
/// (or when it cannot be read: `ready` tells why).
pub fn smime_not_after(settings: &serde_json::Value, base: &Path) -> Option<std::time::SystemTime> {
    let s: SmtpSettings = serde_json::from_value(settings.clone()).ok()?;
    if !s.smime_wanted() {
        return None;
    }
    s.with_identity(base, |id| super::smime::not_after(id, base))
        .ok()
}

/// Whether `address` is a valid recipient mailbox.
pub fn check_address(address: &str) -> Result<(), String> {
    address
        .parse::<Mailbox>()
        .map(drop)
        .map_err(|e| e.to_string())
}

fn load_ca(path: &Path, base: &Path) -> Result<Certificate, TransportError> {
    let full = base.join(path);
    let pem =
        std::fs::read(&full).map_err(|e| invalid(format!("ca_file {}: {e}", full.display())))?;
    Certificate::from_pem(&pem).map_err(|e| {
        invalid(format!(
            "ca_file {}: not PEM certificates: {e}",
            full.display()
        ))
    })
}

/// Sends `message` through the provider; the server's final answer.
/// One connection per message, from `source_address` when set (which
/// lettre's pooled transport cannot bind, hence its connection directly).
pub async fn send(
    record: &TransportRecord,
    secret: Option<&Secret>,
    message: &OutboundMessage<'_>,
    base: &Path,
) -> Result<String, TransportError> {
    let s: SmtpSettings = serde_json::from_value(record.settings.clone())
        .map_err(|e| invalid(format!("stored smtp settings: {e}")))?;
    let mail = build(&s, message, base)?;
    let host = s.host.trim_start_matches('[').trim_end_matches(']');
    let params = match s.tls {
        TlsMode::None => None,
        _ => {
            let mut params = TlsParameters::builder(host.to_string());
            if let Some(ca) = &s.ca_file {
                params = params.add_root_certificate(load_ca(ca, base)?);
            }
            Some(
                params
                    .build_rustls()
                    .map_err(|e| TransportError::Send(format!("TLS setup: {e}")))?,
            )
        }
    };
    let (wrapper, starttls) = match s.tls {
        TlsMode::Implicit => (params, None),
        _ => (None, params),
    };
    let credentials = match (&s.username, secret) {
        (Some(user), Some(password)) => Some(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        )),
        (Some(_), None) => return Err(invalid("username set but no password stored")),
        _ => None,
    };
    let hello = s
        .ehlo_name
        .clone()
        .map(ClientId::Domain)
        .unwrap_or_default();
    let failed = |e: lettre::transport::smtp::Error| {
        TransportError::Send(format!("{}:{}: {}", s.host, s.port(), error_text(&e)))
    };
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (host, s.port()),
        Some(TIMEOUT),
        &hello,
        wrapper,
        s.source_address,
    )
    .await
    .map_err(failed)?;
    // STARTTLS is required, never opportunistic: a server without it fails.
    if let Some(params) = starttls {
        conn.starttls(params, &hello).await.map_err(failed)?;
    }
    if let Some(credentials) = &credentials {
        conn.auth(DEFAULT_MECHANISMS, credentials)
            .await
            .map_err(failed)?;
    }
    let response = conn
        .send(mail.envelope(), &mail.formatted())
        .await
        .map_err(failed)?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = conn.quit().await;
    let text: Vec<&str> = response.message().collect();
    Ok(format!("{} {}", response.code(), text.join(" ")))
}

/// lettre's error; its Display already names the source, and no secret.
fn error_text(e: &lettre::transport::smtp::Error) -> String {
    e.to_string()
}

/// The body: text, or text and HTML as multipart/alternative.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

fn body_of(m: &OutboundMessage<'_>) -> Body {
    match m.html {
        None => Body::Single(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(m.text.to_string()),
        ),
        Some(html) => Body::Multi(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(m.text.to_string()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.to_string()),
                ),
        ),
    }
}

/// `body` wrapped in multipart/signed (RFC 8551 §3.5.3): the signature
/// covers the first part exactly as it is sent, headers included, up to
/// the CRLF before the boundary (lettre writes CRLF line ends and a 7-bit
/// safe transfer encoding).
fn signed(body: Body, signer: &super::smime::Signer) -> Result<MultiPart, TransportError> {
    let mut content = match &body {
        Body::Single(p) => p.formatted(),
        Body::Multi(p) => p.formatted(),
    };
    if content.ends_with(b"\r\n") {
        content.truncate(content.len() - 2);
    }
    let cms = signer.sign(&content)?;
    let signature = SinglePart::builder()
        .header(
            ContentType::parse("application/pkcs7-signature; name=\"smime.p7s\"")
                .map_err(|e| TransportError::Send(format!("S/MIME: {e}")))?,
        )
        .header(ContentTransferEncoding::Base64)
        .header(ContentDisposition::attachment("smime.p7s"))
        .body(cms);
    let outer = MultiPart::signed(
        "application/pkcs7-signature".to_string(),
        "sha-256".to_string(),
    );
    Ok(match body {
        Body::Single(p) => outer.singlepart(p),
        Body::Multi(p) => outer.multipart(p),
    }
    .singlepart(signature))
}

fn build(
    s: &SmtpSettings,
    m: &OutboundMessage<'_>,
    base: &Path,
) -> Result<Message, TransportError> {
    let from: Mailbox = s.from.parse().map_err(|e| invalid(format!("from: {e}")))?;
    let mut b = Message::builder().from(from).subject(m.subject);
    if let Some(r) = &s.reply_to {
        b = b.reply_to(r.parse().map_err(|e| invalid(format!("reply_to: {e}")))?);
    }
    if m.to.is_empty() {
        return Err(invalid("to: at least one recipient"));
    }
    for to in m.to {
        b = b.to(to.parse().map_err(|e| invalid(format!("to {to:?}: {e}")))?);
    }
    let body = body_of(m);
    let built = if s.smime_wanted() {
        let from = from_address(s).map_err(invalid)?;
        // Checked at every send: an expired certificate or a replaced key
        // stops the message (retried) instead of sending it unsigned.
        let (signer, _) = s
            .with_identity(base, |id| {
                super::smime::load(id, base, &from, std::time::SystemTime::now())
            })
            .map_err(|e| TransportError::Send(format!("S/MIME: {e}")))?;
        b.multipart(signed(body, &signer)?)
    } else {
        match body {
            Body::Single(p) => b.singlepart(p),
            Body::Multi(p) => b.multipart(p),
        }
    };
    built.map_err(|e| invalid(format!("message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let base = Path::new(".");
        let ok = check_settings(
            serde_json::json!({"host": "smtp.example", "from": "MFT <mft@ourcorp.example>"}),
            base,
        )
        .unwrap();
        assert_eq!(ok["tls"], "starttls");
        for bad in [
            serde_json::json!({"host": "smtp.example", "from": "mft@ourcorp.example", "tls": "none"}),
            serde_json::json!({"host": "smtp.example", "from": "not an address"}),
            serde_json::json!({"host": "smtp.example", "from": "a@b.example", "verify": false}),
            serde_json::json!({"host": "smtp.example", "from": "a@b.example", "ca_file": "/nonexistent.pem"}),
        ] {
            assert!(check_settings(bad.clone(), base).is_err(), "{bad}");
        }
        assert!(check_settings(
            serde_json::json!({"host": "127.0.0.1", "from": "a@b.example", "tls": "none"}),
            base
        )
        .is_ok());
    }
}
