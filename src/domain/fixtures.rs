//! Records for unit tests, built the same way everywhere.

use super::destination_core::QueueEntry;
use super::rules::RetryPolicy;
use super::*;

/// A queued event of `team`, never attempted, created at time 1.
pub fn event(team: &TeamId) -> Event {
    let now = Timestamp(1);
    Event {
        id: EventId::new(),
        team_id: team.clone(),
        connection_id: ConnectionId::new(),
        source_id: SourceId::new(),
        destination_id: DestinationId::new(),
        request_id: RequestId::new(),
        status: EventStatus::Queued,
        attempts: 0,
        next_attempt_at: None,
        last_attempt_at: None,
        response_status: None,
        error_code: None,
        dead_lettered_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// A never-attempted queue entry at position `seq`, accepted at time 0.
pub fn queue_entry(seq: u64, retry: RetryPolicy) -> QueueEntry {
    QueueEntry {
        seq,
        event_id: EventId::new(),
        request_id: RequestId::new(),
        connection_id: ConnectionId::new(),
        attempts: 0,
        next_trigger: Trigger::Initial,
        due_at: None,
        retry,
        created_at: Timestamp(0),
    }
}
