//! W13: one team floods ingress (row R10: "one team floods ingress: 429 with Retry-After for
//! it; another team's ingest latency stays within 10 % (measured); nothing accepted lost").
//!
//! One gateway with `[ingress] team_rate_limit = --w13-limit` (500 requests/s per team; a
//! team may burst one second's allowance at once, then refills at the rate). Two teams, each
//! with one source → one healthy destination (the bench's receiver) → one connection:
//! team A ("flooder", the gateway's own team from its environment) and team B ("steady",
//! made through `POST /admin/teams` and given a key with `POST /admin/teams/:id/api-keys`).
//!
//! 1. Warm-up (`--warmup`): team B's load, and team A on one connection.
//! 2. Phase "alone": team B sends open-loop at `--w13-rate` (200 events/s, 1 KiB bodies)
//!    for `--w13-phase-s` (10 s); each request's latency, send → 200, goes into an
//!    HdrHistogram (the latency from its scheduled time, which adds the generator's own lag,
//!    is reported beside it).
//! 3. Phase "flooded": the same team-B load while team A sends closed-loop on
//!    `--w13-flood-conns` (64) connections of their own, each sending its next request as soon
//!    as the last one answered, 200 or 429 (no back-off: a flood, far over its limit). Every
//!    answer is counted: 200s (their event ids kept for the ledger), 429s, and 429s without
//!    `Retry-After`.
//! 4. The phases alternate, alone, flooded, alone, flooded… (2 pairs, or `--reps` pairs), so
//!    that noise on the host hits both alike. Before each phase the bench waits until the
//!    receiver has every event accepted so far, and half a second more: an "alone" phase does
//!    not deliver the flood's backlog.
//! 5. After the load: the wait for deliveries and one ledger over both teams' accepted
//!    events, which must all be delivered (a refused request stored anyway would show up as a
//!    delivery never accepted: VOID too).
//! 6. Figures: team B's p50/p99/p999 alone and flooded (all phases of a kind pooled) and
//!    flooded ÷ alone for each (the 10 % target is on the p50 and p99 ratios), the same ratios
//!    pair by pair and the worst pair; team A's accepted/s (≈ the limit, plus one burst per
//!    phase) and 429/s; whether every 429 carried `Retry-After`; the gateway's and the bench's
//!    CPU (cores busy) in each kind of phase.
//!
//! The flooder runs in the bench's process, on the same cores as the gateway: the CPU the
//! flood costs the machine is part of what team B feels, as it would be for a gateway whose
//! host takes the flood's connections.

use super::Bench;
use crate::cli::Mode;
use crate::clock;
use crate::gateway::{Gateway, GatewayHome, GatewayOpts};
use crate::generator::{self, Endpoint, EventRec, Live, Records, ReqRec, Route, Target};
use crate::httpc::{self, HttpClient};
use crate::procfs;
use crate::receiver::Receiver;
use crate::runner::{self, fmt_int, RunRecord, Topology};
use crate::stats;
use anyhow::Result;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after it is set up a phase starts (both teams' loads start together).
const LEAD_NS: u64 = 100_000_000;
/// Rest between phases, once the receiver has every event accepted so far.
const GAP: Duration = Duration::from_millis(500);
/// Longest wait, before a phase, for the receiver to catch up.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// The target: team B's p50 and p99 flooded ÷ alone at most this.
const TARGET_RATIO: f64 = 1.10;

pub(super) async fn w13(b: &mut Bench) {
    let s = b.ctx.settings.clone();
    let variant = format!(
        "limit {}/s, team B {} ev/s, {} flood conns, {} s phases",
        fmt_int(s.w13_limit as f64),
        fmt_int(s.w13_rate),
        s.w13_flood_conns,
        s.w13_phase_s
    );
    let modes = b.one_gateway_mode("w13", "");
    // --reps counts the pairs of phases (alone, flooded), all on one gateway.
    let pairs = if s.reps_explicit {
        s.reps
    } else if s.quick {
        1
    } else {
        2
    };
    for &mode in &modes {
        let mut rec = RunRecord::new("w13", &variant, mode, 0);
        let ran = once(b, &mut rec, mode, pairs).await;
        b.keep_run(rec, ran, summary);
    }
}

/// The figures of one run on one line.
fn summary(rec: &RunRecord) -> String {
    let m = |k: &str| rec.metrics.get(k).copied();
    let ms = |k: &str| m(k).map_or("—".to_string(), |v| format!("{v:.2}"));
    let r3 = |k: &str| m(k).map_or("—".to_string(), |v| format!("{v:.3}"));
    let int = |k: &str| m(k).map_or("—".to_string(), fmt_int);
    let retry_after = match (m("a_429s"), m("a_429_without_retry_after")) {
        (Some(n), Some(w)) if n > 0.0 && w == 0.0 => "every 429 carried Retry-After".to_string(),
        (Some(n), Some(w)) if n > 0.0 => format!("{} of the 429s without Retry-After", fmt_int(w)),
        _ => "no 429 seen".to_string(),
    };
    format!(
        "    w13: team B ingest p50/p99/p999 ms alone {}/{}/{}, flooded {}/{}/{}; flooded ÷ alone \
         p50 {} p99 {} (worst pair {} / {}; target ≤ {target:.2}); team A {} accepted/s \
         (limit {}), {} 429/s, {}; server CPU cores alone {}, flooded {}",
        ms("b_alone_p50_ms"),
        ms("b_alone_p99_ms"),
        ms("b_alone_p999_ms"),
        ms("b_flooded_p50_ms"),
        ms("b_flooded_p99_ms"),
        ms("b_flooded_p999_ms"),
        r3("b_p50_ratio"),
        r3("b_p99_ratio"),
        r3("b_p50_ratio_worst_pair"),
        r3("b_p99_ratio_worst_pair"),
        int("a_accepted_per_s"),
        int("limit_per_s"),
        int("a_limited_per_s"),
        retry_after,
        ms("server_cpu_alone"),
        ms("server_cpu_flooded"),
        target = TARGET_RATIO,
    )
}

async fn once(b: &Bench, rec: &mut RunRecord, mode: Mode, pairs: usize) -> Result<()> {
    let st = &b.ctx.settings;
    let receiver = Arc::new(b.receiver().await?);
    let opts = GatewayOpts {
        team_rate_limit: Some(st.w13_limit),
        ..Bench::gateway_opts(mode, true)
    };
    let home = GatewayHome::new(&opts)?;
    let mut gw = Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
    let res = scenario(b, rec, &gw, &receiver, pairs).await;
    gw.stop(Duration::from_secs(60)).await;
    receiver.shutdown();
    res
}

/// Team A's flood: where it goes, on a client (a connection pool) of its own.
struct Flood {
    client: HttpClient,
    uri: Uri,
    body: Bytes,
    timeout: Duration,
}

/// Team A's answers in one phase.
struct FloodCounts {
    sent: AtomicU64,
    /// 200s.
    accepted: AtomicU64,
    /// 429s.
    limited: AtomicU64,
    limited_without_retry_after: AtomicU64,
    /// `Retry-After` present but not whole seconds.
    retry_after_unparsed: AtomicU64,
    retry_after_min: AtomicU64,
    retry_after_max: AtomicU64,
    /// Any other answer, or no answer.
    other: AtomicU64,
    first_other: Mutex<Option<String>>,
}

impl FloodCounts {
    fn new() -> FloodCounts {
        FloodCounts {
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            limited_without_retry_after: AtomicU64::new(0),
            retry_after_unparsed: AtomicU64::new(0),
            retry_after_min: AtomicU64::new(u64::MAX),
            retry_after_max: AtomicU64::new(0),
            other: AtomicU64::new(0),
            first_other: Mutex::new(None),
        }
    }

    fn note_other(&self, what: String) {
        self.other.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_other.lock().expect("flood");
        if f.is_none() {
            *f = Some(what);
        }
    }

    fn get(&self, n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
struct IngressAnswer {
    #[serde(default)]
    event_ids: Vec<String>,
}

/// One of team A's connections: the next request as soon as the last one answered, from
/// `start` until `stop`. Returns what was accepted (for the ledger).
async fn flood_worker(f: Arc<Flood>, counts: Arc<FloodCounts>, start: u64, stop: u64) -> Records {
    tokio::time::sleep_until(clock::instant_at(start).into()).await;
    let mut rec = Records::default();
    while clock::now_ns() < stop {
        let mut req = Request::new(Full::new(f.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = f.uri.clone();
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let t0 = clock::now_ns();
        let exchange = async {
            let resp = f.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            // None: no Retry-After; Some(None): one that is not whole seconds.
            let retry_after: Option<Option<u64>> = resp
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, retry_after, body))
        };
        let answer = tokio::time::timeout(f.timeout, exchange).await;
        let done = clock::now_ns();
        let mut failed = false;
        match answer {
            Ok(Ok((200..=299, _, body))) => match serde_json::from_slice::<IngressAnswer>(&body) {
                Ok(a) => {
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                    rec.requests.push(ReqRec {
                        t0,
                        sent: t0,
                        done,
                        events: a.event_ids.len() as u32,
                    });
                    rec.events
                        .extend(a.event_ids.into_iter().map(|id| EventRec {
                            id: id.into(),
                            t0,
                            sent: t0,
                            done,
                            class: 0,
                        }));
                }
                Err(e) => {
                    counts.note_other(format!("bad ingress answer: {e}"));
                    failed = true;
                }
            },
            Ok(Ok((429, retry_after, _))) => {
                counts.limited.fetch_add(1, Ordering::Relaxed);
                match retry_after {
                    None => {
                        counts
                            .limited_without_retry_after
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Some(None) => {
                        counts.retry_after_unparsed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Some(secs)) => {
                        counts.retry_after_min.fetch_min(secs, Ordering::Relaxed);
                        counts.retry_after_max.fetch_max(secs, Ordering::Relaxed);
                    }
                }
            }
            Ok(Ok((status, _, body))) => {
                counts.note_other(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
                failed = true;
            }
            Ok(Err(e)) => {
                counts.note_other(e);
                failed = true;
            }
            Err(_) => {
                counts.note_other(format!("timed out after {:?}", f.timeout));
                failed = true;
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    rec
}

/// What drives the phases.
struct Drive {
    label: String,
    /// Team B's open loop.
    ep_b: Arc<Endpoint>,
    rate: f64,
    max_inflight: usize,
    /// Team A's flood.
    flood: Arc<Flood>,
    /// Team A's open loop while team B is alone (`--w13-a-baseline-rate`; 0: silent).
    ep_a: Arc<Endpoint>,
    a_baseline_rate: f64,
    pid: u32,
}

/// What one phase left.
struct PhaseOut {
    /// Team B's accepted requests and events, and its counters.
    b: Records,
    b_live: Arc<Live>,
    /// Team A's accepted requests and events, and its counters (flooded phases).
    a: Records,
    a_counts: Option<Arc<FloodCounts>>,
    secs: f64,
    /// CPU seconds the gateway and the bench used during the phase.
    server_cpu_s: Option<f64>,
    bench_cpu_s: f64,
}

/// One phase: team B's open loop for `secs`, beside team A's flood on `conns` connections
/// (none: team B alone).
async fn run_phase(d: &Drive, what: &str, secs: f64, conns: usize) -> PhaseOut {
    let b_live = Arc::new(Live::default());
    let a_counts = (conns > 0).then(|| Arc::new(FloodCounts::new()));
    let start = clock::now_ns() + LEAD_NS;
    let stop = start + clock::secs_ns(secs);
    let pid = d.pid;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(clock::instant_at(start).into()).await;
        let a = (procfs::cpu_seconds(pid), procfs::self_cpu_seconds());
        tokio::time::sleep_until(clock::instant_at(stop).into()).await;
        let z = (procfs::cpu_seconds(pid), procfs::self_cpu_seconds());
        (a, z)
    });
    let prog = tokio::spawn(progress(
        d.label.clone(),
        what.to_string(),
        b_live.clone(),
        a_counts.clone(),
        start,
        stop,
    ));
    let mut workers = tokio::task::JoinSet::new();
    if let Some(c) = &a_counts {
        for _ in 0..conns {
            workers.spawn(flood_worker(d.flood.clone(), c.clone(), start, stop));
        }
    }
    let b = generator::open_loop(
        d.ep_b.clone(),
        d.rate,
        d.max_inflight,
        start,
        stop,
        b_live.clone(),
    );
    // Without the flood, team A may still send at its baseline, under its limit.
    let baseline = (conns == 0 && d.a_baseline_rate > 0.0).then(|| {
        generator::open_loop(
            d.ep_a.clone(),
            d.a_baseline_rate,
            d.max_inflight,
            start,
            stop,
            Arc::new(Live::default()),
        )
    });
    let (b, mut a) = match baseline {
        Some(a) => tokio::join!(b, a),
        None => (b.await, Records::default()),
    };
    while let Some(r) = workers.join_next().await {
        if let Ok(r) = r {
            a.requests.extend(r.requests);
            a.events.extend(r.events);
        }
    }
    prog.abort();
    let ((s0, c0), (s1, c1)) = sampler.await.unwrap_or(((None, 0.0), (None, 0.0)));
    PhaseOut {
        b,
        b_live,
        a,
        a_counts,
        secs,
        server_cpu_s: match (s0, s1) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        },
        bench_cpu_s: c1 - c0,
    }
}

/// The progress line of a phase.
async fn progress(
    label: String,
    what: String,
    b_live: Arc<Live>,
    a: Option<Arc<FloodCounts>>,
    start: u64,
    stop: u64,
) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let total = stop.saturating_sub(start) as f64 / 1e9;
    loop {
        tokio::time::sleep(every).await;
        let t = clock::now_ns().saturating_sub(start) as f64 / 1e9;
        let mut line = format!(
            "  {label}  {what}  {:.1}/{total:.1} s  team B accepted {}  refused {}  errors {}",
            t.min(total),
            fmt_int(b_live.accepted_events.load(Ordering::Relaxed) as f64),
            b_live.rejected.load(Ordering::Relaxed),
            b_live.errors.load(Ordering::Relaxed),
        );
        if let Some(a) = &a {
            line += &format!(
                "  team A 200s {}  429s {}  other {}",
                fmt_int(a.get(&a.accepted) as f64),
                fmt_int(a.get(&a.limited) as f64),
                a.get(&a.other),
            );
        }
        runner::print_progress(tty, &line);
    }
}

/// Waits until the receiver has `accepted` unique ids (at most [`SETTLE_MAX`]), then
/// [`GAP`]; `false` when it did not catch up.
async fn settle(receiver: &Receiver, accepted: u64) -> bool {
    let t0 = Instant::now();
    let mut caught_up = true;
    while receiver.counters().unique < accepted {
        if t0.elapsed() > SETTLE_MAX {
            caught_up = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(GAP).await;
    caught_up
}

/// Team B's latencies: send → 200, scheduled → 200, and the generator's lag.
struct Lat {
    send: Histogram<u64>,
    sched: Histogram<u64>,
    lag: Histogram<u64>,
}

impl Lat {
    fn new() -> Lat {
        Lat {
            send: stats::new_histogram(),
            sched: stats::new_histogram(),
            lag: stats::new_histogram(),
        }
    }

    fn record(&mut self, r: &ReqRec) {
        stats::record_ns(&mut self.send, r.done.saturating_sub(r.sent));
        stats::record_ns(&mut self.sched, r.done.saturating_sub(r.t0));
        stats::record_ns(&mut self.lag, r.sent.saturating_sub(r.t0));
    }
}

/// Everything of one kind of phase (alone or flooded), pooled.
struct Tally {
    lat: Lat,
    secs: f64,
    b_accepted: u64,
    b_rejected: u64,
    b_errors: u64,
    a_sent: u64,
    a_accepted: u64,
    a_limited: u64,
    a_without_retry_after: u64,
    a_retry_after_unparsed: u64,
    a_retry_after_min: u64,
    a_retry_after_max: u64,
    a_other: u64,
    server_cpu_s: Option<f64>,
    bench_cpu_s: f64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            lat: Lat::new(),
            secs: 0.0,
            b_accepted: 0,
            b_rejected: 0,
            b_errors: 0,
            a_sent: 0,
            a_accepted: 0,
            a_limited: 0,
            a_without_retry_after: 0,
            a_retry_after_unparsed: 0,
            a_retry_after_min: u64::MAX,
            a_retry_after_max: 0,
            a_other: 0,
            server_cpu_s: Some(0.0),
            bench_cpu_s: 0.0,
        }
    }

    /// Adds a phase; returns its own team-B latencies.
    fn absorb(&mut self, p: &PhaseOut) -> Lat {
        let mut lat = Lat::new();
        for r in &p.b.requests {
            lat.record(r);
            self.lat.record(r);
        }
        self.secs += p.secs;
        self.b_accepted += p.b_live.accepted_requests.load(Ordering::Relaxed);
        self.b_rejected += p.b_live.rejected.load(Ordering::Relaxed);
        self.b_errors += p.b_live.errors.load(Ordering::Relaxed);
        if let Some(c) = &p.a_counts {
            self.a_sent += c.get(&c.sent);
            self.a_accepted += c.get(&c.accepted);
            self.a_limited += c.get(&c.limited);
            self.a_without_retry_after += c.get(&c.limited_without_retry_after);
            self.a_retry_after_unparsed += c.get(&c.retry_after_unparsed);
            self.a_retry_after_min = self.a_retry_after_min.min(c.get(&c.retry_after_min));
            self.a_retry_after_max = self.a_retry_after_max.max(c.get(&c.retry_after_max));
            self.a_other += c.get(&c.other);
        }
        self.server_cpu_s = match (self.server_cpu_s, p.server_cpu_s) {
            (Some(x), Some(y)) => Some(x + y),
            _ => None,
        };
        self.bench_cpu_s += p.bench_cpu_s;
        lat
    }
}

/// A metric of a run, if set.
fn metric(rec: &RunRecord, key: &str) -> Option<f64> {
    rec.metrics.get(key).copied()
}

/// `flooded ÷ alone`, when both are there and alone is not 0.
fn ratio(flooded: Option<f64>, alone: Option<f64>) -> Option<f64> {
    match (flooded, alone) {
        (Some(f), Some(a)) if a > 0.0 => Some(f / a),
        _ => None,
    }
}

async fn scenario(
    b: &Bench,
    rec: &mut RunRecord,
    gw: &Gateway,
    receiver: &Arc<Receiver>,
    pairs: usize,
) -> Result<()> {
    let st = &b.ctx.settings;
    let api_a = &gw.api;
    let recv = receiver.base_url();
    // Team A: the gateway's own team. Team B: a new one, with a key of its own.
    let api_b = api_a.new_team("bench-w13-steady").await?;
    let src_a =
        runner::setup_gateway_routes(api_a, &Topology::single(), &recv, st.dest_concurrency)
            .await?
            .remove(0);
    let src_b =
        runner::setup_gateway_routes(&api_b, &Topology::single(), &recv, st.dest_concurrency)
            .await?
            .remove(0);
    let body = runner::json_body(st.body_bytes);
    let d = Drive {
        label: rec.label(),
        ep_b: Arc::new(Endpoint {
            routes: vec![Route {
                target: Target::Gateway(format!("{}/e/{src_b}", api_a.base).parse()?),
                class: 0,
            }],
            client: b.ctx.client.clone(),
            body: body.clone(),
            timeout: Duration::from_secs(30),
        }),
        rate: st.w13_rate,
        max_inflight: st.max_inflight,
        ep_a: Arc::new(Endpoint {
            routes: vec![Route {
                target: Target::Gateway(format!("{}/e/{src_a}", api_a.base).parse()?),
                class: 0,
            }],
            client: httpc::client(),
            body: body.clone(),
            timeout: Duration::from_secs(30),
        }),
        a_baseline_rate: st.w13_a_baseline_rate,
        flood: Arc::new(Flood {
            client: httpc::client(),
            uri: format!("{}/e/{src_a}", api_a.base).parse()?,
            body,
            timeout: Duration::from_secs(30),
        }),
        pid: gw.pid(),
    };
    rec.notes.push(format!(
        "team A (flooder) is {}, team B (steady) {}",
        api_a.team_id(),
        api_b.team_id()
    ));
    let (limit, phase_s, conns) = (st.w13_limit, st.w13_phase_s, st.w13_flood_conns);
    rec.set("limit_per_s", limit as f64);
    rec.set("b_offered_per_s", st.w13_rate);
    rec.set("phase_s", phase_s);
    rec.set("pairs", pairs as f64);
    rec.set("flood_conns", conns as f64);
    rec.set("a_baseline_per_s", st.w13_a_baseline_rate);
    if st.w13_a_baseline_rate > 0.0 {
        rec.notes.push(format!(
            "while team B is alone, team A sends {}/s (its baseline): the phases differ by what the flood sends past the limit",
            fmt_int(st.w13_a_baseline_rate)
        ));
    }
    if st.w13_rate >= limit as f64 {
        rec.notes.push(format!(
            "team B's rate ({}/s) is not under the limit ({limit}/s): it is limited too",
            fmt_int(st.w13_rate)
        ));
    }
    // Every accepted event of each team, for the ledger.
    let mut a_all = Records::default();
    let mut b_all = Records::default();
    let mut keep = |p: &mut PhaseOut| {
        a_all.requests.append(&mut p.a.requests);
        a_all.events.append(&mut p.a.events);
        b_all.requests.append(&mut p.b.requests);
        b_all.events.append(&mut p.b.events);
        (a_all.events.len() + b_all.events.len()) as u64
    };
    let mut first_errors: Vec<String> = Vec::new();
    let mut note_errors = |p: &PhaseOut, what: &str| {
        if let Some(e) = p.b_live.first_error.lock().expect("live").clone() {
            first_errors.push(format!("{what}: team B's first error: {e}"));
        }
        if let Some(c) = &p.a_counts {
            if let Some(e) = c.first_other.lock().expect("flood").clone() {
                first_errors.push(format!(
                    "{what}: team A's first answer other than 200/429: {e}"
                ));
            }
        }
    };
    // 1. Warm-up: both routes, team A on one connection.
    let mut warm = run_phase(&d, "warm-up", st.warmup_s.max(0.1), 1).await;
    note_errors(&warm, "warm-up");
    let mut accepted = keep(&mut warm);
    // 2.–4. The pairs of phases.
    let mut alone = Tally::new();
    let mut flooded = Tally::new();
    let mut late_settles = 0u32;
    let mut worst = (None::<f64>, None::<f64>);
    for pair in 1..=pairs {
        let mut pcts = Vec::with_capacity(2);
        for flood in [false, true] {
            if !settle(receiver, accepted).await {
                late_settles += 1;
            }
            let what = format!(
                "pair {pair}/{pairs} {}",
                if flood { "flooded" } else { "alone" }
            );
            let mut p = run_phase(&d, &what, phase_s, if flood { conns } else { 0 }).await;
            note_errors(&p, &what);
            let lat = if flood {
                flooded.absorb(&p)
            } else {
                alone.absorb(&p)
            };
            accepted = keep(&mut p);
            pcts.push(stats::percentiles(&lat.send));
        }
        let (pa, pf) = (pcts[0], pcts[1]);
        let kind = |what: &str| format!("pair{pair}_b_{what}");
        rec.set_opt(&kind("alone_p50_ms"), pa.map(|p| p.p50_ms));
        rec.set_opt(&kind("alone_p99_ms"), pa.map(|p| p.p99_ms));
        rec.set_opt(&kind("flooded_p50_ms"), pf.map(|p| p.p50_ms));
        rec.set_opt(&kind("flooded_p99_ms"), pf.map(|p| p.p99_ms));
        let r50 = ratio(pf.map(|p| p.p50_ms), pa.map(|p| p.p50_ms));
        let r99 = ratio(pf.map(|p| p.p99_ms), pa.map(|p| p.p99_ms));
        rec.set_opt(&kind("p50_ratio"), r50);
        rec.set_opt(&kind("p99_ratio"), r99);
        let max = |w: Option<f64>, r: Option<f64>| match (w, r) {
            (Some(w), Some(r)) => Some(w.max(r)),
            (w, r) => w.or(r),
        };
        worst = (max(worst.0, r50), max(worst.1, r99));
    }
    rec.notes.append(&mut first_errors);
    if late_settles > 0 {
        rec.notes.push(format!(
            "{late_settles} phase(s) started before the receiver had every event accepted so far \
             (waited {} s)",
            SETTLE_MAX.as_secs()
        ));
    }
    // 5. Deliveries, then one ledger over both teams.
    let t0 = Instant::now();
    while receiver.counters().unique < accepted && t0.elapsed().as_secs_f64() < st.drain_timeout_s {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rec.set("drain_s", t0.elapsed().as_secs_f64());
    let a_n = a_all.events.len();
    let mut all = a_all;
    all.requests.append(&mut b_all.requests);
    all.events.append(&mut b_all.events);
    let hits = runner::close_ledger(rec, &all, receiver, Some(api_a), true).await;
    rec.ledger
        .require_all_delivered("within --drain-timeout of the end of the load");
    let delivered = |evs: &[EventRec]| evs.iter().filter(|e| hits.contains_key(&e.id)).count();
    let (a_events, b_events) = all.events.split_at(a_n);
    let (a_del, b_del) = (delivered(a_events), delivered(b_events));
    rec.set("accepted", all.events.len() as f64);
    rec.set("a_accepted", a_events.len() as f64);
    rec.set("b_accepted", b_events.len() as f64);
    rec.set("a_delivered", a_del as f64);
    rec.set("b_delivered", b_del as f64);
    for (team, n, del) in [
        ("A (flooder)", a_events.len(), a_del),
        ("B (steady)", b_events.len(), b_del),
    ] {
        if del < n {
            rec.notes.push(format!(
                "team {team}: {} of {n} accepted events not delivered",
                n - del
            ));
        }
    }
    rec.set_opt(
        "server_peak_rss_mib",
        procfs::vm_hwm_kib(gw.pid()).map(|k| k as f64 / 1024.0),
    );
    // 6. Figures.
    figures(rec, &alone, &flooded, limit, phase_s);
    rec.set_opt("b_p50_ratio_worst_pair", worst.0);
    rec.set_opt("b_p99_ratio_worst_pair", worst.1);
    for (q, key) in [("p50", "b_p50_ratio"), ("p99", "b_p99_ratio")] {
        if let Some(r) = rec.metrics.get(key).copied() {
            if r > TARGET_RATIO {
                rec.notes.push(format!(
                    "team B's {q} flooded ÷ alone is {r:.3}, over the {target:.2} target",
                    target = TARGET_RATIO
                ));
            }
        }
    }
    Ok(())
}

/// The pooled figures of both kinds of phase.
fn figures(rec: &mut RunRecord, alone: &Tally, flooded: &Tally, limit: u32, phase_s: f64) {
    for (name, t) in [("alone", alone), ("flooded", flooded)] {
        if let Some(p) = stats::percentiles(&t.lat.send) {
            rec.set(&format!("b_{name}_p50_ms"), p.p50_ms);
            rec.set(&format!("b_{name}_p99_ms"), p.p99_ms);
            rec.set(&format!("b_{name}_p999_ms"), p.p999_ms);
            rec.set(&format!("b_{name}_max_ms"), p.max_ms);
            rec.set(&format!("b_{name}_requests"), p.count as f64);
        }
        if let Some(p) = stats::percentiles(&t.lat.sched) {
            rec.set(&format!("b_{name}_sched_p50_ms"), p.p50_ms);
            rec.set(&format!("b_{name}_sched_p99_ms"), p.p99_ms);
        }
        if let Some(p) = stats::percentiles(&t.lat.lag) {
            rec.set(&format!("b_{name}_gen_lag_p99_ms"), p.p99_ms);
        }
        if t.secs > 0.0 {
            rec.set(
                &format!("b_{name}_accepted_per_s"),
                t.b_accepted as f64 / t.secs,
            );
            rec.set_opt(
                &format!("server_cpu_{name}"),
                t.server_cpu_s.map(|c| c / t.secs),
            );
            rec.set(&format!("bench_cpu_{name}"), t.bench_cpu_s / t.secs);
        }
    }
    for q in ["p50", "p99", "p999"] {
        let r = ratio(
            metric(rec, &format!("b_flooded_{q}_ms")),
            metric(rec, &format!("b_alone_{q}_ms")),
        );
        rec.set_opt(&format!("b_{q}_ratio"), r);
    }
    let r = ratio(
        metric(rec, "b_flooded_sched_p99_ms"),
        metric(rec, "b_alone_sched_p99_ms"),
    );
    rec.set_opt("b_sched_p99_ratio", r);
    rec.set("b_rejected", (alone.b_rejected + flooded.b_rejected) as f64);
    rec.set("b_errors", (alone.b_errors + flooded.b_errors) as f64);
    if alone.b_rejected + flooded.b_rejected > 0 {
        rec.notes.push(format!(
            "team B was refused (429/503) {} times alone and {} times flooded",
            alone.b_rejected, flooded.b_rejected
        ));
    }
    let f = flooded;
    if f.secs > 0.0 {
        rec.set("a_sent_per_s", f.a_sent as f64 / f.secs);
        rec.set("a_accepted_per_s", f.a_accepted as f64 / f.secs);
        rec.set("a_limited_per_s", f.a_limited as f64 / f.secs);
        // A rested team may burst one second's allowance, then refills at the limit.
        rec.set(
            "a_allowance_per_s",
            limit as f64 * (phase_s + 1.0) / phase_s,
        );
    }
    rec.set("a_429s", f.a_limited as f64);
    rec.set("a_429_without_retry_after", f.a_without_retry_after as f64);
    rec.set("a_retry_after_unparsed", f.a_retry_after_unparsed as f64);
    rec.set(
        "a_429_all_retry_after",
        if f.a_limited > 0 && f.a_without_retry_after == 0 {
            1.0
        } else {
            0.0
        },
    );
    if f.a_retry_after_min <= f.a_retry_after_max {
        rec.set("a_retry_after_min_s", f.a_retry_after_min as f64);
        rec.set("a_retry_after_max_s", f.a_retry_after_max as f64);
    }
    rec.set("a_other", f.a_other as f64);
    if f.a_limited == 0 {
        rec.notes
            .push("team A was never answered 429: the flood did not reach the limit".into());
    } else if f.a_without_retry_after > 0 {
        rec.notes.push(format!(
            "{} of team A's {} 429s carried no Retry-After",
            f.a_without_retry_after, f.a_limited
        ));
    }
}
