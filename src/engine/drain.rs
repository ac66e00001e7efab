//! The drain: a connection's held events go to its destination's queue once it is active
//! again, a step at a time, oldest first.
//!
//! Each step is one atomic commit: the held keys removed, the entries filed in the
//! destination's queue under new sequence numbers (so they join its FIFO in the order they
//! were accepted, behind what is already there), their events `QUEUED`. A crash between
//! steps leaves the rest held, and recovery resumes the drain. Steps run under the read side
//! of the ingest gate, like ingress, so a delete never runs in the middle of one.

use super::destination_actor::GetSnapshot;
use super::{Engine, Result};
use crate::domain::*;
use crate::store::ops;

/// What one step of a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// This many entries went to the destination.
    Some(usize),
    /// Nothing: none is held, or the connection is gone or no longer active.
    Nothing,
    /// Nothing yet: the destination has a window's worth waiting; try again shortly.
    DestinationBusy,
}

impl Engine {
    /// Releases up to `limit` of the connection's oldest held entries to its destination
    /// (trigger `UNPAUSE`), when the destination has room for them.
    ///
    /// The backlog streams: it is released as the destination works through it, never much
    /// more than a window ahead. Released all at once, a large backlog only went to the
    /// destination's queue on disk to be read back page by page, and its hand-over made the
    /// allocator keep hundreds of MiB (BENCHMARKS.md, W5).
    pub async fn release_held(&self, id: &ConnectionId, limit: usize) -> Result<Released> {
        let active = || {
            self.connection(id)
                .filter(|c| c.paused_at.is_none() && c.disabled_at.is_none())
        };
        let Some(connection) = active() else {
            return Ok(Released::Nothing);
        };
        let destination = self
            .read()
            .destinations
            .get(&connection.destination_id)
            .map(|h| h.addr.clone());
        if let Some(addr) = destination {
            if let Ok(snapshot) = addr.send(GetSnapshot).await {
                if snapshot.stats.ready >= self.inner.deps.queue_window {
                    return Ok(Released::DestinationBusy);
                }
            }
        }
        // Under the gate, the state a pause or a delete may have changed meanwhile.
        let _gate = self.inner.ingest_gate.clone().read_owned().await;
        let Some(connection) = active() else {
            return Ok(Released::Nothing);
        };
        let cid = id.clone();
        let held = self
            .store()
            .read_applied(move |s| s.held_page(&cid, limit))
            .await?;
        if held.is_empty() {
            return Ok(Released::Nothing);
        }
        let now = Timestamp::now();
        let team = &connection.team_id;
        let destination = &connection.destination_id;
        let mut released = Vec::with_capacity(held.len());
        self.store()
            .commit_numbered(|next_seq| {
                let mut writes = Vec::with_capacity(held.len() * 3);
                for mut entry in held {
                    let held_seq = entry.seq;
                    entry.seq = next_seq();
                    entry.next_trigger = Trigger::Unpause;
                    writes.extend(ops::release_held(team, destination, held_seq, &entry, now));
                    released.push(entry);
                }
                writes
            })
            .await?;
        let count = released.len();
        self.hand_to(team, destination, released, None).await;
        Ok(Released::Some(count))
    }
}
