//! The running gateway: one actor per destination and per connection, spread over one
//! arbiter per core, and the `Engine` handle through which the API talks to them. The
//! registry here mirrors the configuration objects in memory for routing; the store is the
//! record.

pub mod connection_actor;
pub mod delivery;
pub mod destination_actor;
mod payload_cache;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Addr, Arbiter, ArbiterHandle, SendError};
use bytes::Bytes;
use sha2::Digest;

use crate::config::Config;
use crate::domain::connection_core::{route, Route};
use crate::domain::destination_core::QueueEntry;
use crate::domain::*;
use crate::store::{ops, Store, StoreError};
use connection_actor::{ConnectionActor, Forward};
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
    /// Next queue position; positions are global so one counter serves every destination.
    seq: AtomicU64,
    ready: AtomicBool,
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
            per_id_labels: config.telemetry.per_id_labels,
        };
        let paused = config.engine.paused;
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                deps,
                arbiters,
                registry: RwLock::new(Registry::default()),
                seq: AtomicU64::new(1),
                ready: AtomicBool::new(false),
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

    // ---- boot ------------------------------------------------------------------------

    /// Rebuilds every actor from the store: queued events in order, scheduled retries at
    /// their times, attempts in flight at a crash made again. Then the engine is ready.
    pub async fn recover(&self) -> Result<()> {
        let started = Instant::now();
        let store = self.store().clone();
        let loaded = tokio::task::spawn_blocking(move || -> crate::store::Result<_> {
            Ok((
                store.all_sources()?,
                store.all_destinations()?,
                store.all_connections()?,
                store.load_queues()?,
            ))
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("recovery task: {e}")))??;
        let (sources, destinations, connections, (mut queues, max_seq)) = loaded;
        self.inner.seq.store(max_seq + 1, Ordering::Release);
        let mut queued = 0usize;
        {
            let mut reg = self.write();
            for s in sources {
                reg.sources.insert(s.id.clone(), Arc::new(s));
            }
            for d in destinations {
                let entries = queues.remove(&d.id).unwrap_or_default();
                queued += entries.len();
                let d = Arc::new(d);
                let addr = self.start_destination(d.clone(), entries);
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
        if !queues.is_empty() {
            tracing::warn!(
                destinations = queues.len(),
                "queue entries for deleted destinations were left in the store"
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

    fn start_destination(
        &self,
        destination: Arc<Destination>,
        recovered: Vec<QueueEntry>,
    ) -> Addr<DestinationActor> {
        let deps = self.inner.deps.clone();
        let paused = self.inner.paused.load(Ordering::Acquire);
        let arbiter = self.arbiter_for(&destination.id).clone();
        DestinationActor::start_in_arbiter(&arbiter, move |_| {
            DestinationActor::new(destination, deps, recovered, paused)
        })
    }

    fn register_connection(&self, reg: &mut Registry, c: Connection) {
        let Some(dest) = reg.destinations.get(&c.destination_id) else {
            tracing::error!(connection_id = %c.id, "connection points at a missing destination; skipped");
            return;
        };
        let dest_addr = dest.addr.clone();
        let store = self.store().clone();
        let arbiter = self.arbiter_for(&c.destination_id).clone();
        let actor_conn = c.clone();
        let addr = ConnectionActor::start_in_arbiter(&arbiter, move |_| {
            ConnectionActor::new(actor_conn, dest_addr, store)
        });
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
                let addr = self.start_destination(destination.clone(), Vec::new());
                reg.destinations.insert(
                    destination.id.clone(),
                    DestinationHandle { destination, addr },
                );
            }
        }
        Ok(())
    }

    pub async fn delete_destination(&self, id: &DestinationId) -> Result<()> {
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
        self.store()
            .commit(vec![ops::remove_destination(id)])
            .await?;
        if let Some(handle) = self.write().destinations.remove(id) {
            handle.addr.do_send(destination_actor::Shutdown);
        }
        Ok(())
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

    pub async fn delete_connection(&self, id: &ConnectionId) -> Result<()> {
        self.store()
            .commit(vec![ops::remove_connection(id)])
            .await?;
        let mut reg = self.write();
        if let Some(handle) = reg.connections.remove(id) {
            reg.unindex_connection(&handle.connection);
            handle.addr.do_send(connection_actor::Shutdown);
        }
        Ok(())
    }

    // ---- ingress ------------------------------------------------------------------------

    /// Stores a request and the events routed from it, durably, then hands the deliverable
    /// events to their connections. Returns once everything is on disk.
    pub async fn ingest(
        &self,
        source: &Source,
        method: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<(RequestId, Vec<EventId>)> {
        let now = Timestamp::now();
        let request_id = RequestId::new();
        let routes: Vec<(Arc<Connection>, Addr<ConnectionActor>, bool)> = {
            let reg = self.read();
            reg.by_source
                .get(&source.id)
                .into_iter()
                .flatten()
                .filter_map(|cid| reg.connections.get(cid))
                .map(|h| {
                    let dest_disabled = reg
                        .destinations
                        .get(&h.connection.destination_id)
                        .is_none_or(|d| d.destination.disabled_at.is_some());
                    (h.connection.clone(), h.addr.clone(), dest_disabled)
                })
                .collect()
        };
        let needs_json = routes
            .iter()
            .any(|(c, _, _)| c.rules.filter.as_ref().is_some_and(|f| f.body.is_some()));
        let json_body = if needs_json {
            serde_json::from_slice::<serde_json::Value>(&body).ok()
        } else {
            None
        };

        let mut writes = Vec::with_capacity(1 + routes.len() * 2);
        let mut forwards = Vec::with_capacity(routes.len());
        let mut event_ids = Vec::with_capacity(routes.len());
        for (connection, addr, dest_disabled) in routes {
            let Route::Event { status, due_at } = route(
                &connection,
                dest_disabled,
                json_body.as_ref(),
                &headers,
                now,
            ) else {
                continue;
            };
            let event = Event {
                id: EventId::new(),
                team_id: source.team_id.clone(),
                connection_id: connection.id.clone(),
                source_id: source.id.clone(),
                destination_id: connection.destination_id.clone(),
                request_id: request_id.clone(),
                status,
                attempts: 0,
                next_attempt_at: due_at,
                last_attempt_at: None,
                response_status: None,
                error_code: None,
                dead_lettered_at: None,
                created_at: now,
                updated_at: now,
            };
            let entry = QueueEntry {
                seq: self.inner.seq.fetch_add(1, Ordering::AcqRel),
                event_id: event.id.clone(),
                request_id: request_id.clone(),
                connection_id: connection.id.clone(),
                attempts: 0,
                next_trigger: Trigger::Initial,
                due_at,
                retry: connection.rules.retry,
                created_at: now,
            };
            writes.push(ops::put_event(&event));
            if status == EventStatus::Hold {
                writes.push(ops::put_hold(&connection.id, &entry));
            } else {
                writes.push(ops::enqueue(&connection.destination_id, &entry));
                forwards.push((addr, entry));
            }
            event_ids.push(event.id);
        }
        let request = Request {
            id: request_id.clone(),
            team_id: source.team_id.clone(),
            source_id: source.id.clone(),
            method,
            headers,
            body,
            rejection_cause: None,
            event_ids: event_ids.clone(),
            created_at: now,
            updated_at: now,
        };
        let payload = (!forwards.is_empty())
            .then(|| Arc::new(Payload::new(&request.headers, request.body.clone())));
        writes.push(ops::put_request(request));
        self.store().commit(writes).await?;

        if let Some(payload) = payload {
            for (addr, entry) in forwards {
                let forward = Forward {
                    entries: vec![entry],
                    payload: payload.clone(),
                };
                // The common case costs no round trip; a full mailbox makes ingress wait
                // (backpressure) instead of growing an unbounded queue.
                let sent = match addr.try_send(forward) {
                    Ok(()) => Ok(()),
                    Err(SendError::Full(forward)) => addr.send(forward).await.map_err(|_| ()),
                    Err(SendError::Closed(_)) => Err(()),
                };
                if sent.is_err() {
                    tracing::warn!(
                        "connection actor unavailable; the event stays queued in the store"
                    );
                }
            }
        }
        Ok((request_id, event_ids))
    }

    /// Keeps a rejected request (no events) so operators can see what was refused.
    pub async fn reject(
        &self,
        source: &Source,
        method: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        cause: RejectionCause,
    ) -> Result<RequestId> {
        let now = Timestamp::now();
        let request = Request {
            id: RequestId::new(),
            team_id: source.team_id.clone(),
            source_id: source.id.clone(),
            method,
            headers,
            body,
            rejection_cause: Some(cause),
            event_ids: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let id = request.id.clone();
        self.store().commit(vec![ops::put_request(request)]).await?;
        Ok(id)
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
