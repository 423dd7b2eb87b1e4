//! `[[notify]]`: notification rules, the gateway's own events sent through a
//! transport provider (docs/transports.md). Events watched by the gateway
//! (a mailbox not polled, a certificate expiring, a ban storm, a growing
//! spool) carry their threshold on the rule.

use crate::convert::Ctx;
use crate::defaults::notify as defaults;
use serde::Deserialize;
use std::time::Duration;

/// The events a rule may name.
pub const EVENTS: &[&str] = &[
    "credit_low",
    "relay_failed",
    "mailbox_stale",
    "certificate_expiring",
    "ban_storm",
    "spool_growing",
];

/// `[[notify]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    /// One of [`EVENTS`].
    pub event: Option<String>,
    /// The transport provider's name.
    pub provider: Option<String>,
    /// Recipients (addresses for the provider's type).
    #[serde(default)]
    pub to: Vec<String>,
    /// At most one message per event kind per this period (default 1h).
    pub period: Option<String>,
    /// `mailbox_stale`: no successful poll for this long.
    pub stale_after: Option<String>,
    /// `certificate_expiring`: a certificate ends within this.
    pub expires_within: Option<String>,
    /// `ban_storm`: this many bans ...
    pub bans: Option<u32>,
    /// ... within this window.
    pub window: Option<String>,
    /// `spool_growing`: the SMTP spool holds at least this many messages ...
    pub spool_depth: Option<u64>,
    /// ... or has grown without shrinking for this long.
    pub growing_for: Option<String>,
}

/// What makes a watched event fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Raised where it happens (`credit_low`, `relay_failed`).
    Raised,
    /// A mailbox without a successful poll for `after`.
    MailboxStale {
        /// `stale_after`.
        after: Duration,
    },
    /// A TLS (also ACME) or S/MIME certificate ending within `within`.
    CertificateExpiring {
        /// `expires_within`.
        within: Duration,
    },
    /// At least `bans` defender bans within `window`.
    BanStorm {
        /// `bans`.
        bans: u32,
        /// `window`.
        window: Duration,
    },
    /// The SMTP spool at `depth` messages or more, or growing (never
    /// shrinking, not empty) for `growing_for`.
    SpoolGrowing {
        /// `spool_depth`.
        depth: u64,
        /// `growing_for`.
        growing_for: Duration,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// The event.
    pub event: String,
    /// The provider.
    pub provider: String,
    /// Recipients.
    pub to: Vec<String>,
    /// At most one message per event kind per period.
    pub period: Duration,
    /// The event's threshold.
    pub trigger: Trigger,
}

/// Which event each threshold key belongs to.
const THRESHOLDS: &[(&str, &str)] = &[
    ("stale_after", "mailbox_stale"),
    ("expires_within", "certificate_expiring"),
    ("bans", "ban_storm"),
    ("window", "ban_storm"),
    ("spool_depth", "spool_growing"),
    ("growing_for", "spool_growing"),
];

fn trigger(event: &str, r: NotifyFile, i: usize, ctx: &mut Ctx<'_>) -> Option<Trigger> {
    let key = |k: &str| format!("notify[{i}].{k}");
    let given = [
        ("stale_after", r.stale_after.is_some()),
        ("expires_within", r.expires_within.is_some()),
        ("bans", r.bans.is_some()),
        ("window", r.window.is_some()),
        ("spool_depth", r.spool_depth.is_some()),
        ("growing_for", r.growing_for.is_some()),
    ];
    let mut misplaced = false;
    for (name, set) in given {
        let owner = THRESHOLDS
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, e)| *e);
        if set && owner != event {
            ctx.error(&key(name), format!("only for event {owner}"));
            misplaced = true;
        }
    }
    if misplaced {
        return None;
    }
    Some(match event {
        "mailbox_stale" => Trigger::MailboxStale {
            after: ctx.duration(&key("stale_after"), r.stale_after, defaults::STALE_AFTER),
        },
        "certificate_expiring" => Trigger::CertificateExpiring {
            within: ctx.duration(
                &key("expires_within"),
                r.expires_within,
                defaults::EXPIRES_WITHIN,
            ),
        },
        "ban_storm" => {
            let bans = r.bans.unwrap_or(defaults::BANS);
            if bans == 0 {
                ctx.error(&key("bans"), "must be greater than zero");
                return None;
            }
            Trigger::BanStorm {
                bans,
                window: ctx.duration(&key("window"), r.window, defaults::WINDOW),
            }
        }
        "spool_growing" => {
            let depth = r.spool_depth.unwrap_or(defaults::SPOOL_DEPTH);
            if depth == 0 {
                ctx.error(&key("spool_depth"), "must be greater than zero");
                return None;
            }
            Trigger::SpoolGrowing {
                depth,
                growing_for: ctx.duration(
                    &key("growing_for"),
                    r.growing_for,
                    defaults::GROWING_FOR,
                ),
            }
        }
        _ => Trigger::Raised,
    })
}

pub(crate) fn convert(rules: Vec<NotifyFile>, ctx: &mut Ctx<'_>) -> Vec<Notify> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, mut r) in rules.into_iter().enumerate() {
        let key = |k: &str| format!("notify[{i}].{k}");
        let event = match r.event.take() {
            Some(e) if EVENTS.contains(&e.as_str()) => e,
            Some(e) => {
                ctx.error(
                    &key("event"),
                    format!("{e:?}: one of {}", EVENTS.join(", ")),
                );
                continue;
            }
            None => {
                ctx.error(
                    &key("event"),
                    format!("missing: one of {}", EVENTS.join(", ")),
                );
                continue;
            }
        };
        let provider = match r.provider.take() {
            Some(p) if !p.is_empty() => p,
            _ => {
                ctx.error(&key("provider"), "missing: a transport provider's name");
                continue;
            }
        };
        if r.to.is_empty() || r.to.len() > 100 {
            ctx.error(&key("to"), "1 to 100 recipients");
            continue;
        }
        let to = std::mem::take(&mut r.to);
        let period = ctx.duration(&key("period"), r.period.take(), defaults::PERIOD);
        let Some(trigger) = trigger(&event, r, i, ctx) else {
            continue;
        };
        out.push(Notify {
            event,
            provider,
            to,
            period,
            trigger,
        });
    }
    out
}
