//! Liveness, readiness and the Prometheus scrape.

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::engine::Engine;
use crate::telemetry;

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only once recovery has finished and every destination actor runs.
async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    if engine.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "recovering"}))
    }
}

async fn metrics(
    engine: web::Data<Engine>,
    handle: Option<web::Data<PrometheusHandle>>,
) -> HttpResponse {
    let stats = &engine.store().writer().stats;
    use std::sync::atomic::Ordering::Relaxed;
    metrics::counter!(telemetry::STORE_COMMITS_TOTAL).absolute(stats.commits.load(Relaxed));
    metrics::counter!(telemetry::STORE_FLUSHES_TOTAL).absolute(stats.flushes.load(Relaxed));
    metrics::counter!(telemetry::STORE_WRITES_TOTAL).absolute(stats.messages.load(Relaxed));
    metrics::gauge!(telemetry::ENGINE_PAUSED).set(if engine.is_paused() { 1.0 } else { 0.0 });
    let mut body = handle.map(|h| h.render()).unwrap_or_default();
    engine.render_live_metrics(&mut body);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/healthz").route(web::get().to(healthz)));
    cfg.service(super::resource("/readyz").route(web::get().to(readyz)));
    cfg.service(super::resource("/metrics").route(web::get().to(metrics)));
}
