//! Plain data and pure logic: no IO, no actix, no sled. Time comes in as an argument.

pub mod address_policy;
pub mod alerts;
pub mod breaker;
pub mod bulk_retry;
pub mod connection_core;
pub mod dedupe;
pub mod destination_core;
pub mod event_filter;
pub mod event_metrics;
#[cfg(test)]
pub mod fixtures;
pub mod ids;
pub mod issues;
pub mod models;
pub mod paging;
pub mod rate_limiter;
pub mod retention;
pub mod rules;
pub mod time;
pub mod verify;

pub use ids::*;
pub use models::*;
pub use time::Timestamp;
