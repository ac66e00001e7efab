//! Which events a list or a bulk retry is about: the filter every event is checked against,
//! and what the store narrows its walk by before that (`Store::list_events`).

use super::{ConnectionId, DestinationId, Event, EventStatus, RequestId, SourceId, Timestamp};

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub request: Option<RequestId>,
    /// Any of these (none: any status).
    pub statuses: Vec<EventStatus>,
    pub connection: Option<ConnectionId>,
    pub destination: Option<DestinationId>,
    pub source: Option<SourceId>,
    pub created_gte: Option<Timestamp>,
    pub created_lte: Option<Timestamp>,
}

impl EventFilter {
    /// Whether `e` passes every part of the filter.
    pub fn admits(&self, e: &Event) -> bool {
        self.request.as_ref().is_none_or(|r| &e.request_id == r)
            && (self.statuses.is_empty() || self.statuses.contains(&e.status))
            && self
                .connection
                .as_ref()
                .is_none_or(|c| &e.connection_id == c)
            && self
                .destination
                .as_ref()
                .is_none_or(|d| &e.destination_id == d)
            && self.source.as_ref().is_none_or(|s| &e.source_id == s)
            && self.created_gte.is_none_or(|t| e.created_at >= t)
            && self.created_lte.is_none_or(|t| e.created_at <= t)
    }
}
