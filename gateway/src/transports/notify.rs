//! `[[notify]]` rules: the gateway's own events (`credit_low`,
//! `relay_failed` where they happen; the watched ones from `watch`) queued
//! as messages through a transport provider, at most one per rule and
//! event kind per the rule's `period`, also across restarts and gateways
//! sharing the store.

use super::outbox::Content;
use crate::audit::{AuditLog, AuditRecord};
use crate::store::Store;
use mft_config::notify::Notify;
use mft_config::Config;
use std::sync::Arc;

/// Raises events; cheap to share.
pub struct Notifier {
    store: Store,
    config: Arc<Config>,
    audit: AuditLog,
}

impl Notifier {
    /// A notifier over the rules of `config`.
    pub fn new(store: Store, config: Arc<Config>, audit: AuditLog) -> Notifier {
        Notifier {
            store,
            config,
            audit,
        }
    }

    /// Raises `event`: every rule for it whose period has passed queues one
    /// message; each is audited (`event` `notify`).
    pub async fn raise(&self, event: &str, subject: &str, text: &str) {
        for (i, rule) in self.config.notify.iter().enumerate() {
            if rule.event == event {
                self.queue(i, rule, subject, text).await;
            }
        }
    }

    /// Raises the event of rule `index` for that rule alone (a watched
    /// event, whose threshold is the rule's own).
    pub async fn raise_rule(&self, index: usize, subject: &str, text: &str) {
        if let Some(rule) = self.config.notify.get(index) {
            self.queue(index, rule, subject, text).await;
        }
    }

    async fn queue(&self, i: usize, rule: &Notify, subject: &str, text: &str) {
        let event = rule.event.as_str();
        // One message per event kind, provider and recipients per period.
        let key = format!("{event}|{}|{}", rule.provider, rule.to.join(","));
        match self.store.claim_notification(&key, rule.period).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(rule = i, event, error = %e, "cannot claim a notification");
                return;
            }
        }
        let content = Content {
            to: rule.to.clone(),
            subject: format!("mft-gateway ({}): {subject}", self.config.organization.name),
            text: text.to_string(),
            html: None,
        };
        let queued = super::outbox::accept(&self.store, Some(&rule.provider), None, content).await;
        let mut record = AuditRecord::new("notify");
        record.principal = Some(format!("transport:{}", rule.provider));
        match queued {
            Ok(id) => {
                tracing::info!(rule = i, event, message_id = %id, "notification queued");
                record.decision = Some("allow");
                record.reason =
                    Some(format!("notify[{i}] {event}: queued as {id}: {subject}").into());
            }
            Err(e) => {
                tracing::warn!(rule = i, event, error = %e, "notification not queued");
                record.decision = Some("deny");
                record.reason = Some(format!("notify[{i}] {event}: not queued: {e}").into());
            }
        }
        self.audit.record(record);
    }
}
