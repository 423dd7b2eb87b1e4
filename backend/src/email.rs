//! A deliberately simple e-mail address check for delivery parties.
//!
//! Full RFC 5321 syntax (quoted local parts, address literals) is not
//! accepted: such addresses do not occur among the senders and recipients
//! the gateway hands over, and refusing them keeps every stored address
//! safe to put in a header or a log line.

/// Longest address (RFC 5321 path limit minus the angle brackets).
const MAX_ADDRESS: usize = 254;
/// Longest local part (RFC 5321 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest domain label.
const MAX_LABEL: usize = 63;

/// Whether `s` looks like `local@domain`. Non-ASCII letters are allowed
/// (SMTPUTF8, internationalised domains); spaces, controls and the
/// RFC 5322 specials are not.
pub fn is_address(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_ADDRESS {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    valid_local(local) && valid_domain(domain)
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"()<>[]\\,;:\"@".contains(c))
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_addresses() {
        for a in [
            "a@x",
            "alice@example.com",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "jörg@müller.de",
        ] {
            assert!(is_address(a), "{a}");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        for a in [
            "",
            "plain",
            "@example.com",
            "alice@",
            "a@b@c",
            "al ice@example.com",
            "alice@exa mple.com",
            ".alice@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example..com",
            "<alice@example.com>",
            "alice@example.com\r\nBcc: x@y",
        ] {
            assert!(!is_address(a), "{a:?}");
        }
        assert!(!is_address(&format!("{}@x", "a".repeat(65))));
    }
}
