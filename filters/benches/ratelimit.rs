//! The per-request cost of a rate-limit check on a warm key: what every
//! proxied request pays once per limit (per IP, per principal).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::{DefaultClock, FakeRelativeClock};
use mft_filters::ratelimit::{state_item, KeyLimiter, Limit, Scope, Verdict};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

fn limit(rate: u32, burst: u32) -> Limit {
    let n = |v| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
    Limit::new(n(rate), Duration::from_secs(1), n(burst)).expect("valid limit")
}

fn bench(c: &mut Criterion) {
    // A quota no benchmark loop can exhaust, on the real clock: the allowed path.
    let warm = KeyLimiter::new(limit(1_000_000, u32::MAX / 2), DefaultClock::default());
    c.bench_function("ratelimit/check_allowed_warm_key", |b| {
        b.iter(|| black_box(warm.check()))
    });
    // Exhausted on a stopped clock: the refused path.
    let exhausted = KeyLimiter::new(limit(1, 1), FakeRelativeClock::default());
    let _ = exhausted.check();
    c.bench_function("ratelimit/check_limited", |b| {
        b.iter(|| black_box(exhausted.check()))
    });
    // Check plus the `RateLimit` header value an allowed response carries.
    c.bench_function("ratelimit/check_and_header", |b| {
        b.iter(|| match warm.check() {
            Verdict::Allowed(a) => black_box(state_item(Scope::Key, a.remaining, a.reset)),
            Verdict::Limited(_) => String::new(),
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
