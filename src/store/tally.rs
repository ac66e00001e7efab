//! How many events each connection has `HOLD` and `FAILED` right now: the backlog an
//! operator watches while a branch is paused or failing (`fasthook_events_hold`,
//! `fasthook_events_failed`).
//!
//! The writer keeps it from the same changes as the event counts (`event_counts`), once a
//! group is in sled, so it counts what the store holds and nothing a failed commit dropped;
//! opening a store counts it from the event index (both statuses are indexed per
//! connection). A scrape reads these numbers; it never scans the store.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{keys, Result};
use crate::domain::event_metrics::EventCounts;
use crate::domain::{ConnectionId, EventStatus, Team};

/// One connection's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub hold: u64,
    pub failed: u64,
}

/// Every connection's counts.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<HashMap<ConnectionId, Counts>>,
}

impl Tally {
    /// Counts the event index of `tree`: one seek per team and a walk of its per-connection
    /// keys (`X/{team}/c/{connection}/{STATUS}/{event}`).
    pub fn count(tree: &sled::Tree) -> Result<Tally> {
        let mut found: HashMap<ConnectionId, EventCounts> = HashMap::new();
        for team in tree.scan_prefix(keys::TEAM).values() {
            let team: Team = super::codec::decode(&team?)?;
            let prefix = keys::connection_index_prefix(&team.id);
            for key in tree.scan_prefix(&prefix).keys() {
                let key = key?;
                if let Some((connection, status)) = parse(&key[prefix.len()..]) {
                    found.entry(connection).or_default().moved(None, status);
                }
            }
        }
        let tally = Tally::default();
        tally.apply(found.iter());
        Ok(tally)
    }

    /// Applies changes that are now in the store: the `hold` and `failed` of each
    /// connection's summed event count changes.
    pub fn apply<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a ConnectionId, &'a EventCounts)>,
    ) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (connection, change) in changes {
            if change.hold == 0 && change.failed == 0 {
                continue;
            }
            let counts = counts.entry(connection.clone()).or_default();
            counts.hold = counts.hold.saturating_add_signed(change.hold);
            counts.failed = counts.failed.saturating_add_signed(change.failed);
        }
    }

    /// One connection's counts (zero for one that never had a held or failed event).
    pub fn get(&self, connection: &ConnectionId) -> Counts {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(connection).copied().unwrap_or_default()
    }

    /// The counts of every connection that has or had a held or failed event (deleted ones
    /// too).
    pub fn snapshot(&self) -> HashMap<ConnectionId, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `{connection}/{STATUS}/{event}`.
fn parse(rest: &[u8]) -> Option<(ConnectionId, EventStatus)> {
    let mut parts = rest.split(|&b| b == b'/');
    let connection = std::str::from_utf8(parts.next()?).ok()?;
    let status = std::str::from_utf8(parts.next()?).ok()?;
    Some((
        ConnectionId::parse_loose(connection).ok()?,
        EventStatus::parse(status)?,
    ))
}
