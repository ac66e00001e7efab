//! FastHook: a self-hosted webhook gateway. Providers post to sources; connections route
//! each request to destinations; one actor per destination delivers at least once, from a
//! durable sled store.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod server;
pub mod store;
pub mod telemetry;
