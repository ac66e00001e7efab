//! The actor that owns one destination, like a Durable Object: a thin shell around
//! `DestinationCore`. It feeds the core inputs with the current time and carries out the
//! commands — attempts are spawned futures whose outcomes come back as inputs, state changes
//! go to the store writer without waiting, timers are `run_later`. It never decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;

use super::delivery::{Payload, Target};
use super::payload_cache::PayloadCache;
use super::Deps;
use crate::domain::breaker::{BreakerSnapshot, CircuitState};
use crate::domain::destination_core::{
    AttemptResult, Command, CoreConfig, CoreStats, DestinationCore, Input, Next, QueueEntry,
};
use crate::domain::issues::CircuitSeen;
use crate::domain::rate_limiter::RateLimit;
use crate::domain::*;
use crate::store::{ops, Op};
use crate::telemetry::{self, DestinationGauges};

pub struct DestinationActor {
    core: DestinationCore,
    /// The destination, and what delivery parsed from it (URL, headers, signing key); rebuilt
    /// on update.
    target: Arc<Target>,
    deps: Deps,
    /// Bodies handed over by ingress for entries not yet attempted; others are read from the
    /// store when their attempt starts.
    payloads: PayloadCache,
    timer: Option<SpawnHandle>,
    /// Whether the actor starts on a queue left on disk (a restart), which it then counts in
    /// the background.
    recovered: bool,
    /// Fed to the core when the actor starts (with its first commands: pages to read).
    engine_paused_at_start: bool,
    metrics: DestinationMetrics,
}

/// Metric handles registered once per actor, so the hot path only increments, and the
/// actor's live gauges (rendered at each scrape, see `telemetry::live`).
struct DestinationMetrics {
    label: String,
    per_id_labels: bool,
    live: Arc<DestinationGauges>,
    duration: metrics::Histogram,
    attempts: HashMap<(Trigger, bool), metrics::Counter>,
    errors: HashMap<ErrorCode, metrics::Counter>,
    delivered: HashMap<ConnectionId, metrics::Counter>,
}

/// What a failed attempt's `code` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ErrorCode {
    Delivery(DeliveryError),
    Status(u16),
}

impl DestinationMetrics {
    fn new(destination: &DestinationId, deps: &Deps) -> Self {
        let label = if deps.per_id_labels {
            destination.to_string()
        } else {
            telemetry::ALL.to_string()
        };
        DestinationMetrics {
            live: deps.board.register(destination),
            duration: metrics::histogram!(telemetry::DELIVERY_DURATION_SECONDS, "destination_id" => label.clone()),
            attempts: HashMap::new(),
            errors: HashMap::new(),
            delivered: HashMap::new(),
            per_id_labels: deps.per_id_labels,
            label,
        }
    }

    fn attempt(&mut self, trigger: Trigger, result: &AttemptResult) {
        let label = &self.label;
        let success = result.is_success();
        self.attempts
            .entry((trigger, success))
            .or_insert_with(|| {
                let outcome = if success { "success" } else { "failure" };
                metrics::counter!(telemetry::DELIVERY_ATTEMPTS_TOTAL, "destination_id" => label.clone(), "trigger" => trigger.as_str(), "outcome" => outcome)
            })
            .increment(1);
        if !success {
            // A receiver's status, or why there was none: a small, bounded set of codes.
            let code = match (result.error, result.response_status) {
                (Some(e), _) => ErrorCode::Delivery(e),
                (None, status) => ErrorCode::Status(status.unwrap_or(0)),
            };
            self.errors
                .entry(code)
                .or_insert_with(|| {
                    let code = match code {
                        ErrorCode::Delivery(e) => e.as_str().to_string(),
                        ErrorCode::Status(s) => format!("HTTP_{s}"),
                    };
                    metrics::counter!(telemetry::DELIVERY_ERRORS_TOTAL, "destination_id" => label.clone(), "code" => code)
                })
                .increment(1);
        }
        self.duration.record(result.duration_ms as f64 / 1000.0);
    }

    /// The state now; transitions count by the state entered.
    fn circuit(&self, to: CircuitState) {
        self.live.set_circuit(to);
        metrics::counter!(telemetry::CIRCUIT_TRANSITIONS_TOTAL, "destination_id" => self.label.clone(), "to" => to.as_str()).increment(1);
    }

    fn delivered(&mut self, connection: &ConnectionId) {
        let (label, per_id) = (&self.label, self.per_id_labels);
        self.delivered
            .entry(connection.clone())
            .or_insert_with(|| {
                let connection = if per_id { connection.to_string() } else { telemetry::ALL.to_string() };
                metrics::counter!(telemetry::EVENTS_DELIVERED_TOTAL, "connection_id" => connection, "destination_id" => label.clone())
            })
            .increment(1);
    }
}

impl DestinationActor {
    /// `breaker` is the persisted state for a destination recovered at boot (its queue is
    /// read from the store page by page), `None` for a new one (its queue is empty).
    pub fn new(
        destination: Arc<Destination>,
        deps: Deps,
        engine_paused: bool,
        breaker: Option<BreakerSnapshot>,
    ) -> Self {
        let metrics = DestinationMetrics::new(&destination.id, &deps);
        let config = core_config(&destination, &deps);
        let recovered = breaker.is_some();
        let breaker = breaker.unwrap_or_default();
        let core = match recovered {
            true => DestinationCore::new(config, breaker),
            false => DestinationCore::empty(config),
        };
        metrics.live.set_circuit(breaker.state);
        metrics.live.set_failures(breaker.failure_count);
        if recovered {
            // A crash may have come between the breaker's change and its issue's.
            let seen = CircuitSeen {
                state: breaker.state,
                transition: false,
            };
            deps.issues
                .circuit(&destination.team_id, &destination.id, seen);
        }
        DestinationActor {
            core,
            target: Arc::new(Target::new(destination)),
            payloads: PayloadCache::new(deps.payload_budget.clone()),
            deps,
            timer: None,
            recovered,
            engine_paused_at_start: engine_paused,
            metrics,
        }
    }

    fn input(&mut self, input: Input, ctx: &mut Context<Self>) {
        let now = Timestamp::now();
        let commands = self.core.handle(input, now);
        let mut writes = Vec::new();
        let mut loads = Vec::new();
        for command in commands {
            self.execute(command, now, &mut writes, &mut loads, ctx);
        }
        self.deps.store.submit(writes);
        // After the submit: a page is read once the writer has applied these changes.
        for load in loads {
            self.load(load, ctx);
        }
        let s = self.core.stats();
        // An event in flight is still QUEUED until its outcome is recorded.
        self.metrics
            .live
            .set_backlog(s.ready + s.in_flight, s.scheduled);
    }

    fn execute(
        &mut self,
        command: Command,
        now: Timestamp,
        writes: &mut Vec<Op>,
        loads: &mut Vec<PageRequest>,
        ctx: &mut Context<Self>,
    ) {
        let destination = self.target.destination.clone();
        let team = &destination.team_id;
        match command {
            Command::Start {
                entry,
                attempt_number,
                ..
            } => self.start(entry, attempt_number, ctx),
            Command::Settle {
                entry,
                attempt_number,
                trigger,
                result,
                next,
                was_due_at,
            } => {
                let attempt = self.record_attempt(&entry, attempt_number, trigger, &result, now);
                let mut patch = EventPatch {
                    attempt: Some(attempt),
                    attempts: Some(attempt_number),
                    last_attempt_at: Some(now),
                    response: Some((result.response_status, result.error)),
                    updated_at: now,
                    ..Default::default()
                };
                match next {
                    Next::Delivered => {
                        patch.status = Some(EventStatus::Successful);
                        patch.next_attempt_at = Some(None);
                        writes.push(ops::dequeue(&self.target.destination.id, &entry));
                        self.payloads.remove(entry.seq);
                        self.metrics.delivered(&entry.connection_id);
                    }
                    Next::RetryAt(at) => {
                        patch.status = Some(EventStatus::Scheduled);
                        patch.next_attempt_at = Some(Some(at));
                        writes.push(ops::requeue(
                            &self.target.destination.id,
                            &entry,
                            was_due_at,
                        ));
                        // A failing receiver must not pin bodies in memory; the retry reads
                        // it from the store.
                        self.payloads.remove(entry.seq);
                    }
                    Next::DeadLettered => {
                        patch.status = Some(EventStatus::Failed);
                        patch.next_attempt_at = Some(None);
                        patch.dead_lettered_at = Some(Some(now));
                        writes.push(ops::dequeue(&self.target.destination.id, &entry));
                        self.payloads.remove(entry.seq);
                    }
                }
                writes.push(ops::patch_event(team, &entry.event_id, patch));
            }
            Command::Due { entry } => {
                let patch = EventPatch {
                    status: Some(EventStatus::Queued),
                    next_attempt_at: Some(None),
                    updated_at: now,
                    ..Default::default()
                };
                writes.push(ops::patch_event(team, &entry.event_id, patch));
            }
            Command::Expire { entry } => {
                let patch = EventPatch {
                    status: Some(EventStatus::Failed),
                    next_attempt_at: Some(None),
                    dead_lettered_at: Some(Some(now)),
                    updated_at: now,
                    ..Default::default()
                };
                writes.push(ops::patch_event(team, &entry.event_id, patch));
                writes.push(ops::dequeue(&self.target.destination.id, &entry));
                self.payloads.remove(entry.seq);
            }
            Command::CircuitChanged(t) => {
                tracing::info!(
                    destination_id = %destination.id,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    "circuit breaker changed"
                );
                self.metrics.circuit(t.to);
                let seen = CircuitSeen {
                    state: t.to,
                    transition: true,
                };
                self.deps.issues.circuit(team, &destination.id, seen);
            }
            Command::PersistBreaker(snapshot) => {
                self.metrics.live.set_failures(snapshot.failure_count);
                writes.push(ops::put_breaker(&destination.id, &snapshot));
            }
            Command::LoadFifo { after, limit } => loads.push(PageRequest::Fifo { after, limit }),
            Command::LoadDue { after, limit } => loads.push(PageRequest::Due { after, limit }),
            Command::SetTimer { at } => {
                if let Some(handle) = self.timer.take() {
                    ctx.cancel_future(handle);
                }
                if let Some(at) = at {
                    let wait = Duration::from_millis(at.saturating_sub(now));
                    self.timer = Some(ctx.run_later(wait, |act, ctx| {
                        act.timer = None;
                        act.input(Input::Wake, ctx);
                    }));
                }
            }
        }
    }

    /// Reads a page of the queue off the actor thread, after the writer has applied every
    /// change this actor submitted, and feeds it back as an input.
    fn load(&self, load: PageRequest, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let destination = self.target.destination.id.clone();
        let actor = ctx.address();
        actix::spawn(async move {
            let input = match load {
                PageRequest::Fifo { after, limit } => {
                    let read = store
                        .read_applied(move |s| {
                            let high_water = s.high_water()?;
                            Ok((s.queue_page(&destination, after, limit)?, high_water))
                        })
                        .await;
                    match read {
                        Ok((entries, high_water)) => Input::FifoPage {
                            full: entries.len() >= limit,
                            entries,
                            high_water,
                        },
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read a page of a destination's queue");
                            Input::PageFailed { scheduled: false }
                        }
                    }
                }
                PageRequest::Due { after, limit } => {
                    let read = store
                        .read_applied(move |s| {
                            let high_water = s.high_water()?;
                            Ok((s.due_page(&destination, after, limit)?, high_water))
                        })
                        .await;
                    match read {
                        Ok((entries, high_water)) => Input::DuePage {
                            full: entries.len() >= limit,
                            entries,
                            high_water,
                        },
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read a page of a destination's scheduled events");
                            Input::PageFailed { scheduled: true }
                        }
                    }
                }
            };
            actor.do_send(Fed(input));
        });
    }

    /// Counts what a recovered queue holds on disk, in the background (counts only).
    fn count(&self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let destination = self.target.destination.id.clone();
        let actor = ctx.address();
        actix::spawn(async move {
            match store
                .read_applied(move |s| s.queue_counts(&destination))
                .await
            {
                Ok((fifo, scheduled)) => actor.do_send(Fed(Input::Counted { fifo, scheduled })),
                Err(e) => tracing::warn!(error = %e, "cannot count a destination's queue"),
            }
        });
    }

    fn record_attempt(
        &mut self,
        entry: &QueueEntry,
        attempt_number: u32,
        trigger: Trigger,
        result: &AttemptResult,
        now: Timestamp,
    ) -> Attempt {
        let success = result.is_success();
        let attempt = Attempt {
            id: AttemptId::new(),
            team_id: self.target.destination.team_id.clone(),
            event_id: entry.event_id.clone(),
            destination_id: self.target.destination.id.clone(),
            attempt_number,
            trigger,
            status: if success {
                AttemptStatus::Successful
            } else {
                AttemptStatus::Failed
            },
            response_status: result.response_status,
            error_code: result.error,
            duration_ms: result.duration_ms,
            created_at: Timestamp(now.millis().saturating_sub(result.duration_ms)),
            updated_at: now,
        };
        self.metrics.attempt(trigger, result);
        attempt
    }

    fn start(&mut self, entry: QueueEntry, attempt_number: u32, ctx: &mut Context<Self>) {
        let seq = entry.seq;
        let payload = self.payloads.get(seq);
        let store = self.deps.store.clone();
        let client = self.deps.client.clone();
        let target = self.target.clone();
        let span = tracing::debug_span!(
            "attempt",
            event_id = %entry.event_id,
            request_id = %entry.request_id,
            destination_id = %target.destination.id,
            attempt = attempt_number,
        );
        let attempt = async move {
            let payload = match payload {
                Some(p) => Some(p),
                None => {
                    let team = &target.destination.team_id;
                    super::load_payload(&store, team, &entry.request_id).await
                }
            };
            match payload {
                Some(payload) => {
                    let result = client
                        .deliver(&target, &entry.event_id, attempt_number, payload)
                        .await;
                    tracing::debug!(status = ?result.response_status, error = ?result.error, duration_ms = result.duration_ms, "attempt finished");
                    result
                }
                None => {
                    tracing::error!(event_id = %entry.event_id, request_id = %entry.request_id, "request body is missing; the attempt fails");
                    AttemptResult {
                        response_status: None,
                        error: Some(DeliveryError::BodyUnavailable),
                        retry_after_ms: None,
                        duration_ms: 0,
                    }
                }
            }
        };
        // A task of its own on this arbiter, never awaited inline: the actor keeps serving
        // while the attempt runs. Not a future of the actor's context: the context polls every
        // future it holds each time it wakes, which with 64 attempts in flight was 64 polls
        // for every message and every outcome.
        let actor = ctx.address();
        actix::spawn(async move {
            let result = attempt.instrument(span).await;
            actor.do_send(AttemptDone { seq, result });
        });
    }
}

/// An attempt's outcome. Sent with `do_send`, which a full mailbox does not refuse: an
/// outcome is never dropped while the actor lives.
#[derive(Message)]
#[rtype(result = "()")]
struct AttemptDone {
    seq: u64,
    result: AttemptResult,
}

impl Handler<AttemptDone> for DestinationActor {
    type Result = ();

    fn handle(&mut self, msg: AttemptDone, ctx: &mut Context<Self>) {
        self.input(
            Input::Outcome {
                seq: msg.seq,
                result: msg.result,
            },
            ctx,
        );
    }
}

fn core_config(destination: &Destination, deps: &Deps) -> CoreConfig {
    CoreConfig {
        max_concurrency: destination.max_concurrency,
        disabled: destination.disabled_at.is_some(),
        max_event_age_ms: deps.max_event_age_ms,
        window: deps.queue_window,
        breaker: destination.circuit.into(),
        rate_limit: destination.rate_limit.map(|rate| RateLimit {
            rate,
            period_ms: destination.rate_limit_period.millis(),
        }),
    }
}

impl Actor for DestinationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // The first input: a recovered actor asks for its first pages with it.
        self.input(Input::EnginePaused(self.engine_paused_at_start), ctx);
        if self.recovered {
            self.count(ctx);
        }
    }
}

/// A page of the queue to read (see `Command::LoadFifo` and `Command::LoadDue`).
enum PageRequest {
    Fifo {
        after: Option<u64>,
        limit: usize,
    },
    Due {
        after: Option<(Timestamp, u64)>,
        limit: usize,
    },
}

/// An input produced off the actor thread (a page read, a count).
#[derive(Message)]
#[rtype(result = "()")]
struct Fed(Input);

impl Handler<Fed> for DestinationActor {
    type Result = ();

    fn handle(&mut self, msg: Fed, ctx: &mut Context<Self>) {
        self.input(msg.0, ctx);
    }
}

/// New entries from ingress (or a release of held events), with their bodies.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub entries: Vec<QueueEntry>,
    pub payload: Option<Arc<Payload>>,
}

impl Handler<Enqueue> for DestinationActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        // Bodies first: an entry the core starts at once takes its body from the cache.
        if let Some(payload) = &msg.payload {
            for entry in &msg.entries {
                self.payloads.insert(entry.seq, payload);
            }
        }
        let seqs: Vec<u64> = match msg.payload {
            Some(_) => msg.entries.iter().map(|e| e.seq).collect(),
            None => Vec::new(),
        };
        self.input(Input::Enqueue(msg.entries), ctx);
        // Keep the bodies of what the core keeps in memory, and, while it delivers, of what
        // it left on disk for a moment (a backlog it is working through): reading each body
        // back would slow it just when it is behind. A blocked destination's backlog reads
        // its bodies when their turn comes. The cache has a byte budget of its own.
        if !self.core.is_delivering(Timestamp::now()) {
            for seq in seqs {
                if !self.core.knows(seq) {
                    self.payloads.remove(seq);
                }
            }
        }
    }
}

/// The destination was updated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Configure(pub Arc<Destination>);

impl Handler<Configure> for DestinationActor {
    type Result = ();

    fn handle(&mut self, msg: Configure, ctx: &mut Context<Self>) {
        self.target = Arc::new(Target::new(msg.0));
        let config = core_config(&self.target.destination, &self.deps);
        self.input(Input::Configure(config), ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetEnginePaused(pub bool);

impl Handler<SetEnginePaused> for DestinationActor {
    type Result = ();

    fn handle(&mut self, msg: SetEnginePaused, ctx: &mut Context<Self>) {
        self.input(Input::EnginePaused(msg.0), ctx);
    }
}

/// Shutdown: start nothing new. Answers the snapshot so the caller can wait for idle.
#[derive(Message)]
#[rtype(result = "DestinationSnapshot")]
pub struct StopDelivering;

impl Handler<StopDelivering> for DestinationActor {
    type Result = MessageResult<StopDelivering>;

    fn handle(&mut self, _: StopDelivering, ctx: &mut Context<Self>) -> Self::Result {
        self.input(Input::Stop, ctx);
        MessageResult(self.snapshot())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationSnapshot {
    pub destination_id: DestinationId,
    #[serde(flatten)]
    pub stats: CoreStats,
}

impl DestinationActor {
    fn snapshot(&self) -> DestinationSnapshot {
        DestinationSnapshot {
            destination_id: self.target.destination.id.clone(),
            stats: self.core.stats(),
        }
    }
}

#[derive(Message)]
#[rtype(result = "DestinationSnapshot")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for DestinationActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

/// A delete that cancels the waiting work: every entry leaves the queue and its event
/// becomes `CANCELLED`. Answers how many were cancelled.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelWaiting;

impl Handler<CancelWaiting> for DestinationActor {
    type Result = usize;

    fn handle(&mut self, _: CancelWaiting, ctx: &mut Context<Self>) -> usize {
        let entries = self.core.take_all();
        let destination = &self.target.destination;
        let now = Timestamp::now();
        let mut writes = Vec::with_capacity(entries.len() * 2);
        for entry in &entries {
            self.payloads.remove(entry.seq);
            writes.extend(ops::cancel_queued(
                &destination.team_id,
                &destination.id,
                entry,
                now,
            ));
        }
        self.deps.store.submit(writes);
        self.input(Input::Wake, ctx);
        entries.len()
    }
}

/// What `GET /v1/destinations/:id/circuit` shows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CircuitView {
    pub destination_id: DestinationId,
    pub state: CircuitState,
    pub failure_count: u32,
    pub last_transition_at: Option<Timestamp>,
    pub opened_at: Option<Timestamp>,
    pub next_probe_at: Option<Timestamp>,
    /// Events waiting at this destination (queued or scheduled), not those in flight.
    pub queued_count: usize,
    pub failure_threshold: u32,
    pub cooldown_seconds: u64,
    pub success_threshold: u32,
}

impl DestinationActor {
    fn circuit_view(&self) -> CircuitView {
        let b = self.core.breaker();
        let s = self.core.stats();
        let circuit = self.target.destination.circuit;
        CircuitView {
            destination_id: self.target.destination.id.clone(),
            state: b.state,
            failure_count: b.failure_count,
            last_transition_at: b.last_transition_at,
            opened_at: b.opened_at,
            next_probe_at: b.next_probe_at,
            queued_count: s.ready + s.scheduled,
            failure_threshold: circuit.failure_threshold,
            cooldown_seconds: circuit.cooldown_seconds,
            success_threshold: circuit.success_threshold,
        }
    }
}

#[derive(Message)]
#[rtype(result = "CircuitView")]
pub struct GetCircuit;

impl Handler<GetCircuit> for DestinationActor {
    type Result = MessageResult<GetCircuit>;

    fn handle(&mut self, _: GetCircuit, ctx: &mut Context<Self>) -> Self::Result {
        // A cooldown that ended while nothing woke the actor shows as half-open.
        self.input(Input::Wake, ctx);
        MessageResult(self.circuit_view())
    }
}

/// An operator's reset: closed now, counter zeroed, what waits flushes with `RESET`.
#[derive(Message)]
#[rtype(result = "CircuitView")]
pub struct ResetCircuit;

impl Handler<ResetCircuit> for DestinationActor {
    type Result = MessageResult<ResetCircuit>;

    fn handle(&mut self, _: ResetCircuit, ctx: &mut Context<Self>) -> Self::Result {
        self.input(Input::ResetCircuit, ctx);
        MessageResult(self.circuit_view())
    }
}

/// The destination was deleted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for DestinationActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
