//! What the IMAP and POP3 pollers share: TLS to the mail server, the field
//! mapping from a parsed message to a delivery, metrics, audit records and
//! the reconnect backoff.

pub mod backoff;
pub mod connect;
pub mod mapping;
pub mod metrics;
pub mod tls;

use crate::audit::{AuditLog, AuditRecord};

/// Records a mailbox event (`skipped`, `failed`) in the audit trail.
/// `detail` must not contain secrets: callers pass UIDs and error texts.
pub fn audit(audit: &AuditLog, mailbox: &str, decision: &'static str, detail: String) {
    let mut r = AuditRecord::new("mailbox");
    r.principal = Some(mailbox.to_string());
    r.decision = Some(decision);
    r.reason = Some(detail);
    audit.record(r);
}
