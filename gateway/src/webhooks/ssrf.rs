//! The SSRF guard for webhook targets: a subscription may not make the
//! gateway (which sits in the DMZ, next to things the internet must not
//! reach) call loopback, private, link-local or cloud-metadata addresses
//! unless the operator allowed it for that subscription.
//!
//! Checked twice: when the subscription is added, and at every connect. At
//! connect time the name is resolved by [`GuardedResolver`], which refuses
//! the whole name if *any* of its addresses is forbidden and hands the
//! HTTP client exactly the addresses it checked, so a DNS answer that
//! changes between check and connect (rebinding) cannot slip through.
//! IP-literal URLs never reach a resolver, so [`check_literal`] covers them.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    /// The address is in a range webhooks may not reach by default.
    #[error(
        "{host} resolves to {addr}, a {kind} address: refused (SSRF guard); \
         allow it for this subscription with --allow-private"
    )]
    Forbidden {
        /// The name or literal from the URL.
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// `loopback`, `private`, `link-local or metadata` ...
        kind: &'static str,
    },
    /// The name did not resolve.
    #[error("{host} does not resolve: {reason}")]
    Unresolvable {
        /// The name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
}

/// The kind of address `ip` is, if webhooks may not reach it by default.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.0.0/16, where 169.254.169.254 (cloud metadata) lives.
        Some("link-local or metadata")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        // 192.0.0.0/24: IETF protocol assignments (incl. some metadata services).
        Some("IETF protocol assignment")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4);
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return forbidden_v4(v4);
    }
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_unique_local() {
        // fc00::/7, where fd00:ec2::254 (a cloud metadata address) lives.
        Some("private (unique local) or metadata")
    } else if ip.is_unicast_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0 && s[1..6] == [0, 0, 0, 0, 0] {
        // ::/96 (IPv4-compatible, deprecated) and other reserved low space.
        Some("reserved")
    } else {
        None
    }
}

/// Checks `addrs` (all of them) for `host`.
pub fn check_all(host: &str, addrs: &[SocketAddr]) -> Result<(), TargetRefused> {
    for a in addrs {
        if let Some(kind) = forbidden_kind(a.ip()) {
            return Err(TargetRefused::Forbidden {
                host: host.to_string(),
                addr: a.ip(),
                kind,
            });
        }
    }
    Ok(())
}

/// The IP literal of a URL's host, if it is one, checked.
pub fn check_literal(url: &url::Url) -> Result<(), TargetRefused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    check_all(&ip.to_string(), &[SocketAddr::new(ip, 0)])
}

/// Resolves `host` and checks every address (add time).
pub async fn resolve_and_check(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetRefused> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetRefused::Unresolvable {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TargetRefused::Unresolvable {
            host: host.to_string(),
            reason: "no addresses".into(),
        });
    }
    check_all(host, &addrs)?;
    Ok(addrs)
}

/// The HTTP client's resolver for subscriptions without `allow_private`:
/// resolve, check every address, and connect only to what was checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_and_check(&host, 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        forbidden_kind(s.parse().unwrap())
    }

    #[test]
    fn refuses_internal_ranges() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.192",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(kind(bad).is_some(), "{bad} must be refused");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert_eq!(kind(good), None, "{good} must be allowed");
        }
        assert_eq!(kind("169.254.169.254"), Some("link-local or metadata"));
    }

    #[test]
    fn literal_urls_are_checked() {
        let u = url::Url::parse("http://[::ffff:10.0.0.1]:8080/hook").unwrap();
        assert!(check_literal(&u).is_err());
        let u = url::Url::parse("https://203.0.113.7/hook").unwrap();
        // Documentation range is not internal: allowed here.
        assert!(check_literal(&u).is_ok());
        let u = url::Url::parse("https://hooks.example/x").unwrap();
        assert!(check_literal(&u).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let name: Name = "localhost".parse().unwrap();
        let err = match GuardedResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("loopback"), "{err}");
    }
}
