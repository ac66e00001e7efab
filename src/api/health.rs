//! Liveness, readiness and the Prometheus scrape.

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::Engine;
use crate::telemetry;

/// The process's health, as `/healthz` and `/readyz` answer it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthOut {
    /// `ok` (`/healthz`); `ready`, `recovering` or `storage_unavailable` (`/readyz`).
    status: &'static str,
}

/// 200 once the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "The process is up", body = HealthOut)))]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthOut { status: "ok" })
}

/// 200 only once recovery has finished and every destination actor runs.
/// 200 only once crash recovery has finished and every destination actor runs, and while the
/// store can write (503 on a full or failing disk).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = HealthOut),
        (status = 503, description = "Still recovering, or the store cannot write", body = HealthOut),
    ))]
pub(super) async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    let status = if !engine.is_ready() {
        "recovering"
    } else if engine.store().disk_health().failing() {
        "storage_unavailable"
    } else {
        return HttpResponse::Ok().json(HealthOut { status: "ready" });
    };
    HttpResponse::ServiceUnavailable()
        .insert_header(("retry-after", "1"))
        .json(HealthOut { status })
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn metrics(
    engine: web::Data<Engine>,
    handle: Option<web::Data<PrometheusHandle>>,
) -> HttpResponse {
    let stats = &engine.store().writer().stats;
    use std::sync::atomic::Ordering::Relaxed;
    metrics::counter!(telemetry::STORE_COMMITS_TOTAL).absolute(stats.commits.load(Relaxed));
    metrics::counter!(telemetry::STORE_FLUSHES_TOTAL).absolute(stats.flushes.load(Relaxed));
    metrics::counter!(telemetry::STORE_WRITES_TOTAL).absolute(stats.messages.load(Relaxed));
    metrics::gauge!(telemetry::STORE_QUEUED_BYTES).set(stats.queued_bytes.load(Relaxed) as f64);
    metrics::gauge!(telemetry::ENGINE_PAUSED).set(if engine.is_paused() { 1.0 } else { 0.0 });
    let mut body = handle.map(|h| h.render()).unwrap_or_default();
    engine.render_live_metrics(&mut body);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

pub fn routes(r: &mut super::Routes) {
    r.get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics);
}
