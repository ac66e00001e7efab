//! A bulk retry (`POST /v1/bulk/events/retry`): which events it selects, and how far it got.
//! The job walks the team's events in creation order; its cursor is stored with each retry,
//! so a restart resumes it after the last event it retried, and none is retried twice.

use serde::{Deserialize, Serialize};

use super::event_filter::EventFilter;
use super::ids::*;
use super::models::EventStatus;
use super::time::Timestamp;

/// The events a bulk retry selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkQuery {
    pub connection_id: Option<ConnectionId>,
    pub destination_id: Option<DestinationId>,
    /// Never contains `HOLD`: held events wait for their connection, not for a retry.
    pub status: Vec<EventStatus>,
    pub created_gte: Option<Timestamp>,
    pub created_lte: Option<Timestamp>,
}

impl BulkQuery {
    /// `HOLD` is dropped from the statuses: held events are never selected.
    pub fn new(
        connection_id: Option<ConnectionId>,
        destination_id: Option<DestinationId>,
        status: Vec<EventStatus>,
        created_gte: Option<Timestamp>,
        created_lte: Option<Timestamp>,
    ) -> Self {
        let mut status: Vec<EventStatus> = status
            .into_iter()
            .filter(|s| *s != EventStatus::Hold)
            .collect();
        status.dedup();
        BulkQuery {
            connection_id,
            destination_id,
            status,
            created_gte,
            created_lte,
        }
    }

    /// The events the job started at `started_at` retries: those it selects that were
    /// created by then (later ones are not its business). `None`: it selects nothing (only
    /// `HOLD` was asked for).
    pub fn filter(&self, started_at: Timestamp) -> Option<EventFilter> {
        if self.status.is_empty() {
            return None;
        }
        Some(EventFilter {
            request: None,
            statuses: self.status.clone(),
            connection: self.connection_id.clone(),
            destination: self.destination_id.clone(),
            source: None,
            created_gte: self.created_gte,
            created_lte: Some(self.created_lte.map_or(started_at, |t| t.min(started_at))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BulkStatus {
    Running,
    Completed,
}

/// A bulk retry job and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkRetryJob {
    pub id: BulkRetryId,
    pub team_id: TeamId,
    pub query: BulkQuery,
    pub status: BulkStatus,
    /// Events the query selected when the job was created.
    pub estimated_count: u64,
    /// Events given a `BULK_RETRY` attempt (or put on hold, on a paused connection).
    pub retried_count: u64,
    /// Selected events left alone: waiting for an attempt already by the time the job
    /// reached them, or their connection or destination deleted.
    pub skipped_count: u64,
    /// The last event the job has dealt with; it goes on after it.
    pub cursor: Option<EventId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl BulkRetryJob {
    pub fn new(team_id: TeamId, query: BulkQuery, estimated_count: u64, now: Timestamp) -> Self {
        BulkRetryJob {
            id: BulkRetryId::new(),
            team_id,
            query,
            status: BulkStatus::Running,
            estimated_count,
            retried_count: 0,
            skipped_count: 0,
            cursor: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }

    /// The job once `event` is retried.
    pub fn retried(&self, event: &EventId, now: Timestamp) -> Self {
        BulkRetryJob {
            retried_count: self.retried_count + 1,
            cursor: Some(event.clone()),
            updated_at: now,
            ..self.clone()
        }
    }

    /// The job once it has walked past `last` (events it did not retry).
    pub fn passed(&self, last: &EventId, skipped: u64, now: Timestamp) -> Self {
        BulkRetryJob {
            skipped_count: self.skipped_count + skipped,
            cursor: Some(last.clone()),
            updated_at: now,
            ..self.clone()
        }
    }

    pub fn completed(&self, now: Timestamp) -> Self {
        BulkRetryJob {
            status: BulkStatus::Completed,
            updated_at: now,
            completed_at: Some(now),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::event;

    #[test]
    fn held_events_are_never_selected_and_later_events_are_not_the_jobs() {
        let q = BulkQuery::new(
            None,
            None,
            vec![EventStatus::Failed, EventStatus::Hold],
            None,
            None,
        );
        assert_eq!(q.status, vec![EventStatus::Failed]);
        let mut e = event(&TeamId::new());
        e.created_at = Timestamp(10);
        e.status = EventStatus::Hold;
        assert!(!q.filter(Timestamp(20)).is_some_and(|f| f.admits(&e)));
        e.status = EventStatus::Failed;
        assert!(q.filter(Timestamp(20)).is_some_and(|f| f.admits(&e)));
        assert!(
            !q.filter(Timestamp(5)).is_some_and(|f| f.admits(&e)),
            "created after the job started"
        );
        let only_other = BulkQuery::new(
            Some(ConnectionId::new()),
            None,
            vec![EventStatus::Failed],
            None,
            None,
        );
        assert!(!only_other
            .filter(Timestamp(20))
            .is_some_and(|f| f.admits(&e)));
        let window = BulkQuery::new(
            None,
            None,
            vec![EventStatus::Failed],
            Some(Timestamp(11)),
            None,
        );
        assert!(!window.filter(Timestamp(20)).is_some_and(|f| f.admits(&e)));
        let only_held = BulkQuery::new(None, None, vec![EventStatus::Hold], None, None);
        assert!(
            only_held.filter(Timestamp(20)).is_none(),
            "selects nothing, not everything"
        );
    }

    #[test]
    fn progress_moves_the_cursor_and_counts() {
        let job = BulkRetryJob::new(
            TeamId::new(),
            BulkQuery::new(None, None, vec![], None, None),
            3,
            Timestamp(1),
        );
        let a = EventId::new();
        let b = EventId::new();
        let job = job.retried(&a, Timestamp(2)).passed(&b, 2, Timestamp(3));
        assert_eq!((job.retried_count, job.skipped_count), (1, 2));
        assert_eq!(job.cursor, Some(b));
        let done = job.completed(Timestamp(4));
        assert_eq!(done.status, BulkStatus::Completed);
        assert_eq!(done.completed_at, Some(Timestamp(4)));
    }
}
