//! `/v1/alert-channels`: where issue alerts go. Each channel gets its own signing secret,
//! shown with it, so its receiver can verify every alert (Standard Webhooks).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Auth;
use super::destinations::check_url;
use super::error::ApiError;
use super::json::{self, QueryParams};
use super::openapi::{ApiErrors, Deleted, ListOut, ListParams};
use crate::domain::alerts::{AlertChannel, AlertType, ChannelType};
use crate::domain::*;
use crate::engine::Engine;
use crate::store::ops;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelIn {
    #[serde(rename = "type")]
    kind: ChannelType,
    url: String,
    alert_types: Vec<AlertType>,
    #[serde(default)]
    name: Option<String>,
}

/// `whsec_` and base64 of 32 random bytes.
/// An alert channel as lists and reads show it: its signing secret is shown only once, in the
/// answer to its creation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct AlertChannelOut {
    id: AlertChannelId,
    team_id: TeamId,
    name: String,
    #[serde(rename = "type")]
    kind: ChannelType,
    url: String,
    alert_types: Vec<AlertType>,
    created_at: Timestamp,
}

fn render(c: AlertChannel) -> AlertChannelOut {
    AlertChannelOut {
        id: c.id,
        team_id: c.team_id,
        name: c.name,
        kind: c.kind,
        url: c.url,
        alert_types: c.alert_types,
        created_at: c.created_at,
    }
}

fn new_signing_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[utoipa::path(post, path = "/v1/alert-channels", tag = "alert-channels", request_body = ChannelIn,
    responses((status = 201, description = "The channel, with the secret its alerts are signed with (Standard Webhooks)", body = AlertChannel), ApiErrors))]
pub(super) async fn create_channel(
    engine: web::Data<Engine>,
    auth: Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ChannelIn = json::parse(&body)?;
    let url = check_url("url", &input.url, engine.config().address_policy())?;
    if input.alert_types.is_empty() {
        return Err(ApiError::validation(
            "alert_types",
            "must name at least one of issue_opened, issue_resolved",
        ));
    }
    let mut alert_types = input.alert_types;
    alert_types.dedup();
    let channel = AlertChannel {
        id: AlertChannelId::new(),
        team_id: auth.team.clone(),
        name: json::check_name("name", input.name.as_deref().unwrap_or("alerts"))?,
        kind: input.kind,
        url,
        alert_types,
        signing_secret: new_signing_secret(),
        created_at: Timestamp::now(),
    };
    engine
        .store()
        .commit(vec![ops::put_alert_channel(&channel)])
        .await?;
    Ok(HttpResponse::Created().json(channel))
}

#[utoipa::path(get, path = "/v1/alert-channels", tag = "alert-channels", params(ListParams),
    responses((status = 200, description = "A page of alert channels (without their secrets)", body = ListOut<AlertChannelOut>), ApiErrors))]
pub(super) async fn list_channels(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&[])?;
    let q = params.list_query(&auth.team)?;
    let page = engine.store().list_alert_channels(&q)?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, render)))
}

fn channel_id(id: &str) -> Result<AlertChannelId, ApiError> {
    AlertChannelId::parse(id).map_err(|_| ApiError::NotFound("alert channel"))
}

#[utoipa::path(get, path = "/v1/alert-channels/{id}", tag = "alert-channels", params(("id" = String, Path, description = "The alert channel's id (alc_…)")),
    responses((status = 200, description = "The channel (without its secret)", body = AlertChannelOut), ApiErrors))]
pub(super) async fn get_channel(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&id)?;
    let channel = engine
        .store()
        .alert_channel(&auth.team, &id)?
        .ok_or(ApiError::NotFound("alert channel"))?;
    Ok(HttpResponse::Ok().json(render(channel)))
}

/// Deletes the channel; alerts still waiting for it are dropped when their turn comes.
#[utoipa::path(delete, path = "/v1/alert-channels/{id}", tag = "alert-channels", params(("id" = String, Path, description = "The alert channel's id (alc_…)")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors))]
pub(super) async fn delete_channel(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&id)?;
    let store = engine.store();
    if store.alert_channel(&auth.team, &id)?.is_none() {
        return Err(ApiError::NotFound("alert channel"));
    }
    store
        .commit(vec![ops::remove_alert_channel(&auth.team, &id)])
        .await?;
    Ok(HttpResponse::Ok().json(Deleted { id: id.to_string() }))
}

pub fn routes(r: &mut super::Routes) {
    r.get("/v1/alert-channels", list_channels)
        .post("/v1/alert-channels", create_channel)
        .get("/v1/alert-channels/{id}", get_channel)
        .delete("/v1/alert-channels/{id}", delete_channel);
}
