//! The registry: what the engine knows of the configuration in memory (for routing), and
//! the address of each object's actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::Addr;

use super::connection_actor::ConnectionActor;
use super::destination_actor::DestinationActor;
use crate::domain::*;

pub(super) struct DestinationHandle {
    pub(super) destination: Arc<Destination>,
    pub(super) addr: Addr<DestinationActor>,
}

pub(super) struct ConnectionHandle {
    pub(super) connection: Arc<Connection>,
    pub(super) addr: Addr<ConnectionActor>,
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) sources: HashMap<SourceId, Arc<Source>>,
    pub(super) destinations: HashMap<DestinationId, DestinationHandle>,
    pub(super) connections: HashMap<ConnectionId, ConnectionHandle>,
    pub(super) by_source: HashMap<SourceId, Vec<ConnectionId>>,
}

impl Registry {
    pub(super) fn index_connection(&mut self, c: &Connection) {
        let list = self.by_source.entry(c.source_id.clone()).or_default();
        if !list.contains(&c.id) {
            list.push(c.id.clone());
        }
    }

    pub(super) fn unindex_connection(&mut self, c: &Connection) {
        if let Some(list) = self.by_source.get_mut(&c.source_id) {
            list.retain(|id| id != &c.id);
        }
    }
}
