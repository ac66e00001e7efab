//! W5: a held backlog drained on unpause.
//!
//! One source → one destination (healthy receiver) → one connection, paused. `--w5-events`
//! events are accepted while it is paused (`HOLD`); then it is unpaused and the bench waits
//! until the receiver has every one. Reports the drain rate (and, when W1 ran in the same
//! invocation, its ratio to W1's delivered rate on the same mode), and the gateway's RSS when
//! the backlog starts, when half of it is held, when it is complete, and at its peak while
//! draining (sampled every 200 ms). What the second half of the backlog adds, per 100,000
//! events, is the measure of "flat": the first half also pays fixed costs (the store's page
//! cache filling to its bound, ingress buffers) that a larger backlog does not repeat.

use super::{
    gateway_runs, gateway_with_route, load_events_counted, median_sustained, record_run, secs_of,
    Bench,
};
use crate::cli::Mode;
use crate::generator::Live;
use crate::procfs;
use crate::runner::{self, RunRecord};
use anyhow::{anyhow, Result};
use hyper::Method;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn w5(b: &mut Bench) {
    let n = b.ctx.settings.w5_events.max(1);
    let variant = format!("{n} held");
    for (rep, mode) in gateway_runs(b, "w5") {
        let mut rec = RunRecord::new("w5", &variant, mode, rep);
        let result = w5_once(b, &mut rec, mode, n).await;
        if let (Some(drain), Some(w1)) = (
            rec.metrics.get("drain_per_s").copied(),
            median_sustained(&b.runs, "w1", "max", mode),
        ) {
            rec.set("drain_over_w1", drain / w1);
        }
        record_run(b, rec, result);
    }
}

async fn w5_once(b: &Bench, rec: &mut RunRecord, mode: Mode, n: u64) -> Result<()> {
    let (receiver, _home, mut gw, src) = gateway_with_route(b, mode).await?;
    let pid = gw.pid();
    let rss = move || procfs::vm_rss_kib(pid).map(|k| k as f64 / 1024.0);
    let res = async {
        let connections = gw
            .api
            .v1(
                Method::GET,
                &format!("/v1/connections?source_id={src}"),
                None,
            )
            .await?;
        let web = connections["models"][0]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no connection listed: {connections}"))?
            .to_string();
        gw.api
            .v1(Method::PUT, &format!("/v1/connections/{web}/pause"), None)
            .await?;
        if let Some(m) = rss() {
            rec.set("rss_hold_start_mib", m);
        }
        let live = Arc::new(Live::default());
        let half = tokio::spawn({
            let live = live.clone();
            async move {
                loop {
                    let held = live.accepted_events.load(Ordering::Relaxed);
                    if held >= n / 2 {
                        return rss().map(|m| (held, m));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        let (records, took, live) =
            load_events_counted(b, rec.label(), &format!("{}/e/{src}", gw.api.base), n, live)
                .await?;
        rec.set("events", records.events.len() as f64);
        rec.set("ingest_per_s", records.events.len() as f64 / secs_of(took));
        let want = live.accepted_events.load(Ordering::Relaxed);
        let half = if half.is_finished() {
            half.await.ok().flatten()
        } else {
            half.abort();
            None
        };
        if let (Some(end), Some((held, mid))) = (rss(), half) {
            rec.set("rss_hold_end_mib", end);
            rec.set("rss_hold_half_mib", mid);
            if want > held {
                let per_100k = (end - mid) * 100_000.0 / (want - held) as f64;
                rec.set("rss_hold_growth_mib_per_100k", per_100k);
            }
        }
        gw.api
            .v1(Method::PUT, &format!("/v1/connections/{web}/unpause"), None)
            .await?;
        let t0 = Instant::now();
        let mut peak: f64 = 0.0;
        while receiver.counters().unique < want
            && t0.elapsed().as_secs_f64() < b.ctx.settings.drain_timeout_s.max(300.0)
        {
            peak = peak.max(rss().unwrap_or(0.0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let drained = t0.elapsed();
        rec.set("drain_s", drained.as_secs_f64());
        rec.set(
            "drain_per_s",
            receiver.counters().unique as f64 / secs_of(drained),
        );
        rec.set("rss_drain_peak_mib", peak);
        runner::close_ledger(rec, &records, &receiver, Some(&gw.api), true).await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    gw.stop(Duration::from_secs(60)).await;
    res
}
