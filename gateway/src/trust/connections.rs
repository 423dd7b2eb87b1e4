//! Managing connections, shared by the `partners` CLI and the admin API so
//! both check input the same way.

use super::outbound::{self, PingError, PingReport};
use super::seal::Sealer;
use crate::store::partners::{OutboundKey, PartnerRecord};
use crate::store::Store;
use anyhow::Context;
use mft_config::Config;
use mft_filters::auth::partner_key;
use std::path::Path;

/// Adds a connection after checking its URL and domains; returns the record
/// and the key for the partner (shown once).
pub async fn add(
    store: &Store,
    cfg: &Config,
    name: &str,
    url: &str,
    email_domains: &[String],
) -> anyhow::Result<(PartnerRecord, String)> {
    let url = check_url(url)?;
    let domains = check_domains(email_domains, &cfg.organization.email_domains)?;
    Ok(store.add_partner(name, &url, &domains).await?)
}

/// How an admin hands over the partner's key.
pub enum KeyInput<'a> {
    /// The key itself: stored sealed.
    Key(&'a str),
    /// A secret reference: stored as is, resolved at use.
    Reference(&'a str),
}

/// Checks `input` and turns it into what the store keeps for connection `name`.
pub fn outbound_key(cfg: &Config, name: &str, input: KeyInput<'_>) -> anyhow::Result<OutboundKey> {
    match input {
        KeyInput::Reference(r) => {
            // Resolve once now so a typo shows here, not at the first relay.
            let base = cfg.source.parent().unwrap_or(Path::new("."));
            let (secret, _) = mft_config::secret::resolve(r, base)
                .map_err(|e| anyhow::anyhow!("key reference: {e}"))?;
            check_key(secret.expose().trim())?;
            Ok(OutboundKey::Reference(r.to_string()))
        }
        KeyInput::Key(key) => {
            let key = key.trim();
            check_key(key)?;
            let secret = cfg.trust.encryption_key.as_ref().context(
                "[trust] encryption_key is not set: set it to store partner keys encrypted, \
                 or give a secret reference (env:NAME, file:PATH)",
            )?;
            Ok(OutboundKey::Sealed(
                Sealer::new(secret)?.seal(name, key.as_bytes())?,
            ))
        }
    }
}

/// Pings the partner with the key they gave us.
pub async fn test(cfg: &Config, partner: &PartnerRecord) -> Result<PingReport, PingError> {
    let key = outbound::their_key_for(partner, cfg)?;
    let http = outbound::http_client(cfg).map_err(|e| PingError::Unreachable(e.to_string()))?;
    outbound::ping(&http, partner, &key, cfg.trust.max_clock_skew).await
}

fn check_url(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("url {url:?}"))?;
    if parsed.scheme() != "https" || parsed.host_str().is_none() {
        anyhow::bail!("url must be https://HOST[:PORT] (the partner's public gateway)");
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

fn check_domains(domains: &[String], ours: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for d in domains {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) || !d.contains('.') {
            anyhow::bail!("email domain {d:?} is not a domain name");
        }
        if ours.contains(&d) {
            anyhow::bail!(
                "email domain {d}: that is one of our organization.email_domains; give the partner's domains"
            );
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.is_empty() {
        anyhow::bail!("at least one of the partner's e-mail domains is needed");
    }
    Ok(out)
}

fn check_key(key: &str) -> anyhow::Result<()> {
    partner_key::parse(key).map(drop).map_err(|_| {
        anyhow::anyhow!("not a partner key (mgp_<id>_<secret>, as printed by their `partners add`)")
    })
}
