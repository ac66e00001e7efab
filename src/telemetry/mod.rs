//! Logging and metrics. Every metric name is a constant here so dashboards and code agree;
//! `describe` gives each its help text and unit. The backlog and circuit gauges are drawn
//! from live state at each scrape (`live`); the rest live in the metrics recorder.

pub mod live;

use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use live::{Board, DestinationGauges};

pub const EVENTS_HOLD: &str = "fasthook_events_hold";
pub const EVENTS_QUEUED: &str = "fasthook_events_queued";
pub const EVENTS_SCHEDULED: &str = "fasthook_events_scheduled";
pub const EVENTS_FAILED: &str = "fasthook_events_failed";
pub const EVENTS_DELIVERED_TOTAL: &str = "fasthook_events_delivered_total";
pub const DELIVERY_ATTEMPTS_TOTAL: &str = "fasthook_delivery_attempts_total";
pub const DELIVERY_ERRORS_TOTAL: &str = "fasthook_delivery_errors_total";
pub const INGRESS_REQUESTS_TOTAL: &str = "fasthook_ingress_requests_total";
pub const DELIVERY_DURATION_SECONDS: &str = "fasthook_delivery_duration_seconds";
pub const CIRCUIT_STATE: &str = "fasthook_circuit_state";
pub const CIRCUIT_FAILURES: &str = "fasthook_circuit_failures";
pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "fasthook_circuit_transitions_total";
pub const ENGINE_PAUSED: &str = "fasthook_engine_paused";
pub const ISSUES_OPEN: &str = "fasthook_issues_open";
pub const STORE_COMMITS_TOTAL: &str = "fasthook_store_commits_total";
pub const STORE_FLUSHES_TOTAL: &str = "fasthook_store_flushes_total";
pub const STORE_WRITES_TOTAL: &str = "fasthook_store_writes_total";
pub const STORE_QUEUED_BYTES: &str = "fasthook_store_queued_bytes";

/// Every series `/metrics` exports, by name (a histogram adds `_bucket`, `_sum`, `_count`).
pub const ALL_METRICS: &[&str] = &[
    EVENTS_HOLD,
    EVENTS_QUEUED,
    EVENTS_SCHEDULED,
    EVENTS_FAILED,
    EVENTS_DELIVERED_TOTAL,
    DELIVERY_ATTEMPTS_TOTAL,
    DELIVERY_ERRORS_TOTAL,
    INGRESS_REQUESTS_TOTAL,
    DELIVERY_DURATION_SECONDS,
    CIRCUIT_STATE,
    CIRCUIT_FAILURES,
    CIRCUIT_TRANSITIONS_TOTAL,
    ENGINE_PAUSED,
    ISSUES_OPEN,
    STORE_COMMITS_TOTAL,
    STORE_FLUSHES_TOTAL,
    STORE_WRITES_TOTAL,
    STORE_QUEUED_BYTES,
];

/// The label value used instead of an id when per-id labels are switched off.
pub const ALL: &str = "all";

/// Installs the tracing subscriber (stderr) with the given filter, as text or JSON lines.
///
/// The spans of the delivery path (`ingress`, `attempt`) are at debug level: under the
/// default `info` filter they cost one level check per event; `FASTHOOK_LOG=fasthook=debug`
/// turns them on, and every line inside one then carries its ids.
pub fn init_logging(filter: &str, format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Bucket bounds of the attempt latency histogram, in seconds: from a receiver on the same
/// host (1 ms) to the longest timeout an attempt may have (60 s).
pub const DELIVERY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus recorder; `/metrics` renders through the handle.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(DELIVERY_DURATION_SECONDS.to_string()),
            &DELIVERY_BUCKETS,
        )
        .ok()?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
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

/// Help text and unit of every series the recorder holds.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_DELIVERED_TOTAL,
        Unit::Count,
        "Events delivered (a 2xx answer), by connection and destination."
    );
    describe_counter!(
        DELIVERY_ATTEMPTS_TOTAL,
        Unit::Count,
        "Delivery attempts by destination, trigger and outcome (success or failure)."
    );
    describe_counter!(
        DELIVERY_ERRORS_TOTAL,
        Unit::Count,
        "Failed attempts by destination and code: HTTP_<status> of the receiver's answer, or why there was none (TIMEOUT, CONNECTION_REFUSED, ...)."
    );
    describe_counter!(
        INGRESS_REQUESTS_TOTAL,
        Unit::Count,
        "Requests received at source URLs, by source and outcome."
    );
    describe_histogram!(
        DELIVERY_DURATION_SECONDS,
        Unit::Seconds,
        "Time from sending an attempt to its answer (or its failure), by destination."
    );
    describe_counter!(
        CIRCUIT_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit breaker state changes, by destination and the state entered."
    );
    describe_gauge!(
        ENGINE_PAUSED,
        "1 while the whole engine is paused (nothing is delivered), else 0."
    );
    describe_counter!(
        STORE_COMMITS_TOTAL,
        Unit::Count,
        "Groups of changes the store's writer applied."
    );
    describe_counter!(
        STORE_FLUSHES_TOTAL,
        Unit::Count,
        "Times the store's writer made its changes durable."
    );
    describe_counter!(
        STORE_WRITES_TOTAL,
        Unit::Count,
        "Change messages the store's writer received."
    );
    describe_gauge!(
        STORE_QUEUED_BYTES,
        Unit::Bytes,
        "Bytes of changes waiting for the store's writer; past 64 MiB ingress waits (503 after 10 s)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `expr` and variable query in a dashboard, and every datasource uid it names.
    fn walk(v: &Value, exprs: &mut Vec<String>, uids: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) | ("definition", Value::String(e)) => {
                            exprs.push(e.clone())
                        }
                        ("datasource", Value::Object(ds)) => {
                            if let Some(uid) = ds.get("uid").and_then(Value::as_str) {
                                uids.push(uid.to_string());
                            }
                        }
                        _ => walk(v, exprs, uids),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, exprs, uids)),
            _ => {}
        }
    }

    /// The `fasthook_*` names in a PromQL expression.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(at) = rest.find("fasthook_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    }

    fn exported(name: &str) -> bool {
        ALL_METRICS.contains(&name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(DELIVERY_DURATION_SECONDS))
    }

    #[test]
    fn every_dashboard_query_names_only_exported_metrics_through_the_datasource_variable() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
        let mut dashboards = 0;
        for entry in std::fs::read_dir(&dir).expect("dashboards/") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            dashboards += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let dashboard: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let (mut exprs, mut uids) = (Vec::new(), Vec::new());
            walk(&dashboard, &mut exprs, &mut uids);
            assert!(!exprs.is_empty(), "{}: no queries", path.display());
            for expr in &exprs {
                let names = metric_names(expr);
                assert!(
                    !names.is_empty(),
                    "{}: `{expr}` names no metric",
                    path.display()
                );
                for name in names {
                    assert!(exported(&name), "{}: `{expr}` names {name}", path.display());
                }
            }
            assert!(
                uids.iter().all(|u| u == "${datasource}"),
                "{}: a hard-coded datasource uid: {uids:?}",
                path.display()
            );
            let variables = dashboard["templating"]["list"].as_array().unwrap();
            assert!(
                variables
                    .iter()
                    .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
                "{}: no Prometheus datasource variable",
                path.display()
            );
        }
        assert!(
            dashboards >= 2,
            "the overview and the destination drill-down"
        );
    }

    #[test]
    fn metric_names_are_found_in_promql() {
        assert_eq!(
            metric_names("sum by (le) (rate(fasthook_delivery_duration_seconds_bucket{a=\"b\"}[5m])) / fasthook_events_hold"),
            ["fasthook_delivery_duration_seconds_bucket", "fasthook_events_hold"]
        );
        assert!(exported("fasthook_delivery_duration_seconds_count"));
        assert!(!exported("fasthook_events_held"));
    }
}
