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
    /// Sources (where webhooks come in): list, get, create, disable, enable.
    Sources {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: SourceAction,
    },
    /// Destinations (where events are delivered): list, get, create, disable, enable,
    /// circuit, reset-circuit.
    Destinations {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: DestinationAction,
    },
    /// Connections (a source routed to a destination): list, get, create, delete, pause,
    /// unpause, disable, enable.
    Connections {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: ConnectionAction,
    },
    /// Events (one request routed through one connection): list, get, retry.
    Events {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: EventAction,
    },
    /// List the delivery attempts of one event.
    #[command(after_help = "Example:\n  fasthook attempts --event_id evt_xxx")]
    Attempts {
        /// The event's id (evt_…).
        #[arg(long = "event_id", alias = "event-id")]
        event_id: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Requests (what a source received): list, get, retry (replayed through today's
    /// connections).
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
    /// Bulk retries: retry (start one), status (follow one).
    Bulk {
        /// Print the JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: BulkAction,
    },
    /// Teams (needs FASTHOOK_ADMIN_KEY): create.
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
    #[command(after_help = "Example:\n  fasthook health")]
    Health {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Whole-engine pause of every delivery (needs FASTHOOK_ADMIN_KEY): pause, resume, status.
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
    /// List the team's sources, newest first.
    #[command(
        after_help = "Examples:\n  fasthook sources list\n  fasthook sources list --limit 20 --json"
    )]
    List(ListArgs),
    /// Show one source, with its ingress URL.
    #[command(after_help = "Example:\n  fasthook sources get src_xxx")]
    Get {
        /// The source's id (src_…).
        id: String,
    },
    /// Create a source; prints its ingress URL.
    #[command(after_help = "Example:\n  fasthook sources create --name stripe")]
    Create {
        /// A name for it, e.g. `stripe`.
        #[arg(long)]
        name: String,
    },
    /// Disable a source: ingress answers 403 and stores nothing until it is enabled.
    #[command(after_help = "Example:\n  fasthook sources disable src_xxx")]
    Disable {
        /// The source's id (src_…).
        id: String,
    },
    /// Let a disabled source accept requests again.
    #[command(after_help = "Example:\n  fasthook sources enable src_xxx")]
    Enable {
        /// The source's id (src_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RequestAction {
    /// List received requests, newest first (`--source_id` narrows it).
    #[command(after_help = "Example:\n  fasthook requests list --source_id src_xxx --limit 20")]
    List(ListArgs),
    /// Show one request.
    #[command(after_help = "Example:\n  fasthook requests get req_xxx")]
    Get {
        /// The request's id (req_…).
        id: String,
    },
    /// Replays the request through today's connections (a new request, `replay_of` set).
    #[command(after_help = "Example:\n  fasthook requests retry req_xxx")]
    Retry {
        /// The request's id (req_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamAction {
    /// Create a team; prints its id (tm_…).
    #[command(after_help = "Example:\n  FASTHOOK_ADMIN_KEY=… fasthook teams create --name acme")]
    Create {
        /// The team's name, e.g. `acme`.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create an API key for a team; prints the new key once.
    #[command(after_help = "Example:\n  fasthook keys create --team_id tm_xxx")]
    Create {
        /// The team's id (tm_…).
        #[arg(long = "team_id", alias = "team-id")]
        team_id: String,
    },
    /// Revoke one of a team's API keys: calls with it are refused from then on.
    #[command(after_help = "Example:\n  fasthook keys revoke --team_id tm_xxx key_xxx")]
    Revoke {
        /// The team's id (tm_…).
        #[arg(long = "team_id", alias = "team-id")]
        team_id: String,
        /// The key's id (key_…), as `keys create` printed it.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DestinationAction {
    /// List the team's destinations, newest first.
    #[command(after_help = "Example:\n  fasthook destinations list --limit 20")]
    List(ListArgs),
    /// Show one destination.
    #[command(after_help = "Example:\n  fasthook destinations get des_xxx")]
    Get {
        /// The destination's id (des_…).
        id: String,
    },
    /// Create a destination: the URL events are delivered to.
    #[command(
        after_help = "Example:\n  fasthook destinations create --name orders --url https://example.com/hooks --rate-limit 50/second"
    )]
    Create {
        /// A name for it, e.g. `orders`.
        #[arg(long)]
        name: String,
        /// The URL events are POSTed to, e.g. `https://example.com/hooks`.
        #[arg(long)]
        url: String,
        /// At most this many attempts per period: `50/second`, `600/minute`, `10000/hour`
        /// (a bare number is per second; default: no limit).
        #[arg(long = "rate-limit", alias = "rate_limit")]
        rate_limit: Option<String>,
    },
    /// Disable a destination: its events wait (QUEUED) until it is enabled.
    #[command(after_help = "Example:\n  fasthook destinations disable des_xxx")]
    Disable {
        /// The destination's id (des_…).
        id: String,
    },
    /// Deliver to a disabled destination again.
    #[command(after_help = "Example:\n  fasthook destinations enable des_xxx")]
    Enable {
        /// The destination's id (des_…).
        id: String,
    },
    /// Show its circuit breaker: state (closed, open, half-open), failures, next probe.
    #[command(after_help = "Example:\n  fasthook destinations circuit des_xxx")]
    Circuit {
        /// The destination's id (des_…).
        id: String,
    },
    /// Close its circuit breaker now, without waiting for a probe to succeed.
    #[command(after_help = "Example:\n  fasthook destinations reset-circuit des_xxx")]
    ResetCircuit {
        /// The destination's id (des_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionAction {
    /// List the team's connections (`--source_id`, `--destination_id` narrow it).
    #[command(after_help = "Example:\n  fasthook connections list --destination_id des_xxx")]
    List(ListArgs),
    /// Route a source's requests to a destination.
    #[command(
        after_help = "Example:\n  fasthook connections create --name orders --source_id src_xxx --destination_id des_xxx"
    )]
    Create {
        /// A name for it, e.g. `orders`.
        #[arg(long)]
        name: String,
        /// The source it routes from (src_…).
        #[arg(long = "source_id", alias = "source-id")]
        source_id: String,
        /// The destination it delivers to (des_…).
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: String,
    },
    /// Delete a connection; refused while it holds events, unless `--cancel-events`.
    #[command(
        after_help = "Examples:\n  fasthook connections delete web_xxx\n  fasthook connections delete web_xxx --cancel-events"
    )]
    Delete {
        /// The connection's id (web_…).
        id: String,
        /// Cancel the events it still holds (CANCELLED) and delete it anyway.
        #[arg(long = "cancel-events", alias = "cancel_events")]
        cancel_events: bool,
    },
    /// Show one connection.
    #[command(after_help = "Example:\n  fasthook connections get web_xxx")]
    Get {
        /// The connection's id (web_…).
        id: String,
    },
    /// Pause a connection: its new events are held (HOLD) until `unpause`.
    #[command(after_help = "Example:\n  fasthook connections pause web_xxx")]
    Pause {
        /// The connection's id (web_…).
        id: String,
    },
    /// Unpause a connection: its held events are released in order, at most at `--drain-rate`.
    #[command(
        after_help = "Examples:\n  fasthook connections unpause web_xxx\n  fasthook connections unpause web_xxx --drain-rate 50/second"
    )]
    Unpause {
        /// The connection's id (web_…).
        id: String,
        /// At most this many held events per period: `50/second`, `600/minute` or
        /// `10000/hour` (a bare number is per second; default: no cap).
        #[arg(long = "drain-rate", alias = "drain_rate")]
        drain_rate: Option<String>,
    },
    /// Disable a connection: it routes nothing until enabled; events already held stay HOLD.
    #[command(after_help = "Example:\n  fasthook connections disable web_xxx")]
    Disable {
        /// The connection's id (web_…).
        id: String,
    },
    /// Route through a disabled connection again.
    #[command(after_help = "Example:\n  fasthook connections enable web_xxx")]
    Enable {
        /// The connection's id (web_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventAction {
    /// List events, newest first; `--follow` keeps printing new ones.
    #[command(
        after_help = "Examples:\n  fasthook events list --connection_id web_xxx --status HOLD --limit 50\n  fasthook events list --status FAILED --follow"
    )]
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Keep printing new matching events as they come (one per line), until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Show one event.
    #[command(after_help = "Example:\n  fasthook events get evt_xxx")]
    Get {
        /// The event's id (evt_…).
        id: String,
    },
    /// Deliver a finished event again now (a MANUAL attempt); held if its connection is
    /// paused.
    #[command(after_help = "Example:\n  fasthook events retry evt_xxx")]
    Retry {
        /// The event's id (evt_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsAction {
    /// Event counts and error rate per time bucket, for the team or one connection,
    /// destination or source.
    #[command(
        after_help = "Example:\n  fasthook metrics events --connection_id web_xxx --granularity 1m --measures[] hold_count"
    )]
    Events {
        /// Start, RFC 3339 (e.g. `2024-05-01T00:00:00Z`); default: a day before `--to`.
        #[arg(long)]
        from: Option<String>,
        /// End, RFC 3339; default: now.
        #[arg(long)]
        to: Option<String>,
        /// Bucket width: 1m, 1h or 1d.
        #[arg(long, default_value = "1h")]
        granularity: String,
        /// Only this connection's events (web_…).
        #[arg(long = "connection_id", alias = "connection-id")]
        connection_id: Option<String>,
        /// Only this destination's events (des_…).
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        /// Only this source's events (src_…).
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
    /// List issues, newest first.
    #[command(
        after_help = "Example:\n  fasthook issues list --status OPENED --destination_id des_xxx"
    )]
    List {
        /// OPENED, ACKNOWLEDGED, RESOLVED or DISMISSED; repeatable.
        #[arg(long)]
        status: Vec<String>,
        /// Only this destination's issues (des_…).
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        /// The issue type: circuit_open (the only one).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Items per page, 1 to 250 (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor a previous page printed (`--next …`).
        #[arg(long)]
        next: Option<String>,
    },
    /// Show one issue.
    #[command(after_help = "Example:\n  fasthook issues get iss_xxx")]
    Get {
        /// The issue's id (iss_…).
        id: String,
    },
    /// Mark an issue ACKNOWLEDGED: someone is on it.
    #[command(after_help = "Example:\n  fasthook issues ack iss_xxx")]
    Ack {
        /// The issue's id (iss_…).
        id: String,
    },
    /// Mark an issue DISMISSED.
    #[command(after_help = "Example:\n  fasthook issues dismiss iss_xxx")]
    Dismiss {
        /// The issue's id (iss_…).
        id: String,
    },
    /// Mark an issue RESOLVED.
    #[command(after_help = "Example:\n  fasthook issues resolve iss_xxx")]
    Resolve {
        /// The issue's id (iss_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertChannelAction {
    /// List the team's alert channels.
    #[command(after_help = "Example:\n  fasthook alert-channels list")]
    List,
    /// Add a webhook channel that receives issue alerts; prints its signing secret.
    #[command(
        after_help = "Examples:\n  fasthook alert-channels create --url https://ops.example.com/hook\n  fasthook alert-channels create --url https://ops.example.com/hook --alert-type issue_opened"
    )]
    Create {
        /// The URL alerts are POSTed to.
        #[arg(long)]
        url: String,
        /// A name for it (default `alerts`).
        #[arg(long)]
        name: Option<String>,
        /// issue_opened, issue_resolved; repeatable (default both).
        #[arg(long = "alert-type", alias = "alert_types")]
        alert_types: Vec<String>,
    },
    /// Remove an alert channel.
    #[command(after_help = "Example:\n  fasthook alert-channels delete alc_xxx")]
    Delete {
        /// The alert channel's id (alc_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BulkAction {
    /// Retry every event the flags select, in the background; prints the job (bch_…).
    #[command(
        after_help = "Example:\n  fasthook bulk retry --connection_id web_xxx --status FAILED"
    )]
    Retry {
        /// Only this connection's events (web_…).
        #[arg(long = "connection_id", alias = "connection-id")]
        connection_id: Option<String>,
        /// Only this destination's events (des_…).
        #[arg(long = "destination_id", alias = "destination-id")]
        destination_id: Option<String>,
        /// SCHEDULED, QUEUED, SUCCESSFUL, FAILED or CANCELLED; repeatable (default FAILED).
        /// HOLD is never selected.
        #[arg(long)]
        status: Vec<String>,
    },
    /// Show a bulk retry's progress.
    #[command(after_help = "Example:\n  fasthook bulk status bch_xxx")]
    Status {
        /// The bulk retry's id (bch_…), as `bulk retry` printed it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EngineAction {
    /// Stop starting deliveries, for every team; ingress keeps accepting.
    #[command(after_help = "Example:\n  FASTHOOK_ADMIN_KEY=… fasthook engine pause")]
    Pause,
    /// Start delivering again after `engine pause`.
    #[command(after_help = "Example:\n  FASTHOOK_ADMIN_KEY=… fasthook engine resume")]
    Resume,
    /// Show whether the engine is paused, since when and by whom.
    #[command(after_help = "Example:\n  FASTHOOK_ADMIN_KEY=… fasthook engine status")]
    Status,
}

/// Filters and paging of a list; each list takes only the filters its API knows (the API
/// refuses the others).
#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Events only: only this connection's (web_…).
    #[arg(long = "connection_id", alias = "connection-id")]
    connection_id: Option<String>,
    /// Events, connections: only this destination's (des_…).
    #[arg(long = "destination_id", alias = "destination-id")]
    destination_id: Option<String>,
    /// Events, connections, requests: only this source's (src_…).
    #[arg(long = "source_id", alias = "source-id")]
    source_id: Option<String>,
    /// Events only: SCHEDULED, QUEUED, HOLD, SUCCESSFUL, FAILED or CANCELLED; repeatable.
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

    /// `--help` of every client command says what it does, every flag and positional says
    /// what it takes, and every leaf command shows an example invocation.
    #[test]
    fn every_command_and_flag_is_described() {
        fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                if sub
                    .get_about()
                    .is_none_or(|a| a.to_string().trim().is_empty())
                {
                    problems.push(format!("`{path}`: no about"));
                }
                for arg in sub.get_arguments() {
                    let id = arg.get_id().as_str();
                    if matches!(id, "help" | "version") {
                        continue;
                    }
                    let name = arg
                        .get_long()
                        .map_or(format!("<{id}>"), |l| format!("--{l}"));
                    if arg
                        .get_help()
                        .is_none_or(|h| h.to_string().trim().is_empty())
                    {
                        problems.push(format!("`{path} {name}`: no help"));
                    }
                }
                let leaf = sub.get_subcommands().all(|s| s.get_name() == "help");
                let example = sub
                    .get_after_help()
                    .is_some_and(|a| a.to_string().contains("fasthook "));
                if leaf && !example {
                    problems.push(format!("`{path}`: no example in after_help"));
                }
                walk(sub, &path, problems);
            }
        }
        let root = <Resource as Subcommand>::augment_subcommands(clap::Command::new("fasthook"));
        let mut problems = Vec::new();
        walk(&root, "fasthook", &mut problems);
        assert!(
            problems.is_empty(),
            "undescribed client commands or args:\n{}",
            problems.join("\n")
        );
    }

    /// Flags taking one of a fixed set of values name them all in their help (any one of
    /// the sets given for that flag).
    #[test]
    fn enumerated_flags_list_their_values() {
        use crate::domain::alerts::AlertType;
        use crate::domain::event_metrics::Measure;
        use crate::domain::issues::IssueStatus;
        use crate::domain::EventStatus;
        let event_statuses: Vec<&str> = EventStatus::ALL.iter().map(|s| s.as_str()).collect();
        let issue_statuses: Vec<&str> = IssueStatus::ALL.iter().map(|s| s.as_str()).collect();
        let measures: Vec<&str> = Measure::ALL.iter().map(|m| m.as_str()).collect();
        let alert_types: Vec<&str> = AlertType::ALL.iter().map(|t| t.as_str()).collect();
        let periods = vec!["/second", "/minute", "/hour"];
        let expected: Vec<(&str, Vec<Vec<&str>>)> = vec![
            ("status", vec![event_statuses, issue_statuses]),
            ("dir", vec![vec!["asc", "desc"]]),
            ("granularity", vec![vec!["1m", "1h", "1d"]]),
            ("measures[]", vec![measures]),
            ("rate-limit", vec![periods.clone()]),
            ("drain-rate", vec![periods]),
            ("alert-type", vec![alert_types]),
            ("type", vec![vec!["circuit_open"]]),
        ];
        fn walk(
            cmd: &clap::Command,
            path: &str,
            expected: &[(&str, Vec<Vec<&str>>)],
            seen: &mut Vec<String>,
            problems: &mut Vec<String>,
        ) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                for arg in sub.get_arguments() {
                    let Some(long) = arg.get_long() else { continue };
                    let Some((_, sets)) = expected.iter().find(|(l, _)| *l == long) else {
                        continue;
                    };
                    seen.push(long.to_string());
                    let help = format!(
                        "{} {}",
                        arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
                        arg.get_long_help()
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    );
                    if !sets.iter().any(|set| set.iter().all(|v| help.contains(v))) {
                        problems.push(format!(
                            "`{path} --{long}`: help {help:?} should name all of one of {sets:?}"
                        ));
                    }
                }
                walk(sub, &path, expected, seen, problems);
            }
        }
        let root = <Resource as Subcommand>::augment_subcommands(clap::Command::new("fasthook"));
        let (mut seen, mut problems) = (Vec::new(), Vec::new());
        walk(&root, "fasthook", &expected, &mut seen, &mut problems);
        for (long, _) in &expected {
            if !seen.iter().any(|s| s == long) {
                problems.push(format!(
                    "no client flag `--{long}` any more: update this test"
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "enumerated flags without their values:\n{}",
            problems.join("\n")
        );
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
