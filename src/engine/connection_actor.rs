//! The actor that owns one connection. Ingress decides HOLD or deliver when it routes, from
//! the registry's copy of the same connection, and hands deliverable events straight to the
//! destination's actor, which owns the queue: a hop through this actor cost a message per
//! event and was one more place an accepted event could be dropped. This actor is where held
//! work will be released on unpause (the drain).

use actix::prelude::*;

use crate::domain::connection_core::ConnectionCore;
use crate::domain::Connection;

pub struct ConnectionActor {
    core: ConnectionCore,
}

impl ConnectionActor {
    pub fn new(connection: Connection) -> Self {
        ConnectionActor {
            core: ConnectionCore::new(connection),
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// The connection was updated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Connection);

impl Handler<Reconfigure> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        let was_paused = self.core.is_paused();
        self.core = ConnectionCore::new(msg.0);
        if was_paused != self.core.is_paused() {
            tracing::info!(connection_id = %self.core.connection.id, paused = !was_paused, "connection pause changed");
        }
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
