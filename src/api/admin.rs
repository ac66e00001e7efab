//! `/admin`: teams and their API keys, behind the operator key.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Admin;
use super::error::ApiError;
use super::json::{self, check_name};
use super::openapi::ApiErrors;
use crate::domain::{ApiKeyId, Team, TeamId, Timestamp};
use crate::engine::Engine;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamIn {
    name: String,
}

#[utoipa::path(post, path = "/admin/teams", tag = "admin", security(("admin_key" = [])), request_body = TeamIn,
    responses((status = 200, description = "The new team", body = Team), ApiErrors))]
pub(super) async fn create_team(
    engine: web::Data<Engine>,
    _: Admin,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let input: TeamIn = json::parse(&body)?;
    let team = engine
        .create_team(TeamId::new(), check_name("name", &input.name)?)
        .await?;
    Ok(HttpResponse::Ok().json(team))
}

/// A new API key: the only time its secret is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct KeyOut {
    id: ApiKeyId,
    team_id: TeamId,
    /// `fhp_…`: send it as `Authorization: Bearer`, with `x-team-id`.
    key: String,
    created_at: Timestamp,
}

fn team(engine: &Engine, id: &str) -> Result<TeamId, ApiError> {
    let id = TeamId::parse_loose(id).map_err(|_| ApiError::NotFound("team"))?;
    engine
        .store()
        .team(&id)?
        .map(|t| t.id)
        .ok_or(ApiError::NotFound("team"))
}

#[utoipa::path(post, path = "/admin/teams/{id}/api-keys", tag = "admin", security(("admin_key" = [])),
    params(("id" = String, Path, description = "The team's id (tm_…)")),
    responses((status = 200, description = "The new key: `key` is shown only this once", body = KeyOut), ApiErrors))]
pub(super) async fn create_key(
    engine: web::Data<Engine>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let team = team(&engine, &id)?;
    let (key, secret) = engine.create_api_key(&team, None).await?;
    Ok(HttpResponse::Ok().json(KeyOut {
        id: key.id,
        team_id: team,
        key: secret,
        created_at: key.created_at,
    }))
}

#[utoipa::path(delete, path = "/admin/teams/{id}/api-keys/{key_id}", tag = "admin", security(("admin_key" = [])),
    params(("id" = String, Path, description = "The team's id (tm_…)"), ("key_id" = String, Path, description = "The key's id (key_…)")),
    responses((status = 204, description = "Revoked at once"), ApiErrors))]
pub(super) async fn revoke_key(
    engine: web::Data<Engine>,
    _: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (team_id, key_id) = path.into_inner();
    let team = team(&engine, &team_id)?;
    let key = ApiKeyId::parse(&key_id).map_err(|_| ApiError::NotFound("api key"))?;
    engine.revoke_api_key(&team, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn routes(r: &mut super::Routes) {
    r.post("/admin/teams", create_team)
        .post("/admin/teams/{id}/api-keys", create_key)
        .delete("/admin/teams/{id}/api-keys/{key_id}", revoke_key);
}
