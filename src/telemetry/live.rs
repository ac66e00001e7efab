//! The backlog and circuit gauges, rendered from live state at each scrape.
//!
//! These series describe objects that come and go, and with per-id labels off many objects
//! share one series. A gauge in the metrics recorder can do neither: it cannot be removed
//! once a destination is deleted, and a shared one would hold whichever actor set it last.
//! So each destination actor writes its numbers to its own `DestinationGauges` (atomics, no
//! lock on the delivery path), the store's writer keeps the held and failed counts
//! (`store::Tally`), and a scrape writes the lines from both: one per live object, or one
//! sum labelled `all`. Nothing here scans the store.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::domain::breaker::CircuitState;
use crate::domain::{ConnectionId, DestinationId};
use crate::store::Counts;

use super::{
    ALL, CIRCUIT_FAILURES, CIRCUIT_STATE, EVENTS_FAILED, EVENTS_HOLD, EVENTS_QUEUED,
    EVENTS_SCHEDULED, ISSUES_OPEN,
};

/// One destination's live numbers, written by its actor.
#[derive(Debug, Default)]
pub struct DestinationGauges {
    queued: AtomicU64,
    scheduled: AtomicU64,
    circuit: AtomicU8,
    failures: AtomicU64,
}

const STATES: [CircuitState; 3] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
];

impl DestinationGauges {
    /// Events `QUEUED` (waiting or in flight) and `SCHEDULED` for a retry.
    pub fn set_backlog(&self, queued: usize, scheduled: usize) {
        self.queued.store(queued as u64, Relaxed);
        self.scheduled.store(scheduled as u64, Relaxed);
    }

    pub fn set_circuit(&self, state: CircuitState) {
        let index = STATES.iter().position(|&s| s == state).unwrap_or(0);
        self.circuit.store(index as u8, Relaxed);
    }

    pub fn set_failures(&self, consecutive: u32) {
        self.failures.store(u64::from(consecutive), Relaxed);
    }

    fn circuit(&self) -> CircuitState {
        STATES[usize::from(self.circuit.load(Relaxed)).min(STATES.len() - 1)]
    }
}

/// Every live destination's gauges.
#[derive(Debug, Default)]
pub struct Board {
    destinations: Mutex<HashMap<DestinationId, Arc<DestinationGauges>>>,
}

impl Board {
    /// The gauges of `id` (the same ones if its actor starts again).
    pub fn register(&self, id: &DestinationId) -> Arc<DestinationGauges> {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    /// A deleted destination: its series go.
    pub fn remove(&self, id: &DestinationId) {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    /// Appends the backlog and circuit series in the Prometheus text format: the held and
    /// failed counts of `connections` (the live ones; `tally` may name deleted ones) and every
    /// registered destination's numbers.
    pub fn render(
        &self,
        connections: &[ConnectionId],
        tally: &HashMap<ConnectionId, Counts>,
        per_id_labels: bool,
        out: &mut String,
    ) {
        let per_connection: Vec<(&str, Counts)> = connections
            .iter()
            .map(|c| (c.as_str(), tally.get(c).copied().unwrap_or_default()))
            .collect();
        let destinations: Vec<(DestinationId, Arc<DestinationGauges>)> = {
            let map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(id, g)| (id.clone(), g.clone())).collect()
        };
        let per_destination: Vec<(&str, &DestinationGauges)> = destinations
            .iter()
            .map(|(id, g)| (id.as_str(), g.as_ref()))
            .collect();
        let mut series = Series { out, per_id_labels };
        series.gauge(
            EVENTS_HOLD,
            "Events held (HOLD) by a paused or disabled connection.",
            "connection_id",
            &per_connection,
            |n| n.hold,
        );
        series.gauge(
            EVENTS_FAILED,
            "Events that failed for good (FAILED, dead-lettered), by connection.",
            "connection_id",
            &per_connection,
            |n| n.failed,
        );
        series.gauge(
            EVENTS_QUEUED,
            "Events QUEUED at a destination: waiting for their turn or in flight.",
            "destination_id",
            &per_destination,
            |g| g.queued.load(Relaxed),
        );
        series.gauge(
            EVENTS_SCHEDULED,
            "Events SCHEDULED at a destination for a later retry.",
            "destination_id",
            &per_destination,
            |g| g.scheduled.load(Relaxed),
        );
        series.gauge(
            CIRCUIT_FAILURES,
            "Consecutive failed attempts counted by a destination's circuit breaker.",
            "destination_id",
            &per_destination,
            |g| g.failures.load(Relaxed),
        );
        series.circuit_state(&per_destination);
    }
}

/// `fasthook_issues_open`: issues opened or acknowledged now.
pub fn render_issues_open(open: u64, out: &mut String) {
    let mut series = Series {
        out,
        per_id_labels: false,
    };
    series.header(
        ISSUES_OPEN,
        "Issues opened or acknowledged, not yet resolved or dismissed.",
    );
    let _ = writeln!(series.out, "{ISSUES_OPEN} {open}");
}

/// Lines of one scrape.
struct Series<'a> {
    out: &'a mut String,
    per_id_labels: bool,
}

impl Series<'_> {
    fn header(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
    }

    /// One line per object, or their sum labelled `all`.
    fn gauge<T>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        objects: &[(&str, T)],
        value: impl Fn(&T) -> u64,
    ) {
        self.header(name, help);
        if self.per_id_labels {
            for (id, object) in objects {
                let _ = writeln!(self.out, "{name}{{{label}=\"{id}\"}} {}", value(object));
            }
        } else {
            let sum: u64 = objects.iter().map(|(_, o)| value(o)).sum();
            let _ = writeln!(self.out, "{name}{{{label}=\"{ALL}\"}} {sum}");
        }
    }

    /// 1 for each destination's current state and 0 for the others; with per-id labels off,
    /// how many destinations are in each state.
    fn circuit_state(&mut self, destinations: &[(&str, &DestinationGauges)]) {
        self.header(
            CIRCUIT_STATE,
            "A destination's circuit breaker state: 1 for the current one (without per-id labels, how many destinations are in it).",
        );
        if self.per_id_labels {
            for (id, g) in destinations {
                let now = g.circuit();
                for s in STATES {
                    let v = u8::from(s == now);
                    let _ = writeln!(
                        self.out,
                        "{CIRCUIT_STATE}{{destination_id=\"{id}\",state=\"{}\"}} {v}",
                        s.as_str()
                    );
                }
            }
        } else {
            for s in STATES {
                let n = destinations
                    .iter()
                    .filter(|(_, g)| g.circuit() == s)
                    .count();
                let _ = writeln!(
                    self.out,
                    "{CIRCUIT_STATE}{{destination_id=\"{ALL}\",state=\"{}\"}} {n}",
                    s.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(
        board: &Board,
        connections: &[ConnectionId],
        tally: &[(ConnectionId, Counts)],
        per_id: bool,
    ) -> String {
        let tally: HashMap<ConnectionId, Counts> = tally.iter().cloned().collect();
        let mut out = String::new();
        board.render(connections, &tally, per_id, &mut out);
        out
    }

    #[test]
    fn each_live_object_has_its_series_and_without_per_id_labels_they_sum() {
        let board = Board::default();
        let (d1, d2) = (DestinationId::new(), DestinationId::new());
        let g1 = board.register(&d1);
        g1.set_backlog(5, 2);
        g1.set_circuit(CircuitState::Open);
        g1.set_failures(7);
        board.register(&d2).set_backlog(1, 0);
        let (c1, c2, deleted) = (
            ConnectionId::new(),
            ConnectionId::new(),
            ConnectionId::new(),
        );
        let counts = |hold, failed| Counts { hold, failed };
        let tally = [(c1.clone(), counts(3, 1)), (deleted.clone(), counts(9, 9))];
        let live = [c1.clone(), c2.clone()];

        let out = scrape(&board, &live, &tally, true);
        assert!(
            out.contains(&format!("{EVENTS_HOLD}{{connection_id=\"{c1}\"}} 3\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{EVENTS_HOLD}{{connection_id=\"{c2}\"}} 0\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{EVENTS_FAILED}{{connection_id=\"{c1}\"}} 1\n")),
            "{out}"
        );
        assert!(
            !out.contains(deleted.as_str()),
            "a deleted connection has no series: {out}"
        );
        assert!(
            out.contains(&format!("{EVENTS_QUEUED}{{destination_id=\"{d1}\"}} 5\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{EVENTS_SCHEDULED}{{destination_id=\"{d1}\"}} 2\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_FAILURES}{{destination_id=\"{d1}\"}} 7\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_STATE}{{destination_id=\"{d1}\",state=\"open\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_STATE}{{destination_id=\"{d1}\",state=\"closed\"}} 0\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_STATE}{{destination_id=\"{d2}\",state=\"closed\"}} 1\n"
            )),
            "{out}"
        );

        let out = scrape(&board, &live, &tally, false);
        assert!(
            out.contains(&format!("{EVENTS_HOLD}{{connection_id=\"all\"}} 3\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{EVENTS_QUEUED}{{destination_id=\"all\"}} 6\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_STATE}{{destination_id=\"all\",state=\"open\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{CIRCUIT_STATE}{{destination_id=\"all\",state=\"closed\"}} 1\n"
            )),
            "{out}"
        );
        assert!(!out.contains(d1.as_str()), "{out}");

        board.remove(&d1);
        let out = scrape(&board, &live, &tally, true);
        assert!(
            !out.contains(d1.as_str()),
            "a deleted destination has no series: {out}"
        );
    }
}
