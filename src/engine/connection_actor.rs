//! The actor that owns one connection: it forwards routed events to its destination's actor.
//! Ingress decides HOLD vs deliver from the same `ConnectionCore` state when it persists the
//! events; this actor is where held work is released on unpause (the seam for the pause
//! drain), and the single place events of this connection enter their destination.

use std::sync::Arc;

use actix::prelude::*;

use super::delivery::Payload;
use super::destination_actor::{DestinationActor, Enqueue};
use crate::domain::connection_core::ConnectionCore;
use crate::domain::destination_core::QueueEntry;
use crate::domain::{Connection, EventPatch, EventStatus, Timestamp};
use crate::store::{ops, Store};

pub struct ConnectionActor {
    core: ConnectionCore,
    destination: Addr<DestinationActor>,
    store: Store,
}

impl ConnectionActor {
    pub fn new(connection: Connection, destination: Addr<DestinationActor>, store: Store) -> Self {
        ConnectionActor {
            core: ConnectionCore::new(connection),
            destination,
            store,
        }
    }

    /// Puts entries on HOLD: the connection was paused between routing and forwarding.
    fn hold(&self, entries: &[QueueEntry]) {
        let c = &self.core.connection;
        let now = Timestamp::now();
        let mut writes = Vec::with_capacity(entries.len() * 3);
        for entry in entries {
            writes.push(ops::dequeue(&c.destination_id, entry.seq));
            writes.push(ops::put_hold(&c.id, entry));
            let patch = EventPatch {
                status: Some(EventStatus::Hold),
                next_attempt_at: Some(None),
                updated_at: now,
                ..Default::default()
            };
            writes.push(ops::patch_event(&c.team_id, &entry.event_id, patch));
        }
        self.store.submit(writes);
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// Durable events for this connection's destination.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward {
    pub entries: Vec<QueueEntry>,
    pub payload: Arc<Payload>,
}

impl Handler<Forward> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        if self.core.is_paused() {
            self.hold(&msg.entries);
            return;
        }
        let enqueue = Enqueue {
            entries: msg.entries,
            payload: Some(msg.payload),
        };
        match self.destination.try_send(enqueue) {
            Ok(()) => {}
            Err(SendError::Full(enqueue)) => {
                // A full destination mailbox: this actor waits for room before it takes its
                // next message, so backpressure reaches ingress and the order is kept.
                let send = self.destination.send(enqueue);
                ctx.wait(
                    async move {
                        if let Err(e) = send.await {
                            tracing::warn!(error = %e, "destination actor unavailable; events stay queued in the store");
                        }
                    }
                    .into_actor(self),
                );
            }
            Err(SendError::Closed(_)) => {
                // The destination actor is gone (deleted): the entries stay in the store.
                tracing::warn!("destination actor unavailable; events stay queued in the store");
            }
        }
    }
}

/// The connection was updated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Connection);

impl Handler<Reconfigure> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        self.core = ConnectionCore::new(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
