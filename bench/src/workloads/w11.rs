//! W11: event queries among many events.
//!
//! First 50 events go to a paused connection of one source (`HOLD`) and 50 to a destination
//! where nothing listens, with no retries and the breaker out of the way, so they end
//! `FAILED` and dead-lettered. Then another source delivers `--w11-events` events to a
//! healthy receiver (closed loop, as W9). Each query is then asked 200 times, one after the other:
//! the 50 held events of their connection, `status=FAILED`, `dead_lettered=true`, and every
//! event of that connection, of its destination and of its source with no status named (each
//! `limit=50`). Reports p50 and p99 of each, in milliseconds, and checks every answer holds
//! the 50 events.

use super::{
    closed_port_url, gateway_runs, gateway_with_route, load_events, record_run, secs_of, Bench,
};
use crate::cli::Mode;
use crate::gateway::Api;
use crate::runner::RunRecord;
use crate::stats;
use anyhow::{bail, Result};
use hyper::Method;
use serde_json::json;
use std::time::{Duration, Instant};

/// Events listed by each query.
const LISTED: usize = 50;
/// Calls of each query.
const CALLS: usize = 200;

pub async fn w11(b: &mut Bench) {
    let n = b.ctx.settings.w11_events.max(1);
    let variant = format!("{LISTED} among {n}");
    for (rep, mode) in gateway_runs(b, "w11") {
        let mut rec = RunRecord::new("w11", &variant, mode, rep);
        let result = w11_once(b, &mut rec, mode, n).await;
        record_run(b, rec, result);
    }
}

async fn w11_once(b: &Bench, rec: &mut RunRecord, mode: Mode, n: u64) -> Result<()> {
    let (receiver, _home, mut gw, src) = gateway_with_route(b, mode).await?;
    let res = async {
        // The listed events are the oldest: a list that walks from the newest passes every
        // delivered one first.
        let held = held_connection(&gw.api, &receiver.base_url()).await?;
        failed_events(&gw.api).await?;
        let (records, took, _) =
            load_events(b, rec.label(), &format!("{}/e/{src}", gw.api.base), n).await?;
        rec.set("events", records.events.len() as f64);
        rec.set("ingest_per_s", records.events.len() as f64 / secs_of(took));
        for (name, query) in [
            (
                "held",
                format!("connection_id={}&status=HOLD", held.connection),
            ),
            ("failed", "status=FAILED".to_string()),
            ("dead", "dead_lettered=true".to_string()),
            ("connection", format!("connection_id={}", held.connection)),
            (
                "destination",
                format!("destination_id={}", held.destination),
            ),
            ("source", format!("source_id={}", held.source)),
        ] {
            let (p50, p99) = time_query(&gw.api, &query).await?;
            rec.set(&format!("{name}_p50_ms"), p50);
            rec.set(&format!("{name}_p99_ms"), p99);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    gw.stop(Duration::from_secs(60)).await;
    res
}

/// The source, destination and connection of the held events.
struct Held {
    source: String,
    destination: String,
    connection: String,
}

/// A source whose one connection is paused, with `LISTED` events held on it.
async fn held_connection(api: &Api, receiver_base: &str) -> Result<Held> {
    let src = api.create_source("w11-held").await?;
    let des = api
        .create_destination("w11-held", &format!("{receiver_base}/held"), None)
        .await?;
    let web = api.create_connection("w11-held", &src, &des).await?;
    // PATCH rather than `/pause`: builds from before the pause action can be compared.
    api.v1(
        Method::PATCH,
        &format!("/v1/connections/{web}"),
        Some(&json!({ "paused_at": "2026-01-01T00:00:00.000Z" })),
    )
    .await?;
    ingest(api, &src).await?;
    Ok(Held {
        source: src,
        destination: des,
        connection: web,
    })
}

/// `LISTED` events that fail once (nothing listens) and are dead-lettered.
async fn failed_events(api: &Api) -> Result<()> {
    let src = api.create_source("w11-failed").await?;
    let des = api
        .v1(
            Method::POST,
            "/v1/destinations",
            Some(&json!({
                "name": "w11-failed",
                "url": closed_port_url().await?,
                "circuit": {"failure_threshold": 1_000_000},
            })),
        )
        .await?;
    api.v1(
        Method::POST,
        "/v1/connections",
        Some(&json!({
            "name": "w11-failed",
            "source_id": src,
            "destination_id": des["id"],
            "rules": [{"type": "retry", "strategy": "linear", "count": 0, "interval": 1000}],
        })),
    )
    .await?;
    ingest(api, &src).await?;
    let t0 = Instant::now();
    loop {
        let v = api
            .v1(
                Method::GET,
                &format!("/v1/events?source_id={src}&status=FAILED&limit=250"),
                None,
            )
            .await?;
        if v["count"].as_u64() == Some(LISTED as u64) {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the events to a closed port did not all fail within 60 s: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ingest(api: &Api, src: &str) -> Result<()> {
    for i in 0..LISTED {
        let url = format!("{}/e/{src}", api.base);
        let (status, v) = crate::httpc::json_call(
            &api.client,
            Method::POST,
            &url,
            &[],
            Some(&json!({ "w11": i })),
        )
        .await?;
        if !status.is_success() {
            bail!("ingest answered {status}: {v}");
        }
    }
    Ok(())
}

/// p50 and p99 in milliseconds of `CALLS` calls of `GET /v1/events?{query}&limit=50`.
async fn time_query(api: &Api, query: &str) -> Result<(f64, f64)> {
    let path = format!("/v1/events?{query}&limit={LISTED}");
    let mut h = stats::new_histogram();
    for _ in 0..CALLS {
        let t0 = Instant::now();
        let v = api.v1(Method::GET, &path, None).await?;
        stats::record_ns(&mut h, t0.elapsed().as_nanos() as u64);
        if v["count"].as_u64() != Some(LISTED as u64) {
            bail!("{path}: expected {LISTED} events, got {}", v["count"]);
        }
    }
    let p = stats::percentiles(&h).expect("calls were made");
    Ok((p.p50_ms, p.p99_ms))
}
