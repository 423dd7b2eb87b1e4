//! Sender binding: which delivery senders an API key may use.
//!
//! A key without a binding may name any sender in `POST /api/v1/deliveries`
//! (the public contract). A key created with `--allowed-senders` may only
//! name a sender its list allows: an address (`ops@ourcorp.example`, case
//! insensitive) or every address of one domain (`*@billing.ourcorp.example`;
//! subdomains are not implied). The proxy reads the delivery's JSON before
//! forwarding it (bounded by [`MAX_DELIVERY_JSON`]) and asks [`check_delivery`].

use crate::decision::Rejection;
use crate::problem_types as pt;
use serde::Deserialize;
use thiserror::Error;

/// Largest delivery body read for a bound key (413 beyond).
pub const MAX_DELIVERY_JSON: usize = 64 * 1024;

/// Most entries one binding may have.
pub const MAX_ENTRIES: usize = 64;

/// Longest entry (an e-mail address is at most 254 octets).
const MAX_ENTRY_LEN: usize = 254;

/// Why an allowed-senders list is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SenderListError {
    /// No entry at all.
    #[error("the allowed-senders list is empty")]
    Empty,
    /// Too many entries.
    #[error("at most {MAX_ENTRIES} allowed senders")]
    TooMany,
    /// One entry is neither an address nor `*@domain`.
    #[error("{0:?} is neither an e-mail address nor *@domain")]
    Invalid(String),
}

/// One allowed sender.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// An exact address, lower case.
    Address(String),
    /// Every address `*@domain`, domain in lower case.
    Domain(String),
}

/// A key's allowed senders, parsed and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderBinding {
    entries: Vec<Entry>,
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"()<>[]\\,;:\"@*".contains(c))
}

fn parse_entry(raw: &str) -> Result<Entry, SenderListError> {
    let invalid = || SenderListError::Invalid(raw.chars().take(80).collect());
    if raw.len() > MAX_ENTRY_LEN {
        return Err(invalid());
    }
    let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
    let domain = domain.to_lowercase();
    if !valid_domain(&domain) {
        return Err(invalid());
    }
    if local == "*" {
        return Ok(Entry::Domain(domain));
    }
    if !valid_local(local) {
        return Err(invalid());
    }
    Ok(Entry::Address(format!("{}@{domain}", local.to_lowercase())))
}

impl SenderBinding {
    /// Parses a list separated by commas and/or white space
    /// (`"ops@ourcorp.example, *@billing.ourcorp.example"`).
    pub fn parse(list: &str) -> Result<SenderBinding, SenderListError> {
        let mut entries = Vec::new();
        for raw in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let entry = parse_entry(raw)?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
            if entries.len() > MAX_ENTRIES {
                return Err(SenderListError::TooMany);
            }
        }
        if entries.is_empty() {
            return Err(SenderListError::Empty);
        }
        Ok(SenderBinding { entries })
    }

    /// A binding that allows no sender at all (a stored list that no longer
    /// parses must not open the key to every sender).
    pub fn nobody() -> SenderBinding {
        SenderBinding {
            entries: Vec::new(),
        }
    }

    /// The list in its canonical form, comma-separated, as stored and shown.
    pub fn canonical(&self) -> String {
        self.entries().collect::<Vec<_>>().join(",")
    }

    /// Each entry in canonical form.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.iter().map(|e| match e {
            Entry::Address(a) => a.clone(),
            Entry::Domain(d) => format!("*@{d}"),
        })
    }

    /// Whether `sender` (trimmed, as the backend trims it) is allowed.
    pub fn allows(&self, sender: &str) -> bool {
        let sender = sender.trim();
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return false;
        };
        if local.is_empty() || domain.is_empty() {
            return false;
        }
        let (sender, domain) = (sender.to_lowercase(), domain.to_lowercase());
        self.entries.iter().any(|e| match e {
            Entry::Address(a) => *a == sender,
            Entry::Domain(d) => *d == domain,
        })
    }
}

/// The one field of a delivery the binding needs. Parsed like the backend
/// parses the whole body (serde: a repeated `sender` is an error, escapes
/// are decoded), so the gateway checks the sender the backend will store.
#[derive(Deserialize)]
struct DeliverySender {
    sender: String,
}

/// 403 `sender-not-allowed`.
pub fn sender_not_allowed() -> Rejection {
    Rejection::new(
        403,
        pt::SENDER_NOT_ALLOWED,
        "this credential may not send deliveries as this sender",
        "sender_not_allowed",
    )
}

/// Checks a delivery's JSON body against `binding`: 400 when the body is
/// not a JSON object with a string `sender`, 403 when the sender is not
/// allowed.
pub fn check_delivery(binding: &SenderBinding, body: &[u8]) -> Result<(), Rejection> {
    let parsed: DeliverySender = serde_json::from_slice(body).map_err(|_| {
        Rejection::bad_request(
            "this credential is bound to its senders: the delivery must be a JSON object \
             with a string \"sender\""
                .to_string(),
            "sender_unreadable",
        )
    })?;
    if binding.allows(&parsed.sender) {
        Ok(())
    } else {
        Err(sender_not_allowed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let b = SenderBinding::parse(
            " Ops@OurCorp.Example,*@Billing.ourcorp.example  ops@ourcorp.example",
        )
        .unwrap();
        assert_eq!(
            b.canonical(),
            "ops@ourcorp.example,*@billing.ourcorp.example"
        );
        assert_eq!(SenderBinding::parse(" , "), Err(SenderListError::Empty));
        for bad in [
            "ops",
            "*@",
            "@x.example",
            "a*b@x.example",
            "a@-x.example",
            "a@x..example",
            "*@*.x.example",
            "a b@x",
        ] {
            assert!(SenderBinding::parse(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES)
            .map(|i| format!("u{i}@x.example"))
            .collect();
        assert_eq!(
            SenderBinding::parse(&many.join(",")),
            Err(SenderListError::TooMany)
        );
    }

    #[test]
    fn allows_addresses_and_whole_domains_only() {
        let b = SenderBinding::parse("ops@ourcorp.example,*@billing.ourcorp.example").unwrap();
        assert!(b.allows("ops@ourcorp.example"));
        assert!(b.allows(" OPS@OurCorp.example "));
        assert!(b.allows("anyone@billing.ourcorp.example"));
        assert!(!b.allows("ceo@ourcorp.example"));
        assert!(!b.allows("x@sub.billing.ourcorp.example"));
        assert!(!b.allows("x@billing.ourcorp.example.evil"));
        assert!(!b.allows("ops@ourcorp.example@evil.example"));
        assert!(!b.allows("@billing.ourcorp.example"));
        assert!(!b.allows(""));
        assert!(!SenderBinding::nobody().allows("ops@ourcorp.example"));
    }

    #[test]
    fn checks_the_sender_the_backend_will_read() {
        let b = SenderBinding::parse("ops@ourcorp.example").unwrap();
        assert!(check_delivery(&b, br#"{"sender":"ops@ourcorp.example","recipients":[]}"#).is_ok());
        // Escapes decode like the backend decodes them.
        assert!(check_delivery(&b, br#"{"sender":"ops\u0040ourcorp.example"}"#).is_ok());
        let r = check_delivery(&b, br#"{"sender":"ceo@ourcorp.example"}"#).unwrap_err();
        assert_eq!((r.status, r.problem_type), (403, pt::SENDER_NOT_ALLOWED));
        for bad in [
            &br#"{"recipients":[]}"#[..],
            br#"{"sender":7}"#,
            br#"[]"#,
            b"not json",
            // The backend refuses a repeated field; so do we, whichever comes last.
            br#"{"sender":"ops@ourcorp.example","sender":"ceo@ourcorp.example"}"#,
        ] {
            assert_eq!(check_delivery(&b, bad).unwrap_err().status, 400);
        }
    }
}
