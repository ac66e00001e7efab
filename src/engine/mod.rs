//! The running gateway: one actor per destination and per connection, spread over one
//! arbiter per core, and the `Engine` handle through which the API talks to them. The
//! registry here mirrors the configuration objects in memory for routing; the store is the
//! record.

pub mod address_guard;
pub mod alerts;
mod bulk_retry;
pub mod connection_actor;
pub mod delivery;
pub mod destination_actor;
mod drain;
mod ingest;
pub mod issues;
mod manual_retry;
mod objects;
mod payload_cache;
mod recovery;
mod registry;
pub mod retention;
mod team_limit;
mod teams;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Addr, Arbiter, ArbiterHandle};

use crate::config::Config;
use crate::domain::breaker::BreakerSnapshot;
use crate::domain::*;
use crate::store::{ops, Store, StoreError};
use connection_actor::ConnectionActor;
use delivery::{DeliveryClient, Payload};
use destination_actor::DestinationActor;
pub use ingest::{Ingested, Intake};
use registry::{ConnectionHandle, DestinationHandle, Registry};
pub use teams::{hash_secret, new_secret};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// The object's state does not allow the operation; `code` names the state.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
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
    /// Each destination's live backlog and circuit numbers, for `/metrics`.
    pub board: Arc<crate::telemetry::Board>,
    /// Where breaker changes become issues.
    pub issues: issues::IssueBook,
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
    /// Read on every actor start; `pause` is the full state behind it, as stored.
    paused: AtomicBool,
    pause: std::sync::Mutex<StoredPause>,
    /// One pause change at a time, so the store and memory agree on the last one.
    pause_changes: tokio::sync::Mutex<()>,
    team_limit: team_limit::TeamIngressLimit,
}

impl Engine {
    /// Creates the engine (not ready yet). Must run inside an actix `System`.
    pub fn new(config: Config, store: Store) -> Result<Engine> {
        let client = DeliveryClient::new(config.address_policy())
            .map_err(|e| EngineError::Unavailable(format!("HTTP client: {e}")))?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let arbiters = (0..cores).map(|_| Arbiter::new().handle()).collect();
        let issue_store = store.clone();
        let alerts = alerts::AlertSender::start(store.clone(), client.clone());
        let deps = Deps {
            store,
            client,
            payload_budget: payload_cache::PayloadBudget::new(payload_cache::PAYLOAD_CACHE_BYTES),
            max_event_age_ms: config.delivery.max_event_age.as_millis() as u64,
            queue_window: config.delivery.queue_window.max(1),
            per_id_labels: config.telemetry.per_id_labels,
            board: Arc::default(),
            issues: issues::IssueBook::start(issue_store, alerts),
        };
        // An operator's pause survives a crash: the stored state holds unless the file's
        // value changed since it was stored.
        let stored = deps.store.engine_pause()?;
        // (`recover` stores it before the engine is ready.)
        let pause = StoredPause::at_start(stored, config.engine.paused, Timestamp::now());
        let paused = pause.state.paused;
        metrics::gauge!(crate::telemetry::ENGINE_PAUSED).set(if paused { 1.0 } else { 0.0 });
        Ok(Engine {
            inner: Arc::new(Inner {
                deps,
                arbiters,
                registry: RwLock::new(Registry::default()),
                ready: AtomicBool::new(false),
                ingest_gate: Arc::new(tokio::sync::RwLock::new(())),
                paused: AtomicBool::new(paused),
                pause: std::sync::Mutex::new(pause),
                pause_changes: tokio::sync::Mutex::new(()),
                team_limit: team_limit::TeamIngressLimit::new(config.ingress.team_rate_limit),
                config,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }

    pub fn issues(&self) -> &issues::IssueBook {
        &self.inner.deps.issues
    }

    /// Appends the backlog and circuit series of every live connection and destination.
    pub fn render_live_metrics(&self, out: &mut String) {
        let connections: Vec<ConnectionId> = self.read().connections.keys().cloned().collect();
        let tally = self.store().tally().snapshot();
        let deps = &self.inner.deps;
        deps.board
            .render(&connections, &tally, deps.per_id_labels, out);
        crate::telemetry::live::render_issues_open(deps.issues.open_count(), out);
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Takes one ingress request of `team`'s allowance (`ingress.team_rate_limit`), or
    /// answers the whole seconds until it may send again.
    pub fn take_ingress_allowance(&self, team: &TeamId) -> std::result::Result<(), u64> {
        self.inner
            .team_limit
            .check(team)
            .map_err(team_limit::retry_after_secs)
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
        self.inner
            .pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state
    }

    /// Pauses or resumes every delivery at once; ingress keeps accepting. Nothing is
    /// reloaded: each actor keeps its queue and only stops or resumes starting attempts.
    /// The change is durable before it applies, so a crash cannot undo it.
    pub async fn set_paused(&self, paused: bool, by: PauseSource) -> Result<EnginePause> {
        let _one_at_a_time = self.inner.pause_changes.lock().await;
        let current = *self.inner.pause.lock().unwrap_or_else(|e| e.into_inner());
        let next = StoredPause {
            state: current.state.switch(paused, by, Timestamp::now()),
            file_paused: match by {
                PauseSource::Config => paused,
                PauseSource::Api => current.file_paused,
            },
        };
        self.store()
            .commit(vec![ops::put_engine_pause(&next)])
            .await?;
        *self.inner.pause.lock().unwrap_or_else(|e| e.into_inner()) = next;
        self.inner.paused.store(paused, Ordering::Release);
        let state = next.state;
        metrics::gauge!(crate::telemetry::ENGINE_PAUSED).set(if paused { 1.0 } else { 0.0 });
        for addr in self.destination_addrs() {
            addr.do_send(destination_actor::SetEnginePaused(paused));
        }
        tracing::info!(paused, by = ?by, "engine pause changed");
        Ok(state)
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
        let engine = self.clone();
        let addr = ConnectionActor::start_in_arbiter(&arbiter, move |_| {
            ConnectionActor::new(actor_conn, engine)
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
    let loaded = crate::store::readers::read(move || store.request(&team, &request)).await;
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
