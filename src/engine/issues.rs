//! Issues in the engine: one task applies every change to them, in the order they happen —
//! breaker observations sent by destination actors (which never wait for it) and an
//! operator's status changes — so an automatic bump never undoes an acknowledgement. The
//! rules are in `domain::issues`.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::alerts::AlertSender;
use super::{EngineError, Result};
use crate::domain::alerts::{Alert, AlertType};
use crate::domain::issues::{circuit_seen, CircuitSeen, Issue, IssueChange, IssueStatus};
use crate::domain::*;
use crate::store::{ops, Store};

enum Message {
    Circuit {
        team: TeamId,
        destination: DestinationId,
        seen: CircuitSeen,
    },
    SetStatus {
        team: TeamId,
        id: IssueId,
        status: IssueStatus,
        reply: oneshot::Sender<Result<Issue>>,
    },
}

/// The sending side, cloned into every actor.
#[derive(Clone)]
pub struct IssueBook {
    tx: mpsc::UnboundedSender<Message>,
    /// Issues opened or acknowledged now (`fasthook_issues_open`).
    open: Arc<AtomicI64>,
}

impl IssueBook {
    /// Starts the task that applies the changes; opened and resolved issues go to `alerts`.
    /// Must run inside a Tokio runtime.
    pub fn start(store: Store, alerts: AlertSender) -> IssueBook {
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicI64::new(0));
        tokio::spawn(run(store, alerts, open.clone(), rx));
        IssueBook { tx, open }
    }

    /// Issues opened or acknowledged now.
    pub fn open_count(&self) -> u64 {
        self.open.load(Relaxed).max(0) as u64
    }

    /// A breaker changed, or a restart found it in `seen.state`. Never waits.
    pub fn circuit(&self, team: &TeamId, destination: &DestinationId, seen: CircuitSeen) {
        let _ = self.tx.send(Message::Circuit {
            team: team.clone(),
            destination: destination.clone(),
            seen,
        });
    }

    /// An operator's change of status; answers the issue as stored.
    pub async fn set_status(
        &self,
        team: &TeamId,
        id: &IssueId,
        status: IssueStatus,
    ) -> Result<Issue> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::SetStatus {
                team: team.clone(),
                id: id.clone(),
                status,
                reply,
            })
            .map_err(|_| EngineError::Unavailable("the issue task has stopped".into()))?;
        answer
            .await
            .map_err(|_| EngineError::Unavailable("the issue task has stopped".into()))?
    }
}

async fn run(
    store: Store,
    alerts: AlertSender,
    open: Arc<AtomicI64>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    // Counted before the first change is applied; from then on kept by each change.
    let reader = store.clone();
    match crate::store::readers::read(move || reader.active_issue_count()).await {
        Ok(Ok(n)) => open.store(n as i64, Relaxed),
        _ => tracing::error!("cannot count the open issues"),
    }
    while let Some(message) = rx.recv().await {
        match message {
            Message::Circuit {
                team,
                destination,
                seen,
            } => {
                if let Err(e) = on_circuit(&store, &alerts, &open, team, &destination, seen).await {
                    tracing::error!(destination_id = %destination, error = %e, "cannot record the issue of a breaker change");
                }
            }
            Message::SetStatus {
                team,
                id,
                status,
                reply,
            } => {
                let _ = reply.send(set_status(&store, &open, team, id, status).await);
            }
        }
    }
}

async fn on_circuit(
    store: &Store,
    alerts: &AlertSender,
    open: &AtomicI64,
    team: TeamId,
    destination: &DestinationId,
    seen: CircuitSeen,
) -> Result<()> {
    let (reader, dest) = (store.clone(), destination.clone());
    let lookup = team.clone();
    let active = crate::store::readers::read(move || reader.active_issue(&lookup, &dest))
        .await
        .map_err(|e| EngineError::Unavailable(format!("issue reader: {e}")))??;
    let was_active = active.is_some();
    let now = Timestamp::now();
    let (issue, alert) = match circuit_seen(active, &team, destination, seen, now) {
        IssueChange::Nothing => return Ok(()),
        IssueChange::Opened(issue) => {
            tracing::warn!(issue_id = %issue.id, destination_id = %destination, "issue opened: the destination's circuit breaker is open");
            (issue, Some(AlertType::IssueOpened))
        }
        IssueChange::Seen(issue) => (issue, None),
        IssueChange::Resolved(issue) => {
            tracing::info!(issue_id = %issue.id, destination_id = %destination, "issue resolved: the destination's circuit breaker closed");
            (issue, Some(AlertType::IssueResolved))
        }
    };
    let mut writes = ops::put_issue(&issue, was_active);
    // The alerts are stored with the change they announce: a crash loses neither alone.
    let to_send = match alert {
        Some(t) => {
            let reader = store.clone();
            let channels = crate::store::readers::read(move || reader.team_alert_channels(&team))
                .await
                .map_err(|e| EngineError::Unavailable(format!("alert channel reader: {e}")))??;
            Alert::for_issue(&channels, t, &issue, now)
        }
        None => Vec::new(),
    };
    writes.extend(to_send.iter().map(ops::put_alert));
    store.commit(writes).await?;
    open.fetch_add(
        i64::from(issue.status.is_active()) - i64::from(was_active),
        Relaxed,
    );
    alerts.send(to_send);
    Ok(())
}

async fn set_status(
    store: &Store,
    open: &AtomicI64,
    team: TeamId,
    id: IssueId,
    status: IssueStatus,
) -> Result<Issue> {
    let (reader, lookup, key) = (store.clone(), team.clone(), id.clone());
    let issue = crate::store::readers::read(move || reader.issue(&lookup, &key))
        .await
        .map_err(|e| EngineError::Unavailable(format!("issue reader: {e}")))??
        .ok_or(EngineError::NotFound("issue"))?;
    let was_active = issue.status.is_active();
    if !was_active && status.is_active() {
        return Err(EngineError::Refused {
            code: "ISSUE_CLOSED",
            message: format!(
                "the issue is {}; a closed issue does not open again (the next breaker opening opens a new one)",
                issue.status.as_str()
            ),
        });
    }
    let changed = issue.set_status(status, Timestamp::now());
    store.commit(ops::put_issue(&changed, was_active)).await?;
    open.fetch_add(
        i64::from(changed.status.is_active()) - i64::from(was_active),
        Relaxed,
    );
    Ok(changed)
}
