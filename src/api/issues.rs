//! `/v1/issues`: what the gateway opened for an operator to look at (a breaker that opened),
//! and the operator's acknowledgement, dismissal or resolution.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, QueryParams};
use super::openapi::{ApiErrors, ListOut, ListParams};
use crate::domain::issues::{Issue, IssueStatus, IssueType};
use crate::domain::*;
use crate::engine::Engine;

#[utoipa::path(get, path = "/v1/issues", tag = "issues",
    params(ListParams,
        ("status" = Option<Vec<IssueStatus>>, Query, description = "Only these statuses; repeatable"),
        ("destination_id" = Option<String>, Query, description = "Only this destination's (des_…)"),
        ("type" = Option<IssueType>, Query, description = "Only this type")),
    responses((status = 200, description = "A page of issues", body = ListOut<Issue>), ApiErrors))]
pub(super) async fn list_issues(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["status", "status[]", "destination_id", "type"])?;
    let q = params.list_query(&auth.team)?;
    let statuses = params
        .all("status")
        .into_iter()
        .map(|s| {
            IssueStatus::parse(s).ok_or_else(|| {
                ApiError::validation(
                    "status",
                    format!("`{s}` is not one of OPENED, ACKNOWLEDGED, RESOLVED, DISMISSED"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let destination = params.id("destination_id", DestinationId::parse)?;
    let kind = params
        .get("type")
        .map(|t| {
            IssueType::parse(t).ok_or_else(|| {
                ApiError::validation(
                    "type",
                    format!("`{t}` is not an issue type; circuit_open is"),
                )
            })
        })
        .transpose()?;
    let (store, query) = (engine.store().clone(), q.clone());
    let page = crate::store::readers::read(move || {
        store.list_issues(&query, |i| {
            (statuses.is_empty() || statuses.contains(&i.status))
                && destination.as_ref().is_none_or(|d| &i.destination_id == d)
                && kind.is_none_or(|k| i.kind == k)
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("issue list: {e}")))??;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |i| i)))
}

fn issue_id(id: &str) -> Result<IssueId, ApiError> {
    IssueId::parse(id).map_err(|_| ApiError::NotFound("issue"))
}

#[utoipa::path(get, path = "/v1/issues/{id}", tag = "issues",
    params(("id" = String, Path, description = "The issue's id (iss_…)")),
    responses((status = 200, description = "The issue", body = Issue), ApiErrors))]
pub(super) async fn get_issue(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = issue_id(&id)?;
    let issue = engine
        .store()
        .issue(&auth.team, &id)?
        .ok_or(ApiError::NotFound("issue"))?;
    Ok(HttpResponse::Ok().json(issue))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueIn {
    /// ACKNOWLEDGED, DISMISSED or RESOLVED.
    status: String,
}

#[utoipa::path(put, path = "/v1/issues/{id}", tag = "issues",
    params(("id" = String, Path, description = "The issue's id (iss_…)")),
    request_body = IssueIn,
    responses((status = 200, description = "The issue with its new status", body = Issue), ApiErrors))]
pub(super) async fn put_issue(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = issue_id(&id)?;
    let input: IssueIn = json::parse(&body)?;
    let status = match IssueStatus::parse(&input.status) {
        Some(s) if s != IssueStatus::Opened => s,
        _ => {
            return Err(ApiError::validation(
                "status",
                "must be ACKNOWLEDGED, DISMISSED or RESOLVED",
            ))
        }
    };
    let issue = engine.issues().set_status(&auth.team, &id, status).await?;
    Ok(HttpResponse::Ok().json(issue))
}

pub fn routes(r: &mut super::Routes) {
    r.get("/v1/issues", list_issues)
        .get("/v1/issues/{id}", get_issue)
        .put("/v1/issues/{id}", put_issue);
}
