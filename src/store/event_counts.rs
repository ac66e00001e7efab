//! The per-minute event counts behind `GET /v1/metrics/events`
//! (`domain::event_metrics`), kept by the writer.
//!
//! Each message's changes to events (a new event, a status change, an attempt) are summed by
//! (team, connection, minute of creation); a group's sums are added to their records at the
//! end of the group, in the same sled batch as the changes they count, so the counts are
//! exactly what the store holds, across any crash. A group touches one record per connection
//! and minute, not one per event: the delivery path pays a few hash-map additions per event.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{codec, keys, Result};
use crate::domain::event_metrics::{minute_of, EventCounts};
use crate::domain::*;

/// The ids and creation time that place an event in the counts.
#[derive(Debug, Clone)]
pub struct EventPlace {
    pub team: TeamId,
    pub connection: ConnectionId,
    pub destination: DestinationId,
    pub source: SourceId,
    pub created_at: Timestamp,
}

impl EventPlace {
    pub fn of(e: &Event) -> EventPlace {
        EventPlace {
            team: e.team_id.clone(),
            connection: e.connection_id.clone(),
            destination: e.destination_id.clone(),
            source: e.source_id.clone(),
            created_at: e.created_at,
        }
    }
}

/// The stored record of one connection's minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountsRecord {
    pub destination_id: DestinationId,
    pub source_id: SourceId,
    pub counts: EventCounts,
}

/// Changes to the counts, summed by record, with the connection each record counts.
#[derive(Debug, Default)]
pub struct CountChanges(HashMap<Vec<u8>, (ConnectionId, CountsRecord)>);

impl CountChanges {
    pub fn change(&mut self, place: &EventPlace, f: impl FnOnce(&mut EventCounts)) {
        let key = keys::event_counts(&place.team, minute_of(place.created_at), &place.connection);
        let (_, record) = self.0.entry(key).or_insert_with(|| {
            let record = CountsRecord {
                destination_id: place.destination.clone(),
                source_id: place.source.clone(),
                counts: EventCounts::default(),
            };
            (place.connection.clone(), record)
        });
        f(&mut record.counts);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Moves `other`'s changes into these.
    pub fn absorb(&mut self, other: &mut CountChanges) {
        for (key, change) in other.0.drain() {
            match self.0.get_mut(&key) {
                Some((_, record)) => record.counts.add(&change.1.counts),
                None => {
                    self.0.insert(key, change);
                }
            }
        }
    }

    /// Each connection's change, summed over its minutes (for the tally).
    pub fn by_connection(&self) -> HashMap<ConnectionId, EventCounts> {
        let mut out: HashMap<ConnectionId, EventCounts> = HashMap::new();
        for (connection, record) in self.0.values() {
            out.entry(connection.clone())
                .or_default()
                .add(&record.counts);
        }
        out
    }

    /// The records after these changes: each one read from `tree`, changed, to be written.
    pub fn into_writes(
        self,
        tree: &sled::Tree,
    ) -> Result<impl Iterator<Item = (Vec<u8>, Vec<u8>)>> {
        let mut writes = Vec::with_capacity(self.0.len());
        for (key, (_, change)) in self.0 {
            if change.counts.is_zero() {
                continue;
            }
            let mut record = match tree.get(&key)? {
                Some(bytes) => codec::decode::<CountsRecord>(&bytes)?,
                None => CountsRecord {
                    counts: EventCounts::default(),
                    ..change.clone()
                },
            };
            record.counts.add(&change.counts);
            writes.push((key, codec::encode(&record)));
        }
        Ok(writes.into_iter())
    }
}

/// Which of a team's connections a query counts.
#[derive(Debug, Default, Clone)]
pub struct CountsFilter {
    pub connection: Option<ConnectionId>,
    pub destination: Option<DestinationId>,
    pub source: Option<SourceId>,
}

/// The team's counts from minute `from` to `to` (exclusive) that `filter` admits, by minute
/// (several per minute, one per connection). Blocking.
pub fn read(
    tree: &sled::Tree,
    team: &TeamId,
    from: u64,
    to: u64,
    filter: &CountsFilter,
) -> Result<Vec<(u64, EventCounts)>> {
    let prefix = keys::event_counts_prefix(team);
    let key_at = |minute: u64| [&prefix[..], &minute.to_be_bytes()].concat();
    let mut out = Vec::new();
    for kv in tree.range(key_at(minute_of(Timestamp(from)))..key_at(to)) {
        let (key, value) = kv?;
        let rest = &key[prefix.len()..];
        let (Some(minute), Some(connection)) = (
            rest.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
            rest.get(8..),
        ) else {
            continue;
        };
        if filter
            .connection
            .as_ref()
            .is_some_and(|c| c.as_str().as_bytes() != connection)
        {
            continue;
        }
        let record: CountsRecord = codec::decode(&value)?;
        if filter
            .destination
            .as_ref()
            .is_some_and(|d| d != &record.destination_id)
            || filter
                .source
                .as_ref()
                .is_some_and(|s| s != &record.source_id)
        {
            continue;
        }
        out.push((minute, record.counts));
    }
    Ok(out)
}

/// The counts of every stored event, for a store written before they were kept. An
/// event's attempts are known only by number: all but a delivered event's last are counted
/// as failed.
pub fn count_all(tree: &sled::Tree) -> Result<CountChanges> {
    let mut changes = CountChanges::default();
    for kv in tree.scan_prefix(keys::EVENT) {
        let (_, value) = kv?;
        let e = codec::decode::<super::event_record::EventRecord>(&value)?.event;
        changes.change(&EventPlace::of(&e), |c| {
            c.moved(None, e.status);
            let attempts = i64::from(e.attempts);
            c.attempts += attempts;
            c.failed_attempts += match e.status {
                EventStatus::Successful => (attempts - 1).max(0),
                _ => attempts,
            };
        });
    }
    Ok(changes)
}
