//! May a polled mailbox's message be relayed to a partner organisation?
//!
//! A mailbox poller takes the sender from the message's `From:` field, which
//! anyone who can send e-mail to the mailbox writes as they like. Relaying
//! such a delivery to a partner would let a stranger deliver files there as
//! `ceo@ourcorp`. So a mailbox relays only when its operator said so
//! (`relay_to_partners`), only for senders on its allow-list, and, where our
//! own MX stamps its verdict (`Authentication-Results`, RFC 8601, with the
//! configured authserv-id), only when that verdict is a pass aligned with
//! the `From:` domain.

use super::domain_rules::domain_of;

/// Why a message may not be relayed to partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    /// The mailbox is not allowed to relay (`relay_to_partners` is off).
    #[error("this mailbox may not relay to partners (relay_to_partners is off)")]
    NotEnabled,
    /// The sender is not on the mailbox's `relay_senders` list.
    #[error("the sender is not in this mailbox's relay_senders")]
    SenderNotAllowed,
    /// Our MX's Authentication-Results show no aligned DKIM, SPF or DMARC pass.
    #[error("the sender is not authenticated by our MX (no aligned dkim, spf or dmarc pass)")]
    NotAuthenticated,
}

impl RelayRefusal {
    /// Short reason for the audit trail and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayRefusal::NotEnabled => "relay_not_enabled",
            RelayRefusal::SenderNotAllowed => "sender_not_allowed",
            RelayRefusal::NotAuthenticated => "sender_not_authenticated",
        }
    }
}

/// What a mailbox's configuration says about relaying.
#[derive(Debug, Clone, Copy)]
pub struct MailboxRelayPolicy<'a> {
    /// `relay_to_partners`.
    pub enabled: bool,
    /// `relay_senders`: addresses, or `@domain` for a whole domain.
    pub senders: &'a [String],
    /// `trusted_authserv_id`: the authserv-id our MX writes; `None` when no
    /// MX verdict is required.
    pub authserv_id: Option<&'a str>,
}

/// Whether `sender` matches an allow-list entry: an address (exact, case
/// insensitive) or `@domain` (the domain exactly; subdomains not implied).
pub fn sender_listed(senders: &[String], sender: &str) -> bool {
    let sender = sender.trim();
    let Some(domain) = domain_of(sender) else {
        return false;
    };
    senders.iter().any(|entry| match entry.strip_prefix('@') {
        Some(d) => d.eq_ignore_ascii_case(&domain),
        None => entry.eq_ignore_ascii_case(sender),
    })
}

/// The decision for one message: `sender` as mapped, `auth_results` the
/// values of its `Authentication-Results` fields, top first.
pub fn check(
    policy: &MailboxRelayPolicy<'_>,
    sender: &str,
    auth_results: &[String],
) -> Result<(), RelayRefusal> {
    if !policy.enabled {
        return Err(RelayRefusal::NotEnabled);
    }
    if !sender_listed(policy.senders, sender) {
        return Err(RelayRefusal::SenderNotAllowed);
    }
    let Some(authserv_id) = policy.authserv_id else {
        return Ok(());
    };
    let Some(domain) = domain_of(sender) else {
        return Err(RelayRefusal::SenderNotAllowed);
    };
    // Only our MX's own field counts, and only the topmost one it wrote:
    // anything below it came with the message and may be forged.
    let ours = auth_results
        .iter()
        .filter_map(|v| parse(v))
        .find(|r| r.authserv_id.eq_ignore_ascii_case(authserv_id));
    match ours {
        Some(r) if r.aligned_pass(&domain) => Ok(()),
        _ => Err(RelayRefusal::NotAuthenticated),
    }
}

/// One parsed `Authentication-Results` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// Who wrote it.
    pub authserv_id: String,
    /// `(method, result, properties)` in order, lower-cased.
    pub results: Vec<MethodResult>,
}

/// One `method=result prop=value ...` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// `dkim`, `spf`, `dmarc`, ...
    pub method: String,
    /// `pass`, `fail`, `none`, ...
    pub result: String,
    /// `header.d=example.com` etc. as `(name, value)`.
    pub properties: Vec<(String, String)>,
}

impl AuthResults {
    /// A pass whose identity is the From domain: DMARC (which checked the
    /// alignment itself, `header.from`), DKIM with `header.d`, or SPF with
    /// `smtp.mailfrom` in that domain.
    fn aligned_pass(&self, from_domain: &str) -> bool {
        self.results.iter().any(|m| {
            if m.result != "pass" {
                return false;
            }
            let prop_domain = |name: &str| {
                m.properties
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.rsplit_once('@').map_or(v.as_str(), |(_, d)| d))
                    .is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(from_domain))
            };
            match m.method.as_str() {
                "dmarc" => prop_domain("header.from"),
                "dkim" => prop_domain("header.d") || prop_domain("header.i"),
                "spf" => prop_domain("smtp.mailfrom"),
                _ => false,
            }
        })
    }
}

/// Parses an `Authentication-Results` value (RFC 8601 section 2.2), leniently:
/// comments dropped, quoted values unquoted. `None` without an authserv-id.
pub fn parse(value: &str) -> Option<AuthResults> {
    let text = strip_comments(value);
    let mut parts = text.split(';');
    let head = parts.next()?.trim();
    // The authserv-id may be followed by a version number.
    let authserv_id = head.split_whitespace().next()?.to_string();
    if authserv_id.contains('=') {
        return None;
    }
    let mut results = Vec::new();
    for stmt in parts {
        let mut words = stmt.split_whitespace();
        let Some(first) = words.next() else { continue };
        let Some((method, result)) = first.split_once('=') else {
            continue;
        };
        // `dkim/1=pass`: a method version.
        let method = method.split('/').next().unwrap_or(method);
        let mut properties = Vec::new();
        for w in words {
            if let Some((n, v)) = w.split_once('=') {
                properties.push((n.to_ascii_lowercase(), v.trim_matches('"').to_string()));
            }
        }
        results.push(MethodResult {
            method: method.to_ascii_lowercase(),
            result: result.to_ascii_lowercase(),
            properties,
        });
    }
    Some(AuthResults {
        authserv_id,
        results,
    })
}

/// Removes RFC 5322 comments (nested parentheses), outside quoted strings.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const ALLOWED: &[&str] = &["billing@ourcorp.example", "@reports.ourcorp.example"];

    fn policy<'a>(senders: &'a [String], id: Option<&'a str>) -> MailboxRelayPolicy<'a> {
        MailboxRelayPolicy {
            enabled: true,
            senders,
            authserv_id: id,
        }
    }

    #[test]
    fn off_by_default_refuses_everyone() {
        let s = v(ALLOWED);
        let p = MailboxRelayPolicy {
            enabled: false,
            senders: &s,
            authserv_id: None,
        };
        assert_eq!(
            check(&p, "billing@ourcorp.example", &[]),
            Err(RelayRefusal::NotEnabled)
        );
    }

    #[test]
    fn allow_list_by_address_and_domain() {
        let s = v(ALLOWED);
        let p = policy(&s, None);
        assert_eq!(check(&p, "Billing@OurCorp.example", &[]), Ok(()));
        assert_eq!(check(&p, "any@reports.ourcorp.example", &[]), Ok(()));
        for spoof in [
            "ceo@ourcorp.example",
            "billing@ourcorp.example.evil",
            "x@sub.reports.ourcorp.example",
            "billing@ourcorp.example@evil.example",
            "not an address",
        ] {
            assert_eq!(
                check(&p, spoof, &[]),
                Err(RelayRefusal::SenderNotAllowed),
                "{spoof}"
            );
        }
    }

    #[test]
    fn our_mx_verdict_must_be_an_aligned_pass() {
        let s = v(ALLOWED);
        let p = policy(&s, Some("mx.ourcorp.example"));
        let sender = "billing@ourcorp.example";
        let pass = |ar: &str| check(&p, sender, &v(&[ar]));
        assert_eq!(
            pass("mx.ourcorp.example; dkim=pass (good sig) header.d=ourcorp.example header.s=s1"),
            Ok(())
        );
        assert_eq!(
            pass("mx.ourcorp.example 1; spf=pass smtp.mailfrom=bounce@ourcorp.example"),
            Ok(())
        );
        assert_eq!(
            pass("MX.OurCorp.example; dmarc=pass header.from=ourcorp.example"),
            Ok(())
        );
        let refused = Err(RelayRefusal::NotAuthenticated);
        // No field, a failing one, a pass for another domain, another server's pass.
        assert_eq!(check(&p, sender, &[]), refused);
        assert_eq!(
            pass("mx.ourcorp.example; dkim=fail header.d=ourcorp.example"),
            refused
        );
        assert_eq!(
            pass("mx.ourcorp.example; dkim=pass header.d=evil.example; spf=softfail smtp.mailfrom=ourcorp.example"),
            refused
        );
        assert_eq!(
            pass("mx.evil.example; dkim=pass header.d=ourcorp.example"),
            refused
        );
        // A comment cannot smuggle a pass in.
        assert_eq!(
            pass("mx.ourcorp.example; dkim=fail (dkim=pass header.d=ourcorp.example) header.d=ourcorp.example"),
            refused
        );
        // Only the topmost field of our MX counts: a forged pass below it does not.
        assert_eq!(
            check(
                &p,
                sender,
                &v(&[
                    "mx.ourcorp.example; dkim=none; spf=fail smtp.mailfrom=ourcorp.example",
                    "mx.ourcorp.example; dkim=pass header.d=ourcorp.example",
                ])
            ),
            refused
        );
    }

    #[test]
    fn parse_handles_versions_and_quotes() {
        let r = parse("mx.example 1; dkim/1=PASS header.d=\"a.example\"; none").unwrap();
        assert_eq!(r.authserv_id, "mx.example");
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].method, "dkim");
        assert_eq!(r.results[0].result, "pass");
        assert_eq!(
            r.results[0].properties,
            vec![("header.d".to_string(), "a.example".to_string())]
        );
        assert_eq!(parse("dkim=pass"), None);
        assert_eq!(parse(""), None);
    }
}
