//! Read APIs for what flowed: `/v1/events`, `/v1/attempts`, `/v1/requests`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, QueryParams};
use crate::domain::*;
use crate::engine::Engine;
use crate::store::EventScope;

/// A body exactly as it came, and how it is written: `json` (the parsed document), `text`
/// (UTF-8 that is not JSON), or `base64` (anything else, byte for byte: a replacement
/// character would hide what the provider sent).
pub fn render_body(body: &[u8]) -> (serde_json::Value, &'static str) {
    use base64::Engine as _;
    if let Ok(value) = serde_json::from_slice(body) {
        return (value, "json");
    }
    match std::str::from_utf8(body) {
        Ok(text) => (serde_json::Value::String(text.to_owned()), "text"),
        Err(_) => (
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            "base64",
        ),
    }
}

fn render_headers(headers: &[(String, String)]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in headers {
        // Repeated headers are joined as HTTP allows.
        match map.get_mut(k) {
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(v);
            }
            _ => {
                map.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
    }
    serde_json::Value::Object(map)
}

pub fn render_request(r: &Request) -> serde_json::Value {
    let (body, encoding) = render_body(&r.body);
    json!({
        "id": r.id,
        "team_id": r.team_id,
        "source_id": r.source_id,
        "method": r.method,
        "headers": render_headers(&r.headers),
        "body": body,
        "encoding": encoding,
        "rejection_cause": r.rejection_cause,
        "event_ids": r.event_ids,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    })
}

async fn list_events(
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
        created_gte: gte,
        created_lte: lte,
    };
    let narrowed = scope.clone();
    let keep = move |e: &Event| {
        scope.admits(e)
            && source.as_ref().is_none_or(|s| &e.source_id == s)
            && dead.is_none_or(|d| d == e.dead_lettered_at.is_some())
    };
    // Off the HTTP worker: a filtered walk of many events may take a while.
    let (store, query) = (engine.store().clone(), q.clone());
    let page = crate::store::readers::read(move || store.list_events(&query, &narrowed, keep))
        .await
        .map_err(|e| ApiError::Internal(format!("event list: {e}")))??;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |e| e)))
}

async fn get_event(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = EventId::parse(&id).map_err(|_| ApiError::NotFound("event"))?;
    let event = engine
        .store()
        .event(&auth.team, &id)?
        .ok_or(ApiError::NotFound("event"))?;
    let mut out = serde_json::to_value(&event).map_err(|e| ApiError::Internal(e.to_string()))?;
    let data = engine
        .store()
        .request(&auth.team, &event.request_id)?
        .map(|r| {
            let (body, encoding) = render_body(&r.body);
            json!({"headers": render_headers(&r.headers), "body": body, "encoding": encoding})
        });
    out["data"] = data.unwrap_or(serde_json::Value::Null);
    Ok(HttpResponse::Ok().json(out))
}

/// A `MANUAL` attempt of a finished event; held if its connection is paused.
async fn retry_event(
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

async fn list_attempts(
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
    Ok(HttpResponse::Ok().json(json!({
        "count": page.len(),
        "models": page,
        "pagination": {"limit": q.limit, "next": next.flatten(), "dir": if asc { "asc" } else { "desc" }},
    })))
}

async fn list_requests(
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

async fn get_request(
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
async fn retry_request(
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
    let (request_id, event_ids) = engine
        .ingest(&source, request.method, request.headers, request.body)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "request_id": request_id,
        "event_ids": event_ids,
        "replay_of": id,
    })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/events").route(web::get().to(list_events)));
    cfg.service(super::resource("/v1/events/{id}").route(web::get().to(get_event)));
    cfg.service(super::resource("/v1/events/{id}/retry").route(web::post().to(retry_event)));
    cfg.service(super::resource("/v1/attempts").route(web::get().to(list_attempts)));
    cfg.service(super::resource("/v1/requests").route(web::get().to(list_requests)));
    cfg.service(super::resource("/v1/requests/{id}").route(web::get().to(get_request)));
    cfg.service(super::resource("/v1/requests/{id}/retry").route(web::post().to(retry_request)));
}
