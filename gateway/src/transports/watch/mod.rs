//! The watched `[[notify]]` events: a task that looks, at short intervals,
//! at what the gateway already measures (the metrics registry: mailbox
//! polls, served certificates, the SMTP spool; the defender's ban count;
//! the smtp providers' S/MIME certificates) and raises `mailbox_stale`,
//! `certificate_expiring`, `ban_storm` and `spool_growing` for each rule
//! whose threshold is crossed. The notifier keeps each rule to one message
//! per period, across restarts and gateways.

pub mod bans;
pub mod certs;
pub mod mailbox;
pub mod spool;

use super::notify::Notifier;
use crate::store::Store;
use mft_config::notify::Trigger;
use mft_config::Config;
use mft_filters::defender::Defender;
use prometheus::proto::MetricFamily;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Bounds of the interval between looks: never busier than this ...
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// ... and never slower than this.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// S/MIME certificates are read from their files at most this often.
const SMIME_INTERVAL: Duration = Duration::from_secs(3600);

/// The watcher; one per gateway process.
pub struct Watcher {
    notifier: Arc<Notifier>,
    config: Arc<Config>,
    store: Store,
    registry: prometheus::Registry,
    defender: Option<Arc<Defender>>,
}

/// What the watcher remembers between looks.
struct State {
    started: SystemTime,
    bans: bans::BanSamples,
    spool: spool::SpoolTrend,
    smime: Vec<certs::Cert>,
    smime_read: Option<Instant>,
}

/// The interval between looks for `rules`: a quarter of the shortest
/// threshold, so an event is seen soon after it is due; `None` without a
/// watched rule.
fn interval(rules: &[mft_config::notify::Notify]) -> Option<Duration> {
    rules
        .iter()
        .filter_map(|r| match r.trigger {
            Trigger::Raised => None,
            Trigger::MailboxStale { after } => Some(after / 4),
            Trigger::CertificateExpiring { .. } => Some(MAX_INTERVAL),
            Trigger::BanStorm { window, .. } => Some(window / 4),
            Trigger::SpoolGrowing { growing_for, .. } => Some(growing_for / 4),
        })
        .min()
        .map(|d| d.clamp(MIN_INTERVAL, MAX_INTERVAL))
}

fn series(families: &[MetricFamily], name: &str) -> Vec<(String, f64)> {
    crate::admin::overview::series_values(families, name)
        .into_iter()
        .map(|(labels, v)| {
            let label = labels
                .into_iter()
                .find(|(k, _)| k == "mailbox" || k == "name")
                .map(|(_, v)| v)
                .unwrap_or_default();
            (label, v)
        })
        .collect()
}

impl Watcher {
    /// A watcher over the rules of `config`.
    pub fn new(
        notifier: Arc<Notifier>,
        config: Arc<Config>,
        store: Store,
        registry: prometheus::Registry,
        defender: Option<Arc<Defender>>,
    ) -> Watcher {
        Watcher {
            notifier,
            config,
            store,
            registry,
            defender,
        }
    }

    /// Looks until the shutdown starts; returns at once without a watched
    /// rule.
    pub async fn run(self, drain: crate::drain::Drain) {
        let Some(every) = interval(&self.config.notify) else {
            return;
        };
        let longest_window = self
            .config
            .notify
            .iter()
            .filter_map(|r| match r.trigger {
                Trigger::BanStorm { window, .. } => Some(window),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let mut state = State {
            started: SystemTime::now(),
            bans: bans::BanSamples::new(longest_window),
            spool: spool::SpoolTrend::default(),
            smime: Vec::new(),
            smime_read: None,
        };
        while drain.sleep(every).await {
            self.look(&mut state).await;
        }
    }

    async fn look(&self, state: &mut State) {
        let now = SystemTime::now();
        let tick = Instant::now();
        let families = self.registry.gather();
        let bans_now = self.defender.as_ref().map(|d| d.bans_issued());
        if let Some(n) = bans_now {
            state.bans.sample(tick, n);
        }
        let depth = series(&families, "mft_smtp_spool_depth")
            .first()
            .map(|(_, v)| *v as u64);
        let spool = depth.map(|d| state.spool.sample(tick, d));
        let wants_certs = self
            .config
            .notify
            .iter()
            .any(|r| matches!(r.trigger, Trigger::CertificateExpiring { .. }));
        if wants_certs
            && state
                .smime_read
                .is_none_or(|t| t.elapsed() >= SMIME_INTERVAL)
        {
            state.smime = self.smime_certs().await;
            state.smime_read = Some(tick);
        }
        for (i, rule) in self.config.notify.iter().enumerate() {
            let raised = match rule.trigger {
                Trigger::Raised => None,
                Trigger::MailboxStale { after } => {
                    let boxes: Vec<(String, i64)> =
                        series(&families, "mft_mailbox_last_success_timestamp_seconds")
                            .into_iter()
                            .map(|(m, v)| (m, v as i64))
                            .collect();
                    stale_message(&mailbox::stale(&boxes, state.started, now, after), after)
                }
                Trigger::CertificateExpiring { within } => {
                    let mut all: Vec<certs::Cert> =
                        series(&families, "mft_tls_certificate_expiry_seconds")
                            .into_iter()
                            .map(|(name, secs)| certs::Cert {
                                what: format!("TLS certificate {name}"),
                                // A gauge holds any float: no panic on NaN or huge values.
                                not_after: if secs >= 0.0 {
                                    Duration::try_from_secs_f64(secs)
                                        .ok()
                                        .and_then(|d| now.checked_add(d))
                                        .unwrap_or(now)
                                } else {
                                    Duration::try_from_secs_f64(-secs)
                                        .ok()
                                        .and_then(|d| now.checked_sub(d))
                                        .unwrap_or(SystemTime::UNIX_EPOCH)
                                },
                            })
                            .collect();
                    all.extend(state.smime.iter().cloned());
                    expiring_message(&certs::expiring(&all, now, within), now, within)
                }
                Trigger::BanStorm { bans, window } => {
                    let n = state.bans.within(window);
                    (bans_now.is_some() && n >= u64::from(bans)).then(|| {
                        (
                            format!(
                                "{n} clients banned within {}",
                                humantime::format_duration(window)
                            ),
                            format!(
                                "The defender banned {n} client addresses within the last {} \
                                 (this rule warns at {bans}): repeated failed logins, probably \
                                 a password-guessing campaign. The bans are in the audit trail \
                                 (event \"ban\").\n",
                                humantime::format_duration(window)
                            ),
                        )
                    })
                }
                Trigger::SpoolGrowing { depth, growing_for } => spool
                    .filter(|s| s.fires(depth, growing_for))
                    .map(|s| spool_message(&s, depth)),
            };
            if let Some((subject, text)) = raised {
                self.notifier.raise_rule(i, &subject, &text).await;
            }
        }
    }

    /// The S/MIME certificates of the smtp providers.
    async fn smime_certs(&self) -> Vec<certs::Cert> {
        let list = match self.store.list_transports().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list transports for their S/MIME certificates");
                return Vec::new();
            }
        };
        let base = super::config_base(&self.config);
        list.iter()
            .filter(|t| t.kind == "smtp")
            .filter_map(|t| {
                let not_after = super::smtp::smime_not_after(&t.settings, base)?;
                Some(certs::Cert {
                    what: format!("S/MIME certificate of transport {}", t.name),
                    not_after,
                })
            })
            .collect()
    }
}

fn stale_message(stale: &[mailbox::Stale], after: Duration) -> Option<(String, String)> {
    let first = stale.first()?;
    let subject = if stale.len() == 1 {
        format!(
            "mailbox {} not polled for {}",
            first.mailbox,
            humantime::format_duration(after)
        )
    } else {
        format!(
            "{} mailboxes not polled for {}",
            stale.len(),
            humantime::format_duration(after)
        )
    };
    let mut text = String::new();
    for s in stale {
        let since = match s.last_success {
            Some(t) => format!(
                "last successful poll {}",
                humantime::format_rfc3339_seconds(t)
            ),
            None => "no successful poll since the gateway started".to_string(),
        };
        text.push_str(&format!(
            "Mailbox {}: {since}, {} ago.\n",
            s.mailbox,
            humantime::format_duration(Duration::from_secs(s.for_.as_secs()))
        ));
    }
    text.push_str("See mft-gateway check and the gateway's log for why.\n");
    Some((subject, text))
}

fn expiring_message(
    found: &[certs::Cert],
    now: SystemTime,
    within: Duration,
) -> Option<(String, String)> {
    let first = found.first()?;
    let subject = if found.len() == 1 {
        certs::describe(first, now)
    } else {
        format!(
            "{} certificates expire within {}",
            found.len(),
            humantime::format_duration(within)
        )
    };
    let mut text: String = found
        .iter()
        .map(|c| format!("{}.\n", certs::describe(c, now)))
        .collect();
    text.push_str("Renew them before they end (docs/operations.md).\n");
    Some((subject, text))
}

fn spool_message(s: &spool::SpoolState, depth: u64) -> (String, String) {
    let subject = format!("SMTP spool holds {} messages", s.depth);
    let growth = match s.growing {
        Some((d, by)) => format!(
            " It grew by {by} without shrinking in the last {}.",
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        ),
        None => String::new(),
    };
    let text = format!(
        "The SMTP bridge's spool holds {} messages accepted and not yet delivered to the \
         backend (this rule warns at {depth}).{growth} Is the backend reachable? See \
         mft_smtp_spool_depth and the gateway's log.\n",
        s.depth
    );
    (subject, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mft_config::notify::Notify;

    fn rule(trigger: Trigger) -> Notify {
        Notify {
            event: "x".into(),
            provider: "mail".into(),
            to: vec!["ops@example.org".into()],
            period: Duration::from_secs(3600),
            trigger,
        }
    }

    #[test]
    fn looks_at_a_quarter_of_the_shortest_threshold_within_bounds() {
        assert_eq!(interval(&[rule(Trigger::Raised)]), None);
        let rules = [
            rule(Trigger::MailboxStale {
                after: Duration::from_secs(120),
            }),
            rule(Trigger::BanStorm {
                bans: 3,
                window: Duration::from_secs(600),
            }),
        ];
        assert_eq!(interval(&rules), Some(Duration::from_secs(30)));
        let fast = [rule(Trigger::SpoolGrowing {
            depth: 1,
            growing_for: Duration::from_millis(100),
        })];
        assert_eq!(interval(&fast), Some(MIN_INTERVAL));
        let slow = [rule(Trigger::CertificateExpiring {
            within: Duration::from_secs(86_400),
        })];
        assert_eq!(interval(&slow), Some(MAX_INTERVAL));
    }

    #[test]
    fn messages_name_what_fired() {
        let stale = vec![mailbox::Stale {
            mailbox: "imap:inbox".into(),
            last_success: None,
            for_: Duration::from_secs(125),
        }];
        let (subject, text) = stale_message(&stale, Duration::from_secs(120)).unwrap();
        assert_eq!(subject, "mailbox imap:inbox not polled for 2m");
        assert!(
            text.contains("no successful poll since the gateway started, 2m 5s ago"),
            "{text}"
        );
        assert!(stale_message(&[], Duration::from_secs(1)).is_none());
        let (subject, text) = spool_message(
            &spool::SpoolState {
                depth: 7,
                growing: Some((Duration::from_secs(90), 4)),
            },
            5,
        );
        assert_eq!(subject, "SMTP spool holds 7 messages");
        assert!(
            text.contains("grew by 4 without shrinking in the last 1m 30s"),
            "{text}"
        );
    }
}
