//! `spool_growing`: the SMTP spool (messages accepted, not yet delivered
//! to the backend) deeper than a threshold, or growing for a while: each
//! sample at least as deep as the one before, and deeper at the end than
//! when it began (a backend that takes nothing while mail keeps coming).

use std::time::{Duration, Instant};

/// The spool's depth over time.
#[derive(Default)]
pub struct SpoolTrend {
    last: Option<u64>,
    /// When the depth last stopped shrinking, and the depth then.
    growing_since: Option<(Instant, u64)>,
}

/// What one sample shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolState {
    /// Messages in the spool now.
    pub depth: u64,
    /// How long it has grown without shrinking, and by how many messages.
    pub growing: Option<(Duration, u64)>,
}

impl SpoolTrend {
    /// Records the depth at `now`.
    pub fn sample(&mut self, now: Instant, depth: u64) -> SpoolState {
        let shrank = self.last.is_some_and(|l| depth < l);
        if depth == 0 || shrank || self.growing_since.is_none() {
            self.growing_since = (depth > 0).then_some((now, depth));
        }
        self.last = Some(depth);
        let growing = self.growing_since.and_then(|(at, from)| {
            (depth > from).then(|| (now.saturating_duration_since(at), depth - from))
        });
        SpoolState { depth, growing }
    }
}

impl SpoolState {
    /// Whether a rule with these thresholds fires.
    pub fn fires(&self, depth: u64, growing_for: Duration) -> bool {
        self.depth >= depth || self.growing.is_some_and(|(d, _)| d >= growing_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_a_rise_without_a_fall() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let min = Duration::from_secs(60);
        let mut t = SpoolTrend::default();
        assert_eq!(t.sample(s(0), 0).growing, None);
        assert_eq!(t.sample(s(10), 2).growing, None, "growth starts here");
        assert_eq!(t.sample(s(40), 2).growing, None, "flat is not growing");
        let st = t.sample(s(70), 5);
        assert_eq!(st.growing, Some((Duration::from_secs(60), 3)));
        assert!(st.fires(100, min), "growing for a minute");
        assert!(!st.fires(100, Duration::from_secs(61)));
        // The backend takes some: the growth starts over.
        assert_eq!(t.sample(s(80), 4).growing, None);
        assert!(!t.sample(s(100), 6).fires(100, min));
        assert!(
            t.sample(s(110), 6).fires(6, Duration::from_secs(3600)),
            "deep enough"
        );
        assert_eq!(t.sample(s(120), 0).growing, None);
    }
}
