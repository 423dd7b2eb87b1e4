//! The rate limiter the proxy calls: per client IP before authentication,
//! per principal right after it (see docs/rate-limits.md).
//!
//! Without Redis every instance limits on its own ([`local`]). With
//! `rate_limit.redis` the limit holds across instances ([`redis`]), and the
//! local limiter still takes the hot path where that is safe:
//!
//! - a local refusal answers at once: the local limiter has the same quota,
//!   so if this instance alone saw too many requests the cluster did too;
//! - after Redis refuses a key, the refusal is remembered until its
//!   `Retry-After`, so a flooding client costs no Redis call per request;
//! - otherwise Redis decides, under `redis_timeout`; if it fails,
//!   `on_redis_error` picks the local decision or a 503.

pub mod local;
pub mod redis;

use crate::metrics::Metrics;
use crate::runtime::ServiceRuntime;
use local::{Entry, LocalStore};
use mft_config::model::{OnRedisError, RateLimit as RateLimitConfig};
use mft_config::quota::Quota;
use mft_filters::decision::Rejection;
use mft_filters::ratelimit::{self as rl, Denial, Limit, Scope, Verdict};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The filters' [`Limit`] for a configured quota.
pub fn limit_of(q: &Quota) -> Option<Limit> {
    Limit::new(q.rate, q.per, q.burst)
}

/// Parses a per-account override as stored with a key (`"10/s burst 20"`).
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    let q = mft_config::quota::parse(text)?;
    limit_of(&q).ok_or_else(|| format!("rate {text:?} is too fast to enforce"))
}

/// The key of a client address for the per-IP limit (IPv6 by /64): the
/// one `client_key` the defender and the connection cap use too.
use mft_filters::client_key::client_key;

/// `RateLimit-Policy` and `RateLimit` values for an allowed response: one
/// list member per limit that applied.
#[derive(Debug, Default, Clone)]
pub struct RateHeaders {
    policy: String,
    state: String,
}

impl RateHeaders {
    fn push(&mut self, scope: Scope, limit: &Limit, remaining: u32, reset: Duration) {
        // Room for both members at once: pieces pushed into an empty String
        // would grow it three times.
        self.policy.reserve(48);
        self.state.reserve(48);
        if !self.policy.is_empty() {
            self.policy.push_str(", ");
            self.state.push_str(", ");
        }
        rl::write_policy_item(&mut self.policy, scope, limit);
        rl::write_state_item(&mut self.state, scope, remaining, reset);
    }

    /// `RateLimit-Policy`, if any limit applied.
    pub fn policy(&self) -> Option<&str> {
        (!self.policy.is_empty()).then_some(self.policy.as_str())
    }

    /// `RateLimit`, if any limit applied.
    pub fn state(&self) -> Option<&str> {
        (!self.state.is_empty()).then_some(self.state.as_str())
    }
}

/// Per-IP and per-principal limits, local or cluster-wide.
pub struct RateLimiter {
    per_ip: Option<Limit>,
    per_key: Option<Limit>,
    ips: LocalStore<IpAddr>,
    principals: LocalStore<Arc<str>>,
    redis: Option<Arc<redis::RedisLimiter>>,
    on_redis_error: OnRedisError,
    metrics: Arc<Metrics>,
}

impl RateLimiter {
    /// The limiter for `[rate_limit]`; with `redis` set it starts the Redis
    /// client (lazily connecting) on the control plane.
    pub fn from_config(
        config: &RateLimitConfig,
        metrics: Arc<Metrics>,
        control: &ServiceRuntime,
    ) -> anyhow::Result<RateLimiter> {
        let limit = |key: &str, q: &Option<Quota>| -> anyhow::Result<Option<Limit>> {
            q.as_ref()
                .map(|q| limit_of(q).ok_or_else(|| anyhow::anyhow!("{key}: too fast to enforce")))
                .transpose()
        };
        let redis = match &config.redis {
            Some(url) => Some(redis::RedisLimiter::start(
                url.expose(),
                config.redis_timeout,
                metrics.clone(),
                control,
            )?),
            None => None,
        };
        Ok(RateLimiter {
            per_ip: limit("rate_limit.per_ip", &config.per_ip)?,
            per_key: limit("rate_limit.per_key", &config.per_key)?,
            ips: LocalStore::new(config.max_tracked_keys),
            principals: LocalStore::new(config.max_tracked_keys),
            redis,
            on_redis_error: config.on_redis_error,
            metrics,
        })
    }

    /// The Redis client and failure policy, when limits are shared through
    /// Redis (partner quotas count there too).
    pub fn shared_redis(&self) -> Option<(Arc<redis::RedisLimiter>, OnRedisError)> {
        self.redis
            .as_ref()
            .map(|r| (r.clone(), self.on_redis_error))
    }

    /// The per-IP limit, before authentication.
    pub async fn check_ip(&self, ip: IpAddr, headers: &mut RateHeaders) -> Result<(), Rejection> {
        let Some(limit) = self.per_ip else {
            return Ok(());
        };
        let ip = client_key(ip);
        let entry = self.ips.entry(&ip, limit);
        self.check(
            Scope::Ip,
            &self.ips,
            &entry,
            || format!("mft:rl:ip:{ip}"),
            headers,
        )
        .await
    }

    /// The per-principal limit: the account's own `rate_limit` if it has
    /// one, else `rate_limit.per_key`.
    pub async fn check_principal(
        &self,
        principal: &Arc<str>,
        own: Option<Limit>,
        headers: &mut RateHeaders,
    ) -> Result<(), Rejection> {
        let Some(limit) = own.or(self.per_key) else {
            return Ok(());
        };
        let entry = self.principals.entry(principal, limit);
        self.check(
            Scope::Key,
            &self.principals,
            &entry,
            || format!("mft:rl:key:{principal}"),
            headers,
        )
        .await
    }

    async fn check<K>(
        &self,
        scope: Scope,
        store: &LocalStore<K>,
        entry: &Entry,
        redis_key: impl FnOnce() -> String,
        headers: &mut RateHeaders,
    ) -> Result<(), Rejection>
    where
        K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
    {
        let limit = entry.limit();
        let Some(redis) = &self.redis else {
            return self.finish(scope, &limit, entry.limiter().check(), headers);
        };
        if let Some(left) = store.denied_for(entry) {
            self.metrics.redis_skipped.inc();
            let denial = Denial {
                retry_after: left,
                reset: left.saturating_add(
                    limit
                        .emission_interval()
                        .saturating_mul(limit.burst().get() - 1),
                ),
            };
            return self.finish(scope, &limit, Verdict::Limited(denial), headers);
        }
        let local = entry.limiter().check();
        if !local.is_allowed() {
            self.metrics.redis_skipped.inc();
            return self.finish(scope, &limit, local, headers);
        }
        // No lock is held here: the entry is shared through an Arc and its
        // state is atomics only.
        // Boxed: the Redis client's state would otherwise be inline in every
        // request's future, Redis or not (hyper keeps one per connection).
        match Box::pin(redis.check(&redis_key(), limit)).await {
            Ok(verdict) => {
                if let Verdict::Limited(d) = verdict {
                    store.deny_for(entry, d.retry_after);
                }
                self.finish(scope, &limit, verdict, headers)
            }
            Err(_) => {
                // Logged and counted by the Redis limiter.
                self.metrics.redis_fallbacks.inc();
                match self.on_redis_error {
                    OnRedisError::Local => self.finish(scope, &limit, local, headers),
                    OnRedisError::Deny => {
                        Err(Rejection::rate_limit_unavailable(Duration::from_secs(1)))
                    }
                }
            }
        }
    }

    fn finish(
        &self,
        scope: Scope,
        limit: &Limit,
        verdict: Verdict,
        headers: &mut RateHeaders,
    ) -> Result<(), Rejection> {
        match verdict {
            Verdict::Allowed(a) => {
                headers.push(scope, limit, a.remaining, a.reset);
                Ok(())
            }
            Verdict::Limited(d) => {
                self.metrics.limited(scope);
                Err(Rejection::too_many_requests(scope, limit, &d))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            client_key(ip("2001:db8:1:2::5"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:3::1")),
            client_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(client_key(ip("::ffff:198.51.100.9")), ip("198.51.100.9"));
    }

    #[test]
    fn headers_list_every_limit_that_applied() {
        let l = parse_limit("50/s burst 100").unwrap();
        let mut h = RateHeaders::default();
        assert_eq!(h.policy(), None);
        h.push(Scope::Ip, &l, 99, Duration::from_millis(20));
        h.push(Scope::Key, &l, 42, Duration::from_millis(1_160));
        assert_eq!(h.policy(), Some("\"ip\";q=100;w=2, \"key\";q=100;w=2"));
        assert_eq!(h.state(), Some("\"ip\";r=99;t=1, \"key\";r=42;t=2"));
        assert!(parse_limit("fast").is_err());
    }
}
