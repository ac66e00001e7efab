//! Retries an operator asks for (`POST /v1/events/:id/retry`): a new attempt of a finished
//! event, now, through the destination's queue like any other; held instead while its
//! connection is paused or disabled.

use super::{Engine, EngineError, Result};
use crate::domain::destination_core::QueueEntry;
use crate::domain::*;
use crate::store::{ops, Op};

impl Engine {
    /// Puts a finished event (delivered, failed or dead-lettered, cancelled) back in its
    /// destination's queue with `trigger`, or on hold if its connection is not active. An
    /// event that is waiting already (queued, scheduled, held) is refused: it has an attempt
    /// coming. `also` is committed with the retry, atomically (a bulk job's progress).
    /// Returns the event as it now is.
    pub async fn retry_event(
        &self,
        team: &TeamId,
        id: &EventId,
        trigger: Trigger,
        also: Vec<Op>,
    ) -> Result<Event> {
        // Like ingress: a delete or a pause never runs between the check and the hand-off.
        let _gate = self.inner.ingest_gate.clone().read_owned().await;
        let (t, i) = (team.clone(), id.clone());
        let mut event = self
            .store()
            .read_applied(move |s| s.event(&t, &i))
            .await?
            .ok_or(EngineError::NotFound("event"))?;
        match event.status {
            EventStatus::Hold => {
                return Err(EngineError::Refused {
                    code: "EVENT_ON_HOLD",
                    message: "the event is held: its connection is paused; unpause the connection to deliver it".into(),
                })
            }
            EventStatus::Queued | EventStatus::Scheduled => {
                return Err(EngineError::Refused {
                    code: "EVENT_QUEUED",
                    message: "the event is waiting for an attempt already".into(),
                })
            }
            EventStatus::Successful | EventStatus::Failed | EventStatus::Cancelled => {}
        }
        let connection =
            self.connection(&event.connection_id)
                .ok_or_else(|| EngineError::Refused {
                    code: "CONNECTION_DELETED",
                    message: "the event's connection was deleted; nothing would deliver it".into(),
                })?;
        if self.destination(&event.destination_id).is_none() {
            return Err(EngineError::Refused {
                code: "DESTINATION_DELETED",
                message: "the event's destination was deleted".into(),
            });
        }
        let held = connection.paused_at.is_some() || connection.disabled_at.is_some();
        let now = Timestamp::now();
        let mut entry = QueueEntry {
            seq: 0,
            event_id: event.id.clone(),
            request_id: event.request_id.clone(),
            connection_id: connection.id.clone(),
            // Attempt numbers go on from the last one.
            attempts: event.attempts,
            next_trigger: trigger,
            due_at: None,
            retry: connection.rules.retry,
            // The retry window (`max_event_age`) starts again with the retry.
            created_at: now,
        };
        let patch = EventPatch {
            status: Some(if held {
                EventStatus::Hold
            } else {
                EventStatus::Queued
            }),
            next_attempt_at: Some(None),
            dead_lettered_at: Some(None),
            updated_at: now,
            ..Default::default()
        };
        patch.apply(&mut event);
        self.store()
            .commit_numbered(|next_seq| {
                entry.seq = next_seq();
                let mut writes = vec![
                    ops::patch_event(team, id, patch),
                    if held {
                        ops::put_hold(&connection.id, &entry)
                    } else {
                        ops::enqueue(&connection.destination_id, &entry)
                    },
                ];
                writes.extend(also);
                writes
            })
            .await?;
        if !held {
            self.hand_to(team, &connection.destination_id, vec![entry], None)
                .await;
        }
        Ok(event)
    }
}
