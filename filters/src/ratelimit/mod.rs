//! Rate limits: the Generic Cell Rate Algorithm (GCRA) per key, and the
//! response headers that describe it.
//!
//! A [`Limit`] is "`rate` requests per `per`, bursts up to `burst`": one
//! request costs one emission interval `per / rate`, and a key may run up to
//! `burst` intervals ahead of time. [`KeyLimiter`] holds the state of one key
//! (one `governor` direct limiter, so every key can have its own quota) and is
//! generic over governor's clock, so tests drive it with a fake clock.
//!
//! # Headers (draft-ietf-httpapi-ratelimit-headers)
//!
//! The draft describes quotas as "`q` units per window of `w` seconds" and
//! the current state as "`r` units left, window resets in `t` seconds". GCRA
//! has no windows, so the mapping is:
//!
//! | field | GCRA meaning |
//! |---|---|
//! | `q` | the burst: requests allowed at once from a full bucket |
//! | `w` | seconds an empty bucket takes to refill completely (`burst × per / rate`, rounded up): `q` per `w` is exactly the sustained rate |
//! | `r` | requests that would still be allowed right now |
//! | `t` | seconds until the bucket is full again (rounded up); 0 when it is full |
//!
//! `Retry-After` on a 429 is the time until the next single request is
//! allowed, rounded up to whole seconds and never 0, so a client that obeys it
//! is not refused again.

mod headers;

pub use headers::{
    policy_item, retry_after_secs, state_item, whole_seconds_up, write_policy_item,
    write_state_item, RATELIMIT, RATELIMIT_POLICY,
};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use std::num::NonZeroU32;
use std::time::Duration;

/// A GCRA quota: `rate` requests per `per`, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    rate: NonZeroU32,
    per: Duration,
    burst: NonZeroU32,
}

impl Limit {
    /// `rate` per `per` with bursts of `burst`; `None` when the emission
    /// interval `per / rate` would be zero.
    pub fn new(rate: NonZeroU32, per: Duration, burst: NonZeroU32) -> Option<Limit> {
        let limit = Limit { rate, per, burst };
        (!limit.emission_interval().is_zero()).then_some(limit)
    }

    /// Requests per period.
    pub fn rate(&self) -> NonZeroU32 {
        self.rate
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// Largest burst.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// Time one request costs: `per / rate`.
    pub fn emission_interval(&self) -> Duration {
        self.per / self.rate.get()
    }

    /// Time an exhausted key takes to get its whole burst back. State older
    /// than this carries no information, so it is also how long an idle key
    /// must be remembered.
    pub fn refill_time(&self) -> Duration {
        self.emission_interval()
            .checked_mul(self.burst.get())
            .unwrap_or(Duration::MAX)
    }

    /// The same quota for `governor`.
    pub fn to_quota(&self) -> governor::Quota {
        // `new` refused a zero interval, so `with_period` cannot fail; the
        // fallback only keeps this total.
        governor::Quota::with_period(self.emission_interval())
            .unwrap_or_else(|| governor::Quota::per_second(self.rate))
            .allow_burst(self.burst)
    }
}

/// Which limit a decision is about; its name is the policy name in the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Per client IP address, before authentication.
    Ip,
    /// Per authenticated principal (API key, JWT subject, partner).
    Key,
}

impl Scope {
    /// `ip` or `key`: the policy name in `RateLimit-Policy` / `RateLimit`,
    /// and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Key => "key",
        }
    }
}

/// A request that may go on, and what is left of its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests that would still be allowed now (`r`).
    pub remaining: u32,
    /// Time until the bucket is full again (`t`).
    pub reset: Duration,
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Time until one request is allowed again.
    pub retry_after: Duration,
    /// Time until the bucket is full again (`t`).
    pub reset: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the quota.
    Allowed(Allowance),
    /// Over the quota.
    Limited(Denial),
}

impl Verdict {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed(_))
    }
}

type Governor<C> = governor::RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// The GCRA state of one key under one [`Limit`]. Checks are lock-free (one
/// compare-and-swap), so one limiter can be shared by every worker thread.
pub struct KeyLimiter<C: Clock = DefaultClock> {
    limit: Limit,
    inner: Governor<C>,
}

impl<C: Clock> std::fmt::Debug for KeyLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> KeyLimiter<C> {
    /// A full bucket for `limit`, reading time from `clock`.
    pub fn new(limit: Limit, clock: C) -> Self {
        let inner = governor::RateLimiter::direct_with_clock(limit.to_quota(), clock)
            .with_middleware::<StateInformationMiddleware>();
        KeyLimiter { limit, inner }
    }

    /// The quota this limiter enforces.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes one request from the bucket if it conforms.
    pub fn check(&self) -> Verdict {
        let interval = self.limit.emission_interval();
        match self.inner.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = self.limit.burst.get().saturating_sub(remaining);
                Verdict::Allowed(Allowance {
                    remaining,
                    // An upper bound by less than one interval: governor does
                    // not expose the exact theoretical arrival time.
                    reset: interval.saturating_mul(used),
                })
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.inner.clock().now());
                let rest = interval.saturating_mul(self.limit.burst.get() - 1);
                Verdict::Limited(Denial {
                    retry_after,
                    reset: retry_after.saturating_add(rest),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
