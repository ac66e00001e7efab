//! The running gateway: one actor per destination and per connection, spread over one
//! arbiter per core, and the `Engine` handle through which the API talks to them. The
//! registry here mirrors the configuration objects in memory for routing; the store is the
//! record.

pub mod connection_actor;
pub mod delivery;
pub mod destination_actor;
mod ingest;
mod payload_cache;
mod recovery;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Addr, Arbiter, ArbiterHandle};
use sha2::Digest;

use crate::config::Config;
use crate::domain::breaker::BreakerSnapshot;
use crate::domain::*;
use crate::store::{ops, Store, StoreError};
use connection_actor::ConnectionActor;
use delivery::{DeliveryClient, Payload};
use destination_actor::{DestinationActor, DestinationSnapshot};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// What every actor needs from the process.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub client: DeliveryClient,
    /// Memory for bodies of events not yet attempted, shared by every destination.
    pub payload_budget: Arc<payload_cache::PayloadBudget>,
    pub max_event_age_ms: u64,
    pub queue_window: usize,
    pub per_id_labels: bool,
}

struct DestinationHandle {
    destination: Arc<Destination>,
    addr: Addr<DestinationActor>,
}

struct ConnectionHandle {
    connection: Arc<Connection>,
    addr: Addr<ConnectionActor>,
}

#[derive(Default)]
struct Registry {
    sources: HashMap<SourceId, Arc<Source>>,
    destinations: HashMap<DestinationId, DestinationHandle>,
    connections: HashMap<ConnectionId, ConnectionHandle>,
    by_source: HashMap<SourceId, Vec<ConnectionId>>,
}

impl Registry {
    fn index_connection(&mut self, c: &Connection) {
        let list = self.by_source.entry(c.source_id.clone()).or_default();
        if !list.contains(&c.id) {
            list.push(c.id.clone());
        }
    }

    fn unindex_connection(&mut self, c: &Connection) {
        if let Some(list) = self.by_source.get_mut(&c.source_id) {
            list.retain(|id| id != &c.id);
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    deps: Deps,
    arbiters: Vec<ArbiterHandle>,
    registry: RwLock<Registry>,
    ready: AtomicBool,
    /// Held for reading from an ingest's routing to its hand-off, for writing by deletes
    /// (see `ingest`).
    ingest_gate: Arc<tokio::sync::RwLock<()>>,
    /// Read on every actor start; `pause` is the full state behind it.
    paused: AtomicBool,
    pause: std::sync::Mutex<EnginePause>,
}

impl Engine {
    /// Creates the engine (not ready yet). Must run inside an actix `System`.
    pub fn new(config: Config, store: Store) -> Result<Engine> {
        let client = DeliveryClient::new()
            .map_err(|e| EngineError::Unavailable(format!("HTTP client: {e}")))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let arbiters = (0..cores).map(|_| Arbiter::new().handle()).collect();
        let deps = Deps {
            store,
            client,
            payload_budget: payload_cache::PayloadBudget::new(payload_cache::PAYLOAD_CACHE_BYTES),
            max_event_age_ms: config.delivery.max_event_age.as_millis() as u64,
            queue_window: config.delivery.queue_window.max(1),
            per_id_labels: config.telemetry.per_id_labels,
        };
        let paused = config.engine.paused;
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                deps,
                arbiters,
                registry: RwLock::new(Registry::default()),
                ready: AtomicBool::new(false),
                ingest_gate: Arc::new(tokio::sync::RwLock::new(())),
                paused: AtomicBool::new(paused),
                pause: std::sync::Mutex::new(EnginePause {
                    paused,
                    paused_at: paused.then(Timestamp::now),
                    changed_by: PauseSource::Config,
                }),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Destinations are spread over the arbiters by a hash of their id.
    fn arbiter_for(&self, id: &DestinationId) -> &ArbiterHandle {
        let hash = id
            .as_str()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        &self.inner.arbiters[(hash % self.inner.arbiters.len() as u64) as usize]
    }

    /// Every destination actor, for broadcasts (pause, shutdown, readiness).
    fn destination_addrs(&self) -> Vec<Addr<DestinationActor>> {
        self.read()
            .destinations
            .values()
            .map(|h| h.addr.clone())
            .collect()
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::Acquire)
    }

    pub fn pause_state(&self) -> EnginePause {
        *self.inner.pause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pauses or resumes every delivery at once; ingress keeps accepting. Nothing is
    /// reloaded: each actor keeps its queue and only stops or resumes starting attempts.
    pub fn set_paused(&self, paused: bool, by: PauseSource) -> EnginePause {
        let state = {
            let mut guard = self.inner.pause.lock().unwrap_or_else(|e| e.into_inner());
            *guard = guard.switch(paused, by, Timestamp::now());
            self.inner.paused.store(paused, Ordering::Release);
            *guard
        };
        metrics::gauge!(crate::telemetry::ENGINE_PAUSED).set(if paused { 1.0 } else { 0.0 });
        for addr in self.destination_addrs() {
            addr.do_send(destination_actor::SetEnginePaused(paused));
        }
        tracing::info!(paused, by = ?by, "engine pause changed");
        state
    }

    /// Starts a destination's actor: `breaker` is its persisted state when it is recovered
    /// at boot (its queue is then read from the store), `None` when it was just created.
    fn start_destination(
        &self,
        destination: Arc<Destination>,
        breaker: Option<BreakerSnapshot>,
    ) -> Addr<DestinationActor> {
        let deps = self.inner.deps.clone();
        let paused = self.inner.paused.load(Ordering::Acquire);
        let arbiter = self.arbiter_for(&destination.id).clone();
        DestinationActor::start_in_arbiter(&arbiter, move |_| {
            DestinationActor::new(destination, deps, paused, breaker)
        })
    }

    fn register_connection(&self, reg: &mut Registry, c: Connection) {
        let Some(dest) = reg.destinations.get(&c.destination_id) else {
            tracing::error!(connection_id = %c.id, "connection points at a missing destination; skipped");
            return;
        };
        let arbiter = self.arbiter_for(&dest.destination.id).clone();
        let actor_conn = c.clone();
        let addr =
            ConnectionActor::start_in_arbiter(&arbiter, move |_| ConnectionActor::new(actor_conn));
        reg.index_connection(&c);
        reg.connections.insert(
            c.id.clone(),
            ConnectionHandle {
                connection: Arc::new(c),
                addr,
            },
        );
    }

    // ---- teams and keys ----------------------------------------------------------------

    pub async fn create_team(&self, id: TeamId, name: String) -> Result<Team> {
        let now = Timestamp::now();
        let team = Team {
            id,
            name,
            created_at: now,
            updated_at: now,
        };
        self.store().commit(vec![ops::put_team(&team)]).await?;
        Ok(team)
    }

    /// Makes a key for `team` from `secret`, or a fresh secret. Returns the stored key and
    /// the secret (shown once).
    pub async fn create_api_key(
        &self,
        team: &TeamId,
        secret: Option<String>,
    ) -> Result<(ApiKey, String)> {
        let secret = secret.unwrap_or_else(new_secret);
        let key = ApiKey {
            id: ApiKeyId::new(),
            team_id: team.clone(),
            hash: hash_secret(&secret),
            created_at: Timestamp::now(),
        };
        self.store().commit(ops::put_api_key(&key).into()).await?;
        Ok((key, secret))
    }

    pub async fn revoke_api_key(&self, team: &TeamId, id: &ApiKeyId) -> Result<()> {
        match self.store().api_key_by_id(id)? {
            Some(key) if &key.team_id == team => {
                self.store()
                    .commit(ops::remove_api_key(&key).into())
                    .await?;
                Ok(())
            }
            _ => Err(EngineError::NotFound("api key")),
        }
    }

    /// The key a presented secret belongs to. The lookup is by hash; the final comparison
    /// is constant-time.
    pub fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        use subtle::ConstantTimeEq;
        let hash = hash_secret(secret);
        Ok(self
            .store()
            .api_key_by_hash(&hash)?
            .filter(|k| bool::from(k.hash.ct_eq(&hash))))
    }

    /// `FASTHOOK_TEAM_ID`/`FASTHOOK_API_KEY` make sure that team and key exist; with no key
    /// at all, a first start creates `tm_default` and returns its new key to print once.
    pub async fn bootstrap_auth(&self) -> Result<Option<(TeamId, String)>> {
        let auth = self.config().auth.clone();
        if let (Some(team), Some(key)) = (auth.team_id, auth.api_key) {
            let team =
                TeamId::parse_loose(&team).map_err(|e| EngineError::Conflict(e.to_string()))?;
            if self.store().team(&team)?.is_none() {
                self.create_team(team.clone(), team.as_str().to_string())
                    .await?;
            }
            match self.authenticate(&key)? {
                Some(existing) if existing.team_id == team => {}
                Some(_) => {
                    return Err(EngineError::Conflict(
                        "FASTHOOK_API_KEY already belongs to another team".into(),
                    ));
                }
                None => {
                    self.create_api_key(&team, Some(key)).await?;
                }
            }
            return Ok(None);
        }
        if self.store().any_api_key()? {
            return Ok(None);
        }
        let team = TeamId::parse_loose("tm_default").expect("a valid team id");
        if self.store().team(&team)?.is_none() {
            self.create_team(team.clone(), "default".into()).await?;
        }
        let (_, secret) = self.create_api_key(&team, None).await?;
        Ok(Some((team, secret)))
    }

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
        let addr = self.read().destinations.get(id).map(|h| h.addr.clone());
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

    pub async fn save_connection(&self, connection: Connection) -> Result<()> {
        self.store()
            .commit(vec![ops::put_connection(&connection)])
            .await?;
        let mut reg = self.write();
        match reg.connections.get_mut(&connection.id) {
            Some(handle) => {
                handle
                    .addr
                    .do_send(connection_actor::Reconfigure(connection.clone()));
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
        let held = tokio::task::spawn_blocking(move || store.held_entries(&cid))
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

    // ---- shutdown -----------------------------------------------------------------------

    /// Stops starting attempts everywhere and waits (at most `grace`) for those in flight.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let addrs = self.destination_addrs();
        for addr in &addrs {
            let _ = addr.send(destination_actor::StopDelivering).await;
        }
        loop {
            let mut busy = 0;
            for addr in &addrs {
                if let Ok(s) = addr.send(destination_actor::GetSnapshot).await {
                    busy += s.stats.in_flight;
                }
            }
            if busy == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = busy,
                    "shutdown grace ran out; those attempts will be made again at the next start"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads a request's headers and body off the actor thread.
pub(crate) async fn load_payload(
    store: &Store,
    team: &TeamId,
    request: &RequestId,
) -> Option<Arc<Payload>> {
    let (store, team, request) = (store.clone(), team.clone(), request.clone());
    let loaded = tokio::task::spawn_blocking(move || store.request(&team, &request)).await;
    match loaded {
        Ok(Ok(Some(r))) => Some(Arc::new(Payload::new(&r.headers, r.body))),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read a request body");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "request body loader failed");
            None
        }
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// `fhp_` and 40 random alphanumerics (about 238 bits).
pub fn new_secret() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "fhp_{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 40)
    )
}
