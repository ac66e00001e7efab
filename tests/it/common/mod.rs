//! Shared harness of the integration suite.
//!
//! `TestServer` runs the real `fasthook` binary on a free loopback port with a temporary data
//! directory (kept across `restart`), `TestReceiver` is a real programmable HTTP/1 receiver, and
//! `eventually` polls a condition with a deadline instead of sleeping.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a server may take to print its address, and then to become ready.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of the child's stderr kept to show when a test fails.
const STDERR_TAIL: usize = 200;
const LISTEN_PREFIX: &str = "fasthook listening on http://";

pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Polls `probe` every 50 ms until it yields a value; `None` once `deadline` has passed.
/// The one place the harness waits: everything else polls through it.
pub async fn poll<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `condition` until it holds; panics naming `what` after `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let met = poll(deadline, || {
        let fut = condition();
        async move { fut.await.then_some(()) }
    })
    .await;
    if met.is_none() {
        panic!("condition not met within {deadline:?}: {what}");
    }
}

/// The most arrivals within any one second, less 50 ms. The limit is on attempt starts, and
/// an arrival is a start plus a latency that varies by a few ms: a first arrival a little
/// late and a 31st on time can share a second that held 30 starts. A rate twice the limit
/// still shows.
pub fn most_in_one_second(times: &[Instant]) -> usize {
    let window = Duration::from_millis(950);
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&u| u < times[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Destination fields that keep the circuit breaker out of a test about something else (a
/// retry schedule, a crash): a failing receiver would otherwise open it after five failures.
pub fn breaker_off() -> Value {
    json!({ "circuit": { "failure_threshold": 1_000_000 } })
}

/// What a test may change about how the server starts.
#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    /// Text of a TOML config file, written into the temp dir and passed with `--config`.
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl ServerOpts {
    pub fn config(text: &str) -> Self {
        ServerOpts {
            config: Some(text.to_string()),
            env: Vec::new(),
        }
    }
}

/// A running (or stopped) `fasthook serve` child process.
pub struct TestServer {
    child: Option<Child>,
    /// `http://IP:PORT` of the current process; changes on restart.
    pub base: String,
    pub team_id: String,
    pub api_key: String,
    pub admin_key: String,
    /// Holds the data dir (`data/`) and the config file; kept across restarts.
    root: TempDir,
    opts: ServerOpts,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The thread copying the current child's stderr into `stderr_tail`; joined once the child
    /// has exited, so a test reading the tail sees the last line the process wrote.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    client: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(ServerOpts::default()).await
    }

    pub async fn start_with(opts: ServerOpts) -> TestServer {
        let root = tempfile::Builder::new()
            .prefix("fasthook-it-")
            .tempdir()
            .expect("temp dir");
        let mut server = TestServer {
            child: None,
            base: String::new(),
            team_id: format!("tm_test{}", random_token(12)),
            api_key: format!("fhp_test_{}", random_token(32)),
            admin_key: format!("admin_{}", random_token(32)),
            root,
            opts,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            stderr_reader: None,
            client: http_client(),
        };
        server.spawn_and_wait_ready().await;
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("fasthook.toml")
    }

    /// Rewrites the config file, now and for later restarts.
    pub fn set_config(&mut self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
        self.opts.config = Some(text.to_string());
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fasthook"));
        cmd.arg("serve");
        if let Some(text) = &self.opts.config {
            std::fs::write(self.config_path(), text).expect("write config");
            cmd.arg("--config").arg(self.config_path());
        }
        cmd.current_dir(self.root.path())
            .env("FASTHOOK_LISTEN", "127.0.0.1:0")
            .env("FASTHOOK_DATA_DIR", self.data_dir())
            .env("FASTHOOK_TEAM_ID", &self.team_id)
            .env("FASTHOOK_API_KEY", &self.api_key)
            .env("FASTHOOK_ADMIN_KEY", &self.admin_key)
            .env("FASTHOOK_LOG", "warn")
            .env_remove("FASTHOOK_PUBLIC_URL")
            .env_remove("FASTHOOK_API_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn stderr_text(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Forgets the stderr kept so far, so the next start's lines are read alone.
    pub fn clear_stderr(&self) {
        self.stderr_tail.lock().unwrap().clear();
    }

    async fn spawn_and_wait_ready(&mut self) {
        if let Err(status) = self.spawn_until_ready_or_exit().await {
            panic!("fasthook exited ({status}) before /readyz answered 200 (stderr below)");
        }
    }

    /// Starts the process and waits until `/readyz` answers 200 (`Ok`) or it exits (`Err`,
    /// with its status: a start that refused). Panics if neither happens in time.
    async fn spawn_until_ready_or_exit(&mut self) -> Result<(), ExitStatus> {
        let mut child = self.command().spawn().expect("spawn fasthook");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");

        let tail = self.stderr_tail.clone();
        self.stderr_reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut tail = tail.lock().unwrap();
                if tail.len() >= STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }));

        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(rest) = line.trim().strip_prefix(LISTEN_PREFIX) {
                            if let Some(tx) = tx.take() {
                                let addr = rest.split_whitespace().next().unwrap_or("");
                                let _ = tx.send(addr.trim_end_matches('/').to_string());
                            }
                        }
                    }
                }
            }
            // Dropping `tx` without sending tells the waiter that stdout closed.
        });
        self.child = Some(child);

        let addr = match tokio::time::timeout(START_DEADLINE, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let child = self.child.as_mut().expect("child");
                let status = poll(Duration::from_secs(5), || {
                    let status = child.try_wait().ok().flatten();
                    async move { status }
                })
                .await;
                match status {
                    Some(status) => {
                        self.join_stderr_reader();
                        return Err(status);
                    }
                    None => panic!(
                        "fasthook closed stdout before printing `{LISTEN_PREFIX}…` and still runs (stderr below)"
                    ),
                }
            }
            Err(_) => panic!(
                "fasthook did not print `{LISTEN_PREFIX}…` within {START_DEADLINE:?} (stderr below)"
            ),
        };
        self.base = format!("http://{addr}");

        let url = self.url("/readyz");
        let outcome = poll(START_DEADLINE, || {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let request = self.client.get(&url).send();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                match request.await {
                    Ok(resp) if resp.status().as_u16() == 200 => Some(Ok(())),
                    _ => None,
                }
            }
        })
        .await;
        let outcome = outcome.unwrap_or_else(|| {
            panic!("GET /readyz did not answer 200 within {START_DEADLINE:?} (stderr below)")
        });
        if outcome.is_err() {
            self.join_stderr_reader();
        }
        outcome
    }

    /// Waits for the stderr copier of a child that has exited: its pipe is closed, so this
    /// returns as soon as the last lines are in `stderr_tail`.
    fn join_stderr_reader(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }

    /// Starts the process again on the same data dir, and says whether it became ready or
    /// exited (with its status) — for data directories a test has damaged.
    pub async fn restart_or_exit(&mut self) -> Result<(), ExitStatus> {
        self.child = None;
        self.spawn_until_ready_or_exit().await
    }

    /// Starts the process again on the same data dir, keys and config; the port changes.
    pub async fn restart(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                panic!("restart() while the previous process is still running");
            }
        }
        self.child = None;
        self.spawn_and_wait_ready().await;
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("no child").id() as i32
    }

    /// SIGKILL, then reap the child.
    pub fn kill9(&mut self) {
        let child = self.child.as_mut().expect("no child");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait after SIGKILL");
    }

    pub fn sigterm(&self) {
        let rc = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the child to exit; panics after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("no child");
        let status = poll(deadline, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        let status = status
            .unwrap_or_else(|| panic!("fasthook did not exit within {deadline:?} (stderr below)"));
        self.join_stderr_reader();
        status
    }

    /// Runs `fasthook serve` with `opts` and expects it to exit by itself (a start failure).
    /// Answers the exit status, stdout and stderr.
    pub async fn run_to_exit(opts: ServerOpts, deadline: Duration) -> (ExitStatus, String, String) {
        let root = tempfile::tempdir().expect("temp dir");
        let config_path = root.path().join("fasthook.toml");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fasthook"));
        cmd.arg("serve");
        if let Some(text) = &opts.config {
            std::fs::write(&config_path, text).expect("write config");
            cmd.arg("--config").arg(&config_path);
        }
        cmd.current_dir(root.path())
            .env("FASTHOOK_LISTEN", "127.0.0.1:0")
            .env("FASTHOOK_DATA_DIR", root.path().join("data"))
            .env("FASTHOOK_TEAM_ID", format!("tm_test{}", random_token(12)))
            .env("FASTHOOK_API_KEY", format!("fhp_test_{}", random_token(32)))
            .env("FASTHOOK_ADMIN_KEY", format!("admin_{}", random_token(32)))
            .env("FASTHOOK_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn fasthook");
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let exited = poll(deadline, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        let Some(status) = exited else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fasthook serve was expected to exit by itself but still ran after {deadline:?}"
            );
        };
        (status, out.join().unwrap(), err.join().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client of `/v1` as the server's own team.
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            key: Some(self.api_key.clone()),
            team: Some(self.team_id.clone()),
        }
    }

    /// A client with any (or no) key and team header.
    pub fn api_as(&self, key: Option<&str>, team: Option<&str>) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            key: key.map(str::to_string),
            team: team.map(str::to_string),
        }
    }

    /// A client of `/admin` with the admin key.
    pub fn admin(&self) -> Api {
        self.api_as(Some(&self.admin_key), None)
    }

    pub async fn create_source(&self, name: &str) -> Value {
        self.create_source_json(json!({ "name": name })).await
    }

    pub async fn create_source_json(&self, body: Value) -> Value {
        let (status, v) = self.api().post("/v1/sources", &body).await;
        assert!(is_2xx(status), "POST /v1/sources {body} -> {status} {v}");
        assert_id(&v, "src_");
        v
    }

    pub async fn create_destination(&self, body: Value) -> Value {
        let mut body = body;
        if body.get("name").is_none() {
            body["name"] = json!(format!("dest-{}", random_token(8)));
        }
        let (status, v) = self.api().post("/v1/destinations", &body).await;
        assert!(
            is_2xx(status),
            "POST /v1/destinations {body} -> {status} {v}"
        );
        assert_id(&v, "des_");
        v
    }

    pub async fn create_connection(
        &self,
        source_id: &str,
        destination_id: &str,
        rules: Value,
    ) -> Value {
        let body = json!({
            "name": format!("conn-{}", random_token(8)),
            "source_id": source_id,
            "destination_id": destination_id,
            "rules": rules,
        });
        let (status, v) = self.api().post("/v1/connections", &body).await;
        assert!(
            is_2xx(status),
            "POST /v1/connections {body} -> {status} {v}"
        );
        assert_id(&v, "web_");
        v
    }

    /// Source → destination (to `receiver_url`, plus `dest_extra` fields) → connection with `rules`.
    /// Answers (source_id, destination_id, connection_id).
    pub async fn pipeline(
        &self,
        receiver_url: &str,
        dest_extra: Value,
        rules: Value,
    ) -> (String, String, String) {
        let src = self
            .create_source(&format!("src-{}", random_token(8)))
            .await;
        let mut dest = json!({ "url": receiver_url });
        if let Value::Object(extra) = dest_extra {
            for (k, v) in extra {
                dest[k] = v;
            }
        }
        let dest = self.create_destination(dest).await;
        let conn = self
            .create_connection(id_of(&src), id_of(&dest), rules)
            .await;
        (
            id_of(&src).to_string(),
            id_of(&dest).to_string(),
            id_of(&conn).to_string(),
        )
    }

    /// A pipeline to `receiver_url` whose connection is paused at once (its events are held).
    /// Answers (source_id, destination_id, connection_id).
    pub async fn paused_pipeline(&self, receiver_url: &str) -> (String, String, String) {
        let (src, dest, conn) = self.pipeline(receiver_url, json!({}), json!([])).await;
        let (status, v) = self
            .api()
            .put(&format!("/v1/connections/{conn}/pause"), None)
            .await;
        assert_eq!(status, 200, "pause {conn}: {v}");
        (src, dest, conn)
    }

    /// The status `/readyz` answers now.
    pub async fn readyz(&self) -> u16 {
        self.client
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz")
            .status()
            .as_u16()
    }

    /// A pipeline to `receiver_url` whose attempts are never retried (a failure is
    /// dead-lettered at once), one at a time, with a breaker that opens after
    /// `failure_threshold` failures and cools down for `cooldown_seconds`.
    pub async fn breaker_pipeline(
        &self,
        receiver_url: &str,
        failure_threshold: u32,
        cooldown_seconds: u32,
    ) -> (String, String, String) {
        let circuit = json!({
            "max_concurrency": 1,
            "circuit": { "failure_threshold": failure_threshold, "cooldown_seconds": cooldown_seconds },
        });
        let no_retries =
            json!([{ "type": "retry", "strategy": "linear", "count": 0, "interval": 1000 }]);
        self.pipeline(receiver_url, circuit, no_retries).await
    }

    /// `POST /e/:source_id` as a provider would (no API key).
    pub async fn ingest(
        &self,
        source_id: &str,
        body: impl Into<Vec<u8>>,
        content_type: &str,
    ) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(&format!("/e/{source_id}")))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /e/{source_id}: {e}"));
        to_status_json(resp).await
    }

    /// Ingests and asserts the 200 answer; returns the event ids.
    pub async fn ingest_ok(
        &self,
        source_id: &str,
        body: impl Into<Vec<u8>>,
        content_type: &str,
    ) -> Vec<String> {
        let (status, v) = self.ingest(source_id, body, content_type).await;
        assert_eq!(status, 200, "ingress answer: {v}");
        assert_eq!(v["status"], "SUCCESS", "ingress answer: {v}");
        assert!(
            v["request_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("req_")),
            "ingress answer without request_id: {v}"
        );
        v["event_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("ingress answer without event_ids: {v}"))
            .iter()
            .map(|e| {
                let id = e.as_str().expect("event id string").to_string();
                assert!(id.starts_with("evt_"), "event id {id}");
                id
            })
            .collect()
    }

    /// Sends `n` small JSON events one after the other (acceptance order is send order);
    /// returns every event id the answers name.
    pub async fn send_events(&self, source_id: &str, n: usize, tag: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let body = format!(r#"{{"tag":"{tag}","n":{i}}}"#);
            ids.extend(self.ingest_ok(source_id, body, "application/json").await);
        }
        ids
    }

    /// Sends `n` small JSON events, 50 at a time; returns every event id the answers name.
    pub async fn send_events_concurrently(
        &self,
        source_id: &str,
        n: usize,
        tag: &str,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let answers = futures_util::future::join_all(chunk.iter().map(|i| {
                let body = format!(r#"{{"tag":"{tag}","n":{i}}}"#);
                self.ingest_ok(source_id, body, "application/json")
            }))
            .await;
            ids.extend(answers.into_iter().flatten());
        }
        ids
    }

    /// All pages of `GET {path}?{query}` (a list endpoint), oldest first.
    pub async fn list_all(&self, path: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..100 {
            let mut q = "limit=250&dir=asc".to_string();
            if !query.is_empty() {
                q = format!("{query}&{q}");
            }
            if let Some(cursor) = &next {
                q = format!("{q}&next={cursor}");
            }
            let (status, v) = self.api().get(&format!("{path}?{q}")).await;
            assert_eq!(status, 200, "GET {path}?{q} -> {v}");
            let models = v["models"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}?{q}: no models array: {v}"));
            out.extend(models.iter().cloned());
            match v["pagination"]["next"].as_str() {
                Some(cursor) if !models.is_empty() => next = Some(cursor.to_string()),
                _ => return out,
            }
        }
        panic!("GET {path}?{query}: more than 100 pages");
    }

    pub async fn events(&self, query: &str) -> Vec<Value> {
        self.list_all("/v1/events", query).await
    }

    pub async fn event(&self, id: &str) -> Value {
        let (status, v) = self.api().get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, 200, "GET /v1/events/{id} -> {v}");
        v
    }

    pub async fn attempts(&self, event_id: &str) -> Vec<Value> {
        self.list_all("/v1/attempts", &format!("event_id={event_id}"))
            .await
    }

    /// Map event id → status of the events of a source.
    pub async fn statuses(&self, source_id: &str) -> HashMap<String, String> {
        self.events(&format!("source_id={source_id}"))
            .await
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or_default().to_string(),
                    e["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// True when every id in `ids` is listed for `source_id` with `status`.
    pub async fn all_have_status(&self, source_id: &str, ids: &[String], status: &str) -> bool {
        let statuses = self.statuses(source_id).await;
        ids.iter()
            .all(|id| statuses.get(id).map(String::as_str) == Some(status))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- fasthook ({}) stderr, last lines ----\n{}\n---- end of fasthook stderr ----",
                self.base,
                self.stderr_text()
            );
        }
    }
}

pub fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

pub fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

fn assert_id(v: &Value, prefix: &str) {
    let id = id_of(v);
    assert!(
        id.starts_with(prefix),
        "id {id} should start with {prefix}: {v}"
    );
}

/// Asserts an error answer: `status`, a `message`, and `code` when given.
pub fn assert_error(got: (u16, Value), status: u16, code: Option<&str>) -> Value {
    let (got_status, v) = got;
    assert_eq!(
        got_status, status,
        "expected HTTP {status} ({code:?}), got {got_status}: {v}"
    );
    assert!(v["message"].is_string(), "error body without message: {v}");
    assert!(v["code"].is_string(), "error body without code: {v}");
    if let Some(code) = code {
        assert_eq!(v["code"], code, "error code: {v}");
    }
    if let Some(s) = v["status"].as_u64() {
        assert_eq!(s, status as u64, "status field of the error body: {v}");
    }
    v
}

async fn to_status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, v)
}

/// A small JSON client: adds `Authorization: Bearer <key>` and `x-team-id` when set.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub key: Option<String>,
    pub team: Option<String>,
}

impl Api {
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path));
        if let Some(key) = &self.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if let Some(team) = &self.team {
            req = req.header("x-team-id", team);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", content_type.unwrap_or("application/json"))
                .body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        to_status_json(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, None, None)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(reqwest::Method::POST, path, Some(bytes), None)
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body.to_vec()), None)
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(reqwest::Method::PATCH, path, Some(bytes), None)
            .await
    }

    pub async fn put(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.request(reqwest::Method::PUT, path, bytes, None).await
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub path: String,
    /// Lowercase header name → value (the last one when repeated).
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// When the whole body had arrived.
    pub at: Instant,
    /// The status the receiver chose to answer.
    pub status: u16,
    /// Set once the handler is done (after the delay) and hands its response to hyper.
    pub completed: Arc<AtomicBool>,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::SeqCst)
    }

    pub fn event_id(&self) -> String {
        self.header("x-fasthook-event-id")
            .unwrap_or_else(|| panic!("hit without x-fasthook-event-id: {:?}", self.headers))
            .to_string()
    }
}

struct ReceiverState {
    status: AtomicU16,
    delay_ms: AtomicU64,
    /// Seconds sent as `Retry-After` with a 429 or 503; 0 sends none.
    retry_after_s: AtomicU64,
    /// Statuses answered first, one per hit, before falling back to `status`.
    script: Mutex<VecDeque<u16>>,
    /// Sent as `Location` with a 3xx answer.
    location: Mutex<Option<String>>,
    hits: Mutex<Vec<Hit>>,
}

/// A real HTTP/1 receiver on 127.0.0.1:0 that records every hit.
pub struct TestReceiver {
    addr: std::net::SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            retry_after_s: AtomicU64::new(0),
            script: Mutex::new(VecDeque::new()),
            location: Mutex::new(None),
            hits: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestReceiver { addr, state, task }
    }

    /// `http://127.0.0.1:PORT/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for callers that add their own path.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Answer these statuses to the next hits, in order, then `set_status`'s.
    pub fn push_statuses(&self, statuses: &[u16]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(statuses.iter().copied());
    }

    /// Answers 3xx statuses with `Location: url`.
    pub fn set_location(&self, url: &str) {
        *self.state.location.lock().unwrap() = Some(url.to_owned());
    }

    /// Answers 429 and 503 with `Retry-After: seconds` (0: without).
    pub fn set_retry_after(&self, seconds: u64) {
        self.state.retry_after_s.store(seconds, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn hit_count(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }

    /// Distinct `x-fasthook-event-id`s seen so far.
    pub fn event_ids(&self) -> std::collections::HashSet<String> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| h.header("x-fasthook-event-id").map(str::to_string))
            .collect()
    }

    /// Distinct event ids seen in hits answered (handler done) with a 2xx.
    pub fn delivered_ids(&self) -> std::collections::HashSet<String> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| is_2xx(h.status) && h.is_completed())
            .filter_map(|h| h.header("x-fasthook-event-id").map(str::to_string))
            .collect()
    }

    /// Number of hits whose handler is still running (waiting out the delay).
    pub fn in_flight(&self) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| !h.is_completed())
            .count()
    }

    /// Event ids of the hits whose handler is still running.
    pub fn in_flight_ids(&self) -> std::collections::HashSet<String> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| !h.is_completed())
            .filter_map(|h| h.header("x-fasthook-event-id").map(str::to_string))
            .collect()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(st: Arc<ReceiverState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            return Response::builder()
                .status(400)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
    };
    let status = st
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| st.status.load(Ordering::SeqCst));
    let completed = Arc::new(AtomicBool::new(false));
    st.hits.lock().unwrap().push(Hit {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
        status,
        completed: completed.clone(),
    });
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    completed.store(true, Ordering::SeqCst);
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    let retry_after = st.retry_after_s.load(Ordering::SeqCst);
    if retry_after > 0 && matches!(status, 429 | 503) {
        response = response.header("retry-after", retry_after.to_string());
    }
    if let (300..=399, Some(location)) = (status, st.location.lock().unwrap().clone()) {
        response = response.header("location", location);
    }
    response.body(Full::new(Bytes::from_static(b"ok"))).unwrap()
}

/// A JSON body of about 200 bytes, distinct per `seq`, some with unicode, with irregular
/// whitespace so that a re-serialized body would not match byte for byte.
pub fn sample_body(tag: &str, seq: usize) -> Vec<u8> {
    let text = match seq % 4 {
        0 => "héllo wörld ✓ 日本語 🚀".to_string(),
        1 => "plain ascii text".to_string(),
        2 => "emoji 🎉🔥 and ünïcödé".to_string(),
        _ => format!("quote \\\" and slash \\/ {seq}"),
    };
    let mut body =
        format!("{{\"tag\": \"{tag}\",  \"seq\":{seq}, \"text\" : \"{text}\", \"pad\": \"");
    while body.len() < 190 {
        body.push(char::from(b'a' + (body.len() % 26) as u8));
    }
    body.push_str("\" }");
    debug_assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    body.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_records_hits_and_answers_as_programmed() {
    let receiver = TestReceiver::start().await;
    receiver.push_statuses(&[503]);
    receiver.set_status(202);
    let client = http_client();
    let send = |body: &'static str| {
        client
            .post(receiver.url())
            .header("content-type", "text/plain")
            .header("X-Custom", "Yes")
            .body(body)
            .send()
    };
    assert_eq!(send("one").await.unwrap().status().as_u16(), 503);
    receiver.set_delay(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(send("two").await.unwrap().status().as_u16(), 202);
    assert!(started.elapsed() >= Duration::from_millis(100));
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].body, b"one");
    assert_eq!(hits[0].status, 503);
    assert_eq!(hits[1].body, b"two");
    assert_eq!(hits[1].method, "POST");
    assert_eq!(hits[1].path, "/hook");
    assert_eq!(hits[1].header("x-custom"), Some("Yes"));
    assert_eq!(hits[1].header("content-type"), Some("text/plain"));
    assert!(hits[1].at >= hits[0].at);
    assert_eq!(receiver.delivered_ids().len(), 0);
}

#[test]
fn sample_bodies_are_distinct_json_of_about_200_bytes() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..100 {
        let body = sample_body("t", i);
        assert!((190..260).contains(&body.len()), "{}", body.len());
        serde_json::from_slice::<Value>(&body).expect("JSON");
        assert!(seen.insert(body));
    }
}
