//! Who may connect, send and receive: pure checks, table-tested.

use mft_config::smtp::{Cidr, Smtp};
use std::net::IpAddr;

/// Whether `ip` is in the allowed client networks (all when none configured).
pub fn client_allowed(networks: &[Cidr], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(ip))
}

/// The domain of `address` in lower case (`None` without an `@`).
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Whether the envelope sender's domain may send.
pub fn sender_allowed(cfg: &Smtp, address: &str) -> bool {
    if cfg.allowed_sender_domains.is_empty() {
        return true;
    }
    domain_of(address).is_some_and(|d| cfg.allowed_sender_domains.contains(&d))
}

/// Whether a recipient is in one of our organisation's e-mail domains.
pub fn recipient_local(email_domains: &[String], address: &str) -> bool {
    domain_of(address).is_some_and(|d| email_domains.contains(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            domain_of("a@OurCorp.Example").as_deref(),
            Some("ourcorp.example")
        );
        assert_eq!(domain_of("a@b.example.").as_deref(), Some("b.example"));
        assert_eq!(domain_of("nobody"), None);
        assert_eq!(domain_of("a@"), None);
        let ours = vec!["ourcorp.example".to_string()];
        assert!(recipient_local(&ours, "Bob@OURCORP.example"));
        assert!(!recipient_local(&ours, "bob@ourcorp.example.evil"));
        assert!(!recipient_local(&ours, "bob@sub.ourcorp.example"));
    }

    #[test]
    fn networks() {
        let nets = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        assert!(client_allowed(&nets, "10.9.9.9".parse().unwrap()));
        assert!(!client_allowed(&nets, "192.0.2.1".parse().unwrap()));
        assert!(client_allowed(&[], "192.0.2.1".parse().unwrap()));
    }
}
