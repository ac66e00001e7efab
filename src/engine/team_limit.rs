//! The per-team ingress limit (`ingress.team_rate_limit`): one team flooding its source URLs
//! gets 429s, and the gateway's disk, writer and actors stay free for the others. A team may
//! burst a whole second's allowance at once (providers send in bursts) and then refills at
//! the rate. governor's keyed GCRA: lock-free per team, and a test clock for the unit tests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::TeamId;

/// One GCRA state per team.
type PerTeam<C> =
    RateLimiter<TeamId, DefaultKeyedStateStore<TeamId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub struct TeamIngressLimit<C: Clock = DefaultClock> {
    limiter: Option<PerTeam<C>>,
    clock: C,
}

impl TeamIngressLimit<DefaultClock> {
    /// At most `per_second` requests per second per team; 0 for no limit.
    pub fn new(per_second: u32) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> TeamIngressLimit<C> {
    pub fn with_clock(per_second: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            RateLimiter::new(
                Quota::per_second(rate),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            )
        });
        TeamIngressLimit { limiter, clock }
    }

    /// Takes one request of `team`'s allowance, or says how long until it may send again.
    pub fn check(&self, team: &TeamId) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check_key(team)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }
}

/// `Retry-After` in whole seconds, never 0 (a client told 0 retries at once).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn team(name: &str) -> TeamId {
        TeamId::parse_loose(name).unwrap()
    }

    #[test]
    fn a_team_bursts_its_second_then_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let limit = TeamIngressLimit::with_clock(10, clock.clone());
        let a = team("tm_a");
        for i in 0..10 {
            assert_eq!(limit.check(&a), Ok(()), "request {i} of the burst");
        }
        let wait = limit.check(&a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        clock.advance(Duration::from_millis(99));
        assert!(limit.check(&a).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(limit.check(&a), Ok(()));
        assert!(limit.check(&a).is_err());
        // A second at rest refills the whole burst, and no more.
        clock.advance(Duration::from_secs(5));
        let allowed = (0..30).filter(|_| limit.check(&a).is_ok()).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn teams_do_not_share_an_allowance() {
        let clock = FakeRelativeClock::default();
        let limit = TeamIngressLimit::with_clock(3, clock);
        let (a, b) = (team("tm_a"), team("tm_b"));
        while limit.check(&a).is_ok() {}
        for _ in 0..3 {
            assert_eq!(limit.check(&b), Ok(()));
        }
        assert!(limit.check(&b).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limit = TeamIngressLimit::with_clock(0, FakeRelativeClock::default());
        let a = team("tm_a");
        assert!((0..10_000).all(|_| limit.check(&a).is_ok()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
