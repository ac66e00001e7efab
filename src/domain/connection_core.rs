//! The decisions of one connection, free of IO: whether a routed request becomes an event,
//! whether that event is delivered now, later (delay rule) or held (paused), and the drain
//! that releases held events once the connection is active again.

use super::models::{Connection, EventStatus};
use super::rate_limiter::{RateLimit, RateLimiter};
use super::time::Timestamp;

/// What routing does with one request for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No event: the connection or its destination is disabled, or the filter did not match.
    Skip,
    /// An event is created with this status; `due_at` is set for `SCHEDULED`.
    Event {
        status: EventStatus,
        due_at: Option<Timestamp>,
    },
}

/// Held entries released per step of a drain without a rate: one store commit each.
pub const DRAIN_BATCH: usize = 256;

/// What a drain does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStep {
    /// Release up to this many held entries (the oldest) now.
    Release(usize),
    /// Nothing may be released before this time (the drain rate).
    WaitUntil(Timestamp),
}

/// The release of a connection's held events after it becomes active again, in the order
/// they were accepted: as fast as the store commits them, or at most `drain_rate` per
/// period, one entry at a time, so the destination sees the backlog arrive no faster.
#[derive(Debug, Clone)]
pub struct Drain {
    rate: Option<RateLimit>,
    limiter: RateLimiter,
}

impl Drain {
    pub fn new(rate: Option<RateLimit>) -> Self {
        Drain {
            rate,
            limiter: RateLimiter::new(rate),
        }
    }

    pub fn rate(&self) -> Option<RateLimit> {
        self.rate
    }

    /// A new rate for the drain under way, measured from its last release: asking again
    /// (a repeated unpause) never lets an extra release through.
    pub fn set_rate(&mut self, rate: Option<RateLimit>) {
        self.rate = rate;
        self.limiter.set_limit(rate);
    }

    /// The next step at `now`. A `Release` under a rate has taken its slot.
    pub fn next_step(&mut self, now: Timestamp) -> DrainStep {
        if self.rate.is_none() {
            return DrainStep::Release(DRAIN_BATCH);
        }
        if self.limiter.try_acquire(now) {
            DrainStep::Release(1)
        } else {
            DrainStep::WaitUntil(self.limiter.next_allowed_at(now))
        }
    }
}

/// The state a connection actor owns: what the connection looks like now, and its drain.
#[derive(Debug, Clone)]
pub struct ConnectionCore {
    pub connection: Connection,
    drain: Option<Drain>,
}

impl ConnectionCore {
    pub fn new(connection: Connection) -> Self {
        ConnectionCore {
            connection,
            drain: None,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.connection.paused_at.is_some()
    }

    /// Neither paused nor disabled: its events are delivered, and its held ones released.
    pub fn is_active(&self) -> bool {
        self.connection.paused_at.is_none() && self.connection.disabled_at.is_none()
    }

    /// The connection changed, or held work was found for it (`release`). An active
    /// connection drains when asked to, or when it just became active; `drain_rate`, when
    /// given, replaces the rate of a drain under way. A connection that is paused or
    /// disabled again stops its drain: what is still held stays `HOLD`.
    pub fn reconfigure(
        &mut self,
        connection: Connection,
        release: bool,
        drain_rate: Option<RateLimit>,
    ) {
        let was_active = self.is_active();
        self.connection = connection;
        if !self.is_active() {
            self.drain = None;
        } else if drain_rate.is_some() {
            match &mut self.drain {
                Some(drain) => drain.set_rate(drain_rate),
                None => self.drain = Some(Drain::new(drain_rate)),
            }
        } else if self.drain.is_none() && (release || !was_active) {
            self.drain = Some(Drain::new(None));
        }
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// The rate of the drain under way, if it has one.
    pub fn drain_rate(&self) -> Option<RateLimit> {
        self.drain.as_ref().and_then(Drain::rate)
    }

    /// The drain's next step at `now`; `None` when not draining.
    pub fn drain_step(&mut self, now: Timestamp) -> Option<DrainStep> {
        self.drain.as_mut().map(|d| d.next_step(now))
    }

    /// Nothing was left to release: the drain is over.
    pub fn drain_finished(&mut self) {
        self.drain = None;
    }

    /// Routes one request. `body` is the parsed JSON body when there is one.
    pub fn route(
        &self,
        destination_disabled: bool,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
        now: Timestamp,
    ) -> Route {
        route(&self.connection, destination_disabled, body, headers, now)
    }
}

/// The routing decision for one connection, as a free function so ingress can apply it to
/// the registry's copy of the connection without cloning it.
pub fn route(
    c: &Connection,
    destination_disabled: bool,
    body: Option<&serde_json::Value>,
    headers: &[(String, String)],
    now: Timestamp,
) -> Route {
    {
        if c.disabled_at.is_some() || destination_disabled {
            return Route::Skip;
        }
        if let Some(filter) = &c.rules.filter {
            if !filter.matches(body, headers) {
                return Route::Skip;
            }
        }
        if c.paused_at.is_some() {
            return Route::Event {
                status: EventStatus::Hold,
                due_at: None,
            };
        }
        match c.rules.delay_ms {
            Some(delay) if delay > 0 => Route::Event {
                status: EventStatus::Scheduled,
                due_at: Some(now.plus_ms(delay)),
            },
            _ => Route::Event {
                status: EventStatus::Queued,
                due_at: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::*;
    use crate::domain::rules::{Filter, JsonValue, Rules};
    use serde_json::json;

    fn connection() -> Connection {
        Connection {
            id: ConnectionId::new(),
            team_id: TeamId::new(),
            name: "c".into(),
            source_id: SourceId::new(),
            destination_id: DestinationId::new(),
            rules: Rules::default(),
            paused_at: None,
            disabled_at: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn active_connections_queue_and_delay_rules_schedule() {
        let mut core = ConnectionCore::new(connection());
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Queued,
                due_at: None
            }
        );
        core.connection.rules.delay_ms = Some(5_000);
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Scheduled,
                due_at: Some(Timestamp(5_010))
            }
        );
    }

    fn paused(mut c: Connection) -> Connection {
        c.paused_at = Some(Timestamp(1));
        c
    }

    #[test]
    fn unpausing_drains_pausing_again_stops_and_disabled_holds() {
        let c = connection();
        let mut core = ConnectionCore::new(paused(c.clone()));
        assert!(!core.is_draining());
        assert_eq!(core.drain_step(Timestamp(0)), None);
        core.reconfigure(c.clone(), false, None);
        assert!(core.is_draining(), "becoming active releases what is held");
        assert_eq!(
            core.drain_step(Timestamp(0)),
            Some(DrainStep::Release(DRAIN_BATCH))
        );
        core.reconfigure(paused(c.clone()), false, None);
        assert!(!core.is_draining(), "pausing again stops the release");
        let mut disabled = c.clone();
        disabled.disabled_at = Some(Timestamp(2));
        core.reconfigure(disabled.clone(), true, None);
        assert!(
            !core.is_draining(),
            "a disabled connection keeps its events held"
        );
        core.reconfigure(c.clone(), false, None);
        assert!(core.is_draining(), "enabling releases them");
        core.drain_finished();
        core.reconfigure(c.clone(), false, None);
        assert!(
            !core.is_draining(),
            "an edit of an active connection starts nothing"
        );
        core.reconfigure(c, true, None);
        assert!(core.is_draining(), "held work found at boot is released");
    }

    #[test]
    fn a_drain_rate_releases_one_entry_per_interval_and_can_be_set_mid_drain() {
        let rate = RateLimit {
            rate: 50,
            period_ms: 1_000,
        };
        let mut core = ConnectionCore::new(paused(connection()));
        core.reconfigure(connection(), false, Some(rate));
        assert_eq!(core.drain_rate(), Some(rate));
        let mut released = Vec::new();
        for ms in 0..2_000 {
            match core.drain_step(Timestamp(ms)) {
                Some(DrainStep::Release(n)) => {
                    assert_eq!(n, 1);
                    released.push(ms);
                }
                Some(DrainStep::WaitUntil(at)) => assert!(at > Timestamp(ms)),
                None => panic!("the drain stopped"),
            }
        }
        assert_eq!(released.len(), 100, "50 per second over two seconds");
        assert!(released.windows(2).all(|w| w[1] - w[0] >= 20));
        // A plain unpause of the draining connection keeps its rate; a new rate replaces it.
        core.reconfigure(connection(), false, None);
        assert_eq!(core.drain_rate(), Some(rate));
        core.reconfigure(
            connection(),
            false,
            Some(RateLimit {
                rate: 1,
                period_ms: 1_000,
            }),
        );
        assert_eq!(core.drain_rate().map(|r| r.rate), Some(1));
    }

    #[test]
    fn paused_holds_disabled_skips_filter_gates() {
        let mut core = ConnectionCore::new(connection());
        core.connection.paused_at = Some(Timestamp(1));
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Hold,
                due_at: None
            }
        );
        assert_eq!(
            core.route(true, None, &[], Timestamp(10)),
            Route::Skip,
            "disabled destination"
        );
        core.connection.disabled_at = Some(Timestamp(2));
        assert_eq!(core.route(false, None, &[], Timestamp(10)), Route::Skip);
        let mut core = ConnectionCore::new(connection());
        core.connection.rules.filter = Some(Filter {
            body: Some(JsonValue(json!({"type": "a"}))),
            headers: None,
        });
        assert_eq!(
            core.route(false, Some(&json!({"type": "b"})), &[], Timestamp(0)),
            Route::Skip
        );
        assert!(matches!(
            core.route(false, Some(&json!({"type": "a"})), &[], Timestamp(0)),
            Route::Event { .. }
        ));
    }

    #[test]
    fn asking_again_for_a_drain_rate_never_lets_an_extra_release_through() {
        let c = connection();
        let mut core = ConnectionCore::new(paused(c.clone()));
        let one_per_second = Some(RateLimit {
            rate: 1,
            period_ms: 1_000,
        });
        core.reconfigure(c.clone(), false, one_per_second);
        assert_eq!(core.drain_step(Timestamp(0)), Some(DrainStep::Release(1)));
        // The operator clicks Unpause again, with the same rate, then a slower one.
        core.reconfigure(c.clone(), false, one_per_second);
        assert_eq!(
            core.drain_step(Timestamp(10)),
            Some(DrainStep::WaitUntil(Timestamp(1_000)))
        );
        let one_per_two_seconds = Some(RateLimit {
            rate: 1,
            period_ms: 2_000,
        });
        core.reconfigure(c, false, one_per_two_seconds);
        assert_eq!(
            core.drain_step(Timestamp(1_000)),
            Some(DrainStep::WaitUntil(Timestamp(2_000)))
        );
        assert_eq!(
            core.drain_step(Timestamp(2_000)),
            Some(DrainStep::Release(1))
        );
    }

    /// R2 for the connection: the core inside a model of its actor and the store. The store
    /// part (the connection's state, its held entries in acceptance order, the drain rate an
    /// unpause asked for, what was handed to the destination) survives a crash; the core and
    /// its drain do not, and a restart resumes the drain the way recovery does.
    mod simulation {
        use super::*;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Debug, Clone)]
        enum Op {
            Ingest(u8),
            Pause,
            Unpause(Option<u32>),
            Disable,
            Enable,
            /// The drain's timer or its last commit came back: the actor takes a step.
            Step,
            Advance(u16),
            Crash,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (1u8..5).prop_map(Op::Ingest),
                1 => Just(Op::Pause),
                1 => proptest::option::of(1u32..5).prop_map(Op::Unpause),
                1 => Just(Op::Disable),
                1 => Just(Op::Enable),
                5 => Just(Op::Step),
                2 => (1u16..2_000).prop_map(Op::Advance),
                1 => Just(Op::Crash),
            ]
        }

        /// What the store holds.
        struct Durable {
            connection: Connection,
            held: VecDeque<u64>,
            drain_rate: Option<RateLimit>,
            /// Handed to the destination's queue, by the route (new events) or a release.
            delivered: Vec<u64>,
            released: Vec<u64>,
        }

        struct World {
            durable: Durable,
            core: ConnectionCore,
            now: Timestamp,
            next_seq: u64,
            accepted: Vec<u64>,
            /// Release times of the drain under way, for its rate.
            drain_releases: Vec<Timestamp>,
        }

        impl World {
            /// The connection is saved (as `Engine::save_connection` does) and the actor told.
            fn save(&mut self, connection: Connection, drain_rate: Option<RateLimit>) {
                let active = connection.paused_at.is_none() && connection.disabled_at.is_none();
                if !active || drain_rate.is_some() {
                    self.durable.drain_rate = drain_rate.filter(|_| active);
                }
                self.durable.connection = connection.clone();
                let (was_draining, before) = (self.core.is_draining(), self.core.drain_rate());
                self.core.reconfigure(connection, false, drain_rate);
                if !was_draining || !self.core.is_draining() {
                    self.drain_releases.clear();
                } else if self.core.drain_rate() != before {
                    // A new rate counts from the drain's last release.
                    let last = self.drain_releases.pop();
                    self.drain_releases = last.into_iter().collect();
                }
            }

            fn restart(&mut self) {
                self.core = ConnectionCore::new(self.durable.connection.clone());
                self.drain_releases.clear();
                if self.core.is_active() && !self.durable.held.is_empty() {
                    let (connection, rate) =
                        (self.durable.connection.clone(), self.durable.drain_rate);
                    self.core.reconfigure(connection, true, rate);
                }
            }

            fn step(&mut self) -> Result<(), TestCaseError> {
                match self.core.drain_step(self.now) {
                    None => {}
                    Some(DrainStep::WaitUntil(at)) => {
                        prop_assert!(at > self.now, "a wait that is already over")
                    }
                    Some(DrainStep::Release(n)) => {
                        prop_assert!(self.core.is_active(), "a release while not active");
                        if self.durable.held.is_empty() {
                            self.core.drain_finished();
                            if self.core.is_active() {
                                self.durable.drain_rate = None;
                            }
                        }
                        for _ in 0..n {
                            let Some(seq) = self.durable.held.pop_front() else {
                                break;
                            };
                            self.durable.released.push(seq);
                            self.durable.delivered.push(seq);
                            self.drain_releases.push(self.now);
                        }
                    }
                }
                Ok(())
            }

            fn check_rate(&self) -> Result<(), TestCaseError> {
                let Some(rate) = self.core.drain_rate() else {
                    return Ok(());
                };
                for (i, t) in self.drain_releases.iter().enumerate() {
                    let in_period = self.drain_releases[i..]
                        .iter()
                        .take_while(|u| u.0 < t.0 + rate.period_ms)
                        .count();
                    prop_assert!(
                        in_period <= rate.rate as usize,
                        "{in_period} releases within {} ms under a drain rate of {}",
                        rate.period_ms,
                        rate.rate
                    );
                }
                Ok(())
            }
        }

        fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
            let start = connection();
            let mut w = World {
                durable: Durable {
                    connection: start.clone(),
                    held: VecDeque::new(),
                    drain_rate: None,
                    delivered: Vec::new(),
                    released: Vec::new(),
                },
                core: ConnectionCore::new(start),
                now: Timestamp(1_000),
                next_seq: 1,
                accepted: Vec::new(),
                drain_releases: Vec::new(),
            };
            let per_second = |rate| RateLimit {
                rate,
                period_ms: 1_000,
            };
            for op in ops {
                let mut c = w.durable.connection.clone();
                match op {
                    Op::Ingest(n) => {
                        for _ in 0..n {
                            match w.core.route(false, None, &[], w.now) {
                                Route::Skip => prop_assert!(c.disabled_at.is_some()),
                                Route::Event { status, .. } => {
                                    let seq = w.next_seq;
                                    w.next_seq += 1;
                                    w.accepted.push(seq);
                                    if status == EventStatus::Hold {
                                        prop_assert!(c.paused_at.is_some());
                                        w.durable.held.push_back(seq);
                                    } else {
                                        prop_assert!(w.core.is_active());
                                        w.durable.delivered.push(seq);
                                    }
                                }
                            }
                        }
                    }
                    Op::Pause => {
                        if c.disabled_at.is_none() && c.paused_at.is_none() {
                            c.paused_at = Some(w.now);
                            w.save(c, None);
                        }
                    }
                    Op::Unpause(rate) => {
                        c.paused_at = None;
                        w.save(c, rate.map(per_second));
                    }
                    Op::Disable => {
                        c.disabled_at = Some(w.now);
                        c.paused_at = None;
                        w.save(c, None);
                    }
                    Op::Enable => {
                        c.disabled_at = None;
                        w.save(c, None);
                    }
                    Op::Step => w.step()?,
                    Op::Advance(ms) => w.now = w.now.plus_ms(u64::from(ms)),
                    Op::Crash => w.restart(),
                }
                w.check_rate()?;
                // Nothing lost, nothing twice: every accepted entry is held or delivered once.
                let mut seen: Vec<u64> = w
                    .durable
                    .held
                    .iter()
                    .chain(&w.durable.delivered)
                    .copied()
                    .collect();
                seen.sort_unstable();
                prop_assert_eq!(&seen, &w.accepted);
                // Held entries leave in the order they were accepted.
                prop_assert!(w.durable.released.windows(2).all(|p| p[0] < p[1]));
            }

            // Liveness: made active and given time, the connection releases everything held.
            let mut c = w.durable.connection.clone();
            c.paused_at = None;
            c.disabled_at = None;
            w.save(c, None);
            for _ in 0..w.accepted.len() + 2 {
                w.now = w.now.plus_ms(1_000);
                w.step()?;
            }
            prop_assert!(
                w.durable.held.is_empty(),
                "{} still held",
                w.durable.held.len()
            );
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::domain::fixtures::sim_config("connection"))]
            #[test]
            fn held_work_is_released_in_order_at_its_rate_and_survives_crashes(
                ops in proptest::collection::vec(op(), 1..120),
            ) {
                run(ops)?;
            }
        }
    }
}
