//! W12: the disk under a steady load with retention (row R14: "disk levels off").
//!
//! One source → one healthy destination → one connection, on a gateway configured with
//! `[retention] days = --w12-retention-s / 86400`, `sweep_interval = "1s"` and 4 MiB body
//! segments (`[store] body_segment_bytes`), so that whole segments fall out of retention
//! within the run.
//!
//! 1. An open-loop load of `--w12-rate` events/s (1 KiB bodies) for `--w12-duration-s`.
//! 2. Every second: the data directory's size on disk (allocated blocks, as W9 measures it:
//!    everything in it, sled's files and `bodies/`), `bodies/` alone and its segment files,
//!    sled's log file (`db`) alone, deleted files the gateway still holds open (their
//!    blocks are not free yet, and not in the data dir's size), and the gateway's RSS.
//! 3. After the load: the wait for deliveries and the ledger (every accepted event must be
//!    delivered), then one more retention period (+ 3 s) without load, still sampled.
//! 4. Figures: the size at 1×, 2×, 3×… the retention period, its maximum, its size at the end
//!    of the load, its growth over the last half of the load in MiB/min (least squares; near
//!    0 once it levels off, which it should from about 2× the retention on), the same for
//!    `bodies/`, for the rest (sled's files), for sled's log alone and for RSS, and what is
//!    left after the idle period.

use super::Bench;
use crate::cli::Mode;
use crate::clock;
use crate::gateway::{Gateway, GatewayHome, GatewayOpts, Retention};
use crate::generator::{self, Endpoint, Live, Records, Route, Target};
use crate::procfs;
use crate::receiver::{Hit, Receiver};
use crate::runner::{self, fmt_int, RunRecord, TimelinePoint, Topology};
use crate::stats;
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[store] body_segment_bytes`: 4 MiB, ~4,000 bodies of 1 KiB a segment.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// `[retention] sweep_interval`, seconds.
const SWEEP_INTERVAL_S: u64 = 1;
/// The idle period after the load: one retention period and this much more.
const IDLE_EXTRA_S: f64 = 3.0;
/// At most this many retention multiples are reported (every k-th beyond it).
const MAX_MULTIPLES: u64 = 30;

const MIB: f64 = 1024.0 * 1024.0;

/// One figure of a reading.
type Reading = fn(&TimelinePoint) -> Option<f64>;

pub(super) async fn w12(b: &mut Bench) {
    let s = b.ctx.settings.clone();
    let variant = format!(
        "{} ev/s, retention {} s, {} s",
        fmt_int(s.w12_rate),
        s.w12_retention_s,
        s.w12_duration_s
    );
    let modes = b.one_gateway_mode("w12", " (a soak)");
    let reps = if s.reps_explicit { s.reps } else { 1 };
    for rep in 0..reps {
        for &mode in &modes {
            let mut rec = RunRecord::new("w12", &variant, mode, rep);
            let ran = once(b, &mut rec, mode).await;
            b.keep_run(rec, ran, summary);
        }
    }
}

/// The figures of one run on one line.
fn summary(rec: &RunRecord) -> String {
    let m = |k: &str| rec.metrics.get(k).copied();
    let f1 = |k: &str| m(k).map_or("—".to_string(), |v| format!("{v:.1}"));
    let f2 = |k: &str| m(k).map_or("—".to_string(), |v| format!("{v:.2}"));
    format!(
        "    w12: data dir MiB at {}; max {}, end of load {} (sled {} of which its log {}, bodies \
         {} in {} segments), after {} s idle {}; last half of the load {} MiB/min (sled {}, its \
         log {}, bodies {}); deleted but held open: max {} MiB; RSS end {} MiB, {} MiB/min",
        multiples_text(rec),
        f1("disk_mib_max"),
        f1("disk_mib_end"),
        f1("sled_mib_end"),
        f1("sled_log_mib_end"),
        f1("bodies_mib_end"),
        m("segments_end").map_or("—".into(), fmt_int),
        m("idle_s").map_or("—".into(), |v| format!("{v:.0}")),
        f1("disk_mib_idle"),
        f2("disk_growth_mib_per_min"),
        f2("sled_growth_mib_per_min"),
        f2("sled_log_growth_mib_per_min"),
        f2("bodies_growth_mib_per_min"),
        f1("deleted_open_mib_max"),
        f1("rss_mib_end"),
        f2("rss_growth_mib_per_min"),
    )
}

/// `1× 12.3, 2× 20.1, …` from the `disk_mib_at_{k}x_retention` metrics of a run.
pub fn multiples_text(rec: &RunRecord) -> String {
    let parts: Vec<String> = (1..=MAX_MULTIPLES * 2)
        .filter_map(|k| {
            let v = rec.metrics.get(&multiple_key(k))?;
            Some(format!("{k}× {v:.1}"))
        })
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(", ")
    }
}

/// The metric of the data dir's size at `k` retention periods.
pub fn multiple_key(k: u64) -> String {
    format!("disk_mib_at_{k}x_retention")
}

async fn once(b: &Bench, rec: &mut RunRecord, mode: Mode) -> Result<()> {
    let st = &b.ctx.settings;
    let receiver = Arc::new(b.receiver().await?);
    let opts = GatewayOpts {
        body_segment_bytes: Some(SEGMENT_BYTES),
        retention: Some(Retention {
            seconds: st.w12_retention_s,
            sweep_interval_s: SWEEP_INTERVAL_S,
        }),
        ..Bench::gateway_opts(mode, true)
    };
    let home = GatewayHome::new(&opts)?;
    let mut gw = Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
    let res = scenario(b, rec, &gw, &home.data_dir, &receiver).await;
    gw.stop(Duration::from_secs(60)).await;
    receiver.shutdown();
    res
}

/// What the sampler and the phases share.
struct Shared {
    live: Arc<Live>,
    receiver: Arc<Receiver>,
    data_dir: PathBuf,
    pid: u32,
    start: u64,
    timeline: Mutex<Vec<TimelinePoint>>,
    phase: Mutex<String>,
}

impl Shared {
    /// One reading, now.
    fn read(&self) -> TimelinePoint {
        let now = clock::now_ns();
        let (apparent, allocated) = procfs::dir_size(&self.data_dir);
        let bodies = self.data_dir.join("bodies");
        let (_, bodies_allocated) = procfs::dir_size(&bodies);
        TimelinePoint {
            t_s: (now.saturating_sub(self.start)) as f64 / 1e9,
            rss_mib: procfs::vm_rss_kib(self.pid).map(|k| k as f64 / 1024.0),
            accepted: self.live.accepted_events.load(Ordering::Relaxed),
            delivered: self.receiver.counters().unique,
            disk_mib: Some(allocated as f64 / MIB),
            disk_apparent_mib: Some(apparent as f64 / MIB),
            bodies_mib: Some(bodies_allocated as f64 / MIB),
            segments: Some(count_segments(&bodies)),
            sled_log_mib: allocated_mib(&self.data_dir.join("db")),
            deleted_open_mib: procfs::deleted_open_files(self.pid).map(|(_, b)| b as f64 / MIB),
            ..TimelinePoint::default()
        }
    }

    /// Takes a reading and keeps it.
    fn keep(&self) -> TimelinePoint {
        let p = self.read();
        self.timeline.lock().expect("timeline").push(p.clone());
        p
    }
}

/// The blocks allocated to one file, MiB.
fn allocated_mib(file: &Path) -> Option<f64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file)
        .ok()
        .map(|m| (m.blocks() * 512) as f64 / MIB)
}

/// Body segment files (`*.seg`) in `dir`.
fn count_segments(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .count() as u64
    })
}

async fn scenario(
    b: &Bench,
    rec: &mut RunRecord,
    gw: &Gateway,
    data_dir: &Path,
    receiver: &Arc<Receiver>,
) -> Result<()> {
    let st = &b.ctx.settings;
    let api = &gw.api;
    let (rate, retention_s, duration_s) = (st.w12_rate, st.w12_retention_s, st.w12_duration_s);
    let src = runner::setup_gateway_routes(
        api,
        &Topology::single(),
        &receiver.base_url(),
        st.dest_concurrency,
    )
    .await?
    .remove(0);
    let ep = Arc::new(Endpoint {
        routes: vec![Route {
            target: Target::Gateway(format!("{}/e/{src}", api.base).parse()?),
            class: 0,
        }],
        client: b.ctx.client.clone(),
        body: runner::json_body(st.body_bytes),
        timeout: Duration::from_secs(30),
    });
    rec.set("offered_per_s", rate);
    rec.set("retention_s", retention_s);
    rec.set("load_s", duration_s);
    rec.set("body_segment_bytes", SEGMENT_BYTES as f64);
    let start = clock::now_ns();
    let shared = Arc::new(Shared {
        live: Arc::new(Live::default()),
        receiver: receiver.clone(),
        data_dir: data_dir.to_path_buf(),
        pid: gw.pid(),
        start,
        timeline: Mutex::new(Vec::new()),
        phase: Mutex::new("load".into()),
    });
    let sampler = tokio::spawn(sample_every_second(rec.label(), shared.clone()));
    // 1. The steady load.
    let stop = start + clock::secs_ns(duration_s);
    let records =
        generator::open_loop(ep, rate, st.max_inflight, start, stop, shared.live.clone()).await;
    let end_of_load = shared.keep();
    // 2. Deliveries, then the ledger.
    *shared.phase.lock().expect("phase") = "draining".into();
    let want = records.events.len() as u64;
    let t0 = clock::now_ns();
    while receiver.counters().unique < want
        && ((clock::now_ns() - t0) as f64 / 1e9) < st.drain_timeout_s
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rec.set("drain_s", (clock::now_ns() - t0) as f64 / 1e9);
    let hits = runner::close_ledger(rec, &records, receiver, Some(api), true).await;
    rec.ledger.require_all_delivered("by the end of the run");
    // 3. One more retention period without load.
    *shared.phase.lock().expect("phase") = "idle".into();
    let idle_from = clock::now_ns();
    tokio::time::sleep(Duration::from_secs_f64(retention_s + IDLE_EXTRA_S)).await;
    let idle = shared.keep();
    rec.set("idle_s", (clock::now_ns() - idle_from) as f64 / 1e9);
    rec.set_opt(
        "server_peak_rss_mib",
        procfs::vm_hwm_kib(gw.pid()).map(|k| k as f64 / 1024.0),
    );
    sampler.abort();
    let _ = sampler.await;
    let mut timeline = std::mem::take(&mut *shared.timeline.lock().expect("timeline"));
    timeline.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    rec.timeline = timeline;
    // 4. Figures.
    let live = &shared.live;
    rec.set("accepted", records.events.len() as f64);
    rec.set("delivered", hits.len() as f64);
    // Over the load (the summary line's rates; deliveries that came after it count too).
    rec.set("accepted_per_s", records.events.len() as f64 / duration_s);
    rec.set("delivered_per_s", hits.len() as f64 / duration_s);
    rec.set("rejected", live.rejected.load(Ordering::Relaxed) as f64);
    rec.set("errors", live.errors.load(Ordering::Relaxed) as f64);
    if let Some(e) = live.first_error.lock().expect("live").clone() {
        rec.notes.push(format!("first ingress error: {e}"));
    }
    latencies(rec, &records, &hits);
    end_figures(rec, "end", &end_of_load);
    end_figures(rec, "idle", &idle);
    for (key, value) in figures(&rec.timeline, retention_s, duration_s) {
        rec.set(&key, value);
    }
    if duration_s / 2.0 < 2.0 * retention_s {
        rec.notes.push(format!(
            "the last half of the load starts at {:.0} s, before 2× the retention ({:.0} s): \
             its growth includes the filling of the first retention periods",
            duration_s / 2.0,
            2.0 * retention_s
        ));
    }
    Ok(())
}

/// Ingest and end-to-end latency over the whole load (the sweeps run beside it).
fn latencies(rec: &mut RunRecord, records: &Records, hits: &HashMap<Box<str>, Hit>) {
    let mut ingest = stats::new_histogram();
    for r in &records.requests {
        stats::record_ns(&mut ingest, r.done.saturating_sub(r.t0));
    }
    let mut e2e = stats::new_histogram();
    for e in &records.events {
        if let Some(h) = hits.get(&e.id) {
            stats::record_ns(&mut e2e, h.first_ns.saturating_sub(e.t0));
        }
    }
    if let Some(p) = stats::percentiles(&ingest) {
        rec.set("ingest_p50_ms", p.p50_ms);
        rec.set("ingest_p99_ms", p.p99_ms);
    }
    if let Some(p) = stats::percentiles(&e2e) {
        rec.set("e2e_p50_ms", p.p50_ms);
        rec.set("e2e_p99_ms", p.p99_ms);
    }
}

/// The sizes of one reading, as `disk_mib_{at}`, `sled_mib_{at}`, `bodies_mib_{at}`,
/// `segments_{at}`, `rss_mib_{at}`.
fn end_figures(rec: &mut RunRecord, at: &str, p: &TimelinePoint) {
    rec.set_opt(&format!("disk_mib_{at}"), p.disk_mib);
    rec.set_opt(&format!("apparent_mib_{at}"), p.disk_apparent_mib);
    rec.set_opt(&format!("bodies_mib_{at}"), p.bodies_mib);
    rec.set_opt(&format!("sled_mib_{at}"), sled_mib(p));
    rec.set_opt(&format!("sled_log_mib_{at}"), p.sled_log_mib);
    rec.set_opt(&format!("segments_{at}"), p.segments.map(|s| s as f64));
    rec.set_opt(&format!("rss_mib_{at}"), p.rss_mib);
    rec.set_opt(&format!("deleted_open_mib_{at}"), p.deleted_open_mib);
}

/// What is not `bodies/`: sled's files (its log, snapshots, `blobs/`).
fn sled_mib(p: &TimelinePoint) -> Option<f64> {
    Some(p.disk_mib? - p.bodies_mib?)
}

/// The figures of a timeline (readings of the data dir, seconds since the load started):
///
/// - `disk_mib_at_{k}x_retention`: the reading nearest to k × the retention, for every
///   whole k within the load (every k-th when there would be more than [`MAX_MULTIPLES`]);
/// - `disk_mib_start`, and `disk_mib_max`, `rss_mib_max` and `deleted_open_mib_max` during
///   the load;
/// - `{disk,bodies,sled,sled_log,rss}_growth_mib_per_min`: the least-squares slope over the readings
///   of the last half of the load, in MiB per minute.
pub fn figures(
    timeline: &[TimelinePoint],
    retention_s: f64,
    duration_s: f64,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let during: Vec<&TimelinePoint> = timeline
        .iter()
        .filter(|p| p.t_s <= duration_s + 0.5)
        .collect();
    if let Some(p) = during.first().and_then(|p| p.disk_mib) {
        out.push(("disk_mib_start".to_string(), p));
    }
    let max = |f: Reading| {
        during
            .iter()
            .filter_map(|p| f(p))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    if let Some(v) = max(|p| p.disk_mib) {
        out.push(("disk_mib_max".to_string(), v));
    }
    if let Some(v) = max(|p| p.rss_mib) {
        out.push(("rss_mib_max".to_string(), v));
    }
    if let Some(v) = max(|p| p.deleted_open_mib) {
        out.push(("deleted_open_mib_max".to_string(), v));
    }
    if retention_s > 0.0 {
        let n = (duration_s / retention_s + 1e-9).floor() as u64;
        let step = n.div_ceil(MAX_MULTIPLES).max(1);
        for k in (step..=n).step_by(step as usize) {
            let at = k as f64 * retention_s;
            let nearest = during
                .iter()
                .filter(|p| p.disk_mib.is_some())
                .min_by(|a, b| (a.t_s - at).abs().total_cmp(&(b.t_s - at).abs()));
            if let Some(p) = nearest.filter(|p| (p.t_s - at).abs() <= 1.0) {
                out.push((multiple_key(k), p.disk_mib.unwrap_or_default()));
            }
        }
    }
    let half = duration_s / 2.0;
    let last_half: Vec<&&TimelinePoint> = during.iter().filter(|p| p.t_s >= half).collect();
    let series: [(&str, Reading); 5] = [
        ("disk", |p| p.disk_mib),
        ("bodies", |p| p.bodies_mib),
        ("sled", sled_mib),
        ("sled_log", |p| p.sled_log_mib),
        ("rss", |p| p.rss_mib),
    ];
    for (name, f) in series {
        let pts: Vec<(f64, f64)> = last_half
            .iter()
            .filter_map(|p| Some((p.t_s, f(p)?)))
            .collect();
        if let Some(s) = super::w10::slope(&pts, half / 2.0) {
            out.push((format!("{name}_growth_mib_per_min"), s * 60.0));
        }
    }
    out
}

/// Step 2: a reading every second, with the progress line.
async fn sample_every_second(label: String, shared: Arc<Shared>) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Off a terminal, a line every 5 s.
    let mut skip = 0u32;
    loop {
        tick.tick().await;
        let p = shared.keep();
        if tty || skip == 0 {
            let line = format!(
                "  {label}  {:.0} s  {}  accepted {}  delivered {}  data dir {} MiB (bodies {} MiB, \
                 {} segments)  RSS {} MiB  errors {}",
                p.t_s,
                shared.phase.lock().expect("phase"),
                fmt_int(p.accepted as f64),
                fmt_int(p.delivered as f64),
                p.disk_mib.map_or("?".into(), |r| format!("{r:.1}")),
                p.bodies_mib.map_or("?".into(), |r| format!("{r:.1}")),
                p.segments.map_or("?".into(), |s| s.to_string()),
                p.rss_mib.map_or("?".into(), |r| format!("{r:.1}")),
                shared.live.errors.load(Ordering::Relaxed),
            );
            runner::print_progress(tty, &line);
        }
        skip = (skip + 1) % 5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading at `t` s: the data dir at `disk` MiB, `bodies` of it in bodies/.
    fn at(t: f64, disk: f64, bodies: f64, rss: f64) -> TimelinePoint {
        TimelinePoint {
            t_s: t,
            rss_mib: Some(rss),
            disk_mib: Some(disk),
            bodies_mib: Some(bodies),
            ..TimelinePoint::default()
        }
    }

    fn get(f: &[(String, f64)], k: &str) -> Option<f64> {
        f.iter().find(|(key, _)| key == k).map(|(_, v)| *v)
    }

    #[test]
    fn a_level_disk_has_no_growth_over_the_last_half() {
        // Fills for 2 retention periods (20 s each), then stays at 60 MiB; idle after 120 s.
        let mut tl: Vec<TimelinePoint> = (0..=120)
            .map(|t| {
                let t = t as f64 + 0.01;
                let disk = 20.0 + (t.min(40.0)) * 1.0;
                at(t, disk, disk / 2.0, 50.0)
            })
            .collect();
        tl.push(at(143.0, 5.0, 0.0, 40.0));
        let f = figures(&tl, 20.0, 120.0);
        assert_eq!(get(&f, "disk_mib_start"), Some(20.01));
        assert!((get(&f, &multiple_key(1)).unwrap() - 40.01).abs() < 1e-9);
        assert_eq!(get(&f, &multiple_key(2)), Some(60.0));
        assert_eq!(get(&f, &multiple_key(6)), Some(60.0));
        assert_eq!(get(&f, &multiple_key(7)), None);
        assert_eq!(get(&f, "disk_mib_max"), Some(60.0));
        for k in ["disk", "bodies", "sled", "rss"] {
            let g = get(&f, &format!("{k}_growth_mib_per_min")).unwrap();
            assert!(g.abs() < 1e-9, "{k}: {g}");
        }
    }

    #[test]
    fn a_growing_disk_shows_its_rate_and_what_grows() {
        // sled's part grows 0.5 MiB/s all along; bodies/ levels off at 10 MiB.
        let tl: Vec<TimelinePoint> = (0..=60)
            .map(|t| {
                let t = t as f64;
                let bodies = t.min(10.0);
                TimelinePoint {
                    sled_log_mib: Some(4.0 + 0.5 * t),
                    ..at(t, 5.0 + 0.5 * t + bodies, bodies, 30.0 + t / 60.0)
                }
            })
            .collect();
        let f = figures(&tl, 10.0, 60.0);
        let g = |k: &str| get(&f, &format!("{k}_growth_mib_per_min")).unwrap();
        assert!((g("disk") - 30.0).abs() < 1e-9, "{}", g("disk"));
        assert!((g("sled") - 30.0).abs() < 1e-9, "{}", g("sled"));
        assert!((g("sled_log") - 30.0).abs() < 1e-9, "{}", g("sled_log"));
        assert!(g("bodies").abs() < 1e-9);
        assert!((g("rss") - 1.0).abs() < 1e-9);
        assert_eq!(get(&f, &multiple_key(6)), Some(5.0 + 30.0 + 10.0));
        assert_eq!(get(&f, "disk_mib_max"), Some(45.0));
    }

    #[test]
    fn many_retention_periods_are_thinned_and_missing_readings_skipped() {
        let tl: Vec<TimelinePoint> = (0..=600)
            .map(|t| at(t as f64, t as f64, 0.0, 1.0))
            .collect();
        let f = figures(&tl, 1.0, 600.0);
        let ks: Vec<u64> = (1..=600)
            .filter(|&k| get(&f, &multiple_key(k)).is_some())
            .collect();
        assert_eq!(ks.len(), 30);
        assert_eq!((ks[0], ks[29]), (20, 600));
        // No reading within a second of 2× the retention: that multiple is left out.
        let sparse = vec![at(0.0, 1.0, 0.0, 1.0), at(10.0, 2.0, 0.0, 1.0)];
        let f = figures(&sparse, 3.0, 10.0);
        assert_eq!(get(&f, &multiple_key(3)), Some(2.0));
        assert_eq!(get(&f, &multiple_key(2)), None);
        assert!(figures(&[], 20.0, 120.0).is_empty());
    }

    #[test]
    fn counts_segment_files() {
        let d = tempfile::tempdir().unwrap();
        for name in ["0000000000.seg", "0000000001.seg", "other"] {
            std::fs::write(d.path().join(name), b"x").unwrap();
        }
        assert_eq!(count_segments(d.path()), 2);
        assert_eq!(count_segments(&d.path().join("missing")), 0);
    }
}
