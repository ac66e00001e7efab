//! Alert channels and the alerts sent to them: each `issue_opened` / `issue_resolved` is a
//! JSON POST signed like deliveries (Standard Webhooks), stored before it is sent and retried
//! with backoff until the channel's receiver takes it. Pure: `engine::alerts` does the IO.

use serde::{Deserialize, Serialize};

use super::issues::Issue;
use super::{AlertChannelId, AlertId, TeamId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    IssueOpened,
    IssueResolved,
}

impl AlertType {
    pub const ALL: [AlertType; 2] = [AlertType::IssueOpened, AlertType::IssueResolved];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::IssueOpened => "issue_opened",
            AlertType::IssueResolved => "issue_resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertChannel {
    pub id: AlertChannelId,
    pub team_id: TeamId,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub url: String,
    pub alert_types: Vec<AlertType>,
    /// `whsec_` + base64: the key alerts are signed with.
    pub signing_secret: String,
    pub created_at: Timestamp,
}

impl AlertChannel {
    pub fn wants(&self, t: AlertType) -> bool {
        self.alert_types.contains(&t)
    }
}

/// One alert on its way to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Also the `webhook-id` a receiver deduplicates by.
    pub id: AlertId,
    pub team_id: TeamId,
    pub channel_id: AlertChannelId,
    pub alert_type: AlertType,
    /// The JSON body, as it will be sent every time.
    pub body: Vec<u8>,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub created_at: Timestamp,
}

impl Alert {
    /// The alerts `issue`'s change sends: one per channel of its team that wants `t`.
    pub fn for_issue(
        channels: &[AlertChannel],
        t: AlertType,
        issue: &Issue,
        now: Timestamp,
    ) -> Vec<Alert> {
        let body = serde_json::to_vec(&serde_json::json!({ "type": t.as_str(), "issue": issue }))
            .expect("an issue serializes");
        channels
            .iter()
            .filter(|c| c.team_id == issue.team_id && c.wants(t))
            .map(|c| Alert {
                id: AlertId::new(),
                team_id: issue.team_id.clone(),
                channel_id: c.id.clone(),
                alert_type: t,
                body: body.clone(),
                attempts: 0,
                next_attempt_at: now,
                created_at: now,
            })
            .collect()
    }

    /// A failed try: the next one after 1 s, 2 s, 4 s, … at most `MAX_BACKOFF_MS` apart.
    pub fn failed(mut self, now: Timestamp) -> Alert {
        self.attempts = self.attempts.saturating_add(1);
        let backoff = 1000u64
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(20))
            .min(MAX_BACKOFF_MS);
        self.next_attempt_at = now.plus_ms(backoff);
        self
    }
}

/// Alerts keep being retried, at least this often, until their receiver takes them.
pub const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::issues::{circuit_seen, CircuitSeen, IssueChange};
    use crate::domain::{breaker::CircuitState, DestinationId};

    fn channel(team: &TeamId, types: Vec<AlertType>) -> AlertChannel {
        AlertChannel {
            id: AlertChannelId::new(),
            team_id: team.clone(),
            name: "ops".into(),
            kind: ChannelType::Webhook,
            url: "http://127.0.0.1:9/alerts".into(),
            alert_types: types,
            signing_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn an_issue_alerts_each_channel_of_its_team_that_wants_the_type() {
        let team = TeamId::new();
        let seen = CircuitSeen {
            state: CircuitState::Open,
            transition: true,
        };
        let IssueChange::Opened(issue) =
            circuit_seen(None, &team, &DestinationId::new(), seen, Timestamp(5))
        else {
            unreachable!()
        };
        let channels = [
            channel(&team, AlertType::ALL.to_vec()),
            channel(&team, vec![AlertType::IssueResolved]),
            channel(&TeamId::new(), AlertType::ALL.to_vec()),
        ];
        let alerts = Alert::for_issue(&channels, AlertType::IssueOpened, &issue, Timestamp(6));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].channel_id, channels[0].id);
        let body: serde_json::Value = serde_json::from_slice(&alerts[0].body).unwrap();
        assert_eq!(body["type"], "issue_opened");
        assert_eq!(body["issue"]["id"], issue.id.as_str());
        assert_eq!(body["issue"]["status"], "OPENED");
    }

    #[test]
    fn failed_tries_back_off_doubling_up_to_the_cap() {
        let team = TeamId::new();
        let mut alert = Alert {
            id: AlertId::new(),
            team_id: team,
            channel_id: AlertChannelId::new(),
            alert_type: AlertType::IssueOpened,
            body: b"{}".to_vec(),
            attempts: 0,
            next_attempt_at: Timestamp(0),
            created_at: Timestamp(0),
        };
        let mut gaps = Vec::new();
        for now in [0u64, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100] {
            alert = alert.failed(Timestamp(now));
            gaps.push(alert.next_attempt_at.millis() - now);
        }
        assert_eq!(&gaps[..5], [1000, 2000, 4000, 8000, 16000]);
        assert_eq!(*gaps.last().unwrap(), MAX_BACKOFF_MS);
        assert_eq!(alert.attempts, 11);
    }
}
