//! The report: medians per workload × variant × mode over the runs whose ledger balanced,
//! the ratios, the W1 per-stage breakdown; as text tables or JSON.

use crate::cli::{Mode, Settings};
use crate::procfs;
use crate::runner::RunRecord;
use crate::stats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: String,
    pub variant: String,
    pub mode: Mode,
    pub runs: usize,
    /// Runs that completed and balanced their ledger; only these make the medians.
    pub valid: usize,
    pub medians: BTreeMap<String, f64>,
    /// Why the other runs do not count.
    pub discarded: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub key: String,
    pub label: String,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub mode: Mode,
    /// Machine time per event at the maximum sustained rate: 1e6 / rate.
    pub us_per_event: f64,
    /// This stage's share: the difference with the previous stage.
    pub added_us_per_event: Option<f64>,
    /// CPU time of the server process per event (ms), when there is one.
    pub server_cpu_ms_per_event: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub machine: serde_json::Value,
    pub settings: Settings,
    pub modes: Vec<Mode>,
    pub notes: Vec<String>,
    /// Every run's ledger balanced and no run failed.
    pub all_balanced: bool,
    pub summaries: Vec<Summary>,
    pub ratios: Vec<Ratio>,
    pub w1_stages: Vec<Stage>,
    pub runs: Vec<RunRecord>,
}

/// Groups runs by (workload, variant, mode) in order of first appearance.
pub fn summarize(runs: &[RunRecord]) -> Vec<Summary> {
    let mut keys: Vec<(String, String, Mode)> = Vec::new();
    for r in runs {
        let k = (r.workload.clone(), r.variant.clone(), r.mode);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Order: by workload, then variant as first seen, then mode.
    keys.sort_by(|a, b| {
        let pos = |k: &(String, String, Mode)| {
            runs.iter()
                .position(|r| r.workload == k.0 && r.variant == k.1)
                .unwrap_or(0)
        };
        (a.0.clone(), pos(a), a.2).cmp(&(b.0.clone(), pos(b), b.2))
    });
    keys.into_iter()
        .map(|(w, v, m)| {
            let group: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| r.workload == w && r.variant == v && r.mode == m)
                .collect();
            let valid: Vec<&&RunRecord> = group.iter().filter(|r| r.valid()).collect();
            let mut names: Vec<&String> = valid.iter().flat_map(|r| r.metrics.keys()).collect();
            names.sort();
            names.dedup();
            let medians = names
                .into_iter()
                .filter_map(|k| {
                    let xs: Vec<f64> = valid
                        .iter()
                        .filter_map(|r| r.metrics.get(k).copied())
                        .collect();
                    stats::median(&xs).map(|x| (k.clone(), x))
                })
                .collect();
            let discarded = group
                .iter()
                .filter(|r| !r.valid())
                .map(|r| match &r.error {
                    Some(e) => format!("{}: FAILED: {}", r.label(), first_line(e)),
                    None => format!("{}: VOID: {}", r.label(), r.ledger.void_reasons.join("; ")),
                })
                .collect();
            Summary {
                workload: w,
                variant: v,
                mode: m,
                runs: group.len(),
                valid: valid.len(),
                medians,
                discarded,
            }
        })
        .collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn find<'a>(s: &'a [Summary], w: &str, v: &str, m: Mode) -> Option<&'a Summary> {
    s.iter()
        .find(|x| x.workload == w && x.variant == v && x.mode == m && x.valid > 0)
}

fn metric(s: &[Summary], w: &str, v: &str, m: Mode, key: &str) -> Option<f64> {
    find(s, w, v, m).and_then(|x| x.medians.get(key).copied())
}

fn first_variant(s: &[Summary], w: &str) -> Option<String> {
    s.iter()
        .find(|x| x.workload == w)
        .map(|x| x.variant.clone())
}

/// The ratios of the issue, from the medians.
pub fn ratios(s: &[Summary]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |key: String, label: String, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            out.push(Ratio {
                key,
                label,
                value: v,
            });
        }
    };
    let w1 = |m: Mode| metric(s, "w1", "max", m, "sustained_per_s");
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for (num, den) in [
        (Mode::Gateway, Mode::Ceiling),
        (Mode::Gateway, Mode::Forward),
        (Mode::GatewayNosync, Mode::Ceiling),
        (Mode::Forward, Mode::Ceiling),
        (Mode::Bare, Mode::Ceiling),
        (Mode::Gateway, Mode::Bare),
    ] {
        push(
            format!("w1.{}_over_{}", num.name(), den.name()),
            format!("W1 {} ÷ {} (sustained events/s)", num.name(), den.name()),
            div(w1(num), w1(den)),
        );
    }
    push(
        "w1.durability_tax".into(),
        "W1 durability tax = 1 − gateway ÷ gateway-nosync".into(),
        div(w1(Mode::Gateway), w1(Mode::GatewayNosync)).map(|r| 1.0 - r),
    );
    if let Some(v3) = first_variant(s, "w3") {
        for m in Mode::ALL {
            push(
                format!("w3_over_w1.{}", m.name()),
                format!("W3 ÷ W1 {} (sustained events/s)", m.name()),
                div(metric(s, "w3", &v3, m, "sustained_per_s"), w1(m)),
            );
        }
    }
    for m in Mode::ALL {
        push(
            format!("w4.healthy_with_over_without_slow.{}", m.name()),
            format!(
                "W4 {} healthy delivered/s with ÷ without the slow destination",
                m.name()
            ),
            div(
                metric(
                    s,
                    "w4",
                    "100 healthy + 1 slow",
                    m,
                    "healthy_delivered_per_s",
                ),
                metric(s, "w4", "101 healthy", m, "healthy_delivered_per_s"),
            ),
        );
    }
    // W13 (R10): the steady team's ingest latency while another floods, ÷ alone; the
    // target is 1.10 at most.
    if let Some(v13) = first_variant(s, "w13") {
        for m in Mode::ALL {
            for (q, key) in [("p50", "b_p50_ratio"), ("p99", "b_p99_ratio")] {
                push(
                    format!("w13.steady_{q}_flooded_over_alone.{}", m.name()),
                    format!(
                        "W13 {} team B ingest {q} with team A flooding ÷ alone (target ≤ 1.10)",
                        m.name()
                    ),
                    metric(s, "w13", &v13, m, key),
                );
            }
        }
    }
    out
}

/// W1 cost per event, stage by stage: ceiling → + relay hop → + gateway without flush →
/// + flush.
pub fn w1_stages(s: &[Summary]) -> Vec<Stage> {
    let stages = [
        (
            Mode::Ceiling,
            "HTTP exchange generator → receiver (ceiling)",
        ),
        (Mode::Forward, "+ a relay hop, no storage (forward)"),
        (
            Mode::GatewayNosync,
            "+ gateway: store without flush, actors (gateway-nosync)",
        ),
        (Mode::Gateway, "+ durable flush (gateway)"),
    ];
    let mut out = Vec::new();
    let mut prev: Option<f64> = None;
    for (m, label) in stages {
        let Some(rate) = metric(s, "w1", "max", m, "sustained_per_s").filter(|r| *r > 0.0) else {
            continue;
        };
        let us = 1e6 / rate;
        out.push(Stage {
            stage: label.into(),
            mode: m,
            us_per_event: us,
            added_us_per_event: prev.map(|p| us - p),
            server_cpu_ms_per_event: metric(s, "w1", "max", m, "server_cpu_s_per_1k"),
        });
        prev = Some(us);
    }
    out
}

pub fn build(
    settings: Settings,
    modes: Vec<Mode>,
    runs: Vec<RunRecord>,
    notes: Vec<String>,
) -> Report {
    let summaries = summarize(&runs);
    Report {
        tool: "fasthook-bench",
        version: env!("CARGO_PKG_VERSION"),
        machine: procfs::machine_summary(),
        all_balanced: runs.iter().all(|r| r.valid()),
        ratios: ratios(&summaries),
        w1_stages: w1_stages(&summaries),
        summaries,
        settings,
        modes,
        notes,
        runs,
    }
}

/// How a column prints.
#[derive(Clone, Copy)]
enum Fmt {
    Int,
    Ms,
    Secs,
    F1,
    F3,
}

fn fmt_value(v: f64, f: Fmt) -> String {
    match f {
        Fmt::Int => {
            let s = format!("{:.0}", v);
            let neg = s.starts_with('-');
            let digits = s.trim_start_matches('-');
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            if neg {
                format!("-{out}")
            } else {
                out
            }
        }
        Fmt::Ms => format!("{v:.2}"),
        Fmt::Secs => format!("{v:.2}"),
        Fmt::F1 => format!("{v:.1}"),
        Fmt::F3 => format!("{v:.3}"),
    }
}

type Col = (&'static str, &'static str, Fmt);

fn columns(workload: &str, open_loop: bool) -> Vec<Col> {
    let mut c: Vec<Col> = Vec::new();
    match workload {
        "w6" => c.extend([
            ("destinations", "destinations", Fmt::Int),
            ("created/s", "create_per_s", Fmt::Int),
            ("RSS empty MiB", "rss_base_mib", Fmt::F1),
            ("RSS live MiB", "rss_live_mib", Fmt::F1),
            ("RSS restarted MiB", "rss_restart_mib", Fmt::F1),
            ("KiB/dest live", "kib_per_destination_live", Fmt::F3),
            ("KiB/dest restarted", "kib_per_destination_restart", Fmt::F3),
            ("start→ready s", "ready_s", Fmt::Secs),
        ]),
        "w7" => c.extend([
            ("events waiting", "events", Fmt::Int),
            ("ingest/s", "ingest_per_s", Fmt::Int),
            ("stop s", "stop_s", Fmt::Secs),
            ("start→listening s", "listening_s", Fmt::Secs),
            ("start→healthz s", "healthy_s", Fmt::Secs),
            ("start→readyz s", "ready_s", Fmt::Secs),
            ("start→backlog in gauges s", "backlog_visible_s", Fmt::Secs),
            ("peak RSS MiB", "server_peak_rss_mib", Fmt::F1),
        ]),
        "w9" => c.extend([
            ("events", "events", Fmt::Int),
            ("ingest/s", "ingest_per_s", Fmt::Int),
            ("B/event on disk", "bytes_per_event_live", Fmt::Int),
            (
                "B/event apparent",
                "apparent_bytes_per_event_live",
                Fmt::Int,
            ),
            ("B/event after stop", "bytes_per_event_stopped", Fmt::Int),
            (
                "apparent after stop",
                "apparent_bytes_per_event_stopped",
                Fmt::Int,
            ),
        ]),
        "w5" => c.extend([
            ("events held", "events", Fmt::Int),
            ("ingest/s", "ingest_per_s", Fmt::Int),
            ("drain s", "drain_s", Fmt::Secs),
            ("drain ev/s", "drain_per_s", Fmt::Int),
            ("drain ÷ W1", "drain_over_w1", Fmt::F3),
            ("RSS hold start MiB", "rss_hold_start_mib", Fmt::F1),
            ("RSS hold half MiB", "rss_hold_half_mib", Fmt::F1),
            ("RSS hold end MiB", "rss_hold_end_mib", Fmt::F1),
            (
                "RSS 2nd half MiB/100k",
                "rss_hold_growth_mib_per_100k",
                Fmt::F1,
            ),
            ("RSS drain peak MiB", "rss_drain_peak_mib", Fmt::F1),
        ]),
        "w11" => c.extend([
            ("events", "events", Fmt::Int),
            ("ingest/s", "ingest_per_s", Fmt::Int),
            ("held p50 ms", "held_p50_ms", Fmt::Ms),
            ("held p99 ms", "held_p99_ms", Fmt::Ms),
            ("FAILED p50 ms", "failed_p50_ms", Fmt::Ms),
            ("FAILED p99 ms", "failed_p99_ms", Fmt::Ms),
            ("dead p50 ms", "dead_p50_ms", Fmt::Ms),
            ("dead p99 ms", "dead_p99_ms", Fmt::Ms),
            ("connection p50 ms", "connection_p50_ms", Fmt::Ms),
            ("connection p99 ms", "connection_p99_ms", Fmt::Ms),
            ("destination p50 ms", "destination_p50_ms", Fmt::Ms),
            ("destination p99 ms", "destination_p99_ms", Fmt::Ms),
            ("source p50 ms", "source_p50_ms", Fmt::Ms),
            ("source p99 ms", "source_p99_ms", Fmt::Ms),
        ]),
        "w12" => c.extend([
            ("offered/s", "offered_per_s", Fmt::Int),
            ("accepted", "accepted", Fmt::Int),
            ("delivered", "delivered", Fmt::Int),
            ("disk MiB at start", "disk_mib_start", Fmt::F1),
            ("at 1× retention", "disk_mib_at_1x_retention", Fmt::F1),
            ("at 2×", "disk_mib_at_2x_retention", Fmt::F1),
            ("at 3×", "disk_mib_at_3x_retention", Fmt::F1),
            ("max MiB", "disk_mib_max", Fmt::F1),
            ("end of load MiB", "disk_mib_end", Fmt::F1),
            ("sled MiB", "sled_mib_end", Fmt::F1),
            ("bodies MiB", "bodies_mib_end", Fmt::F1),
            ("last half MiB/min", "disk_growth_mib_per_min", Fmt::Ms),
            ("idle MiB", "disk_mib_idle", Fmt::F1),
            (
                "deleted, held open max MiB",
                "deleted_open_mib_max",
                Fmt::F1,
            ),
            ("RSS max MiB", "rss_mib_max", Fmt::F1),
            ("RSS end MiB", "rss_mib_end", Fmt::F1),
            ("RSS last half MiB/min", "rss_growth_mib_per_min", Fmt::Ms),
        ]),
        "w13" => c.extend([
            ("team B offered/s", "b_offered_per_s", Fmt::Int),
            ("B p50 alone ms", "b_alone_p50_ms", Fmt::Ms),
            ("B p50 flooded ms", "b_flooded_p50_ms", Fmt::Ms),
            ("p50 flooded ÷ alone", "b_p50_ratio", Fmt::F3),
            ("B p99 alone ms", "b_alone_p99_ms", Fmt::Ms),
            ("B p99 flooded ms", "b_flooded_p99_ms", Fmt::Ms),
            ("p99 flooded ÷ alone", "b_p99_ratio", Fmt::F3),
            ("B p999 alone ms", "b_alone_p999_ms", Fmt::Ms),
            ("B p999 flooded ms", "b_flooded_p999_ms", Fmt::Ms),
            ("team A limit/s", "limit_per_s", Fmt::Int),
            ("A accepted/s", "a_accepted_per_s", Fmt::Int),
            ("A 429/s", "a_limited_per_s", Fmt::Int),
            (
                "429s w/o Retry-After",
                "a_429_without_retry_after",
                Fmt::Int,
            ),
            ("srv cores alone", "server_cpu_alone", Fmt::Ms),
            ("srv cores flooded", "server_cpu_flooded", Fmt::Ms),
            ("drain s", "drain_s", Fmt::Secs),
        ]),
        "w10" => c.extend([
            ("offered/s", "offered_per_s", Fmt::Int),
            ("open s", "open_for_s", Fmt::Secs),
            ("accepted while open", "accepted_while_open", Fmt::Int),
            ("queued at end of open", "queued_end_open", Fmt::Int),
            ("RSS at open MiB", "rss_open_mib", Fmt::F1),
            ("RSS end of open MiB", "rss_open_end_mib", Fmt::F1),
            ("RSS peak MiB", "rss_peak_mib", Fmt::F1),
            ("MiB/100k queued", "rss_mib_per_100k_queued", Fmt::Ms),
            ("close→drained s", "close_to_drained_s", Fmt::Secs),
            ("drain ev/s", "drain_per_s", Fmt::Int),
            ("order checked", "order_checked", Fmt::Int),
            ("order violations", "order_violations", Fmt::Int),
            ("most overtaken", "order_max_overtaken", Fmt::Int),
        ]),
        _ => {
            if open_loop {
                c.push(("offered/s", "offered_per_s", Fmt::Int));
                c.push(("gen lag p99 ms", "gen_lag_p99_ms", Fmt::Ms));
            }
            c.extend([
                ("accepted/s", "accepted_per_s", Fmt::Int),
                ("delivered/s", "delivered_per_s", Fmt::Int),
                ("ingest p50 ms", "ingest_p50_ms", Fmt::Ms),
                ("ingest p99 ms", "ingest_p99_ms", Fmt::Ms),
                ("e2e p50 ms", "e2e_p50_ms", Fmt::Ms),
                ("e2e p99 ms", "e2e_p99_ms", Fmt::Ms),
            ]);
            if workload == "w4" {
                c.extend([
                    ("healthy del/s", "healthy_delivered_per_s", Fmt::Int),
                    ("healthy e2e p99", "healthy_e2e_p99_ms", Fmt::Ms),
                    ("dest #0 del/s", "dest0_delivered_per_s", Fmt::Int),
                ]);
            }
            if workload == "w3" {
                c.extend([
                    ("scrape ms", "scrape_ms", Fmt::Ms),
                    ("scrape KiB", "scrape_kib", Fmt::F1),
                ]);
            }
            if workload == "w8" {
                c.push(("MiB/s", "mib_per_s", Fmt::F1));
            }
            c.extend([
                ("srv CPU-s/1k ev", "server_cpu_s_per_1k", Fmt::F3),
                ("bench CPU-s/1k ev", "bench_cpu_s_per_1k", Fmt::F3),
                ("srv peak RSS MiB", "server_peak_rss_mib", Fmt::F1),
                ("ev/flush", "events_per_flush", Fmt::F1),
                ("drain s", "drain_s", Fmt::Secs),
            ]);
        }
    }
    c
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s += &format!(" {c}{} |", " ".repeat(pad));
            } else {
                s += &format!(" {}{c} |", " ".repeat(pad));
            }
        }
        s
    };
    let _ = writeln!(out, "{}", line(header));
    let mut sep = String::from("|");
    for (i, wi) in w.iter().enumerate() {
        sep += &if i == 0 {
            format!("{}|", "-".repeat(wi + 2))
        } else {
            format!("{}:|", "-".repeat(wi + 1))
        };
    }
    let _ = writeln!(out, "{sep}");
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
}

/// W10's order violations run by run: a median would hide one run's.
fn order_findings(out: &mut String, r: &Report, variant: &str) {
    for run in r
        .runs
        .iter()
        .filter(|x| x.workload == "w10" && x.variant == variant && x.error.is_none())
    {
        let m = |k: &str| run.metrics.get(k).copied().unwrap_or(0.0);
        if m("order_violations") > 0.0 {
            let _ = writeln!(
                out,
                "  ORDER: {}: {} of {} events that waited behind the breaker were delivered after \
                 an event accepted later (most overtaken: {}; destination max_concurrency {})",
                run.label(),
                fmt_value(m("order_violations"), Fmt::Int),
                fmt_value(m("order_checked"), Fmt::Int),
                fmt_value(m("order_max_overtaken"), Fmt::Int),
                fmt_value(m("concurrency"), Fmt::Int),
            );
        }
    }
}

/// W12's data dir run by run at every retention multiple (the table has the first three).
fn retention_levels(out: &mut String, r: &Report, variant: &str) {
    for run in r
        .runs
        .iter()
        .filter(|x| x.workload == "w12" && x.variant == variant && x.error.is_none())
    {
        let m = |k: &str| {
            run.metrics
                .get(k)
                .map_or("—".to_string(), |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            out,
            "  {}: data dir MiB at {}; last half MiB/min: sled {} (its log {}), bodies {}",
            run.label(),
            crate::workloads::w12_multiples_text(run),
            m("sled_growth_mib_per_min"),
            m("sled_log_growth_mib_per_min"),
            m("bodies_growth_mib_per_min"),
        );
    }
}

/// The report as Markdown-compatible text tables.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fasthook-bench {} — {} cores, {}, kernel {}; reps {}, {} s runs after {} s warm-up, {} in flight (closed loop)",
        r.version,
        r.machine["cores"],
        r.machine["cpu"].as_str().unwrap_or("?"),
        r.machine["kernel"].as_str().unwrap_or("?"),
        r.settings.reps,
        r.settings.duration_s,
        r.settings.warmup_s,
        r.settings.concurrency,
    );
    let mut workloads: Vec<&str> = r.summaries.iter().map(|s| s.workload.as_str()).collect();
    workloads.dedup();
    for w in workloads {
        let mut variants: Vec<&str> = r
            .summaries
            .iter()
            .filter(|s| s.workload == w)
            .map(|s| s.variant.as_str())
            .collect();
        variants.dedup();
        for v in variants {
            let open = v.starts_with("latency");
            let cols = columns(w, open);
            let _ = writeln!(out, "\n### {} — {v} (medians)\n", w.to_uppercase());
            let mut header = vec!["mode".to_string(), "ok runs".to_string()];
            header.extend(cols.iter().map(|c| c.0.to_string()));
            let mut rows = Vec::new();
            for s in r
                .summaries
                .iter()
                .filter(|s| s.workload == w && s.variant == v)
            {
                let mut row = vec![s.mode.name().to_string(), format!("{}/{}", s.valid, s.runs)];
                for (_, key, f) in &cols {
                    row.push(match (s.valid, s.medians.get(*key)) {
                        (0, _) => "VOID".into(),
                        (_, Some(x)) => fmt_value(*x, *f),
                        (_, None) => "—".into(),
                    });
                }
                rows.push(row);
            }
            table(&mut out, &header, &rows);
            for s in r
                .summaries
                .iter()
                .filter(|s| s.workload == w && s.variant == v)
            {
                for d in &s.discarded {
                    let _ = writeln!(out, "  not counted: {d}");
                }
            }
            if w == "w10" {
                order_findings(&mut out, r, v);
            }
            if w == "w12" {
                retention_levels(&mut out, r, v);
            }
        }
    }
    if !r.ratios.is_empty() {
        let _ = writeln!(out, "\n### Ratios\n");
        let rows: Vec<Vec<String>> = r
            .ratios
            .iter()
            .map(|x| vec![x.label.clone(), format!("{:.3}", x.value)])
            .collect();
        table(&mut out, &["ratio".into(), "value".into()], &rows);
    }
    if !r.w1_stages.is_empty() {
        let _ = writeln!(
            out,
            "\n### W1 per-stage cost (machine µs per event at the maximum sustained rate)\n"
        );
        let rows: Vec<Vec<String>> = r
            .w1_stages
            .iter()
            .map(|s| {
                vec![
                    s.stage.clone(),
                    format!("{:.2}", s.us_per_event),
                    s.added_us_per_event
                        .map(|a| format!("{a:+.2}"))
                        .unwrap_or_else(|| "—".into()),
                    s.server_cpu_ms_per_event
                        .map(|c| format!("{c:.3}"))
                        .unwrap_or_else(|| "—".into()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "stage".into(),
                "µs/event".into(),
                "added µs".into(),
                "server CPU ms/event".into(),
            ],
            &rows,
        );
    }
    let _ = writeln!(out, "\n### Ledgers\n");
    for run in &r.runs {
        let status = match &run.error {
            Some(e) => format!("FAILED: {}", first_line(e)),
            None => run.ledger.to_string(),
        };
        let _ = writeln!(out, "- {}: {status}", run.label());
        for n in &run.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "\nnote: {n}");
    }
    let void = r.runs.iter().filter(|x| !x.valid()).count();
    if void > 0 {
        let _ = writeln!(
            out,
            "\n{void} of {} runs VOID or FAILED: their figures are not reported.",
            r.runs.len()
        );
    } else {
        let _ = writeln!(out, "\nall {} runs balanced their ledgers.", r.runs.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, Waiting};

    fn run(w: &str, v: &str, m: Mode, rep: usize, rate: f64, ok: bool) -> RunRecord {
        let mut r = RunRecord::new(w, v, m, rep);
        r.set("sustained_per_s", rate);
        r.set("accepted_per_s", rate);
        r.set("healthy_delivered_per_s", rate);
        if !ok {
            r.ledger = ledger::compute(["a"], [], [], Waiting::NoQueue);
        }
        r
    }

    #[test]
    fn medians_skip_void_runs_and_ratios_follow() {
        let runs = vec![
            run("w1", "max", Mode::Ceiling, 0, 100.0, true),
            run("w1", "max", Mode::Gateway, 0, 40.0, true),
            run("w1", "max", Mode::GatewayNosync, 0, 50.0, true),
            run("w1", "max", Mode::Ceiling, 1, 120.0, true),
            run("w1", "max", Mode::Gateway, 1, 1000.0, false),
            run("w1", "max", Mode::GatewayNosync, 1, 50.0, true),
            run("w1", "max", Mode::Ceiling, 2, 80.0, true),
            run("w1", "max", Mode::Gateway, 2, 40.0, true),
            run("w1", "max", Mode::GatewayNosync, 2, 50.0, true),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 3);
        let g = s.iter().find(|x| x.mode == Mode::Gateway).unwrap();
        assert_eq!((g.runs, g.valid), (3, 2));
        assert_eq!(g.medians["sustained_per_s"], 40.0);
        assert_eq!(g.discarded.len(), 1);
        let r = ratios(&s);
        let get = |k: &str| r.iter().find(|x| x.key == k).map(|x| x.value);
        assert_eq!(get("w1.gateway_over_ceiling"), Some(0.4));
        assert!((get("w1.durability_tax").unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(get("w1.gateway_over_forward"), None);
        let st = w1_stages(&s);
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].us_per_event, 1e6 / 100.0);
        assert!(st[0].added_us_per_event.is_none());
    }

    #[test]
    fn text_report_marks_void_groups() {
        let runs = vec![run("w1", "max", Mode::Ceiling, 0, 100.0, false)];
        let rep = build(
            crate::cli::BenchArgs::default_settings_for_tests(),
            vec![Mode::Ceiling],
            runs,
            vec![],
        );
        assert!(!rep.all_balanced);
        let t = render_text(&rep);
        assert!(t.contains("VOID"), "{t}");
        assert!(t.contains("not counted"), "{t}");
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["all_balanced"], false);
    }

    #[test]
    fn w10_table_and_order_findings() {
        let mut runs = Vec::new();
        for (rep, violations) in [(0, 0.0), (1, 7.0), (2, 0.0)] {
            let mut r = RunRecord::new("w10", "300 ev/s, open 5 s, c=1", Mode::Gateway, rep);
            r.set("accepted_while_open", 1500.0);
            r.set("rss_mib_per_100k_queued", 12.345);
            r.set("order_checked", 1400.0);
            r.set("order_violations", violations);
            r.set("order_max_overtaken", violations);
            r.set("concurrency", 1.0);
            runs.push(r);
        }
        let rep = build(
            crate::cli::BenchArgs::default_settings_for_tests(),
            vec![Mode::Gateway],
            runs,
            vec![],
        );
        let t = render_text(&rep);
        assert!(t.contains("### W10 — 300 ev/s, open 5 s, c=1"), "{t}");
        assert!(
            t.contains("accepted while open") && t.contains("1,500"),
            "{t}"
        );
        assert!(t.contains("MiB/100k queued") && t.contains("12.35"), "{t}");
        // The median says 0; the second run's violations are still reported.
        assert!(
            t.contains("ORDER: w10/300 ev/s, open 5 s, c=1 gateway #2: 7 of 1,400"),
            "{t}"
        );
        assert!(!t.contains("gateway #1: 0 of"), "{t}");
    }

    #[test]
    fn w12_table_and_every_retention_multiple() {
        let mut r = RunRecord::new("w12", "1,000 ev/s, retention 20 s, 120 s", Mode::Gateway, 0);
        for (k, v) in [
            (1, 30.04),
            (2, 51.0),
            (3, 52.5),
            (4, 52.0),
            (5, 53.24),
            (6, 52.9),
        ] {
            r.set(&format!("disk_mib_at_{k}x_retention"), v);
        }
        r.set("disk_mib_max", 54.0);
        r.set("disk_growth_mib_per_min", 0.123);
        r.set("sled_growth_mib_per_min", 0.2);
        r.set("bodies_growth_mib_per_min", -0.077);
        let rep = build(
            crate::cli::BenchArgs::default_settings_for_tests(),
            vec![Mode::Gateway],
            vec![r],
            vec![],
        );
        let t = render_text(&rep);
        assert!(
            t.contains("### W12 — 1,000 ev/s, retention 20 s, 120 s"),
            "{t}"
        );
        assert!(t.contains("at 1× retention") && t.contains("30.0"), "{t}");
        assert!(t.contains("last half MiB/min") && t.contains("0.12"), "{t}");
        assert!(
            t.contains(
                "w12/1,000 ev/s, retention 20 s, 120 s gateway #1: data dir MiB at 1× 30.0, \
                 2× 51.0, 3× 52.5, 4× 52.0, 5× 53.2, 6× 52.9; last half MiB/min: sled 0.20 \
                 (its log —), bodies -0.08"
            ),
            "{t}"
        );
    }

    #[test]
    fn w13_table_and_ratios() {
        let v = "limit 500/s, team B 200 ev/s, 64 flood conns, 10 s phases";
        let mut r = RunRecord::new("w13", v, Mode::Gateway, 0);
        r.set("b_alone_p99_ms", 4.0);
        r.set("b_flooded_p99_ms", 4.2);
        r.set("b_p99_ratio", 1.05);
        r.set("b_p50_ratio", 1.02);
        r.set("a_accepted_per_s", 549.6);
        let rep = build(
            crate::cli::BenchArgs::default_settings_for_tests(),
            vec![Mode::Gateway],
            vec![r],
            vec![],
        );
        let t = render_text(&rep);
        assert!(t.contains(&format!("### W13 — {v}")), "{t}");
        assert!(
            t.contains("p99 flooded ÷ alone") && t.contains("1.050"),
            "{t}"
        );
        assert!(t.contains("A accepted/s") && t.contains("550"), "{t}");
        let get = |k: &str| rep.ratios.iter().find(|x| x.key == k).map(|x| x.value);
        assert_eq!(get("w13.steady_p99_flooded_over_alone.gateway"), Some(1.05));
        assert_eq!(get("w13.steady_p50_flooded_over_alone.gateway"), Some(1.02));
        assert_eq!(
            get("w13.steady_p99_flooded_over_alone.gateway-nosync"),
            None
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_value(1234567.0, Fmt::Int), "1,234,567");
        assert_eq!(fmt_value(-1234.0, Fmt::Int), "-1,234");
        assert_eq!(fmt_value(1.23456, Fmt::Ms), "1.23");
    }
}
