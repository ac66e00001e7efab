//! The circuit breaker of one destination, free of IO: whether an attempt may start now, and
//! how each outcome moves the breaker between closed, open and half-open. The owner feeds it
//! the time and the outcomes, persists its snapshot with every transition it returns, and
//! wakes at `wake_at` to call `tick`.
//!
//! Invariants (checked by the property test below):
//! - an ordinary attempt starts only while closed;
//! - at most one probe is in flight, and only while half-open;
//! - while closed, `failure_count < failure_threshold` (for an unchanged config);
//! - while open, `next_probe_at` is the moment it last opened plus the cooldown;
//! - every state change comes back as a `Transition`, and nothing else does.

use serde::{Deserialize, Serialize};

use super::destination_core::AttemptResult;
use super::models::{CircuitConfig, DeliveryError};
use super::time::Timestamp;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive hard failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker waits before it lets a probe out.
    pub cooldown_ms: u64,
    /// Successful probes, one after another, that close a half-open breaker.
    pub success_threshold: u32,
}

impl BreakerConfig {
    // The API rejects 0 for either threshold; here 0 acts as 1 so that a breaker can neither
    // open without a failure nor close without a probe.
    fn failures_to_open(&self) -> u32 {
        self.failure_threshold.max(1)
    }

    fn successes_to_close(&self) -> u32 {
        self.success_threshold.max(1)
    }
}

impl From<CircuitConfig> for BreakerConfig {
    fn from(c: CircuitConfig) -> Self {
        BreakerConfig {
            failure_threshold: c.failure_threshold,
            cooldown_ms: c.cooldown_seconds.saturating_mul(1_000),
            success_threshold: c.success_threshold,
        }
    }
}

/// What is persisted (bincode via serde) with each transition; a restart rebuilds the breaker
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BreakerSnapshot {
    pub state: CircuitState,
    /// Consecutive hard failures while closed; 0 in the other states.
    pub failure_count: u32,
    pub last_transition_at: Option<Timestamp>,
    /// When it last opened; kept while half-open, cleared when it closes.
    pub opened_at: Option<Timestamp>,
    /// When the cooldown ends; set only while open.
    pub next_probe_at: Option<Timestamp>,
    /// Successful probes since it went half-open.
    pub probe_successes: u32,
}

/// How an attempt's result counts for the breaker (see `classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptClass {
    Success,
    /// The receiver is unreachable or unhealthy: counts towards opening.
    HardFailure,
    /// The receiver answered but refused this event: neither counts nor clears the count.
    SoftFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: start as usual.
    Normal,
    /// Half-open: this attempt is the one probe; report it with `probe = true`.
    Probe,
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    snapshot: BreakerSnapshot,
    /// Not persisted: after a restart nothing is in flight, so the probe is made again.
    probe_in_flight: bool,
}

impl Breaker {
    /// A snapshot in half-open comes back with no probe in flight (the probe in flight at a
    /// crash is made again).
    pub fn new(config: BreakerConfig, mut snapshot: BreakerSnapshot) -> Self {
        if snapshot.state == CircuitState::Open && snapshot.next_probe_at.is_none() {
            // An open breaker without a probe time would never wake: end its cooldown as if
            // counted from when it opened, or at once when that is unknown too.
            let from_open = snapshot.opened_at.map(|t| t.plus_ms(config.cooldown_ms));
            snapshot.next_probe_at = Some(from_open.unwrap_or(Timestamp(0)));
        }
        Breaker {
            config,
            snapshot,
            probe_in_flight: false,
        }
    }

    /// Takes effect without touching the state: the thresholds are read at the next failure
    /// or probe, the cooldown at the next open (a running cooldown keeps its end).
    pub fn configure(&mut self, config: BreakerConfig) {
        self.config = config;
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        self.snapshot
    }

    pub fn state(&self) -> CircuitState {
        self.snapshot.state
    }

    pub fn probe_in_flight(&self) -> bool {
        self.probe_in_flight
    }

    /// Moves open -> half_open when the cooldown has passed (returns that transition).
    pub fn tick(&mut self, now: Timestamp) -> Option<Transition> {
        let cooled_down = self.snapshot.next_probe_at.is_some_and(|at| now >= at);
        if self.snapshot.state != CircuitState::Open || !cooled_down {
            return None;
        }
        self.snapshot.next_probe_at = None;
        self.snapshot.probe_successes = 0;
        Some(self.move_to(CircuitState::HalfOpen, now))
    }

    /// May an attempt start now? Closed -> Normal; HalfOpen with no probe out -> Probe (and
    /// marks the probe in flight); otherwise Denied. Does not transition by itself (call tick
    /// first).
    pub fn permit(&mut self) -> Permit {
        match self.snapshot.state {
            CircuitState::Closed => Permit::Normal,
            CircuitState::HalfOpen if !self.probe_in_flight => {
                self.probe_in_flight = true;
                Permit::Probe
            }
            _ => Permit::Denied,
        }
    }

    /// The result of an attempt; `probe` says whether it was the one `permit` returned Probe
    /// for. A probe outcome the breaker no longer waits for (a `reset` came first) counts as
    /// an ordinary attempt's.
    pub fn record(
        &mut self,
        probe: bool,
        class: AttemptClass,
        now: Timestamp,
    ) -> Option<Transition> {
        if probe && self.probe_in_flight {
            self.probe_in_flight = false;
            return match class {
                AttemptClass::HardFailure => Some(self.open(now)),
                // A 4xx to the probe still proves the receiver is reachable and serving, which
                // is all the breaker guards; the event's own refusal is left to its retries.
                AttemptClass::Success | AttemptClass::SoftFailure => {
                    self.snapshot.probe_successes += 1;
                    let enough = self.snapshot.probe_successes >= self.config.successes_to_close();
                    enough.then(|| self.close(now))
                }
            };
        }
        if self.snapshot.state != CircuitState::Closed {
            // An attempt already in flight when the breaker opened: its outcome says nothing
            // the probe will not, and must not close the breaker behind the probe's back.
            return None;
        }
        match class {
            AttemptClass::Success => {
                self.snapshot.failure_count = 0;
                None
            }
            AttemptClass::SoftFailure => None,
            AttemptClass::HardFailure => {
                self.snapshot.failure_count = self.snapshot.failure_count.saturating_add(1);
                let enough = self.snapshot.failure_count >= self.config.failures_to_open();
                enough.then(|| self.open(now))
            }
        }
    }

    /// A manual operator reset: closed now, counter zeroed, probe forgotten. None if it was
    /// already closed (the counter is still zeroed).
    pub fn reset(&mut self, now: Timestamp) -> Option<Transition> {
        if self.snapshot.state == CircuitState::Closed {
            self.snapshot.failure_count = 0;
            return None;
        }
        Some(self.close(now))
    }

    /// When the owner must wake to let the probe out: next_probe_at while open, else None.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.snapshot
            .next_probe_at
            .filter(|_| self.snapshot.state == CircuitState::Open)
    }

    fn open(&mut self, now: Timestamp) -> Transition {
        self.snapshot.failure_count = 0;
        self.snapshot.probe_successes = 0;
        self.snapshot.opened_at = Some(now);
        self.snapshot.next_probe_at = Some(now.plus_ms(self.config.cooldown_ms));
        self.probe_in_flight = false;
        self.move_to(CircuitState::Open, now)
    }

    fn close(&mut self, now: Timestamp) -> Transition {
        self.snapshot.failure_count = 0;
        self.snapshot.probe_successes = 0;
        self.snapshot.opened_at = None;
        self.snapshot.next_probe_at = None;
        self.probe_in_flight = false;
        self.move_to(CircuitState::Closed, now)
    }

    fn move_to(&mut self, to: CircuitState, now: Timestamp) -> Transition {
        let from = self.snapshot.state;
        self.snapshot.state = to;
        self.snapshot.last_transition_at = Some(now);
        Transition { from, to, at: now }
    }
}

/// How an attempt's result counts for the breaker. A 4xx other than 408/429 judges the event
/// (bad payload, auth, gone), not the receiver's health, so it is soft. Everything else that
/// is not a clean 2xx is hard: any error (timeout, connection, DNS, TLS), no status, 5xx, 408,
/// 429, and also 1xx/3xx, since a URL that answers those accepts no delivery at all.
pub fn classify(result: &AttemptResult) -> AttemptClass {
    if result.is_success() {
        return AttemptClass::Success;
    }
    match (result.error, result.response_status) {
        // The gateway refused the address, or could not read the body: says nothing about
        // the receiver's health.
        (Some(DeliveryError::BlockedAddress | DeliveryError::BodyUnavailable), _) => {
            AttemptClass::SoftFailure
        }
        (None, Some(status)) if (400..500).contains(&status) && status != 408 && status != 429 => {
            AttemptClass::SoftFailure
        }
        _ => AttemptClass::HardFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use AttemptClass::{HardFailure, SoftFailure, Success};
    use CircuitState::{Closed, HalfOpen, Open};

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn config(failure_threshold: u32, cooldown_ms: u64, success_threshold: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            cooldown_ms,
            success_threshold,
        }
    }

    fn breaker(failure_threshold: u32, cooldown_ms: u64, success_threshold: u32) -> Breaker {
        Breaker::new(
            config(failure_threshold, cooldown_ms, success_threshold),
            BreakerSnapshot::default(),
        )
    }

    fn transition(from: CircuitState, to: CircuitState, at: u64) -> Option<Transition> {
        Some(Transition {
            from,
            to,
            at: t(at),
        })
    }

    /// Ordinary hard failures at `at` until the breaker opens.
    fn trip(b: &mut Breaker, at: u64) {
        while b.state() == Closed {
            assert_eq!(b.permit(), Permit::Normal);
            b.record(false, HardFailure, t(at));
        }
    }

    /// An open breaker with a probe in flight at `at`.
    fn probing(b: &mut Breaker, at: u64) {
        assert_eq!(b.tick(t(at)), transition(Open, HalfOpen, at));
        assert_eq!(b.permit(), Permit::Probe);
    }

    #[test]
    fn the_threshold_of_consecutive_hard_failures_opens_it() {
        let mut b = breaker(3, 1_000, 1);
        assert_eq!(b.record(false, HardFailure, t(10)), None);
        assert_eq!(b.record(false, HardFailure, t(20)), None);
        assert_eq!(b.snapshot().failure_count, 2);
        assert_eq!(b.state(), Closed);
        assert_eq!(
            b.record(false, HardFailure, t(30)),
            transition(Closed, Open, 30)
        );
        let s = b.snapshot();
        assert_eq!(s.opened_at, Some(t(30)));
        assert_eq!(s.next_probe_at, Some(t(1_030)));
        assert_eq!(s.last_transition_at, Some(t(30)));
        assert_eq!(s.failure_count, 0);
        assert_eq!(b.permit(), Permit::Denied);
    }

    #[test]
    fn soft_failures_neither_count_nor_clear_the_count() {
        let mut b = breaker(2, 1_000, 1);
        b.record(false, HardFailure, t(1));
        for _ in 0..10 {
            assert_eq!(b.record(false, SoftFailure, t(2)), None);
        }
        assert_eq!(b.snapshot().failure_count, 1);
        assert_eq!(
            b.record(false, HardFailure, t(3)),
            transition(Closed, Open, 3)
        );
    }

    #[test]
    fn a_success_zeroes_the_count() {
        let mut b = breaker(3, 1_000, 1);
        b.record(false, HardFailure, t(1));
        b.record(false, HardFailure, t(2));
        b.record(false, Success, t(3));
        assert_eq!(b.snapshot().failure_count, 0);
        b.record(false, HardFailure, t(4));
        b.record(false, HardFailure, t(5));
        assert_eq!(b.state(), Closed, "the success broke the run of failures");
    }

    #[test]
    fn nothing_starts_while_open_and_the_cooldown_ends_exactly_on_time() {
        let mut b = breaker(1, 500, 1);
        trip(&mut b, 100);
        assert_eq!(b.tick(t(599)), None);
        assert_eq!(b.permit(), Permit::Denied);
        assert_eq!(b.tick(t(600)), transition(Open, HalfOpen, 600));
        assert_eq!(b.snapshot().next_probe_at, None);
        assert_eq!(b.snapshot().opened_at, Some(t(100)));
        assert_eq!(b.tick(t(700)), None, "already half-open");
    }

    #[test]
    fn exactly_one_probe_per_half_open() {
        let mut b = breaker(1, 500, 1);
        trip(&mut b, 0);
        probing(&mut b, 500);
        assert!(b.probe_in_flight());
        assert_eq!(b.permit(), Permit::Denied);
        assert_eq!(b.permit(), Permit::Denied);
        assert_eq!(
            b.record(true, Success, t(510)),
            transition(HalfOpen, Closed, 510)
        );
        assert!(!b.probe_in_flight());
        assert_eq!(b.permit(), Permit::Normal);
        let s = b.snapshot();
        assert_eq!((s.opened_at, s.next_probe_at), (None, None));
    }

    #[test]
    fn a_failed_probe_reopens_and_restarts_the_cooldown_from_the_failure() {
        let mut b = breaker(1, 500, 1);
        trip(&mut b, 0);
        probing(&mut b, 800);
        assert_eq!(
            b.record(true, HardFailure, t(900)),
            transition(HalfOpen, Open, 900)
        );
        assert!(!b.probe_in_flight());
        assert_eq!(b.snapshot().opened_at, Some(t(900)));
        assert_eq!(b.wake_at(), Some(t(1_400)));
        assert_eq!(b.tick(t(1_399)), None);
        assert_eq!(b.tick(t(1_400)), transition(Open, HalfOpen, 1_400));
    }

    #[test]
    fn a_soft_failed_probe_counts_as_the_receiver_answering() {
        let mut b = breaker(1, 500, 1);
        trip(&mut b, 0);
        probing(&mut b, 500);
        assert_eq!(
            b.record(true, SoftFailure, t(520)),
            transition(HalfOpen, Closed, 520)
        );
    }

    #[test]
    fn a_success_threshold_of_two_needs_two_probes_one_after_the_other() {
        let mut b = breaker(1, 500, 2);
        trip(&mut b, 0);
        probing(&mut b, 500);
        assert_eq!(b.record(true, Success, t(510)), None);
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(b.snapshot().probe_successes, 1);
        assert_eq!(b.permit(), Permit::Probe, "a second probe, only now");
        assert_eq!(b.permit(), Permit::Denied);
        assert_eq!(
            b.record(true, Success, t(520)),
            transition(HalfOpen, Closed, 520)
        );
        assert_eq!(b.snapshot().probe_successes, 0);

        // A failure between the two successes starts over.
        trip(&mut b, 1_000);
        probing(&mut b, 1_500);
        b.record(true, Success, t(1_510));
        b.permit();
        b.record(true, HardFailure, t(1_520));
        probing(&mut b, 2_020);
        assert_eq!(b.snapshot().probe_successes, 0);
        assert_eq!(b.record(true, Success, t(2_030)), None);
    }

    #[test]
    fn stale_ordinary_outcomes_while_open_or_half_open_change_nothing() {
        let mut b = breaker(1, 500, 1);
        trip(&mut b, 0);
        let open = b.snapshot();
        for class in [Success, SoftFailure, HardFailure] {
            assert_eq!(b.record(false, class, t(100)), None);
            assert_eq!(b.snapshot(), open);
        }
        probing(&mut b, 500);
        let half_open = b.snapshot();
        for class in [Success, SoftFailure, HardFailure] {
            assert_eq!(b.record(false, class, t(600)), None);
            assert_eq!(b.snapshot(), half_open);
            assert!(b.probe_in_flight(), "the probe is still the one out");
        }
    }

    #[test]
    fn reset_closes_from_every_state() {
        let mut b = breaker(3, 500, 1);
        b.record(false, HardFailure, t(1));
        assert_eq!(b.reset(t(2)), None, "already closed");
        assert_eq!(b.snapshot().failure_count, 0);

        let mut b = breaker(1, 500, 1);
        trip(&mut b, 0);
        assert_eq!(b.reset(t(10)), transition(Open, Closed, 10));
        assert_eq!(b.wake_at(), None);
        assert_eq!(b.permit(), Permit::Normal);

        trip(&mut b, 20);
        probing(&mut b, 520);
        assert_eq!(b.reset(t(530)), transition(HalfOpen, Closed, 530));
        assert!(!b.probe_in_flight());
        let s = b.snapshot();
        assert_eq!(
            s,
            BreakerSnapshot {
                state: Closed,
                failure_count: 0,
                last_transition_at: Some(t(530)),
                opened_at: None,
                next_probe_at: None,
                probe_successes: 0,
            }
        );
        // The forgotten probe comes back: an ordinary closed outcome now.
        assert_eq!(
            b.record(true, HardFailure, t(540)),
            transition(Closed, Open, 540)
        );
    }

    #[test]
    fn configure_keeps_the_state() {
        let mut b = breaker(5, 1_000, 1);
        for at in 1..=3 {
            b.record(false, HardFailure, t(at));
        }
        b.configure(config(2, 1_000, 1));
        assert_eq!(
            b.state(),
            Closed,
            "a lower threshold waits for the next failure"
        );
        assert_eq!(b.snapshot().failure_count, 3);
        assert_eq!(
            b.record(false, HardFailure, t(4)),
            transition(Closed, Open, 4)
        );

        b.configure(config(2, 50, 1));
        assert_eq!(
            b.wake_at(),
            Some(t(1_004)),
            "a running cooldown keeps its end"
        );
        probing(&mut b, 1_004);
        b.record(true, HardFailure, t(1_010));
        assert_eq!(
            b.wake_at(),
            Some(t(1_060)),
            "the new cooldown at the next open"
        );
    }

    #[test]
    fn a_snapshot_rebuilds_the_same_breaker() {
        let cfg = config(2, 500, 2);
        let mut b = Breaker::new(cfg, BreakerSnapshot::default());
        b.record(false, HardFailure, t(1));
        let bytes = bincode::serialize(&b.snapshot()).unwrap();
        let mut again = Breaker::new(cfg, bincode::deserialize(&bytes).unwrap());
        assert_eq!(again.snapshot(), b.snapshot());
        assert_eq!(
            again.record(false, HardFailure, t(2)),
            b.record(false, HardFailure, t(2))
        );
        assert_eq!(again.wake_at(), Some(t(502)));

        let mut again = Breaker::new(cfg, b.snapshot());
        assert_eq!(again.tick(t(502)), b.tick(t(502)));
        assert_eq!(b.permit(), Permit::Probe);
        b.record(true, Success, t(510));
        b.permit();
        // A crash with the second probe in flight: the rebuilt breaker sends a fresh one and
        // still remembers the first success.
        let mut again = Breaker::new(cfg, b.snapshot());
        assert_eq!(again.state(), HalfOpen);
        assert!(!again.probe_in_flight());
        assert_eq!(again.permit(), Permit::Probe);
        assert_eq!(
            again.record(true, Success, t(600)),
            transition(HalfOpen, Closed, 600)
        );
    }

    #[test]
    fn an_open_snapshot_without_a_probe_time_still_wakes() {
        let lost = BreakerSnapshot {
            state: Open,
            opened_at: Some(t(100)),
            ..BreakerSnapshot::default()
        };
        assert_eq!(Breaker::new(config(1, 50, 1), lost).wake_at(), Some(t(150)));
        let unknown = BreakerSnapshot {
            state: Open,
            ..BreakerSnapshot::default()
        };
        assert_eq!(
            Breaker::new(config(1, 50, 1), unknown).wake_at(),
            Some(t(0))
        );
    }

    #[test]
    fn wake_at_is_the_probe_time_only_while_open() {
        let mut b = breaker(1, 300, 1);
        assert_eq!(b.wake_at(), None);
        trip(&mut b, 7);
        assert_eq!(b.wake_at(), Some(t(307)));
        b.tick(t(307));
        assert_eq!(b.wake_at(), None);
    }

    #[test]
    fn states_read_as_the_api_spells_them() {
        assert_eq!(Closed.as_str(), "closed");
        assert_eq!(Open.as_str(), "open");
        assert_eq!(HalfOpen.as_str(), "half_open");
        assert_eq!(serde_json::to_string(&HalfOpen).unwrap(), "\"half_open\"");
        let from_api = BreakerConfig::from(CircuitConfig::default());
        assert_eq!(from_api, config(5, 60_000, 1));
    }

    #[test]
    fn classify_separates_the_receivers_health_from_the_events_refusal() {
        let result = |status: Option<u16>, error: Option<DeliveryError>| AttemptResult {
            response_status: status,
            error,
            retry_after_ms: None,
            duration_ms: 1,
        };
        for s in [200, 201, 204, 299] {
            assert_eq!(classify(&result(Some(s), None)), Success, "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 499] {
            assert_eq!(classify(&result(Some(s), None)), SoftFailure, "{s}");
        }
        for s in [100, 301, 304, 408, 429, 500, 502, 503, 504, 600] {
            assert_eq!(classify(&result(Some(s), None)), HardFailure, "{s}");
        }
        assert_eq!(classify(&result(None, None)), HardFailure);
        assert_eq!(
            classify(&result(None, Some(DeliveryError::Timeout))),
            HardFailure
        );
        assert_eq!(
            classify(&result(Some(200), Some(DeliveryError::BadResponse))),
            HardFailure
        );
        assert_eq!(
            classify(&result(Some(404), Some(DeliveryError::ConnectionReset))),
            HardFailure
        );
        assert_eq!(
            classify(&result(None, Some(DeliveryError::BlockedAddress))),
            SoftFailure
        );
        assert_eq!(
            classify(&result(None, Some(DeliveryError::BodyUnavailable))),
            SoftFailure
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u16),
        Permit,
        /// The outcome of the outstanding attempt at this index (modulo their number).
        Record(usize, AttemptClass),
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        let class = prop_oneof![Just(Success), Just(HardFailure), Just(SoftFailure)];
        prop_oneof![
            (0u16..400).prop_map(Op::Advance),
            Just(Op::Permit),
            (0usize..8, class).prop_map(|(i, c)| Op::Record(i, c)),
            Just(Op::Reset),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_sequence(
            ops in proptest::collection::vec(op(), 1..200),
            failure_threshold in 1u32..5,
            cooldown_ms in 1u64..500,
            success_threshold in 1u32..4,
        ) {
            let cfg = config(failure_threshold, cooldown_ms, success_threshold);
            let mut b = Breaker::new(cfg, BreakerSnapshot::default());
            let mut now = t(0);
            // Attempts the owner has out, each marked whether it is the probe.
            let mut outstanding: Vec<bool> = Vec::new();
            let mut last_opened = None;
            for op in ops {
                let before = b.state();
                let change = match op {
                    Op::Advance(ms) => {
                        now = now.plus_ms(u64::from(ms));
                        b.tick(now)
                    }
                    Op::Permit => {
                        match b.permit() {
                            Permit::Normal => {
                                prop_assert_eq!(before, Closed, "an ordinary start while not closed");
                                outstanding.push(false);
                            }
                            Permit::Probe => {
                                prop_assert_eq!(before, HalfOpen);
                                prop_assert!(!outstanding.contains(&true), "a second probe");
                                outstanding.push(true);
                            }
                            Permit::Denied => prop_assert_ne!(before, Closed),
                        }
                        None
                    }
                    Op::Record(i, class) if !outstanding.is_empty() => {
                        let probe = outstanding.remove(i % outstanding.len());
                        b.record(probe, class, now)
                    }
                    Op::Record(..) => continue,
                    Op::Reset => {
                        // The owner forgets which attempt was the probe, as the breaker does.
                        outstanding.iter_mut().for_each(|p| *p = false);
                        b.reset(now)
                    }
                };
                match change {
                    Some(tr) => {
                        prop_assert_ne!(tr.from, tr.to);
                        prop_assert_eq!(tr.from, before);
                        prop_assert_eq!(tr.to, b.state());
                        prop_assert_eq!(tr.at, now);
                        if tr.to == Open {
                            last_opened = Some(now);
                        }
                    }
                    None => prop_assert_eq!(b.state(), before, "a state change without a transition"),
                }
                let s = b.snapshot();
                prop_assert_eq!(b.probe_in_flight(), outstanding.contains(&true));
                match s.state {
                    Closed => prop_assert!(s.failure_count < failure_threshold),
                    Open => {
                        prop_assert_eq!(s.opened_at, last_opened);
                        prop_assert_eq!(s.next_probe_at, last_opened.map(|o| o.plus_ms(cooldown_ms)));
                        prop_assert!(!b.probe_in_flight());
                    }
                    HalfOpen => prop_assert!(s.probe_successes < success_threshold),
                }
            }
        }
    }
}
