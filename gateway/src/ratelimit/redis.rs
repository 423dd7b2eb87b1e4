//! Cluster-wide limits: the GCRA state of every key lives in Redis, updated
//! by one Lua script so the read-modify-write is atomic across instances.
//!
//! The script reads Redis' own `TIME`, so gateways with skewed clocks agree.
//! Each key is a single integer (its theoretical arrival time in
//! microseconds) that expires when the bucket would be full anyway, so Redis
//! memory is bounded by the keys active within one refill time.
//!
//! Every call runs under `rate_limit.redis_timeout`: a hung Redis costs a
//! request at most that long, then `on_redis_error` decides.

use crate::metrics::Metrics;
use crate::runtime::ServiceRuntime;
use mft_filters::ratelimit::{Allowance, Denial, Limit, Verdict};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// KEYS[1]: the key's theoretical arrival time (TAT), in microseconds of
/// Redis' clock. ARGV[1]: emission interval in microseconds; ARGV[2]: burst.
/// Returns {allowed 1|0, remaining, retry_after_us, reset_us}.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, math.floor((now + interval * burst - new_tat) / interval), 0, new_tat - now}
"#;

/// A partner's daily quota (docs/trust-network.md). KEYS[1]: the day's
/// count; ARGV[1]: bytes of this upload; ARGV[2]: the quota; ARGV[3]: Unix
/// time the count expires. Adds only when the sum stays within the quota,
/// so a refused upload leaves nothing behind. Returns {1, used} when
/// counted, {0, used before} when refused.
const QUOTA_RESERVE: &str = r#"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local bytes = tonumber(ARGV[1])
if used + bytes > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], bytes)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, used}
"#;

/// Gives a failed upload's bytes back, only while the day's count exists
/// (a refund after the day ended must not create a key without expiry).
const QUOTA_REFUND: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left < 0 then
  redis.call('SET', KEYS[1], '0', 'KEEPTTL')
  return 0
end
return left
"#;

/// How often Redis is pinged so `mft_ratelimit_redis_up` is right without traffic.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// At most one warning per this interval while Redis fails.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a Redis call gave no decision. The text never holds the URL.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    /// No answer within `redis_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connection or protocol error.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something else than four integers.
    #[error("unexpected reply from the rate-limit script")]
    Reply,
}

/// The shared limiter.
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    quota_reserve: redis::Script,
    quota_refund: redis::Script,
    timeout: Duration,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// Seconds since `epoch` of the last warning, plus one (0: never).
    last_warn: AtomicU64,
}

impl RedisLimiter {
    /// A limiter on `url`. Connects lazily (on the control plane, which
    /// outlives every request) so a Redis that is down at startup does not
    /// stop the gateway; the manager reconnects by itself.
    pub fn start(
        url: &str,
        timeout: Duration,
        metrics: Arc<Metrics>,
        control: &ServiceRuntime,
    ) -> anyhow::Result<Arc<RedisLimiter>> {
        // The error would not name the URL's password, but say nothing of the URL at all.
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("rate_limit.redis: invalid Redis URL ({:?})", e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = control
            .block_on(async move { ConnectionManager::new_lazy_with_config(client, config) })
            .map_err(|e| anyhow::anyhow!("rate_limit.redis: {e}"))?
            .map_err(|e| anyhow::anyhow!("rate_limit.redis: cannot set up the client: {e}"))?;
        let me = Arc::new(RedisLimiter {
            conn,
            script: redis::Script::new(GCRA),
            quota_reserve: redis::Script::new(QUOTA_RESERVE),
            quota_refund: redis::Script::new(QUOTA_REFUND),
            timeout,
            metrics,
            epoch: Instant::now(),
            last_warn: AtomicU64::new(0),
        });
        // Weak: a limiter replaced by a config reload stops pinging (and
        // stops setting `redis_up` from a connection no longer used).
        let health = Arc::downgrade(&me);
        control.spawn(async move {
            while let Some(me) = health.upgrade() {
                me.ping().await;
                drop(me);
                tokio::time::sleep(HEALTH_EVERY).await;
            }
        });
        Ok(me)
    }

    async fn ping(&self) {
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            self.timeout.max(Duration::from_millis(500)),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match result {
            Ok(Ok(_)) => self.up(),
            Ok(Err(e)) => self.failed(&RedisFailure::Redis(e)),
            Err(_) => self.failed(&RedisFailure::Timeout(self.timeout)),
        }
    }

    /// One GCRA step for `key` under `limit` in Redis. EVALSHA first; the
    /// script is sent again only when Redis answers NOSCRIPT (after a restart
    /// or `SCRIPT FLUSH`).
    pub async fn check(&self, key: &str, limit: Limit) -> Result<Verdict, RedisFailure> {
        let interval_us = u64::try_from(limit.emission_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(limit.burst().get());
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.timeout, invocation.invoke_async::<Vec<i64>>(&mut conn))
                .await;
        let result = match reply {
            Err(_) => Err(RedisFailure::Timeout(self.timeout)),
            Ok(Err(e)) => Err(RedisFailure::Redis(e)),
            Ok(Ok(v)) => verdict(&v).ok_or(RedisFailure::Reply),
        };
        match &result {
            Ok(_) => self.up(),
            Err(e) => self.failed(e),
        }
        result
    }

    /// Counts `bytes` against the quota `limit` of the count at `key`,
    /// which expires at `expire_at` (Unix seconds): `Ok(Ok(()))` when
    /// counted, `Ok(Err(used))` when it would exceed the quota.
    pub async fn quota_reserve(
        &self,
        key: &str,
        bytes: u64,
        limit: u64,
        expire_at: u64,
    ) -> Result<Result<(), u64>, RedisFailure> {
        let mut invocation = self.quota_reserve.key(key);
        invocation.arg(bytes).arg(limit).arg(expire_at);
        match *self.invoke(&invocation).await?.as_slice() {
            [1, _] => Ok(Ok(())),
            [0, used] => Ok(Err(u64::try_from(used).unwrap_or(0))),
            _ => {
                self.failed(&RedisFailure::Reply);
                Err(RedisFailure::Reply)
            }
        }
    }

    /// Gives `bytes` back to the count at `key`, if it still exists.
    pub async fn quota_refund(&self, key: &str, bytes: u64) -> Result<(), RedisFailure> {
        let mut invocation = self.quota_refund.key(key);
        invocation.arg(bytes);
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await;
        let result = match reply {
            Err(_) => Err(RedisFailure::Timeout(self.timeout)),
            Ok(Err(e)) => Err(RedisFailure::Redis(e)),
            Ok(Ok(_)) => Ok(()),
        };
        match &result {
            Ok(()) => self.up(),
            Err(e) => self.failed(e),
        }
        result
    }

    /// Runs a script returning integers under `redis_timeout`.
    async fn invoke(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<i64>, RedisFailure> {
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.timeout, invocation.invoke_async::<Vec<i64>>(&mut conn))
                .await;
        let result = match reply {
            Err(_) => Err(RedisFailure::Timeout(self.timeout)),
            Ok(Err(e)) => Err(RedisFailure::Redis(e)),
            Ok(Ok(v)) => Ok(v),
        };
        match &result {
            Ok(_) => self.up(),
            Err(e) => self.failed(e),
        }
        result
    }

    fn up(&self) {
        self.metrics.redis_up.set(1);
    }

    fn failed(&self, e: &RedisFailure) {
        self.metrics.redis_errors.inc();
        self.metrics.redis_up.set(0);
        let now = self.epoch.elapsed().as_secs() + 1;
        let last = self.last_warn.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_secs())
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = %e,
                "rate limiter: Redis unavailable; applying rate_limit.on_redis_error (repeats at most every 10 s; see mft_ratelimit_redis_errors_total)"
            );
        }
    }
}

/// For `mft-gateway check`: connects, pings and loads the script (which also
/// proves Lua scripting is allowed). Messages name host and port, never the
/// password.
pub async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let client =
        redis::Client::open(url).map_err(|e| format!("invalid Redis URL ({:?})", e.kind()))?;
    let addr = client.get_connection_info().addr().to_string();
    let wait = timeout.max(Duration::from_secs(2));
    let started = Instant::now();
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        redis::Script::new(GCRA).load_async(&mut conn).await
    };
    match tokio::time::timeout(wait, work).await {
        Ok(Ok(_)) => Ok(format!(
            "{addr} answered and loaded the rate-limit script in {} ms",
            started.elapsed().as_millis()
        )),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {wait:?}")),
    }
}

fn verdict(v: &[i64]) -> Option<Verdict> {
    let us = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
    match *v {
        [1, remaining, _, reset] => Some(Verdict::Allowed(Allowance {
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: us(reset),
        })),
        [0, _, retry, reset] => Some(Verdict::Limited(Denial {
            retry_after: us(retry),
            reset: us(reset),
        })),
        _ => None,
    }
}
