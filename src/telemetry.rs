//! Logging and metrics. Every metric name is a constant here so dashboards and code agree.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const EVENTS_HOLD: &str = "fasthook_events_hold";
pub const EVENTS_QUEUED: &str = "fasthook_events_queued";
pub const EVENTS_FAILED: &str = "fasthook_events_failed";
pub const EVENTS_DELIVERED_TOTAL: &str = "fasthook_events_delivered_total";
pub const DELIVERY_ATTEMPTS_TOTAL: &str = "fasthook_delivery_attempts_total";
pub const INGRESS_REQUESTS_TOTAL: &str = "fasthook_ingress_requests_total";
pub const DELIVERY_DURATION_SECONDS: &str = "fasthook_delivery_duration_seconds";
pub const CIRCUIT_STATE: &str = "fasthook_circuit_state";
pub const CIRCUIT_FAILURES: &str = "fasthook_circuit_failures";
pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "fasthook_circuit_transitions_total";
pub const ENGINE_PAUSED: &str = "fasthook_engine_paused";
pub const STORE_COMMITS_TOTAL: &str = "fasthook_store_commits_total";
pub const STORE_FLUSHES_TOTAL: &str = "fasthook_store_flushes_total";
pub const STORE_WRITES_TOTAL: &str = "fasthook_store_writes_total";

/// The label value used instead of an id when per-id labels are switched off.
pub const ALL: &str = "all";

/// Installs the tracing subscriber (stderr) with the given filter.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the Prometheus recorder; `/metrics` renders through the handle.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(DELIVERY_DURATION_SECONDS.to_string()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .ok()?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    // Histogram samples pile up until they are folded into buckets, which rendering does;
    // without a scraper they would grow without bound, so fold them on a timer too.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("fasthook-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
    Some(handle)
}

const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
