//! Brute-force defence: ban an IP address after too many failed logins.
//!
//! Works like SFTPGo's defender or fail2ban. Each failure scores
//! `score_per_failure`; when the failures inside the sliding observation window
//! add up to `threshold`, the address is banned for `ban_time`. A ban ends by
//! itself. The proxy, the SMTP bridge and the SFTP bridge share one
//! [`Defender`], so guessing on one protocol counts against the others.
//!
//! Every method takes `now` from the caller, so there is no hidden clock
//! (which is also why this is a sharded map and not a cache with its own
//! time-based expiry).
//!
//! # Memory
//!
//! At most `max_tracked` addresses are tracked. Scoring an address stores one
//! 16-byte timestamp per failure still inside the window, and fewer than
//! `ceil(threshold / score_per_failure)` of them (reaching that bans it and
//! drops the list), so the worst case is about
//! `max_tracked * (ceil(threshold / score_per_failure) * 16 + 64)` bytes:
//! roughly 20 MB with the defaults. When the table is full, expired entries
//! go first, then the addresses with the fewest recent failures, then the bans
//! that end soonest; an attacker who sprays addresses can therefore cut a
//! real ban short, but never make the table grow.

use crate::client_key::client_key;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How failures turn into bans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefenderPolicy {
    /// Score added by one failed attempt.
    pub score_per_failure: u32,
    /// Score within the observation window that triggers a ban.
    pub threshold: u32,
    /// Only failures younger than this count.
    pub observation_window: Duration,
    /// How long a ban lasts.
    pub ban_time: Duration,
    /// Most addresses tracked at once (bounds memory).
    pub max_tracked: u64,
}

impl Default for DefenderPolicy {
    fn default() -> Self {
        DefenderPolicy {
            score_per_failure: 1,
            threshold: 10,
            observation_window: Duration::from_secs(5 * 60),
            ban_time: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

impl DefenderPolicy {
    /// How many failures inside the window cause a ban. A zero score per
    /// failure never reaches a positive threshold; a zero threshold bans on
    /// the first failure.
    fn failures_to_ban(&self) -> Option<usize> {
        if self.threshold == 0 {
            return Some(1);
        }
        if self.score_per_failure == 0 {
            return None;
        }
        let n = self.threshold.div_ceil(self.score_per_failure);
        Some(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// A ban that a failure just caused, for the audit log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEvent {
    /// The banned address.
    pub ip: IpAddr,
    /// When the ban ends.
    pub until: SystemTime,
    /// The score that reached the threshold.
    pub score: u32,
}

/// One failed attempt: when, and against which user (a keyed hash of the
/// name; [`NO_USER`] when the credential names nobody).
#[derive(Debug, Clone, Copy)]
struct Failure {
    at: SystemTime,
    user: u64,
}

const NO_USER: u64 = 0;

#[derive(Debug)]
enum Entry {
    /// Recent failures, oldest first.
    Scoring(VecDeque<Failure>),
    Banned {
        until: SystemTime,
    },
}

/// The shared defender. Cheap to call from many threads: addresses are
/// spread over independently locked shards, and no lock is held beyond one
/// map operation.
#[derive(Debug)]
pub struct Defender {
    policy: DefenderPolicy,
    failures_to_ban: Option<usize>,
    shards: Box<[Mutex<HashMap<IpAddr, Entry>>]>,
    shard_capacity: usize,
    /// Recent failures per target user, whatever their source: a user
    /// guessed at from many addresses is "under attack", and then every
    /// failure against it bans its source at once.
    users: Mutex<HashMap<u64, VecDeque<SystemTime>>>,
    // Randomly keyed, so an attacker who picks many IPv6 addresses cannot aim
    // them all at one shard or one hash bucket.
    hasher: RandomState,
    /// Bans issued since start: watchers sample it for a ban storm.
    bans: AtomicU64,
}

/// Addresses per shard before the table is split further.
const MIN_PER_SHARD: u64 = 1024;
const MAX_SHARDS: u64 = 16;

impl Defender {
    /// A defender enforcing `policy`, tracking nobody yet.
    pub fn new(policy: DefenderPolicy) -> Defender {
        let max_tracked = policy.max_tracked.max(1);
        let shard_count = (max_tracked / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        let shard_capacity =
            usize::try_from(max_tracked.div_ceil(shard_count)).unwrap_or(usize::MAX);
        let shard_count = usize::try_from(shard_count).unwrap_or(1);
        let shards = (0..shard_count)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        Defender {
            failures_to_ban: policy.failures_to_ban(),
            policy,
            shards,
            shard_capacity,
            users: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
            bans: AtomicU64::new(0),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &DefenderPolicy {
        &self.policy
    }

    /// `Some(remaining)` if `ip` is banned at `now`. Call before doing any
    /// authentication work, and answer with
    /// [`Rejection::banned`](crate::decision::Rejection::banned).
    pub fn check(&self, ip: IpAddr, now: SystemTime) -> Option<Duration> {
        let ip = client_key(ip);
        let mut shard = self.shard(ip);
        let until = match shard.get(&ip) {
            Some(Entry::Banned { until }) => *until,
            _ => return None,
        };
        match until.duration_since(now) {
            Ok(remaining) if !remaining.is_zero() => Some(remaining),
            // The ban is over: forget it, so earlier failures don't count twice.
            _ => {
                shard.remove(&ip);
                None
            }
        }
    }

    /// Records one failed attempt from `ip` at `now`. Returns the ban it
    /// caused, if any. Failures from an address already banned are ignored
    /// rather than extending the ban, so a ban always ends `ban_time` after
    /// it started.
    pub fn record_failure(&self, ip: IpAddr, now: SystemTime) -> Option<BanEvent> {
        self.record_failure_for(ip, None, now)
    }

    /// Like [`Defender::record_failure`] for an attempt on `user` (a login
    /// name, a partner): counted for the source and for the user. A user
    /// with `threshold` failures in the window, from wherever, is under
    /// attack: each further failure against it bans its source at once, so
    /// guessing one user's password from many addresses gets one try per
    /// address. A success of that user clears only that user's failures
    /// ([`Defender::record_success_for`]).
    pub fn record_failure_for(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        now: SystemTime,
    ) -> Option<BanEvent> {
        let needed = self.failures_to_ban?;
        let window = self.policy.observation_window;
        let ip = client_key(ip);
        let user = user.map_or(NO_USER, |u| self.user_hash(u));
        let targeted = user != NO_USER && self.count_user_failure(user, needed, now);
        let mut shard = self.shard(ip);
        if !shard.contains_key(&ip) && shard.len() >= self.shard_capacity {
            self.make_room(&mut shard, now);
        }
        let entry = match shard.entry(ip) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => v.insert(Entry::Scoring(VecDeque::new())),
        };
        if let Entry::Banned { until } = entry {
            if now < *until {
                return None;
            }
            *entry = Entry::Scoring(VecDeque::new());
        }
        let Entry::Scoring(failures) = entry else {
            return None;
        };
        while failures
            .front()
            .is_some_and(|f| !in_window(f.at, now, window))
        {
            failures.pop_front();
        }
        failures.push_back(Failure { at: now, user });
        if failures.len() < needed && !targeted {
            return None;
        }
        let count = u32::try_from(failures.len()).unwrap_or(u32::MAX);
        let score = count.saturating_mul(self.policy.score_per_failure);
        let until = now.checked_add(self.policy.ban_time).unwrap_or(now);
        *entry = Entry::Banned { until };
        self.bans.fetch_add(1, Ordering::Relaxed);
        Some(BanEvent { ip, until, score })
    }

    /// How many bans this defender issued since it was made (a counter
    /// that only grows; a lifted ban does not take one off).
    pub fn bans_issued(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }

    /// Forgets the failures of `ip` against `user` after `user` logged in
    /// from there (a person's mistypes). Failures against other users and
    /// without a user stay: one valid credential must not let its holder
    /// guess other users' passwords forever (9 wrong, 1 right, repeat). It
    /// never lifts a ban. On the HTTP API keys are not mistyped; it is not
    /// called there.
    pub fn record_success_for(&self, ip: IpAddr, user: &str) {
        let ip = client_key(ip);
        let user = self.user_hash(user);
        let mut shard = self.shard(ip);
        if let Some(Entry::Scoring(failures)) = shard.get_mut(&ip) {
            failures.retain(|f| f.user != user);
            if failures.is_empty() {
                shard.remove(&ip);
            }
        }
    }

    /// Counts a failure against `user`; whether the user was already under
    /// attack (`needed` failures in the window before this one).
    fn count_user_failure(&self, user: u64, needed: usize, now: SystemTime) -> bool {
        let window = self.policy.observation_window;
        let mut users = lock(&self.users);
        let cap = usize::try_from(self.policy.max_tracked).unwrap_or(usize::MAX);
        if !users.contains_key(&user) && users.len() >= cap {
            users.retain(|_, f| f.back().is_some_and(|&t| in_window(t, now, window)));
            if users.len() >= cap {
                // Full of users under recent attack: the per-source count
                // still applies to this one.
                return false;
            }
        }
        let failures = users.entry(user).or_default();
        while failures
            .front()
            .is_some_and(|&t| !in_window(t, now, window))
        {
            failures.pop_front();
        }
        let under_attack = failures.len() >= needed;
        // `needed` timestamps decide; more would only cost memory.
        if under_attack {
            failures.pop_front();
        }
        failures.push_back(now);
        under_attack
    }

    fn user_hash(&self, user: &str) -> u64 {
        // 0 stands for "no user".
        self.hasher.hash_one(user).max(1)
    }

    /// Lifts a ban (and forgets all failures) for `ip`'s client (its /64
    /// for IPv6), for the admin API.
    pub fn unban(&self, ip: IpAddr) {
        let ip = client_key(ip);
        self.shard(ip).remove(&ip);
    }

    /// Addresses currently tracked (scoring or banned, including entries that
    /// expired but were not yet cleaned up), for metrics.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn shard(&self, ip: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let n = self.shards.len() as u64;
        // The modulo is below the shard count, which came from a usize.
        let i = usize::try_from(self.hasher.hash_one(ip) % n).unwrap_or(0);
        lock(&self.shards[i])
    }

    /// Frees at least one slot in a full shard. Evicting in batches of an
    /// eighth keeps the O(n) scan amortised to O(1) per new address, even
    /// while an attacker sprays fresh addresses.
    fn make_room(&self, shard: &mut HashMap<IpAddr, Entry>, now: SystemTime) {
        let window = self.policy.observation_window;
        shard.retain(|_, e| match e {
            Entry::Banned { until } => now < *until,
            Entry::Scoring(f) => f.back().is_some_and(|f| in_window(f.at, now, window)),
        });
        let target = self.shard_capacity - (self.shard_capacity / 8).max(1);
        if shard.len() <= target {
            return;
        }
        let excess = shard.len() - target;
        // Least valuable first: few recent failures, then old, then bans ending soon.
        let mut victims: Vec<(u8, usize, SystemTime, IpAddr)> = shard
            .iter()
            .map(|(ip, e)| match e {
                Entry::Scoring(f) => (0, f.len(), f.back().map_or(now, |f| f.at), *ip),
                Entry::Banned { until } => (1, 0, *until, *ip),
            })
            .collect();
        victims.select_nth_unstable_by(excess - 1, |a, b| a.cmp(b));
        for (_, _, _, ip) in &victims[..excess] {
            shard.remove(ip);
        }
    }
}

/// A failure at `t` counts at `now` if it is younger than `window`. A time
/// after `now` (another thread's clock read a moment later) counts as fresh.
fn in_window(t: SystemTime, now: SystemTime, window: Duration) -> bool {
    now.duration_since(t).map_or(true, |age| age < window)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the map consistent before anything can panic, so a
    // poisoned shard is still correct; refusing to serve would turn one bug
    // into a permanent outage of authentication.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::Arc;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn start() -> ManualClock {
        ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn bans_at_threshold_not_before() {
        let d = Defender::new(DefenderPolicy::default());
        let clock = start();
        for i in 1..10 {
            assert_eq!(d.record_failure(ip(1), clock.now()), None, "failure {i}");
            assert_eq!(d.check(ip(1), clock.now()), None);
            clock.advance(Duration::from_secs(1));
        }
        let ban = d
            .record_failure(ip(1), clock.now())
            .expect("10th failure bans");
        assert_eq!(ban.ip, ip(1));
        assert_eq!(ban.score, 10);
        assert_eq!(ban.until, clock.now() + 15 * MIN);
        assert_eq!(d.check(ip(1), clock.now()), Some(15 * MIN));
        clock.advance(MIN);
        assert_eq!(d.check(ip(1), clock.now()), Some(14 * MIN));
        assert_eq!(d.bans_issued(), 1, "one ban counted");
        assert_eq!(d.record_failure(ip(1), clock.now()), None);
        assert_eq!(d.bans_issued(), 1, "a failure while banned is no new ban");
    }

    #[test]
    fn score_per_failure_counts() {
        let d = Defender::new(DefenderPolicy {
            score_per_failure: 3,
            ..DefenderPolicy::default()
        });
        let now = start().now();
        for _ in 0..3 {
            assert_eq!(d.record_failure(ip(1), now), None);
        }
        assert_eq!(d.record_failure(ip(1), now).map(|b| b.score), Some(12));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let d = Defender::new(DefenderPolicy::default());
        let clock = start();
        for _ in 0..9 {
            assert_eq!(d.record_failure(ip(1), clock.now()), None);
        }
        // Exactly the window later, the nine are outside it.
        clock.advance(5 * MIN);
        assert_eq!(d.record_failure(ip(1), clock.now()), None);
        assert_eq!(d.check(ip(1), clock.now()), None);
        // The window slides: eight more (nine in the window) still no ban ...
        for _ in 0..8 {
            assert_eq!(d.record_failure(ip(1), clock.now()), None);
        }
        // ... the tenth inside the window bans.
        clock.advance(4 * MIN);
        assert!(d.record_failure(ip(1), clock.now()).is_some());
    }

    #[test]
    fn ban_lifts_after_ban_time_and_starts_afresh() {
        let d = Defender::new(DefenderPolicy::default());
        let clock = start();
        for _ in 0..10 {
            d.record_failure(ip(1), clock.now());
        }
        assert!(d.check(ip(1), clock.now()).is_some());
        // Failures during a ban neither count nor extend it.
        assert_eq!(d.record_failure(ip(1), clock.now() + MIN), None);
        clock.advance(15 * MIN - Duration::from_millis(1));
        assert_eq!(d.check(ip(1), clock.now()), Some(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(d.check(ip(1), clock.now()), None);
        assert_eq!(d.tracked(), 0);
        // One new failure after the ban is just one failure.
        assert_eq!(d.record_failure(ip(1), clock.now()), None);
        assert_eq!(d.check(ip(1), clock.now()), None);
    }

    #[test]
    fn expired_ban_resets_even_without_check() {
        let d = Defender::new(DefenderPolicy::default());
        let clock = start();
        for _ in 0..10 {
            d.record_failure(ip(1), clock.now());
        }
        clock.advance(16 * MIN);
        assert_eq!(d.record_failure(ip(1), clock.now()), None);
        assert_eq!(d.check(ip(1), clock.now()), None);
    }

    #[test]
    fn distinct_ips_are_independent() {
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        for _ in 0..10 {
            d.record_failure(ip(1), now);
        }
        for _ in 0..9 {
            d.record_failure(ip(2), now);
        }
        assert!(d.check(ip(1), now).is_some());
        assert_eq!(d.check(ip(2), now), None);
        assert_eq!(d.check(ip(3), now), None);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(d.record_failure(v6, now), None);
    }

    #[test]
    fn success_clears_that_users_failures_but_not_bans() {
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        for _ in 0..9 {
            d.record_failure_for(ip(1), Some("alice"), now);
        }
        d.record_success_for(ip(1), "alice");
        assert_eq!(d.record_failure_for(ip(1), Some("alice"), now), None);
        for _ in 0..10 {
            d.record_failure(ip(2), now);
        }
        d.record_success_for(ip(2), "alice");
        assert!(d.check(ip(2), now).is_some());
    }

    #[test]
    fn one_valid_login_does_not_reset_guesses_at_others() {
        // 9 wrong for bob, 1 right for mallory, repeat: the 10th guess bans.
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        for _ in 0..9 {
            assert_eq!(d.record_failure_for(ip(1), Some("bob"), now), None);
        }
        d.record_success_for(ip(1), "mallory");
        assert!(d.record_failure_for(ip(1), Some("bob"), now).is_some());
        assert!(d.check(ip(1), now).is_some());
    }

    #[test]
    fn rotating_inside_an_ipv6_64_is_one_client() {
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        for i in 1..10u16 {
            let a = IpAddr::from([0x2001, 0xdb8, 0, 7, i, i, i, i]);
            assert_eq!(d.record_failure(a, now), None);
        }
        let last = IpAddr::from([0x2001, 0xdb8, 0, 7, 0xffff, 1, 2, 3]);
        assert!(d.record_failure(last, now).is_some());
        let neighbour = IpAddr::from([0x2001, 0xdb8, 0, 7, 9, 9, 9, 9]);
        assert!(d.check(neighbour, now).is_some());
        let other_net = IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]);
        assert_eq!(d.check(other_net, now), None);
        d.unban(neighbour);
        assert_eq!(d.check(last, now), None);
    }

    #[test]
    fn a_user_guessed_at_from_many_addresses_bans_each_further_source() {
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        // Ten addresses, one guess each: none reaches the per-source threshold.
        for n in 1..=10 {
            assert_eq!(d.record_failure_for(ip(n), Some("carol"), now), None);
        }
        // From now on carol is under attack: one guess per address.
        assert!(d.record_failure_for(ip(11), Some("carol"), now).is_some());
        assert!(d.check(ip(11), now).is_some());
        // Other users are unaffected, and the attack decays with the window.
        assert_eq!(d.record_failure_for(ip(12), Some("dave"), now), None);
        let later = now + Duration::from_secs(5 * 60);
        assert_eq!(d.record_failure_for(ip(13), Some("carol"), later), None);
    }

    #[test]
    fn unban_lifts_at_once() {
        let d = Defender::new(DefenderPolicy::default());
        let now = start().now();
        for _ in 0..10 {
            d.record_failure(ip(1), now);
        }
        d.unban(ip(1));
        assert_eq!(d.check(ip(1), now), None);
        assert_eq!(d.record_failure(ip(1), now), None);
    }

    #[test]
    fn degenerate_policies() {
        let now = start().now();
        let never = Defender::new(DefenderPolicy {
            score_per_failure: 0,
            ..DefenderPolicy::default()
        });
        for _ in 0..100 {
            assert_eq!(never.record_failure(ip(1), now), None);
        }
        let at_once = Defender::new(DefenderPolicy {
            threshold: 0,
            ..DefenderPolicy::default()
        });
        assert!(at_once.record_failure(ip(1), now).is_some());
    }

    #[test]
    fn memory_is_bounded_and_bans_outlive_one_off_failures() {
        let d = Defender::new(DefenderPolicy {
            max_tracked: 64,
            ..DefenderPolicy::default()
        });
        let now = start().now();
        let banned = IpAddr::from([198, 51, 100, 1]);
        for _ in 0..10 {
            d.record_failure(banned, now);
        }
        for i in 0..10_000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            d.record_failure(IpAddr::from([10, 0, a, b]), now);
            assert!(d.tracked() <= 64);
        }
        assert!(d.check(banned, now).is_some());
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let d = Defender::new(DefenderPolicy {
            max_tracked: 8,
            ..DefenderPolicy::default()
        });
        let clock = start();
        for n in 0..8 {
            d.record_failure(ip(n), clock.now());
        }
        assert_eq!(d.tracked(), 8);
        clock.advance(6 * MIN);
        d.record_failure(ip(100), clock.now());
        assert_eq!(d.tracked(), 1);
    }

    #[test]
    fn concurrent_failures_ban_exactly_once() {
        let d = Arc::new(Defender::new(DefenderPolicy {
            threshold: 100,
            ..DefenderPolicy::default()
        }));
        let now = start().now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let d = Arc::clone(&d);
                std::thread::spawn(move || {
                    (0..50).filter_map(|_| d.record_failure(ip(7), now)).count()
                })
            })
            .collect();
        let bans: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(bans, 1);
        assert!(d.check(ip(7), now).is_some());
    }
}
