//! Boot: every actor rebuilt from the store, and work that no actor would own cancelled.
//!
//! Recovery reads the configuration and each destination's breaker, never the backlog: each
//! destination actor pages its own queue in once it runs, so `/readyz` does not wait for a
//! million waiting events. Leftovers that no actor owns are found and cancelled in the
//! background, a page at a time.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{connection_actor, destination_actor, DestinationHandle, Engine, EngineError, Result};
use crate::domain::*;
use crate::store::{ops, Store};

/// Entries cancelled per write when cleaning up.
const CANCEL_PAGE: usize = 1024;

impl Engine {
    /// Starts every actor on what the store holds (each pages its queue in: queued events
    /// in order, scheduled retries at their times, attempts in flight at a crash made
    /// again). Then the engine is ready.
    pub async fn recover(&self) -> Result<()> {
        let started = Instant::now();
        // The engine pause as it starts, from the store and the file: durable before ready,
        // so the next start compares the file with what this one saw.
        let pause = *self.inner.pause.lock().unwrap_or_else(|e| e.into_inner());
        self.store()
            .commit(vec![ops::put_engine_pause(&pause)])
            .await?;
        let store = self.store().clone();
        let loaded = crate::store::readers::read(move || -> crate::store::Result<_> {
            let destinations = store
                .all_destinations()?
                .into_iter()
                .map(|d| Ok((store.breaker(&d.id)?, d)))
                .collect::<crate::store::Result<Vec<_>>>()?;
            Ok((store.all_sources()?, destinations, store.all_connections()?))
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("recovery task: {e}")))??;
        let (sources, destinations, connections) = loaded;
        {
            let mut reg = self.write();
            for s in sources {
                reg.sources.insert(s.id.clone(), Arc::new(s));
            }
            for (breaker, d) in destinations {
                let d = Arc::new(d);
                let addr = self.start_destination(d.clone(), Some(breaker));
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
        // Ready means every actor runs: a message answered after `started` proves it.
        let addrs = self.destination_addrs();
        futures_util::future::join_all(
            addrs.iter().map(|a| a.send(destination_actor::GetSnapshot)),
        )
        .await;
        self.inner.ready.store(true, Ordering::Release);
        tracing::info!(
            destinations = addrs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovery finished"
        );

        let known_destinations: HashSet<DestinationId> =
            self.read().destinations.keys().cloned().collect();
        let known_connections: HashSet<ConnectionId> =
            self.read().connections.keys().cloned().collect();
        let engine = self.clone();
        actix::spawn(async move {
            if let Err(e) = engine.resume_drains().await {
                tracing::error!(error = %e, "cannot resume the drains of held events");
            }
            if let Err(e) = engine.resume_bulk_retries().await {
                tracing::error!(error = %e, "cannot resume the bulk retries");
            }
        });
        let store = self.store().clone();
        actix::spawn(async move {
            let cleaned = crate::store::readers::read(move || {
                cancel_orphans(&store, &known_destinations, &known_connections)
            })
            .await;
            match cleaned {
                Ok(Ok(0)) => {}
                Ok(Ok(cancelled)) => tracing::warn!(
                    cancelled,
                    "events whose destination or connection was deleted are cancelled"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "cannot clean up deleted work"),
                Err(e) => tracing::error!(error = %e, "clean-up task failed"),
            }
        });
        Ok(())
    }
}

impl Engine {
    /// Tells every active connection that still has held events to release them: a drain
    /// that a crash or a stop interrupted goes on, at the rate its unpause asked for.
    async fn resume_drains(&self) -> Result<()> {
        let store = self.store().clone();
        let found = crate::store::readers::read(move || -> crate::store::Result<_> {
            store
                .connections_with_held()?
                .into_iter()
                .map(|id| Ok((store.drain_rate(&id)?, id)))
                .collect::<crate::store::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("drain reader: {e}")))??;
        let reg = self.read();
        for (drain_rate, id) in found {
            if let Some(handle) = reg.connections.get(&id) {
                handle.addr.do_send(connection_actor::Reconfigure {
                    connection: (*handle.connection).clone(),
                    release: true,
                    drain_rate,
                });
            }
        }
        Ok(())
    }
}

/// Cancels queue entries of destinations and held entries of connections that no longer
/// exist (a delete of an earlier version, or a crash in the middle of one): left alone they
/// would stay `QUEUED` or `HOLD` for good with nobody to deliver or release them.
fn cancel_orphans(
    store: &Store,
    known_destinations: &HashSet<DestinationId>,
    known_connections: &HashSet<ConnectionId>,
) -> crate::store::Result<usize> {
    let now = Timestamp::now();
    let mut cancelled = 0;
    for destination in store.queued_destinations()? {
        if !known_destinations.contains(&destination) {
            cancelled += cancel_queue(store, &destination, now)?;
        }
    }
    let mut writes = Vec::new();
    for (connection, entry) in store.orphaned_held_entries(known_connections)? {
        if let Some(team) = store.team_of_event(&entry.event_id)? {
            writes.extend(ops::cancel_held(&team, &connection, &entry, now));
            cancelled += 1;
        }
    }
    store.submit(writes);
    Ok(cancelled)
}

/// Cancels every entry of one destination's queue on disk, a page at a time. Nothing else
/// may change that queue meanwhile (its actor is gone). Blocking.
pub(super) fn cancel_queue(
    store: &Store,
    destination: &DestinationId,
    now: Timestamp,
) -> crate::store::Result<usize> {
    let mut team = None;
    let mut cancelled = 0;
    // The pages follow a cursor, so what is cancelled need not be applied before the next.
    let mut fifo_after = None;
    loop {
        let page = store.queue_page(destination, fifo_after, CANCEL_PAGE)?;
        let Some(last) = page.last() else { break };
        fifo_after = Some(last.seq);
        cancelled += cancel_entries(store, destination, &mut team, &page, now)?;
    }
    let mut due_after = None;
    loop {
        let page = store.due_page(destination, due_after, CANCEL_PAGE)?;
        let Some(last) = page.last() else { break };
        due_after = Some((last.due_at.unwrap_or_default(), last.seq));
        cancelled += cancel_entries(store, destination, &mut team, &page, now)?;
    }
    Ok(cancelled)
}

fn cancel_entries(
    store: &Store,
    destination: &DestinationId,
    team: &mut Option<TeamId>,
    entries: &[crate::domain::destination_core::QueueEntry],
    now: Timestamp,
) -> crate::store::Result<usize> {
    if team.is_none() {
        *team = match entries.first() {
            Some(e) => store.team_of_event(&e.event_id)?,
            None => None,
        };
    }
    let Some(team) = team.as_ref() else {
        return Ok(0);
    };
    let writes = entries
        .iter()
        .flat_map(|e| ops::cancel_queued(team, destination, e, now))
        .collect();
    store.submit(writes);
    Ok(entries.len())
}
