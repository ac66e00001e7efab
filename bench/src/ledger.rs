//! The ledger every run ends with, as a pure function:
//!
//! ```text
//! events accepted = delivered (unique event ids) + dead-lettered + still waiting at cutoff
//! ```
//!
//! Duplicates (an id delivered more than once, which at-least-once allows) are counted and
//! shown, never counted twice. A run is **void** when the ledger does not balance, when an id
//! was delivered that was never accepted, or when the same id was accepted twice.

use serde::Serialize;
use std::collections::HashSet;
use std::fmt;

/// What the system under test says is still waiting at cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "count")]
pub enum Waiting {
    /// Nothing can wait: the answer to the generator came after the receiver's (ceiling,
    /// forward). Counted as 0.
    NoQueue,
    /// Read from the system under test (the gateway's backlog gauges).
    Measured(u64),
    /// The system under test did not say. Counted as 0, so anything not delivered or
    /// dead-lettered makes the run void.
    Unknown,
}

impl Waiting {
    fn count(self) -> u64 {
        match self {
            Waiting::Measured(n) => n,
            Waiting::NoQueue | Waiting::Unknown => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    /// Unique event ids the generator was told were accepted.
    pub accepted: u64,
    /// Accepted ids the receiver saw at least once.
    pub delivered: u64,
    /// Accepted ids not delivered and listed as dead-lettered.
    pub dead_lettered: u64,
    /// Still waiting at cutoff (see [`Waiting`]).
    pub waiting: u64,
    pub waiting_source: Waiting,
    /// Deliveries beyond the first of an id (at-least-once redeliveries).
    pub duplicates: u64,
    /// Ids the receiver saw that were never accepted (void).
    pub unaccepted_delivered: u64,
    /// Ids the generator was given twice (void).
    pub duplicate_accepted_ids: u64,
    /// Ids both delivered and dead-lettered (shown, counted as delivered).
    pub dead_and_delivered: u64,
    /// accepted − delivered − dead-lettered − waiting: 0 when the ledger balances;
    /// positive means lost events, negative means the waiting count was too high.
    pub unaccounted: i64,
    pub balanced: bool,
    pub void_reasons: Vec<String>,
}

/// Computes the ledger.
///
/// - `accepted`: every event id the generator got back as accepted (ingress 200);
/// - `deliveries`: each id the receiver saw with how many times it saw it;
/// - `dead`: ids the system under test lists as dead-lettered;
/// - `waiting`: what it says is still waiting.
pub fn compute<'a>(
    accepted: impl IntoIterator<Item = &'a str>,
    deliveries: impl IntoIterator<Item = (&'a str, u64)>,
    dead: impl IntoIterator<Item = &'a str>,
    waiting: Waiting,
) -> Ledger {
    let mut acc: HashSet<&str> = HashSet::new();
    let mut duplicate_accepted_ids = 0;
    for id in accepted {
        if !acc.insert(id) {
            duplicate_accepted_ids += 1;
        }
    }
    let mut delivered_ids: HashSet<&str> = HashSet::new();
    let mut duplicates = 0;
    let mut unaccepted_delivered = 0;
    for (id, count) in deliveries {
        if count == 0 {
            continue;
        }
        duplicates += count - 1;
        if acc.contains(id) {
            delivered_ids.insert(id);
        } else {
            unaccepted_delivered += 1;
        }
    }
    let mut dead_lettered = 0;
    let mut dead_and_delivered = 0;
    let mut dead_seen: HashSet<&str> = HashSet::new();
    for id in dead {
        if !acc.contains(id) || !dead_seen.insert(id) {
            continue;
        }
        if delivered_ids.contains(id) {
            dead_and_delivered += 1;
        } else {
            dead_lettered += 1;
        }
    }
    let accepted = acc.len() as u64;
    let delivered = delivered_ids.len() as u64;
    let w = waiting.count();
    let unaccounted = accepted as i64 - delivered as i64 - dead_lettered as i64 - w as i64;

    let mut void_reasons = Vec::new();
    if unaccounted > 0 {
        let why = match waiting {
            Waiting::Unknown => " (the system under test reports no backlog)",
            _ => "",
        };
        void_reasons.push(format!(
            "{unaccounted} accepted event(s) neither delivered, dead-lettered nor waiting{why}"
        ));
    } else if unaccounted < 0 {
        void_reasons.push(format!(
            "{} more event(s) reported waiting than accepted and not yet delivered",
            -unaccounted
        ));
    }
    if unaccepted_delivered > 0 {
        void_reasons.push(format!(
            "{unaccepted_delivered} delivered event id(s) were never accepted"
        ));
    }
    if duplicate_accepted_ids > 0 {
        void_reasons.push(format!(
            "{duplicate_accepted_ids} event id(s) were accepted more than once"
        ));
    }
    Ledger {
        accepted,
        delivered,
        dead_lettered,
        waiting: w,
        waiting_source: waiting,
        duplicates,
        unaccepted_delivered,
        duplicate_accepted_ids,
        dead_and_delivered,
        unaccounted,
        balanced: void_reasons.is_empty(),
        void_reasons,
    }
}

impl Ledger {
    /// An empty, balanced ledger (a run that moves no events, e.g. W6).
    pub fn empty() -> Ledger {
        compute([], [], [], Waiting::NoQueue)
    }

    /// For runs that wait until everything is delivered (W10): an accepted event still
    /// waiting or dead-lettered at cutoff makes the run void too, `why` saying what the
    /// deadline was.
    pub fn require_all_delivered(&mut self, why: &str) {
        let missing = self.accepted.saturating_sub(self.delivered);
        if missing > 0 {
            self.void_reasons.push(format!(
                "{missing} accepted event(s) not delivered {why} ({} waiting, {} dead-lettered)",
                self.waiting, self.dead_lettered
            ));
            self.balanced = false;
        }
    }
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = match self.waiting_source {
            Waiting::NoQueue => "no queue",
            Waiting::Measured(_) => "gateway backlog gauges",
            Waiting::Unknown => "not reported",
        };
        write!(
            f,
            "accepted {} = delivered {} + dead-lettered {} + waiting {} ({src}); duplicates {}",
            self.accepted, self.delivered, self.dead_lettered, self.waiting, self.duplicates
        )?;
        if self.dead_and_delivered > 0 {
            write!(
                f,
                "; {} delivered then dead-lettered",
                self.dead_and_delivered
            )?;
        }
        if self.balanced {
            write!(f, " — balanced")
        } else {
            write!(f, " — VOID: {}", self.void_reasons.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("evt_{i}")).collect()
    }

    #[test]
    fn all_delivered_balances() {
        let acc = ids(5);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            acc.iter().map(|s| (s.as_str(), 1)),
            [],
            Waiting::NoQueue,
        );
        assert!(l.balanced, "{l}");
        assert_eq!((l.accepted, l.delivered, l.unaccounted), (5, 5, 0));
    }

    #[test]
    fn one_lost_event_is_void() {
        let acc = ids(5);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            acc[1..].iter().map(|s| (s.as_str(), 1)),
            [],
            Waiting::NoQueue,
        );
        assert!(!l.balanced);
        assert_eq!(l.unaccounted, 1);
        assert!(l.to_string().contains("VOID"), "{l}");
    }

    #[test]
    fn waiting_and_dead_close_the_gap() {
        let acc = ids(10);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            acc[..6].iter().map(|s| (s.as_str(), 1)),
            [acc[6].as_str(), acc[7].as_str()],
            Waiting::Measured(2),
        );
        assert!(l.balanced, "{l}");
        assert_eq!((l.delivered, l.dead_lettered, l.waiting), (6, 2, 2));
    }

    #[test]
    fn too_much_waiting_is_void() {
        let acc = ids(3);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            acc.iter().map(|s| (s.as_str(), 1)),
            [],
            Waiting::Measured(1),
        );
        assert!(!l.balanced);
        assert_eq!(l.unaccounted, -1);
    }

    #[test]
    fn duplicates_are_counted_not_void() {
        let acc = ids(3);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            [("evt_0", 3), ("evt_1", 1), ("evt_2", 2)],
            [],
            Waiting::Measured(0),
        );
        assert!(l.balanced, "{l}");
        assert_eq!((l.delivered, l.duplicates), (3, 3));
    }

    #[test]
    fn delivered_but_never_accepted_is_void() {
        let acc = ids(2);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            [("evt_0", 1), ("evt_1", 1), ("evt_x", 1)],
            [],
            Waiting::NoQueue,
        );
        assert!(!l.balanced);
        assert_eq!(l.unaccepted_delivered, 1);
    }

    #[test]
    fn accepted_twice_is_void() {
        let l = compute(["evt_0", "evt_0"], [("evt_0", 1)], [], Waiting::NoQueue);
        assert!(!l.balanced);
        assert_eq!((l.accepted, l.duplicate_accepted_ids), (1, 1));
    }

    #[test]
    fn unknown_waiting_only_balances_when_everything_is_accounted_for() {
        let acc = ids(2);
        let ok = compute(
            acc.iter().map(|s| s.as_str()),
            acc.iter().map(|s| (s.as_str(), 1)),
            [],
            Waiting::Unknown,
        );
        assert!(ok.balanced);
        let lost = compute(
            acc.iter().map(|s| s.as_str()),
            [("evt_0", 1)],
            [],
            Waiting::Unknown,
        );
        assert!(!lost.balanced);
        assert!(lost.void_reasons[0].contains("reports no backlog"));
    }

    #[test]
    fn dead_and_delivered_counts_once() {
        let acc = ids(2);
        let l = compute(
            acc.iter().map(|s| s.as_str()),
            acc.iter().map(|s| (s.as_str(), 1)),
            ["evt_0", "evt_0", "evt_unknown"],
            Waiting::Measured(0),
        );
        assert!(l.balanced, "{l}");
        assert_eq!((l.dead_lettered, l.dead_and_delivered), (0, 1));
    }

    #[test]
    fn requiring_every_delivery_voids_a_balanced_backlog() {
        let acc = ids(4);
        let mut l = compute(
            acc.iter().map(|s| s.as_str()),
            acc[..2].iter().map(|s| (s.as_str(), 1)),
            [acc[2].as_str()],
            Waiting::Measured(1),
        );
        assert!(l.balanced, "{l}");
        l.require_all_delivered("within 60 s");
        assert!(!l.balanced);
        assert!(l.to_string().contains(
            "VOID: 2 accepted event(s) not delivered within 60 s (1 waiting, 1 dead-lettered)"
        ));
        let mut ok = compute(
            acc.iter().map(|s| s.as_str()),
            acc.iter().map(|s| (s.as_str(), 2)),
            [],
            Waiting::Measured(0),
        );
        ok.require_all_delivered("within 60 s");
        assert!(ok.balanced, "{ok}");
    }

    #[test]
    fn empty_ledger_balances() {
        assert!(Ledger::empty().balanced);
    }
}
