//! The decisions of one connection, free of IO: whether a routed request becomes an event,
//! and whether that event is delivered now, later (delay rule) or held (paused).

use super::models::{Connection, EventStatus};
use super::time::Timestamp;

/// What routing does with one request for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// No event: the connection or its destination is disabled, or the filter did not match.
    Skip,
    /// An event is created with this status; `due_at` is set for `SCHEDULED`.
    Event {
        status: EventStatus,
        due_at: Option<Timestamp>,
    },
}

/// The state a connection actor owns: what the connection looks like now.
#[derive(Debug, Clone)]
pub struct ConnectionCore {
    pub connection: Connection,
}

impl ConnectionCore {
    pub fn new(connection: Connection) -> Self {
        ConnectionCore { connection }
    }

    pub fn is_paused(&self) -> bool {
        self.connection.paused_at.is_some()
    }

    /// Routes one request. `body` is the parsed JSON body when there is one.
    pub fn route(
        &self,
        destination_disabled: bool,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
        now: Timestamp,
    ) -> Route {
        route(&self.connection, destination_disabled, body, headers, now)
    }
}

/// The routing decision for one connection, as a free function so ingress can apply it to
/// the registry's copy of the connection without cloning it.
pub fn route(
    c: &Connection,
    destination_disabled: bool,
    body: Option<&serde_json::Value>,
    headers: &[(String, String)],
    now: Timestamp,
) -> Route {
    {
        if c.disabled_at.is_some() || destination_disabled {
            return Route::Skip;
        }
        if let Some(filter) = &c.rules.filter {
            if !filter.matches(body, headers) {
                return Route::Skip;
            }
        }
        if c.paused_at.is_some() {
            return Route::Event {
                status: EventStatus::Hold,
                due_at: None,
            };
        }
        match c.rules.delay_ms {
            Some(delay) if delay > 0 => Route::Event {
                status: EventStatus::Scheduled,
                due_at: Some(now.plus_ms(delay)),
            },
            _ => Route::Event {
                status: EventStatus::Queued,
                due_at: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::*;
    use crate::domain::rules::{Filter, JsonValue, Rules};
    use serde_json::json;

    fn connection() -> Connection {
        Connection {
            id: ConnectionId::new(),
            team_id: TeamId::new(),
            name: "c".into(),
            source_id: SourceId::new(),
            destination_id: DestinationId::new(),
            rules: Rules::default(),
            paused_at: None,
            disabled_at: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn active_connections_queue_and_delay_rules_schedule() {
        let mut core = ConnectionCore::new(connection());
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Queued,
                due_at: None
            }
        );
        core.connection.rules.delay_ms = Some(5_000);
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Scheduled,
                due_at: Some(Timestamp(5_010))
            }
        );
    }

    #[test]
    fn paused_holds_disabled_skips_filter_gates() {
        let mut core = ConnectionCore::new(connection());
        core.connection.paused_at = Some(Timestamp(1));
        assert_eq!(
            core.route(false, None, &[], Timestamp(10)),
            Route::Event {
                status: EventStatus::Hold,
                due_at: None
            }
        );
        assert_eq!(
            core.route(true, None, &[], Timestamp(10)),
            Route::Skip,
            "disabled destination"
        );
        core.connection.disabled_at = Some(Timestamp(2));
        assert_eq!(core.route(false, None, &[], Timestamp(10)), Route::Skip);
        let mut core = ConnectionCore::new(connection());
        core.connection.rules.filter = Some(Filter {
            body: Some(JsonValue(json!({"type": "a"}))),
            headers: None,
        });
        assert_eq!(
            core.route(false, Some(&json!({"type": "b"})), &[], Timestamp(0)),
            Route::Skip
        );
        assert!(matches!(
            core.route(false, Some(&json!({"type": "a"})), &[], Timestamp(0)),
            Route::Event { .. }
        ));
    }
}
