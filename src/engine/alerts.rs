//! Sending alerts: one task holds every alert not yet taken by its receiver, in the order
//! they are due, and sends each (signed, on its own task, so a slow receiver holds up no
//! other) until its receiver answers 2xx. Alerts are stored before they reach this task
//! (with the issue change that made them), and a restart loads what is left: an alert to a
//! receiver that is down arrives when it is back, restart or not. Nothing here is on an
//! actor's thread.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::delivery::{DeliveryClient, Signer};
use crate::domain::alerts::Alert;
use crate::domain::*;
use crate::store::{ops, Store};

/// How long a receiver has to answer one alert.
const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Hands stored alerts to the sending task.
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::UnboundedSender<Vec<Alert>>,
}

impl AlertSender {
    /// Starts the task, which first loads the alerts a previous run left. Must run inside a
    /// Tokio runtime.
    pub fn start(store: Store, client: DeliveryClient) -> AlertSender {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, client, rx));
        AlertSender { tx }
    }

    /// Alerts now in the store, to send.
    pub fn send(&self, alerts: Vec<Alert>) {
        if !alerts.is_empty() {
            let _ = self.tx.send(alerts);
        }
    }
}

/// How one try ended.
enum Outcome {
    /// The receiver took it (2xx).
    Taken,
    /// Try again later.
    Failed,
    /// Its channel is gone: nobody to send it to.
    Orphaned,
}

async fn run(store: Store, client: DeliveryClient, mut new: mpsc::UnboundedReceiver<Vec<Alert>>) {
    let reader = store.clone();
    let left = match crate::store::readers::read(move || reader.pending_alerts()).await {
        Ok(Ok(alerts)) => alerts,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the alerts left to send");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the alerts left to send");
            Vec::new()
        }
    };
    if !left.is_empty() {
        tracing::info!(
            alerts = left.len(),
            "resuming alerts not yet taken by their receivers"
        );
    }
    let mut waiting: BTreeMap<(Timestamp, AlertId), Alert> = left
        .into_iter()
        .map(|a| ((a.next_attempt_at, a.id.clone()), a))
        .collect();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(Alert, Outcome)>();
    loop {
        let now = Timestamp::now();
        let wait = waiting
            .keys()
            .next()
            .map(|(at, _)| Duration::from_millis(at.millis().saturating_sub(now.millis())))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            batch = new.recv() => match batch {
                Some(alerts) => waiting.extend(alerts.into_iter().map(|a| ((a.next_attempt_at, a.id.clone()), a))),
                None => return,
            },
            Some((alert, outcome)) = done.recv() => {
                let now = Timestamp::now();
                let change = match outcome {
                    Outcome::Taken | Outcome::Orphaned => ops::remove_alert(&alert.id),
                    Outcome::Failed => {
                        let again = alert.failed(now);
                        let op = ops::put_alert(&again);
                        waiting.insert((again.next_attempt_at, again.id.clone()), again);
                        op
                    }
                };
                if let Err(e) = store.commit(vec![change]).await {
                    tracing::error!(error = %e, "cannot record an alert's try");
                }
            }
            _ = tokio::time::sleep(wait) => {
                let now = Timestamp::now();
                while let Some(entry) = waiting.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let alert = entry.remove();
                    let (store, client, done) = (store.clone(), client.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let outcome = send(&store, &client, &alert).await;
                        let _ = done.send((alert, outcome));
                    });
                }
            }
        }
    }
}

async fn send(store: &Store, client: &DeliveryClient, alert: &Alert) -> Outcome {
    let (reader, team, id) = (
        store.clone(),
        alert.team_id.clone(),
        alert.channel_id.clone(),
    );
    let channel = match crate::store::readers::read(move || reader.alert_channel(&team, &id)).await
    {
        Ok(Ok(Some(channel))) => channel,
        Ok(Ok(None)) => return Outcome::Orphaned,
        _ => return Outcome::Failed,
    };
    let Some(signer) = Signer::new(&channel.signing_secret) else {
        tracing::error!(alert_channel_id = %channel.id, "the channel's signing secret is not valid; alert dropped");
        return Outcome::Orphaned;
    };
    let sent = client
        .post_signed(
            &channel.url,
            alert.id.as_str(),
            alert.body.clone(),
            &signer,
            ALERT_TIMEOUT,
        )
        .await;
    match sent {
        Ok(status) if (200..300).contains(&status) => {
            tracing::info!(alert_id = %alert.id, alert_channel_id = %channel.id, alert_type = alert.alert_type.as_str(), "alert sent");
            Outcome::Taken
        }
        Ok(status) => {
            tracing::warn!(alert_id = %alert.id, alert_channel_id = %channel.id, status, attempts = alert.attempts + 1, "alert refused; will retry");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(alert_id = %alert.id, alert_channel_id = %channel.id, error = e.as_str(), attempts = alert.attempts + 1, "alert not delivered; will retry");
            Outcome::Failed
        }
    }
}
