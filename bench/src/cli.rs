//! Command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
MODES (run side by side, alternating, medians of the repetitions):
  ceiling         generator POSTs straight to the receiver: the machine's HTTP ceiling
  forward         generator -> no-storage relay (same hyper stack, child process) -> receiver
  gateway         generator -> fasthook ingress -> durable store -> destination actor -> receiver
  gateway-nosync  the same with [store] durability = \"none\": the durability tax
  bare            W1 only, on request (--modes ...,bare): generator -> a bare durable relay on the
                  gateway's stack (actix-web, sled group commit + fdatasync, reqwest; no routing,
                  records or actors) -> receiver: the reference the targets cite

WORKLOADS (1 KiB JSON bodies unless stated):
  w1  one source -> one destination: max sustained rate (closed loop), latency at 50 % of it (open loop)
  w2  fan-out: one source -> 10 connections/destinations
  w3  the W1 load spread over 10,000 sources/destinations (--w3-destinations)
  w4  one destination answering after 200 ms beside 100 healthy ones, vs 101 healthy
  w5  a held backlog (--w5-events, 100,000) drained on unpause (gateway modes): drain rate
      (÷ W1's delivered rate when W1 runs in the same invocation), RSS while holding and draining
  w6  RSS per idle destination with 100,000 destinations (--w6-destinations; gateway modes)
  w7  restart with 1,000,000 waiting events, receiver down: time to /readyz (--w7-events; gateway modes)
  w8  64 KiB and 1 MiB bodies
  w9  bytes on disk per retained 1 KiB event (--w9-events; gateway modes)
  w10 circuit breaker open under load, then closed (gateway modes): the receiver answers 503,
      the destination's breaker opens after 5 failures and stays open --w10-open-s (60 s) under
      an open-loop load of --w10-rate (2,000 events/s); the receiver turns healthy just before
      the probe, the breaker closes and the backlog drains. Reports events accepted while
      open, RSS (at open, at the end of the open period, peak, MiB per 100k queued events),
      close -> drained time and rate, and whether the backlog arrived in acceptance order.
      Each run takes about open_s + drain time (~2 min with the defaults; --quick ~10 s)
  w11 event queries (gateway modes): --w11-events (1,000,000) delivered events, then 50 held
      on a paused connection and 50 dead-lettered; p50/p99 of listing the 50 held ones of
      their connection, status=FAILED and dead_lettered=true (200 calls each)
  w12 disk under a steady load with retention (gateway modes; not in `all`: a soak of
      --w12-duration-s, 120 s): [retention] days = --w12-retention-s (20 s) / 86400,
      sweep_interval 1s, 4 MiB body segments; an open-loop load of --w12-rate (1,000 events/s,
      1 KiB, one destination); the data dir's allocated bytes (sled's files and bodies/) and
      RSS every second. Reports the size at 1x, 2x, 3x... the retention, its max and final
      size, its growth over the last half of the load in MiB/min (near 0 once it levels off),
      and the size after one more retention period idle. One run on the gateway mode unless
      --modes/--reps say otherwise (~2.5 min with the defaults; --quick 8 s at 200/s, 2 s)
  w13 one team floods ingress (gateway modes; row R10): [ingress] team_rate_limit = --w13-limit
      (500/s). Team B sends open-loop at --w13-rate (200 events/s, 1 KiB) in phases of
      --w13-phase-s (10 s), alternately alone and while team A floods its own source, closed
      loop, with --w13-flood-conns (64) connections and no back-off; 2 pairs (alone, flooded)
      unless --reps says how many. Reports team B's ingest p50/p99/p999 (send -> 200) alone and
      flooded and flooded ÷ alone (target: within 10 %), team A's accepted/s (≈ the limit) and
      429/s, whether every 429 carried Retry-After, server CPU per phase, and one ledger over
      both teams (every accepted event delivered). One run on the gateway mode unless
      --modes says otherwise (~1 min with the defaults; --quick: one pair of 2 s phases)

Every run ends with a ledger: accepted = delivered (unique ids) + dead-lettered + waiting at
cutoff, duplicates shown. A run whose ledger does not balance is VOID, left out of the
medians, and makes the exit status 1.

EXAMPLES:
  fasthook-bench --quick                                  # CI smoke test: W1, all modes, seconds
  fasthook-bench --workloads w1,w2,w4,w8                  # the traffic workloads, 3 repetitions
  fasthook-bench --workloads all --json > bench.json
  fasthook-bench --workloads w10 --modes gateway            # breaker open 60 s at 2,000/s, then drain
  fasthook-bench --workloads w12 --json > w12.json          # retention soak: 120 s at 1,000/s
  fasthook-bench --workloads w13 --modes gateway            # team A floods, team B's latency
  fasthook-bench --quick --modes ceiling,forward --receiver-drop-nth 100   # must say VOID";

#[derive(Parser, Debug)]
#[command(
    name = "fasthook-bench",
    version,
    about = "FastHook benchmark: the gateway beside the machine's own HTTP ceiling, in one run.",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The forward mode's relay (started by the bench itself).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// The bare mode's durable relay (started by the bench itself).
    #[command(hide = true)]
    Bare {
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// generator POSTs straight to the receiver (the machine's HTTP ceiling)
    Ceiling,
    /// generator -> no-storage relay (same hyper stack) -> receiver
    Forward,
    /// generator -> fasthook (durable store, default durability) -> receiver
    Gateway,
    /// as gateway, with [store] durability = "none"
    GatewayNosync,
    /// W1 only: generator -> bare durable relay (actix-web, sled group commit, reqwest) -> receiver
    Bare,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Ceiling,
        Mode::Forward,
        Mode::Gateway,
        Mode::GatewayNosync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ceiling => "ceiling",
            Mode::Forward => "forward",
            Mode::Gateway => "gateway",
            Mode::GatewayNosync => "gateway-nosync",
            Mode::Bare => "bare",
        }
    }

    pub fn is_gateway(self) -> bool {
        matches!(self, Mode::Gateway | Mode::GatewayNosync)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// one source -> one destination: max rate, latency at 50 % of it
    W1,
    /// fan-out: one source -> 10 destinations
    W2,
    /// the W1 load over 10,000 destinations
    W3,
    /// one 200 ms destination beside 100 healthy ones
    W4,
    /// a 100,000-event HOLD backlog drained on unpause: drain rate, RSS
    W5,
    /// RSS per idle destination, 100,000 destinations
    W6,
    /// restart with 1,000,000 waiting events: time to /readyz
    W7,
    /// 64 KiB and 1 MiB bodies
    W8,
    /// bytes on disk per retained 1 KiB event
    W9,
    /// circuit breaker open under load, then closed: queueing memory, drain, order
    W10,
    /// listing 50 held / failed / dead-lettered events among 1,000,000 delivered ones
    W11,
    /// disk under a steady load with retention: does it level off (a soak; not in `all`)
    W12,
    /// one team floods ingress over its limit: 429s for it, another team's latency
    W13,
    /// w1 to w11 and w13 (w10 adds about open_s + drain time per run; w12 only when named)
    All,
}

impl Workload {
    pub const EACH: [Workload; 12] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
        Workload::W7,
        Workload::W8,
        Workload::W9,
        Workload::W10,
        Workload::W11,
        Workload::W13,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
            Workload::W6 => "w6",
            Workload::W7 => "w7",
            Workload::W8 => "w8",
            Workload::W9 => "w9",
            Workload::W10 => "w10",
            Workload::W11 => "w11",
            Workload::W12 => "w12",
            Workload::W13 => "w13",
            Workload::All => "all",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Modes to compare [default: all four; with --quick, those available]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Option<Vec<Mode>>,

    /// Workloads to run [default: w1]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Option<Vec<Workload>>,

    /// CI smoke test: one short repetition, small counts, no thresholds (W1 unless --workloads)
    #[arg(long)]
    pub quick: bool,

    /// Repetitions of each measurement (alternating modes) [default: 3; --quick: 1; w12: 1;
    /// w13: the pairs of phases, 2; --quick: 1]
    #[arg(long)]
    pub reps: Option<usize>,

    /// Measured seconds of each run [default: 10; --quick: 1]
    #[arg(long)]
    pub duration: Option<f64>,

    /// Seconds of load before the measurement window opens [default: 2; --quick: 0.3]
    #[arg(long)]
    pub warmup: Option<f64>,

    /// Requests in flight for closed-loop runs. 128: at 64 a durable gateway is bound by
    /// its commit latency (64 ÷ ~4 ms), not its capacity; ceiling and forward are the same at
    /// both (BENCHMARKS.md)
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,

    /// Open-loop rate, requests/s (default: 50 % of each mode's measured W1 maximum)
    #[arg(long)]
    pub rate: Option<f64>,

    /// Most requests outstanding in open loop, like a sender's bounded connection pool
    /// (waiting for a slot counts as latency)
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,

    /// Body size of W1-W4 in bytes (a JSON document)
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,

    /// max_concurrency given to each gateway destination
    #[arg(long, default_value_t = 64)]
    pub dest_concurrency: u32,

    /// Longest wait after the load stops for deliveries to catch up, seconds [default: 60; --quick: 15]
    #[arg(long)]
    pub drain_timeout: Option<f64>,

    /// The fasthook binary [default: `fasthook` next to this executable]
    #[arg(long)]
    pub fasthook_bin: Option<PathBuf>,

    /// Print the report as JSON on stdout (tables go to stderr)
    #[arg(long)]
    pub json: bool,

    /// W3: destinations to spread the load over [default: 10,000; --quick: 200]
    #[arg(long)]
    pub w3_destinations: Option<usize>,

    /// W6: idle destinations to create [default: 100,000; --quick: 2,000]
    #[arg(long)]
    pub w6_destinations: Option<usize>,

    /// W5: events held, then drained [default: 100,000; --quick: 5,000]
    #[arg(long)]
    pub w5_events: Option<u64>,

    /// W7: events waiting when the gateway restarts [default: 1,000,000; --quick: 20,000]
    #[arg(long)]
    pub w7_events: Option<u64>,

    /// W9: events to ingest and retain [default: 50,000; --quick: 5,000]
    #[arg(long)]
    pub w9_events: Option<u64>,

    /// W10: open-loop rate while the breaker is open, events/s [default: 2,000; --quick: 300]
    #[arg(long)]
    pub w10_rate: Option<f64>,

    /// W11: delivered events around the ones listed [default: 1,000,000; --quick: 20,000]
    #[arg(long)]
    pub w11_events: Option<u64>,

    /// W10: seconds the breaker stays open under load; also the destination's
    /// cooldown_seconds, so the probe comes at its end [default: 60; --quick: 5]
    #[arg(long)]
    pub w10_open_s: Option<u64>,

    /// W12: open-loop rate of the steady load, events/s [default: 1,000; --quick: 200]
    #[arg(long)]
    pub w12_rate: Option<f64>,

    /// W12: seconds of steady load [default: 120; --quick: 8]
    #[arg(long)]
    pub w12_duration_s: Option<f64>,

    /// W12: the retention period in seconds, written as [retention] days = seconds / 86400
    /// [default: 20; --quick: 2]
    #[arg(long)]
    pub w12_retention_s: Option<f64>,

    /// W10: max_concurrency of the destination. 1 makes arrival order equal to start
    /// order, so any order violation is a finding; with more, attempts in flight together
    /// may legitimately finish out of order (the gateway promises start order)
    #[arg(long, default_value_t = 1)]
    pub w10_concurrency: u32,

    /// W10: longest wait, from the close, for every accepted event to be delivered; a run
    /// that misses it is VOID, seconds [default: 600; --quick: 60]
    #[arg(long)]
    pub w10_drain_timeout: Option<f64>,

    /// W13: the gateway's [ingress] team_rate_limit, requests per second per team
    #[arg(long, default_value_t = 500)]
    pub w13_limit: u32,

    /// W13: team B's open-loop rate, events/s; keep it under --w13-limit [default: 200]
    #[arg(long)]
    pub w13_rate: Option<f64>,

    /// W13: seconds of each phase (team B alone, team B while team A floods)
    /// [default: 10; --quick: 2]
    #[arg(long)]
    pub w13_phase_s: Option<f64>,

    /// W13: team A's connections, each sending its next request as soon as the last one
    /// answered, 429 or not
    #[arg(long, default_value_t = 64)]
    pub w13_flood_conns: usize,

    /// W13: team A's open-loop rate, events/s, while team B is "alone" (0: silent). At team
    /// A's limit, the two phases differ only by what the flood sends past it
    #[arg(long, default_value_t = 0.0)]
    pub w13_a_baseline_rate: f64,

    /// Self-check: the receiver answers 200 to its N-th delivery but forgets it, as if the
    /// event were lost; every run must then be reported VOID
    #[arg(long)]
    pub receiver_drop_nth: Option<u64>,
}

/// The arguments with --quick and the defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub modes: Vec<Mode>,
    pub modes_explicit: bool,
    pub workloads: Vec<Workload>,
    pub quick: bool,
    pub reps: usize,
    /// `--reps` was given (W12, a soak, runs once otherwise).
    pub reps_explicit: bool,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub max_inflight: usize,
    pub body_bytes: usize,
    pub dest_concurrency: u32,
    pub drain_timeout_s: f64,
    #[serde(skip)]
    pub fasthook_bin: Option<PathBuf>,
    pub json: bool,
    pub w3_destinations: usize,
    pub w6_destinations: usize,
    pub w5_events: u64,
    pub w7_events: u64,
    pub w9_events: u64,
    pub w10_rate: f64,
    pub w11_events: u64,
    pub w10_open_s: u64,
    pub w10_concurrency: u32,
    pub w10_drain_timeout_s: f64,
    pub w12_rate: f64,
    pub w12_duration_s: f64,
    pub w12_retention_s: f64,
    pub w13_limit: u32,
    pub w13_rate: f64,
    pub w13_phase_s: f64,
    pub w13_flood_conns: usize,
    pub w13_a_baseline_rate: f64,
    pub receiver_drop_nth: Option<u64>,
}

impl BenchArgs {
    pub fn settings(&self) -> Settings {
        let q = self.quick;
        let mut workloads: Vec<Workload> = match (&self.workloads, q) {
            (Some(w), _) => w.clone(),
            (None, _) => vec![Workload::W1],
        };
        // `all` is every workload but the soak (w12), which can still be named beside it.
        if workloads.contains(&Workload::All) {
            workloads.retain(|w| *w != Workload::All);
            workloads.extend(Workload::EACH);
        }
        workloads.sort();
        workloads.dedup();
        let mut modes = self.modes.clone().unwrap_or_else(|| Mode::ALL.to_vec());
        modes.sort();
        modes.dedup();
        Settings {
            modes,
            modes_explicit: self.modes.is_some(),
            workloads,
            quick: q,
            reps: self.reps.unwrap_or(if q { 1 } else { 3 }).max(1),
            reps_explicit: self.reps.is_some(),
            duration_s: self.duration.unwrap_or(if q { 1.0 } else { 10.0 }),
            warmup_s: self.warmup.unwrap_or(if q { 0.3 } else { 2.0 }),
            concurrency: self.concurrency.max(1),
            rate: self.rate,
            max_inflight: self.max_inflight,
            body_bytes: self.body_bytes,
            dest_concurrency: self.dest_concurrency,
            drain_timeout_s: self.drain_timeout.unwrap_or(if q { 15.0 } else { 60.0 }),
            fasthook_bin: self.fasthook_bin.clone(),
            json: self.json,
            w3_destinations: self.w3_destinations.unwrap_or(if q { 200 } else { 10_000 }),
            w6_destinations: self
                .w6_destinations
                .unwrap_or(if q { 2_000 } else { 100_000 }),
            w5_events: self.w5_events.unwrap_or(if q { 5_000 } else { 100_000 }),
            w7_events: self.w7_events.unwrap_or(if q { 20_000 } else { 1_000_000 }),
            w9_events: self.w9_events.unwrap_or(if q { 5_000 } else { 50_000 }),
            w10_rate: self
                .w10_rate
                .unwrap_or(if q { 300.0 } else { 2_000.0 })
                .max(1.0),
            w10_open_s: self.w10_open_s.unwrap_or(if q { 5 } else { 60 }).max(1),
            w11_events: self
                .w11_events
                .unwrap_or(if q { 20_000 } else { 1_000_000 }),
            w10_concurrency: self.w10_concurrency.max(1),
            w10_drain_timeout_s: self
                .w10_drain_timeout
                .unwrap_or(if q { 60.0 } else { 600.0 }),
            w12_rate: self
                .w12_rate
                .unwrap_or(if q { 200.0 } else { 1_000.0 })
                .max(1.0),
            w12_duration_s: self
                .w12_duration_s
                .unwrap_or(if q { 8.0 } else { 120.0 })
                .max(1.0),
            w12_retention_s: self
                .w12_retention_s
                .unwrap_or(if q { 2.0 } else { 20.0 })
                .max(0.001),
            w13_limit: self.w13_limit.max(1),
            w13_rate: self.w13_rate.unwrap_or(200.0).max(1.0),
            w13_phase_s: self
                .w13_phase_s
                .unwrap_or(if q { 2.0 } else { 10.0 })
                .max(0.5),
            w13_flood_conns: self.w13_flood_conns.max(1),
            w13_a_baseline_rate: self.w13_a_baseline_rate.max(0.0),
            receiver_drop_nth: self.receiver_drop_nth,
        }
    }
}

#[cfg(test)]
impl BenchArgs {
    /// The settings of a bare `fasthook-bench` invocation.
    pub fn default_settings_for_tests() -> Settings {
        Cli::parse_from(["fasthook-bench"]).bench.settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quick_defaults() {
        let c = Cli::parse_from(["fasthook-bench", "--quick"]);
        let s = c.bench.settings();
        assert!(s.quick && !s.modes_explicit);
        assert_eq!(s.workloads, vec![Workload::W1]);
        assert_eq!(s.modes, Mode::ALL.to_vec());
        assert_eq!(s.reps, 1);
    }

    #[test]
    fn lists_and_all() {
        let c = Cli::parse_from([
            "fasthook-bench",
            "--modes",
            "gateway-nosync,ceiling",
            "--workloads",
            "all",
        ]);
        let s = c.bench.settings();
        assert_eq!(s.modes, vec![Mode::Ceiling, Mode::GatewayNosync]);
        assert_eq!(s.workloads.len(), 12);
        assert_eq!(s.workloads.last(), Some(&Workload::W13));
        assert!(s.workloads.contains(&Workload::W11));
        assert!(!s.workloads.contains(&Workload::W12));
        assert_eq!(s.reps, 3);
        assert!(!s.reps_explicit);
        // The soak is not in `all`, but can be named beside it.
        let c = Cli::parse_from(["fasthook-bench", "--workloads", "w12,all", "--reps", "2"]);
        let s = c.bench.settings();
        assert_eq!(s.workloads.len(), 13);
        assert_eq!(s.workloads.last(), Some(&Workload::W13));
        assert!(s.workloads.contains(&Workload::W12));
        assert!(!s.workloads.contains(&Workload::All));
        assert!(s.reps_explicit);
    }

    #[test]
    fn w12_settings() {
        let s = BenchArgs::default_settings_for_tests();
        assert_eq!(
            (s.w12_rate, s.w12_duration_s, s.w12_retention_s),
            (1_000.0, 120.0, 20.0)
        );
        let q = Cli::parse_from(["fasthook-bench", "--quick", "--workloads", "w12"])
            .bench
            .settings();
        assert_eq!(q.workloads, vec![Workload::W12]);
        assert_eq!(
            (q.w12_rate, q.w12_duration_s, q.w12_retention_s),
            (200.0, 8.0, 2.0)
        );
        let c = Cli::parse_from([
            "fasthook-bench",
            "--workloads",
            "w12",
            "--w12-rate",
            "500",
            "--w12-duration-s",
            "300",
            "--w12-retention-s",
            "0.5",
        ])
        .bench
        .settings();
        assert_eq!(
            (c.w12_rate, c.w12_duration_s, c.w12_retention_s),
            (500.0, 300.0, 0.5)
        );
    }

    #[test]
    fn w13_settings() {
        let s = BenchArgs::default_settings_for_tests();
        assert_eq!(
            (s.w13_limit, s.w13_rate, s.w13_phase_s, s.w13_flood_conns),
            (500, 200.0, 10.0, 64)
        );
        let q = Cli::parse_from(["fasthook-bench", "--quick", "--workloads", "w13"])
            .bench
            .settings();
        assert_eq!(q.workloads, vec![Workload::W13]);
        assert_eq!((q.w13_limit, q.w13_rate, q.w13_phase_s), (500, 200.0, 2.0));
        let c = Cli::parse_from([
            "fasthook-bench",
            "--workloads",
            "w13",
            "--w13-limit",
            "1000",
            "--w13-rate",
            "300",
            "--w13-phase-s",
            "20",
            "--w13-flood-conns",
            "16",
        ])
        .bench
        .settings();
        assert_eq!(
            (c.w13_limit, c.w13_rate, c.w13_phase_s, c.w13_flood_conns),
            (1000, 300.0, 20.0, 16)
        );
        // 0 would mean no limit to the gateway: W13 always sets one.
        let z = Cli::parse_from(["fasthook-bench", "--w13-limit", "0"])
            .bench
            .settings();
        assert_eq!(z.w13_limit, 1);
    }

    #[test]
    fn w10_settings() {
        let s = BenchArgs::default_settings_for_tests();
        assert_eq!(
            (s.w10_rate, s.w10_open_s, s.w10_concurrency),
            (2_000.0, 60, 1)
        );
        assert_eq!(s.w10_drain_timeout_s, 600.0);
        let q = Cli::parse_from(["fasthook-bench", "--quick", "--workloads", "w10"])
            .bench
            .settings();
        assert_eq!(q.workloads, vec![Workload::W10]);
        assert_eq!((q.w10_rate, q.w10_open_s), (300.0, 5));
        let c = Cli::parse_from([
            "fasthook-bench",
            "--workloads",
            "w9,w10",
            "--w10-rate",
            "500",
            "--w10-open-s",
            "20",
            "--w10-concurrency",
            "8",
        ])
        .bench
        .settings();
        assert_eq!(c.workloads, vec![Workload::W9, Workload::W10]);
        assert_eq!(
            (c.w10_rate, c.w10_open_s, c.w10_concurrency),
            (500.0, 20, 8)
        );
    }

    #[test]
    fn help_lists_modes_and_workloads() {
        let help = Cli::command().render_long_help().to_string();
        for word in [
            "ceiling",
            "forward",
            "gateway-nosync",
            "w1",
            "w4",
            "w9",
            "w10",
            "--w10-open-s",
            "open_s + drain",
            "w12",
            "--w12-rate",
            "--w12-duration-s",
            "--w12-retention-s",
            "w13",
            "--w13-limit",
            "--w13-rate",
            "--w13-phase-s",
            "--w13-flood-conns",
            "not in `all`",
            "VOID",
        ] {
            assert!(help.contains(word), "--help lacks {word}");
        }
    }

    #[test]
    fn relay_subcommand_parses() {
        let c = Cli::parse_from(["fasthook-bench", "relay", "--target", "http://127.0.0.1:1"]);
        assert!(matches!(c.command, Some(Command::Relay { .. })));
    }
}
