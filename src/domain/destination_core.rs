//! The decisions of one destination, free of IO: which event to attempt next, when to retry,
//! when to give up. The `DestinationActor` feeds it inputs with the current time and carries
//! out the commands it returns; it never decides anything itself.
//!
//! It owns the destination's circuit breaker (`breaker`) and rate limiter (`rate_limiter`):
//! every start asks both, and every outcome is reported to the breaker.
//!
//! Invariants (checked by the property test below):
//! - at most `max_concurrency` attempts are in flight;
//! - nothing starts while the engine is paused, the destination is disabled or stopping, or
//!   the breaker is open; at most one probe while it is half-open;
//! - never more starts than the rate limit allows, whatever their trigger;
//! - first attempts start in queue (acceptance) order;
//! - every entry is in exactly one place — ready, scheduled or in flight — until it settles
//!   as delivered or dead-lettered; none vanishes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::breaker::{classify, Breaker, BreakerConfig, BreakerSnapshot, Permit, Transition};
use super::ids::{ConnectionId, EventId, RequestId};
use super::models::{DeliveryError, Trigger};
use super::paging::{Offer, Paging};
use super::rate_limiter::{RateLimit, RateLimiter};
use super::rules::RetryPolicy;
use super::time::Timestamp;

/// A `Retry-After` longer than this is treated as this: a receiver cannot park a
/// destination for days.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// One event waiting at its destination, as kept in the store's queue (keyed by `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Position in the destination's FIFO; assigned at acceptance, never reused.
    pub seq: u64,
    pub event_id: EventId,
    /// Where the body is (stored once per request).
    pub request_id: RequestId,
    pub connection_id: ConnectionId,
    /// Attempts made so far.
    pub attempts: u32,
    /// The trigger the next attempt will carry.
    pub next_trigger: Trigger,
    /// The time of the entry's delay or last scheduled retry (`SCHEDULED` until then). Kept
    /// once it comes due, until it settles or is scheduled again: the store files the entry
    /// under it (`None`: in the FIFO).
    pub due_at: Option<Timestamp>,
    pub retry: RetryPolicy,
    pub created_at: Timestamp,
}

/// What came back from one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptResult {
    pub response_status: Option<u16>,
    pub error: Option<DeliveryError>,
    /// From a `Retry-After` on a 429 or 503.
    pub retry_after_ms: Option<u64>,
    pub duration_ms: u64,
}

impl AttemptResult {
    pub fn is_success(&self) -> bool {
        self.error.is_none()
            && self
                .response_status
                .is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    pub max_concurrency: u32,
    pub disabled: bool,
    /// Events older than this are dead-lettered instead of retried.
    pub max_event_age_ms: u64,
    pub breaker: BreakerConfig,
    pub rate_limit: Option<RateLimit>,
    /// At most this many FIFO entries, and as many scheduled ones, are kept in memory; the
    /// rest wait on disk and are paged in, in order.
    pub window: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Enqueue(Vec<QueueEntry>),
    Outcome {
        seq: u64,
        result: AttemptResult,
    },
    /// The timer asked for by the last `SetTimer` went off (or any wake-up: it is idempotent).
    Wake,
    Configure(CoreConfig),
    EnginePaused(bool),
    /// An operator's reset of the breaker: closed now, and what waits flushes with `RESET`.
    ResetCircuit,
    /// A page of the FIFO asked for by `LoadFifo`, read once the writer had applied
    /// `high_water`; `full` when it held as many as asked.
    FifoPage {
        entries: Vec<QueueEntry>,
        full: bool,
        high_water: u64,
    },
    /// A page of the scheduled entries asked for by `LoadDue`.
    DuePage {
        entries: Vec<QueueEntry>,
        full: bool,
        high_water: u64,
    },
    /// A page could not be read (`scheduled` says which); it is asked for again.
    PageFailed {
        scheduled: bool,
    },
    /// What a background count found on disk after a restart (for counts only).
    Counted {
        fifo: usize,
        scheduled: usize,
    },
    /// Shutdown: start nothing new; attempts in flight may finish.
    Stop,
}

/// How an event settles after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(Timestamp),
    DeadLettered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Make an attempt now.
    Start {
        entry: QueueEntry,
        attempt_number: u32,
        trigger: Trigger,
    },
    /// Record a finished attempt and the event's next state. `entry` is the updated entry.
    Settle {
        entry: QueueEntry,
        attempt_number: u32,
        trigger: Trigger,
        result: AttemptResult,
        next: Next,
        /// The entry's `due_at` before this outcome: where the store has it filed.
        was_due_at: Option<Timestamp>,
    },
    /// A scheduled entry's time came; it now waits in the queue (`QUEUED`).
    Due { entry: QueueEntry },
    /// The entry outlived `max_event_age` while waiting: dead-letter it without an attempt.
    Expire { entry: QueueEntry },
    /// Arrange one `Wake` at this time (replacing any earlier request), or none.
    SetTimer { at: Option<Timestamp> },
    /// The breaker changed state (for the log, metrics, issues and alerts).
    CircuitChanged(Transition),
    /// The breaker's durable state changed: persist it, so a restart resumes it.
    PersistBreaker(BreakerSnapshot),
    /// Read the next FIFO entries after sequence `after` (from the start for `None`), at
    /// most `limit`, once the writer has applied every change commanded so far; answer with
    /// `Input::FifoPage`.
    LoadFifo { after: Option<u64>, limit: usize },
    /// The same for the scheduled entries, in (due, sequence) order; `Input::DuePage`.
    LoadDue {
        after: Option<(Timestamp, u64)>,
        limit: usize,
    },
}

/// Counters and sizes for snapshots and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CoreStats {
    pub ready: usize,
    pub scheduled: usize,
    pub in_flight: usize,
}

#[derive(Debug)]
pub struct DestinationCore {
    config: CoreConfig,
    ready: BTreeMap<u64, QueueEntry>,
    scheduled: BTreeSet<(Timestamp, u64)>,
    waiting: HashMap<u64, QueueEntry>,
    in_flight: HashMap<u64, (QueueEntry, u32, Trigger)>,
    engine_paused: bool,
    stopping: bool,
    /// No attempt starts before this (a receiver's `Retry-After`).
    blocked_until: Option<Timestamp>,
    breaker: Breaker,
    limiter: RateLimiter,
    /// The entry whose attempt is the half-open probe.
    probe: Option<u64>,
    /// Entries up to this sequence were waiting when an operator reset the breaker: their
    /// next attempt carries `RESET`.
    reset_through: Option<u64>,
    /// The wake-up last asked of the shell, to avoid re-arming the same timer.
    timer_at: Option<Timestamp>,
    /// What of the FIFO and of the scheduled entries is on disk and not in memory.
    fifo: Paging<u64>,
    due: Paging<(Timestamp, u64)>,
    /// Where entries went that moved while a page was being read: the page may still show
    /// them where they were.
    moved_while_loading: HashMap<u64, Moved>,
}

impl DestinationCore {
    pub fn new(config: CoreConfig, breaker: BreakerSnapshot) -> Self {
        DestinationCore {
            breaker: Breaker::new(config.breaker, breaker),
            limiter: RateLimiter::new(config.rate_limit),
            probe: None,
            reset_through: None,
            config,
            ready: BTreeMap::new(),
            scheduled: BTreeSet::new(),
            waiting: HashMap::new(),
            in_flight: HashMap::new(),
            engine_paused: false,
            stopping: false,
            blocked_until: None,
            timer_at: None,
            fifo: Paging::unknown(),
            due: Paging::unknown(),
            moved_while_loading: HashMap::new(),
        }
    }

    /// A core whose queue on disk is known to be empty (a destination just created).
    pub fn empty(config: CoreConfig) -> Self {
        let mut core = DestinationCore::new(config, BreakerSnapshot::default());
        core.fifo.loaded(None, false, 0, 0);
        core.due.loaded(None, false, 0, 0);
        core
    }

    /// Counts include what waits on disk beyond the window, as far as the core knows.
    pub fn stats(&self) -> CoreStats {
        CoreStats {
            ready: self.ready.len() + self.fifo.on_disk,
            scheduled: self.waiting.len() + self.due.on_disk,
            in_flight: self.in_flight.len(),
        }
    }

    /// Entries held in memory (ready, scheduled and in flight): at most three windows (the
    /// FIFO's, the scheduled entries', and those of them that came due) and the attempts in
    /// flight.
    #[cfg(test)]
    pub fn in_memory(&self) -> usize {
        self.ready.len() + self.waiting.len() + self.in_flight.len()
    }

    /// Whether the entry is in memory (ready, scheduled or in flight).
    pub fn knows(&self, seq: u64) -> bool {
        self.ready.contains_key(&seq)
            || self.waiting.contains_key(&seq)
            || self.in_flight.contains_key(&seq)
    }

    pub fn config(&self) -> CoreConfig {
        self.config
    }

    pub fn breaker(&self) -> BreakerSnapshot {
        self.breaker.snapshot()
    }

    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Command> {
        let mut out = Vec::new();
        let breaker_before = self.breaker.snapshot();
        match input {
            Input::Enqueue(entries) => {
                for entry in entries {
                    self.offer(entry);
                }
            }
            Input::FifoPage {
                entries,
                full,
                high_water,
            } => self.take_fifo_page(entries, full, high_water),
            Input::DuePage {
                entries,
                full,
                high_water,
            } => self.take_due_page(entries, full, high_water),
            Input::PageFailed { scheduled } => {
                if scheduled {
                    self.due.failed()
                } else {
                    self.fifo.failed()
                }
            }
            Input::Counted { fifo, scheduled } => {
                // What the count found on disk includes what is in memory, filed where the
                // entry's `due_at` says (a retry that came due is still filed as scheduled).
                let in_memory = self
                    .ready
                    .values()
                    .chain(self.in_flight.values().map(|(e, _, _)| e));
                let (mut filed_fifo, mut filed_due) = (0, self.waiting.len());
                for e in in_memory {
                    match e.due_at {
                        None => filed_fifo += 1,
                        Some(_) => filed_due += 1,
                    }
                }
                self.fifo.counted(fifo.saturating_sub(filed_fifo));
                self.due.counted(scheduled.saturating_sub(filed_due));
            }
            Input::Outcome { seq, result } => self.settle(seq, result, now, &mut out),
            // A wake-up may come a moment before the time asked for; arm the timer afresh.
            Input::Wake => self.timer_at = None,
            Input::Configure(config) => {
                self.config = config;
                self.breaker.configure(config.breaker);
                self.limiter.set_limit(config.rate_limit);
            }
            Input::EnginePaused(paused) => self.engine_paused = paused,
            Input::ResetCircuit => {
                // A probe in flight is an ordinary attempt from now on.
                self.probe = None;
                self.reset_through = self.ready.last_key_value().map(|(&seq, _)| seq);
                out.extend(self.breaker.reset(now).map(Command::CircuitChanged));
            }
            Input::Stop => self.stopping = true,
        }
        out.extend(self.breaker.tick(now).map(Command::CircuitChanged));
        self.release_due(now, &mut out);
        self.expire_stale(now, &mut out);
        self.pump(now, &mut out);
        self.page_in(&mut out);
        self.arm_timer(now, &mut out);
        let breaker_after = self.breaker.snapshot();
        if breaker_after != breaker_before {
            out.push(Command::PersistBreaker(breaker_after));
        }
        out
    }

    /// An entry handed over by ingress: kept in memory if it fits and nothing older waits
    /// on disk, else left for a page to bring in its turn.
    fn offer(&mut self, entry: QueueEntry) {
        let seq = entry.seq;
        if self.knows(seq) {
            return; // a duplicate hand-over of the same entry
        }
        let window = self.config.window.max(1);
        match entry.due_at {
            None => {
                if self.fifo.offer(seq, seq, self.ready.len() < window) == Offer::Keep {
                    self.ready.insert(seq, entry);
                }
            }
            Some(due) => {
                let room = self.waiting.len() < window;
                if self.due.offer((due, seq), seq, room) == Offer::Keep {
                    self.scheduled.insert((due, seq));
                    self.waiting.insert(seq, entry);
                }
            }
        }
    }

    /// Keeps a retry the core just scheduled in memory, unless memory is full of earlier
    /// ones (then it waits on disk, and a page brings it back in due order).
    fn schedule(&mut self, entry: QueueEntry, due: Timestamp) {
        let seq = entry.seq;
        self.moved(seq, Moved::To(due));
        let window = self.config.window.max(1);
        if self.waiting.len() >= window {
            // Full: the latest-due entry is the one to leave memory.
            if let Some(&(last_due, last_seq)) = self.scheduled.last() {
                if (due, seq) < (last_due, last_seq) {
                    self.scheduled.pop_last();
                    self.waiting.remove(&last_seq);
                    self.due
                        .evict((last_due, last_seq), just_before((last_due, last_seq)));
                }
            }
        }
        if self.due.place(
            (due, seq),
            self.waiting.len() < window,
            just_before((due, seq)),
        ) {
            self.scheduled.insert((due, seq));
            self.waiting.insert(seq, entry);
        }
    }

    /// Notes where an entry went while a page is read, so the page cannot bring back an
    /// older copy of it.
    fn moved(&mut self, seq: u64, to: Moved) {
        if self.fifo.loading() || self.due.loading() {
            self.moved_while_loading.insert(seq, to);
        }
    }

    fn take_fifo_page(&mut self, entries: Vec<QueueEntry>, full: bool, high_water: u64) {
        let room = self.config.window.max(1).saturating_sub(self.ready.len());
        let (mut kept, mut last, mut cut) = (0, None, false);
        for entry in entries {
            let seq = entry.seq;
            // An entry that moved since the read is no longer where the page saw it.
            if !(self.moved_while_loading.contains_key(&seq) || self.knows(seq)) {
                if kept == room {
                    cut = true;
                    break;
                }
                self.ready.insert(seq, entry);
                kept += 1;
            }
            last = Some(seq);
        }
        self.fifo.loaded(last, full || cut, high_water, kept);
        self.forget_left();
    }

    fn take_due_page(&mut self, entries: Vec<QueueEntry>, full: bool, high_water: u64) {
        let room = self.config.window.max(1).saturating_sub(self.waiting.len());
        let (mut kept, mut last, mut cut) = (0, None, false);
        for entry in entries {
            let seq = entry.seq;
            let key = (entry.due_at.unwrap_or_default(), seq);
            let stale = self
                .moved_while_loading
                .get(&seq)
                .is_some_and(|&to| to != Moved::To(key.0));
            if !(stale || self.knows(seq)) {
                if kept == room {
                    cut = true;
                    break;
                }
                self.scheduled.insert(key);
                self.waiting.insert(seq, entry);
                kept += 1;
            }
            last = Some(key);
        }
        self.due.loaded(last, full || cut, high_water, kept);
        self.forget_left();
    }

    fn forget_left(&mut self) {
        if !self.fifo.loading() && !self.due.loading() {
            self.moved_while_loading.clear();
        }
    }

    /// Asks for the next page of whatever runs low in memory while more waits on disk.
    fn page_in(&mut self, out: &mut Vec<Command>) {
        let window = self.config.window.max(1);
        let low = window / 2 + 1;
        if let Some(after) = self.fifo.want_page(self.ready.len(), low) {
            out.push(Command::LoadFifo {
                after,
                limit: window - self.ready.len(),
            });
        }
        if let Some(after) = self.due.want_page(self.waiting.len(), low) {
            out.push(Command::LoadDue {
                after,
                limit: window - self.waiting.len(),
            });
        }
    }

    fn settle(&mut self, seq: u64, result: AttemptResult, now: Timestamp, out: &mut Vec<Command>) {
        let Some((mut entry, attempt_number, trigger)) = self.in_flight.remove(&seq) else {
            return; // stale outcome
        };
        let probe = self.probe == Some(seq);
        if probe {
            self.probe = None;
        }
        out.extend(
            self.breaker
                .record(probe, classify(&result), now)
                .map(Command::CircuitChanged),
        );
        entry.attempts = attempt_number;
        let was_due_at = entry.due_at;
        let next = if result.is_success() {
            Next::Delivered
        } else {
            if let Some(ms) = result.retry_after_ms {
                let until = now.plus_ms(ms.min(MAX_RETRY_AFTER_MS));
                self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            }
            let too_old = now.saturating_sub(entry.created_at) >= self.config.max_event_age_ms;
            match entry.retry.wait_after(entry.attempts) {
                Some(wait) if !too_old => {
                    let mut due = now.plus_ms(wait);
                    if let Some(blocked) = self.blocked_until {
                        due = due.max(blocked);
                    }
                    Next::RetryAt(due)
                }
                _ => Next::DeadLettered,
            }
        };
        match next {
            Next::RetryAt(due) => {
                entry.due_at = Some(due);
                entry.next_trigger = Trigger::Automatic;
                self.schedule(entry.clone(), due);
            }
            Next::Delivered | Next::DeadLettered => self.moved(seq, Moved::Gone),
        }
        out.push(Command::Settle {
            entry,
            attempt_number,
            trigger,
            result,
            next,
            was_due_at,
        });
    }

    /// Moves entries whose time came into the queue, as long as it has room (two windows):
    /// the rest stay scheduled until attempts make room.
    fn release_due(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        while let Some(&(due, seq)) = self.scheduled.first() {
            if due > now || !self.may_release() {
                break;
            }
            self.scheduled.pop_first();
            let Some(entry) = self.waiting.remove(&seq) else {
                continue;
            };
            if now.saturating_sub(entry.created_at) >= self.config.max_event_age_ms {
                out.push(Command::Expire { entry });
                continue;
            }
            out.push(Command::Due {
                entry: entry.clone(),
            });
            self.ready.insert(seq, entry);
        }
    }

    /// Whether attempts can start now (nothing pauses, blocks or disables the destination,
    /// and its breaker is closed).
    pub fn is_delivering(&self, now: Timestamp) -> bool {
        self.may_start(now) && self.breaker.state() == super::breaker::CircuitState::Closed
    }

    fn may_release(&self) -> bool {
        self.ready.len() < 2 * self.config.window.max(1)
    }

    fn may_start(&self, now: Timestamp) -> bool {
        !(self.engine_paused || self.stopping || self.config.disabled)
            && self.blocked_until.is_none_or(|b| b <= now)
    }

    /// Entries waiting in the queue (not only those waiting for a retry time) are
    /// dead-lettered once older than `max_event_age`: an open breaker or a long pause must not
    /// keep an event beyond its retry window. The oldest waits at the head.
    fn expire_stale(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        while let Some(entry) = self.ready.first_key_value().map(|(_, e)| e) {
            if now.saturating_sub(entry.created_at) < self.config.max_event_age_ms {
                break;
            }
            if let Some((seq, entry)) = self.ready.pop_first() {
                self.moved(seq, Moved::Gone);
                out.push(Command::Expire { entry });
            }
        }
    }

    fn pump(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if !self.may_start(now) {
            return;
        }
        self.blocked_until = None;
        while self.in_flight.len() < self.config.max_concurrency.max(1) as usize {
            let Some(&seq) = self.ready.keys().next() else {
                break;
            };
            if self.limiter.next_allowed_at(now) > now {
                break;
            }
            let probe = match self.breaker.permit() {
                Permit::Denied => break,
                Permit::Probe => true,
                Permit::Normal => false,
            };
            let acquired = self.limiter.try_acquire(now);
            debug_assert!(acquired, "the limiter allowed this start a moment ago");
            let Some(entry) = self.ready.remove(&seq) else {
                break;
            };
            let attempt_number = entry.attempts + 1;
            let trigger = if probe {
                self.probe = Some(seq);
                Trigger::Probe
            } else if self.reset_through.is_some_and(|r| seq <= r)
                && matches!(entry.next_trigger, Trigger::Initial | Trigger::Automatic)
            {
                Trigger::Reset
            } else {
                entry.next_trigger
            };
            if self.reset_through.is_some_and(|r| seq >= r) {
                self.reset_through = None;
            }
            self.in_flight
                .insert(seq, (entry.clone(), attempt_number, trigger));
            out.push(Command::Start {
                entry,
                attempt_number,
                trigger,
            });
        }
    }

    /// When the oldest waiting event outlives `max_event_age`, if nothing else will wake the
    /// core before: only while attempts cannot start (while they can, every outcome checks
    /// the head), and rounded up to the second, so a moving head does not re-arm the timer
    /// on every event.
    fn expiry_wake(&self, now: Timestamp) -> Option<Timestamp> {
        if self.is_delivering(now) && self.in_flight.len() < self.config.max_concurrency as usize {
            return None;
        }
        let (_, head) = self.ready.first_key_value()?;
        let at = head.created_at.plus_ms(self.config.max_event_age_ms);
        Some(Timestamp(at.0.div_ceil(1_000) * 1_000))
    }

    fn arm_timer(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        let waiting = !self.ready.is_empty();
        let candidates = [
            self.scheduled
                .first()
                .map(|&(due, _)| due)
                .filter(|_| self.may_release()),
            self.blocked_until.filter(|&b| b > now && waiting),
            // Half-open on time, so the circuit shows it even with nothing waiting.
            self.breaker.wake_at(),
            Some(self.limiter.next_allowed_at(now)).filter(|&t| t > now && waiting),
            self.expiry_wake(now),
        ];
        let want = candidates.into_iter().flatten().min();
        if want != self.timer_at {
            self.timer_at = want;
            out.push(Command::SetTimer { at: want });
        }
    }

    /// Takes every entry out, for a delete that cancels the destination's waiting work.
    /// Attempts in flight are forgotten: their outcomes will find nothing and be ignored.
    pub fn take_all(&mut self) -> Vec<QueueEntry> {
        // Whatever a page under way brings is cancelled by the caller from the store.
        self.fifo.loaded(None, false, u64::MAX, 0);
        self.due.loaded(None, false, u64::MAX, 0);
        self.scheduled.clear();
        let mut all: Vec<QueueEntry> = std::mem::take(&mut self.ready).into_values().collect();
        all.extend(self.waiting.drain().map(|(_, e)| e));
        all.extend(self.in_flight.drain().map(|(_, (e, _, _))| e));
        all.sort_by_key(|e| e.seq);
        all
    }

    /// True when nothing is in flight: shutdown may proceed.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }
}

/// Where an entry went: settled (gone from the queue), or filed for a new time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    Gone,
    To(Timestamp),
}

/// The (due, sequence) key just below `key`, to read again from `key` on.
fn just_before((due, seq): (Timestamp, u64)) -> (Timestamp, u64) {
    match seq.checked_sub(1) {
        Some(seq) => (due, seq),
        None => (Timestamp(due.0.saturating_sub(1)), u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::RetryStrategy;
    use proptest::prelude::*;

    const HOUR: u64 = 3_600_000;

    fn config(max_concurrency: u32) -> CoreConfig {
        CoreConfig {
            max_concurrency,
            disabled: false,
            max_event_age_ms: 72 * HOUR,
            // High enough that the tests of retries never open it.
            breaker: BreakerConfig {
                failure_threshold: 1_000,
                cooldown_ms: 60_000,
                success_threshold: 1,
            },
            rate_limit: None,
            window: 1_000,
        }
    }

    fn new_core(config: CoreConfig) -> DestinationCore {
        DestinationCore::empty(config)
    }

    /// A core recovered with `breaker` over a queue the store says is empty.
    fn restored(config: CoreConfig, breaker: BreakerSnapshot) -> DestinationCore {
        let mut core = DestinationCore::new(config, breaker);
        let cmds = core.handle(Input::Wake, Timestamp(0));
        assert!(cmds.contains(&Command::LoadFifo {
            after: None,
            limit: config.window
        }));
        for input in [
            Input::FifoPage {
                entries: vec![],
                full: false,
                high_water: 0,
            },
            Input::DuePage {
                entries: vec![],
                full: false,
                high_water: 0,
            },
        ] {
            core.handle(input, Timestamp(0));
        }
        core
    }

    use crate::domain::fixtures::queue_entry as entry;

    fn linear(count: u32, interval_ms: u64) -> RetryPolicy {
        RetryPolicy {
            strategy: RetryStrategy::Linear,
            count,
            interval_ms,
        }
    }

    fn ok() -> AttemptResult {
        AttemptResult {
            response_status: Some(200),
            error: None,
            retry_after_ms: None,
            duration_ms: 1,
        }
    }

    fn fail(status: u16) -> AttemptResult {
        AttemptResult {
            response_status: Some(status),
            error: None,
            retry_after_ms: None,
            duration_ms: 1,
        }
    }

    fn starts(cmds: &[Command]) -> Vec<(u64, u32, Trigger)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Start {
                    entry,
                    attempt_number,
                    trigger,
                } => Some((entry.seq, *attempt_number, *trigger)),
                _ => None,
            })
            .collect()
    }

    fn settled(cmds: &[Command]) -> Vec<(u64, Next)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::Settle { entry, next, .. } => Some((entry.seq, *next)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_attempts_start_in_queue_order_within_the_concurrency_limit() {
        let mut core = new_core(config(2));
        let cmds = core.handle(
            Input::Enqueue(vec![
                entry(3, linear(0, 0)),
                entry(1, linear(0, 0)),
                entry(2, linear(0, 0)),
            ]),
            Timestamp(0),
        );
        assert_eq!(
            starts(&cmds),
            vec![(1, 1, Trigger::Initial), (2, 1, Trigger::Initial)]
        );
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: ok(),
            },
            Timestamp(5),
        );
        assert_eq!(settled(&cmds), vec![(1, Next::Delivered)]);
        assert_eq!(starts(&cmds), vec![(3, 1, Trigger::Initial)]);
    }

    #[test]
    fn linear_retries_follow_the_interval_then_dead_letter() {
        let mut core = new_core(config(1));
        core.handle(
            Input::Enqueue(vec![entry(1, linear(2, 200))]),
            Timestamp(1_000),
        );
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: fail(500),
            },
            Timestamp(1_010),
        );
        assert_eq!(settled(&cmds), vec![(1, Next::RetryAt(Timestamp(1_210)))]);
        assert!(cmds.contains(&Command::SetTimer {
            at: Some(Timestamp(1_210))
        }));
        // Too early: nothing happens.
        assert!(starts(&core.handle(Input::Wake, Timestamp(1_209))).is_empty());
        let cmds = core.handle(Input::Wake, Timestamp(1_210));
        assert_eq!(starts(&cmds), vec![(1, 2, Trigger::Automatic)]);
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: fail(500),
            },
            Timestamp(1_300),
        );
        assert_eq!(settled(&cmds), vec![(1, Next::RetryAt(Timestamp(1_500)))]);
        let cmds = core.handle(Input::Wake, Timestamp(1_500));
        assert_eq!(starts(&cmds), vec![(1, 3, Trigger::Automatic)]);
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: fail(500),
            },
            Timestamp(1_600),
        );
        assert_eq!(settled(&cmds), vec![(1, Next::DeadLettered)]);
        assert_eq!(core.stats(), CoreStats::default());
    }

    #[test]
    fn exponential_retries_double_the_wait() {
        let policy = RetryPolicy {
            strategy: RetryStrategy::Exponential,
            count: 3,
            interval_ms: 100,
        };
        let mut core = new_core(config(1));
        core.handle(Input::Enqueue(vec![entry(7, policy)]), Timestamp(0));
        let mut now = Timestamp(0);
        let mut waits = Vec::new();
        loop {
            let cmds = core.handle(
                Input::Outcome {
                    seq: 7,
                    result: fail(503),
                },
                now,
            );
            match settled(&cmds)[0].1 {
                Next::RetryAt(due) => {
                    waits.push(due.0 - now.0);
                    now = due;
                    assert_eq!(starts(&core.handle(Input::Wake, now)).len(), 1);
                }
                Next::DeadLettered => break,
                Next::Delivered => unreachable!(),
            }
        }
        assert_eq!(waits, vec![100, 200, 400]);
    }

    #[test]
    fn success_after_failures_delivers() {
        let mut core = new_core(config(1));
        core.handle(Input::Enqueue(vec![entry(1, linear(5, 10))]), Timestamp(0));
        core.handle(
            Input::Outcome {
                seq: 1,
                result: fail(500),
            },
            Timestamp(1),
        );
        core.handle(Input::Wake, Timestamp(11));
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: ok(),
            },
            Timestamp(12),
        );
        match &cmds[0] {
            Command::Settle {
                entry,
                attempt_number,
                trigger,
                next,
                ..
            } => {
                assert_eq!(
                    (*attempt_number, *trigger, *next),
                    (2, Trigger::Automatic, Next::Delivered)
                );
                assert_eq!(entry.attempts, 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retry_after_blocks_the_whole_destination() {
        let mut core = new_core(config(1));
        core.handle(
            Input::Enqueue(vec![entry(1, linear(5, 10)), entry(2, linear(5, 10))]),
            Timestamp(0),
        );
        let limited = AttemptResult {
            retry_after_ms: Some(5_000),
            ..fail(429)
        };
        let cmds = core.handle(
            Input::Outcome {
                seq: 1,
                result: limited,
            },
            Timestamp(100),
        );
        assert_eq!(settled(&cmds), vec![(1, Next::RetryAt(Timestamp(5_100)))]);
        assert!(
            starts(&cmds).is_empty(),
            "entry 2 must wait for Retry-After"
        );
        assert!(starts(&core.handle(Input::Wake, Timestamp(5_099))).is_empty());
        assert_eq!(
            starts(&core.handle(Input::Wake, Timestamp(5_100))),
            vec![(1, 2, Trigger::Automatic)]
        );
    }

    #[test]
    fn nothing_starts_while_paused_disabled_or_stopping() {
        let mut core = new_core(config(4));
        core.handle(Input::EnginePaused(true), Timestamp(0));
        assert!(
            starts(&core.handle(Input::Enqueue(vec![entry(1, linear(0, 0))]), Timestamp(0)))
                .is_empty()
        );
        assert_eq!(
            starts(&core.handle(Input::EnginePaused(false), Timestamp(1))).len(),
            1
        );

        let mut core = new_core(CoreConfig {
            disabled: true,
            ..config(4)
        });
        assert!(
            starts(&core.handle(Input::Enqueue(vec![entry(1, linear(0, 0))]), Timestamp(0)))
                .is_empty()
        );
        assert_eq!(
            core.stats().ready,
            1,
            "a disabled destination keeps what it queued"
        );
        assert_eq!(
            starts(&core.handle(Input::Configure(config(4)), Timestamp(1))).len(),
            1
        );

        let mut core = new_core(config(4));
        core.handle(Input::Stop, Timestamp(0));
        assert!(
            starts(&core.handle(Input::Enqueue(vec![entry(1, linear(0, 0))]), Timestamp(0)))
                .is_empty()
        );
    }

    #[test]
    fn scheduled_entries_wait_for_their_time_and_expire_when_too_old() {
        let mut core = new_core(CoreConfig {
            max_event_age_ms: 1_000,
            ..config(1)
        });
        let mut delayed = entry(1, linear(0, 0));
        delayed.due_at = Some(Timestamp(500));
        let mut stale = entry(2, linear(0, 0));
        stale.due_at = Some(Timestamp(2_000));
        let cmds = core.handle(Input::Enqueue(vec![delayed, stale]), Timestamp(0));
        assert!(starts(&cmds).is_empty());
        assert!(cmds.contains(&Command::SetTimer {
            at: Some(Timestamp(500))
        }));
        let cmds = core.handle(Input::Wake, Timestamp(500));
        assert_eq!(starts(&cmds), vec![(1, 1, Trigger::Initial)]);
        let cmds = core.handle(Input::Wake, Timestamp(2_000));
        assert!(matches!(cmds.as_slice(), [Command::Expire { entry }, ..] if entry.seq == 2));
    }

    #[test]
    fn stale_and_duplicate_inputs_are_ignored() {
        let mut core = new_core(config(1));
        let e = entry(1, linear(0, 0));
        core.handle(Input::Enqueue(vec![e.clone()]), Timestamp(0));
        assert!(core
            .handle(Input::Enqueue(vec![e]), Timestamp(0))
            .is_empty());
        assert!(core
            .handle(
                Input::Outcome {
                    seq: 99,
                    result: ok()
                },
                Timestamp(0)
            )
            .is_empty());
        assert_eq!(core.stats().in_flight, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(u8),
        Complete(usize, bool),
        Advance(u16),
        Pause(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..4).prop_map(Op::Enqueue),
            (0usize..8, any::<bool>()).prop_map(|(i, ok)| Op::Complete(i, ok)),
            (0u16..500).prop_map(Op::Advance),
            any::<bool>().prop_map(Op::Pause),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_input_sequence(ops in proptest::collection::vec(op(), 1..120), max_conc in 1u32..4) {
            let mut core = new_core(CoreConfig { max_event_age_ms: 10_000, ..config(max_conc) });
            let mut now = Timestamp(0);
            let mut next_seq = 0u64;
            let mut in_flight: Vec<u64> = Vec::new();
            let mut enqueued = std::collections::BTreeSet::new();
            let mut done = std::collections::BTreeSet::new();
            let mut first_starts = Vec::new();
            let mut paused = false;
            for op in ops {
                let cmds = match op {
                    Op::Enqueue(n) => {
                        let entries: Vec<_> = (0..n).map(|_| { next_seq += 1; enqueued.insert(next_seq); entry(next_seq, linear(2, 100)) }).collect();
                        core.handle(Input::Enqueue(entries), now)
                    }
                    Op::Complete(i, success) if !in_flight.is_empty() => {
                        let seq = in_flight.remove(i % in_flight.len());
                        core.handle(Input::Outcome { seq, result: if success { ok() } else { fail(500) } }, now)
                    }
                    Op::Complete(..) => continue,
                    Op::Advance(ms) => { now = now.plus_ms(u64::from(ms)); core.handle(Input::Wake, now) }
                    Op::Pause(p) => { paused = p; core.handle(Input::EnginePaused(p), now) }
                };
                for c in &cmds {
                    match c {
                        Command::Start { entry, attempt_number, .. } => {
                            prop_assert!(!paused, "started while paused");
                            in_flight.push(entry.seq);
                            if *attempt_number == 1 { first_starts.push(entry.seq); }
                        }
                        Command::Settle { entry, next: Next::Delivered | Next::DeadLettered, .. } => { done.insert(entry.seq); }
                        Command::Expire { entry } => { done.insert(entry.seq); }
                        _ => {}
                    }
                }
                prop_assert!(in_flight.len() <= max_conc as usize);
                let s = core.stats();
                prop_assert_eq!(s.ready + s.scheduled + s.in_flight + done.len(), enqueued.len(), "an entry vanished or doubled");
            }
            let mut sorted = first_starts.clone();
            sorted.sort_unstable();
            prop_assert_eq!(first_starts, sorted, "first attempts out of acceptance order");
        }
    }

    // ---- breaker and rate limit -------------------------------------------------------

    use crate::domain::breaker::CircuitState;

    fn guarded(max_concurrency: u32, threshold: u32, cooldown_ms: u64) -> CoreConfig {
        CoreConfig {
            breaker: BreakerConfig {
                failure_threshold: threshold,
                cooldown_ms,
                success_threshold: 1,
            },
            ..config(max_concurrency)
        }
    }

    fn transitions(cmds: &[Command]) -> Vec<(CircuitState, CircuitState)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::CircuitChanged(t) => Some((t.from, t.to)),
                _ => None,
            })
            .collect()
    }

    fn no_retries(seqs: std::ops::RangeInclusive<u64>) -> Vec<QueueEntry> {
        seqs.map(|s| entry(s, linear(0, 0))).collect()
    }

    fn outcome(seq: u64, result: AttemptResult) -> Input {
        Input::Outcome { seq, result }
    }

    /// Opens the breaker of a fresh core: `threshold` hard failures of entries 1.. with
    /// retries off, one at a time; entries up to `queued` wait behind them.
    fn opened(threshold: u32, cooldown_ms: u64, queued: u64) -> DestinationCore {
        let mut core = new_core(guarded(1, threshold, cooldown_ms));
        core.handle(Input::Enqueue(no_retries(1..=queued)), Timestamp(0));
        for seq in 1..=u64::from(threshold) {
            let cmds = core.handle(outcome(seq, fail(500)), Timestamp(seq));
            let opens = seq == u64::from(threshold);
            assert_eq!(
                transitions(&cmds),
                if opens {
                    vec![(CircuitState::Closed, CircuitState::Open)]
                } else {
                    vec![]
                },
                "after failure {seq}"
            );
            assert!(cmds
                .iter()
                .any(|c| matches!(c, Command::PersistBreaker(b) if b.failure_count == if opens { 0 } else { seq as u32 } )));
        }
        core
    }

    #[test]
    fn the_breaker_opens_at_the_threshold_waits_the_cooldown_and_probes_once() {
        let mut core = opened(5, 2_000, 8);
        let b = core.breaker();
        assert_eq!(b.state, CircuitState::Open);
        assert_eq!(b.next_probe_at, Some(Timestamp(2_005)));
        assert_eq!(core.stats().ready, 3, "later events wait, none dropped");
        assert!(
            starts(&core.handle(Input::Wake, Timestamp(2_004))).is_empty(),
            "no attempt during the cooldown"
        );
        let cmds = core.handle(Input::Wake, Timestamp(2_005));
        assert_eq!(
            transitions(&cmds),
            vec![(CircuitState::Open, CircuitState::HalfOpen)]
        );
        assert_eq!(
            starts(&cmds),
            vec![(6, 1, Trigger::Probe)],
            "one probe, with the oldest waiting event"
        );
        let cmds = core.handle(outcome(6, ok()), Timestamp(2_010));
        assert_eq!(
            transitions(&cmds),
            vec![(CircuitState::HalfOpen, CircuitState::Closed)]
        );
        assert_eq!(starts(&cmds), vec![(7, 1, Trigger::Initial)]);
        let cmds = core.handle(outcome(7, ok()), Timestamp(2_011));
        assert_eq!(starts(&cmds), vec![(8, 1, Trigger::Initial)]);
    }

    #[test]
    fn a_failed_probe_reopens_and_restarts_the_cooldown() {
        let mut core = opened(2, 1_000, 5);
        core.handle(Input::Wake, Timestamp(1_002));
        let cmds = core.handle(outcome(3, fail(503)), Timestamp(1_500));
        assert_eq!(
            transitions(&cmds),
            vec![(CircuitState::HalfOpen, CircuitState::Open)]
        );
        assert_eq!(settled(&cmds), vec![(3, Next::DeadLettered)]);
        assert!(starts(&cmds).is_empty());
        assert_eq!(core.breaker().next_probe_at, Some(Timestamp(2_500)));
        assert!(starts(&core.handle(Input::Wake, Timestamp(2_499))).is_empty());
        assert_eq!(
            starts(&core.handle(Input::Wake, Timestamp(2_500))),
            vec![(4, 1, Trigger::Probe)]
        );
    }

    #[test]
    fn only_one_probe_while_half_open_even_with_room_for_more() {
        let mut core = new_core(guarded(4, 1, 100));
        core.handle(Input::Enqueue(no_retries(1..=1)), Timestamp(0));
        core.handle(outcome(1, fail(500)), Timestamp(1));
        core.handle(Input::Enqueue(no_retries(2..=6)), Timestamp(2));
        let cmds = core.handle(Input::Wake, Timestamp(101));
        assert_eq!(starts(&cmds), vec![(2, 1, Trigger::Probe)]);
        assert!(starts(&core.handle(Input::Wake, Timestamp(150))).is_empty());
        let cmds = core.handle(outcome(2, ok()), Timestamp(160));
        assert_eq!(
            starts(&cmds),
            vec![
                (3, 1, Trigger::Initial),
                (4, 1, Trigger::Initial),
                (5, 1, Trigger::Initial),
                (6, 1, Trigger::Initial)
            ],
            "closed: the queue flushes in order"
        );
    }

    #[test]
    fn other_4xx_fail_the_attempt_without_tripping_the_breaker() {
        let mut core = new_core(guarded(1, 2, 1_000));
        core.handle(Input::Enqueue(no_retries(1..=6)), Timestamp(0));
        for seq in 1..=5 {
            let cmds = core.handle(outcome(seq, fail(404)), Timestamp(seq));
            assert_eq!(settled(&cmds), vec![(seq, Next::DeadLettered)]);
            assert!(transitions(&cmds).is_empty());
        }
        assert_eq!(core.breaker().failure_count, 0);
        assert_eq!(core.breaker().state, CircuitState::Closed);
    }

    #[test]
    fn a_reset_closes_at_once_and_flushes_what_waits_with_reset() {
        let mut core = opened(2, 60_000, 5);
        let cmds = core.handle(Input::ResetCircuit, Timestamp(10));
        assert_eq!(
            transitions(&cmds),
            vec![(CircuitState::Open, CircuitState::Closed)]
        );
        assert_eq!(core.breaker().failure_count, 0);
        assert_eq!(starts(&cmds), vec![(3, 1, Trigger::Reset)]);
        core.handle(Input::Enqueue(no_retries(6..=6)), Timestamp(11));
        let cmds = core.handle(outcome(3, ok()), Timestamp(12));
        assert_eq!(starts(&cmds), vec![(4, 1, Trigger::Reset)]);
        let cmds = core.handle(outcome(4, ok()), Timestamp(13));
        assert_eq!(starts(&cmds), vec![(5, 1, Trigger::Reset)]);
        let cmds = core.handle(outcome(5, ok()), Timestamp(14));
        assert_eq!(
            starts(&cmds),
            vec![(6, 1, Trigger::Initial)],
            "what arrived after the reset is not flushed by it"
        );
        let mut core = opened(2, 60_000, 3);
        core.handle(Input::ResetCircuit, Timestamp(10));
        core.handle(Input::Enqueue(no_retries(4..=4)), Timestamp(11));
        let cmds = core.handle(outcome(3, ok()), Timestamp(12));
        assert_eq!(
            starts(&cmds),
            vec![(4, 1, Trigger::Initial)],
            "an event that arrived after the reset is a first attempt like any other"
        );
    }

    #[test]
    fn a_restored_open_breaker_probes_at_its_persisted_deadline() {
        let snapshot = opened(3, 8_000, 3).breaker();
        assert_eq!(snapshot.next_probe_at, Some(Timestamp(8_003)));
        let mut core = DestinationCore::new(guarded(1, 3, 8_000), snapshot);
        let cmds = core.handle(Input::Wake, Timestamp(3_000));
        assert!(cmds.contains(&Command::SetTimer {
            at: Some(Timestamp(8_003))
        }));
        let mut core = restored(guarded(1, 3, 8_000), snapshot);
        let cmds = core.handle(Input::Enqueue(no_retries(10..=11)), Timestamp(3_000));
        assert!(starts(&cmds).is_empty());
        assert!(starts(&core.handle(Input::Wake, Timestamp(8_002))).is_empty());
        assert_eq!(
            starts(&core.handle(Input::Wake, Timestamp(8_003))),
            vec![(10, 1, Trigger::Probe)]
        );
        // A deadline that passed during the downtime probes at once.
        let mut core = restored(guarded(1, 3, 8_000), snapshot);
        assert_eq!(
            starts(&core.handle(Input::Enqueue(no_retries(10..=11)), Timestamp(9_000))),
            vec![(10, 1, Trigger::Probe)]
        );
    }

    #[test]
    fn the_rate_limit_spaces_every_start_and_wakes_for_the_next() {
        let mut core = new_core(CoreConfig {
            rate_limit: Some(RateLimit {
                rate: 4,
                period_ms: 1_000,
            }),
            ..config(10)
        });
        let cmds = core.handle(Input::Enqueue(no_retries(1..=6)), Timestamp(0));
        assert_eq!(starts(&cmds), vec![(1, 1, Trigger::Initial)]);
        assert!(cmds.contains(&Command::SetTimer {
            at: Some(Timestamp(250))
        }));
        assert!(starts(&core.handle(Input::Wake, Timestamp(249))).is_empty());
        assert_eq!(
            starts(&core.handle(Input::Wake, Timestamp(250))),
            vec![(2, 1, Trigger::Initial)]
        );
        assert_eq!(
            starts(&core.handle(Input::Wake, Timestamp(900))),
            vec![(3, 1, Trigger::Initial)],
            "burst 1: a late wake does not make up for lost time"
        );
    }

    #[test]
    fn waiting_entries_expire_at_the_head_of_the_queue_while_the_breaker_is_open() {
        let mut core = new_core(CoreConfig {
            max_event_age_ms: 5_000,
            ..guarded(1, 1, 60_000)
        });
        core.handle(Input::Enqueue(no_retries(1..=3)), Timestamp(0));
        core.handle(outcome(1, fail(500)), Timestamp(10));
        let cmds = core.handle(Input::Wake, Timestamp(4_999));
        assert!(!cmds.iter().any(|c| matches!(c, Command::Expire { .. })));
        assert!(cmds.contains(&Command::SetTimer {
            at: Some(Timestamp(5_000))
        }));
        let cmds = core.handle(Input::Wake, Timestamp(5_000));
        let expired: Vec<u64> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Expire { entry } => Some(entry.seq),
                _ => None,
            })
            .collect();
        assert_eq!(expired, vec![2, 3]);
        assert_eq!(core.stats(), CoreStats::default());
    }

    #[derive(Debug, Clone)]
    enum GuardOp {
        Enqueue(u8),
        Complete(usize, u16),
        Advance(u16),
        Reset,
    }

    fn guard_op() -> impl Strategy<Value = GuardOp> {
        prop_oneof![
            (1u8..4).prop_map(GuardOp::Enqueue),
            (
                0usize..8,
                prop_oneof![Just(200u16), Just(500), Just(404), Just(429)]
            )
                .prop_map(|(i, s)| GuardOp::Complete(i, s)),
            (0u16..400).prop_map(GuardOp::Advance),
            Just(GuardOp::Reset),
        ]
    }

    proptest! {
        #[test]
        fn the_breaker_and_the_rate_limit_hold_for_any_input_sequence(
            ops in proptest::collection::vec(guard_op(), 1..150),
            max_conc in 1u32..4,
            threshold in 1u32..4,
            rate in 1u32..6,
        ) {
            let period = 1_000u64;
            let mut core = new_core(CoreConfig {
                rate_limit: Some(RateLimit { rate, period_ms: period }),
                ..guarded(max_conc, threshold, 300)
            });
            let mut now = Timestamp(0);
            let mut next_seq = 0u64;
            let mut in_flight: Vec<u64> = Vec::new();
            let mut enqueued = 0usize;
            let mut done = std::collections::BTreeSet::new();
            let mut state = CircuitState::Closed;
            let mut start_times: Vec<u64> = Vec::new();
            let mut probes_out = 0usize;
            let mut probe_seq = None;
            let mut hard_in_a_row = 0u32;
            for op in ops {
                let cmds = match op {
                    GuardOp::Enqueue(n) => {
                        let entries: Vec<_> = (0..n).map(|_| { next_seq += 1; enqueued += 1; entry(next_seq, linear(1, 50)) }).collect();
                        core.handle(Input::Enqueue(entries), now)
                    }
                    GuardOp::Complete(i, status) if !in_flight.is_empty() => {
                        let seq = in_flight.remove(i % in_flight.len());
                        if probe_seq == Some(seq) { probes_out -= 1; probe_seq = None; }
                        if state == CircuitState::Closed {
                            if matches!(status, 500 | 429) { hard_in_a_row += 1 } else if status == 200 { hard_in_a_row = 0 }
                        }
                        core.handle(outcome(seq, fail(status)), now)
                    }
                    GuardOp::Complete(..) => continue,
                    GuardOp::Advance(ms) => { now = now.plus_ms(u64::from(ms)); core.handle(Input::Wake, now) }
                    GuardOp::Reset => {
                        if probe_seq.take().is_some() { probes_out -= 1; }
                        hard_in_a_row = 0;
                        core.handle(Input::ResetCircuit, now)
                    }
                };
                for c in &cmds {
                    match c {
                        Command::CircuitChanged(t) => {
                            prop_assert_eq!(t.from, state);
                            state = t.to;
                            hard_in_a_row = 0;
                        }
                        Command::Start { entry, trigger, .. } => {
                            prop_assert!(state != CircuitState::Open, "started while open");
                            if state == CircuitState::HalfOpen {
                                prop_assert_eq!(*trigger, Trigger::Probe, "only a probe while half-open");
                                probes_out += 1;
                                probe_seq = Some(entry.seq);
                                prop_assert!(probes_out <= 1, "two probes at once");
                            }
                            in_flight.push(entry.seq);
                            start_times.push(now.0);
                        }
                        Command::Settle { entry, next: Next::Delivered | Next::DeadLettered, .. } => { done.insert(entry.seq); }
                        Command::Expire { entry } => { done.insert(entry.seq); }
                        _ => {}
                    }
                }
                prop_assert!(hard_in_a_row <= threshold, "more than {} hard failures in a row while closed", threshold);
                let s = core.stats();
                prop_assert_eq!(s.ready + s.scheduled + s.in_flight + done.len(), enqueued, "an entry vanished or doubled");
                prop_assert_eq!(core.breaker().state, state);
            }
            for (i, &t) in start_times.iter().enumerate() {
                let in_window = start_times[i..].iter().take_while(|&&u| u < t + period).count();
                prop_assert!(in_window <= rate as usize, "{} starts within {} ms of {}", in_window, period, t);
            }
        }
    }

    // ---- the window over a queue on disk ---------------------------------------------

    /// The store as the core sees it: its FIFO and scheduled entries, changed by the core's
    /// commands, and read by page.
    #[derive(Default, Clone)]
    struct Disk {
        fifo: BTreeMap<u64, QueueEntry>,
        due: BTreeMap<(Timestamp, u64), QueueEntry>,
        high_water: u64,
    }

    impl Disk {
        fn remove(&mut self, seq: u64, filed: Option<Timestamp>) {
            match filed {
                None => self.fifo.remove(&seq),
                Some(due) => self.due.remove(&(due, seq)),
            };
        }

        /// Applies one call's commands; the pages it asks for are read after them.
        fn apply(&mut self, cmds: &[Command], pages: &mut Vec<Input>) {
            for c in cmds {
                match c {
                    Command::Settle {
                        entry,
                        next,
                        was_due_at,
                        ..
                    } => {
                        self.remove(entry.seq, *was_due_at);
                        if let Next::RetryAt(at) = next {
                            self.due.insert((*at, entry.seq), entry.clone());
                        }
                    }
                    Command::Expire { entry } => self.remove(entry.seq, entry.due_at),
                    _ => {}
                }
            }
            for c in cmds {
                match c {
                    Command::LoadFifo { after, limit } => {
                        let entries: Vec<_> = self
                            .fifo
                            .range(after.map_or(0, |a| a + 1)..)
                            .take(*limit)
                            .map(|(_, e)| e.clone())
                            .collect();
                        pages.push(Input::FifoPage {
                            full: entries.len() >= *limit,
                            entries,
                            high_water: self.high_water,
                        });
                    }
                    Command::LoadDue { after, limit } => {
                        let entries: Vec<_> = self
                            .due
                            .iter()
                            .filter(|(k, _)| after.is_none_or(|a| **k > a))
                            .take(*limit)
                            .map(|(_, e)| e.clone())
                            .collect();
                        pages.push(Input::DuePage {
                            full: entries.len() >= *limit,
                            entries,
                            high_water: self.high_water,
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum WindowOp {
        Ingest(u8),
        /// Events under a delay rule: filed as scheduled from the start.
        IngestDelayed(u8),
        HandOver,
        /// The newest hand-over arrives first (two ingress tasks racing).
        HandOverNewest,
        /// The writer flushes: what the core changed so far survives a crash.
        Flush,
        Page(usize),
        Complete(usize, bool),
        Advance(u16),
        Restart,
    }

    fn window_op() -> impl Strategy<Value = WindowOp> {
        prop_oneof![
            3 => (1u8..8).prop_map(WindowOp::Ingest),
            1 => (1u8..4).prop_map(WindowOp::IngestDelayed),
            3 => Just(WindowOp::HandOver),
            1 => Just(WindowOp::HandOverNewest),
            2 => Just(WindowOp::Flush),
            2 => (0usize..3).prop_map(WindowOp::Page),
            4 => (0usize..8, proptest::bool::weighted(0.8)).prop_map(|(i, ok)| WindowOp::Complete(i, ok)),
            1 => (0u16..300).prop_map(WindowOp::Advance),
            1 => Just(WindowOp::Restart),
        ]
    }

    /// A core with a small window over a model store, and what it did.
    struct Sim {
        window: usize,
        max_conc: u32,
        disk: Disk,
        /// What survives a crash: accepted entries at once (ingress waits for the flush),
        /// the core's own changes only once flushed.
        durable: Disk,
        /// Entries whose settling a crash undid: they may rightly finish once more.
        undone: HashMap<u64, u32>,
        core: DestinationCore,
        now: Timestamp,
        pages: Vec<Input>,
        in_flight: Vec<u64>,
        finished: HashMap<u64, u32>,
        first_starts: Vec<u64>,
    }

    impl Sim {
        fn step(&mut self, input: Input) -> Result<(), TestCaseError> {
            let cmds = self.core.handle(input, self.now);
            self.disk.apply(&cmds, &mut self.pages);
            for c in &cmds {
                match c {
                    Command::Start {
                        entry,
                        attempt_number,
                        ..
                    } => {
                        self.in_flight.push(entry.seq);
                        if *attempt_number == 1 {
                            self.first_starts.push(entry.seq);
                        }
                    }
                    Command::Settle {
                        entry,
                        next: Next::Delivered | Next::DeadLettered,
                        ..
                    }
                    | Command::Expire { entry } => {
                        *self.finished.entry(entry.seq).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
            // The FIFO's window, as many scheduled entries, those of them that came due, and
            // the attempts in flight.
            let bound = 3 * self.window + self.max_conc as usize;
            prop_assert!(
                self.core.in_memory() <= bound,
                "{} entries in memory with a window of {}: ready {}, scheduled {}, in flight {}",
                self.core.in_memory(),
                self.window,
                self.core.ready.len(),
                self.core.waiting.len(),
                self.core.in_flight.len()
            );
            Ok(())
        }
    }

    /// Runs `ops`, then lets everything finish; checks memory stays bounded, first attempts
    /// keep acceptance order across refills, and every entry is delivered or dead-lettered
    /// exactly once, or once more for each crash that undid its settling (at least once).
    fn run_window(ops: Vec<WindowOp>, window: usize, max_conc: u32) -> Result<(), TestCaseError> {
        let config = CoreConfig {
            window,
            ..config(max_conc)
        };
        let mut sim = Sim {
            window,
            max_conc,
            disk: Disk::default(),
            durable: Disk::default(),
            undone: HashMap::new(),
            core: DestinationCore::new(config, BreakerSnapshot::default()),
            now: Timestamp(0),
            pages: Vec::new(),
            in_flight: Vec::new(),
            finished: HashMap::new(),
            first_starts: Vec::new(),
        };
        let mut hand_overs: std::collections::VecDeque<QueueEntry> = Default::default();
        let mut accepted = 0u64;
        // Hand-overs out of order, or delayed events, may rightly start out of order.
        let mut in_order = true;
        sim.step(Input::Wake)?;
        for op in ops {
            let input = match op {
                WindowOp::Ingest(n) => {
                    for _ in 0..n {
                        sim.disk.high_water += 1;
                        accepted += 1;
                        let e = entry(sim.disk.high_water, linear(1, 50));
                        sim.disk.fifo.insert(e.seq, e.clone());
                        sim.durable.fifo.insert(e.seq, e.clone());
                        sim.durable.high_water = sim.disk.high_water;
                        hand_overs.push_back(e);
                    }
                    continue;
                }
                WindowOp::IngestDelayed(n) => {
                    in_order = false;
                    for _ in 0..n {
                        sim.disk.high_water += 1;
                        accepted += 1;
                        let mut e = entry(sim.disk.high_water, linear(1, 50));
                        let due = sim.now.plus_ms(100);
                        e.due_at = Some(due);
                        sim.disk.due.insert((due, e.seq), e.clone());
                        sim.durable.due.insert((due, e.seq), e.clone());
                        sim.durable.high_water = sim.disk.high_water;
                        hand_overs.push_back(e);
                    }
                    continue;
                }
                WindowOp::HandOver => match hand_overs.pop_front() {
                    Some(e) => Input::Enqueue(vec![e]),
                    None => continue,
                },
                WindowOp::HandOverNewest => match hand_overs.pop_back() {
                    Some(e) => {
                        in_order = false;
                        Input::Enqueue(vec![e])
                    }
                    None => continue,
                },
                WindowOp::Page(i) if !sim.pages.is_empty() => {
                    let i = i % sim.pages.len();
                    sim.pages.remove(i)
                }
                WindowOp::Page(_) => continue,
                WindowOp::Complete(i, success) if !sim.in_flight.is_empty() => {
                    let i = i % sim.in_flight.len();
                    let seq = sim.in_flight.remove(i);
                    Input::Outcome {
                        seq,
                        result: if success { ok() } else { fail(500) },
                    }
                }
                WindowOp::Complete(..) => continue,
                WindowOp::Advance(ms) => {
                    sim.now = sim.now.plus_ms(u64::from(ms));
                    Input::Wake
                }
                WindowOp::Flush => {
                    sim.durable = sim.disk.clone();
                    continue;
                }
                WindowOp::Restart => {
                    // What was in memory is gone, and so are the core's unflushed changes.
                    let applied: std::collections::HashSet<u64> = sim
                        .disk
                        .fifo
                        .keys()
                        .copied()
                        .chain(sim.disk.due.keys().map(|&(_, s)| s))
                        .collect();
                    for seq in sim
                        .durable
                        .fifo
                        .keys()
                        .chain(sim.durable.due.keys().map(|(_, s)| s))
                    {
                        if !applied.contains(seq) && sim.finished.contains_key(seq) {
                            *sim.undone.entry(*seq).or_insert(0) += 1;
                        }
                    }
                    sim.disk = sim.durable.clone();
                    sim.core = DestinationCore::new(config, BreakerSnapshot::default());
                    hand_overs.clear();
                    sim.pages.clear();
                    sim.in_flight.clear();
                    sim.first_starts.clear();
                    Input::Wake
                }
            };
            sim.step(input)?;
            if in_order {
                let mut sorted = sim.first_starts.clone();
                sorted.sort_unstable();
                prop_assert_eq!(
                    &sim.first_starts,
                    &sorted,
                    "first attempts out of acceptance order"
                );
            }
        }
        // Let everything finish: hand-overs and pages arrive, attempts succeed, time passes.
        for _ in 0..100_000 {
            let input = if let Some(e) = hand_overs.pop_front() {
                Input::Enqueue(vec![e])
            } else if !sim.pages.is_empty() {
                sim.pages.remove(0)
            } else if let Some(seq) = sim.in_flight.pop() {
                Input::Outcome { seq, result: ok() }
            } else if sim.disk.fifo.is_empty() && sim.disk.due.is_empty() {
                break;
            } else {
                sim.now = sim.now.plus_ms(100);
                Input::Wake
            };
            sim.step(input)?;
        }
        prop_assert!(
            sim.disk.fifo.is_empty() && sim.disk.due.is_empty(),
            "entries stranded on disk"
        );
        prop_assert_eq!(
            sim.finished.len() as u64,
            accepted,
            "an entry never finished"
        );
        for (seq, &n) in &sim.finished {
            let undone = sim.undone.get(seq).copied().unwrap_or(0);
            prop_assert!(
                n >= 1 && n <= 1 + undone,
                "entry {} finished {} times, a crash undid {} of them",
                seq,
                n,
                undone
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::domain::fixtures::sim_config("destination"))]
        #[test]
        fn a_small_window_pages_any_backlog_in_order_and_loses_nothing(
            ops in proptest::collection::vec(window_op(), 1..200),
            window in 1usize..6,
            max_conc in 1u32..4,
        ) {
            run_window(ops, window, max_conc)?;
        }
    }

    #[test]
    fn a_background_count_accounts_for_retries_that_came_due_in_memory() {
        // After a restart: a page of 2 FIFO entries out of 10 on disk, and 3 retries filed
        // as scheduled that are already due (so they sit in the ready queue).
        let config = CoreConfig {
            window: 2,
            ..config(1)
        };
        let mut core = DestinationCore::new(config, BreakerSnapshot::default());
        core.handle(Input::EnginePaused(true), Timestamp(0));
        let fifo: Vec<_> = (1..=2).map(|s| entry(s, linear(0, 0))).collect();
        let due: Vec<_> = (20..=22)
            .map(|s| {
                let mut e = entry(s, linear(0, 0));
                e.due_at = Some(Timestamp(5));
                e
            })
            .collect();
        core.handle(
            Input::FifoPage {
                entries: fifo,
                full: true,
                high_water: 22,
            },
            Timestamp(10),
        );
        core.handle(
            Input::DuePage {
                entries: due,
                full: false,
                high_water: 22,
            },
            Timestamp(10),
        );
        core.handle(
            Input::Counted {
                fifo: 10,
                scheduled: 3,
            },
            Timestamp(10),
        );
        let s = core.stats();
        assert_eq!(
            s.ready + s.scheduled + s.in_flight,
            13,
            "every entry on disk counted once: {s:?}"
        );
    }

    #[test]
    fn a_backlog_many_windows_deep_is_paged_in_acceptance_order() {
        let ops: Vec<WindowOp> = std::iter::once(WindowOp::Ingest(200))
            .chain(std::iter::repeat_n(WindowOp::Page(0), 1))
            .chain((0..2_000).flat_map(|i| {
                [
                    WindowOp::Complete(0, i % 7 != 0),
                    WindowOp::Page(0),
                    WindowOp::Advance(10),
                ]
            }))
            .collect();
        run_window(ops, 8, 2).unwrap();
    }
}
