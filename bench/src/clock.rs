//! One monotonic clock for the whole process. Generator and receiver live in the same
//! process, so an event's scheduled time and its arrival are read off the same clock and
//! no clock synchronisation is needed.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's time origin (set on first use).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The [`Instant`] at `ns` nanoseconds after [`epoch`].
pub fn instant_at(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

/// Seconds as nanoseconds.
pub fn secs_ns(secs: f64) -> u64 {
    (secs * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_round_trips() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let at = instant_at(a);
        assert_eq!(at.duration_since(epoch()).as_nanos() as u64, a);
        assert_eq!(secs_ns(1.5), 1_500_000_000);
    }
}
