//! The start rate of one destination: at most `rate` attempt starts per `period_ms`, and every
//! start counts (first tries, retries, probes, drains). GCRA with a burst of 1: starts follow
//! one another at the emission interval `period / rate`, never faster.
//! Hand-written because the core's clock is an injected millisecond `Timestamp` and its timer
//! needs "when may the next start happen".

use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimit {
    /// Starts per period; 0 (rejected by the API) acts as 1 rather than stopping the
    /// destination for good.
    pub rate: u32,
    pub period_ms: u64,
}

impl RateLimit {
    /// The emission interval in microseconds, rounded up so that rounding never lets an extra
    /// start into a period.
    fn interval_us(self) -> u64 {
        let period_us = u128::from(self.period_ms) * 1_000;
        let interval = period_us.div_ceil(u128::from(self.rate.max(1)));
        u64::try_from(interval).unwrap_or(u64::MAX)
    }
}

/// No limit configured (the default) = always allowed.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    /// Microseconds between two starts; 0 without a limit.
    interval_us: u64,
    /// The theoretical arrival time, in microseconds since the epoch: when the next start is
    /// due, one interval after the last start's own due time. `None` before the first start.
    tat_us: Option<u64>,
}

impl RateLimiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        RateLimiter {
            interval_us: limit.map_or(0, RateLimit::interval_us),
            tat_us: None,
        }
    }

    /// The next start stays measured from the last one, now with the new interval: a slower
    /// limit pushes it out, a faster one (or none) brings it in. A start made while there was
    /// no limit counts as the last start too.
    pub fn set_limit(&mut self, limit: Option<RateLimit>) {
        let interval_us = limit.map_or(0, RateLimit::interval_us);
        if let Some(tat) = &mut self.tat_us {
            let last_start = tat.saturating_sub(self.interval_us);
            *tat = last_start.saturating_add(interval_us);
        }
        self.interval_us = interval_us;
    }

    /// Takes one start if allowed at `now` (true), else false and nothing changes.
    pub fn try_acquire(&mut self, now: Timestamp) -> bool {
        if self.next_allowed_at(now) > now {
            return false;
        }
        let now_us = micros(now);
        let due = match self.tat_us {
            // GCRA's max(tat, now): a start let into the TAT's millisecond ahead of the TAT
            // keeps the TAT as its time, so the sub-millisecond part carries over and the
            // long-run rate stays exact.
            Some(tat) if self.interval_us > 0 => tat.max(now_us),
            // Without a limit the TAT is just the last start; a clock stepping back must not
            // leave a later one behind for a limit set afterwards.
            _ => now_us,
        };
        self.tat_us = Some(due.saturating_add(self.interval_us));
        true
    }

    /// The earliest time a start is allowed (<= now means now).
    pub fn next_allowed_at(&self, now: Timestamp) -> Timestamp {
        match self.tat_us {
            // A millisecond timestamp stands for its whole millisecond, so the start is
            // allowed in the millisecond the TAT falls in. Each TAT is at least one interval
            // after the previous start, and the interval is rounded up, so `rate + 1` starts
            // still never fit in `period_ms`.
            Some(tat) if self.interval_us > 0 => Timestamp(tat / 1_000).max(now),
            _ => now,
        }
    }
}

fn micros(t: Timestamp) -> u64 {
    t.0.saturating_mul(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn limiter(rate: u32, period_ms: u64) -> RateLimiter {
        RateLimiter::new(Some(RateLimit { rate, period_ms }))
    }

    /// Tries at every millisecond of `0..until`; returns the accepted times.
    fn accepted_every_ms(l: &mut RateLimiter, until: u64) -> Vec<u64> {
        (0..until).filter(|&ms| l.try_acquire(t(ms))).collect()
    }

    /// No `rate` + 1 accepted starts fit in any half-open window of `period_ms`.
    fn fits(accepted: &[u64], rate: u32, period_ms: u64) -> bool {
        accepted
            .windows(rate as usize + 1)
            .all(|w| w[rate as usize] - w[0] >= period_ms)
    }

    #[test]
    fn four_per_second_starts_every_250_ms() {
        let mut l = limiter(4, 1_000);
        assert!(l.try_acquire(t(0)));
        assert!(!l.try_acquire(t(249)));
        assert_eq!(
            l.next_allowed_at(t(249)),
            t(250),
            "a denied try changes nothing"
        );
        assert!(l.try_acquire(t(250)));
        assert!(!l.try_acquire(t(250)));
        assert!(l.try_acquire(t(500)));
        assert!(!l.try_acquire(t(749)));
        assert!(l.try_acquire(t(750)));
        assert!(!l.try_acquire(t(999)));
        assert!(l.try_acquire(t(1_000)));

        let mut l = limiter(4, 1_000);
        assert_eq!(accepted_every_ms(&mut l, 1_000), vec![0, 250, 500, 750]);
    }

    #[test]
    fn three_per_second_rounds_so_no_second_holds_four() {
        let mut l = limiter(3, 1_000);
        let accepted = accepted_every_ms(&mut l, 10_000);
        assert_eq!(&accepted[..4], &[0, 333, 666, 1_000]);
        // The rate holds over the long run too: 3 per second, not 1 per 334 ms.
        assert_eq!(accepted.len(), 30);
        assert!(fits(&accepted, 3, 1_000));

        // Tries landing at odd moments, too.
        let mut l = limiter(3, 1_000);
        let accepted: Vec<u64> = (0..30_000)
            .step_by(7)
            .filter(|&ms| l.try_acquire(t(ms)))
            .collect();
        assert!(fits(&accepted, 3, 1_000));
    }

    #[test]
    fn one_per_hour() {
        let start = 1_780_000_000_000;
        let mut l = limiter(1, HOUR);
        assert!(l.try_acquire(t(start)));
        assert!(!l.try_acquire(t(start + HOUR - 1)));
        assert_eq!(l.next_allowed_at(t(start + 1)), t(start + HOUR));
        assert!(l.try_acquire(t(start + HOUR)));
    }

    #[test]
    fn no_limit_always_allows() {
        let mut l = RateLimiter::default();
        for _ in 0..1_000 {
            assert!(l.try_acquire(t(5)));
        }
        assert!(l.try_acquire(t(4)), "even when the clock steps back");
        assert_eq!(l.next_allowed_at(t(5)), t(5));
        let mut l = RateLimiter::new(None);
        assert!(l.try_acquire(t(0)) && l.try_acquire(t(0)));
    }

    #[test]
    fn a_rate_of_zero_acts_as_one() {
        let mut l = limiter(0, 1_000);
        assert!(l.try_acquire(t(0)));
        assert_eq!(l.next_allowed_at(t(0)), t(1_000));
    }

    #[test]
    fn next_allowed_at_is_exactly_when_a_try_first_succeeds() {
        for (rate, period_ms) in [(4, 1_000), (3, 1_000), (7, 100), (1, 1), (49, 1), (3, 10)] {
            let mut l = limiter(rate, period_ms);
            let mut ms = 0;
            for _ in 0..20 {
                let next = l.next_allowed_at(t(ms));
                while !l.try_acquire(t(ms)) {
                    ms += 1;
                }
                assert_eq!(t(ms), next, "rate {rate}/{period_ms}");
            }
        }
    }

    #[test]
    fn set_limit_measures_from_the_last_start() {
        let mut l = limiter(1, 1_000);
        assert_eq!(l.next_allowed_at(t(0)), t(0), "nothing started yet");
        assert!(l.try_acquire(t(100)));
        l.set_limit(Some(RateLimit {
            rate: 4,
            period_ms: 1_000,
        }));
        assert_eq!(l.next_allowed_at(t(100)), t(350));
        l.set_limit(Some(RateLimit {
            rate: 1,
            period_ms: 10_000,
        }));
        assert_eq!(l.next_allowed_at(t(100)), t(10_100));
        l.set_limit(Some(RateLimit {
            rate: 1,
            period_ms: 10_000,
        }));
        assert_eq!(
            l.next_allowed_at(t(100)),
            t(10_100),
            "the same limit changes nothing"
        );
        l.set_limit(None);
        assert_eq!(l.next_allowed_at(t(200)), t(200));
        assert!(l.try_acquire(t(200)));
        l.set_limit(Some(RateLimit {
            rate: 2,
            period_ms: 1_000,
        }));
        assert_eq!(
            l.next_allowed_at(t(200)),
            t(700),
            "the unlimited start counts as the last one"
        );

        let mut fresh = RateLimiter::new(None);
        fresh.set_limit(Some(RateLimit {
            rate: 1,
            period_ms: 1_000,
        }));
        assert!(fresh.try_acquire(t(0)));
        assert!(!fresh.try_acquire(t(999)));
    }

    proptest! {
        #[test]
        fn no_window_holds_more_than_rate_and_next_allowed_at_always_succeeds(
            rate in 1u32..50,
            period_ms in 1u64..5_000,
            // Each step waits this many ms before trying, or (None) waits for next_allowed_at.
            waits in proptest::collection::vec(proptest::option::of(0u64..3_000), 1..300),
        ) {
            let mut l = limiter(rate, period_ms);
            let mut now = t(1_780_000_000_000);
            let mut accepted = Vec::new();
            for wait in waits {
                now = match wait {
                    Some(ms) => now.plus_ms(ms),
                    None => l.next_allowed_at(now),
                };
                let next = l.next_allowed_at(now);
                prop_assert!(next >= now);
                prop_assert!(l.clone().try_acquire(next), "a try at next_allowed_at failed");
                if next > now {
                    prop_assert!(!l.clone().try_acquire(Timestamp(next.0 - 1)));
                }
                let allowed = l.try_acquire(now);
                prop_assert_eq!(allowed, next == now);
                if allowed {
                    accepted.push(now.0);
                }
            }
            prop_assert!(fits(&accepted, rate, period_ms), "more than {} starts in {} ms: {:?}", rate, period_ms, accepted);
        }
    }
}
