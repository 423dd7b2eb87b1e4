//! Domain rules of the trust network.
//!
//! Inbound: a partner may deliver only from an address in **its** domains to
//! addresses in **our** domains (a recipient need not exist yet: the backend
//! creates them). Outbound: a local delivery's recipients are split into our
//! own and, per connection, those in a partner's domains.
//!
//! Domains match exactly, case-insensitively, on the part after the last
//! `@`; subdomains are not implied (`sales.acme.example` is not
//! `acme.example`), so a partner cannot claim a neighbour's subdomain.

/// A broken inbound rule; the variant names the rule for the 403 problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// Not an e-mail address.
    #[error("{field}: {address:?} is not an e-mail address")]
    Malformed {
        /// `sender` or `recipients[i]`.
        field: String,
        /// The value.
        address: String,
    },
    /// The sender is outside the partner's domains.
    #[error("sender {address} is not in this connection's e-mail domains")]
    SenderDomain {
        /// The sender.
        address: String,
    },
    /// A recipient is outside our domains.
    #[error("{field}: {address} is not in our organisation's e-mail domains")]
    RecipientDomain {
        /// `recipients[i]`.
        field: String,
        /// The recipient.
        address: String,
    },
    /// No recipient at all.
    #[error("a delivery needs at least one recipient")]
    NoRecipients,
}

impl RuleViolation {
    /// Short name of the rule, for the problem type and the audit record.
    pub fn rule(&self) -> &'static str {
        match self {
            RuleViolation::Malformed { .. } => "malformed-address",
            RuleViolation::SenderDomain { .. } => "sender-domain",
            RuleViolation::RecipientDomain { .. } => "recipient-domain",
            RuleViolation::NoRecipients => "no-recipients",
        }
    }
}

/// The lower-cased domain of `address`, if it looks like one.
pub fn domain_of(address: &str) -> Option<String> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains(|c: char| c.is_whitespace() || c == '@' || c.is_control())
    {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

fn in_domains(domain: &str, domains: &[String]) -> bool {
    domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// Checks an inbound partner delivery.
pub fn check_inbound(
    sender: &str,
    recipients: &[String],
    partner_domains: &[String],
    our_domains: &[String],
) -> Result<(), RuleViolation> {
    let sender_domain = domain_of(sender).ok_or_else(|| RuleViolation::Malformed {
        field: "sender".into(),
        address: sender.to_string(),
    })?;
    if !in_domains(&sender_domain, partner_domains) {
        return Err(RuleViolation::SenderDomain {
            address: sender.trim().to_string(),
        });
    }
    if recipients.is_empty() {
        return Err(RuleViolation::NoRecipients);
    }
    for (i, r) in recipients.iter().enumerate() {
        let field = format!("recipients[{i}]");
        let domain = domain_of(r).ok_or_else(|| RuleViolation::Malformed {
            field: field.clone(),
            address: r.clone(),
        })?;
        if !in_domains(&domain, our_domains) {
            return Err(RuleViolation::RecipientDomain {
                field,
                address: r.trim().to_string(),
            });
        }
    }
    Ok(())
}

/// Where a local delivery's recipients go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecipientSplit {
    /// Recipients delivered by our own backend (our domains, and any address
    /// no connection claims).
    pub local: Vec<String>,
    /// Per connection name, the recipients to relay to that partner.
    pub relay: Vec<(String, Vec<String>)>,
}

/// Splits `recipients` between our backend and partners; `partners` is
/// `(connection name, its domains)`. Our own domains win over a partner's.
pub fn split_recipients(
    recipients: &[String],
    our_domains: &[String],
    partners: &[(String, Vec<String>)],
) -> RecipientSplit {
    let mut split = RecipientSplit::default();
    for r in recipients {
        let partner = domain_of(r).and_then(|d| {
            if in_domains(&d, our_domains) {
                None
            } else {
                partners.iter().find(|(_, ds)| in_domains(&d, ds))
            }
        });
        match partner {
            Some((name, _)) => match split.relay.iter_mut().find(|(n, _)| n == name) {
                Some((_, list)) => list.push(r.clone()),
                None => split.relay.push((name.clone(), vec![r.clone()])),
            },
            None => split.local.push(r.clone()),
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn inbound_accepts_partner_sender_to_our_recipients() {
        let ours = v(&["acme.example"]);
        let theirs = v(&["beta.example"]);
        assert_eq!(
            check_inbound(
                "Anna@Beta.Example",
                &v(&["new.colleague@ACME.example"]),
                &theirs,
                &ours
            ),
            Ok(())
        );
    }

    #[test]
    fn inbound_names_the_broken_rule() {
        let ours = v(&["acme.example"]);
        let theirs = v(&["beta.example"]);
        let spoofed = check_inbound("ceo@acme.example", &v(&["x@acme.example"]), &theirs, &ours);
        assert_eq!(spoofed.unwrap_err().rule(), "sender-domain");
        let sub = check_inbound(
            "a@sales.beta.example",
            &v(&["x@acme.example"]),
            &theirs,
            &ours,
        );
        assert_eq!(sub.unwrap_err().rule(), "sender-domain");
        let outside = check_inbound(
            "a@beta.example",
            &v(&["x@acme.example", "y@gamma.example"]),
            &theirs,
            &ours,
        )
        .unwrap_err();
        assert_eq!(outside.rule(), "recipient-domain");
        assert!(outside.to_string().contains("recipients[1]"));
        assert_eq!(
            check_inbound("a@beta.example", &[], &theirs, &ours).unwrap_err(),
            RuleViolation::NoRecipients
        );
        assert_eq!(
            check_inbound("not-an-address", &v(&["x@acme.example"]), &theirs, &ours)
                .unwrap_err()
                .rule(),
            "malformed-address"
        );
        assert_eq!(
            check_inbound(
                "a@beta.example",
                &v(&["x@acme.example@evil.example"]),
                &theirs,
                &ours
            )
            .unwrap_err()
            .rule(),
            "recipient-domain"
        );
    }

    #[test]
    fn split_sends_partner_domains_to_their_connection() {
        let ours = v(&["acme.example"]);
        let partners = vec![
            ("beta".to_string(), v(&["beta.example", "beta.test"])),
            ("gamma".to_string(), v(&["gamma.example"])),
        ];
        let s = split_recipients(
            &v(&[
                "a@acme.example",
                "b@Beta.Example",
                "c@gamma.example",
                "d@beta.test",
                "e@unknown.example",
            ]),
            &ours,
            &partners,
        );
        assert_eq!(s.local, v(&["a@acme.example", "e@unknown.example"]));
        assert_eq!(
            s.relay,
            vec![
                ("beta".to_string(), v(&["b@Beta.Example", "d@beta.test"])),
                ("gamma".to_string(), v(&["c@gamma.example"])),
            ]
        );
    }
}
