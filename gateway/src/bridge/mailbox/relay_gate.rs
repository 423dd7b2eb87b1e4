//! Keeps spoofed mail out of partner organisations.
//!
//! A polled message's sender is its `From:` field, which whoever e-mails the
//! mailbox writes. Its recipients in a trust partner's domains would be
//! relayed to that partner as if our user had sent the files. Unless the
//! mailbox may relay and the sender passes its checks
//! ([`mft_filters::trust::mail_sender`]), those recipients are taken off the
//! delivery before it is made; the rest is delivered as usual. The relay
//! checks the mailbox setting again when it reads the feed.

use crate::audit::AuditRecord;
use crate::bridge::pipeline::DeliveryRequest;
use crate::bridge::BridgeContext;
use mft_config::mailbox::Connection;
use mft_filters::trust::domain_rules::split_recipients;
use mft_filters::trust::mail_sender::{self, MailboxRelayPolicy, RelayRefusal};
use mft_protocols::mime::ParsedMessage;

/// Why the gate could not decide or left nothing to deliver.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The key store (partner domains) cannot be read: try the message again.
    #[error("cannot read the trust partners: {0}")]
    Store(String),
    /// Every recipient is a partner's and relaying was refused.
    #[error(
        "every recipient is in a trust partner's domains and the message may not be relayed: {0}"
    )]
    NothingLeft(RelayRefusal),
}

/// The mailbox's relay policy as the filters take it.
pub fn policy(conn: &Connection) -> MailboxRelayPolicy<'_> {
    MailboxRelayPolicy {
        enabled: conn.relay.enabled,
        senders: &conn.relay.senders,
        authserv_id: conn.relay.authserv_id.as_deref(),
    }
}

/// Removes the partner recipients from `request` unless the message may be
/// relayed; a removal is audited (`mailbox_relay`, deny) with the reason.
pub async fn apply(
    ctx: &BridgeContext,
    conn: &Connection,
    origin: &str,
    msg: &ParsedMessage,
    request: &mut DeliveryRequest<'_>,
) -> Result<(), GateError> {
    let ours = &ctx.config.organization.email_domains;
    // Only addresses outside our own domains can be a partner's: most
    // messages never need the store.
    let outside = request.recipients.iter().any(|r| {
        mft_filters::trust::domain_rules::domain_of(r)
            .is_none_or(|d| !ours.iter().any(|o| o.eq_ignore_ascii_case(&d)))
    });
    if !outside {
        return Ok(());
    }
    let refusal =
        match mail_sender::check(&policy(conn), &request.sender, &msg.authentication_results) {
            Ok(()) => return Ok(()),
            Err(r) => r,
        };
    let partners = ctx
        .store
        .list_partners()
        .await
        .map_err(|e| GateError::Store(e.to_string()))?;
    let domains: Vec<(String, Vec<String>)> = partners
        .into_iter()
        .map(|p| (p.name, p.email_domains))
        .collect();
    let split = split_recipients(&request.recipients, ours, &domains);
    if split.relay.is_empty() {
        return Ok(());
    }
    let removed: usize = split.relay.iter().map(|(_, r)| r.len()).sum();
    let partners: Vec<&str> = split.relay.iter().map(|(p, _)| p.as_str()).collect();
    tracing::warn!(mailbox = %origin, removed, partners = ?partners, reason = refusal.reason(),
        "partner recipients removed from a polled message: {refusal}");
    let mut r = AuditRecord::new("mailbox_relay");
    r.principal = Some(origin.to_string());
    r.decision = Some("deny");
    r.reason = Some(
        format!(
            "{}: {removed} recipient(s) of partner(s) {} not relayed",
            refusal.reason(),
            partners.join(",")
        )
        .into(),
    );
    ctx.audit.record(r);
    request.recipients = split.local;
    if request.recipients.is_empty() {
        return Err(GateError::NothingLeft(refusal));
    }
    Ok(())
}
