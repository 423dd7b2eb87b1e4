use super::*;
use governor::clock::FakeRelativeClock;

fn limit(rate: u32, per: Duration, burst: u32) -> Limit {
    Limit::new(
        NonZeroU32::new(rate).unwrap(),
        per,
        NonZeroU32::new(burst).unwrap(),
    )
    .unwrap()
}

fn allowed(v: Verdict) -> Allowance {
    match v {
        Verdict::Allowed(a) => a,
        Verdict::Limited(d) => panic!("expected allowed, got {d:?}"),
    }
}

fn limited(v: Verdict) -> Denial {
    match v {
        Verdict::Limited(d) => d,
        Verdict::Allowed(a) => panic!("expected limited, got {a:?}"),
    }
}

#[test]
fn burst_then_refill_one_per_interval() {
    let clock = FakeRelativeClock::default();
    // 2/s burst 4: interval 500 ms.
    let l = KeyLimiter::new(limit(2, Duration::from_secs(1), 4), clock.clone());
    for left in (0..4).rev() {
        assert_eq!(allowed(l.check()).remaining, left);
    }
    let d = limited(l.check());
    assert_eq!(d.retry_after, Duration::from_millis(500));
    // Refusals consume nothing.
    assert_eq!(limited(l.check()).retry_after, Duration::from_millis(500));
    clock.advance(Duration::from_millis(499));
    assert_eq!(limited(l.check()).retry_after, Duration::from_millis(1));
    clock.advance(Duration::from_millis(1));
    assert_eq!(allowed(l.check()).remaining, 0);
    assert!(!l.check().is_allowed());
    // A long pause refills the whole burst, never more.
    clock.advance(Duration::from_secs(60));
    for _ in 0..4 {
        assert!(l.check().is_allowed());
    }
    assert!(!l.check().is_allowed());
}

#[test]
fn retry_after_is_exact_and_reset_covers_the_burst() {
    let clock = FakeRelativeClock::default();
    // 1/m burst 5: after 5 requests the next one waits a whole minute.
    let l = KeyLimiter::new(limit(1, Duration::from_secs(60), 5), clock.clone());
    let first = allowed(l.check());
    assert_eq!(first.remaining, 4);
    assert_eq!(first.reset, Duration::from_secs(60));
    for _ in 0..4 {
        l.check();
    }
    let d = limited(l.check());
    assert_eq!(d.retry_after, Duration::from_secs(60));
    assert_eq!(d.reset, Duration::from_secs(300));
    assert_eq!(retry_after_secs(d.retry_after), 60);
    clock.advance(Duration::from_millis(10_250));
    let d = limited(l.check());
    assert_eq!(d.retry_after, Duration::from_millis(49_750));
    assert_eq!(retry_after_secs(d.retry_after), 50);
}

#[test]
fn keys_are_independent() {
    let clock = FakeRelativeClock::default();
    let q = limit(1, Duration::from_secs(60), 2);
    let a = KeyLimiter::new(q, clock.clone());
    let b = KeyLimiter::new(q, clock.clone());
    assert!(a.check().is_allowed());
    assert!(a.check().is_allowed());
    assert!(!a.check().is_allowed());
    assert_eq!(allowed(b.check()).remaining, 1);
    assert!(b.check().is_allowed());
    assert!(!b.check().is_allowed());
}

#[test]
fn quota_conversion_and_refill_time() {
    let q = limit(50, Duration::from_secs(1), 100);
    assert_eq!(q.emission_interval(), Duration::from_millis(20));
    assert_eq!(q.refill_time(), Duration::from_secs(2));
    let g = q.to_quota();
    assert_eq!(g.replenish_interval(), Duration::from_millis(20));
    assert_eq!(g.burst_size().get(), 100);
    // 1 request per nanosecond or faster cannot be expressed.
    assert!(Limit::new(
        NonZeroU32::new(u32::MAX).unwrap(),
        Duration::from_nanos(1),
        NonZeroU32::MIN
    )
    .is_none());
}

#[test]
fn header_values_follow_the_draft() {
    let q = limit(50, Duration::from_secs(1), 100);
    assert_eq!(policy_item(Scope::Key, &q), "\"key\";q=100;w=2");
    let q = limit(1, Duration::from_secs(60), 5);
    assert_eq!(policy_item(Scope::Ip, &q), "\"ip\";q=5;w=300");
    assert_eq!(
        state_item(Scope::Key, 42, Duration::from_millis(1_001)),
        "\"key\";r=42;t=2"
    );
    assert_eq!(state_item(Scope::Ip, 5, Duration::ZERO), "\"ip\";r=5;t=0");
}

#[test]
fn retry_after_rounds_up_and_is_never_zero() {
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
    assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
    assert_eq!(whole_seconds_up(Duration::ZERO), 0);
}
