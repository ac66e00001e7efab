//! Boot: every actor rebuilt from the store, and work that no actor would own cancelled.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{destination_actor, DestinationHandle, Engine, EngineError, Result};
use crate::domain::destination_core::QueueEntry;
use crate::domain::*;
use crate::store::{ops, Store};

impl Engine {
    /// Rebuilds every actor from the store: queued events in order, scheduled retries at
    /// their times, attempts in flight at a crash made again. Then the engine is ready.
    pub async fn recover(&self) -> Result<()> {
        let started = Instant::now();
        let store = self.store().clone();
        let loaded = tokio::task::spawn_blocking(move || -> crate::store::Result<_> {
            let destinations = store
                .all_destinations()?
                .into_iter()
                .map(|d| Ok((store.breaker(&d.id)?, d)))
                .collect::<crate::store::Result<Vec<_>>>()?;
            Ok((
                store.all_sources()?,
                destinations,
                store.all_connections()?,
                store.load_queues()?,
            ))
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("recovery task: {e}")))??;
        let (sources, destinations, connections, mut queues) = loaded;
        let mut queued = 0usize;
        {
            let mut reg = self.write();
            for s in sources {
                reg.sources.insert(s.id.clone(), Arc::new(s));
            }
            for (breaker, d) in destinations {
                let entries = queues.remove(&d.id).unwrap_or_default();
                queued += entries.len();
                let d = Arc::new(d);
                let addr = self.start_destination(d.clone(), entries, breaker);
                reg.destinations.insert(
                    d.id.clone(),
                    DestinationHandle {
                        destination: d,
                        addr,
                    },
                );
            }
            for c in connections {
                self.register_connection(&mut reg, c);
            }
        }
        let known: HashSet<ConnectionId> = self.read().connections.keys().cloned().collect();
        let orphans: Vec<_> = queues.into_iter().collect();
        let store = self.store().clone();
        let cancelled =
            tokio::task::spawn_blocking(move || cancel_orphans(&store, orphans, &known))
                .await
                .map_err(|e| EngineError::Unavailable(format!("recovery task: {e}")))??;
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "events whose destination or connection was deleted are cancelled"
            );
        }
        // Ready means every actor has taken in its recovered queue: a message answered after
        // `started` proves it (the actor handles its mailbox only once started has run).
        let addrs = self.destination_addrs();
        futures_util::future::join_all(
            addrs.iter().map(|a| a.send(destination_actor::GetSnapshot)),
        )
        .await;
        self.inner.ready.store(true, Ordering::Release);
        tracing::info!(
            queued,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovery finished"
        );
        Ok(())
    }
}

/// Cancels queue entries of destinations and held entries of connections that no longer
/// exist (a delete of an earlier version, or a crash in the middle of one): left alone they
/// would stay `QUEUED` or `HOLD` for good with nobody to deliver or release them.
fn cancel_orphans(
    store: &Store,
    queues: Vec<(DestinationId, Vec<QueueEntry>)>,
    known_connections: &HashSet<ConnectionId>,
) -> crate::store::Result<usize> {
    let now = Timestamp::now();
    let mut writes = Vec::new();
    let mut cancelled = 0;
    for (destination, entries) in queues {
        let Some(team) = entries
            .first()
            .map(|e| store.team_of_event(&e.event_id))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        for entry in &entries {
            writes.extend(ops::cancel_queued(&team, &destination, entry, now));
        }
        cancelled += entries.len();
    }
    for (connection, entry) in store.orphaned_held_entries(known_connections)? {
        if let Some(team) = store.team_of_event(&entry.event_id)? {
            writes.extend(ops::cancel_held(&team, &connection, &entry, now));
            cancelled += 1;
        }
    }
    store.submit(writes);
    Ok(cancelled)
}
