//! The `fasthook` client commands: thin HTTP calls to the API, printed as a table on a
//! terminal or as JSON with `--json`. Reads `FASTHOOK_API_URL`, `FASTHOOK_API_KEY`,
//! `FASTHOOK_TEAM_ID` (and `FASTHOOK_ADMIN_KEY` for `engine`).

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not set")]
    MissingEnv(&'static str),
    #[error("cannot reach {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl Resource {
    /// Whether `--json` was given after the command (it may also come before it).
    pub fn json(&self) -> bool {
        match self {
            Resource::Sources { json, .. }
            | Resource::Destinations { json, .. }
            | Resource::Connections { json, .. }
            | Resource::Events { json, .. }
            | Resource::Attempts { json, .. }
            | Resource::Requests { json, .. }
            | Resource::Metrics { json, .. }
            | Resource::Issues { json, .. }
            | Resource::AlertChannels { json, .. }
            | Resource::Bulk { json, .. }
            | Resource::Teams { json, .. }
            | Resource::Keys { json, .. }
            | Resource::Health { json }
            | Resource::Engine { json, .. } => *json,
        }
    }
}

/// One client command and how to print its answer.
#[derive(Debug)]
pub struct ClientArgs {
    pub json: bool,
    pub resource: Resource,
}

#[derive(Debug, Subcommand)]
pub enum Resource {
    /// Sources: list, get, create, disable, enable.
    Sources {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: SourceAction,
    },
    /// Destinations: list, get, circuit, reset-circuit.
    Destinations {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: DestinationAction,
    },
    /// Connections: list, get, pause, unpause, disable, enable.
    Connections {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: ConnectionAction,
    },
    /// Events: list, get, retry.
    Events {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: EventAction,
    },
    /// Attempts of one event.
    Attempts {
        #[arg(long = "event_id", alias = "event-id")]
        event_id: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Requests: list, get, retry (replayed through today's connections).
    Requests {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: RequestAction,
    },
    /// Event metrics over time.
    Metrics {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: MetricsAction,
    },
    /// Issues opened by the gateway (a breaker that opened): list, get, ack, dismiss, resolve.
    Issues {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: IssueAction,
    },
    /// Where issue alerts go: list, create, delete.
    #[command(name = "alert-channels")]
    AlertChannels {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: AlertChannelAction,
    },
    /// Bulk retries: `bulk retry --connection_id web_xxx --status FAILED`, `bulk status bch_xxx`.
    Bulk {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: BulkAction,
    },
    /// Teams (needs FASTHOOK_ADMIN_KEY): `teams create --name acme`.
    Teams {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: TeamAction,
    },
    /// A team's API keys (needs FASTHOOK_ADMIN_KEY): create, revoke.
    Keys {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Exits 0 when the gateway is ready (`/readyz`), for container health checks.
    Health {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Whole-engine pause (needs FASTHOOK_ADMIN_KEY).
    Engine {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: EngineAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourceAction {
    List(ListArgs),
    Get {
        id: String,
    },
    /// e.g. `sources create --name stripe`; prints its ingress URL.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Ingress answers 403 and stores nothing until enabled.
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestAction {
    List(ListArgs),
    Get {
        id: String,
    },
    /// Replays the request through today's connections (a new request, `replay_of` set).
    Retry {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamAction {
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Prints the new key once.
    Create {
        #[arg(long = "team_id", alias = "team-id")]
        team_id: String,
    },
    Revoke {
        #[arg(long = "team_id", alias = "team-id")]
        team_id: String,
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DestinationAction {
    List(ListArgs),
    Get {
        id: String,
    },
    /// e.g. `destinations create --name orders --url https://example.com/hooks --rate-limit 50/second`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        /// At most this many attempts per period: `50/second`, `600/minute`, `10000/hour`.
        #[arg(long = "rate-limit", alias = "rate_limit")]
        rate_limit: Option<String>,
    },
    /// Its events wait (QUEUED) until it is enabled.
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
    Circuit {
        id: String,
    },
    ResetCircuit {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionAction {
    List(ListArgs),
    /// e.g. `connections create --name orders --source_id src_xxx --destination_id des_xxx`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "source_id", alias = "source-id")]
        source_id: String,
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: String,
    },
    /// Refused while it holds events, unless `--cancel-events` cancels them.
    Delete {
        id: String,
        #[arg(long = "cancel-events", alias = "cancel_events")]
        cancel_events: bool,
    },
    Get {
        id: String,
    },
    Pause {
        id: String,
    },
    /// Releases the held events in order; `--drain-rate 50/second` caps the release.
    Unpause {
        id: String,
        /// At most this many held events per period, e.g. `50/second` or `600/minute`.
        #[arg(long = "drain-rate", alias = "drain_rate")]
        drain_rate: Option<String>,
    },
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventAction {
    /// e.g. `events list --connection_id web_xxx --status HOLD --limit 50`.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Keep printing new matching events as they come (one per line), until interrupted.
        #[arg(long)]
        follow: bool,
    },
    Get {
        id: String,
    },
    Retry {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsAction {
    /// e.g. `metrics events --connection_id web_xxx --granularity 1m --measures[] hold_count`.
    Events {
        /// RFC 3339; default: a day before `--to`.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; default: now.
        #[arg(long)]
        to: Option<String>,
        /// 1m, 1h or 1d.
        #[arg(long, default_value = "1h")]
        granularity: String,
        #[arg(long = "connection_id", alias = "connection-id")]
        connection_id: Option<String>,
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        #[arg(long = "source_id", alias = "source-id")]
        source_id: Option<String>,
        /// hold_count, queued_count, scheduled_count, failed_count, delivered_count,
        /// attempt_count, error_rate; repeatable (default: all).
        #[arg(long = "measures[]", alias = "measures")]
        measures: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssueAction {
    /// e.g. `issues list --status OPENED --destination_id des_xxx`.
    List {
        /// OPENED, ACKNOWLEDGED, RESOLVED or DISMISSED; repeatable.
        #[arg(long)]
        status: Vec<String>,
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        /// circuit_open.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        next: Option<String>,
    },
    Get {
        id: String,
    },
    /// Marks it ACKNOWLEDGED: someone is on it.
    Ack {
        id: String,
    },
    /// Marks it DISMISSED.
    Dismiss {
        id: String,
    },
    /// Marks it RESOLVED.
    Resolve {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertChannelAction {
    List,
    /// e.g. `alert-channels create --url https://ops.example.com/hook` (both alert types).
    Create {
        #[arg(long)]
        url: String,
        #[arg(long)]
        name: Option<String>,
        /// issue_opened, issue_resolved; repeatable (default both).
        #[arg(long = "alert-type", alias = "alert_types")]
        alert_types: Vec<String>,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BulkAction {
    /// Retries every event the query selects, in the background; prints the job.
    Retry {
        #[arg(long = "connection_id", alias = "connection-id")]
        connection_id: Option<String>,
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        /// Statuses to select (default FAILED); repeatable. HOLD is never selected.
        #[arg(long)]
        status: Vec<String>,
    },
    /// A bulk retry's progress.
    Status { id: String },
}

#[derive(Debug, Subcommand)]
pub enum EngineAction {
    Pause,
    Resume,
    Status,
}

#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Only this connection's (web_…).
    #[arg(long = "connection_id", alias = "connection-id")]
    connection_id: Option<String>,
    /// Only this destination's (des_…).
    #[arg(long = "destination_id", alias = "destination-id")]
    destination_id: Option<String>,
    /// Only this source's (src_…).
    #[arg(long = "source_id", alias = "source-id")]
    source_id: Option<String>,
    /// Events: SCHEDULED, QUEUED, HOLD, SUCCESSFUL, FAILED or CANCELLED; repeatable.
    #[arg(long)]
    status: Vec<String>,
    /// Items per page, 1 to 250 (default 100).
    #[arg(long)]
    limit: Option<u32>,
    /// The cursor a previous page printed (`--next …`).
    #[arg(long)]
    next: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[arg(long)]
    dir: Option<String>,
}

impl ListArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let pairs = [
            ("connection_id", &self.connection_id),
            ("destination_id", &self.destination_id),
            ("source_id", &self.source_id),
            ("next", &self.next),
            ("dir", &self.dir),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q.extend(self.status.iter().map(|s| ("status", s.clone())));
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        q
    }
}

struct Call {
    method: reqwest::Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    credentials: Credentials,
    columns: &'static [&'static str],
    /// A list to keep polling for new items (`events list --follow`).
    follow: bool,
}

/// Which key a call sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Team,
    Admin,
    None,
}

fn call(method: reqwest::Method, path: String, columns: &'static [&'static str]) -> Call {
    Call {
        method,
        path,
        query: Vec::new(),
        body: None,
        credentials: Credentials::Team,
        columns,
        follow: false,
    }
}

/// `50/second` → `{"rate": 50, "period": "second"}`; a number that does not parse is sent
/// as given, for the API to refuse with its message.
fn rate_body(rate: &str) -> Value {
    let (n, period) = rate.split_once('/').unwrap_or((rate, "second"));
    let n: Value = n
        .trim()
        .parse::<u64>()
        .map_or(Value::from(n.trim()), Value::from);
    serde_json::json!({ "rate": n, "period": period.trim() })
}

/// `50/second` → the unpause body's `drain_rate` and `drain_rate_period`.
fn drain_rate_body(rate: &str) -> Value {
    let rate = rate_body(rate);
    serde_json::json!({ "drain_rate": rate["rate"], "drain_rate_period": rate["period"] })
}

const SOURCE_COLS: &[&str] = &["id", "name", "url", "disabled_at"];
const DEST_COLS: &[&str] = &["id", "name", "url", "rate_limit", "disabled_at"];
const CONN_COLS: &[&str] = &[
    "id",
    "name",
    "source_id",
    "destination_id",
    "paused_at",
    "disabled_at",
];
const EVENT_COLS: &[&str] = &[
    "id",
    "connection_id",
    "destination_id",
    "status",
    "attempts",
    "response_status",
    "error_code",
    "created_at",
];
const ATTEMPT_COLS: &[&str] = &[
    "attempt_number",
    "trigger",
    "status",
    "response_status",
    "error_code",
    "duration_ms",
];
const REQUEST_COLS: &[&str] = &["id", "source_id", "rejection_cause", "created_at"];
const ISSUE_COLS: &[&str] = &[
    "id",
    "type",
    "status",
    "destination_id",
    "opened_at",
    "last_seen_at",
];
const CHANNEL_COLS: &[&str] = &["id", "name", "type", "url", "alert_types"];

fn plan(resource: Resource) -> Call {
    use reqwest::Method as M;
    let list = |path: &str, args: ListArgs, columns| Call {
        query: args.query(),
        ..call(M::GET, path.into(), columns)
    };
    match resource {
        Resource::Sources { action, .. } => match action {
            SourceAction::List(a) => list("/v1/sources", a, SOURCE_COLS),
            SourceAction::Get { id } => call(M::GET, format!("/v1/sources/{id}"), SOURCE_COLS),
            SourceAction::Create { name } => Call {
                body: Some(serde_json::json!({ "name": name })),
                ..call(M::POST, "/v1/sources".into(), SOURCE_COLS)
            },
            SourceAction::Disable { id } => {
                call(M::PUT, format!("/v1/sources/{id}/disable"), SOURCE_COLS)
            }
            SourceAction::Enable { id } => {
                call(M::PUT, format!("/v1/sources/{id}/enable"), SOURCE_COLS)
            }
        },
        Resource::Requests { action, .. } => match action {
            RequestAction::List(a) => list("/v1/requests", a, REQUEST_COLS),
            RequestAction::Get { id } => call(M::GET, format!("/v1/requests/{id}"), REQUEST_COLS),
            RequestAction::Retry { id } => Call {
                body: Some(serde_json::json!({})),
                ..call(M::POST, format!("/v1/requests/{id}/retry"), &[])
            },
        },
        Resource::Teams { action, .. } => match action {
            TeamAction::Create { name } => Call {
                body: Some(serde_json::json!({ "name": name })),
                credentials: Credentials::Admin,
                ..call(M::POST, "/admin/teams".into(), &[])
            },
        },
        Resource::Keys { action, .. } => {
            let (method, path, body) = match action {
                KeyAction::Create { team_id } => (
                    M::POST,
                    format!("/admin/teams/{team_id}/api-keys"),
                    Some(serde_json::json!({})),
                ),
                KeyAction::Revoke { team_id, key_id } => (
                    M::DELETE,
                    format!("/admin/teams/{team_id}/api-keys/{key_id}"),
                    None,
                ),
            };
            Call {
                body,
                credentials: Credentials::Admin,
                ..call(method, path, &[])
            }
        }
        Resource::Destinations { action, .. } => match action {
            DestinationAction::List(a) => list("/v1/destinations", a, DEST_COLS),
            DestinationAction::Get { id } => {
                call(M::GET, format!("/v1/destinations/{id}"), DEST_COLS)
            }
            DestinationAction::Create {
                name,
                url,
                rate_limit,
            } => {
                let mut body = serde_json::json!({ "name": name, "url": url });
                if let Some(rate) = rate_limit.as_deref() {
                    let rate = rate_body(rate);
                    body["rate_limit"] = rate["rate"].clone();
                    body["rate_limit_period"] = rate["period"].clone();
                }
                Call {
                    body: Some(body),
                    ..call(M::POST, "/v1/destinations".into(), DEST_COLS)
                }
            }
            DestinationAction::Disable { id } => {
                call(M::PUT, format!("/v1/destinations/{id}/disable"), DEST_COLS)
            }
            DestinationAction::Enable { id } => {
                call(M::PUT, format!("/v1/destinations/{id}/enable"), DEST_COLS)
            }
            DestinationAction::Circuit { id } => {
                call(M::GET, format!("/v1/destinations/{id}/circuit"), &[])
            }
            DestinationAction::ResetCircuit { id } => {
                call(M::POST, format!("/v1/destinations/{id}/circuit/reset"), &[])
            }
        },
        Resource::Connections { action, .. } => match action {
            ConnectionAction::List(a) => list("/v1/connections", a, CONN_COLS),
            ConnectionAction::Create {
                name,
                source_id,
                destination_id,
            } => Call {
                body: Some(serde_json::json!({
                    "name": name, "source_id": source_id, "destination_id": destination_id,
                })),
                ..call(M::POST, "/v1/connections".into(), CONN_COLS)
            },
            ConnectionAction::Delete { id, cancel_events } => Call {
                query: match cancel_events {
                    true => vec![("cancel_events", "true".to_string())],
                    false => Vec::new(),
                },
                ..call(M::DELETE, format!("/v1/connections/{id}"), &[])
            },
            ConnectionAction::Get { id } => {
                call(M::GET, format!("/v1/connections/{id}"), CONN_COLS)
            }
            ConnectionAction::Pause { id } => {
                call(M::PUT, format!("/v1/connections/{id}/pause"), CONN_COLS)
            }
            ConnectionAction::Unpause { id, drain_rate } => Call {
                body: drain_rate.as_deref().map(drain_rate_body),
                ..call(M::PUT, format!("/v1/connections/{id}/unpause"), CONN_COLS)
            },
            ConnectionAction::Disable { id } => {
                call(M::PUT, format!("/v1/connections/{id}/disable"), CONN_COLS)
            }
            ConnectionAction::Enable { id } => {
                call(M::PUT, format!("/v1/connections/{id}/enable"), CONN_COLS)
            }
        },
        Resource::Events { action, .. } => match action {
            EventAction::List { list: a, follow } => Call {
                follow,
                ..list("/v1/events", a, EVENT_COLS)
            },
            EventAction::Get { id } => call(M::GET, format!("/v1/events/{id}"), EVENT_COLS),
            EventAction::Retry { id } => {
                call(M::POST, format!("/v1/events/{id}/retry"), EVENT_COLS)
            }
        },
        Resource::Attempts { event_id, .. } => Call {
            query: vec![("event_id", event_id)],
            ..call(M::GET, "/v1/attempts".into(), ATTEMPT_COLS)
        },
        Resource::Metrics { action, .. } => match action {
            MetricsAction::Events {
                from,
                to,
                granularity,
                connection_id,
                destination_id,
                source_id,
                measures,
            } => {
                let mut query = vec![("granularity", granularity)];
                for (k, v) in [
                    ("from", from),
                    ("to", to),
                    ("connection_id", connection_id),
                    ("destination_id", destination_id),
                    ("source_id", source_id),
                ] {
                    query.extend(v.map(|v| (k, v)));
                }
                query.extend(measures.into_iter().map(|m| ("measures[]", m)));
                Call {
                    query,
                    ..call(M::GET, "/v1/metrics/events".into(), &[])
                }
            }
        },
        Resource::Health { .. } => Call {
            credentials: Credentials::None,
            ..call(M::GET, "/readyz".into(), &[])
        },
        Resource::Issues { action, .. } => {
            let set = |id: String, status: &str| Call {
                body: Some(serde_json::json!({ "status": status })),
                ..call(M::PUT, format!("/v1/issues/{id}"), ISSUE_COLS)
            };
            match action {
                IssueAction::List {
                    status,
                    destination_id,
                    kind,
                    limit,
                    next,
                } => {
                    let mut query: Vec<(&'static str, String)> =
                        status.into_iter().map(|s| ("status", s)).collect();
                    query.extend(destination_id.map(|d| ("destination_id", d)));
                    query.extend(kind.map(|k| ("type", k)));
                    query.extend(limit.map(|l| ("limit", l.to_string())));
                    query.extend(next.map(|n| ("next", n)));
                    Call {
                        query,
                        ..call(M::GET, "/v1/issues".into(), ISSUE_COLS)
                    }
                }
                IssueAction::Get { id } => call(M::GET, format!("/v1/issues/{id}"), ISSUE_COLS),
                IssueAction::Ack { id } => set(id, "ACKNOWLEDGED"),
                IssueAction::Dismiss { id } => set(id, "DISMISSED"),
                IssueAction::Resolve { id } => set(id, "RESOLVED"),
            }
        }
        Resource::AlertChannels { action, .. } => match action {
            AlertChannelAction::List => call(M::GET, "/v1/alert-channels".into(), CHANNEL_COLS),
            AlertChannelAction::Create {
                url,
                name,
                alert_types,
            } => {
                let alert_types = match alert_types.is_empty() {
                    true => vec!["issue_opened".to_string(), "issue_resolved".to_string()],
                    false => alert_types,
                };
                let mut body = serde_json::json!({
                    "type": "webhook", "url": url, "alert_types": alert_types,
                });
                if let Some(name) = name {
                    body["name"] = Value::from(name);
                }
                Call {
                    body: Some(body),
                    ..call(M::POST, "/v1/alert-channels".into(), &[])
                }
            }
            AlertChannelAction::Delete { id } => {
                call(M::DELETE, format!("/v1/alert-channels/{id}"), &[])
            }
        },
        Resource::Bulk { action, .. } => match action {
            BulkAction::Retry {
                connection_id,
                destination_id,
                status,
            } => {
                let mut query = serde_json::Map::new();
                if let Some(c) = connection_id {
                    query.insert("connection_id".into(), Value::from(c));
                }
                if let Some(d) = destination_id {
                    query.insert("destination_id".into(), Value::from(d));
                }
                if !status.is_empty() {
                    query.insert("status".into(), Value::from(status));
                }
                Call {
                    body: Some(serde_json::json!({ "query": query })),
                    ..call(M::POST, "/v1/bulk/events/retry".into(), &[])
                }
            }
            BulkAction::Status { id } => call(M::GET, format!("/v1/bulk/events/retry/{id}"), &[]),
        },
        Resource::Engine { action, .. } => {
            let (method, path) = match action {
                EngineAction::Pause => (M::PUT, "/admin/engine/pause"),
                EngineAction::Resume => (M::PUT, "/admin/engine/resume"),
                EngineAction::Status => (M::GET, "/admin/engine"),
            };
            Call {
                credentials: Credentials::Admin,
                ..call(method, path.into(), &[])
            }
        }
    }
}

/// Runs one client command; the JSON or table goes to stdout.
pub fn run(args: ClientArgs) -> Result<(), ClientError> {
    let env = |k: &'static str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let base = env("FASTHOOK_API_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let json = args.json;
    let plan = plan(args.resource);
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = match plan.credentials {
        Credentials::Admin => {
            Some(env("FASTHOOK_ADMIN_KEY").ok_or(ClientError::MissingEnv("FASTHOOK_ADMIN_KEY"))?)
        }
        Credentials::Team => {
            let team =
                env("FASTHOOK_TEAM_ID").ok_or(ClientError::MissingEnv("FASTHOOK_TEAM_ID"))?;
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&team) {
                headers.insert("x-team-id", v);
            }
            Some(env("FASTHOOK_API_KEY").ok_or(ClientError::MissingEnv("FASTHOOK_API_KEY"))?)
        }
        Credentials::None => None,
    };
    let session = Session {
        client: reqwest::Client::new(),
        url: format!("{}{}", base.trim_end_matches('/'), plan.path),
        headers,
        bearer,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let body = runtime.block_on(session.call(&plan, &plan.query))?;
    if plan.follow {
        return runtime.block_on(follow(&session, &plan, body, json));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        print!("{}", render(&body, plan.columns));
    }
    Ok(())
}

/// Where one command's calls go, and as whom.
struct Session {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    bearer: Option<String>,
}

impl Session {
    /// One call of `plan` with `query`; a non-2xx answer is the API's error.
    async fn call(
        &self,
        plan: &Call,
        query: &[(&'static str, String)],
    ) -> Result<Value, ClientError> {
        let mut request = self
            .client
            .request(plan.method.clone(), &self.url)
            .headers(self.headers.clone())
            .query(query);
        if let Some(bearer) = &self.bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = &plan.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let http = |source| ClientError::Http {
            url: self.url.clone(),
            source,
        };
        let resp = request.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(http)?;
        let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(ClientError::Api {
                status,
                code: body["code"].as_str().unwrap_or("ERROR").to_string(),
                message: body["message"].as_str().unwrap_or("no message").to_string(),
            });
        }
        Ok(body)
    }
}

/// How often `--follow` asks for new items.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Prints the first page oldest first, then every new matching item as it comes, one per
/// line (a JSON object with `--json`), until interrupted or the API fails.
async fn follow(
    session: &Session,
    plan: &Call,
    first: Value,
    json: bool,
) -> Result<(), ClientError> {
    // Stdout is line-buffered: each line is out as soon as it is printed.
    let print = |item: &Value| match json {
        true => println!("{item}"),
        false => {
            let cells: Vec<String> = plan.columns.iter().map(|c| cell(&item[*c])).collect();
            println!("{}", cells.join("  "));
        }
    };
    let models = |page: &Value| page["models"].as_array().cloned().unwrap_or_default();
    // The first page is newest first.
    let first = models(&first);
    let mut newest = first
        .first()
        .and_then(|m| m["id"].as_str())
        .map(String::from);
    first.iter().rev().for_each(print);
    let filters: Vec<(&'static str, String)> = plan
        .query
        .iter()
        .filter(|(k, _)| !matches!(*k, "dir" | "next"))
        .cloned()
        .collect();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let mut query = filters.clone();
        query.push(("dir", "asc".into()));
        query.extend(newest.clone().map(|n| ("next", n)));
        for item in models(&session.call(plan, &query).await?) {
            print(&item);
            newest = item["id"].as_str().map(String::from).or(newest);
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list as an aligned table of `columns`; one object as `key  value` lines.
pub fn render(body: &Value, columns: &[&str]) -> String {
    let mut out = String::new();
    if let Some(models) = body.get("models").and_then(Value::as_array) {
        let columns: Vec<&str> = if columns.is_empty() {
            models
                .first()
                .and_then(Value::as_object)
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default()
        } else {
            columns.to_vec()
        };
        let rows: Vec<Vec<String>> = models
            .iter()
            .map(|m| columns.iter().map(|c| cell(&m[*c])).collect())
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        };
        out += &line(columns.iter().map(|c| c.to_uppercase()).collect());
        for row in rows {
            out += &line(row);
        }
        if let Some(next) = body["pagination"]["next"].as_str() {
            out += &format!("(more: --next {next})\n");
        }
    } else if let Some(obj) = body.as_object() {
        let width = obj.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in obj {
            out += &format!("{k:<width$}  {}\n", cell(v));
        }
    } else {
        out += &format!("{}\n", cell(body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_render_as_aligned_tables() {
        let body = json!({"models": [{"id": "evt_1", "status": "HOLD", "attempts": 0}, {"id": "evt_22", "status": "QUEUED", "attempts": 3}],
            "pagination": {"next": "evt_22"}});
        let text = render(&body, &["id", "status", "attempts"]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID      STATUS  ATTEMPTS");
        assert_eq!(lines[1], "evt_1   HOLD    0");
        assert_eq!(lines[2], "evt_22  QUEUED  3");
        assert_eq!(lines[3], "(more: --next evt_22)");
    }

    #[test]
    fn list_flags_become_the_query() {
        let args = ListArgs {
            connection_id: Some("web_1".into()),
            status: vec!["HOLD".into()],
            limit: Some(50),
            ..Default::default()
        };
        assert_eq!(
            args.query(),
            vec![
                ("connection_id", "web_1".to_string()),
                ("status", "HOLD".into()),
                ("limit", "50".into())
            ]
        );
    }
}
