//! `ban_storm`: many defender bans in a short time (a password-guessing
//! campaign from many addresses). The defender counts the bans it issues;
//! this keeps samples of that counter and tells how many fell in a window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples of the ban counter, kept for the longest window watched.
pub struct BanSamples {
    samples: VecDeque<(Instant, u64)>,
    keep: Duration,
}

impl BanSamples {
    /// Samples kept for `keep` (the longest rule's window).
    pub fn new(keep: Duration) -> BanSamples {
        BanSamples {
            samples: VecDeque::new(),
            keep,
        }
    }

    /// Records the counter's value at `now`.
    pub fn sample(&mut self, now: Instant, bans: u64) {
        self.samples.push_back((now, bans));
        // Keep one sample at or before the window's start as its baseline.
        while self.samples.len() > 1
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// Bans within `window` before the last sample (as far as samples
    /// reach: before the first sample nothing is counted).
    pub fn within(&self, window: Duration) -> u64 {
        let Some(&(now, last)) = self.samples.back() else {
            return 0;
        };
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= window)
            .or_else(|| self.samples.front())
            .map_or(last, |(_, n)| *n);
        last.saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_bans_of_the_window_only() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut b = BanSamples::new(Duration::from_secs(60));
        b.sample(s(0), 5);
        assert_eq!(b.within(Duration::from_secs(60)), 0, "bans before watching");
        b.sample(s(10), 7);
        b.sample(s(20), 9);
        assert_eq!(b.within(Duration::from_secs(60)), 4);
        assert_eq!(b.within(Duration::from_secs(10)), 2);
        b.sample(s(75), 9);
        assert_eq!(
            b.within(Duration::from_secs(60)),
            2,
            "from the sample at 10 s"
        );
        b.sample(s(200), 9);
        assert_eq!(b.within(Duration::from_secs(60)), 0, "a quiet minute");
        assert!(b.samples.len() <= 3, "old samples dropped");
    }
}
