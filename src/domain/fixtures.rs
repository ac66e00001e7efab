//! Records for unit tests, built the same way everywhere.

use super::destination_core::QueueEntry;
use super::rules::RetryPolicy;
use super::*;

/// A queued event of `team`, never attempted, created at time 1.
pub fn event(team: &TeamId) -> Event {
    let now = Timestamp(1);
    Event {
        id: EventId::new(),
        team_id: team.clone(),
        connection_id: ConnectionId::new(),
        source_id: SourceId::new(),
        destination_id: DestinationId::new(),
        request_id: RequestId::new(),
        status: EventStatus::Queued,
        attempts: 0,
        next_attempt_at: None,
        last_attempt_at: None,
        response_status: None,
        error_code: None,
        dead_lettered_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// A never-attempted queue entry at position `seq`, accepted at time 0.
pub fn queue_entry(seq: u64, retry: RetryPolicy) -> QueueEntry {
    QueueEntry {
        seq,
        event_id: EventId::new(),
        request_id: RequestId::new(),
        connection_id: ConnectionId::new(),
        attempts: 0,
        next_trigger: Trigger::Initial,
        due_at: None,
        retry,
        created_at: Timestamp(0),
    }
}

/// R2's seeded simulations: `FASTHOOK_SIM_CASES` runs (1,000 by default), from
/// `FASTHOOK_SIM_SEED` (random, and printed, by default): a failure names the seed that
/// replays it exactly, and proptest prints the smallest input that fails.
pub fn sim_config(what: &str) -> proptest::test_runner::Config {
    let cases = std::env::var("FASTHOOK_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let seed = std::env::var("FASTHOOK_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{what} simulation: {cases} cases, FASTHOOK_SIM_SEED={seed}");
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..proptest::test_runner::Config::default()
    }
}
