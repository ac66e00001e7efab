//! The events metrics of `GET /v1/metrics/events`: counts of the events created in each time
//! bucket by their status now, and of the attempts made on them.
//!
//! The store keeps one `EventCounts` per connection and minute of creation, changed in the
//! same batch as the events it counts; a query sums the minutes of its buckets. Pure: the
//! store and the API layer do the IO.

use serde::{Deserialize, Serialize};

use super::{EventStatus, Timestamp};

pub const MINUTE_MS: u64 = 60_000;

/// The minute an event created at `t` is counted in (its first millisecond).
pub fn minute_of(t: Timestamp) -> u64 {
    t.millis() / MINUTE_MS * MINUTE_MS
}

/// Events of one connection created in one minute, by status, and their attempts. Signed:
/// a sum of changes, each of which moves one event from one status to another.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub scheduled: i64,
    pub queued: i64,
    pub hold: i64,
    pub successful: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub attempts: i64,
    pub failed_attempts: i64,
}

impl EventCounts {
    fn of(&mut self, status: EventStatus) -> &mut i64 {
        match status {
            EventStatus::Scheduled => &mut self.scheduled,
            EventStatus::Queued => &mut self.queued,
            EventStatus::Hold => &mut self.hold,
            EventStatus::Successful => &mut self.successful,
            EventStatus::Failed => &mut self.failed,
            EventStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// An event with this status was purged.
    pub fn removed(&mut self, status: EventStatus) {
        *self.of(status) -= 1;
    }

    /// An event left `from` (`None`: it is new) for `to`.
    pub fn moved(&mut self, from: Option<EventStatus>, to: EventStatus) {
        if let Some(from) = from {
            *self.of(from) -= 1;
        }
        *self.of(to) += 1;
    }

    pub fn attempted(&mut self, failed: bool) {
        self.attempts += 1;
        self.failed_attempts += i64::from(failed);
    }

    pub fn add(&mut self, other: &EventCounts) {
        self.scheduled += other.scheduled;
        self.queued += other.queued;
        self.hold += other.hold;
        self.successful += other.successful;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.attempts += other.attempts;
        self.failed_attempts += other.failed_attempts;
    }

    pub fn is_zero(&self) -> bool {
        *self == EventCounts::default()
    }
}

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "1m" => Some(Granularity::Minute),
            "1h" => Some(Granularity::Hour),
            "1d" => Some(Granularity::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            Granularity::Minute => MINUTE_MS,
            Granularity::Hour => 60 * MINUTE_MS,
            Granularity::Day => 24 * 60 * MINUTE_MS,
        }
    }

    /// The start of the bucket holding `t` (UTC).
    pub fn bucket_of(self, t: u64) -> u64 {
        t / self.millis() * self.millis()
    }
}

/// One figure a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    HoldCount,
    QueuedCount,
    ScheduledCount,
    FailedCount,
    DeliveredCount,
    AttemptCount,
    ErrorRate,
}

impl Measure {
    pub const ALL: [Measure; 7] = [
        Measure::HoldCount,
        Measure::QueuedCount,
        Measure::ScheduledCount,
        Measure::FailedCount,
        Measure::DeliveredCount,
        Measure::AttemptCount,
        Measure::ErrorRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Measure::HoldCount => "hold_count",
            Measure::QueuedCount => "queued_count",
            Measure::ScheduledCount => "scheduled_count",
            Measure::FailedCount => "failed_count",
            Measure::DeliveredCount => "delivered_count",
            Measure::AttemptCount => "attempt_count",
            Measure::ErrorRate => "error_rate",
        }
    }

    pub fn parse(s: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The figure for `counts`: a count, or for `error_rate` the share of attempts that
    /// failed (0 without attempts).
    pub fn value(self, c: &EventCounts) -> serde_json::Value {
        let count = |n: i64| serde_json::Value::from(n.max(0));
        match self {
            Measure::HoldCount => count(c.hold),
            Measure::QueuedCount => count(c.queued),
            Measure::ScheduledCount => count(c.scheduled),
            Measure::FailedCount => count(c.failed),
            Measure::DeliveredCount => count(c.successful),
            Measure::AttemptCount => count(c.attempts),
            Measure::ErrorRate => {
                let rate = if c.attempts > 0 {
                    c.failed_attempts.max(0) as f64 / c.attempts as f64
                } else {
                    0.0
                };
                serde_json::Value::from(rate)
            }
        }
    }
}

/// Sums per-minute counts into buckets of `granularity` from the bucket holding `from` to
/// `to` (exclusive): whole buckets, every one present, empty ones zero.
pub fn buckets(
    minutes: impl IntoIterator<Item = (u64, EventCounts)>,
    from: u64,
    to: u64,
    granularity: Granularity,
) -> Vec<(u64, EventCounts)> {
    let first = granularity.bucket_of(from);
    let width = granularity.millis();
    let n = to.saturating_sub(first).div_ceil(width) as usize;
    let mut out: Vec<(u64, EventCounts)> = (0..n)
        .map(|i| (first + i as u64 * width, EventCounts::default()))
        .collect();
    for (minute, counts) in minutes {
        if minute < first || minute >= to {
            continue;
        }
        let i = ((minute - first) / width) as usize;
        if let Some((_, sum)) = out.get_mut(i) {
            sum.add(&counts);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_moves_between_statuses_and_attempts_count_by_outcome() {
        let mut c = EventCounts::default();
        c.moved(None, EventStatus::Queued);
        c.attempted(true);
        c.moved(Some(EventStatus::Queued), EventStatus::Scheduled);
        c.attempted(false);
        c.moved(Some(EventStatus::Scheduled), EventStatus::Successful);
        assert_eq!(
            c,
            EventCounts {
                successful: 1,
                attempts: 2,
                failed_attempts: 1,
                ..Default::default()
            }
        );
        assert_eq!(Measure::ErrorRate.value(&c), serde_json::json!(0.5));
        assert_eq!(Measure::DeliveredCount.value(&c), serde_json::json!(1));
        assert_eq!(
            Measure::ErrorRate.value(&EventCounts::default()),
            serde_json::json!(0.0)
        );
    }

    #[test]
    fn minutes_sum_into_every_bucket_of_the_range() {
        let hour = Granularity::Hour.millis();
        let held = |n| EventCounts {
            hold: n,
            ..Default::default()
        };
        // From 00:30 to 03:00: buckets 00:00 (whole), 01:00, 02:00.
        let minutes = [
            (10 * MINUTE_MS, held(8)), // 00:10: in the first bucket
            (40 * MINUTE_MS, held(1)),
            (59 * MINUTE_MS, held(2)),
            (2 * hour + 5 * MINUTE_MS, held(4)),
            (3 * hour, held(100)), // `to` is exclusive
        ];
        let got = buckets(minutes, 30 * MINUTE_MS, 3 * hour, Granularity::Hour);
        assert_eq!(
            got,
            vec![(0, held(11)), (hour, held(0)), (2 * hour, held(4))]
        );
    }

    #[test]
    fn names_parse_back() {
        for m in Measure::ALL {
            assert_eq!(Measure::parse(m.as_str()), Some(m));
        }
        assert_eq!(Measure::parse("held_count"), None);
        assert_eq!(Granularity::parse("1h"), Some(Granularity::Hour));
        assert_eq!(Granularity::parse("5m"), None);
    }
}
