//! The actor that owns one connection. Ingress decides HOLD or deliver when it routes, from
//! the registry's copy of the same connection, and hands deliverable events straight to the
//! destination's actor, which owns the queue: a hop through this actor cost a message per
//! event and was one more place an accepted event could be dropped. This actor runs the
//! drain: once the connection is active again it releases the held events, a step at a
//! time (`ConnectionCore` decides, `Engine::release_held` does the IO).

use std::time::Duration;

use actix::prelude::*;

use super::drain::Released;
use super::Engine;
use crate::domain::connection_core::{ConnectionCore, DrainStep};
use crate::domain::rate_limiter::RateLimit;
use crate::domain::{Connection, Timestamp};
use crate::store::ops;

/// How long a drain waits before trying again after a store error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// How long a drain waits while its destination has a window's worth of events waiting.
const DESTINATION_BUSY_WAIT: Duration = Duration::from_millis(20);

pub struct ConnectionActor {
    core: ConnectionCore,
    engine: Engine,
    /// A release is being committed, or a timer will take the next step: one at a time.
    stepping: bool,
}

impl ConnectionActor {
    pub fn new(connection: Connection, engine: Engine) -> Self {
        ConnectionActor {
            core: ConnectionCore::new(connection),
            engine,
            stepping: false,
        }
    }

    /// Takes the drain's next step, unless one is under way.
    fn step(&mut self, ctx: &mut Context<Self>) {
        if self.stepping {
            return;
        }
        let now = Timestamp::now();
        match self.core.drain_step(now) {
            None => {}
            Some(DrainStep::WaitUntil(at)) => {
                self.step_after(Duration::from_millis(at.0.saturating_sub(now.0)), ctx)
            }
            Some(DrainStep::Release(limit)) => {
                self.stepping = true;
                let engine = self.engine.clone();
                let id = self.core.connection.id.clone();
                let release = async move { engine.release_held(&id, limit).await };
                ctx.spawn(release.into_actor(self).map(|released, act, ctx| {
                    act.stepping = false;
                    match released {
                        Ok(Released::Nothing) => act.finish_drain(),
                        Ok(Released::Some(_)) => act.step(ctx),
                        Ok(Released::DestinationBusy) => act.step_after(DESTINATION_BUSY_WAIT, ctx),
                        Err(e) => {
                            tracing::error!(connection_id = %act.core.connection.id, error = %e, "drain step failed; retrying");
                            act.step_after(RETRY_AFTER_ERROR, ctx);
                        }
                    }
                }));
            }
        }
    }

    /// Takes the next step after `delay`, and none before.
    fn step_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.stepping = true;
        ctx.run_later(delay, |act, ctx| {
            act.stepping = false;
            act.step(ctx);
        });
    }

    fn finish_drain(&mut self) {
        if !self.core.is_draining() {
            return;
        }
        self.core.drain_finished();
        if self.core.is_active() {
            tracing::info!(connection_id = %self.core.connection.id, "held events released");
            self.engine
                .store()
                .submit(vec![ops::put_drain_rate(&self.core.connection.id, None)]);
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

/// The connection was updated (`release`: it has held events to release if active, as
/// recovery finds them; `drain_rate`: the cap an unpause asked for).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub connection: Connection,
    pub release: bool,
    pub drain_rate: Option<RateLimit>,
}

impl Handler<Reconfigure> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        let (was_paused, was_draining) = (self.core.is_paused(), self.core.is_draining());
        let drain_rate = msg.drain_rate;
        self.core
            .reconfigure(msg.connection, msg.release, msg.drain_rate);
        if was_paused != self.core.is_paused() {
            tracing::info!(connection_id = %self.core.connection.id, paused = !was_paused, "connection pause changed");
        }
        if !was_draining && self.core.is_draining() {
            let per_period = drain_rate.map(|r| format!("{} per {} ms", r.rate, r.period_ms));
            tracing::info!(connection_id = %self.core.connection.id, drain_rate = per_period.as_deref().unwrap_or("the destination's"), "releasing held events");
        }
        self.step(ctx);
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
