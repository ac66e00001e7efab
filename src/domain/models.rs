//! The objects of the contract as they are stored. Stored forms are bincode-friendly (no
//! internally tagged enums, no `serde_json::Value`): the API layer owns the wire shapes where
//! they differ (rules as a tagged list, secrets removed).

use serde::{Deserialize, Serialize};

use super::ids::*;
use super::rules::Rules;
use super::time::Timestamp;

/// Who changed the whole-engine pause last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PauseSource {
    Api,
    Config,
}

/// The whole-engine pause (`GET /admin/engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnginePause {
    pub paused: bool,
    pub paused_at: Option<Timestamp>,
    pub changed_by: PauseSource,
}

impl EnginePause {
    /// The state after a pause or resume from `by`; pausing twice keeps the first `paused_at`.
    pub fn switch(self, paused: bool, by: PauseSource, now: Timestamp) -> EnginePause {
        EnginePause {
            paused,
            paused_at: toggled(self.paused_at, paused, now),
            changed_by: by,
        }
    }
}

/// The whole-engine pause as stored: the state and the config file's `[engine] paused` as it
/// was when the state last changed. A crash must not undo an operator's pause, so at start
/// the file decides only if it changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPause {
    pub state: EnginePause,
    pub file_paused: bool,
}

impl StoredPause {
    /// The state at start, given what was stored and what the file says now.
    pub fn at_start(stored: Option<StoredPause>, file_paused: bool, now: Timestamp) -> StoredPause {
        let state = match stored {
            Some(s) if s.file_paused == file_paused => s.state,
            Some(s) => s.state.switch(file_paused, PauseSource::Config, now),
            None => EnginePause {
                paused: file_paused,
                paused_at: file_paused.then_some(now),
                changed_by: PauseSource::Config,
            },
        };
        StoredPause { state, file_paused }
    }
}

/// A `disabled_at`/`paused_at` stamp after switching it on (the first stamp is kept) or off.
pub fn toggled(at: Option<Timestamp>, on: bool, now: Timestamp) -> Option<Timestamp> {
    if on {
        at.or(Some(now))
    } else {
        None
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub team_id: TeamId,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HmacAlgorithm {
    Sha256,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// How a source proves a request came from its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    Hmac {
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        header: String,
        prefix: Option<String>,
        secret: String,
    },
    StandardWebhooks {
        secret: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub id: SourceId,
    pub team_id: TeamId,
    pub name: String,
    /// Upper-case HTTP methods the provider may use.
    pub allowed_http_methods: Vec<String>,
    pub verification: Option<Verification>,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Last, so that a source stored before it (store layout 4) is this one without it.
    pub dedupe: Option<super::dedupe::DedupeRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    pub fn millis(self) -> u64 {
        match self {
            RatePeriod::Second => 1_000,
            RatePeriod::Minute => 60_000,
            RatePeriod::Hour => 3_600_000,
        }
    }
}

/// Circuit breaker settings of one destination (defaults from the hookstream document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CircuitConfig {
    pub failure_threshold: u32,
    pub cooldown_seconds: u64,
    pub success_threshold: u32,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failure_threshold: 5,
            cooldown_seconds: 60,
            success_threshold: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Destination {
    pub id: DestinationId,
    pub team_id: TeamId,
    pub name: String,
    pub url: String,
    pub http_method: String,
    /// Attempts per `rate_limit_period`; `None` means unlimited.
    pub rate_limit: Option<u32>,
    pub rate_limit_period: RatePeriod,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    /// Extra headers sent with every delivery.
    pub headers: Vec<(String, String)>,
    pub signing_secret: Option<String>,
    pub circuit: CircuitConfig,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub team_id: TeamId,
    pub name: String,
    pub source_id: SourceId,
    pub destination_id: DestinationId,
    pub rules: Rules,
    pub paused_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One provider request as received. The body is stored once, however many events it fans
/// out to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub team_id: TeamId,
    pub source_id: SourceId,
    pub method: String,
    /// Header names in lower case, in arrival order, hop-by-hop headers removed.
    pub headers: Vec<(String, String)>,
    /// Kept apart from the record, in the store's body log, so it is not serialized here.
    #[serde(skip)]
    pub body: bytes::Bytes,
    pub rejection_cause: Option<RejectionCause>,
    pub event_ids: Vec<EventId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionCause {
    VerificationFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventStatus {
    Scheduled,
    Queued,
    Hold,
    Successful,
    Failed,
    Cancelled,
}

impl EventStatus {
    pub const ALL: [EventStatus; 6] = [
        EventStatus::Scheduled,
        EventStatus::Queued,
        EventStatus::Hold,
        EventStatus::Successful,
        EventStatus::Failed,
        EventStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Scheduled => "SCHEDULED",
            EventStatus::Queued => "QUEUED",
            EventStatus::Hold => "HOLD",
            EventStatus::Successful => "SUCCESSFUL",
            EventStatus::Failed => "FAILED",
            EventStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Trigger {
    Initial,
    Automatic,
    Manual,
    BulkRetry,
    Unpause,
    Probe,
    Reset,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "INITIAL",
            Trigger::Automatic => "AUTOMATIC",
            Trigger::Manual => "MANUAL",
            Trigger::BulkRetry => "BULK_RETRY",
            Trigger::Unpause => "UNPAUSE",
            Trigger::Probe => "PROBE",
            Trigger::Reset => "RESET",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptStatus {
    Successful,
    Failed,
}

/// Why an attempt failed without an HTTP status to show for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryError {
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    Dns,
    Tls,
    BadResponse,
    /// The address is one the gateway does not connect to (the SSRF guard); nothing was sent.
    BlockedAddress,
    /// The stored request body could not be read (a damaged body segment); nothing was sent.
    BodyUnavailable,
}

impl DeliveryError {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryError::Timeout => "TIMEOUT",
            DeliveryError::ConnectionRefused => "CONNECTION_REFUSED",
            DeliveryError::ConnectionReset => "CONNECTION_RESET",
            DeliveryError::Dns => "DNS",
            DeliveryError::Tls => "TLS",
            DeliveryError::BadResponse => "BAD_RESPONSE",
            DeliveryError::BlockedAddress => "BLOCKED_ADDRESS",
            DeliveryError::BodyUnavailable => "BODY_UNAVAILABLE",
        }
    }
}

/// One routed copy of a request, on its way to one destination.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    pub team_id: TeamId,
    pub connection_id: ConnectionId,
    pub source_id: SourceId,
    pub destination_id: DestinationId,
    pub request_id: RequestId,
    pub status: EventStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub response_status: Option<u16>,
    pub error_code: Option<DeliveryError>,
    pub dead_lettered_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One try to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub id: AttemptId,
    pub team_id: TeamId,
    pub event_id: EventId,
    pub destination_id: DestinationId,
    pub attempt_number: u32,
    pub trigger: Trigger,
    pub status: AttemptStatus,
    pub response_status: Option<u16>,
    pub error_code: Option<DeliveryError>,
    pub duration_ms: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A change to an event's delivery state, applied by the store's writer to whatever the
/// event looks like at commit time. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPatch {
    pub status: Option<EventStatus>,
    pub attempts: Option<u32>,
    pub next_attempt_at: Option<Option<Timestamp>>,
    pub last_attempt_at: Option<Timestamp>,
    pub response: Option<(Option<u16>, Option<DeliveryError>)>,
    pub dead_lettered_at: Option<Option<Timestamp>>,
    pub updated_at: Timestamp,
    /// The attempt this change records, stored with the event (see `store`).
    pub attempt: Option<Attempt>,
}

impl EventPatch {
    pub fn apply(&self, event: &mut Event) {
        if let Some(status) = self.status {
            event.status = status;
        }
        if let Some(attempts) = self.attempts {
            event.attempts = attempts;
        }
        if let Some(next) = self.next_attempt_at {
            event.next_attempt_at = next;
        }
        if let Some(last) = self.last_attempt_at {
            event.last_attempt_at = Some(last);
        }
        if let Some((status, error)) = self.response {
            event.response_status = status;
            event.error_code = error;
        }
        if let Some(dead) = self.dead_lettered_at {
            event.dead_lettered_at = dead;
        }
        event.updated_at = self.updated_at;
    }
}

#[cfg(test)]
mod stored_pause_tests {
    use super::*;

    fn stored(paused: bool, by: PauseSource, file_paused: bool) -> StoredPause {
        StoredPause {
            state: EnginePause {
                paused,
                paused_at: paused.then_some(Timestamp(5)),
                changed_by: by,
            },
            file_paused,
        }
    }

    #[test]
    fn the_last_change_survives_a_restart_unless_the_file_changed_since() {
        let now = Timestamp(100);
        // An API pause while the file says false: still paused after a restart.
        let s = StoredPause::at_start(Some(stored(true, PauseSource::Api, false)), false, now);
        assert_eq!(s.state, stored(true, PauseSource::Api, false).state);
        // An API resume while the file says true: still running.
        let s = StoredPause::at_start(Some(stored(false, PauseSource::Api, true)), true, now);
        assert!(!s.state.paused);
        // The file changed while the gateway was down: the file wins.
        let s = StoredPause::at_start(Some(stored(true, PauseSource::Api, false)), true, now);
        assert_eq!(s.state.changed_by, PauseSource::Config);
        assert_eq!(
            s.state.paused_at,
            Some(Timestamp(5)),
            "still the first pause"
        );
        let s = StoredPause::at_start(Some(stored(true, PauseSource::Api, true)), false, now);
        assert!(!s.state.paused);
        assert!(!s.file_paused);
        // Nothing stored: the file decides.
        let s = StoredPause::at_start(None, true, now);
        assert_eq!(s.state.paused_at, Some(now));
        assert_eq!(s.state.changed_by, PauseSource::Config);
    }
}
