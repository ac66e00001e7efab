//! Sources, destinations and connections: saved in the store, mirrored in the registry, and
//! their actors started, reconfigured or stopped to match.

use std::sync::Arc;

use actix::prelude::Addr;

use super::destination_actor::{self, DestinationActor, DestinationSnapshot};
use super::{connection_actor, recovery, DestinationHandle, Engine, EngineError, Result};
use crate::domain::breaker::CircuitState;
use crate::domain::issues::CircuitSeen;
use crate::domain::rate_limiter::RateLimit;
use crate::domain::*;
use crate::store::ops;

impl Engine {
    // ---- sources ----------------------------------------------------------------------

    pub fn source(&self, id: &SourceId) -> Option<Arc<Source>> {
        self.read().sources.get(id).cloned()
    }

    pub async fn save_source(&self, source: Source) -> Result<()> {
        self.store().commit(vec![ops::put_source(&source)]).await?;
        self.write()
            .sources
            .insert(source.id.clone(), Arc::new(source));
        Ok(())
    }

    pub async fn delete_source(&self, id: &SourceId) -> Result<()> {
        if self.read().by_source.get(id).is_some_and(|l| !l.is_empty()) {
            return Err(EngineError::Conflict(
                "the source still has connections; delete them first".into(),
            ));
        }
        self.store().commit(vec![ops::remove_source(id)]).await?;
        self.write().sources.remove(id);
        Ok(())
    }

    // ---- destinations -------------------------------------------------------------------

    pub fn destination(&self, id: &DestinationId) -> Option<Arc<Destination>> {
        self.read()
            .destinations
            .get(id)
            .map(|h| h.destination.clone())
    }

    pub async fn save_destination(&self, destination: Destination) -> Result<()> {
        self.store()
            .commit(vec![ops::put_destination(&destination)])
            .await?;
        let destination = Arc::new(destination);
        let mut reg = self.write();
        match reg.destinations.get_mut(&destination.id) {
            Some(handle) => {
                handle.destination = destination.clone();
                handle
                    .addr
                    .do_send(destination_actor::Configure(destination));
            }
            None => {
                let addr = self.start_destination(destination.clone(), None);
                reg.destinations.insert(
                    destination.id.clone(),
                    DestinationHandle { destination, addr },
                );
            }
        }
        Ok(())
    }

    /// Deletes a destination that has no connections. Waiting events (queued, scheduled or
    /// in flight) make it a conflict unless `cancel_waiting`, which cancels them in the same
    /// step: nothing is left in the store that no actor owns.
    pub async fn delete_destination(&self, id: &DestinationId, cancel_waiting: bool) -> Result<()> {
        let _no_ingest = self.inner.ingest_gate.write().await;
        if self
            .read()
            .connections
            .values()
            .any(|c| &c.connection.destination_id == id)
        {
            return Err(EngineError::Conflict(
                "the destination still has connections; delete them first".into(),
            ));
        }
        let (addr, team) = match self.read().destinations.get(id) {
            Some(h) => (Some(h.addr.clone()), Some(h.destination.team_id.clone())),
            None => (None, None),
        };
        // Waiting work is counted on disk, where all of it is (a queue larger than the
        // actor's window too), once the writer has applied what the actor handed it.
        let store = self.store().clone();
        let dest = id.clone();
        let (fifo, scheduled) = store.read_applied(move |s| s.queue_counts(&dest)).await?;
        let waiting = fifo + scheduled;
        if waiting > 0 && !cancel_waiting {
            return Err(EngineError::Conflict(format!(
                "the destination has {waiting} waiting events; let them be delivered, or \
                 delete with ?cancel_events=true to cancel them"
            )));
        }
        if let Some(addr) = &addr {
            let unavailable = |e| EngineError::Unavailable(format!("destination actor: {e}"));
            if waiting > 0 {
                addr.send(destination_actor::CancelWaiting)
                    .await
                    .map_err(unavailable)?;
            }
            addr.send(destination_actor::Shutdown)
                .await
                .map_err(unavailable)?;
        }
        if waiting > 0 {
            let (dest, now) = (id.clone(), Timestamp::now());
            let cancelled = store
                .read_applied(move |s| recovery::cancel_queue(s, &dest, now))
                .await?;
            tracing::info!(destination_id = %id, cancelled, "waiting events cancelled by a delete");
        }
        // Durable after the actor's cancellations, which reached the writer first.
        self.store()
            .commit(ops::remove_destination(id).into())
            .await?;
        self.write().destinations.remove(id);
        self.inner.deps.board.remove(id);
        // Nothing is left to watch: its open issue, if any, is resolved (and alerted).
        if let Some(team) = team {
            let gone = CircuitSeen {
                state: CircuitState::Closed,
                transition: true,
            };
            self.inner.deps.issues.circuit(&team, id, gone);
        }
        Ok(())
    }

    fn destination_addr(&self, id: &DestinationId) -> Result<Addr<DestinationActor>> {
        self.read()
            .destinations
            .get(id)
            .map(|h| h.addr.clone())
            .ok_or(EngineError::NotFound("destination"))
    }

    pub async fn circuit(&self, id: &DestinationId) -> Result<destination_actor::CircuitView> {
        self.destination_addr(id)?
            .send(destination_actor::GetCircuit)
            .await
            .map_err(|e| EngineError::Unavailable(format!("destination actor: {e}")))
    }

    pub async fn reset_circuit(
        &self,
        id: &DestinationId,
    ) -> Result<destination_actor::CircuitView> {
        let view = self
            .destination_addr(id)?
            .send(destination_actor::ResetCircuit)
            .await
            .map_err(|e| EngineError::Unavailable(format!("destination actor: {e}")))?;
        tracing::info!(destination_id = %id, "circuit breaker reset by an operator");
        Ok(view)
    }

    pub async fn destination_snapshot(&self, id: &DestinationId) -> Option<DestinationSnapshot> {
        let addr = self.read().destinations.get(id).map(|h| h.addr.clone())?;
        addr.send(destination_actor::GetSnapshot).await.ok()
    }

    // ---- connections --------------------------------------------------------------------

    pub fn connection(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        self.read()
            .connections
            .get(id)
            .map(|h| h.connection.clone())
    }

    /// Creates or updates a connection. `drain_rate` caps the release of its held events
    /// if this makes it active (an unpause), and is kept for the drain's whole run.
    ///
    /// Takes the write side of the ingest gate: every ingest that routed by the old state
    /// has committed before the new one shows, so a drain that starts now finds every
    /// event held by the pause, and none is held after it.
    pub async fn save_connection(
        &self,
        connection: Connection,
        drain_rate: Option<RateLimit>,
    ) -> Result<()> {
        let _no_ingest = self.inner.ingest_gate.write().await;
        let active = connection.paused_at.is_none() && connection.disabled_at.is_none();
        let mut writes = Vec::from(ops::put_connection(&connection));
        if !active || drain_rate.is_some() {
            writes.push(ops::put_drain_rate(
                &connection.id,
                drain_rate.filter(|_| active),
            ));
        }
        self.store().commit(writes).await?;
        let mut reg = self.write();
        match reg.connections.get_mut(&connection.id) {
            Some(handle) => {
                handle.addr.do_send(connection_actor::Reconfigure {
                    connection: connection.clone(),
                    release: false,
                    drain_rate,
                });
                handle.connection = Arc::new(connection);
            }
            None => self.register_connection(&mut reg, connection),
        }
        Ok(())
    }

    /// Deletes a connection. Its held events make it a conflict unless `cancel_held`, which
    /// cancels them in the same commit. Its events already at the destination stay there and
    /// are delivered: they belong to the destination's queue.
    pub async fn delete_connection(&self, id: &ConnectionId, cancel_held: bool) -> Result<()> {
        let _no_ingest = self.inner.ingest_gate.write().await;
        let Some(connection) = self.connection(id) else {
            return Err(EngineError::NotFound("connection"));
        };
        let store = self.store().clone();
        let cid = id.clone();
        let held = crate::store::readers::read(move || store.held_entries(&cid))
            .await
            .map_err(|e| EngineError::Unavailable(format!("held events reader: {e}")))??;
        if !held.is_empty() && !cancel_held {
            return Err(EngineError::Conflict(format!(
                "the connection has {} held events; unpause it to deliver them, or delete with \
                 ?cancel_events=true to cancel them",
                held.len()
            )));
        }
        let now = Timestamp::now();
        let mut writes = vec![ops::remove_connection(id)];
        for entry in &held {
            writes.extend(ops::cancel_held(&connection.team_id, id, entry, now));
        }
        self.store().commit(writes).await?;
        let mut reg = self.write();
        if let Some(handle) = reg.connections.remove(id) {
            reg.unindex_connection(&handle.connection);
            handle.addr.do_send(connection_actor::Shutdown);
        }
        Ok(())
    }
}
