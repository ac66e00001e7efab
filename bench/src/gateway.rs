//! The real `fasthook` binary as a child process on a temporary data directory, and the
//! public API calls the bench needs (routes, backlog, dead letters, engine pause).

use crate::child::{self, ManagedChild};
use crate::httpc::{self, HttpClient};
use crate::metrics_text;
use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::process::Command;

pub const LISTEN_MARKER: &str = "fasthook listening on";
pub const TEAM_ID: &str = "tm_bench";

/// Where to find the gateway: `--fasthook-bin`, else `fasthook` next to this executable.
pub fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("fasthook"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the fasthook binary was not found at {}: build it with cargo build --release \
             (or pass --fasthook-bin PATH, or --modes ceiling,forward)",
            path.display()
        ))
    }
}

/// `[store] durability` of the gateway's config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Default: ingress answers after the group commit's flush.
    Fsync,
    /// Ingress answers before the flush.
    None,
}

#[derive(Debug, Clone)]
pub struct GatewayOpts {
    pub durability: Durability,
    pub max_body_bytes: Option<u64>,
    /// `[telemetry] per_id_labels`; `false` for very many destinations.
    pub per_id_labels: bool,
    /// `[store] body_segment_bytes` (the gateway's default when `None`).
    pub body_segment_bytes: Option<u64>,
    /// `[retention]` (the gateway's default, 7 days, when `None`).
    pub retention: Option<Retention>,
    /// `[ingress] team_rate_limit`, requests per second per team (the gateway's default,
    /// no limit, when `None`).
    pub team_rate_limit: Option<u32>,
}

/// `[retention]` of the gateway's config file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// The period in seconds, written as `days = seconds / 86400`.
    pub seconds: f64,
    /// `sweep_interval`, whole seconds.
    pub sweep_interval_s: u64,
}

impl GatewayOpts {
    /// The defaults of the bench: durable, the gateway's body limit, per-id labels on.
    pub fn new(durability: Durability) -> GatewayOpts {
        GatewayOpts {
            durability,
            max_body_bytes: None,
            per_id_labels: true,
            body_segment_bytes: None,
            retention: None,
            team_rate_limit: None,
        }
    }
}

/// A TOML float: always with a decimal point, never in exponent form.
fn toml_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The gateway's config file as TOML.
pub fn config_toml(o: &GatewayOpts) -> String {
    let mut s = format!(
        "[store]\ndurability = \"{}\"\n",
        match o.durability {
            Durability::Fsync => "fsync",
            Durability::None => "none",
        }
    );
    if let Some(n) = o.body_segment_bytes {
        s += &format!("body_segment_bytes = {n}\n");
    }
    if let Some(r) = o.retention {
        s += &format!(
            "\n[retention]\ndays = {}\nsweep_interval = \"{}s\"\n",
            toml_float(r.seconds / 86_400.0),
            r.sweep_interval_s
        );
    }
    if o.max_body_bytes.is_some() || o.team_rate_limit.is_some() {
        s += "\n[ingress]\n";
        if let Some(n) = o.max_body_bytes {
            s += &format!("max_body_bytes = {n}\n");
        }
        if let Some(n) = o.team_rate_limit {
            s += &format!("team_rate_limit = {n}\n");
        }
    }
    if !o.per_id_labels {
        s += "\n[telemetry]\nper_id_labels = false\n";
    }
    s
}

fn token(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Mix time and pid; a bench key only has to be unguessable enough for loopback.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x =
        nanos as u64 ^ ((std::process::id() as u64) << 32) ^ n.wrapping_mul(0x9e3779b97f4a7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    format!(
        "{prefix}{x:016x}{:08x}",
        (nanos >> 64) as u32 ^ (nanos as u32)
    )
}

/// A data directory, config file and keys that outlive restarts of the gateway.
pub struct GatewayHome {
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub api_key: String,
    pub admin_key: String,
}

impl GatewayHome {
    pub fn new(opts: &GatewayOpts) -> Result<GatewayHome> {
        let dir = tempfile::Builder::new()
            .prefix("fasthook-bench-")
            .tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let config_path = dir.path().join("fasthook.toml");
        std::fs::write(&config_path, config_toml(opts))?;
        Ok(GatewayHome {
            dir,
            data_dir,
            config_path,
            api_key: token("fhp_bench_"),
            admin_key: token("fha_bench_"),
        })
    }
}

/// A client of one running gateway's HTTP API.
#[derive(Clone)]
pub struct Api {
    pub client: HttpClient,
    pub base: String,
    api_key: String,
    admin_key: String,
    /// The team its `/v1` calls act for (`x-team-id`): [`TEAM_ID`], or one made by
    /// [`Api::new_team`].
    team_id: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        admin: bool,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{}", self.base, path);
        let auth = format!(
            "Bearer {}",
            if admin {
                &self.admin_key
            } else {
                &self.api_key
            }
        );
        httpc::json_call(
            &self.client,
            method,
            &url,
            &[
                ("authorization", auth.as_str()),
                ("x-team-id", self.team_id.as_str()),
            ],
            body,
        )
        .await
    }

    /// A `/v1` call that must succeed.
    pub async fn v1(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (s, v) = self.call(method.clone(), path, body, false).await?;
        if !s.is_success() {
            bail!("{method} {path} answered {s}: {v}");
        }
        Ok(v)
    }

    /// An `/admin` call (operator key) that must succeed.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (s, v) = self.call(method.clone(), path, body, true).await?;
        if !s.is_success() {
            bail!("{method} {path} answered {s}: {v}");
        }
        Ok(v)
    }

    /// The team this client's `/v1` calls act for.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// A new team (`POST /admin/teams`) with one API key (`POST /admin/teams/:id/api-keys`),
    /// and a client of the same gateway whose `/v1` calls act for it.
    pub async fn new_team(&self, name: &str) -> Result<Api> {
        let team = self
            .admin(Method::POST, "/admin/teams", Some(&json!({ "name": name })))
            .await?;
        let team_id = Self::id_of(&team, "team")?;
        let key = self
            .admin(
                Method::POST,
                &format!("/admin/teams/{team_id}/api-keys"),
                None,
            )
            .await?;
        let api_key = key
            .get("key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("creating an API key for {team_id}: no key in {key}"))?;
        Ok(Api {
            client: self.client.clone(),
            base: self.base.clone(),
            api_key,
            admin_key: self.admin_key.clone(),
            team_id,
        })
    }

    fn id_of(v: &Value, what: &str) -> Result<String> {
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("creating a {what}: no id in {v}"))
    }

    pub async fn create_source(&self, name: &str) -> Result<String> {
        let v = self
            .v1(Method::POST, "/v1/sources", Some(&json!({ "name": name })))
            .await?;
        Self::id_of(&v, "source")
    }

    pub async fn create_destination(
        &self,
        name: &str,
        url: &str,
        max_concurrency: Option<u32>,
    ) -> Result<String> {
        let mut body = json!({ "name": name, "url": url, "timeout_ms": 10000 });
        if let Some(c) = max_concurrency {
            body["max_concurrency"] = json!(c);
        }
        let v = self
            .v1(Method::POST, "/v1/destinations", Some(&body))
            .await?;
        Self::id_of(&v, "destination")
    }

    /// A destination whose circuit breaker opens after `failure_threshold` consecutive hard
    /// failures, probes after `cooldown_seconds` and closes after one success.
    pub async fn create_guarded_destination(
        &self,
        name: &str,
        url: &str,
        max_concurrency: u32,
        failure_threshold: u32,
        cooldown_seconds: u64,
    ) -> Result<String> {
        let body = json!({
            "name": name,
            "url": url,
            "timeout_ms": 10000,
            "max_concurrency": max_concurrency,
            "circuit": {
                "failure_threshold": failure_threshold,
                "cooldown_seconds": cooldown_seconds,
                "success_threshold": 1,
            },
        });
        let v = self
            .v1(Method::POST, "/v1/destinations", Some(&body))
            .await?;
        Self::id_of(&v, "destination")
    }

    /// `GET /v1/destinations/:id/circuit`.
    pub async fn circuit(&self, destination_id: &str) -> Result<Circuit> {
        let v = self
            .v1(
                Method::GET,
                &format!("/v1/destinations/{destination_id}/circuit"),
                None,
            )
            .await?;
        Circuit::from_json(&v)
    }

    pub async fn create_connection(
        &self,
        name: &str,
        source_id: &str,
        destination_id: &str,
    ) -> Result<String> {
        let body = json!({
            "name": name,
            "source_id": source_id,
            "destination_id": destination_id,
            "rules": [{"type": "retry", "strategy": "linear", "count": 1000, "interval": 1000}],
        });
        let v = self
            .v1(Method::POST, "/v1/connections", Some(&body))
            .await?;
        Self::id_of(&v, "connection")
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> Result<String> {
        let req = hyper::Request::get(format!("{}/metrics", self.base))
            .body(http_body_util::Full::new(bytes::Bytes::new()))?;
        let (s, b) = httpc::send(&self.client, req, Duration::from_secs(30)).await?;
        if !s.is_success() {
            bail!("GET /metrics answered {s}");
        }
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Events still waiting (sum of the backlog gauges of `/metrics`); `None` when the
    /// gateway exposes none of them.
    pub async fn waiting(&self) -> Option<u64> {
        let t = self.metrics_text().await.ok()?;
        metrics_text::sum_metrics(&t, metrics_text::WAITING_GAUGES).map(|v| v.max(0.0) as u64)
    }

    /// The store's flush count, if `/metrics` has one.
    pub async fn flush_count(&self) -> Option<(String, f64)> {
        let t = self.metrics_text().await.ok()?;
        metrics_text::flush_count(&t)
    }

    /// Every dead-lettered event id (`GET /v1/events?dead_lettered=true`, 250 a page).
    pub async fn dead_letter_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..100_000 {
            let mut path = "/v1/events?dead_lettered=true&limit=250".to_string();
            if let Some(n) = &next {
                path += &format!("&next={n}");
            }
            let v = self.v1(Method::GET, &path, None).await?;
            let models = v
                .get("models")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("no models in {v}"))?;
            ids.extend(
                models
                    .iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)),
            );
            next = v
                .pointer("/pagination/next")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if next.is_none() || models.is_empty() {
                break;
            }
        }
        Ok(ids)
    }

    /// Pauses the whole engine (no new attempts), so the backlog can be read without races.
    pub async fn pause_engine(&self) -> bool {
        matches!(self.call(Method::PUT, "/admin/engine/pause", None, true).await, Ok((s, _)) if s.is_success())
    }

    async fn status_of(&self, path: &str) -> Option<StatusCode> {
        let req = hyper::Request::get(format!("{}{}", self.base, path))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .ok()?;
        httpc::send(&self.client, req, Duration::from_secs(5))
            .await
            .ok()
            .map(|(s, _)| s)
    }
}

/// The part of a destination's circuit document the bench reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Circuit {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    pub queued_count: u64,
    /// Unix milliseconds, parsed from the RFC 3339 timestamps.
    pub opened_at_ms: Option<u64>,
    pub next_probe_at_ms: Option<u64>,
}

impl Circuit {
    pub fn from_json(v: &Value) -> Result<Circuit> {
        let state = v
            .get("state")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("no state in the circuit document {v}"))?
            .to_string();
        let queued_count = v
            .get("queued_count")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("no queued_count in the circuit document {v}"))?;
        let ts = |k: &str| v.get(k).and_then(Value::as_str).and_then(rfc3339_ms);
        Ok(Circuit {
            state,
            queued_count,
            opened_at_ms: ts("opened_at"),
            next_probe_at_ms: ts("next_probe_at"),
        })
    }
}

/// `2026-05-29T22:45:00.123Z` (UTC, optional fraction) as Unix milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let rest = &s[19..];
    let (frac, tz) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            (&r[..n], &r[n..])
        }
        None => ("", rest),
    };
    if tz != "Z" || sec > 60 {
        return None;
    }
    let ms = match frac.len() {
        0 => 0,
        n => frac[..n.min(3)].parse::<i64>().ok()? * 10i64.pow(3 - n.min(3) as u32),
    };
    // Days from 1970-01-01 to y-mo-d (proleptic Gregorian).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 24 + h) * 60 + mi) * 60 + sec;
    u64::try_from(total * 1000 + ms).ok()
}

/// Now, as Unix milliseconds (the gateway's timestamps are on the same wall clock).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long a start took.
#[derive(Debug, Clone, Copy)]
pub struct StartTimings {
    pub listening: Duration,
    pub healthy: Duration,
    pub ready: Duration,
}

pub struct Gateway {
    pub child: ManagedChild,
    pub api: Api,
    pub timings: StartTimings,
}

impl Gateway {
    /// Starts `fasthook serve` on `home` and waits for `/readyz` (at most `ready_timeout`).
    pub async fn start(
        bin: &Path,
        home: &GatewayHome,
        client: &HttpClient,
        ready_timeout: Duration,
    ) -> Result<Gateway> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&home.config_path)
            .env("FASTHOOK_LISTEN", "127.0.0.1:0")
            .env("FASTHOOK_DATA_DIR", &home.data_dir)
            .env("FASTHOOK_TEAM_ID", TEAM_ID)
            .env("FASTHOOK_API_KEY", &home.api_key)
            .env("FASTHOOK_ADMIN_KEY", &home.admin_key)
            .env("FASTHOOK_LOG", "warn");
        let t0 = Instant::now();
        let started = child::spawn(
            cmd,
            "fasthook",
            LISTEN_MARKER,
            ready_timeout.max(Duration::from_secs(30)),
        )
        .await
        .context("starting the gateway")?;
        let mut child = started.child;
        let api = Api {
            client: client.clone(),
            base: started.base_url,
            api_key: home.api_key.clone(),
            admin_key: home.admin_key.clone(),
            team_id: TEAM_ID.to_string(),
        };
        let deadline = t0 + ready_timeout;
        let mut healthy = None;
        let ready = loop {
            if let Some(st) = child.exited() {
                bail!("fasthook exited while starting ({st}){}", child.tail_text());
            }
            if healthy.is_none() && api.status_of("/healthz").await == Some(StatusCode::OK) {
                healthy = Some(t0.elapsed());
            }
            if api.status_of("/readyz").await == Some(StatusCode::OK) {
                break t0.elapsed();
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                bail!(
                    "fasthook not ready after {ready_timeout:?}{}",
                    child.tail_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Gateway {
            child,
            api,
            timings: StartTimings {
                listening: started.listening_after,
                healthy: healthy.unwrap_or(ready),
                ready,
            },
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// SIGTERM and wait (the gateway snapshots and exits 0); SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.child.stop(grace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files() {
        let c = config_toml(&GatewayOpts::new(Durability::Fsync));
        assert_eq!(c, "[store]\ndurability = \"fsync\"\n");
        let c = config_toml(&GatewayOpts {
            max_body_bytes: Some(2_097_152),
            per_id_labels: false,
            ..GatewayOpts::new(Durability::None)
        });
        assert!(c.contains("durability = \"none\""));
        assert!(c.contains("[ingress]\nmax_body_bytes = 2097152"));
        assert!(c.contains("[telemetry]\nper_id_labels = false"));
        let parsed: std::collections::BTreeMap<String, serde_json::Value> = c
            .lines()
            .filter(|l| l.contains('='))
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (
                    k.trim().to_string(),
                    serde_json::Value::String(v.trim().to_string()),
                )
            })
            .collect();
        assert_eq!(parsed.len(), 3);
        // W13: the per-team ingress limit, alone and beside the body limit.
        let c = config_toml(&GatewayOpts {
            team_rate_limit: Some(500),
            ..GatewayOpts::new(Durability::Fsync)
        });
        assert!(c.ends_with("\n[ingress]\nteam_rate_limit = 500\n"), "{c}");
        let c = config_toml(&GatewayOpts {
            max_body_bytes: Some(1024),
            team_rate_limit: Some(5),
            ..GatewayOpts::new(Durability::Fsync)
        });
        assert!(
            c.contains("\n[ingress]\nmax_body_bytes = 1024\nteam_rate_limit = 5\n"),
            "{c}"
        );
        assert_eq!(c.matches("[ingress]").count(), 1, "{c}");
        // W12: retention in days (fractions), a sweep every second, small body segments.
        let c = config_toml(&GatewayOpts {
            body_segment_bytes: Some(4_194_304),
            retention: Some(Retention {
                seconds: 20.0,
                sweep_interval_s: 1,
            }),
            ..GatewayOpts::new(Durability::Fsync)
        });
        assert!(
            c.starts_with("[store]\ndurability = \"fsync\"\nbody_segment_bytes = 4194304\n"),
            "{c}"
        );
        assert!(c.contains("\n[retention]\ndays = 0.000"), "{c}");
        assert!(c.contains("\nsweep_interval = \"1s\"\n"), "{c}");
        let days: f64 = c
            .lines()
            .find_map(|l| l.strip_prefix("days = "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((days * 86_400.0 - 20.0).abs() < 1e-9, "{days}");
        assert_eq!(toml_float(7.0), "7.0");
        assert_eq!(toml_float(2.0 / 86_400.0), "0.000023148148148148147");
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = token("fhp_bench_");
        assert!(a.starts_with("fhp_bench_") && a.len() > 20);
        assert_ne!(token("x"), token("x"));
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(rfc3339_ms("2000-03-01T00:00:00.5Z"), Some(951_868_800_500));
        assert_eq!(
            rfc3339_ms("2026-05-29T22:45:00.123Z"),
            Some(1_780_094_700_123)
        );
        assert_eq!(
            rfc3339_ms("2024-02-29T12:00:00.000Z"),
            Some(1_709_208_000_000)
        );
        for bad in [
            "",
            "2026-05-29 22:45:00Z",
            "2026-05-29T22:45:00+01:00",
            "2026-13-01T00:00:00Z",
            "garbage-but-long-enough",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn circuit_documents() {
        let v = json!({
            "destination_id": "des_1", "state": "open", "failure_count": 5,
            "last_transition_at": "2026-05-29T22:45:00.000Z",
            "opened_at": "2026-05-29T22:45:00.000Z",
            "next_probe_at": "2026-05-29T22:46:00.000Z",
            "queued_count": 42, "failure_threshold": 5, "cooldown_seconds": 60,
            "success_threshold": 1,
        });
        let c = Circuit::from_json(&v).unwrap();
        assert_eq!((c.state.as_str(), c.queued_count), ("open", 42));
        assert_eq!(
            c.next_probe_at_ms.unwrap() - c.opened_at_ms.unwrap(),
            60_000
        );
        let closed =
            json!({"state": "closed", "queued_count": 0, "opened_at": null, "next_probe_at": null});
        let c = Circuit::from_json(&closed).unwrap();
        assert_eq!((c.opened_at_ms, c.next_probe_at_ms), (None, None));
        assert!(Circuit::from_json(&json!({"state": "open"})).is_err());
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let e = locate_binary(Some(Path::new("/nonexistent/fasthook"))).unwrap_err();
        assert!(e.contains("cargo build --release"), "{e}");
    }
}
