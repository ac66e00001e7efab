//! `/v1/bulk/events/retry`: retry every event a query selects, in the background.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Auth;
use super::error::ApiError;
use super::json;
use crate::domain::bulk_retry::{BulkQuery, BulkRetryJob};
use crate::domain::*;
use crate::engine::Engine;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRetryIn {
    query: QueryIn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryIn {
    #[serde(default)]
    connection_id: Option<String>,
    #[serde(default)]
    destination_id: Option<String>,
    /// Defaults to `["FAILED"]`: a bulk retry never resends delivered events unless asked.
    #[serde(default)]
    status: Option<Vec<EventStatus>>,
    #[serde(default)]
    created_at: Option<RangeIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeIn {
    #[serde(default)]
    gte: Option<Timestamp>,
    #[serde(default)]
    lte: Option<Timestamp>,
}

fn query_from_wire(q: QueryIn) -> Result<BulkQuery, ApiError> {
    let connection_id = q
        .connection_id
        .map(|c| {
            ConnectionId::parse(&c).map_err(|e| ApiError::validation("query.connection_id", e))
        })
        .transpose()?;
    let destination_id = q
        .destination_id
        .map(|d| {
            DestinationId::parse(&d).map_err(|e| ApiError::validation("query.destination_id", e))
        })
        .transpose()?;
    let status = q.status.unwrap_or_else(|| vec![EventStatus::Failed]);
    if status.is_empty() {
        return Err(ApiError::validation(
            "query.status",
            "must name at least one status",
        ));
    }
    let (gte, lte) = q.created_at.map_or((None, None), |r| (r.gte, r.lte));
    if let (Some(g), Some(l)) = (gte, lte) {
        if g > l {
            return Err(ApiError::validation(
                "query.created_at",
                "`gte` is after `lte`",
            ));
        }
    }
    Ok(BulkQuery::new(
        connection_id,
        destination_id,
        status,
        gte,
        lte,
    ))
}

fn render(job: &BulkRetryJob) -> serde_json::Value {
    let q = &job.query;
    json!({
        "id": job.id,
        "team_id": job.team_id,
        "status": job.status,
        "query": {
            "connection_id": q.connection_id,
            "destination_id": q.destination_id,
            "status": q.status,
            "created_at": {"gte": q.created_gte, "lte": q.created_lte},
        },
        "estimated_count": job.estimated_count,
        "retried_count": job.retried_count,
        "skipped_count": job.skipped_count,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "completed_at": job.completed_at,
    })
}

async fn create(
    engine: web::Data<Engine>,
    auth: Auth,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let input: BulkRetryIn = json::parse(&body)?;
    let query = query_from_wire(input.query)?;
    let job = engine.start_bulk_retry(&auth.team, query).await?;
    Ok(HttpResponse::Accepted().json(render(&job)))
}

async fn get(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = BulkRetryId::parse(&id).map_err(|_| ApiError::NotFound("bulk retry"))?;
    Ok(HttpResponse::Ok().json(render(&engine.bulk_retry(&auth.team, &id)?)))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/bulk/events/retry").route(web::post().to(create)));
    cfg.service(super::resource("/v1/bulk/events/retry/{id}").route(web::get().to(get)));
}
