//! `/v1/bulk/events/retry`: retry every event a query selects, in the background.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::ApiError;
use super::json;
use super::openapi::ApiErrors;
use crate::domain::bulk_retry::{BulkQuery, BulkRetryJob, BulkStatus};
use crate::domain::*;
use crate::engine::Engine;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkRetryIn {
    query: QueryIn,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryIn {
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

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeIn {
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

/// A bulk retry and its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BulkRetryOut {
    id: BulkRetryId,
    team_id: TeamId,
    status: BulkStatus,
    query: QueryIn,
    /// Events the query selected when the job was created.
    estimated_count: u64,
    /// Events given a `BULK_RETRY` attempt (or held, on a paused connection).
    retried_count: u64,
    /// Selected events left alone (already waiting, or their connection or destination gone).
    skipped_count: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    completed_at: Option<Timestamp>,
}

fn render(job: &BulkRetryJob) -> BulkRetryOut {
    let q = &job.query;
    BulkRetryOut {
        id: job.id.clone(),
        team_id: job.team_id.clone(),
        status: job.status,
        query: QueryIn {
            connection_id: q.connection_id.as_ref().map(ToString::to_string),
            destination_id: q.destination_id.as_ref().map(ToString::to_string),
            status: Some(q.status.clone()),
            created_at: Some(RangeIn {
                gte: q.created_gte,
                lte: q.created_lte,
            }),
        },
        estimated_count: job.estimated_count,
        retried_count: job.retried_count,
        skipped_count: job.skipped_count,
        created_at: job.created_at,
        updated_at: job.updated_at,
        completed_at: job.completed_at,
    }
}

#[utoipa::path(post, path = "/v1/bulk/events/retry", tag = "events", request_body = BulkRetryIn,
    responses((status = 202, description = "Started in the background; HOLD is never selected, and events of paused connections go HOLD", body = BulkRetryOut), ApiErrors))]
pub(super) async fn create(
    engine: web::Data<Engine>,
    auth: Auth,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let input: BulkRetryIn = json::parse(&body)?;
    let query = query_from_wire(input.query)?;
    let job = engine.start_bulk_retry(&auth.team, query).await?;
    Ok(HttpResponse::Accepted().json(render(&job)))
}

#[utoipa::path(get, path = "/v1/bulk/events/retry/{id}", tag = "events",
    params(("id" = String, Path, description = "The bulk retry's id (bch_…)")),
    responses((status = 200, description = "Its progress", body = BulkRetryOut), ApiErrors))]
pub(super) async fn get(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = BulkRetryId::parse(&id).map_err(|_| ApiError::NotFound("bulk retry"))?;
    Ok(HttpResponse::Ok().json(render(&engine.bulk_retry(&auth.team, &id)?)))
}

pub fn routes(r: &mut super::Routes) {
    r.post("/v1/bulk/events/retry", create)
        .get("/v1/bulk/events/retry/{id}", get);
}
