//! The workloads, each run for every mode side by side: repetitions alternate the modes
//! (rep 1: ceiling, forward, gateway, gateway-nosync; rep 2: the same; …) so a noisy
//! neighbour hurts all of them alike, and the report takes medians.

use crate::cli::{Mode, Settings, Workload};
use crate::clock;
use crate::gateway::{self, Api, Durability, Gateway, GatewayHome, GatewayOpts};
use crate::generator::{self, Endpoint, Live, Records, Route, Target};
use crate::httpc;
use crate::ledger::{self, Waiting};
use crate::procfs;
use crate::receiver::{Receiver, ReceiverConfig};
use crate::report::{self, Report};
use crate::runner::{self, Ctx, Load, RunRecord, Topology, TrafficPlan};
use crate::stats;
use anyhow::{anyhow, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod w10;
mod w11;
mod w12;
mod w13;
mod w5;

pub use w12::multiples_text as w12_multiples_text;

/// The `fasthook` binary is needed and missing: exit status 2.
#[derive(Debug)]
pub struct MissingBinary(pub String);

impl std::fmt::Display for MissingBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MissingBinary {}

struct Bench {
    ctx: Ctx,
    runs: Vec<RunRecord>,
    notes: Vec<String>,
}

/// Runs every selected workload and returns the report.
pub async fn run(settings: Settings) -> Result<Report> {
    let mut notes = Vec::new();
    let mut modes = settings.modes.clone();
    let fasthook_bin = if modes.iter().any(|m| m.is_gateway()) {
        match gateway::locate_binary(settings.fasthook_bin.as_deref()) {
            Ok(p) => Some(p),
            Err(msg) if settings.quick && !settings.modes_explicit => {
                let note = format!("gateway modes skipped: {msg}");
                eprintln!("{note}");
                notes.push(note);
                modes.retain(|m| !m.is_gateway());
                None
            }
            Err(msg) => return Err(MissingBinary(msg).into()),
        }
    } else {
        None
    };
    let mut b = Bench {
        ctx: Ctx {
            settings: settings.clone(),
            client: httpc::client(),
            fasthook_bin,
            self_exe: std::env::current_exe()?,
            modes,
        },
        runs: Vec::new(),
        notes,
    };
    for w in settings.workloads.clone() {
        eprintln!("== {} ==", w.name());
        match w {
            Workload::W1 => w1(&mut b).await,
            Workload::W2 => w2(&mut b).await,
            Workload::W3 => w3(&mut b).await,
            Workload::W4 => w4(&mut b).await,
            Workload::W5 => w5::w5(&mut b).await,
            Workload::W6 => w6(&mut b).await,
            Workload::W7 => w7(&mut b).await,
            Workload::W8 => w8(&mut b).await,
            Workload::W9 => w9(&mut b).await,
            Workload::W10 => w10::w10(&mut b).await,
            Workload::W11 => w11::w11(&mut b).await,
            Workload::W12 => w12::w12(&mut b).await,
            Workload::W13 => w13::w13(&mut b).await,
            Workload::All => {}
        }
    }
    Ok(report::build(
        b.ctx.settings.clone(),
        b.ctx.modes.clone(),
        b.runs,
        b.notes,
    ))
}

impl Bench {
    fn plan(
        &self,
        workload: &'static str,
        variant: &str,
        topology: Topology,
        load: Load,
    ) -> TrafficPlan {
        let s = &self.ctx.settings;
        TrafficPlan {
            workload,
            variant: variant.into(),
            topology,
            body: runner::json_body(s.body_bytes),
            load,
            warmup_s: s.warmup_s,
            duration_s: s.duration_s,
            max_body_bytes: None,
            per_id_labels: true,
            dest_concurrency: None,
            scrape_every: None,
        }
    }

    fn closed(&self) -> Load {
        Load::Closed {
            concurrency: self.ctx.settings.concurrency,
        }
    }

    /// Every plan × every mode, `reps` times, modes alternating. The bare relay takes part
    /// in W1 only: it has one destination per route and no API.
    async fn alternate(&mut self, plans: &[TrafficPlan]) {
        let mut modes = self.ctx.modes.clone();
        if let Some(p) = plans.iter().find(|p| p.workload != "w1") {
            if modes.contains(&Mode::Bare) {
                modes.retain(|m| *m != Mode::Bare);
                self.notes
                    .push(format!("{} is not run for bare (W1 only)", p.workload));
            }
        }
        for rep in 0..self.ctx.settings.reps {
            for mode in modes.iter().copied() {
                for plan in plans {
                    let r = runner::run_traffic(&self.ctx, mode, plan, rep).await;
                    self.runs.push(r);
                }
            }
        }
    }

    fn gateway_modes(&mut self, workload: &str) -> Vec<Mode> {
        let g: Vec<Mode> = self
            .ctx
            .modes
            .iter()
            .copied()
            .filter(|m| m.is_gateway())
            .collect();
        let skipped: Vec<&str> = self
            .ctx
            .modes
            .iter()
            .filter(|m| !m.is_gateway())
            .map(|m| m.name())
            .collect();
        if !skipped.is_empty() {
            self.notes.push(format!(
                "{workload} measures the gateway only; not run for {}",
                skipped.join(", ")
            ));
        }
        g
    }

    /// The durable gateway alone (or the first gateway mode), unless `--modes` names more:
    /// for the long workloads (`what` says why, in the note on the modes left out).
    fn one_gateway_mode(&mut self, workload: &str, what: &str) -> Vec<Mode> {
        let modes = self.gateway_modes(workload);
        if self.ctx.settings.modes_explicit || modes.len() <= 1 {
            return modes;
        }
        let keep = if modes.contains(&Mode::Gateway) {
            Mode::Gateway
        } else {
            modes[0]
        };
        let others: Vec<&str> = modes
            .iter()
            .filter(|m| **m != keep)
            .map(|m| m.name())
            .collect();
        self.notes.push(format!(
            "{workload}{what} ran on {} only; not on {} (name them with --modes)",
            keep.name(),
            others.join(", ")
        ));
        vec![keep]
    }

    /// A healthy receiver, dropping every `--receiver-drop-nth` connection if asked to.
    async fn receiver(&self) -> Result<Receiver> {
        Receiver::start(ReceiverConfig {
            drop_nth: self.ctx.settings.receiver_drop_nth,
        })
        .await
    }

    fn gateway_opts(mode: Mode, per_id_labels: bool) -> GatewayOpts {
        GatewayOpts {
            durability: if mode == Mode::Gateway {
                Durability::Fsync
            } else {
                Durability::None
            },
            per_id_labels,
            ..GatewayOpts::new(Durability::Fsync)
        }
    }

    fn bin(&self) -> Result<std::path::PathBuf> {
        self.ctx
            .fasthook_bin
            .clone()
            .ok_or_else(|| anyhow!("no fasthook binary"))
    }
}

fn median_sustained(runs: &[RunRecord], workload: &str, variant: &str, mode: Mode) -> Option<f64> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.workload == workload && r.variant == variant && r.mode == mode && r.valid())
        .filter_map(|r| r.metrics.get("sustained_per_s").copied())
        .collect();
    stats::median(&v)
}

/// W1: maximum sustained rate (closed loop), then latency at 50 % of it (open loop).
async fn w1(b: &mut Bench) {
    let max = b.plan("w1", "max", Topology::single(), b.closed());
    b.alternate(std::slice::from_ref(&max)).await;
    let mut rates = Vec::new();
    for mode in b.ctx.modes.clone() {
        let rate = match b.ctx.settings.rate {
            Some(r) => Some(r),
            None => median_sustained(&b.runs, "w1", "max", mode).map(|r| r * 0.5),
        };
        match rate {
            Some(r) if r >= 1.0 => rates.push((mode, r)),
            _ => b.notes.push(format!(
                "w1 latency@50%: no valid maximum for {}, not run",
                mode.name()
            )),
        }
    }
    for rep in 0..b.ctx.settings.reps {
        for &(mode, rate) in &rates {
            let plan = b.plan("w1", "latency@50%", Topology::single(), Load::Open { rate });
            let r = runner::run_traffic(&b.ctx, mode, &plan, rep).await;
            b.runs.push(r);
        }
    }
}

/// W2: one source fanned out to 10 destinations.
async fn w2(b: &mut Bench) {
    let p = b.plan("w2", "fan-out 10", Topology::fanout(10), b.closed());
    b.alternate(&[p]).await;
}

/// W3: the W1 closed-loop load spread over many sources/destinations.
async fn w3(b: &mut Bench) {
    let n = b.ctx.settings.w3_destinations.max(1);
    let mut p = b.plan(
        "w3",
        &format!("{n} destinations"),
        Topology::spread(n),
        b.closed(),
    );
    p.per_id_labels = false;
    // Prometheus scraping every second beside the same load: what the scrape costs the
    // delivery path, with the labels W3 runs with (off) and with a series per destination.
    let variant = |labels: bool, scrape: bool| {
        let mut v = b.plan(
            "w3",
            &format!(
                "{n} destinations{}{}",
                if labels { ", per-id labels" } else { "" },
                if scrape { ", 1 s scrape" } else { "" }
            ),
            Topology::spread(n),
            b.closed(),
        );
        v.per_id_labels = labels;
        v.scrape_every = scrape.then_some(Duration::from_secs(1));
        v
    };
    let plans = [
        p,
        variant(false, true),
        variant(true, false),
        variant(true, true),
    ];
    b.alternate(&plans).await;
}

/// W4: one destination answering after 200 ms beside 100 healthy ones, against 101 healthy.
async fn w4(b: &mut Bench) {
    // The gateway's default max_concurrency (10): the slow destination can take 50/s and
    // builds a backlog, which must not slow the other 100.
    let mut slow = b.plan(
        "w4",
        "100 healthy + 1 slow",
        Topology::slow_beside(100, Some(200)),
        b.closed(),
    );
    slow.dest_concurrency = Some(10);
    let mut base = b.plan(
        "w4",
        "101 healthy",
        Topology::slow_beside(100, None),
        b.closed(),
    );
    base.dest_concurrency = Some(10);
    b.alternate(&[base, slow]).await;
}

/// W8: large bodies.
async fn w8(b: &mut Bench) {
    let c = b.ctx.settings.concurrency;
    let mut plans = Vec::new();
    for (label, size, conc) in [
        ("64 KiB", 64 * 1024, c.min(32)),
        ("1 MiB", 1024 * 1024, c.min(8)),
    ] {
        let mut p = b.plan(
            "w8",
            label,
            Topology::single(),
            Load::Closed { concurrency: conc },
        );
        p.body = runner::json_body(size);
        p.max_body_bytes = Some(2 * 1024 * 1024);
        plans.push(p);
    }
    b.alternate(&plans).await;
}

/// Sends `n` events through `src_uri` (closed loop), with the progress line.
async fn load_events(
    b: &Bench,
    label: String,
    src_uri: &str,
    n: u64,
) -> Result<(Records, Duration, Arc<Live>)> {
    load_events_counted(b, label, src_uri, n, Arc::new(Live::default())).await
}

/// `load_events`, counting into `live`, which the caller may watch while it runs.
async fn load_events_counted(
    b: &Bench,
    label: String,
    src_uri: &str,
    n: u64,
    live: Arc<Live>,
) -> Result<(Records, Duration, Arc<Live>)> {
    let ep = Arc::new(Endpoint {
        routes: vec![Route {
            target: Target::Gateway(src_uri.parse()?),
            class: 0,
        }],
        client: b.ctx.client.clone(),
        body: runner::json_body(b.ctx.settings.body_bytes),
        timeout: Duration::from_secs(30),
    });
    let dummy = Arc::new(Receiver::start(ReceiverConfig::default()).await?);
    let start = clock::now_ns();
    let t0 = Instant::now();
    let prog = tokio::spawn(progress_count(label, live.clone(), n, start));
    let recs =
        generator::closed_loop(ep, b.ctx.settings.concurrency, u64::MAX, n, live.clone()).await;
    prog.abort();
    drop(dummy);
    Ok((recs, t0.elapsed(), live))
}

async fn progress_count(label: String, live: Arc<Live>, n: u64, start: u64) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    loop {
        tokio::time::sleep(Duration::from_secs(if tty { 1 } else { 5 })).await;
        let acc = live.accepted_events.load(Ordering::Relaxed);
        let secs = (clock::now_ns() - start) as f64 / 1e9;
        let line = format!(
            "  {label}  loading {acc}/{n} events ({:.0}/s)  errors {}",
            acc as f64 / secs,
            live.errors.load(Ordering::Relaxed)
        );
        let mut e = std::io::stderr().lock();
        if tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
    }
}

impl Bench {
    /// Ends a run of a workload with a figures line of its own: records how `ran` ended,
    /// prints the run's summary (and, if it went through, `figures`), and keeps the record.
    fn keep_run(
        &mut self,
        mut rec: RunRecord,
        ran: anyhow::Result<()>,
        figures: impl Fn(&RunRecord) -> String,
    ) {
        if let Err(e) = ran {
            rec.error = Some(format!("{e:#}"));
        }
        clear_line();
        eprintln!("{}", runner::run_summary(&rec));
        if rec.error.is_none() {
            eprintln!("{}", figures(&rec));
        }
        self.runs.push(rec);
    }
}

fn clear_line() {
    use std::io::{IsTerminal, Write};
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

/// A loopback address where nothing listens (the receiver is down).
async fn closed_port_url() -> Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    drop(l);
    Ok(format!("http://{a}"))
}

/// W6: resident memory per idle destination.
async fn w6(b: &mut Bench) {
    let n = b.ctx.settings.w6_destinations.max(1);
    let variant = format!("{n} destinations");
    struct Prepared {
        mode: Mode,
        home: GatewayHome,
        base_rss: f64,
        live_rss: f64,
        create_per_s: f64,
    }
    let mut prepared = Vec::new();
    for mode in b.gateway_modes("w6") {
        let mut rec = RunRecord::new("w6", &variant, mode, 0);
        let res = async {
            let home = GatewayHome::new(&Bench::gateway_opts(mode, false))?;
            let mut gw =
                Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
            let r = async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let base = procfs::vm_rss_kib(gw.pid()).unwrap_or(0) as f64 / 1024.0;
                let t0 = Instant::now();
                create_idle_destinations(&gw.api, n, &format!("w6 {}", mode.name())).await?;
                let create_per_s = n as f64 / t0.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let live = procfs::vm_rss_kib(gw.pid()).unwrap_or(0) as f64 / 1024.0;
                Ok::<_, anyhow::Error>((base, live, create_per_s))
            }
            .await;
            gw.stop(Duration::from_secs(60)).await;
            let (base_rss, live_rss, create_per_s) = r?;
            Ok::<_, anyhow::Error>(Prepared {
                mode,
                home,
                base_rss,
                live_rss,
                create_per_s,
            })
        }
        .await;
        clear_line();
        match res {
            Ok(p) => prepared.push(p),
            Err(e) => {
                rec.error = Some(format!("{e:#}"));
                eprintln!("{}", runner::run_summary(&rec));
                b.runs.push(rec);
            }
        }
    }
    for rep in 0..b.ctx.settings.reps {
        for p in &prepared {
            let mut rec = RunRecord::new("w6", &variant, p.mode, rep);
            let res = async {
                let mut gw =
                    Gateway::start(&b.bin()?, &p.home, &b.ctx.client, Duration::from_secs(900))
                        .await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let rss = procfs::vm_rss_kib(gw.pid()).unwrap_or(0) as f64 / 1024.0;
                let hwm = procfs::vm_hwm_kib(gw.pid()).unwrap_or(0) as f64 / 1024.0;
                let ready = gw.timings.ready.as_secs_f64();
                gw.stop(Duration::from_secs(60)).await;
                Ok::<_, anyhow::Error>((rss, hwm, ready))
            }
            .await;
            match res {
                Ok((rss, hwm, ready)) => {
                    rec.set("destinations", n as f64);
                    rec.set("create_per_s", p.create_per_s);
                    rec.set("rss_base_mib", p.base_rss);
                    rec.set("rss_live_mib", p.live_rss);
                    rec.set("rss_restart_mib", rss);
                    rec.set("server_peak_rss_mib", hwm);
                    rec.set(
                        "kib_per_destination_live",
                        (p.live_rss - p.base_rss) * 1024.0 / n as f64,
                    );
                    rec.set(
                        "kib_per_destination_restart",
                        (rss - p.base_rss) * 1024.0 / n as f64,
                    );
                    rec.set("ready_s", ready);
                }
                Err(e) => rec.error = Some(format!("{e:#}")),
            }
            eprintln!("{}", runner::run_summary(&rec));
            b.runs.push(rec);
        }
    }
}

async fn create_idle_destinations(api: &Api, n: usize, label: &str) -> Result<()> {
    use std::sync::atomic::AtomicU64;
    let done = Arc::new(AtomicU64::new(0));
    let workers = 16.min(n);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (api, done) = (api.clone(), done.clone());
        set.spawn(async move {
            for i in (w..n).step_by(workers) {
                api.create_destination(
                    &format!("idle-{i}"),
                    &format!("http://127.0.0.1:9/idle/{i}"),
                    None,
                )
                .await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let label = label.to_string();
    let d2 = done.clone();
    let prog = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!(
                "  {label}  created {}/{n} destinations",
                d2.load(Ordering::Relaxed)
            );
        }
    });
    let mut res = Ok(());
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.map_err(anyhow::Error::from).and_then(|x| x) {
            res = Err(e);
        }
    }
    prog.abort();
    res
}

/// W7: restart with many waiting events (receiver down): time from start to /readyz.
async fn w7(b: &mut Bench) {
    let n = b.ctx.settings.w7_events.max(1);
    let variant = format!("{n} waiting");
    struct Prepared {
        mode: Mode,
        home: GatewayHome,
        records: Records,
        ingest_per_s: f64,
        stop_s: f64,
    }
    let mut prepared = Vec::new();
    for mode in b.gateway_modes("w7") {
        let mut rec = RunRecord::new("w7", &variant, mode, 0);
        let res = async {
            let home = GatewayHome::new(&Bench::gateway_opts(mode, true))?;
            let mut gw =
                Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
            let r = async {
                let down = closed_port_url().await?;
                let src = runner::setup_gateway_routes(
                    &gw.api,
                    &Topology::single(),
                    &down,
                    b.ctx.settings.dest_concurrency,
                )
                .await?
                .remove(0);
                let (records, took, live) = load_events(
                    b,
                    format!("w7 {}", mode.name()),
                    &format!("{}/e/{src}", gw.api.base),
                    n,
                )
                .await?;
                if live.errors.load(Ordering::Relaxed) > 0 {
                    eprintln!(
                        "  w7 {}: {} ingress errors, first: {:?}",
                        mode.name(),
                        live.errors.load(Ordering::Relaxed),
                        live.first_error.lock().expect("live")
                    );
                }
                Ok::<_, anyhow::Error>((records, secs_of(took)))
            }
            .await;
            let t_stop = Instant::now();
            let status = gw.stop(Duration::from_secs(300)).await;
            let stop_s = t_stop.elapsed().as_secs_f64();
            let (records, secs) = r?;
            if !status.is_some_and(|s| s.success()) {
                eprintln!(
                    "  w7 {}: SIGTERM did not stop the gateway cleanly ({status:?})",
                    mode.name()
                );
            }
            Ok::<_, anyhow::Error>(Prepared {
                mode,
                home,
                ingest_per_s: records.events.len() as f64 / secs,
                records,
                stop_s,
            })
        }
        .await;
        clear_line();
        match res {
            Ok(p) => prepared.push(p),
            Err(e) => {
                rec.error = Some(format!("{e:#}"));
                eprintln!("{}", runner::run_summary(&rec));
                b.runs.push(rec);
            }
        }
    }
    for rep in 0..b.ctx.settings.reps {
        for p in &prepared {
            let mut rec = RunRecord::new("w7", &variant, p.mode, rep);
            let res = async {
                let mut gw =
                    Gateway::start(&b.bin()?, &p.home, &b.ctx.client, Duration::from_secs(1800))
                        .await?;
                let t = gw.timings;
                let rss = procfs::vm_hwm_kib(gw.pid()).unwrap_or(0) as f64 / 1024.0;
                // The receiver is down, so nothing moves: the backlog should read the
                // same at once and later. Read it until it accounts for every event (at
                // most 10 s), and say when the first reading, at /readyz, fell short.
                let want = p.records.events.len() as u64;
                let t_read = Instant::now();
                let first = gw.api.waiting().await;
                let mut last = first;
                while last.is_some_and(|w| w < want) && t_read.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    last = gw.api.waiting().await;
                }
                if first != last {
                    rec.notes.push(format!(
                        "backlog gauges read {first:?} at /readyz and {last:?} {:.1} s later",
                        t_read.elapsed().as_secs_f64()
                    ));
                }
                let visible =
                    (last == Some(want)).then(|| (t.ready + t_read.elapsed()).as_secs_f64());
                if let Some(v) = visible {
                    rec.set("backlog_visible_s", v);
                }
                let waiting = match last {
                    Some(w) => Waiting::Measured(w),
                    None => Waiting::Unknown,
                };
                let dead = gw.api.dead_letter_ids().await.unwrap_or_default();
                gw.stop(Duration::from_secs(300)).await;
                Ok::<_, anyhow::Error>((t, rss, waiting, dead))
            }
            .await;
            match res {
                Ok((t, rss, waiting, dead)) => {
                    rec.set("events", p.records.events.len() as f64);
                    rec.set("ingest_per_s", p.ingest_per_s);
                    rec.set("stop_s", p.stop_s);
                    rec.set("listening_s", t.listening.as_secs_f64());
                    rec.set("healthy_s", t.healthy.as_secs_f64());
                    rec.set("ready_s", t.ready.as_secs_f64());
                    rec.set("server_peak_rss_mib", rss);
                    rec.ledger = ledger::compute(
                        p.records.events.iter().map(|e| &*e.id),
                        [],
                        dead.iter().map(String::as_str),
                        waiting,
                    );
                }
                Err(e) => rec.error = Some(format!("{e:#}")),
            }
            eprintln!("{}", runner::run_summary(&rec));
            b.runs.push(rec);
        }
    }
}

/// Seconds, never zero (a divisor).
fn secs_of(took: Duration) -> f64 {
    took.as_secs_f64().max(1e-9)
}

/// The runs of a gateway-only workload: each repetition of each gateway mode, in order.
fn gateway_runs(b: &mut Bench, workload: &str) -> Vec<(usize, Mode)> {
    let modes = b.gateway_modes(workload);
    (0..b.ctx.settings.reps)
        .flat_map(|rep| modes.iter().map(move |&mode| (rep, mode)))
        .collect()
}

/// Files a finished run: its error if it failed, and its summary line.
fn record_run(b: &mut Bench, mut rec: RunRecord, result: Result<()>) {
    if let Err(e) = result {
        rec.error = Some(format!("{e:#}"));
    }
    clear_line();
    eprintln!("{}", runner::run_summary(&rec));
    b.runs.push(rec);
}

/// A healthy receiver, a gateway on a fresh data dir, and one source → destination →
/// connection to the receiver; answers them and the source's id.
async fn gateway_with_route(
    b: &Bench,
    mode: Mode,
) -> Result<(Receiver, GatewayHome, Gateway, String)> {
    let receiver = b.receiver().await?;
    let home = GatewayHome::new(&Bench::gateway_opts(mode, true))?;
    let mut gw = Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
    let src = runner::setup_gateway_routes(
        &gw.api,
        &Topology::single(),
        &receiver.base_url(),
        b.ctx.settings.dest_concurrency,
    )
    .await;
    match src {
        Ok(mut ids) => Ok((receiver, home, gw, ids.remove(0))),
        Err(e) => {
            gw.stop(Duration::from_secs(60)).await;
            Err(e)
        }
    }
}

/// W9: bytes on disk per retained (delivered) 1 KiB event.
async fn w9(b: &mut Bench) {
    let n = b.ctx.settings.w9_events.max(1);
    let variant = format!("{n} events");
    for (rep, mode) in gateway_runs(b, "w9") {
        let mut rec = RunRecord::new("w9", &variant, mode, rep);
        let result = w9_once(b, &mut rec, mode, n).await;
        record_run(b, rec, result);
    }
}

async fn w9_once(b: &Bench, rec: &mut RunRecord, mode: Mode, n: u64) -> Result<()> {
    let (receiver, home, mut gw, src) = gateway_with_route(b, mode).await?;
    let res = async {
        let before = procfs::dir_size(&home.data_dir);
        let (records, took, live) =
            load_events(b, rec.label(), &format!("{}/e/{src}", gw.api.base), n).await?;
        rec.set("ingest_per_s", records.events.len() as f64 / secs_of(took));
        let t0 = Instant::now();
        let want = live.accepted_events.load(Ordering::Relaxed);
        while receiver.counters().unique < want
            && t0.elapsed().as_secs_f64() < b.ctx.settings.drain_timeout_s
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rec.set("drain_s", t0.elapsed().as_secs_f64());
        runner::close_ledger(rec, &records, &receiver, Some(&gw.api), true).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (app_live, alloc_live) = procfs::dir_size(&home.data_dir);
        Ok::<_, anyhow::Error>((records.events.len() as f64, before, app_live, alloc_live))
    }
    .await;
    gw.stop(Duration::from_secs(60)).await;
    let (events, before, app_live, alloc_live) = res?;
    let (app_stop, alloc_stop) = procfs::dir_size(&home.data_dir);
    let (app0, alloc0) = (before.0 as f64, before.1 as f64);
    rec.set("events", events);
    rec.set("bytes_before", alloc0);
    rec.set(
        "bytes_per_event_live",
        (alloc_live as f64 - alloc0) / events,
    );
    rec.set(
        "apparent_bytes_per_event_live",
        (app_live as f64 - app0) / events,
    );
    rec.set(
        "bytes_per_event_stopped",
        (alloc_stop as f64 - alloc0) / events,
    );
    rec.set(
        "apparent_bytes_per_event_stopped",
        (app_stop as f64 - app0) / events,
    );
    Ok(())
}
