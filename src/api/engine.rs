//! The whole-engine pause: any team may see it (the console's banner), only the operator
//! changes it.

use actix_web::{web, HttpResponse};

use super::auth::{Admin, Auth};
use super::error::ApiError;
use super::openapi::ApiErrors;
use crate::domain::{EnginePause, PauseSource};
use crate::engine::Engine;

/// Whether deliveries are paused everywhere, for a team: its events wait while it is.
#[utoipa::path(get, path = "/v1/engine", tag = "engine",
    responses((status = 200, description = "The whole-engine pause", body = EnginePause), ApiErrors))]
pub(super) async fn engine_state_for_team(engine: web::Data<Engine>, _: Auth) -> HttpResponse {
    HttpResponse::Ok().json(engine.pause_state())
}

#[utoipa::path(get, path = "/admin/engine", tag = "engine", security(("admin_key" = [])),
    responses((status = 200, description = "The whole-engine pause", body = EnginePause), ApiErrors))]
pub(super) async fn engine_state(engine: web::Data<Engine>, _: Admin) -> HttpResponse {
    HttpResponse::Ok().json(engine.pause_state())
}

/// Stops every delivery (events wait QUEUED); ingress keeps accepting.
#[utoipa::path(put, path = "/admin/engine/pause", tag = "engine", security(("admin_key" = [])),
    responses((status = 200, description = "Paused", body = EnginePause), ApiErrors))]
pub(super) async fn engine_pause(
    engine: web::Data<Engine>,
    _: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(engine.set_paused(true, PauseSource::Api).await?))
}

#[utoipa::path(put, path = "/admin/engine/resume", tag = "engine", security(("admin_key" = [])),
    responses((status = 200, description = "Delivering again", body = EnginePause), ApiErrors))]
pub(super) async fn engine_resume(
    engine: web::Data<Engine>,
    _: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(engine.set_paused(false, PauseSource::Api).await?))
}

pub fn routes(r: &mut super::Routes) {
    r.get("/v1/engine", engine_state_for_team)
        .get("/admin/engine", engine_state)
        .put("/admin/engine/pause", engine_pause)
        .put("/admin/engine/resume", engine_resume);
}
