//! fasthook-bench: the benchmark harness of FastHook.
//!
//! One process is both the load generator and the receiver, so an event's send time and its
//! arrival are read off one clock. It compares, in one invocation and alternating, the
//! machine's HTTP ceiling, a no-storage relay, and the real `fasthook` gateway with and
//! without durable flushes; every run ends with a ledger that must balance.

pub mod bare;
pub mod child;
pub mod cli;
pub mod clock;
pub mod gateway;
pub mod generator;
pub mod httpc;
pub mod ledger;
pub mod metrics_text;
pub mod procfs;
pub mod receiver;
pub mod relay;
pub mod report;
pub mod runner;
pub mod stats;
pub mod workloads;
