//! `/admin`: teams and their API keys, behind the operator key.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::error::ApiError;
use super::json::{self, check_name};
use crate::domain::{ApiKeyId, PauseSource, TeamId};
use crate::engine::Engine;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamIn {
    name: String,
}

async fn create_team(
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

fn team(engine: &Engine, id: &str) -> Result<TeamId, ApiError> {
    let id = TeamId::parse_loose(id).map_err(|_| ApiError::NotFound("team"))?;
    engine
        .store()
        .team(&id)?
        .map(|t| t.id)
        .ok_or(ApiError::NotFound("team"))
}

async fn create_key(
    engine: web::Data<Engine>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let team = team(&engine, &id)?;
    let (key, secret) = engine.create_api_key(&team, None).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"id": key.id, "team_id": team, "key": secret, "created_at": key.created_at})))
}

async fn revoke_key(
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

async fn engine_state(engine: web::Data<Engine>, _: Admin) -> HttpResponse {
    HttpResponse::Ok().json(engine.pause_state())
}

async fn engine_pause(engine: web::Data<Engine>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(engine.set_paused(true, PauseSource::Api).await?))
}

async fn engine_resume(engine: web::Data<Engine>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(engine.set_paused(false, PauseSource::Api).await?))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/admin/engine").route(web::get().to(engine_state)));
    cfg.service(super::resource("/admin/engine/pause").route(web::put().to(engine_pause)));
    cfg.service(super::resource("/admin/engine/resume").route(web::put().to(engine_resume)));
    cfg.service(super::resource("/admin/teams").route(web::post().to(create_team)));
    cfg.service(super::resource("/admin/teams/{id}/api-keys").route(web::post().to(create_key)));
    cfg.service(
        super::resource("/admin/teams/{id}/api-keys/{key_id}").route(web::delete().to(revoke_key)),
    );
}
