//! The drain: a connection's held events go to its destination's queue once it is active
//! again, a step at a time, oldest first.
//!
//! Each step is one atomic commit: the held keys removed, the entries filed in the
//! destination's queue under new sequence numbers (so they join its FIFO in the order they
//! were accepted, behind what is already there), their events `QUEUED`. A crash between
//! steps leaves the rest held, and recovery resumes the drain. Steps run under the read side
//! of the ingest gate, like ingress, so a delete never runs in the middle of one.

use super::{Engine, Result};
use crate::domain::*;
use crate::store::ops;

impl Engine {
    /// Releases up to `limit` of the connection's oldest held entries to its destination
    /// (trigger `UNPAUSE`). Returns how many; 0 when none is held, or when the connection is
    /// gone or no longer active.
    pub async fn release_held(&self, id: &ConnectionId, limit: usize) -> Result<usize> {
        let _gate = self.inner.ingest_gate.clone().read_owned().await;
        let Some(connection) = self.connection(id) else {
            return Ok(0);
        };
        if connection.paused_at.is_some() || connection.disabled_at.is_some() {
            return Ok(0);
        }
        let cid = id.clone();
        let held = self
            .store()
            .read_applied(move |s| s.held_page(&cid, limit))
            .await?;
        if held.is_empty() {
            return Ok(0);
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
        Ok(count)
    }
}
