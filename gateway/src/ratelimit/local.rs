//! Limiter state kept in this process: one GCRA limiter per key in a bounded
//! cache.
//!
//! Memory is bounded twice: at most `max_tracked_keys` entries (moka evicts
//! the least useful when full), and an entry idle for its quota's refill time
//! is dropped, because by then its bucket is full again and forgetting it
//! changes no decision. A flood of distinct client addresses therefore costs
//! at most `max_tracked_keys` entries. When the cache is full, moka's
//! admission policy favours keys seen often, so a busy client keeps its state
//! while one-shot addresses come and go.

use governor::clock::DefaultClock;
use mft_filters::ratelimit::{KeyLimiter, Limit};
use moka::sync::Cache;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One key's state.
pub struct Entry {
    limiter: KeyLimiter<DefaultClock>,
    /// Nanoseconds since the store's epoch until which Redis refused this key;
    /// 0 for none. Lets a flooding client be refused without a Redis call.
    denied_until: AtomicU64,
}

impl Entry {
    /// The GCRA limiter.
    pub fn limiter(&self) -> &KeyLimiter<DefaultClock> {
        &self.limiter
    }

    /// The quota the limiter was built with.
    pub fn limit(&self) -> Limit {
        self.limiter.limit()
    }
}

/// Per-entry lifetime: idle for the refill time of the entry's own quota
/// (per-account overrides differ), at least a second.
struct IdleForRefill;

impl IdleForRefill {
    fn ttl(entry: &Entry) -> Option<Duration> {
        Some(entry.limit().refill_time().max(Duration::from_secs(1)))
    }
}

impl<K> moka::Expiry<K, Arc<Entry>> for IdleForRefill {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Self::ttl(value)
    }

    fn expire_after_read(
        &self,
        _key: &K,
        value: &Arc<Entry>,
        _read_at: std::time::Instant,
        _left: Option<Duration>,
        _last_modified_at: std::time::Instant,
    ) -> Option<Duration> {
        Self::ttl(value)
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Arc<Entry>,
        _updated_at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Self::ttl(value)
    }
}

/// Limiters by key (client IPs or principals).
pub struct LocalStore<K> {
    cache: Cache<K, Arc<Entry>>,
    clock: DefaultClock,
    epoch: Instant,
}

impl<K> LocalStore<K>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
{
    /// A store holding at most `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        LocalStore {
            cache: Cache::builder()
                .max_capacity(max_keys)
                .expire_after(IdleForRefill)
                .build(),
            clock: DefaultClock::default(),
            epoch: Instant::now(),
        }
    }

    /// The entry of `key` under `limit`. An entry built for another quota
    /// (an account's override changed) is replaced by a full bucket for the
    /// new one.
    pub fn entry(&self, key: &K, limit: Limit) -> Arc<Entry> {
        let make = || {
            Arc::new(Entry {
                limiter: KeyLimiter::new(limit, self.clock.clone()),
                denied_until: AtomicU64::new(0),
            })
        };
        let entry = self
            .cache
            .entry_by_ref(key)
            .or_insert_with(make)
            .into_value();
        if entry.limit() == limit {
            return entry;
        }
        let fresh = make();
        self.cache.insert(key.clone(), fresh.clone());
        fresh
    }

    /// If Redis refused `entry` and the refusal still holds, for how long.
    pub fn denied_for(&self, entry: &Entry) -> Option<Duration> {
        let until = entry.denied_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.now_nanos();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Remembers that Redis refuses `entry` for `retry_after`.
    pub fn deny_for(&self, entry: &Entry, retry_after: Duration) {
        let nanos = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
        let until = self.now_nanos().saturating_add(nanos).max(1);
        entry.denied_until.store(until, Ordering::Relaxed);
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Keys currently tracked (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limit(burst: u32) -> Limit {
        Limit::new(
            NonZeroU32::MIN,
            Duration::from_secs(60),
            NonZeroU32::new(burst).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn one_limiter_per_key_replaced_when_the_quota_changes() {
        let store: LocalStore<String> = LocalStore::new(1000);
        let a = "a".to_string();
        assert!(store.entry(&a, limit(1)).limiter().check().is_allowed());
        assert!(!store.entry(&a, limit(1)).limiter().check().is_allowed());
        assert!(store
            .entry(&"b".to_string(), limit(1))
            .limiter()
            .check()
            .is_allowed());
        // A new override starts from a full bucket of its own size.
        let e = store.entry(&a, limit(3));
        assert_eq!(e.limit(), limit(3));
        assert!(e.limiter().check().is_allowed());
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let store: LocalStore<u32> = LocalStore::new(500);
        for k in 0..20_000u32 {
            store.entry(&k, limit(5)).limiter().check();
        }
        assert!(store.len() <= 500, "{} entries", store.len());
    }

    #[test]
    fn remembered_refusal_expires() {
        let store: LocalStore<u8> = LocalStore::new(100);
        let e = store.entry(&1, limit(1));
        assert_eq!(store.denied_for(&e), None);
        store.deny_for(&e, Duration::from_secs(30));
        let left = store.denied_for(&e).unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        store.deny_for(&e, Duration::ZERO);
        assert_eq!(store.denied_for(&e), None);
    }
}
