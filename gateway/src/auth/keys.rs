//! Verified-key cache in front of the key store.
//!
//! The hot path does no database round trip: records are cached for
//! `auth.cache_ttl`, unknown ids for a few seconds (so random keys cannot
//! hammer the database), and concurrent misses for one id share one query.
//! Revocation reaches a running gateway through the store's change feed,
//! polled every second, so a `keys revoke` from another process takes effect
//! here within about a second, far inside the 5 s promise.

use super::Identity;
use crate::runtime::ServiceRuntime;
use crate::store::{KeyRecord, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an unknown key id is remembered as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How often the store's change feed is polled.
const CHANGE_POLL: Duration = Duration::from_secs(1);
/// `last_used_at` is written at most this often per key.
const LAST_USED_EVERY: Duration = Duration::from_secs(10);

/// What the proxy needs to know about a key.
#[derive(Debug)]
pub struct CachedKey {
    /// Public id.
    pub id: String,
    /// Service account.
    pub account: String,
    /// The identity a request with this key gets (shared, so no per-request copies).
    identity: Identity,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// Expiry.
    pub expires_at: Option<SystemTime>,
    /// Revoked.
    pub revoked: bool,
    /// Seconds since the epoch when use was last queued for the store.
    last_used_mark: AtomicU64,
}

impl CachedKey {
    fn from_record(r: KeyRecord) -> CachedKey {
        // Validated when the key was created; a value that still fails (an
        // edited database) must not lock the account out, so the default applies.
        let rate_limit = r.rate_limit.as_deref().and_then(|text| {
            crate::ratelimit::parse_limit(text)
                .inspect_err(|e| {
                    tracing::warn!(key = %r.id, error = %e, "ignoring the key's stored rate_limit; the default applies")
                })
                .ok()
        });
        // A stored list that no longer parses (an edited database) binds
        // the key to nobody: failing open would let it send as anyone.
        let senders = r.allowed_senders.as_deref().map(|text| {
            Arc::new(
                mft_filters::auth::senders::SenderBinding::parse(text).unwrap_or_else(|e| {
                    tracing::warn!(key = %r.id, error = %e, "the key's stored allowed_senders do not parse; it may send as nobody");
                    mft_filters::auth::senders::SenderBinding::nobody()
                }),
            )
        });
        CachedKey {
            identity: Identity {
                principal: format!("key:{}", r.id).into(),
                scopes_header: r.scopes.join(" ").into(),
                scopes: r.scopes.into(),
                rate_limit,
                senders,
            },
            id: r.id,
            account: r.account,
            secret_hash: r.secret_hash,
            expires_at: r.expires_at,
            revoked: r.revoked_at.is_some(),
            last_used_mark: AtomicU64::new(0),
        }
    }
}

impl CachedKey {
    /// A copy of `k` (its usage mark starts over).
    fn from_record_ref(k: &CachedKey) -> CachedKey {
        CachedKey {
            id: k.id.clone(),
            account: k.account.clone(),
            identity: k.identity.clone(),
            secret_hash: k.secret_hash,
            expires_at: k.expires_at,
            revoked: k.revoked,
            last_used_mark: AtomicU64::new(0),
        }
    }

    /// Whether a session opened with this key may go on at `now`.
    pub fn usable(&self, now: SystemTime) -> bool {
        !self.revoked && self.expires_at.is_none_or(|t| t > now)
    }

    /// The identity of a caller presenting this key.
    pub fn identity(&self) -> Identity {
        self.identity.clone()
    }
}

type Lookup = Option<Arc<CachedKey>>;

/// A cached record and the moment it goes stale.
#[derive(Clone)]
struct Fresh {
    key: Arc<CachedKey>,
    until: Instant,
}

/// The cache plus its background maintenance.
///
/// quick_cache rather than moka: a hit is one shard read lock and a hash
/// probe, about a fifth of moka's instructions with its read-op queue and
/// housekeeping (callgrind, per proxied request); expiry is a timestamp
/// checked on the hit, which is all a TTL cache of a few thousand keys needs.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    control: ServiceRuntime,
    found: Arc<quick_cache::sync::Cache<String, Fresh>>,
    /// Unknown ids, until when they stay unknown.
    missing: Arc<quick_cache::sync::Cache<String, Instant>>,
    pending_use: Arc<Mutex<HashMap<String, SystemTime>>>,
    /// Bumped whenever changes from the feed are applied: a load that
    /// started before a revocation must not put the old record back.
    epoch: Arc<AtomicU64>,
    /// Ids of changed keys, for sessions that outlive one request (SFTP,
    /// SMTP) and must end when their key is revoked.
    changed: tokio::sync::broadcast::Sender<Arc<str>>,
    /// `auth.cache_ttl` in milliseconds; a reload changes it for the
    /// entries cached from then on.
    ttl_ms: Arc<AtomicU64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Keys (and unknown ids) kept at most; the least recently used go first.
const CAPACITY: usize = 100_000;

/// Changed key ids a slow session may fall behind on before it rechecks.
const CHANGES_BUFFERED: usize = 1024;

/// The store could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("key store unavailable: {0}")]
pub struct LookupError(String);

impl KeyCache {
    /// A cache over `store`; call [`KeyCache::start_maintenance`] once.
    pub fn new(store: Store, control: ServiceRuntime, ttl: Duration) -> KeyCache {
        KeyCache {
            store,
            control,
            found: Arc::new(quick_cache::sync::Cache::new(CAPACITY)),
            missing: Arc::new(quick_cache::sync::Cache::new(CAPACITY)),
            pending_use: Arc::default(),
            epoch: Arc::default(),
            changed: tokio::sync::broadcast::channel(CHANGES_BUFFERED).0,
            ttl_ms: Arc::new(AtomicU64::new(millis(ttl))),
        }
    }

    /// `auth.cache_ttl` for keys cached from now on (a reload); those
    /// cached already keep theirs, at most the previous value.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(millis(ttl), Ordering::Relaxed);
    }

    /// Ids of keys changed (revoked, removed) from now on. A receiver that
    /// lags gets `Lagged` and should recheck its key.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.changed.subscribe()
    }

    /// The key with public id `id`, if it exists (revoked and expired ones included).
    pub async fn lookup(&self, id: &str) -> Result<Lookup, LookupError> {
        let now = Instant::now();
        if let Some(hit) = self.found.get(id) {
            if hit.until > now {
                return Ok(Some(hit.key));
            }
            self.found.remove(id);
        }
        if let Some(until) = self.missing.get(id) {
            if until > now {
                return Ok(None);
            }
            self.missing.remove(id);
        }
        // Boxed: the miss path's state (a store query on the control
        // plane) would otherwise sit inline in every request's future.
        Box::pin(self.load(id)).await
    }

    /// A miss: one store query per id however many requests wait for it.
    async fn load(&self, id: &str) -> Result<Lookup, LookupError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let guard = match self.found.get_value_or_guard_async(id).await {
            // Another request loaded it meanwhile.
            Ok(hit) if hit.until > Instant::now() => return Ok(Some(hit.key)),
            Ok(_) => None,
            Err(guard) => Some(guard),
        };
        let store = self.store.clone();
        let owned = id.to_string();
        let loaded = self
            .control
            .run(async move { store.get_key(&owned).await })
            .await;
        let key = match loaded {
            Ok(Ok(Some(record))) => Arc::new(CachedKey::from_record(record)),
            Ok(Ok(None)) => {
                // Dropping the guard hands the load to the next waiter,
                // which then finds the id in `missing`.
                self.missing
                    .insert(id.to_string(), Instant::now() + NEGATIVE_TTL);
                return Ok(None);
            }
            Ok(Err(e)) => return Err(LookupError(e.to_string())),
            Err(e) => return Err(LookupError(e.to_string())),
        };
        if self.epoch.load(Ordering::Acquire) != epoch {
            // Changes were applied while the record was loading: it may
            // predate a revocation. Use it once, cache nothing.
            drop(guard);
            return Ok(Some(self.reload(id, key).await));
        }
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        let fresh = Fresh {
            key: key.clone(),
            until: Instant::now() + ttl,
        };
        match guard {
            Some(guard) => {
                let _ = guard.insert(fresh);
            }
            None => self.found.insert(id.to_string(), fresh),
        }
        Ok(Some(key))
    }

    /// The current record of `id` after a change raced its load; the raced
    /// record if the store cannot be asked again.
    async fn reload(&self, id: &str, raced: Arc<CachedKey>) -> Arc<CachedKey> {
        let store = self.store.clone();
        let owned = id.to_string();
        match self
            .control
            .run(async move { store.get_key(&owned).await })
            .await
        {
            Ok(Ok(Some(record))) => Arc::new(CachedKey::from_record(record)),
            // Gone from the store: treat as revoked.
            Ok(Ok(None)) => {
                let mut gone = CachedKey::from_record_ref(&raced);
                gone.revoked = true;
                Arc::new(gone)
            }
            _ => raced,
        }
    }

    /// Notes that `key` was used now; written to the store in batches.
    pub fn mark_used(&self, key: &CachedKey, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = key.last_used_mark.load(Ordering::Relaxed);
        if secs.saturating_sub(last) < LAST_USED_EVERY.as_secs() {
            return;
        }
        key.last_used_mark.store(secs, Ordering::Relaxed);
        if let Ok(mut pending) = self.pending_use.lock() {
            pending.insert(key.id.clone(), now);
        }
    }

    /// Polls the change feed (revocations) and flushes last-used times.
    pub fn start_maintenance(&self) {
        let me = self.clone();
        self.control.spawn(async move {
            // From 0: the cache is empty at start, so replaying old changes only
            // costs one query and yields the current cursor.
            let mut cursor = match me.store.changes_since(0).await {
                Ok((c, _)) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "key store change feed unavailable at start");
                    0
                }
            };
            let mut ticks: u64 = 0;
            loop {
                tokio::time::sleep(CHANGE_POLL).await;
                ticks += 1;
                match me.store.changes_since(cursor).await {
                    Ok((next, ids)) => {
                        if !ids.is_empty() {
                            me.epoch.fetch_add(1, Ordering::AcqRel);
                        }
                        for id in &ids {
                            me.found.remove(id.as_str());
                            me.missing.remove(id.as_str());
                            // No receiver is fine: no session uses a key.
                            let _ = me.changed.send(Arc::from(id.as_str()));
                        }
                        if !ids.is_empty() {
                            tracing::info!(keys = ?ids, "key changes applied to the cache");
                        }
                        cursor = next.max(cursor);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot poll key store changes"),
                }
                if ticks.is_multiple_of(LAST_USED_EVERY.as_secs()) {
                    me.flush_last_used().await;
                }
            }
        });
    }

    async fn flush_last_used(&self) {
        let batch: Vec<(String, SystemTime)> = match self.pending_use.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_last_used(&batch).await {
            tracing::warn!(error = %e, "cannot record key last-used times");
        }
    }
}
