//! One measured run of traffic against one mode: start the receiver and the system under
//! test, set up its routes, drive the load, wait for deliveries, close the ledger, compute
//! the figures, stop everything.

use crate::bare;
use crate::cli::{Mode, Settings};
use crate::clock;
use crate::gateway::{Api, Durability, Gateway, GatewayHome, GatewayOpts};
use crate::generator::{self, Endpoint, Live, Records, Route, Target};
use crate::httpc::HttpClient;
use crate::ledger::{self, Ledger, Waiting};
use crate::procfs;
use crate::receiver::{Hit, Receiver, ReceiverConfig};
use crate::relay;
use crate::stats;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Uri;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Everything a run needs from the invocation.
pub struct Ctx {
    pub settings: Settings,
    pub client: HttpClient,
    pub fasthook_bin: Option<PathBuf>,
    /// This executable, started as `relay` for forward mode.
    pub self_exe: PathBuf,
    /// The modes actually run.
    pub modes: Vec<Mode>,
}

/// Receiver paths a request goes to: one per destination (fan-out when several).
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub dests: Vec<String>,
    pub class: u8,
}

/// The routes the generator uses round-robin.
#[derive(Debug, Clone)]
pub struct Topology {
    pub routes: Vec<RouteSpec>,
}

impl Topology {
    /// W1, W8: one source, one destination.
    pub fn single() -> Topology {
        Topology {
            routes: vec![RouteSpec {
                dests: vec!["/ok/0".into()],
                class: 0,
            }],
        }
    }

    /// W2: one source, `k` destinations.
    pub fn fanout(k: usize) -> Topology {
        Topology {
            routes: vec![RouteSpec {
                dests: (0..k).map(|i| format!("/ok/{i}")).collect(),
                class: 0,
            }],
        }
    }

    /// W3: `n` sources, one destination each.
    pub fn spread(n: usize) -> Topology {
        Topology {
            routes: (0..n)
                .map(|i| RouteSpec {
                    dests: vec![format!("/ok/{i}")],
                    class: 0,
                })
                .collect(),
        }
    }

    /// Whether class 1 goes to a `/delay/` path (and is not waited for after the load).
    pub fn class1_is_delayed(&self) -> bool {
        self.routes
            .iter()
            .any(|r| r.class == 1 && r.dests.iter().any(|d| d.starts_with("/delay/")))
    }

    /// W4: `healthy` quick destinations, plus one answering after `slow_ms` if given.
    pub fn slow_beside(healthy: usize, slow_ms: Option<u64>) -> Topology {
        let mut routes: Vec<RouteSpec> = (0..healthy)
            .map(|i| RouteSpec {
                dests: vec![format!("/ok/{i}")],
                class: 0,
            })
            .collect();
        match slow_ms {
            Some(ms) => routes.insert(
                0,
                RouteSpec {
                    dests: vec![format!("/delay/{ms}/slow")],
                    class: 1,
                },
            ),
            // The slow destination's healthy twin: class 1 too, so "healthy" means the
            // same 100 destinations in both variants.
            None => routes.insert(
                0,
                RouteSpec {
                    dests: vec![format!("/ok/{healthy}")],
                    class: 1,
                },
            ),
        }
        Topology { routes }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Load {
    Closed { concurrency: usize },
    Open { rate: f64 },
}

#[derive(Debug, Clone)]
pub struct TrafficPlan {
    pub workload: &'static str,
    pub variant: String,
    pub topology: Topology,
    pub body: Bytes,
    pub load: Load,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub max_body_bytes: Option<u64>,
    pub per_id_labels: bool,
    /// max_concurrency of the gateway's destinations (default: --dest-concurrency).
    pub dest_concurrency: Option<u32>,
    /// Scrape the gateway's `/metrics` this often while the load runs, as Prometheus would.
    pub scrape_every: Option<Duration>,
}

/// One run's result: named figures, the ledger, and an error if it could not complete.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub workload: String,
    pub variant: String,
    pub mode: Mode,
    pub rep: usize,
    pub metrics: BTreeMap<String, f64>,
    pub ledger: Ledger,
    pub error: Option<String>,
    pub notes: Vec<String>,
    /// Readings taken every second while the run went on (W10, W12; JSON only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelinePoint>,
}

/// One reading of a run's timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the load started.
    pub t_s: f64,
    /// The server's resident set (VmRSS).
    pub rss_mib: Option<f64>,
    /// What the destination's circuit document said: its state and `queued_count`.
    pub state: Option<String>,
    pub queued: Option<u64>,
    /// Events accepted and delivered (unique ids) so far.
    pub accepted: u64,
    pub delivered: u64,
    /// W12: the gateway's data directory, MiB allocated on disk (everything in it: sled's
    /// files and `bodies/`) and apparent; `bodies/` alone, and its segment files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_apparent_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bodies_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<u64>,
    /// W12: sled's log file (`<data dir>/db`) alone, MiB allocated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sled_log_mib: Option<f64>,
    /// W12: deleted files the server still holds open, MiB allocated (not in `disk_mib`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_open_mib: Option<f64>,
}

impl RunRecord {
    pub fn new(workload: &str, variant: &str, mode: Mode, rep: usize) -> RunRecord {
        RunRecord {
            workload: workload.into(),
            variant: variant.into(),
            mode,
            rep,
            metrics: BTreeMap::new(),
            ledger: Ledger::empty(),
            error: None,
            notes: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// Counted in the medians: completed, and its ledger balances.
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.ledger.balanced
    }

    pub fn label(&self) -> String {
        format!(
            "{}/{} {} #{}",
            self.workload,
            self.variant,
            self.mode.name(),
            self.rep + 1
        )
    }

    pub fn set(&mut self, key: &str, v: f64) {
        if v.is_finite() {
            self.metrics.insert(key.into(), v);
        }
    }

    pub fn set_opt(&mut self, key: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.set(key, v);
        }
    }
}

/// A JSON body of exactly `n` bytes (at least a small fixed document).
pub fn json_body(n: usize) -> Bytes {
    let head = r#"{"type":"bench.event","data":{"pad":""#;
    let tail = r#""}}"#;
    let pad = n.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(n.max(head.len() + tail.len()));
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    Bytes::from(s)
}

/// The system under test for one run.
pub enum Sut {
    Ceiling,
    Forward {
        child: crate::child::ManagedChild,
        base: String,
    },
    Gateway {
        gw: Box<Gateway>,
        _home: GatewayHome,
    },
    /// The bare durable relay (`bare.rs`), on its own temporary data directory.
    Bare {
        child: crate::child::ManagedChild,
        base: String,
        _data: tempfile::TempDir,
    },
}

impl Sut {
    pub async fn start(
        ctx: &Ctx,
        mode: Mode,
        receiver_base: &str,
        max_body_bytes: Option<u64>,
        per_id_labels: bool,
    ) -> Result<Sut> {
        match mode {
            Mode::Ceiling => Ok(Sut::Ceiling),
            Mode::Forward => {
                let mut cmd = Command::new(&ctx.self_exe);
                cmd.arg("relay").arg("--target").arg(receiver_base);
                let s = crate::child::spawn(
                    cmd,
                    "relay",
                    relay::LISTEN_MARKER,
                    Duration::from_secs(10),
                )
                .await?;
                Ok(Sut::Forward {
                    child: s.child,
                    base: s.base_url,
                })
            }
            Mode::Bare => {
                let data = tempfile::Builder::new()
                    .prefix("fasthook-bench-bare-")
                    .tempdir()?;
                let mut cmd = Command::new(&ctx.self_exe);
                cmd.arg("bare")
                    .arg("--target")
                    .arg(receiver_base)
                    .arg("--data-dir")
                    .arg(data.path());
                let s =
                    crate::child::spawn(cmd, "bare", bare::LISTEN_MARKER, Duration::from_secs(10))
                        .await?;
                Ok(Sut::Bare {
                    child: s.child,
                    base: s.base_url,
                    _data: data,
                })
            }
            Mode::Gateway | Mode::GatewayNosync => {
                let bin = ctx
                    .fasthook_bin
                    .as_ref()
                    .ok_or_else(|| anyhow!("no fasthook binary"))?;
                let opts = GatewayOpts {
                    durability: if mode == Mode::Gateway {
                        Durability::Fsync
                    } else {
                        Durability::None
                    },
                    max_body_bytes,
                    per_id_labels,
                    ..GatewayOpts::new(Durability::Fsync)
                };
                let home = GatewayHome::new(&opts)?;
                let gw = Gateway::start(bin, &home, &ctx.client, Duration::from_secs(60)).await?;
                Ok(Sut::Gateway {
                    gw: Box::new(gw),
                    _home: home,
                })
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Sut::Ceiling => None,
            Sut::Forward { child, .. } | Sut::Bare { child, .. } => Some(child.pid),
            Sut::Gateway { gw, .. } => Some(gw.pid()),
        }
    }

    /// Whether accepted events can still be on their way after the answer (a store and
    /// forward hop), so the run waits for deliveries to catch up before its ledger.
    pub fn queues(&self) -> bool {
        matches!(self, Sut::Gateway { .. } | Sut::Bare { .. })
    }

    pub fn api(&self) -> Option<&Api> {
        match self {
            Sut::Gateway { gw, .. } => Some(&gw.api),
            _ => None,
        }
    }

    /// The generator's routes for `topo`; on the gateway this creates sources,
    /// destinations and connections through the public API.
    pub async fn routes(
        &self,
        topo: &Topology,
        receiver_base: &str,
        dest_concurrency: u32,
    ) -> Result<Vec<Route>> {
        let uri =
            |s: String| -> Result<Uri> { s.parse::<Uri>().with_context(|| format!("bad uri {s}")) };
        match self {
            Sut::Ceiling => topo
                .routes
                .iter()
                .map(|r| {
                    Ok(Route {
                        target: Target::Direct(
                            r.dests
                                .iter()
                                .map(|d| uri(format!("{receiver_base}{d}")))
                                .collect::<Result<_>>()?,
                        ),
                        class: r.class,
                    })
                })
                .collect(),
            Sut::Bare { base, .. } => topo
                .routes
                .iter()
                .map(|r| match r.dests.as_slice() {
                    [dest] => Ok(Route {
                        target: Target::Relay {
                            uri: uri(format!("{base}{dest}"))?,
                            dests: None,
                            fanout: 1,
                        },
                        class: r.class,
                    }),
                    _ => Err(anyhow!("the bare relay has one destination per route")),
                })
                .collect(),
            Sut::Forward { base, .. } => topo
                .routes
                .iter()
                .map(|r| {
                    let (path, dests) = if r.dests.len() == 1 {
                        (r.dests[0].clone(), None)
                    } else {
                        (
                            "/fanout".to_string(),
                            Some(HeaderValue::from_str(&r.dests.join(","))?),
                        )
                    };
                    Ok(Route {
                        target: Target::Relay {
                            uri: uri(format!("{base}{path}"))?,
                            dests,
                            fanout: r.dests.len(),
                        },
                        class: r.class,
                    })
                })
                .collect(),
            Sut::Gateway { gw, .. } => {
                let src_ids =
                    setup_gateway_routes(&gw.api, topo, receiver_base, dest_concurrency).await?;
                topo.routes
                    .iter()
                    .zip(src_ids)
                    .map(|(r, src)| {
                        Ok(Route {
                            target: Target::Gateway(uri(format!("{}/e/{src}", gw.api.base))?),
                            class: r.class,
                        })
                    })
                    .collect()
            }
        }
    }

    pub async fn stop(&mut self) {
        match self {
            Sut::Ceiling => {}
            Sut::Forward { child, .. } | Sut::Bare { child, .. } => {
                child.stop(Duration::from_secs(2)).await;
            }
            Sut::Gateway { gw, .. } => {
                gw.stop(Duration::from_secs(30)).await;
            }
        }
    }
}

/// Creates one source per route and a destination + connection per receiver path, 16 API
/// calls at a time; returns the source id of each route.
pub async fn setup_gateway_routes(
    api: &Api,
    topo: &Topology,
    receiver_base: &str,
    dest_concurrency: u32,
) -> Result<Vec<String>> {
    let n = topo.routes.len();
    let workers = 16.min(n.max(1));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let api = api.clone();
        let routes: Vec<(usize, RouteSpec)> = topo
            .routes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % workers == w)
            .map(|(i, r)| (i, r.clone()))
            .collect();
        let base = receiver_base.to_string();
        set.spawn(async move {
            let mut out = Vec::with_capacity(routes.len());
            for (i, r) in routes {
                let src = api.create_source(&format!("bench-src-{i}")).await?;
                for (j, d) in r.dests.iter().enumerate() {
                    let des = api
                        .create_destination(
                            &format!("bench-des-{i}-{j}"),
                            &format!("{base}{d}"),
                            Some(dest_concurrency),
                        )
                        .await?;
                    api.create_connection(&format!("bench-web-{i}-{j}"), &src, &des)
                        .await?;
                }
                out.push((i, src));
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let mut ids = vec![String::new(); n];
    while let Some(r) = set.join_next().await {
        for (i, src) in r?? {
            ids[i] = src;
        }
    }
    Ok(ids)
}

/// Figures read at the edges of the measurement window.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    server_cpu: Option<f64>,
    bench_cpu: f64,
    flushes: Option<f64>,
}

async fn sample(pid: Option<u32>, api: Option<&Api>) -> Sample {
    let flushes = match api {
        Some(a) => a.flush_count().await.map(|(_, v)| v),
        None => None,
    };
    Sample {
        server_cpu: pid.and_then(procfs::cpu_seconds),
        bench_cpu: procfs::self_cpu_seconds(),
        flushes,
    }
}

pub fn fmt_int(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The progress line, on stderr: rewritten in place on a terminal, a line every 2 s otherwise.
async fn progress(
    label: String,
    live: Arc<Live>,
    receiver: Arc<Receiver>,
    start_ns: u64,
    stop_ns: u64,
) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let (mut last_acc, mut last_del, mut last_t) = (0u64, 0u64, clock::now_ns());
    loop {
        tokio::time::sleep(every).await;
        let now = clock::now_ns();
        let acc = live.accepted_events.load(Ordering::Relaxed);
        let del = receiver.counters().unique;
        let dt = (now - last_t) as f64 / 1e9;
        let phase = if now < stop_ns {
            format!(
                "{:.1}/{:.1}s",
                (now - start_ns) as f64 / 1e9,
                (stop_ns - start_ns) as f64 / 1e9
            )
        } else {
            "draining".to_string()
        };
        let line = format!(
            "  {label}  {phase}  accepted {} ({}/s)  delivered {} ({}/s)  rejected {}  errors {}",
            fmt_int(acc as f64),
            fmt_int((acc - last_acc) as f64 / dt),
            fmt_int(del as f64),
            fmt_int(del.saturating_sub(last_del) as f64 / dt),
            live.rejected.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
        );
        print_progress(tty, &line);
        (last_acc, last_del, last_t) = (acc, del, now);
    }
}

fn clear_progress() {
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

/// Waits for deliveries to catch up with acceptances (events for a deliberately slow
/// destination are not waited for), then returns how long that took.
async fn drain(receiver: &Receiver, live: &Live, skip_class1: bool, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let want = live.accepted_class[0].load(Ordering::Relaxed)
        + if skip_class1 {
            0
        } else {
            live.accepted_class[1].load(Ordering::Relaxed)
        };
    loop {
        let c = receiver.counters();
        if c.unique.saturating_sub(c.unique_delayed) >= want || t0.elapsed() > timeout {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the receiver has seen no new delivery for `quiet` (at most `max`).
async fn settle(receiver: &Receiver, quiet: Duration, max: Duration) {
    let t0 = Instant::now();
    let mut last = receiver.counters().hits;
    let mut since = Instant::now();
    while t0.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let h = receiver.counters().hits;
        if h != last {
            last = h;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Closes the ledger of a run: accepted ids from the generator, deliveries from the
/// receiver, dead letters and backlog from the system under test.
///
/// On the gateway, when events are still waiting, the engine is paused (when the gateway
/// supports it) so that the backlog can be read while nothing moves. Without a pause the
/// reading races with deliveries still going on, so it is taken again, up to 12 times,
/// until it balances; only a ledger that never balances makes the run void.
/// `expect_all_delivered`: the drain waited for every event (not so when a deliberately
/// slow destination keeps a backlog).
pub async fn close_ledger(
    rec: &mut RunRecord,
    records: &Records,
    receiver: &Receiver,
    api: Option<&Api>,
    expect_all_delivered: bool,
) -> HashMap<Box<str>, Hit> {
    let accepted_total = records.events.len() as u64;
    let Some(api) = api else {
        let hits = receiver.snapshot();
        rec.ledger = ledger::compute(
            records.events.iter().map(|e| &*e.id),
            hits.iter().map(|(k, h)| (&**k, h.count)),
            [],
            Waiting::NoQueue,
        );
        return hits;
    };
    let all_in = receiver.counters().unique >= accepted_total;
    if !all_in && expect_all_delivered {
        rec.notes
            .push("not every event was delivered before the drain timeout".into());
    }
    if !all_in {
        if api.pause_engine().await {
            rec.notes
                .push("engine paused at cutoff to read the backlog".into());
            settle(
                receiver,
                Duration::from_millis(400),
                Duration::from_secs(10),
            )
            .await;
        } else {
            rec.notes.push(
                "the gateway cannot pause its engine: backlog read while deliveries go on".into(),
            );
        }
    }
    let mut hits = HashMap::new();
    for attempt in 0..12 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let waiting = match api.waiting().await {
            Some(w) => Waiting::Measured(w),
            None => Waiting::Unknown,
        };
        let dead = match api.dead_letter_ids().await {
            Ok(d) => d,
            Err(e) => {
                if attempt == 0 {
                    rec.notes
                        .push(format!("dead-letter listing unavailable: {e:#}"));
                }
                Vec::new()
            }
        };
        hits = receiver.snapshot();
        rec.ledger = ledger::compute(
            records.events.iter().map(|e| &*e.id),
            hits.iter().map(|(k, h)| (&**k, h.count)),
            dead.iter().map(String::as_str),
            waiting,
        );
        if rec.ledger.balanced {
            if attempt > 0 {
                rec.notes.push(format!(
                    "ledger read {} times before it balanced",
                    attempt + 1
                ));
            }
            break;
        }
    }
    hits
}

/// Runs one traffic plan against one mode. Never fails: errors land in the record.
pub async fn run_traffic(ctx: &Ctx, mode: Mode, plan: &TrafficPlan, rep: usize) -> RunRecord {
    let mut rec = RunRecord::new(plan.workload, &plan.variant, mode, rep);
    if let Err(e) = traffic_inner(ctx, mode, plan, &mut rec).await {
        rec.error = Some(format!("{e:#}"));
    }
    clear_progress();
    eprintln!("{}", run_summary(&rec));
    rec
}

/// The line printed after each run: its headline figures and its ledger.
pub fn run_summary(rec: &RunRecord) -> String {
    let m = |k: &str| rec.metrics.get(k).copied();
    let mut s = format!("  {}:", rec.label());
    if let Some(e) = &rec.error {
        return format!("{s} FAILED: {e}");
    }
    if let Some(v) = m("accepted_per_s") {
        s += &format!(" {} accepted/s", fmt_int(v));
    }
    if let Some(v) = m("delivered_per_s") {
        s += &format!(", {} delivered/s", fmt_int(v));
    }
    if let Some(v) = m("ingest_p99_ms") {
        s += &format!(", ingest p99 {v:.2} ms");
    }
    if let Some(v) = m("e2e_p99_ms") {
        s += &format!(", e2e p99 {v:.2} ms");
    }
    format!("{s}\n    ledger: {}", rec.ledger)
}

async fn traffic_inner(
    ctx: &Ctx,
    mode: Mode,
    plan: &TrafficPlan,
    rec: &mut RunRecord,
) -> Result<()> {
    let st = &ctx.settings;
    let receiver = Arc::new(
        Receiver::start(ReceiverConfig {
            drop_nth: st.receiver_drop_nth,
        })
        .await?,
    );
    let recv_base = receiver.base_url();
    let t_setup = Instant::now();
    let mut sut = Sut::start(
        ctx,
        mode,
        &recv_base,
        plan.max_body_bytes,
        plan.per_id_labels,
    )
    .await?;
    let result = async {
        let dest_conc = plan.dest_concurrency.unwrap_or(st.dest_concurrency);
        let routes = sut.routes(&plan.topology, &recv_base, dest_conc).await?;
        rec.set("setup_s", t_setup.elapsed().as_secs_f64());
        let ep = Arc::new(Endpoint {
            routes,
            client: ctx.client.clone(),
            body: plan.body.clone(),
            timeout: Duration::from_secs(30),
        });
        let live = Arc::new(Live::default());
        let start = clock::now_ns();
        let win_start = start + clock::secs_ns(plan.warmup_s);
        let stop = win_start + clock::secs_ns(plan.duration_s);
        let pid = sut.pid();
        let api = sut.api().cloned();
        let sampler = tokio::spawn(async move {
            tokio::time::sleep_until(clock::instant_at(win_start).into()).await;
            let a = sample(pid, api.as_ref()).await;
            tokio::time::sleep_until(clock::instant_at(stop).into()).await;
            let b = sample(pid, api.as_ref()).await;
            (a, b)
        });
        // A scraper beside the load, from the start of the warm-up to the end of the window.
        let scraper = match (plan.scrape_every, sut.api().cloned()) {
            (Some(every), Some(api)) => Some(tokio::spawn(async move {
                let (mut scrapes, mut took, mut bytes) = (0u32, Duration::ZERO, 0usize);
                while clock::now_ns() < stop {
                    tokio::time::sleep(every).await;
                    let t0 = Instant::now();
                    if let Ok(text) = api.metrics_text().await {
                        took += t0.elapsed();
                        bytes = text.len();
                        scrapes += 1;
                    }
                }
                (scrapes, took, bytes)
            })),
            _ => None,
        };
        let prog = tokio::spawn(progress(
            rec.label(),
            live.clone(),
            receiver.clone(),
            start,
            stop,
        ));
        let records = match plan.load {
            Load::Closed { concurrency } => {
                generator::closed_loop(ep.clone(), concurrency, stop, u64::MAX, live.clone()).await
            }
            Load::Open { rate } => {
                rec.set("offered_per_s", rate);
                generator::open_loop(ep.clone(), rate, st.max_inflight, start, stop, live.clone())
                    .await
            }
        };
        let (sa, sb) = sampler.await?;
        if let Some(scraper) = scraper {
            let (scrapes, took, bytes) = scraper.await?;
            rec.set("scrapes", f64::from(scrapes));
            if scrapes > 0 {
                rec.set(
                    "scrape_ms",
                    took.as_secs_f64() * 1000.0 / f64::from(scrapes),
                );
                rec.set("scrape_kib", bytes as f64 / 1024.0);
            }
        }
        let drain_t = if sut.queues() {
            let skip = plan.topology.class1_is_delayed();
            drain(
                &receiver,
                &live,
                skip,
                Duration::from_secs_f64(st.drain_timeout_s),
            )
            .await
        } else {
            Duration::ZERO
        };
        rec.set("drain_s", drain_t.as_secs_f64());
        let expect_all = !plan.topology.class1_is_delayed();
        let hits = close_ledger(rec, &records, &receiver, sut.api(), expect_all).await;
        prog.abort();
        rec.set("rejected", live.rejected.load(Ordering::Relaxed) as f64);
        rec.set("errors", live.errors.load(Ordering::Relaxed) as f64);
        if let Some(e) = live.first_error.lock().expect("live").clone() {
            rec.notes.push(format!("first error: {e}"));
        }
        window_metrics(
            rec,
            &records,
            &hits,
            win_start,
            stop,
            sa,
            sb,
            plan.body.len(),
        );
        if let Some(pid) = sut.pid() {
            rec.set_opt(
                "server_peak_rss_mib",
                procfs::vm_hwm_kib(pid).map(|k| k as f64 / 1024.0),
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    sut.stop().await;
    receiver.shutdown();
    result
}

#[allow(clippy::too_many_arguments)]
fn window_metrics(
    rec: &mut RunRecord,
    records: &Records,
    hits: &HashMap<Box<str>, Hit>,
    ws: u64,
    we: u64,
    sa: Sample,
    sb: Sample,
    body_len: usize,
) {
    let secs = (we - ws) as f64 / 1e9;
    let in_win = |t: u64| t >= ws && t < we;
    rec.set("window_s", secs);

    let mut ingest = stats::new_histogram();
    let mut lag = stats::new_histogram();
    let (mut reqs, mut acc) = (0u64, 0u64);
    for r in &records.requests {
        if in_win(r.done) {
            reqs += 1;
            acc += r.events as u64;
        }
        if in_win(r.t0) {
            stats::record_ns(&mut ingest, r.done.saturating_sub(r.t0));
            stats::record_ns(&mut lag, r.sent.saturating_sub(r.t0));
        }
    }
    let mut e2e = [stats::new_histogram(), stats::new_histogram()];
    let mut e2e_all = stats::new_histogram();
    let mut class_of: HashMap<&str, u8> = HashMap::with_capacity(records.events.len());
    let mut classes_seen = [false; 2];
    for e in &records.events {
        let c = (e.class as usize).min(1);
        classes_seen[c] = true;
        class_of.insert(&e.id, c as u8);
        if in_win(e.t0) {
            if let Some(h) = hits.get(&e.id) {
                let d = h.first_ns.saturating_sub(e.t0);
                stats::record_ns(&mut e2e[c], d);
                stats::record_ns(&mut e2e_all, d);
            }
        }
    }
    let mut delivered = [0u64; 2];
    for (id, h) in hits {
        if in_win(h.first_ns) {
            let c = class_of.get(&**id).copied().unwrap_or(0) as usize;
            delivered[c] += 1;
        }
    }
    let del = delivered[0] + delivered[1];
    let acc_s = acc as f64 / secs;
    let del_s = del as f64 / secs;
    rec.set("req_per_s", reqs as f64 / secs);
    rec.set("accepted_per_s", acc_s);
    rec.set("delivered_per_s", del_s);
    rec.set("sustained_per_s", acc_s.min(del_s));
    rec.set(
        "mib_per_s",
        reqs as f64 * body_len as f64 / 1048576.0 / secs,
    );
    if let Some(p) = stats::percentiles(&ingest) {
        rec.set("ingest_p50_ms", p.p50_ms);
        rec.set("ingest_p99_ms", p.p99_ms);
        rec.set("ingest_p999_ms", p.p999_ms);
        rec.set("ingest_max_ms", p.max_ms);
    }
    if let Some(p) = stats::percentiles(&lag) {
        // Open loop only: how late the generator sent requests (timer ticks, a busy
        // machine, a full in-flight window); it is part of the latencies above.
        if records.requests.iter().any(|r| r.sent != r.t0) {
            rec.set("gen_lag_p50_ms", p.p50_ms);
            rec.set("gen_lag_p99_ms", p.p99_ms);
        }
    }
    if let Some(p) = stats::percentiles(&e2e_all) {
        rec.set("e2e_p50_ms", p.p50_ms);
        rec.set("e2e_p99_ms", p.p99_ms);
        rec.set("e2e_p999_ms", p.p999_ms);
        rec.set("e2e_max_ms", p.max_ms);
    }
    if classes_seen[1] {
        rec.set("healthy_delivered_per_s", delivered[0] as f64 / secs);
        rec.set("dest0_delivered_per_s", delivered[1] as f64 / secs);
        if let Some(p) = stats::percentiles(&e2e[0]) {
            rec.set("healthy_e2e_p50_ms", p.p50_ms);
            rec.set("healthy_e2e_p99_ms", p.p99_ms);
        }
    } else {
        rec.set("healthy_delivered_per_s", del_s);
        rec.set_opt("healthy_e2e_p50_ms", rec.metrics.get("e2e_p50_ms").copied());
        rec.set_opt("healthy_e2e_p99_ms", rec.metrics.get("e2e_p99_ms").copied());
    }
    // Each event costs one ingest and one delivery; when the two rates differ within the
    // window, their mean is the number of whole events the CPU time paid for.
    let events = (acc + del) as f64 / 2.0;
    if events > 0.0 {
        if let (Some(a), Some(b)) = (sa.server_cpu, sb.server_cpu) {
            rec.set("server_cpu_s_per_1k", (b - a) / events * 1000.0);
        }
        rec.set(
            "bench_cpu_s_per_1k",
            (sb.bench_cpu - sa.bench_cpu) / events * 1000.0,
        );
    }
    if let (Some(a), Some(b)) = (sa.flushes, sb.flushes) {
        if b > a {
            rec.set("events_per_flush", acc as f64 / (b - a));
        }
    }
}

/// A progress line on stderr: rewritten in place on a terminal, one line each otherwise.
pub fn print_progress(tty: bool, line: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    if tty {
        let _ = write!(e, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(e, "{line}");
    }
    let _ = e.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_exact_size_and_are_json() {
        for n in [1024, 65536, 1 << 20] {
            let b = json_body(n);
            assert_eq!(b.len(), n);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["type"], "bench.event");
        }
        assert!(serde_json::from_slice::<serde_json::Value>(&json_body(1)).is_ok());
    }

    #[test]
    fn topologies() {
        assert_eq!(Topology::fanout(10).routes[0].dests.len(), 10);
        assert_eq!(Topology::spread(100).routes.len(), 100);
        let slow = Topology::slow_beside(100, Some(200));
        assert_eq!(slow.routes.len(), 101);
        assert_eq!(slow.routes.iter().filter(|r| r.class == 1).count(), 1);
        assert_eq!(slow.routes[0].dests[0], "/delay/200/slow");
        let base = Topology::slow_beside(100, None);
        assert_eq!(base.routes.len(), 101);
        assert_eq!(base.routes.iter().filter(|r| r.class == 1).count(), 1);
        assert!(base.routes.iter().all(|r| r.dests[0].starts_with("/ok/")));
        assert!(!base.class1_is_delayed() && slow.class1_is_delayed());
    }

    fn ceiling_ctx(drop_nth: Option<u64>) -> Ctx {
        let mut settings = crate::cli::BenchArgs::default_settings_for_tests();
        settings.receiver_drop_nth = drop_nth;
        settings.modes = vec![Mode::Ceiling];
        Ctx {
            settings,
            client: crate::httpc::client(),
            fasthook_bin: None,
            self_exe: std::env::current_exe().unwrap(),
            modes: vec![Mode::Ceiling],
        }
    }

    fn short_plan(load: Load) -> TrafficPlan {
        TrafficPlan {
            workload: "w1",
            variant: "test".into(),
            topology: Topology::single(),
            body: json_body(1024),
            load,
            warmup_s: 0.1,
            duration_s: 0.3,
            max_body_bytes: None,
            per_id_labels: true,
            dest_concurrency: None,
            scrape_every: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_run_balances_its_ledger() {
        let ctx = ceiling_ctx(None);
        for load in [Load::Closed { concurrency: 4 }, Load::Open { rate: 2000.0 }] {
            let r = run_traffic(&ctx, Mode::Ceiling, &short_plan(load), 0).await;
            assert!(r.error.is_none(), "{:?}", r.error);
            assert!(r.ledger.balanced, "{}", r.ledger);
            assert!(r.ledger.accepted > 100, "{}", r.ledger);
            assert!(r.valid());
            assert!(r.metrics["accepted_per_s"] > 0.0);
            assert!(r.metrics.contains_key("e2e_p99_ms"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_that_drops_one_hit_voids_the_run() {
        let ctx = ceiling_ctx(Some(50));
        let r = run_traffic(
            &ctx,
            Mode::Ceiling,
            &short_plan(Load::Closed { concurrency: 4 }),
            0,
        )
        .await;
        assert!(r.error.is_none(), "{:?}", r.error);
        assert!(!r.ledger.balanced, "{}", r.ledger);
        assert!(!r.valid());
        assert_eq!(r.ledger.unaccounted, 1, "{}", r.ledger);
        assert_eq!(r.ledger.delivered + 1, r.ledger.accepted);
        assert!(r.ledger.to_string().contains("VOID"));
        // And the report leaves it out of the medians and says so.
        let rep = crate::report::build(ctx.settings.clone(), vec![Mode::Ceiling], vec![r], vec![]);
        assert!(!rep.all_balanced);
        assert_eq!(rep.summaries[0].valid, 0);
        assert!(crate::report::render_text(&rep).contains("VOID"));
    }

    #[test]
    fn thousands() {
        assert_eq!(fmt_int(1234567.4), "1,234,567");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(0.0), "0");
    }
}
