//! The HTTP side of the `sms` and `threema` providers: one client that
//! never follows redirects and ignores proxy variables, and the endpoint
//! rule (https, or http only toward loopback for a local test endpoint).

use super::TransportError;
use std::sync::OnceLock;
use std::time::Duration;

/// Bound on one call to a provider's API.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The shared client.
pub fn client() -> Result<&'static reqwest::Client, TransportError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .user_agent(concat!("mft-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransportError::Send(format!("HTTP client: {}", e.without_url())))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// Checks an endpoint URL; returns it with a trailing `/`.
pub fn check_endpoint(url: &str) -> Result<String, TransportError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| TransportError::Invalid(format!("endpoint {url:?}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(TransportError::Invalid(format!(
                "endpoint {url:?}: https, or http only toward a loopback address"
            )))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
        return Err(TransportError::Invalid(format!(
            "endpoint {url:?}: no credentials or query in the URL"
        )));
    }
    let mut s = parsed.to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

/// A reqwest error as text, without the URL (a query may hold a secret).
pub fn error_text(e: reqwest::Error) -> String {
    crate::error_chain::error_chain(&e.without_url())
}
