//! W10: a destination's circuit breaker open under load, then closed.
//!
//! One source → one destination (breaker: 5 failures, cooldown = the open period, one
//! success closes) → one connection with the bench's usual retry rule (linear, 1000 × 1 s),
//! so the few events that fail before the breaker opens are retried, not dead-lettered.
//!
//! 1. The receiver answers 503 from the start; an open-loop load runs at `--w10-rate`.
//! 2. The breaker opens after 5 failures (seen on `GET /v1/destinations/:id/circuit`). The
//!    load goes on while it stays open; the cooldown equals `--w10-open-s`, so the probe is
//!    due at the end of the open period. Half a second before `next_probe_at`, the
//!    receiver turns healthy.
//! 3. Every second: the gateway's RSS and the circuit's `queued_count` (the timeline).
//! 4. Once the probe has closed the breaker, the load stops and the bench waits until every
//!    accepted event was delivered (`--w10-drain-timeout` from the close; VOID otherwise).
//! 5. Figures: events accepted while open; RSS at the open, at the end of the open period,
//!    peak; RSS slope over queued events; close → drained time and rate; and the order in
//!    which the backlog arrived (see [`order_check`]).

use super::Bench;
use crate::cli::Mode;
use crate::clock;
use crate::gateway::{self, Api, Gateway, GatewayHome};
use crate::generator::{self, Endpoint, Live, Records, Route, Target};
use crate::procfs;
use crate::receiver::{Hit, Receiver};
use crate::runner::{self, fmt_int, RunRecord, TimelinePoint};
use anyhow::{anyhow, bail, Result};
use hyper::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Consecutive failures that open the breaker.
const FAILURE_THRESHOLD: u32 = 5;
/// How long before the probe is due the receiver turns healthy.
const LEAD_NS: u64 = 500_000_000;
/// Longest wait for the breaker to open once the load has started.
const OPEN_DEADLINE: Duration = Duration::from_secs(30);
/// The RSS slope needs the backlog to have grown by at least this many events: over a
/// few thousand, allocator and page-granularity noise is as large as the signal (--quick
/// queues ~1,500 and reports none).
const MIN_QUEUED_SPAN: f64 = 10_000.0;

pub(super) async fn w10(b: &mut Bench) {
    let s = &b.ctx.settings;
    let variant = format!(
        "{} ev/s, open {} s, c={}",
        fmt_int(s.w10_rate),
        s.w10_open_s,
        s.w10_concurrency
    );
    let modes = b.gateway_modes("w10");
    for rep in 0..b.ctx.settings.reps {
        for &mode in &modes {
            let mut rec = RunRecord::new("w10", &variant, mode, rep);
            let ran = once(b, &mut rec, mode).await;
            b.keep_run(rec, ran, summary);
        }
    }
}

/// The figures of one run on one line.
fn summary(rec: &RunRecord) -> String {
    let m = |k: &str| rec.metrics.get(k).copied();
    let f1 = |k: &str| m(k).map_or("—".to_string(), |v| format!("{v:.1}"));
    let int = |k: &str| m(k).map_or("—".to_string(), fmt_int);
    format!(
        "    w10: {} accepted while open ({} queued at its end); RSS {} at open, {} at end of open, \
         {} peak MiB; {} MiB per 100k queued; close→drained {} s at {} ev/s; order: {} of {} \
         out of order (most overtaken {})",
        int("accepted_while_open"),
        int("queued_end_open"),
        f1("rss_open_mib"),
        f1("rss_open_end_mib"),
        f1("rss_peak_mib"),
        m("rss_mib_per_100k_queued").map_or("—".into(), |v| format!("{v:.2}")),
        m("close_to_drained_s").map_or("—".into(), |v| format!("{v:.2}")),
        int("drain_per_s"),
        int("order_violations"),
        int("order_checked"),
        int("order_max_overtaken"),
    )
}

async fn once(b: &Bench, rec: &mut RunRecord, mode: Mode) -> Result<()> {
    let receiver = Arc::new(b.receiver().await?);
    receiver.set_failing(Some(StatusCode::SERVICE_UNAVAILABLE));
    let home = GatewayHome::new(&Bench::gateway_opts(mode, true))?;
    let mut gw = Gateway::start(&b.bin()?, &home, &b.ctx.client, Duration::from_secs(120)).await?;
    let res = scenario(b, rec, &gw, &receiver).await;
    gw.stop(Duration::from_secs(60)).await;
    receiver.shutdown();
    res
}

/// What the sampler and the phases share.
struct Shared {
    live: Arc<Live>,
    receiver: Arc<Receiver>,
    timeline: Mutex<Vec<TimelinePoint>>,
    phase: Mutex<String>,
}

/// Instants of the run, ns on [`clock`].
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    start: u64,
    /// The breaker opened (its `opened_at`, else when the bench saw it open).
    opened: u64,
    /// When the bench first saw it open.
    open_seen: u64,
    /// When the probe was due (`next_probe_at`).
    probe_due: u64,
    /// The receiver turned healthy.
    switched: u64,
    /// The bench saw the breaker closed again.
    close_seen: u64,
}

async fn scenario(
    b: &Bench,
    rec: &mut RunRecord,
    gw: &Gateway,
    receiver: &Arc<Receiver>,
) -> Result<()> {
    let st = &b.ctx.settings;
    let api = &gw.api;
    let pid = gw.pid();
    let open_s = st.w10_open_s;
    let src = api.create_source("bench-w10-src").await?;
    let des = api
        .create_guarded_destination(
            "bench-w10-des",
            &format!("{}/ok/0", receiver.base_url()),
            st.w10_concurrency,
            FAILURE_THRESHOLD,
            open_s,
        )
        .await?;
    api.create_connection("bench-w10-web", &src, &des).await?;
    let ep = Arc::new(Endpoint {
        routes: vec![Route {
            target: Target::Gateway(format!("{}/e/{src}", api.base).parse()?),
            class: 0,
        }],
        client: b.ctx.client.clone(),
        body: runner::json_body(st.body_bytes),
        timeout: Duration::from_secs(30),
    });
    let shared = Arc::new(Shared {
        live: Arc::new(Live::default()),
        receiver: receiver.clone(),
        timeline: Mutex::new(Vec::new()),
        phase: Mutex::new("waiting for the breaker to open".into()),
    });
    rec.set("offered_per_s", st.w10_rate);
    rec.set("open_s", open_s as f64);
    rec.set("concurrency", st.w10_concurrency as f64);
    let stop = Arc::new(AtomicU64::new(u64::MAX));
    let start = clock::now_ns();
    let load = tokio::spawn(generator::open_loop_until(
        ep,
        st.w10_rate,
        st.max_inflight,
        start,
        stop.clone(),
        shared.live.clone(),
    ));
    let sampler = tokio::spawn(sample_every_second(
        rec.label(),
        shared.clone(),
        api.clone(),
        des.clone(),
        pid,
        start,
    ));
    let mut t = Moments {
        start,
        ..Moments::default()
    };
    let phases = phases(rec, api, &des, &shared, pid, open_s, &mut t).await;
    // Whatever happened, the load ends here.
    stop.store(clock::now_ns(), Ordering::Relaxed);
    let records = load.await?;
    let drained = match phases {
        Ok(()) => {
            *shared.phase.lock().expect("phase") = "draining".into();
            let deadline = t.close_seen + clock::secs_ns(st.w10_drain_timeout_s);
            let want = shared.live.accepted_events.load(Ordering::Relaxed);
            wait_drained(receiver, api, want, deadline).await
        }
        Err(_) => Drain::Deadline,
    };
    rec.set_opt(
        "rss_peak_mib",
        procfs::vm_hwm_kib(pid).map(|k| k as f64 / 1024.0),
    );
    sampler.abort();
    let _ = sampler.await;
    rec.timeline = std::mem::take(&mut *shared.timeline.lock().expect("timeline"));
    phases?;
    // `false`: the notes below say how the wait for deliveries ended.
    let hits = runner::close_ledger(rec, &records, receiver, Some(api), false).await;
    rec.ledger.require_all_delivered("by the end of the run");
    match drained {
        Drain::All => {}
        Drain::Deadline => rec.notes.push(format!(
            "not drained within {} s of the close (--w10-drain-timeout)",
            st.w10_drain_timeout_s
        )),
        Drain::NothingWaiting => rec.notes.push(
            "stopped waiting for deliveries: the gateway reported nothing waiting and no new \
             event arrived for 2 s"
                .into(),
        ),
    }
    let live = &shared.live;
    rec.set("accepted", records.events.len() as f64);
    rec.set("rejected", live.rejected.load(Ordering::Relaxed) as f64);
    rec.set("errors", live.errors.load(Ordering::Relaxed) as f64);
    if let Some(e) = live.first_error.lock().expect("live").clone() {
        rec.notes.push(format!("first ingress error: {e}"));
    }
    rec.set("receiver_503s", receiver.counters().failed as f64);
    figures(rec, &records, &hits, &t, drained == Drain::All);
    Ok(())
}

/// How the wait for the last deliveries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    All,
    Deadline,
    /// The gateway reports nothing waiting and nothing new arrives: an event is lost.
    NothingWaiting,
}

/// Waits until the receiver has seen `want` unique ids, or until `deadline`, or until
/// nothing more can come: the gateway reports nothing waiting and the receiver has seen no
/// new id for 2 s (a lost event; the ledger will say so).
async fn wait_drained(receiver: &Receiver, api: &Api, want: u64, deadline: u64) -> Drain {
    let mut last = (receiver.counters().unique, clock::now_ns());
    let mut next_check = clock::now_ns();
    loop {
        let now = clock::now_ns();
        let got = receiver.counters().unique;
        if got >= want {
            return Drain::All;
        }
        if now >= deadline {
            return Drain::Deadline;
        }
        if got != last.0 {
            last = (got, now);
        }
        if now >= next_check {
            next_check = now + 1_000_000_000;
            if now - last.1 >= 2_000_000_000 && api.waiting().await == Some(0) {
                return if receiver.counters().unique >= want {
                    Drain::All
                } else {
                    Drain::NothingWaiting
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Steps 1 and 2: wait for the open, keep it open under load, turn the receiver healthy
/// just before the probe, wait for the close.
async fn phases(
    rec: &mut RunRecord,
    api: &Api,
    des: &str,
    shared: &Shared,
    pid: u32,
    open_s: u64,
    t: &mut Moments,
) -> Result<()> {
    let rss_now = || procfs::vm_rss_kib(pid).map(|k| k as f64 / 1024.0);
    // 1. Until the breaker opens.
    let deadline = clock::now_ns() + OPEN_DEADLINE.as_nanos() as u64;
    let opened = loop {
        let c = api.circuit(des).await?;
        if c.state == "open" {
            break c;
        }
        if clock::now_ns() > deadline {
            bail!(
                "the breaker did not open within {OPEN_DEADLINE:?} (state {}, the receiver \
                 answered 503 {} times, {} events accepted)",
                c.state,
                shared.receiver.counters().failed,
                shared.live.accepted_events.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    t.open_seen = clock::now_ns();
    rec.set_opt("rss_open_mib", rss_now());
    rec.set("queued_at_open", opened.queued_count as f64);
    rec.set("open_after_s", (t.open_seen - t.start) as f64 / 1e9);
    // The gateway's timestamps are wall-clock milliseconds; map them onto the bench clock.
    let wall = gateway::unix_ms_now() as i128;
    let seen = t.open_seen;
    let to_ns = |ms: u64| -> u64 {
        let d = (ms as i128 - wall) * 1_000_000;
        (seen as i128 + d).max(0) as u64
    };
    t.opened = opened.opened_at_ms.map_or(t.open_seen, to_ns);
    t.probe_due = opened
        .next_probe_at_ms
        .map_or(t.open_seen + open_s * 1_000_000_000, to_ns);
    if opened.next_probe_at_ms.is_none() {
        rec.notes.push(
            "the circuit document had no next_probe_at; assumed open_s after the open".into(),
        );
    }
    // 2. Open until just before the probe.
    let switch_at = t.probe_due.saturating_sub(LEAD_NS).max(clock::now_ns());
    *shared.phase.lock().expect("phase") = format!("breaker open ({open_s} s)");
    tokio::time::sleep_until(clock::instant_at(switch_at).into()).await;
    let end = api.circuit(des).await?;
    rec.set_opt("rss_open_end_mib", rss_now());
    rec.set("queued_end_open", end.queued_count as f64);
    if end.state != "open" {
        rec.notes.push(format!(
            "the breaker was {} (not open) when the receiver turned healthy",
            end.state
        ));
    }
    shared.receiver.set_failing(None);
    t.switched = clock::now_ns();
    *shared.phase.lock().expect("phase") = "receiver healthy, waiting for the probe".into();
    // Until the probe closes it (a failed probe reopens it for another cooldown).
    let deadline = t.probe_due + clock::secs_ns(open_s as f64 + 30.0);
    let mut reopened = false;
    loop {
        let c = api.circuit(des).await?;
        if c.state == "closed" {
            break;
        }
        // Reopening restarts the cooldown: a new next_probe_at.
        if c.state == "open" && c.next_probe_at_ms != opened.next_probe_at_ms && !reopened {
            reopened = true;
            rec.notes
                .push("the probe failed: the breaker opened again".into());
        }
        if clock::now_ns() > deadline {
            return Err(anyhow!(
                "the breaker did not close within {open_s} s + 30 s of the probe (state {})",
                c.state
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.close_seen = clock::now_ns();
    rec.set(
        "close_seen_after_probe_due_s",
        secs_between(t.probe_due, t.close_seen),
    );
    Ok(())
}

/// Signed seconds from `a` to `b`.
fn secs_between(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) / 1e9
}

/// Step 3: RSS and the circuit every second, with the progress line.
async fn sample_every_second(
    label: String,
    shared: Arc<Shared>,
    api: Api,
    des: String,
    pid: u32,
    start: u64,
) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Off a terminal, a line every 5 s.
    let mut skip = 0u32;
    loop {
        tick.tick().await;
        let now = clock::now_ns();
        let rss_mib = procfs::vm_rss_kib(pid).map(|k| k as f64 / 1024.0);
        let circuit = api.circuit(&des).await.ok();
        let p = TimelinePoint {
            t_s: (now - start) as f64 / 1e9,
            rss_mib,
            state: circuit.as_ref().map(|c| c.state.clone()),
            queued: circuit.as_ref().map(|c| c.queued_count),
            accepted: shared.live.accepted_events.load(Ordering::Relaxed),
            delivered: shared.receiver.counters().unique,
            ..TimelinePoint::default()
        };
        if tty || skip == 0 {
            let line = format!(
                "  {label}  {:.0} s  {}  accepted {}  queued {}  delivered {}  RSS {} MiB  errors {}",
                p.t_s,
                shared.phase.lock().expect("phase"),
                fmt_int(p.accepted as f64),
                p.queued.map_or("?".into(), |q| fmt_int(q as f64)),
                fmt_int(p.delivered as f64),
                p.rss_mib.map_or("?".into(), |r| format!("{r:.1}")),
                shared.live.errors.load(Ordering::Relaxed),
            );
            runner::print_progress(tty, &line);
        }
        skip = (skip + 1) % 5;
        shared.timeline.lock().expect("timeline").push(p);
    }
}

/// Step 5: the figures, from the generator's records, the receiver's hits and the timeline.
fn figures(
    rec: &mut RunRecord,
    records: &Records,
    hits: &HashMap<Box<str>, Hit>,
    t: &Moments,
    drained: bool,
) {
    // The probe's delivery is the first 2xx the receiver gave: the close.
    let first_ok = hits.values().map(|h| h.first_ns).min();
    let last_ok = hits.values().map(|h| h.first_ns).max();
    let close = first_ok.unwrap_or(t.close_seen);
    rec.set("open_for_s", secs_between(t.opened, close));
    rec.set("probe_after_due_s", secs_between(t.probe_due, close));
    rec.set(
        "accepted_while_open",
        records
            .events
            .iter()
            .filter(|e| e.done >= t.opened && e.done < close)
            .count() as f64,
    );
    if let (true, Some(first), Some(last)) = (drained, first_ok, last_ok) {
        let secs = (last - first) as f64 / 1e9;
        rec.set("close_to_drained_s", secs);
        if secs > 0.0 {
            rec.set("drain_per_s", hits.len() as f64 / secs);
        }
    }
    let peak_queued = rec
        .timeline
        .iter()
        .filter_map(|p| p.queued)
        .chain(rec.metrics.get("queued_end_open").map(|q| *q as u64))
        .max();
    rec.set_opt("queued_peak", peak_queued.map(|q| q as f64));
    // RSS against the backlog while it only grows: from the open to the receiver's switch.
    let (a, z) = (
        (t.open_seen - t.start) as f64 / 1e9,
        (t.switched - t.start) as f64 / 1e9,
    );
    let mut pts: Vec<(f64, f64)> = rec
        .timeline
        .iter()
        .filter(|p| p.t_s >= a && p.t_s <= z)
        .filter_map(|p| Some((p.queued? as f64, p.rss_mib?)))
        .collect();
    for (q, r) in [
        ("queued_at_open", "rss_open_mib"),
        ("queued_end_open", "rss_open_end_mib"),
    ] {
        if let (Some(q), Some(r)) = (rec.metrics.get(q), rec.metrics.get(r)) {
            pts.push((*q, *r));
        }
    }
    match slope(&pts, MIN_QUEUED_SPAN) {
        Some(s) => rec.set("rss_mib_per_100k_queued", s * 100_000.0),
        None => rec.notes.push(format!(
            "RSS slope not computed: the backlog grew by less than {MIN_QUEUED_SPAN} events \
             over {} readings",
            pts.len()
        )),
    }
    // Order: the events accepted after the breaker was seen open never had an attempt
    // before the close; their first deliveries should arrive in acceptance order.
    let mut ids = Vec::new();
    let items: Vec<Arrival> = records
        .events
        .iter()
        .filter(|e| e.sent >= t.open_seen)
        .filter_map(|e| {
            let h = hits.get(&e.id)?;
            ids.push(&*e.id);
            Some(Arrival {
                sent: e.sent,
                done: e.done,
                seq: h.first_seq,
            })
        })
        .collect();
    let o = order_check(&items);
    rec.set("order_checked", o.checked as f64);
    rec.set("order_violations", o.violations as f64);
    rec.set("order_max_overtaken", o.max_overtaken as f64);
    for &(late, by) in &o.examples {
        rec.notes.push(format!(
            "order: {} (answered at {:.3} s) was delivered after {} (sent at {:.3} s)",
            ids[late],
            secs_between(t.start, items[late].done),
            ids[by],
            secs_between(t.start, items[by].sent),
        ));
    }
}

/// Least-squares slope of y over x; `None` with fewer than two points or when the x values
/// span less than `min_x_span`.
pub fn slope(points: &[(f64, f64)], min_x_span: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    if hi - lo < min_x_span.max(f64::MIN_POSITIVE) {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// One delivered event for the order check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When its ingress request was sent, and when the answer accepting it came back.
    pub sent: u64,
    pub done: u64,
    /// The receiver's arrival number of its first 2xx.
    pub seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCheck {
    pub checked: u64,
    /// Events whose first delivery arrived after that of an event certainly accepted
    /// later (sent after this one's answer came back).
    pub violations: u64,
    /// The most such later events that arrived before any one event.
    pub max_overtaken: u64,
    /// Up to 3 (late event, an event accepted later that arrived before it), as indices.
    pub examples: Vec<(usize, usize)>,
}

/// Whether first deliveries arrived in acceptance order.
///
/// Acceptance order is only certain between requests that did not overlap: A is accepted
/// before B when B's request was sent after A's answer came back. Requests in flight
/// together may be committed either way round, and are not counted against the gateway.
/// With a destination `max_concurrency` of 1, every violation is a real one; with more,
/// attempts started in order may finish out of order, and `max_overtaken` below the
/// concurrency is what that alone can explain.
pub fn order_check(items: &[Arrival]) -> OrderCheck {
    let n = items.len();
    let mut by_arrival: Vec<usize> = (0..n).collect();
    by_arrival.sort_by_key(|&i| items[i].seq);
    let mut sents: Vec<u64> = items.iter().map(|a| a.sent).collect();
    sents.sort_unstable();
    // Fenwick tree over the ranks of `sent`: how many arrived events were sent by when.
    let mut tree = vec![0u64; n + 1];
    let mut out = OrderCheck {
        checked: n as u64,
        ..OrderCheck::default()
    };
    let mut latest_sent: Option<usize> = None;
    for (inserted, &i) in by_arrival.iter().enumerate() {
        let a = items[i];
        // Arrived so far and sent no later than this one's answer.
        let mut k = sents.partition_point(|&s| s <= a.done);
        let mut not_after = 0;
        while k > 0 {
            not_after += tree[k];
            k &= k - 1;
        }
        let overtaken = inserted as u64 - not_after;
        if overtaken > 0 {
            out.violations += 1;
            if out.examples.len() < 3 {
                if let Some(by) = latest_sent {
                    out.examples.push((i, by));
                }
            }
        }
        out.max_overtaken = out.max_overtaken.max(overtaken);
        let mut r = sents.partition_point(|&s| s < a.sent) + 1;
        while r <= n {
            tree[r] += 1;
            r += r & r.wrapping_neg();
        }
        if latest_sent.is_none_or(|j| items[j].sent < a.sent) {
            latest_sent = Some(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event `i` sent at 10·i ms and answered `lat` ms later, arriving `seq`-th.
    fn ev(i: u64, lat: u64, seq: u64) -> Arrival {
        Arrival {
            sent: i * 10_000_000,
            done: i * 10_000_000 + lat * 1_000_000,
            seq,
        }
    }

    #[test]
    fn in_order_arrivals_have_no_violation() {
        let items: Vec<Arrival> = (0..100).map(|i| ev(i, 5, i + 1)).collect();
        let o = order_check(&items);
        assert_eq!((o.checked, o.violations, o.max_overtaken), (100, 0, 0));
        assert!(o.examples.is_empty());
        assert_eq!(order_check(&[]), OrderCheck::default());
    }

    #[test]
    fn one_late_event_is_one_violation() {
        // Event 2 arrives last: overtaken by 3, 4 and 5, each sent after its answer.
        let items = vec![
            ev(0, 5, 1),
            ev(1, 5, 2),
            ev(2, 5, 6),
            ev(3, 5, 3),
            ev(4, 5, 4),
            ev(5, 5, 5),
        ];
        let o = order_check(&items);
        assert_eq!((o.violations, o.max_overtaken), (1, 3));
        assert_eq!(o.examples, vec![(2, 5)]);
    }

    #[test]
    fn overlapping_requests_may_arrive_either_way() {
        // 1 and 2 were in flight together (1 answered after 2 was sent): no certain order.
        let items = vec![ev(0, 5, 1), ev(1, 15, 3), ev(2, 5, 2), ev(3, 5, 4)];
        let o = order_check(&items);
        assert_eq!((o.violations, o.max_overtaken), (0, 0));
        // But 3 (sent after 1's answer) arriving before it is a violation.
        let items = vec![ev(0, 5, 1), ev(1, 15, 4), ev(2, 5, 2), ev(3, 5, 3)];
        let o = order_check(&items);
        assert_eq!((o.violations, o.max_overtaken), (1, 1));
        assert_eq!(o.examples, vec![(1, 3)]);
    }

    #[test]
    fn reversed_arrivals_count_every_event_but_the_first_to_arrive() {
        let n = 50;
        let items: Vec<Arrival> = (0..n).map(|i| ev(i, 1, n - i)).collect();
        let o = order_check(&items);
        assert_eq!((o.violations, o.max_overtaken), (n - 1, n - 1));
        assert_eq!(o.examples.len(), 3);
    }

    #[test]
    fn pairs_finishing_out_of_order_overtake_by_one() {
        // Concurrency 2: each pair's second attempt finishes first.
        let seqs = [2, 1, 4, 3, 6, 5, 8, 7];
        let items: Vec<Arrival> = seqs
            .iter()
            .enumerate()
            .map(|(i, &s)| ev(i as u64, 1, s))
            .collect();
        let o = order_check(&items);
        assert_eq!((o.violations, o.max_overtaken), (4, 1));
    }

    #[test]
    fn slope_of_a_line_and_of_too_little() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 10_000.0, 100.0 + i as f64 * 2.5))
            .collect();
        let s = slope(&pts, 1_000.0).unwrap();
        assert!((s * 100_000.0 - 25.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&pts[..1], 0.0), None);
        assert_eq!(slope(&[(5.0, 1.0), (5.0, 2.0)], 0.0), None);
        assert_eq!(slope(&[(0.0, 1.0), (500.0, 2.0)], 1_000.0), None);
        // Noise around a line: least squares, not the end points.
        let noisy = [(0.0, 10.0), (1000.0, 12.0), (2000.0, 11.0), (3000.0, 13.0)];
        let s = slope(&noisy, 1_000.0).unwrap();
        assert!((s - 0.0008).abs() < 1e-12, "{s}");
    }
}
