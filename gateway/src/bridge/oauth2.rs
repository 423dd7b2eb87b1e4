//! OAuth2 access tokens for XOAUTH2 (IMAP, POP3).
//!
//! The refresh-token grant (RFC 6749 6) against the configured token
//! endpoint: a form POST with `grant_type=refresh_token`. The access token is
//! cached until `expires_in` minus a margin, so a poll a second before expiry
//! does not log in with a token the server refuses a moment later. A new
//! refresh token in the answer (Microsoft rotates them) replaces the old one
//! in memory. Tokens are never logged: errors carry the endpoint, the status
//! and the OAuth2 `error` code only.

use base64::Engine;
use mft_config::mailbox::OAuth2;
use mft_config::secret::Secret;
use std::time::{Duration, Instant};

/// Refresh this long before the token expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// When the server does not say (`expires_in` missing), assume an hour.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint {url}: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// reqwest's error chain (no token in it: the request body is not shown).
        message: String,
    },
    /// The endpoint refused the grant.
    #[error("token endpoint {url} answered HTTP {status}: {error}")]
    Refused {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// The OAuth2 `error` code (e.g. `invalid_grant`), or `unknown`.
        error: String,
    },
    /// A 2xx answer without a usable `access_token`.
    #[error("token endpoint {url}: answer without an access_token")]
    Malformed {
        /// The endpoint.
        url: String,
    },
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
}

/// Access tokens for one mailbox; owned by its poller, so no lock is needed.
pub struct TokenSource {
    config: OAuth2,
    refresh_token: Secret,
    http: reqwest::Client,
    cached: Option<(Secret, Instant)>,
}

impl TokenSource {
    /// A source for `config`; `timeout` bounds each call to the endpoint.
    pub fn new(config: &OAuth2, timeout: Duration) -> Result<TokenSource, OAuth2Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A token endpoint that redirects is misconfigured; following it
            // would send the refresh token somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OAuth2Error::Transport {
                url: config.token_url.to_string(),
                message: e.to_string(),
            })?;
        Ok(TokenSource {
            refresh_token: config.refresh_token.clone(),
            config: config.clone(),
            http,
            cached: None,
        })
    }

    /// A valid access token, refreshed when missing or about to expire.
    pub async fn access_token(&mut self) -> Result<Secret, OAuth2Error> {
        if let Some((token, until)) = &self.cached {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        self.refresh().await
    }

    /// Drops the cached token (the server refused it: revoked early).
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    async fn refresh(&mut self) -> Result<Secret, OAuth2Error> {
        let url = self.config.token_url.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.expose()),
            ("client_id", &self.config.client_id),
        ];
        if let Some(secret) = &self.config.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope));
        }
        let started = Instant::now();
        let response = self
            .http
            .post(self.config.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuth2Error::Transport {
                url: url.clone(),
                message: crate::error_chain::error_chain(&e),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| OAuth2Error::Transport {
            url: url.clone(),
            message: crate::error_chain::error_chain(&e),
        })?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ErrorAnswer>(&body)
                .ok()
                .and_then(|e| e.error)
                // Only a short, plain code: the body is the server's to fill.
                .filter(|e| e.len() <= 64 && e.chars().all(|c| c.is_ascii_graphic()))
                .unwrap_or_else(|| "unknown".to_string());
            return Err(OAuth2Error::Refused {
                url,
                status: status.as_u16(),
                error,
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| OAuth2Error::Malformed { url: url.clone() })?;
        let token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or(OAuth2Error::Malformed { url })?;
        if let Some(rotated) = answer.refresh_token.filter(|t| !t.is_empty()) {
            self.refresh_token = Secret::new(rotated);
        }
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        let until = started + lifetime.saturating_sub(EXPIRY_MARGIN);
        let token = Secret::new(token);
        self.cached = Some((token.clone(), until));
        Ok(token)
    }
}

/// The SASL XOAUTH2 initial response, before base64:
/// `user=<u>\x01auth=Bearer <token>\x01\x01`.
pub fn xoauth2_raw(user: &str, token: &Secret) -> String {
    format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose())
}

/// The same, base64 encoded, as POP3's `AUTH XOAUTH2 <b64>` sends it.
pub fn xoauth2_base64(user: &str, token: &Secret) -> String {
    base64::engine::general_purpose::STANDARD.encode(xoauth2_raw(user, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_string_has_the_documented_shape() {
        let t = Secret::new("ya29.tok");
        assert_eq!(
            xoauth2_raw("a@b.example", &t),
            "user=a@b.example\x01auth=Bearer ya29.tok\x01\x01"
        );
        // The example from Google's XOAUTH2 documentation.
        let g = xoauth2_base64(
            "someuser@example.com",
            &Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        );
        assert_eq!(
            g,
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }
}
