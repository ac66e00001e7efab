//! Ingress routing: a request becomes events, durably, and the deliverable ones reach the
//! actors of their destinations.
//!
//! Two rules keep an accepted event from being stranded:
//! - Everything after the durable commit runs in a task of its own, not in the request's
//!   future: actix-web drops that future when the client hangs up, and a hang-up between the
//!   commit and the hand-off used to leave the event `QUEUED` until the next restart.
//! - Routing, commit and hand-off happen under the read side of the ingest gate, and deletes
//!   take its write side. A delete therefore never runs between an ingest's routing and its
//!   hand-off, so its check for waiting work sees every entry, and every entry is handed to
//!   an actor that is still there. An entry that still finds no actor is cancelled, never left.

use std::sync::Arc;

use tracing::Instrument;

use actix::prelude::SendError;
use bytes::Bytes;

use super::delivery::Payload;
use super::destination_actor::Enqueue;
use super::{Engine, EngineError, Result};
use crate::domain::connection_core::{route, Route};
use crate::domain::dedupe::DedupeClaim;
use crate::domain::destination_core::QueueEntry;
use crate::domain::*;
use crate::store::{ops, StoreError};

/// Where a request comes from: a provider (its source's dedupe applies) or an operator's
/// replay of a stored request (a new request on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    Provider,
    Replay,
}

/// A request taken in: durable, routed to these events.
#[derive(Debug)]
pub struct Ingested {
    pub request_id: RequestId,
    pub event_ids: Vec<EventId>,
    /// A repeat within the source's dedupe window: these are the first request's ids, and
    /// nothing new was stored.
    pub repeat: bool,
}

/// The longest ingress waits for the store's writer to catch up before it answers 503.
const STORE_ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Engine {
    /// Stores a request and the events routed from it, durably, then hands the deliverable
    /// events to their destinations. Returns once everything is on disk.
    pub async fn ingest(
        &self,
        source: &Source,
        method: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        intake: Intake,
    ) -> Result<Ingested> {
        self.store().room(STORE_ROOM_WAIT).await?;
        let gate = self.inner.ingest_gate.clone().read_owned().await;
        let now = Timestamp::now();
        let request_id = RequestId::new();
        // Debug level: off by default, so the hot path pays one level check.
        let span = tracing::debug_span!("ingest", source_id = %source.id, request_id = %request_id);
        // Routing is synchronous: entered until the commit is handed to its task.
        let routing = span.enter();
        let routes: Vec<(Arc<Connection>, bool)> = {
            let reg = self.read();
            reg.by_source
                .get(&source.id)
                .into_iter()
                .flatten()
                .filter_map(|cid| reg.connections.get(cid))
                .map(|h| {
                    let dest_disabled = reg
                        .destinations
                        .get(&h.connection.destination_id)
                        .is_none_or(|d| d.destination.disabled_at.is_some());
                    (h.connection.clone(), dest_disabled)
                })
                .collect()
        };
        let dedupe = match intake {
            Intake::Provider => source.dedupe.as_ref(),
            Intake::Replay => None,
        };
        // The body is parsed once, for the filters and the dedupe identity alike.
        let needs_json = dedupe.is_some_and(|d| d.reads_body())
            || routes
                .iter()
                .any(|(c, _)| c.rules.filter.as_ref().is_some_and(|f| f.body.is_some()));
        let json_body = if needs_json {
            serde_json::from_slice::<serde_json::Value>(&body).ok()
        } else {
            None
        };

        let mut writes = Vec::with_capacity(1 + routes.len() * 2);
        // Each entry, whether it is held, and its destination; numbered at commit.
        let mut entries = Vec::with_capacity(routes.len());
        let mut event_ids = Vec::with_capacity(routes.len());
        for (connection, dest_disabled) in routes {
            let Route::Event { status, due_at } = route(
                &connection,
                dest_disabled,
                json_body.as_ref(),
                &headers,
                now,
            ) else {
                continue;
            };
            let event = Event {
                id: EventId::new(),
                team_id: source.team_id.clone(),
                connection_id: connection.id.clone(),
                source_id: source.id.clone(),
                destination_id: connection.destination_id.clone(),
                request_id: request_id.clone(),
                status,
                attempts: 0,
                next_attempt_at: due_at,
                last_attempt_at: None,
                response_status: None,
                error_code: None,
                dead_lettered_at: None,
                created_at: now,
                updated_at: now,
            };
            let entry = QueueEntry {
                seq: 0,
                event_id: event.id.clone(),
                request_id: request_id.clone(),
                connection_id: connection.id.clone(),
                attempts: 0,
                next_trigger: Trigger::Initial,
                due_at,
                retry: connection.rules.retry,
                created_at: now,
            };
            tracing::debug!(event_id = %event.id, connection_id = %connection.id, destination_id = %connection.destination_id, status = status.as_str(), "routed");
            writes.push(ops::put_event(&event));
            writes.extend(ops::index_event(&event));
            let held = status == EventStatus::Hold;
            entries.push((held, connection.destination_id.clone(), entry));
            event_ids.push(event.id);
        }
        // First, so that a repeat fails the commit before its body is staged.
        let identity = dedupe.and_then(|rule| {
            rule.identity(&headers, json_body.as_ref())
                .map(|identity| (identity, rule.window_ms()))
        });
        if let Some((identity, window_ms)) = identity {
            let claim = DedupeClaim {
                request_id: request_id.clone(),
                event_ids: event_ids.clone(),
                at: now,
            };
            writes.insert(
                0,
                ops::claim_dedupe(&source.id, &identity, claim, window_ms),
            );
        }
        let request = Request {
            id: request_id.clone(),
            team_id: source.team_id.clone(),
            source_id: source.id.clone(),
            method,
            headers,
            body,
            rejection_cause: None,
            event_ids: event_ids.clone(),
            created_at: now,
            updated_at: now,
        };
        let payload = entries
            .iter()
            .any(|(held, ..)| !held)
            .then(|| Arc::new(Payload::new(&request.headers, request.body.clone())));
        writes.push(ops::put_request(request));

        // From here on nothing may depend on the client still being connected.
        let engine = self.clone();
        let team = source.team_id.clone();
        let committed = actix::spawn(
            async move {
                let mut entries = entries;
                // Sequence numbers are drawn as the commit goes to the writer, so they reach it
                // in order: a destination's queue records never overlap.
                engine
                    .store()
                    .commit_numbered(|next_seq| {
                        for (held, destination, entry) in &mut entries {
                            entry.seq = next_seq();
                            writes.push(if *held {
                                ops::put_hold(&entry.connection_id, entry)
                            } else {
                                ops::enqueue(destination, entry)
                            });
                        }
                        writes
                    })
                    .await?;
                let forwards = entries
                    .into_iter()
                    .filter(|(held, ..)| !held)
                    .map(|(_, destination, entry)| (destination, entry))
                    .collect();
                engine.hand_off(&team, forwards, payload).await;
                drop(gate);
                Ok::<_, EngineError>(())
            }
            .instrument(span.clone()),
        );
        drop(routing);
        let outcome = committed
            .await
            .map_err(|e| EngineError::Unavailable(format!("ingest task: {e}")))?;
        match outcome {
            Ok(()) => Ok(Ingested {
                request_id,
                event_ids,
                repeat: false,
            }),
            Err(EngineError::Store(StoreError::Duplicate {
                request_id,
                event_ids,
            })) => Ok(Ingested {
                request_id,
                event_ids,
                repeat: true,
            }),
            Err(e) => Err(e),
        }
    }

    /// Gives durable entries to their destinations' actors, looked up now (after the commit),
    /// with their body when it is at hand (the actor reads it from the store otherwise).
    async fn hand_off(
        &self,
        team: &TeamId,
        forwards: Vec<(DestinationId, QueueEntry)>,
        payload: Option<Arc<Payload>>,
    ) {
        for (destination, entry) in forwards {
            self.hand_to(team, &destination, vec![entry], payload.clone())
                .await;
        }
    }

    /// Gives durable entries of one destination to its actor. Entries whose actor is gone
    /// are cancelled, never left.
    pub(super) async fn hand_to(
        &self,
        team: &TeamId,
        destination: &DestinationId,
        entries: Vec<QueueEntry>,
        payload: Option<Arc<Payload>>,
    ) {
        let addr = self
            .read()
            .destinations
            .get(destination)
            .map(|h| h.addr.clone());
        let enqueue = Enqueue { entries, payload };
        // The common case costs no round trip; a full mailbox makes the sender wait
        // (backpressure) instead of growing an unbounded queue.
        let lost = match addr {
            None => Some(enqueue.entries),
            Some(addr) => match addr.try_send(enqueue) {
                Ok(()) => None,
                Err(SendError::Full(enqueue)) => {
                    let entries = enqueue.entries.clone();
                    addr.send(enqueue).await.err().map(|_| entries)
                }
                Err(SendError::Closed(enqueue)) => Some(enqueue.entries),
            },
        };
        if let Some(entries) = lost {
            tracing::error!(
                destination_id = %destination,
                events = entries.len(),
                "the destination of accepted events is gone; they are cancelled"
            );
            let now = Timestamp::now();
            let writes = entries
                .iter()
                .flat_map(|e| ops::cancel_queued(team, destination, e, now))
                .collect();
            self.store().submit(writes);
        }
    }

    /// Keeps a rejected request (no events) so operators can see what was refused.
    pub async fn reject(
        &self,
        source: &Source,
        method: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        cause: RejectionCause,
    ) -> Result<RequestId> {
        self.store().room(STORE_ROOM_WAIT).await?;
        let now = Timestamp::now();
        let request = Request {
            id: RequestId::new(),
            team_id: source.team_id.clone(),
            source_id: source.id.clone(),
            method,
            headers,
            body,
            rejection_cause: Some(cause),
            event_ids: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let id = request.id.clone();
        self.store().commit(vec![ops::put_request(request)]).await?;
        Ok(id)
    }
}
