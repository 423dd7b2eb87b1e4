//! The credit check of prepaid providers (`sms`, `threema`): at start and
//! then daily, each provider's balance is asked for, recorded in the store,
//! exported as `mft_transport_credits{provider}` and audited; below the
//! provider's `credit_threshold` one warning a day (across gateways on one
//! store) is queued through `credit_warn_via` to `credit_warn_to`.

use super::outbox::Content;
use crate::audit::{AuditLog, AuditRecord};
use crate::store::transports::TransportRecord;
use crate::store::Store;
use mft_config::Config;
use prometheus::{GaugeVec, Opts};
use std::sync::Arc;
use std::time::Duration;

/// How often the balances are checked.
pub const PERIOD: Duration = Duration::from_secs(24 * 3600);
/// At most one warning per provider in this period.
pub const WARN_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// The worker; one per gateway process.
pub struct CreditCheck {
    store: Store,
    config: Arc<Config>,
    audit: AuditLog,
    gauge: GaugeVec,
    notifier: Option<Arc<super::notify::Notifier>>,
}

/// What one check found.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The balance is at or above the threshold (or none is set).
    Enough(f64),
    /// Below the threshold: the warning was queued (message id).
    Warned(f64, String),
    /// Below the threshold, warned already in the period.
    AlreadyWarned(f64),
}

impl CreditCheck {
    /// A worker; registers the gauge on `registry`.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        audit: AuditLog,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<CreditCheck> {
        let gauge = GaugeVec::new(
            Opts::new(
                "mft_transport_credits",
                "Balance of a prepaid transport provider at its last credit check.",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(CreditCheck {
            store,
            config,
            audit,
            gauge,
            notifier: None,
        })
    }

    /// `[[notify]]` rules for `credit_low` are raised through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<super::notify::Notifier>) -> CreditCheck {
        self.notifier = Some(notifier);
        self
    }

    /// Checks at start, then every [`PERIOD`], until the shutdown.
    pub async fn run(self: Arc<Self>, drain: crate::drain::Drain) {
        while !drain.is_stopping() {
            self.round().await;
            if !drain.sleep(PERIOD).await {
                return;
            }
        }
    }

    async fn round(&self) {
        let list = match self.store.list_transports().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "credit check: cannot list transports");
                return;
            }
        };
        for t in list
            .iter()
            .filter(|t| matches!(t.kind.as_str(), "sms" | "threema"))
        {
            // One provider's failure is audited and does not stop the others.
            let _ = self.check(t).await;
        }
    }

    /// Checks one provider now.
    pub async fn check(&self, t: &TransportRecord) -> Result<Outcome, String> {
        let mut record = AuditRecord::new("transport_credits");
        record.principal = Some(format!("transport:{}", t.name));
        let result = self.check_inner(t).await;
        match &result {
            Ok(outcome) => {
                record.decision = Some("allow");
                record.reason = Some(
                    match outcome {
                        Outcome::Enough(c) => format!("credits {c}"),
                        Outcome::Warned(c, id) => {
                            format!("credits {c} below threshold; warning queued as {id}")
                        }
                        Outcome::AlreadyWarned(c) => {
                            format!("credits {c} below threshold; warned already today")
                        }
                    }
                    .into(),
                );
            }
            Err(e) => {
                record.decision = Some("deny");
                record.reason = Some(format!("credit check failed: {e}").into());
                tracing::warn!(transport = %t.name, error = %e, "credit check failed");
            }
        }
        self.audit.record(record);
        result
    }

    async fn check_inner(&self, t: &TransportRecord) -> Result<Outcome, String> {
        let text = super::query_credits(t, &self.config)
            .await
            .map_err(|e| e.to_string())?;
        let credits: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("credits {text:?} are not a number"))?;
        self.gauge.with_label_values(&[&t.name]).set(credits);
        self.store
            .transport_credits(&t.name, text.trim())
            .await
            .map_err(|e| e.to_string())?;
        let threshold = t.settings.get("credit_threshold").and_then(|v| v.as_f64());
        if let (Some(threshold), Some(n)) = (threshold, &self.notifier) {
            if credits < threshold {
                n.raise(
                    "credit_low",
                    &format!("transport {} credit low", t.name),
                    &format!(
                        "Transport {} ({}) has {credits} credits left, below the threshold of {threshold}.\n",
                        t.name, t.kind
                    ),
                )
                .await;
            }
        }
        let via = t.settings.get("credit_warn_via").and_then(|v| v.as_str());
        let to = t.settings.get("credit_warn_to").and_then(|v| v.as_str());
        let (Some(threshold), Some(via), Some(to)) = (threshold, via, to) else {
            return Ok(Outcome::Enough(credits));
        };
        if credits >= threshold {
            return Ok(Outcome::Enough(credits));
        }
        if !self
            .store
            .claim_credit_warning(&t.name, WARN_PERIOD)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Outcome::AlreadyWarned(credits));
        }
        let content = Content {
            to: vec![to.to_string()],
            subject: format!("mft-gateway: transport {} credit low", t.name),
            text: format!(
                "Transport {} ({}) of {} has {credits} credits left, below the threshold of {threshold}. Top it up before messages fail.\n",
                t.name, t.kind, self.config.organization.name
            ),
            html: None,
        };
        super::outbox::accept(&self.store, Some(via), None, content)
            .await
            .map(|id| Outcome::Warned(credits, id))
            .map_err(|e| format!("warning through {via}: {e}"))
    }
}
