//! Limiter state kept in this process: one GCRA limiter per key in a bounded,
//! sharded map.
//!
//! Memory is bounded: at most `max_tracked_keys` entries, so a flood of
//! distinct client addresses costs at most that many. A full shard makes
//! room by second chance (CLOCK): keys leave in the order they came, except
//! that a key looked up since its last turn goes to the back once more. A
//! busy client therefore keeps its state while one-shot addresses come and
//! go. Forgetting a key is always safe for a quiet one (its bucket has
//! refilled); only under a flood of distinct keys can a refused one start
//! over, as with any bounded table.
//!
//! Not a general-purpose cache (moka, before): every request looks up one or
//! two keys here, and a hit must cost a hash, a short uncontended lock and
//! an `Arc` clone, without the read log, clock reads and timer wheel a cache
//! keeps for its admission policy and expiry (docs/benchmarks.md).

use governor::clock::DefaultClock;
use mft_filters::ratelimit::{KeyLimiter, Limit};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Shards of the map: enough that worker threads rarely meet on one lock.
const SHARDS: usize = 64;

/// One key's state.
pub struct Entry {
    limiter: KeyLimiter<DefaultClock>,
    /// Nanoseconds since the store's epoch until which Redis refused this key;
    /// 0 for none. Lets a flooding client be refused without a Redis call.
    denied_until: AtomicU64,
    /// Looked up since its last turn at the front of the eviction queue.
    referenced: AtomicBool,
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

/// One shard: the entries, and their keys in eviction order.
struct Shard<K> {
    map: HashMap<K, Arc<Entry>, foldhash::quality::RandomState>,
    queue: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> Shard<K> {
    fn new() -> Self {
        Shard {
            map: HashMap::default(),
            queue: VecDeque::new(),
        }
    }

    /// Frees one slot: the first key in the queue not looked up since its
    /// last turn leaves; the others go to the back with their mark cleared.
    /// Two passes at most, since the first clears every mark.
    fn make_room(&mut self) {
        for _ in 0..self.queue.len().saturating_mul(2) {
            let Some(key) = self.queue.pop_front() else {
                return;
            };
            match self.map.get(&key) {
                None => {}
                Some(entry) if entry.referenced.swap(false, Ordering::Relaxed) => {
                    self.queue.push_back(key);
                }
                Some(_) => {
                    self.map.remove(&key);
                    return;
                }
            }
        }
    }
}

/// Limiters by key (client IPs or principals).
pub struct LocalStore<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    /// Chooses the shard; seeded per process, like the maps' own hashers.
    hasher: foldhash::quality::RandomState,
    per_shard: usize,
    clock: DefaultClock,
    epoch: Instant,
}

impl<K> LocalStore<K>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
{
    /// A store holding at most `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        let max_keys = usize::try_from(max_keys).unwrap_or(usize::MAX).max(1);
        let shards = SHARDS.min(max_keys);
        LocalStore {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: foldhash::quality::RandomState::default(),
            per_shard: max_keys / shards,
            clock: DefaultClock::default(),
            epoch: Instant::now(),
        }
    }

    /// The entry of `key` under `limit`. An entry built for another quota
    /// (an account's override changed) is replaced by a full bucket for the
    /// new one.
    pub fn entry(&self, key: &K, limit: Limit) -> Arc<Entry> {
        // The high bits: the maps inside use the low ones for their buckets.
        let index = (self.hasher.hash_one(key) >> 32) as usize % self.shards.len();
        // A poisoned shard only means a panic elsewhere while it was held;
        // the map itself is still consistent.
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.map.get(key) {
            Some(entry) if entry.limit() == limit => {
                // Read first: a busy key's line is then only read by the
                // threads serving it, not written on every hit.
                if !entry.referenced.load(Ordering::Relaxed) {
                    entry.referenced.store(true, Ordering::Relaxed);
                }
                return entry.clone();
            }
            Some(_) => {}
            None => {
                if shard.map.len() >= self.per_shard {
                    shard.make_room();
                }
                shard.queue.push_back(key.clone());
            }
        }
        let fresh = Arc::new(Entry {
            limiter: KeyLimiter::new(limit, self.clock.clone()),
            denied_until: AtomicU64::new(0),
            referenced: AtomicBool::new(false),
        });
        shard.map.insert(key.clone(), fresh.clone());
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

    /// Keys currently tracked (tests check the bound).
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len() as u64)
            .sum()
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
    fn a_busy_key_survives_a_flood_of_one_shot_keys() {
        let store: LocalStore<u32> = LocalStore::new(6_400);
        let busy = u32::MAX;
        assert!(store.entry(&busy, limit(1)).limiter().check().is_allowed());
        for k in 0..100_000u32 {
            store.entry(&k, limit(5)).limiter().check();
            if k % 16 == 0 {
                // Still refused: its state was kept, not replaced by a full bucket.
                assert!(
                    !store.entry(&busy, limit(1)).limiter().check().is_allowed(),
                    "busy key forgotten after {k} one-shot keys"
                );
            }
        }
        assert!(store.len() <= 6_400, "{} entries", store.len());
    }

    #[test]
    fn a_full_shard_gives_looked_up_keys_a_second_chance() {
        let mut shard = Shard::new();
        for k in 1..=4u8 {
            shard.queue.push_back(k);
            shard.map.insert(
                k,
                Arc::new(Entry {
                    limiter: KeyLimiter::new(limit(1), DefaultClock::default()),
                    denied_until: AtomicU64::new(0),
                    referenced: AtomicBool::new(k <= 2),
                }),
            );
        }
        shard.make_room();
        assert!(!shard.map.contains_key(&3), "the oldest unmarked key goes");
        assert_eq!(shard.map.len(), 3);
        assert_eq!(shard.queue, [4, 1, 2]);
        // Marks were cleared on the way: now the oldest goes.
        shard.make_room();
        assert!(!shard.map.contains_key(&4));
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
