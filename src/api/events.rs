//! Read APIs for what flowed: `/v1/events`, `/v1/attempts`, `/v1/requests`.

use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeMap;

use serde::Serialize;

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, QueryParams};
use super::openapi::{ApiErrors, ListOut, ListParams, Pagination, SortDir};
use crate::domain::*;
use crate::engine::{Engine, Intake};
use crate::store::EventScope;

/// A body exactly as it came, and how it is written: `json` (the parsed document), `text`
/// (UTF-8 that is not JSON), or `base64` (anything else, byte for byte: a replacement
/// character would hide what the provider sent).
pub fn render_body(body: &[u8]) -> (serde_json::Value, BodyEncoding) {
    use base64::Engine as _;
    if let Ok(value) = serde_json::from_slice(body) {
        return (value, BodyEncoding::Json);
    }
    match std::str::from_utf8(body) {
        Ok(text) => (
            serde_json::Value::String(text.to_owned()),
            BodyEncoding::Text,
        ),
        Err(_) => (
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            BodyEncoding::Base64,
        ),
    }
}

/// How a stored body is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body is a JSON document, shown as parsed.
    Json,
    /// UTF-8 text that is not JSON.
    Text,
    /// Anything else, byte for byte.
    Base64,
}

fn render_headers(headers: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (k, v) in headers {
        // Repeated headers are joined as HTTP allows.
        match map.get_mut(k) {
            Some(existing) => {
                existing.push_str(", ");
                existing.push_str(v);
            }
            None => {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    map
}

/// A request's headers and body as they came.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestData {
    /// Lower-case names; repeated headers joined with `, `.
    headers: BTreeMap<String, String>,
    /// The body: the JSON document, or text (`encoding` says which).
    #[schema(value_type = Object)]
    body: serde_json::Value,
    encoding: BodyEncoding,
}

fn request_data(r: &Request) -> RequestData {
    let (body, encoding) = render_body(&r.body);
    RequestData {
        headers: render_headers(&r.headers),
        body,
        encoding,
    }
}

/// A request as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestOut {
    id: RequestId,
    team_id: TeamId,
    source_id: SourceId,
    method: String,
    #[serde(flatten)]
    data: RequestData,
    /// Set when ingress refused it (no events were made).
    rejection_cause: Option<RejectionCause>,
    event_ids: Vec<EventId>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

pub fn render_request(r: &Request) -> RequestOut {
    RequestOut {
        id: r.id.clone(),
        team_id: r.team_id.clone(),
        source_id: r.source_id.clone(),
        method: r.method.clone(),
        data: request_data(r),
        rejection_cause: r.rejection_cause,
        event_ids: r.event_ids.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// An event with the request it came from (`data`: null once the request is gone).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    event: Event,
    data: Option<RequestData>,
}

/// A replayed request: the new request and its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayOut {
    request_id: RequestId,
    event_ids: Vec<EventId>,
    /// The request replayed.
    replay_of: RequestId,
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(ListParams,
        ("connection_id" = Option<String>, Query, description = "Only this connection's (web_…)"),
        ("destination_id" = Option<String>, Query, description = "Only this destination's (des_…)"),
        ("source_id" = Option<String>, Query, description = "Only this source's (src_…)"),
        ("request_id" = Option<String>, Query, description = "Only this request's (req_…)"),
        ("status" = Option<Vec<EventStatus>>, Query, description = "Only these statuses; repeatable (`status=HOLD&status=FAILED`)"),
        ("created_at[gte]" = Option<String>, Query, description = "Created at or after (RFC 3339)"),
        ("created_at[lte]" = Option<String>, Query, description = "Created at or before (RFC 3339)"),
        ("dead_lettered" = Option<bool>, Query, description = "Only dead-lettered (true) or not (false)")),
    responses((status = 200, description = "A page of events", body = ListOut<Event>), ApiErrors))]
pub(super) async fn list_events(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&[
        "connection_id",
        "destination_id",
        "source_id",
        "request_id",
        "status",
        "status[]",
        "created_at[gte]",
        "created_at[lte]",
        "dead_lettered",
    ])?;
    let q = params.list_query(&auth.team)?;
    let connection = params.id("connection_id", ConnectionId::parse)?;
    let destination = params.id("destination_id", DestinationId::parse)?;
    let source = params.id("source_id", SourceId::parse)?;
    let request = params.id("request_id", RequestId::parse)?;
    let statuses = params
        .all("status")
        .into_iter()
        .map(|s| {
            EventStatus::parse(s).ok_or_else(|| {
                ApiError::validation("status", format!("`{s}` is not an event status"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gte = params.timestamp("created_at[gte]")?;
    let lte = params.timestamp("created_at[lte]")?;
    let dead = params.bool("dead_lettered")?;
    // Dead-lettered events are FAILED ones: the index finds them.
    let mut wanted = statuses;
    if dead == Some(true) && wanted.is_empty() {
        wanted.push(EventStatus::Failed);
    }
    let scope = EventScope {
        request,
        statuses: wanted,
        connection,
        destination,
        source,
        created_gte: gte,
        created_lte: lte,
    };
    let narrowed = scope.clone();
    let keep =
        move |e: &Event| scope.admits(e) && dead.is_none_or(|d| d == e.dead_lettered_at.is_some());
    // Off the HTTP worker: a filtered walk of many events may take a while.
    let (store, query) = (engine.store().clone(), q.clone());
    let page = crate::store::readers::read(move || store.list_events(&query, &narrowed, keep))
        .await
        .map_err(|e| ApiError::Internal(format!("event list: {e}")))??;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |e| e)))
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id (evt_…)")),
    responses((status = 200, description = "The event, with its request's headers and body", body = EventDetail), ApiErrors))]
pub(super) async fn get_event(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = EventId::parse(&id).map_err(|_| ApiError::NotFound("event"))?;
    let event = engine
        .store()
        .event(&auth.team, &id)?
        .ok_or(ApiError::NotFound("event"))?;
    let data = engine
        .store()
        .request(&auth.team, &event.request_id)?
        .map(|r| request_data(&r));
    Ok(HttpResponse::Ok().json(EventDetail { event, data }))
}

/// A `MANUAL` attempt of a finished event; held if its connection is paused.
#[utoipa::path(post, path = "/v1/events/{id}/retry", tag = "events",
    params(("id" = String, Path, description = "The event's id (evt_…)")),
    responses((status = 200, description = "The event, QUEUED for a MANUAL attempt (HOLD if its connection is paused); 409 EVENT_ON_HOLD for a held one", body = Event), ApiErrors))]
pub(super) async fn retry_event(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = EventId::parse(&id).map_err(|_| ApiError::NotFound("event"))?;
    let event = engine
        .retry_event(&auth.team, &id, Trigger::Manual, Vec::new())
        .await?;
    Ok(HttpResponse::Ok().json(event))
}

#[utoipa::path(get, path = "/v1/attempts", tag = "events",
    params(ListParams, ("event_id" = String, Query, description = "The event's id (evt_…); required")),
    responses((status = 200, description = "The event's attempts, first first unless dir=desc", body = ListOut<Attempt>), ApiErrors))]
pub(super) async fn list_attempts(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["event_id"])?;
    let q = params.list_query(&auth.team)?;
    let Some(event) = params.id("event_id", EventId::parse)? else {
        return Err(ApiError::validation("event_id", "is required"));
    };
    // In attempt order unless asked otherwise: an event's story reads forwards.
    let asc = params.get("dir") != Some("desc");
    // The event must be the team's: another team's event answers an empty list.
    let mut attempts = engine.store().attempts(&auth.team, &event)?;
    if !asc {
        attempts.reverse();
    }
    let start = match &q.cursor {
        None => 0,
        Some(cursor) => attempts
            .iter()
            .position(|a| a.id.as_str() == cursor)
            .map(|i| i + 1)
            .ok_or_else(|| ApiError::validation("next", "is not a cursor from a previous page"))?,
    };
    let rest = &attempts[start..];
    let page = &rest[..rest.len().min(q.limit)];
    let next = (rest.len() > page.len()).then(|| page.last().map(|a| a.id.to_string()));
    Ok(HttpResponse::Ok().json(ListOut {
        count: page.len(),
        models: page.to_vec(),
        pagination: Pagination {
            limit: q.limit,
            next: next.flatten(),
            dir: if asc { SortDir::Asc } else { SortDir::Desc },
        },
    }))
}

#[utoipa::path(get, path = "/v1/requests", tag = "events",
    params(ListParams,
        ("source_id" = Option<String>, Query, description = "Only this source's (src_…)"),
        ("rejected" = Option<bool>, Query, description = "Only rejected (true) or accepted (false) requests")),
    responses((status = 200, description = "A page of requests", body = ListOut<RequestOut>), ApiErrors))]
pub(super) async fn list_requests(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["source_id", "rejected"])?;
    let q = params.list_query(&auth.team)?;
    let source = params.id("source_id", SourceId::parse)?;
    let rejected = params.bool("rejected")?;
    let page = engine.store().list_requests(&q, |r| {
        source.as_ref().is_none_or(|s| &r.source_id == s)
            && rejected.is_none_or(|x| x == r.rejection_cause.is_some())
    })?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |r| render_request(&r))))
}

/// The team's request named by `id` (with its body), or 404.
fn owned_request(engine: &Engine, auth: &Auth, id: &str) -> Result<Request, ApiError> {
    let id = RequestId::parse(id).map_err(|_| ApiError::NotFound("request"))?;
    engine
        .store()
        .request(&auth.team, &id)?
        .ok_or(ApiError::NotFound("request"))
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "events",
    params(("id" = String, Path, description = "The request's id (req_…)")),
    responses((status = 200, description = "The request with its headers and body", body = RequestOut), ApiErrors))]
pub(super) async fn get_request(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request = owned_request(&engine, &auth, &id)?;
    Ok(HttpResponse::Ok().json(render_request(&request)))
}

/// Replays a stored request through the routing of now: new events, for the connections
/// its source has today, under a new request (`replay_of` names the original). A request
/// that was rejected (a failed signature, say) is not replayed.
#[utoipa::path(post, path = "/v1/requests/{id}/retry", tag = "events",
    params(("id" = String, Path, description = "The request's id (req_…)")),
    responses((status = 200, description = "Replayed through today's connections: a new request and new events", body = ReplayOut), ApiErrors))]
pub(super) async fn retry_request(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request = owned_request(&engine, &auth, &id)?;
    let id = request.id.clone();
    if request.rejection_cause.is_some() {
        return Err(ApiError::Conflict {
            code: "REQUEST_REJECTED",
            message: "the request was rejected when it arrived; it is not replayed".into(),
        });
    }
    let source = engine
        .source(&request.source_id)
        .filter(|s| s.team_id == auth.team)
        .ok_or_else(|| ApiError::Conflict {
            code: "SOURCE_DELETED",
            message: "the request's source was deleted".into(),
        })?;
    let taken = engine
        .ingest(
            &source,
            request.method,
            request.headers,
            request.body,
            Intake::Replay,
        )
        .await?;
    Ok(HttpResponse::Ok().json(ReplayOut {
        request_id: taken.request_id,
        event_ids: taken.event_ids,
        replay_of: id,
    }))
}

pub fn routes(r: &mut super::Routes) {
    r.get("/v1/events", list_events)
        .get("/v1/events/{id}", get_event)
        .post("/v1/events/{id}/retry", retry_event)
        .get("/v1/attempts", list_attempts)
        .get("/v1/requests", list_requests)
        .get("/v1/requests/{id}", get_request)
        .post("/v1/requests/{id}/retry", retry_request);
}
