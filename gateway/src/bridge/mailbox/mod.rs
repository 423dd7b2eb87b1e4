//! What the IMAP and POP3 pollers share: TLS to the mail server, the field
//! mapping from a parsed message to a delivery, metrics, audit records,
//! the reconnect backoff and the temporary message files.

pub mod connect;
pub mod mapping;
pub mod metrics;
pub mod relay_gate;
pub mod tls;
pub mod tmpfile;

/// First reconnect delay after a failed session.
pub const RECONNECT_INITIAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest reconnect delay: a restarted mail server is found again within it.
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// A poller's reconnect delays ([`crate::backoff`]): a mail server that is
/// down is not hammered, and never less than half the first delay apart.
pub fn reconnect_backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX, RECONNECT_INITIAL / 2)
}

use crate::audit::{AuditLog, AuditRecord};

/// Records a mailbox event (`skipped`, `failed`) in the audit trail.
/// `detail` must not contain secrets: callers pass UIDs and error texts.
pub fn audit(audit: &AuditLog, mailbox: &str, decision: &'static str, detail: String) {
    let mut r = AuditRecord::new("mailbox");
    r.principal = Some(mailbox.to_string());
    r.decision = Some(decision);
    r.reason = Some(detail.into());
    audit.record(r);
}

/// The OAuth2 token source of a mailbox that logs in with XOAUTH2; `None`
/// for a password login.
pub fn token_source(
    conn: &mft_config::mailbox::Connection,
) -> Result<Option<super::oauth2::TokenSource>, String> {
    match &conn.auth {
        mft_config::mailbox::MailboxAuth::Password(_) => Ok(None),
        mft_config::mailbox::MailboxAuth::OAuth2(o) => {
            super::oauth2::TokenSource::new(o, conn.command_timeout)
                .map(Some)
                .map_err(|e| format!("{}: {e}", conn.name))
        }
    }
}
