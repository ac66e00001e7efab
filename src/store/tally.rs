//! How many events each connection has `HOLD` and `FAILED` right now: the backlog an
//! operator watches while a branch is paused or failing (`fasthook_events_hold`,
//! `fasthook_events_failed`).
//!
//! The writer keeps it as it applies each change, after the change is in sled, so it counts
//! what the store holds and nothing a failed commit dropped; opening a store counts it from
//! the event index (both statuses are indexed per connection). A scrape reads these numbers;
//! it never scans the store.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{keys, Result};
use crate::domain::{ConnectionId, EventStatus, Team};

/// Whether events of `status` are counted.
pub fn tallied(status: EventStatus) -> bool {
    matches!(status, EventStatus::Hold | EventStatus::Failed)
}

/// One connection's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub hold: u64,
    pub failed: u64,
}

impl Counts {
    fn of(&mut self, status: EventStatus) -> Option<&mut u64> {
        match status {
            EventStatus::Hold => Some(&mut self.hold),
            EventStatus::Failed => Some(&mut self.failed),
            _ => None,
        }
    }
}

/// An event of `connection` came into (`+1`) or left (`-1`) `status`.
#[derive(Debug, Clone)]
pub struct Delta {
    pub connection: ConnectionId,
    pub status: EventStatus,
    pub by: i64,
}

/// Every connection's counts.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<HashMap<ConnectionId, Counts>>,
}

impl Tally {
    /// Counts the event index of `tree`: one seek per team and a walk of its per-connection
    /// keys of the two statuses (`X/{team}/c/{connection}/{STATUS}/{event}`).
    pub fn count(tree: &sled::Tree) -> Result<Tally> {
        let tally = Tally::default();
        let mut deltas = Vec::new();
        for team in tree.scan_prefix(keys::TEAM).values() {
            let team: Team = super::codec::decode(&team?)?;
            let prefix = keys::connection_index_prefix(&team.id);
            for key in tree.scan_prefix(&prefix).keys() {
                let key = key?;
                let Some((connection, status)) = parse(&key[prefix.len()..]) else {
                    continue;
                };
                if tallied(status) {
                    deltas.push(Delta {
                        connection,
                        status,
                        by: 1,
                    });
                }
            }
        }
        tally.apply(&deltas);
        Ok(tally)
    }

    /// Applies changes that are now in the store.
    pub fn apply(&self, deltas: &[Delta]) {
        if deltas.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for d in deltas {
            let counts = counts.entry(d.connection.clone()).or_default();
            if let Some(n) = counts.of(d.status) {
                *n = n.saturating_add_signed(d.by);
            }
        }
    }

    /// The counts of every connection that has or had a tallied event (deleted ones too).
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
