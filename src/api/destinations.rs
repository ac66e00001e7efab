//! `/v1/destinations`: the receivers. Each one is a long-lived actor; saving one here
//! starts or reconfigures it.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, check_name, QueryParams};
use super::openapi::{ApiErrors, Deleted, ListOut, ListParams};
use crate::domain::address_policy::AddressPolicy;
use crate::domain::*;
use crate::engine::address_guard::literal_refusal;
use crate::engine::destination_actor::CircuitView;
use crate::engine::Engine;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DestinationIn {
    name: String,
    url: String,
    /// POST (default), PUT, PATCH, GET or DELETE.
    #[serde(default)]
    http_method: Option<String>,
    /// At most this many attempts per `rate_limit_period`; none for no limit.
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    rate_limit_period: Option<RatePeriod>,
    /// 1 to 300000 (default 10000).
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Attempts in flight at once, 1 to 1000 (default 10).
    #[serde(default)]
    max_concurrency: Option<u32>,
    /// Sent with every attempt.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// `whsec_` + base64 of 16 to 64 bytes: attempts carry Standard Webhooks signatures.
    #[serde(default)]
    signing_secret: Option<String>,
    #[serde(default)]
    circuit: Option<CircuitIn>,
}

/// The breaker's settings; omitted ones take the defaults (5, 60, 1).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CircuitIn {
    #[serde(default)]
    failure_threshold: Option<u32>,
    #[serde(default)]
    cooldown_seconds: Option<u64>,
    #[serde(default)]
    success_threshold: Option<u32>,
}

/// An absolute http(s) URL with a host, not naming an address the gateway refuses to connect
/// to (a name is judged again at every connection, whatever it resolves to then).
pub fn check_url(field: &str, url: &str, policy: AddressPolicy) -> Result<String, ApiError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|_| ApiError::validation(field, "must be an absolute http or https URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::validation(
            field,
            "must be an absolute http or https URL",
        ));
    }
    if let Some(why) = literal_refusal(&parsed, policy) {
        return Err(ApiError::validation(
            field,
            format!("names {}; the gateway does not connect there", why.as_str()),
        ));
    }
    Ok(parsed.to_string())
}

fn build(
    engine: &Engine,
    input: DestinationIn,
    existing: Option<&Destination>,
    team: &TeamId,
) -> Result<Destination, ApiError> {
    let now = Timestamp::now();
    let http_method = input
        .http_method
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !["POST", "PUT", "PATCH", "GET", "DELETE"].contains(&http_method.as_str()) {
        return Err(ApiError::validation(
            "http_method",
            "must be one of POST, PUT, PATCH, GET, DELETE",
        ));
    }
    if input.rate_limit == Some(0) {
        return Err(ApiError::validation(
            "rate_limit",
            "must be at least 1 (omit it for no limit)",
        ));
    }
    let timeout_ms = input.timeout_ms.unwrap_or(10_000);
    if !(1..=300_000).contains(&timeout_ms) {
        return Err(ApiError::validation(
            "timeout_ms",
            "must be from 1 to 300000",
        ));
    }
    let max_concurrency = input.max_concurrency.unwrap_or(10);
    if !(1..=1000).contains(&max_concurrency) {
        return Err(ApiError::validation(
            "max_concurrency",
            "must be from 1 to 1000",
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in input.headers.unwrap_or_default() {
        let name = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            return Err(ApiError::validation(
                "headers",
                format!("`{name}` is not a valid header"),
            ));
        }
        headers.push((name, value));
    }
    if let Some(secret) = &input.signing_secret {
        let key = secret.strip_prefix("whsec_").and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        });
        if !key.is_some_and(|k| (16..=64).contains(&k.len())) {
            return Err(ApiError::validation(
                "signing_secret",
                "must be `whsec_` followed by base64 of 16 to 64 bytes",
            ));
        }
    }
    let defaults = CircuitConfig::default();
    let circuit = match input.circuit {
        None => existing.map_or(defaults, |d| d.circuit),
        Some(c) => CircuitConfig {
            failure_threshold: c.failure_threshold.unwrap_or(defaults.failure_threshold),
            cooldown_seconds: c.cooldown_seconds.unwrap_or(defaults.cooldown_seconds),
            success_threshold: c.success_threshold.unwrap_or(defaults.success_threshold),
        },
    };
    if circuit.failure_threshold == 0
        || circuit.success_threshold == 0
        || circuit.cooldown_seconds == 0
    {
        return Err(ApiError::validation(
            "circuit",
            "thresholds and cooldown_seconds must be at least 1",
        ));
    }
    Ok(Destination {
        id: existing.map_or_else(DestinationId::new, |d| d.id.clone()),
        team_id: team.clone(),
        name: check_name("name", &input.name)?,
        url: check_url("url", &input.url, engine.config().address_policy())?,
        http_method,
        rate_limit: input.rate_limit,
        rate_limit_period: input.rate_limit_period.unwrap_or(RatePeriod::Second),
        timeout_ms,
        max_concurrency,
        headers,
        signing_secret: input.signing_secret,
        circuit,
        disabled_at: existing.and_then(|d| d.disabled_at),
        created_at: existing.map_or(now, |d| d.created_at),
        updated_at: now,
    })
}

/// A destination as the API shows it: the signing secret is never shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationOut {
    id: DestinationId,
    team_id: TeamId,
    name: String,
    url: String,
    http_method: String,
    rate_limit: Option<u32>,
    rate_limit_period: RatePeriod,
    timeout_ms: u64,
    max_concurrency: u32,
    headers: BTreeMap<String, String>,
    signing_secret_set: bool,
    circuit: CircuitConfig,
    disabled_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

pub fn render(d: &Destination) -> DestinationOut {
    DestinationOut {
        id: d.id.clone(),
        team_id: d.team_id.clone(),
        name: d.name.clone(),
        url: d.url.clone(),
        http_method: d.http_method.clone(),
        rate_limit: d.rate_limit,
        rate_limit_period: d.rate_limit_period,
        timeout_ms: d.timeout_ms,
        max_concurrency: d.max_concurrency,
        headers: d.headers.iter().cloned().collect(),
        signing_secret_set: d.signing_secret.is_some(),
        circuit: d.circuit,
        disabled_at: d.disabled_at,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

fn input_form(d: &Destination) -> serde_json::Value {
    serde_json::to_value(DestinationIn {
        name: d.name.clone(),
        url: d.url.clone(),
        http_method: Some(d.http_method.clone()),
        rate_limit: d.rate_limit,
        rate_limit_period: Some(d.rate_limit_period),
        timeout_ms: Some(d.timeout_ms),
        max_concurrency: Some(d.max_concurrency),
        headers: Some(d.headers.iter().cloned().collect()),
        signing_secret: d.signing_secret.clone(),
        circuit: Some(CircuitIn {
            failure_threshold: Some(d.circuit.failure_threshold),
            cooldown_seconds: Some(d.circuit.cooldown_seconds),
            success_threshold: Some(d.circuit.success_threshold),
        }),
    })
    .unwrap_or_default()
}

pub fn owned(
    engine: &Engine,
    auth: &Auth,
    id: &str,
) -> Result<std::sync::Arc<Destination>, ApiError> {
    let id = DestinationId::parse(id).map_err(|_| ApiError::NotFound("destination"))?;
    engine
        .destination(&id)
        .filter(|d| d.team_id == auth.team)
        .ok_or(ApiError::NotFound("destination"))
}

#[utoipa::path(post, path = "/v1/destinations", tag = "destinations", request_body = DestinationIn,
    responses((status = 200, description = "The new destination", body = DestinationOut), ApiErrors))]
pub(super) async fn create(
    engine: web::Data<Engine>,
    auth: Auth,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let destination = build(&engine, json::parse(&body)?, None, &auth.team)?;
    engine.save_destination(destination.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&destination)))
}

#[utoipa::path(get, path = "/v1/destinations", tag = "destinations",
    params(ListParams, ("disabled" = Option<bool>, Query, description = "Only disabled (true) or enabled (false) destinations")),
    responses((status = 200, description = "A page of destinations", body = ListOut<DestinationOut>), ApiErrors))]
pub(super) async fn list(
    engine: web::Data<Engine>,
    auth: Auth,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["disabled"])?;
    let q = params.list_query(&auth.team)?;
    let disabled = params.bool("disabled")?;
    let page = engine.store().list_destinations(&q, |d| {
        disabled.is_none_or(|x| x == d.disabled_at.is_some())
    })?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |d| render(&d))))
}

#[utoipa::path(get, path = "/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    responses((status = 200, description = "The destination", body = DestinationOut), ApiErrors))]
pub(super) async fn get(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(render(&*owned(&engine, &auth, &id)?)))
}

#[utoipa::path(patch, path = "/v1/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    request_body(content = DestinationIn, description = "Only the fields named change; the rest stay as they are"),
    responses((status = 200, description = "The destination as changed", body = DestinationOut), ApiErrors))]
pub(super) async fn update(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    let destination = build(
        &engine,
        json::merge_patch(input_form(&current), &body)?,
        Some(&current),
        &auth.team,
    )?;
    engine.save_destination(destination.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&destination)))
}

#[utoipa::path(delete, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id (des_…)"),
        ("cancel_events" = Option<bool>, Query, description = "Cancel its waiting events (CANCELLED); without it a destination with waiting or held work is refused with 409")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors))]
pub(super) async fn delete(
    engine: web::Data<Engine>,
    auth: Auth,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only(&["cancel_events"])?;
    let cancel = params.bool("cancel_events")?.unwrap_or(false);
    let current = owned(&engine, &auth, &id)?;
    engine.delete_destination(&current.id, cancel).await?;
    Ok(HttpResponse::Ok().json(Deleted {
        id: current.id.to_string(),
    }))
}

async fn set_disabled(
    engine: &Engine,
    auth: &Auth,
    id: &str,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    let mut destination = (*owned(engine, auth, id)?).clone();
    let now = Timestamp::now();
    destination.disabled_at = toggled(destination.disabled_at, disabled, now);
    destination.updated_at = now;
    engine.save_destination(destination.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&destination)))
}

#[utoipa::path(put, path = "/v1/destinations/{id}/disable", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    responses((status = 200, description = "The destination", body = DestinationOut), ApiErrors))]
pub(super) async fn disable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, true).await
}

#[utoipa::path(put, path = "/v1/destinations/{id}/enable", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    responses((status = 200, description = "The destination", body = DestinationOut), ApiErrors))]
pub(super) async fn enable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, false).await
}

#[utoipa::path(get, path = "/v1/destinations/{id}/circuit", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    responses((status = 200, description = "The breaker, live from the destination's actor", body = CircuitView), ApiErrors))]
pub(super) async fn circuit(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    Ok(HttpResponse::Ok().json(engine.circuit(&current.id).await?))
}

#[utoipa::path(post, path = "/v1/destinations/{id}/circuit/reset", tag = "destinations", params(("id" = String, Path, description = "The destination's id (des_…)")),
    responses((status = 200, description = "Closed now, the counter zeroed; the queue flushes (trigger RESET)", body = CircuitView), ApiErrors))]
pub(super) async fn reset_circuit(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    Ok(HttpResponse::Ok().json(engine.reset_circuit(&current.id).await?))
}

pub fn routes(r: &mut super::Routes) {
    r.post("/v1/destinations", create)
        .get("/v1/destinations", list)
        .get("/v1/destinations/{id}", get)
        .patch("/v1/destinations/{id}", update)
        .delete("/v1/destinations/{id}", delete)
        .put("/v1/destinations/{id}/disable", disable)
        .put("/v1/destinations/{id}/enable", enable)
        .get("/v1/destinations/{id}/circuit", circuit)
        .post("/v1/destinations/{id}/circuit/reset", reset_circuit);
}
