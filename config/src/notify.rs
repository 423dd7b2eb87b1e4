//! `[[notify]]`: notification rules, the gateway's own events sent through a
//! transport provider (docs/transports.md).

use crate::convert::Ctx;
use serde::Deserialize;
use std::time::Duration;

/// The events a rule may name (the ones the gateway raises so far).
pub const EVENTS: &[&str] = &["credit_low", "relay_failed"];

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
}

pub(crate) fn convert(rules: Vec<NotifyFile>, ctx: &mut Ctx<'_>) -> Vec<Notify> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.into_iter().enumerate() {
        let key = |k: &str| format!("notify[{i}].{k}");
        let event = match r.event {
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
        let provider = match r.provider {
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
        let period = ctx.duration(&key("period"), r.period, crate::defaults::notify::PERIOD);
        out.push(Notify {
            event,
            provider,
            to: r.to,
            period,
        });
    }
    out
}
