//! Retention: what is kept and for how long. A request and everything made from it — its
//! events, their attempts, its body — is purged once it is older than the retention period
//! and every one of its events is finished (delivered, cancelled or dead-lettered) and has not
//! changed within the period either. Anything still waiting, held or being retried is kept,
//! however old, with its request and body.

use super::models::{Event, EventStatus};
use super::time::Timestamp;

/// Whether `event` is done with: nothing will deliver it again unless an operator retries it.
pub fn is_finished(event: &Event) -> bool {
    match event.status {
        EventStatus::Successful | EventStatus::Cancelled => true,
        EventStatus::Failed => event.dead_lettered_at.is_some(),
        EventStatus::Scheduled | EventStatus::Queued | EventStatus::Hold => false,
    }
}

/// Whether `event` may be purged with its request, everything before `cutoff` being old.
pub fn purgeable(event: &Event, cutoff: Timestamp) -> bool {
    is_finished(event) && event.updated_at < cutoff && event.created_at < cutoff
}

/// The oldest time kept, `max_age_ms` before `now`.
pub fn cutoff(now: Timestamp, max_age_ms: u64) -> Timestamp {
    Timestamp(now.millis().saturating_sub(max_age_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::event;
    use crate::domain::TeamId;

    #[test]
    fn only_finished_events_older_than_the_cutoff_go() {
        let team = TeamId::new();
        let cut = Timestamp(10_000);
        let at = |status, dead: bool, created: u64, updated: u64| {
            let mut e = event(&team);
            e.status = status;
            e.dead_lettered_at = dead.then_some(Timestamp(updated));
            e.created_at = Timestamp(created);
            e.updated_at = Timestamp(updated);
            e
        };
        use EventStatus::*;
        for status in [Successful, Cancelled] {
            assert!(purgeable(&at(status, false, 1, 2), cut), "{status:?}");
            assert!(
                !purgeable(&at(status, false, 1, 10_000), cut),
                "{status:?} changed late"
            );
        }
        assert!(purgeable(&at(Failed, true, 1, 2), cut));
        assert!(
            !purgeable(&at(Failed, false, 1, 2), cut),
            "failed, not dead-lettered"
        );
        for status in [Scheduled, Queued, Hold] {
            assert!(!purgeable(&at(status, false, 1, 2), cut), "{status:?}");
        }
        assert_eq!(cutoff(Timestamp(5_000), 7_000), Timestamp(0));
        assert_eq!(cutoff(Timestamp(50_000), 7_000), Timestamp(43_000));
    }
}
