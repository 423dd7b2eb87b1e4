//! Every SMTP reply the listener sends, in one place (RFC 5321 codes with
//! RFC 3463 enhanced status codes), so the wording and codes stay consistent.

/// Greeting and EHLO lines are built from the host name; everything else is fixed.
pub const OK: &str = "250 2.0.0 OK\r\n";
pub const SENDER_OK: &str = "250 2.1.0 Sender OK\r\n";
pub const RECIPIENT_OK: &str = "250 2.1.5 Recipient OK\r\n";
pub const START_DATA: &str = "354 Start mail input; end with <CRLF>.<CRLF>\r\n";
pub const START_TLS: &str = "220 2.0.0 Ready to start TLS\r\n";
pub const AUTH_OK: &str = "235 2.7.0 Authentication successful\r\n";
pub const VRFY: &str =
    "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
pub const HELP: &str = "214 2.0.0 See RFC 5321\r\n";
pub const BYE: &str = "221 2.0.0 Bye\r\n";

pub const AUTH_USERNAME: &str = "334 VXNlcm5hbWU6\r\n";
pub const AUTH_PASSWORD: &str = "334 UGFzc3dvcmQ6\r\n";
pub const AUTH_CONTINUE: &str = "334 \r\n";

pub const BUSY: &str = "421 4.7.0 Too many connections, try again later\r\n";
pub const TIMEOUT: &str = "421 4.4.2 Timeout, closing connection\r\n";
pub const CREDENTIAL_REVOKED: &str =
    "421 4.7.0 The credential of this session was revoked, closing connection\r\n";
pub const TIME_LIMIT: &str = "421 4.4.2 Session or DATA time limit reached, closing connection\r\n";
pub const BUSY_CLIENT: &str =
    "421 4.7.0 Too many connections from your address, try again later\r\n";
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 Too many errors, closing connection\r\n";
pub const TOO_MANY_AUTH_FAILURES: &str = "421 4.7.0 Too many failed authentications\r\n";
pub const INSUFFICIENT_STORAGE: &str = "452 4.3.1 Insufficient system storage\r\n";
pub const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Too many recipients\r\n";
pub const AUTH_TEMPFAIL: &str = "454 4.7.0 Temporary authentication failure\r\n";
pub const TLS_UNAVAILABLE: &str = "454 4.7.0 TLS not available\r\n";
pub const SPOOL_FAILED: &str = "451 4.3.0 Message could not be queued, try again later\r\n";
/// `audit.on_failure = "deny"` while the audit trail cannot be written.
pub const AUDIT_UNAVAILABLE: &str =
    "451 4.3.0 Audit trail unavailable, message not accepted, try again later\r\n";

pub const UNKNOWN_COMMAND: &str = "500 5.5.2 Command not recognised\r\n";
pub const LINE_TOO_LONG: &str = "500 5.5.6 Line too long\r\n";
pub const AUTH_CANCELLED: &str = "501 5.0.0 Authentication cancelled\r\n";
pub const AUTH_SYNTAX: &str = "501 5.5.2 Cannot decode the authentication response\r\n";
pub const BAD_SENDER_SYNTAX: &str = "501 5.1.7 Bad sender address syntax\r\n";
pub const BAD_RECIPIENT_SYNTAX: &str = "501 5.1.3 Bad recipient address syntax\r\n";
pub const NOT_IMPLEMENTED: &str = "502 5.5.1 Command not implemented\r\n";
pub const NEED_EHLO: &str = "503 5.5.1 Send EHLO first\r\n";
pub const NEED_MAIL: &str = "503 5.5.1 Need MAIL first\r\n";
pub const NEED_RCPT: &str = "503 5.5.1 Need RCPT first\r\n";
pub const NESTED_MAIL: &str = "503 5.5.1 Sender already specified\r\n";
pub const ALREADY_AUTHENTICATED: &str = "503 5.5.1 Already authenticated\r\n";
pub const AUTH_IN_TRANSACTION: &str = "503 5.5.1 AUTH not allowed during a mail transaction\r\n";
pub const ALREADY_TLS: &str = "503 5.5.1 TLS already active\r\n";
pub const MECHANISM_UNSUPPORTED: &str = "504 5.5.4 Authentication mechanism not supported\r\n";
pub const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required\r\n";
pub const AUTH_FAILED: &str = "535 5.7.8 Authentication credentials invalid\r\n";
pub const ENCRYPTION_REQUIRED: &str =
    "538 5.7.11 Encryption required for requested authentication mechanism\r\n";
pub const RECIPIENT_NOT_LOCAL: &str =
    "550 5.1.1 Recipient not in this organisation's e-mail domains\r\n";
pub const SENDER_NOT_ALLOWED: &str = "550 5.7.1 Sender domain not allowed\r\n";
pub const SENDER_NOT_BOUND: &str = "550 5.7.1 Sender not allowed for this credential\r\n";
pub const MESSAGE_TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed maximum message size\r\n";
pub const SENDER_REQUIRED: &str = "553 5.1.7 A sender address is required\r\n";
pub const ACCESS_DENIED: &str = "554 5.7.1 Access denied\r\n";
pub const UNPARSEABLE: &str = "554 5.6.0 Message cannot be parsed\r\n";
pub const TOO_MANY_ATTACHMENTS: &str =
    "552 5.3.4 Too many attachments in one message (see max_attachments)\r\n";
pub const INSUFFICIENT_SCOPE: &str =
    "550 5.7.1 Your credential may not store files or make deliveries (missing scope)\r\n";

/// `220 <host> ESMTP` greeting.
pub fn greeting(hostname: &str) -> String {
    format!("220 {hostname} ESMTP mft-gateway\r\n")
}

/// `421 4.3.2` (RFC 3463: system not accepting network messages): the
/// gateway is shutting down; sent between messages, never during DATA.
pub fn shutting_down(hostname: &str) -> String {
    format!("421 4.3.2 {hostname} Service shutting down, try again later\r\n")
}

/// `250 <host>` for HELO.
pub fn helo(hostname: &str) -> String {
    format!("250 {hostname}\r\n")
}

/// The EHLO reply: STARTTLS only before TLS, AUTH only after it (RFC 3207, 4954).
pub fn ehlo(hostname: &str, max_size: usize, tls: bool, authenticated: bool) -> String {
    let mut lines = vec![
        hostname.to_string(),
        format!("SIZE {max_size}"),
        "PIPELINING".into(),
        "8BITMIME".into(),
        "SMTPUTF8".into(),
        "ENHANCEDSTATUSCODES".into(),
    ];
    if !tls {
        lines.push("STARTTLS".into());
    } else if !authenticated {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

/// `250 2.0.0 OK queued as <id>`.
pub fn queued(id: &str) -> String {
    format!("250 2.0.0 OK queued as {id}\r\n")
}

/// 501 for a syntax error smtp-proto reported.
pub fn syntax(what: &str) -> String {
    format!("501 5.5.4 Syntax: {what}\r\n")
}

/// 555 for a MAIL/RCPT parameter we do not support.
pub fn unsupported_parameter(param: &str) -> String {
    let param: String = param
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!("555 5.5.4 Unsupported parameter {param}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_offers_starttls_before_and_auth_after_tls() {
        let plain = ehlo("mx.example", 1024, false, false);
        assert!(plain.starts_with("250-mx.example\r\n"));
        assert!(plain.ends_with("250 STARTTLS\r\n"));
        assert!(!plain.contains("AUTH"));
        let tls = ehlo("mx.example", 1024, true, false);
        assert!(tls.contains("250-SIZE 1024\r\n"));
        assert!(!tls.contains("STARTTLS"));
        assert!(tls.ends_with("250 AUTH PLAIN LOGIN\r\n"));
        let done = ehlo("mx.example", 1024, true, true);
        assert!(done.ends_with("250 ENHANCEDSTATUSCODES\r\n"));
    }
}
