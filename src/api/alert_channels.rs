//! `/v1/alert-channels`: where issue alerts go. Each channel gets its own signing secret,
//! shown with it, so its receiver can verify every alert (Standard Webhooks).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::Auth;
use super::destinations::check_url;
use super::error::ApiError;
use super::json::{self, QueryParams};
use crate::domain::alerts::{AlertChannel, AlertType, ChannelType};
use crate::domain::*;
use crate::engine::Engine;
use crate::store::ops;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelIn {
    #[serde(rename = "type")]
    kind: ChannelType,
    url: String,
    alert_types: Vec<AlertType>,
    #[serde(default)]
    name: Option<String>,
}

/// `whsec_` and base64 of 32 random bytes.
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

async fn create_channel(
    engine: web::Data<Engine>,
    auth: Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ChannelIn = json::parse(&body)?;
    let url = check_url("url", &input.url)?;
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

async fn list_channels(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&[])?;
    let q = params.list_query(&auth.team)?;
    let page = engine.store().list_alert_channels(&q)?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |c| c)))
}

fn channel_id(id: &str) -> Result<AlertChannelId, ApiError> {
    AlertChannelId::parse(id).map_err(|_| ApiError::NotFound("alert channel"))
}

async fn get_channel(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&id)?;
    let channel = engine
        .store()
        .alert_channel(&auth.team, &id)?
        .ok_or(ApiError::NotFound("alert channel"))?;
    Ok(HttpResponse::Ok().json(channel))
}

/// Deletes the channel; alerts still waiting for it are dropped when their turn comes.
async fn delete_channel(
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id })))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/v1/alert-channels")
            .route(web::get().to(list_channels))
            .route(web::post().to(create_channel)),
    );
    cfg.service(
        super::resource("/v1/alert-channels/{id}")
            .route(web::get().to(get_channel))
            .route(web::delete().to(delete_channel)),
    );
}
