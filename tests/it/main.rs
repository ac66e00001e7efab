//! FastHook integration tests: one binary, the real `fasthook serve` process, a real receiver.

mod alerts;
mod auth;
mod backlog;
mod bad_input;
mod bootstrap;
mod breaker;
mod bulk_retry;
mod cli;
mod common;
mod config_reference;
mod container;
mod crash;
mod delivery;
mod engine_pause;
mod issues;
mod logs;
mod manual_retry;
mod metrics;
mod pause;
mod queries;
mod quickstart;
mod retry;
mod routing;
mod shutdown;
mod signatures;
mod stranding;
