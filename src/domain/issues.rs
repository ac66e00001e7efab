//! Issues: what an operator should look at, opened and resolved by the gateway itself. Today
//! one type, `circuit_open`: a destination's breaker opening opens one (or, if one is still
//! active for that destination, bumps its `last_seen_at`); the breaker closing resolves it.
//! An operator may acknowledge, dismiss or resolve it. Pure: `engine::issues` does the IO.

use serde::{Deserialize, Serialize};

use super::breaker::CircuitState;
use super::{DestinationId, IssueId, TeamId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueType {
    CircuitOpen,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::CircuitOpen => "circuit_open",
        }
    }

    pub fn parse(s: &str) -> Option<IssueType> {
        (s == "circuit_open").then_some(IssueType::CircuitOpen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssueStatus {
    Opened,
    Acknowledged,
    Resolved,
    Dismissed,
}

impl IssueStatus {
    pub const ALL: [IssueStatus; 4] = [
        IssueStatus::Opened,
        IssueStatus::Acknowledged,
        IssueStatus::Resolved,
        IssueStatus::Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Opened => "OPENED",
            IssueStatus::Acknowledged => "ACKNOWLEDGED",
            IssueStatus::Resolved => "RESOLVED",
            IssueStatus::Dismissed => "DISMISSED",
        }
    }

    pub fn parse(s: &str) -> Option<IssueStatus> {
        IssueStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still wanting attention: the gateway updates it rather than opening another.
    pub fn is_active(self) -> bool {
        matches!(self, IssueStatus::Opened | IssueStatus::Acknowledged)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Issue {
    pub id: IssueId,
    pub team_id: TeamId,
    #[serde(rename = "type")]
    pub kind: IssueType,
    pub status: IssueStatus,
    pub destination_id: DestinationId,
    pub opened_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// What happened to a destination's breaker: a transition as it happens, or its state as a
/// restart found it (`transition: false`), which reconciles a crash between the two writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSeen {
    pub state: CircuitState,
    pub transition: bool,
}

/// What an observation does to the destination's active issue (`None`: it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueChange {
    /// A new issue: store it and alert `issue_opened`.
    Opened(Issue),
    /// The active issue seen again: store it.
    Seen(Issue),
    /// The active issue resolved: store it and alert `issue_resolved`.
    Resolved(Issue),
    Nothing,
}

/// The issue change for a breaker observation of `destination`.
pub fn circuit_seen(
    active: Option<Issue>,
    team: &TeamId,
    destination: &DestinationId,
    seen: CircuitSeen,
    now: Timestamp,
) -> IssueChange {
    match (seen.state, active) {
        (CircuitState::Closed, Some(issue)) => {
            IssueChange::Resolved(issue.set_status(IssueStatus::Resolved, now))
        }
        (CircuitState::Closed, None) => IssueChange::Nothing,
        (CircuitState::Open, Some(mut issue)) if seen.transition => {
            issue.last_seen_at = now;
            issue.updated_at = now;
            IssueChange::Seen(issue)
        }
        // Open or half-open with an active issue, found at a restart, or a probe going out.
        (_, Some(_)) => IssueChange::Nothing,
        // A half-open breaker is still broken; one found at a restart without its issue
        // (the crash came between the two writes) gets one, as an open one does.
        (CircuitState::HalfOpen, None) if seen.transition => IssueChange::Nothing,
        (_, None) => IssueChange::Opened(Issue {
            id: IssueId::new(),
            team_id: team.clone(),
            kind: IssueType::CircuitOpen,
            status: IssueStatus::Opened,
            destination_id: destination.clone(),
            opened_at: now,
            last_seen_at: now,
            resolved_at: None,
            updated_at: now,
        }),
    }
}

impl Issue {
    /// The status an operator (or the gateway) gives it. Resolving stamps `resolved_at`;
    /// going back to an active status clears it.
    pub fn set_status(mut self, status: IssueStatus, now: Timestamp) -> Issue {
        if status != self.status {
            self.status = status;
            self.updated_at = now;
            self.resolved_at = match status {
                IssueStatus::Resolved => Some(now),
                _ if status.is_active() => None,
                _ => self.resolved_at,
            };
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: CircuitState, transition: bool) -> CircuitSeen {
        CircuitSeen { state, transition }
    }

    #[test]
    fn a_breaker_opening_opens_one_issue_then_bumps_it_and_closing_resolves_it() {
        let (team, dest) = (TeamId::new(), DestinationId::new());
        let opened = match circuit_seen(
            None,
            &team,
            &dest,
            seen(CircuitState::Open, true),
            Timestamp(10),
        ) {
            IssueChange::Opened(issue) => issue,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (opened.status, opened.opened_at, opened.last_seen_at),
            (IssueStatus::Opened, Timestamp(10), Timestamp(10))
        );
        assert_eq!(opened.kind, IssueType::CircuitOpen);
        // Half-open and a failed probe: the same issue, seen again.
        assert_eq!(
            circuit_seen(
                Some(opened.clone()),
                &team,
                &dest,
                seen(CircuitState::HalfOpen, true),
                Timestamp(20)
            ),
            IssueChange::Nothing
        );
        let bumped = match circuit_seen(
            Some(opened.clone()),
            &team,
            &dest,
            seen(CircuitState::Open, true),
            Timestamp(30),
        ) {
            IssueChange::Seen(issue) => issue,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (bumped.id.clone(), bumped.opened_at, bumped.last_seen_at),
            (opened.id.clone(), Timestamp(10), Timestamp(30))
        );
        let resolved = match circuit_seen(
            Some(bumped),
            &team,
            &dest,
            seen(CircuitState::Closed, true),
            Timestamp(40),
        ) {
            IssueChange::Resolved(issue) => issue,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (resolved.status, resolved.resolved_at),
            (IssueStatus::Resolved, Some(Timestamp(40)))
        );
        assert_eq!(
            circuit_seen(
                None,
                &team,
                &dest,
                seen(CircuitState::Closed, true),
                Timestamp(50)
            ),
            IssueChange::Nothing
        );
    }

    #[test]
    fn a_restart_reconciles_the_issue_with_the_breaker_it_finds() {
        let (team, dest) = (TeamId::new(), DestinationId::new());
        for state in [CircuitState::Open, CircuitState::HalfOpen] {
            assert!(
                matches!(
                    circuit_seen(None, &team, &dest, seen(state, false), Timestamp(1)),
                    IssueChange::Opened(_)
                ),
                "{state:?}"
            );
        }
        let IssueChange::Opened(active) = circuit_seen(
            None,
            &team,
            &dest,
            seen(CircuitState::Open, false),
            Timestamp(1),
        ) else {
            unreachable!()
        };
        assert_eq!(
            circuit_seen(
                Some(active.clone()),
                &team,
                &dest,
                seen(CircuitState::Open, false),
                Timestamp(2)
            ),
            IssueChange::Nothing,
            "not seen again: nothing happened"
        );
        assert!(matches!(
            circuit_seen(
                Some(active),
                &team,
                &dest,
                seen(CircuitState::Closed, false),
                Timestamp(3)
            ),
            IssueChange::Resolved(_)
        ));
    }

    #[test]
    fn an_operator_sets_the_status_and_resolving_stamps_the_time() {
        let (team, dest) = (TeamId::new(), DestinationId::new());
        let IssueChange::Opened(issue) = circuit_seen(
            None,
            &team,
            &dest,
            seen(CircuitState::Open, true),
            Timestamp(1),
        ) else {
            unreachable!()
        };
        let acked = issue.set_status(IssueStatus::Acknowledged, Timestamp(2));
        assert!(
            acked.status.is_active()
                && acked.resolved_at.is_none()
                && acked.updated_at == Timestamp(2)
        );
        let resolved = acked.set_status(IssueStatus::Resolved, Timestamp(3));
        assert_eq!(resolved.resolved_at, Some(Timestamp(3)));
        let dismissed = resolved.set_status(IssueStatus::Dismissed, Timestamp(4));
        assert!(!dismissed.status.is_active());
        assert_eq!(dismissed.resolved_at, Some(Timestamp(3)));
        for s in IssueStatus::ALL {
            assert_eq!(IssueStatus::parse(s.as_str()), Some(s));
        }
    }
}
