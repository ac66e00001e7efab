//! `/v1/connections`: routes from a source to a destination, with rules (retry, filter,
//! delay) and the pause/disable state of the branch.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, check_name, QueryParams};
use super::openapi::{ApiErrors, Deleted, ListOut, ListParams};
use crate::domain::rate_limiter::RateLimit;
use crate::domain::rules::{Filter, JsonValue, RetryPolicy, RetryStrategy, Rules};
use crate::domain::*;
use crate::engine::Engine;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionIn {
    name: String,
    source_id: String,
    destination_id: String,
    #[serde(default)]
    rules: Option<Vec<RuleIn>>,
    /// Set: paused since then (new events are held). `null` unpauses and drains, like
    /// `PUT .../unpause`.
    #[serde(default)]
    paused_at: Option<Timestamp>,
}

/// The wire form of one rule: at most one of each type.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleIn {
    /// Automatic retries: `count` of them (at most 10000), `interval` ms apart (linear) or
    /// doubling from it (exponential).
    Retry {
        strategy: RetryStrategy,
        count: u32,
        interval: u64,
    },
    /// Only requests whose body and headers match these JSON patterns become events.
    Filter {
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        body: Option<serde_json::Value>,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        headers: Option<serde_json::Value>,
    },
    /// The first attempt waits `delay` ms (at most 86400000).
    Delay { delay: u64 },
}

pub fn rules_from_wire(list: Vec<RuleIn>) -> Result<Rules, ApiError> {
    let mut rules = Rules::default();
    let (mut retry, mut filter, mut delay) = (false, false, false);
    for (i, rule) in list.into_iter().enumerate() {
        let field = format!("rules[{i}]");
        match rule {
            RuleIn::Retry {
                strategy,
                count,
                interval,
            } => {
                if std::mem::replace(&mut retry, true) {
                    return Err(ApiError::validation(
                        &field,
                        "only one retry rule is allowed",
                    ));
                }
                if count > 10_000 {
                    return Err(ApiError::validation(
                        &format!("{field}.count"),
                        "must be at most 10000",
                    ));
                }
                if !(1..=86_400_000).contains(&interval) {
                    return Err(ApiError::validation(
                        &format!("{field}.interval"),
                        "must be from 1 to 86400000 ms",
                    ));
                }
                rules.retry = RetryPolicy {
                    strategy,
                    count,
                    interval_ms: interval,
                };
            }
            RuleIn::Filter { body, headers } => {
                if std::mem::replace(&mut filter, true) {
                    return Err(ApiError::validation(
                        &field,
                        "only one filter rule is allowed",
                    ));
                }
                if body.is_none() && headers.is_none() {
                    return Err(ApiError::validation(
                        &field,
                        "a filter needs `body` or `headers`",
                    ));
                }
                if headers.as_ref().is_some_and(|h| !h.is_object()) {
                    return Err(ApiError::validation(
                        &format!("{field}.headers"),
                        "must be an object",
                    ));
                }
                rules.filter = Some(Filter {
                    body: body.map(JsonValue),
                    headers: headers.map(JsonValue),
                });
            }
            RuleIn::Delay { delay: ms } => {
                if std::mem::replace(&mut delay, true) {
                    return Err(ApiError::validation(
                        &field,
                        "only one delay rule is allowed",
                    ));
                }
                if ms > 86_400_000 {
                    return Err(ApiError::validation(
                        &format!("{field}.delay"),
                        "must be at most 86400000 ms",
                    ));
                }
                rules.delay_ms = Some(ms);
            }
        }
    }
    Ok(rules)
}

pub fn rules_to_wire(rules: &Rules) -> Vec<RuleIn> {
    let mut out = vec![RuleIn::Retry {
        strategy: rules.retry.strategy,
        count: rules.retry.count,
        interval: rules.retry.interval_ms,
    }];
    if let Some(f) = &rules.filter {
        out.push(RuleIn::Filter {
            body: f.body.clone().map(|v| v.0),
            headers: f.headers.clone().map(|v| v.0),
        });
    }
    if let Some(delay) = rules.delay_ms {
        out.push(RuleIn::Delay { delay });
    }
    out
}

fn build(
    engine: &Engine,
    input: ConnectionIn,
    existing: Option<&Connection>,
    team: &TeamId,
) -> Result<Connection, ApiError> {
    let now = Timestamp::now();
    let source_id =
        SourceId::parse(&input.source_id).map_err(|e| ApiError::validation("source_id", e))?;
    let destination_id = DestinationId::parse(&input.destination_id)
        .map_err(|e| ApiError::validation("destination_id", e))?;
    if let Some(c) = existing {
        if c.source_id != source_id {
            return Err(ApiError::validation(
                "source_id",
                "cannot be changed; create a new connection",
            ));
        }
        if c.destination_id != destination_id {
            return Err(ApiError::validation(
                "destination_id",
                "cannot be changed; create a new connection",
            ));
        }
    }
    if engine.source(&source_id).is_none_or(|s| &s.team_id != team) {
        return Err(ApiError::validation("source_id", "no such source"));
    }
    if engine
        .destination(&destination_id)
        .is_none_or(|d| &d.team_id != team)
    {
        return Err(ApiError::validation(
            "destination_id",
            "no such destination",
        ));
    }
    Ok(Connection {
        id: existing.map_or_else(ConnectionId::new, |c| c.id.clone()),
        team_id: team.clone(),
        name: check_name("name", &input.name)?,
        source_id,
        destination_id,
        rules: rules_from_wire(input.rules.unwrap_or_default())?,
        paused_at: input.paused_at,
        disabled_at: existing.and_then(|c| c.disabled_at),
        created_at: existing.map_or(now, |c| c.created_at),
        updated_at: now,
    })
}

/// A connection as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionOut {
    id: ConnectionId,
    team_id: TeamId,
    name: String,
    source_id: SourceId,
    destination_id: DestinationId,
    rules: Vec<RuleIn>,
    /// Set while paused: new events are held (`HOLD`).
    paused_at: Option<Timestamp>,
    /// Set while disabled: no events at all.
    disabled_at: Option<Timestamp>,
    /// Its events `HOLD` now: what an unpause will release.
    held_count: u64,
    /// Its events `FAILED` now.
    failed_count: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// The connection with its live backlog, read from the store's running tally (no scan).
pub fn render(engine: &Engine, c: &Connection) -> ConnectionOut {
    let backlog = engine.store().tally().get(&c.id);
    ConnectionOut {
        id: c.id.clone(),
        team_id: c.team_id.clone(),
        name: c.name.clone(),
        source_id: c.source_id.clone(),
        destination_id: c.destination_id.clone(),
        rules: rules_to_wire(&c.rules),
        paused_at: c.paused_at,
        disabled_at: c.disabled_at,
        held_count: backlog.hold,
        failed_count: backlog.failed,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn input_form(c: &Connection) -> serde_json::Value {
    serde_json::to_value(ConnectionIn {
        name: c.name.clone(),
        source_id: c.source_id.to_string(),
        destination_id: c.destination_id.to_string(),
        rules: Some(rules_to_wire(&c.rules)),
        paused_at: c.paused_at,
    })
    .unwrap_or_default()
}

fn owned(engine: &Engine, auth: &Auth, id: &str) -> Result<std::sync::Arc<Connection>, ApiError> {
    let id = ConnectionId::parse(id).map_err(|_| ApiError::NotFound("connection"))?;
    engine
        .connection(&id)
        .filter(|c| c.team_id == auth.team)
        .ok_or(ApiError::NotFound("connection"))
}

#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = ConnectionIn,
    responses((status = 200, description = "The new connection", body = ConnectionOut), ApiErrors))]
pub(super) async fn create(
    engine: web::Data<Engine>,
    auth: Auth,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let connection = build(&engine, json::parse(&body)?, None, &auth.team)?;
    engine.save_connection(connection.clone(), None).await?;
    Ok(HttpResponse::Ok().json(render(&engine, &connection)))
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    params(ListParams,
        ("source_id" = Option<String>, Query, description = "Only this source's (src_…)"),
        ("destination_id" = Option<String>, Query, description = "Only this destination's (des_…)"),
        ("paused" = Option<bool>, Query, description = "Only paused (true) or unpaused (false) ones"),
        ("disabled" = Option<bool>, Query, description = "Only disabled (true) or enabled (false) ones")),
    responses((status = 200, description = "A page of connections", body = ListOut<ConnectionOut>), ApiErrors))]
pub(super) async fn list(
    engine: web::Data<Engine>,
    auth: Auth,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["source_id", "destination_id", "paused", "disabled"])?;
    let q = params.list_query(&auth.team)?;
    let source = params.id("source_id", SourceId::parse)?;
    let destination = params.id("destination_id", DestinationId::parse)?;
    let paused = params.bool("paused")?;
    let disabled = params.bool("disabled")?;
    let page = engine.store().list_connections(&q, |c| {
        source.as_ref().is_none_or(|s| &c.source_id == s)
            && destination.as_ref().is_none_or(|d| &c.destination_id == d)
            && paused.is_none_or(|p| p == c.paused_at.is_some())
            && disabled.is_none_or(|d| d == c.disabled_at.is_some())
    })?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |c| render(&engine, &c))))
}

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    responses((status = 200, description = "The connection", body = ConnectionOut), ApiErrors))]
pub(super) async fn get(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(render(&engine, &*owned(&engine, &auth, &id)?)))
}

#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    request_body(content = ConnectionIn, description = "Only the fields named change; the rest stay as they are"),
    responses((status = 200, description = "The connection as changed", body = ConnectionOut), ApiErrors))]
pub(super) async fn update(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    let connection = build(
        &engine,
        json::merge_patch(input_form(&current), &body)?,
        Some(&current),
        &auth.team,
    )?;
    engine.save_connection(connection.clone(), None).await?;
    Ok(HttpResponse::Ok().json(render(&engine, &connection)))
}

#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's id (web_…)"),
        ("cancel_events" = Option<bool>, Query, description = "Cancel its held and waiting events (CANCELLED); without it a connection with such work is refused with 409")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors))]
pub(super) async fn delete(
    engine: web::Data<Engine>,
    auth: Auth,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only(&["cancel_events"])?;
    let cancel = params.bool("cancel_events")?.unwrap_or(false);
    let current = owned(&engine, &auth, &id)?;
    engine.delete_connection(&current.id, cancel).await?;
    Ok(HttpResponse::Ok().json(Deleted {
        id: current.id.to_string(),
    }))
}

/// The optional body of an unpause: how fast the held backlog may be released.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UnpauseIn {
    /// At most this many held events released per `drain_rate_period` (new events keep the
    /// destination's own limit).
    #[serde(default)]
    drain_rate: Option<u32>,
    #[serde(default)]
    drain_rate_period: Option<RatePeriod>,
}

impl UnpauseIn {
    fn rate(&self) -> Result<Option<RateLimit>, ApiError> {
        match (self.drain_rate, self.drain_rate_period) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ApiError::validation(
                "drain_rate",
                "is required with drain_rate_period",
            )),
            (Some(0), _) => Err(ApiError::validation("drain_rate", "must be at least 1")),
            (Some(rate), period) => Ok(Some(RateLimit {
                rate,
                period_ms: period.unwrap_or(RatePeriod::Second).millis(),
            })),
        }
    }
}

/// Pausing a paused connection keeps its first `paused_at`. A disabled connection cannot be
/// paused: it routes nothing, so there is nothing to hold.
#[utoipa::path(put, path = "/v1/connections/{id}/pause", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    responses((status = 200, description = "Paused (a second pause keeps the first paused_at); new events are held", body = ConnectionOut), ApiErrors))]
pub(super) async fn pause(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut connection = (*owned(&engine, &auth, &id)?).clone();
    if connection.disabled_at.is_some() {
        return Err(ApiError::Conflict {
            code: "CONNECTION_DISABLED",
            message: "the connection is disabled; enable it first".into(),
        });
    }
    if connection.paused_at.is_none() {
        let now = Timestamp::now();
        connection.paused_at = Some(now);
        connection.updated_at = now;
        engine.save_connection(connection.clone(), None).await?;
    }
    Ok(HttpResponse::Ok().json(render(&engine, &connection)))
}

/// Clears `paused_at`; the held events are released in the order they were accepted, no
/// faster than the body's `drain_rate` when it has one.
#[utoipa::path(put, path = "/v1/connections/{id}/unpause", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    request_body(content = Option<UnpauseIn>, description = "Optional: a drain rate for the held backlog"),
    responses((status = 200, description = "Unpaused; the held events drain in order (trigger UNPAUSE)", body = ConnectionOut), ApiErrors))]
pub(super) async fn unpause(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let input: UnpauseIn = if body.0.iter().all(u8::is_ascii_whitespace) {
        UnpauseIn::default()
    } else {
        json::parse(&body)?
    };
    let rate = input.rate()?;
    let mut connection = (*owned(&engine, &auth, &id)?).clone();
    if connection.paused_at.is_some() || rate.is_some() {
        connection.paused_at = None;
        connection.updated_at = Timestamp::now();
        engine.save_connection(connection.clone(), rate).await?;
    }
    Ok(HttpResponse::Ok().json(render(&engine, &connection)))
}

/// Disabling clears `paused_at` too (a disabled branch builds no held work); held events
/// already stored stay `HOLD`. Enabling clears `disabled_at`.
async fn set_disabled(
    engine: &Engine,
    auth: &Auth,
    id: &str,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    let mut connection = (*owned(engine, auth, id)?).clone();
    let now = Timestamp::now();
    connection.disabled_at = toggled(connection.disabled_at, disabled, now);
    if disabled {
        connection.paused_at = None;
    }
    connection.updated_at = now;
    engine.save_connection(connection.clone(), None).await?;
    Ok(HttpResponse::Ok().json(render(engine, &connection)))
}

#[utoipa::path(put, path = "/v1/connections/{id}/disable", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    responses((status = 200, description = "The connection", body = ConnectionOut), ApiErrors))]
pub(super) async fn disable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, true).await
}

#[utoipa::path(put, path = "/v1/connections/{id}/enable", tag = "connections", params(("id" = String, Path, description = "The connection's id (web_…)")),
    responses((status = 200, description = "The connection", body = ConnectionOut), ApiErrors))]
pub(super) async fn enable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, false).await
}

pub fn routes(r: &mut super::Routes) {
    r.post("/v1/connections", create)
        .get("/v1/connections", list)
        .get("/v1/connections/{id}", get)
        .patch("/v1/connections/{id}", update)
        .delete("/v1/connections/{id}", delete)
        .put("/v1/connections/{id}/pause", pause)
        .put("/v1/connections/{id}/unpause", unpause)
        .put("/v1/connections/{id}/disable", disable)
        .put("/v1/connections/{id}/enable", enable);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_round_trip_through_the_wire_form() {
        let wire: Vec<RuleIn> = serde_json::from_value(json!([
            {"type": "retry", "strategy": "linear", "count": 3, "interval": 200},
            {"type": "filter", "body": {"type": "a"}},
            {"type": "delay", "delay": 50}
        ]))
        .unwrap();
        let rules = rules_from_wire(wire).unwrap();
        assert_eq!(
            rules.retry,
            RetryPolicy {
                strategy: RetryStrategy::Linear,
                count: 3,
                interval_ms: 200
            }
        );
        assert_eq!(rules.delay_ms, Some(50));
        assert_eq!(rules_from_wire(rules_to_wire(&rules)).unwrap(), rules);
    }

    #[test]
    fn bad_rules_name_the_rule() {
        let two: Vec<RuleIn> = serde_json::from_value(
            json!([{"type": "delay", "delay": 1}, {"type": "delay", "delay": 2}]),
        )
        .unwrap();
        let e = rules_from_wire(two).unwrap_err().to_string();
        assert!(e.starts_with("rules[1]"), "{e}");
        assert!(serde_json::from_value::<Vec<RuleIn>>(
            json!([{"type": "retry", "strategy": "linear", "count": 1, "interval": 1, "x": 1}])
        )
        .is_err());
    }
}
