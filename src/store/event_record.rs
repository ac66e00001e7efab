//! How an event is stored: the event and its first attempts in one record. Recording a
//! delivery is then one sled write (the event's new state with its attempt), not two; each
//! sled insert copies a whole leaf, so this is most of a write saved per delivered event
//! (BENCHMARKS.md). Attempts past the first `INLINE_ATTEMPTS` go to `A/{event}/{n}` keys, so
//! an event retried thousands of times does not rewrite an ever-growing record.

use serde::{Deserialize, Serialize};

use crate::domain::*;

/// Attempts kept inside the event record; later ones get their own keys.
pub const INLINE_ATTEMPTS: usize = 8;

/// The stored form of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: Event,
    pub attempts: Vec<InlineAttempt>,
}

/// Borrowed twin of `EventRecord`, to encode a new event without cloning it.
#[derive(Serialize)]
pub struct NewEventRecord<'a> {
    pub event: &'a Event,
    /// A slice, not an array: it must encode as a sequence, like the `Vec` it decodes to.
    pub attempts: &'a [InlineAttempt],
}

/// An attempt without the ids it shares with its event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InlineAttempt {
    id: AttemptId,
    attempt_number: u32,
    trigger: Trigger,
    status: AttemptStatus,
    response_status: Option<u16>,
    error_code: Option<DeliveryError>,
    duration_ms: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl InlineAttempt {
    pub fn new(a: Attempt) -> InlineAttempt {
        InlineAttempt {
            id: a.id,
            attempt_number: a.attempt_number,
            trigger: a.trigger,
            status: a.status,
            response_status: a.response_status,
            error_code: a.error_code,
            duration_ms: a.duration_ms,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }

    pub fn attempt(&self, event: &Event) -> Attempt {
        Attempt {
            id: self.id.clone(),
            team_id: event.team_id.clone(),
            event_id: event.id.clone(),
            destination_id: event.destination_id.clone(),
            attempt_number: self.attempt_number,
            trigger: self.trigger,
            status: self.status,
            response_status: self.response_status,
            error_code: self.error_code,
            duration_ms: self.duration_ms,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl EventRecord {
    /// Applies a change. Returns the attempt it carries when that does not fit inline and
    /// must be stored under its own key.
    pub fn apply(&mut self, patch: EventPatch) -> Option<Attempt> {
        patch.apply(&mut self.event);
        let attempt = patch.attempt?;
        if self.attempts.len() < INLINE_ATTEMPTS {
            self.attempts.push(InlineAttempt::new(attempt));
            None
        } else {
            Some(attempt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempts_stay_inline_and_later_ones_spill() {
        let now = Timestamp(5);
        let event = crate::domain::fixtures::event(&TeamId::new());
        let mut record = EventRecord {
            event: event.clone(),
            attempts: Vec::new(),
        };
        let attempt = |n| Attempt {
            id: AttemptId::new(),
            team_id: event.team_id.clone(),
            event_id: event.id.clone(),
            destination_id: event.destination_id.clone(),
            attempt_number: n,
            trigger: Trigger::Automatic,
            status: AttemptStatus::Failed,
            response_status: Some(500),
            error_code: None,
            duration_ms: 3,
            created_at: now,
            updated_at: now,
        };
        for n in 1..=INLINE_ATTEMPTS as u32 + 2 {
            let patch = EventPatch {
                attempts: Some(n),
                attempt: Some(attempt(n)),
                updated_at: Timestamp(n as u64),
                ..Default::default()
            };
            let spilled = record.apply(patch);
            assert_eq!(
                spilled.is_some(),
                n as usize > INLINE_ATTEMPTS,
                "attempt {n}"
            );
        }
        assert_eq!(record.event.attempts, INLINE_ATTEMPTS as u32 + 2);
        assert_eq!(record.attempts.len(), INLINE_ATTEMPTS);
        let first = record.attempts[0].attempt(&record.event);
        assert_eq!(first.attempt_number, 1);
        assert_eq!(first.event_id, event.id);
        assert_eq!(first.response_status, Some(500));
    }
}
