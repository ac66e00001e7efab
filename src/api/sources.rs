//! `/v1/sources`: where providers send. The source URL is `<public_url>/e/<id>`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::error::ApiError;
use super::json::{self, check_name, QueryParams};
use super::openapi::{ApiErrors, Deleted, ListOut, ListParams};
use crate::domain::dedupe::{json_pointer, DedupeKey, DedupeRule};
use crate::domain::*;
use crate::engine::Engine;

/// The methods a source may take.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceIn {
    name: String,
    /// Upper-case methods providers may use (default `["POST"]`): GET, POST, PUT, PATCH, DELETE.
    #[serde(default)]
    allowed_http_methods: Option<Vec<String>>,
    #[serde(default)]
    verification: Option<VerificationIn>,
    /// Repeats of a request (same identity within the window) answer the first request and
    /// make no events.
    #[serde(default)]
    dedupe: Option<DedupeIn>,
}

/// Where a request's identity is read: exactly one of `header` and `body_path`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DedupeIn {
    /// A header, e.g. `idempotency-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    /// A value in the JSON body, e.g. `$.id` or `$.data.object.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_path: Option<String>,
    /// How long a repeat counts as one: 1 to 2592000 (30 days); default 86400.
    #[serde(default)]
    window_seconds: Option<u32>,
}

const MAX_DEDUPE_WINDOW: u32 = 30 * 24 * 3600;

fn build_dedupe(d: DedupeIn) -> Result<DedupeRule, ApiError> {
    let key = match (d.header, d.body_path) {
        (Some(h), None) => {
            let h = h.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ApiError::validation(
                    "dedupe.header",
                    "must be a valid header name",
                ));
            }
            DedupeKey::Header(h)
        }
        (None, Some(p)) => {
            json_pointer(&p).map_err(|e| ApiError::validation("dedupe.body_path", e))?;
            DedupeKey::BodyPath(p.trim().to_owned())
        }
        _ => {
            return Err(ApiError::validation(
                "dedupe",
                "needs exactly one of `header` and `body_path`",
            ))
        }
    };
    let window_seconds = d.window_seconds.unwrap_or(86_400);
    if !(1..=MAX_DEDUPE_WINDOW).contains(&window_seconds) {
        return Err(ApiError::validation(
            "dedupe.window_seconds",
            format!("must be from 1 to {MAX_DEDUPE_WINDOW}"),
        ));
    }
    Ok(DedupeRule {
        key,
        window_seconds,
    })
}

fn dedupe_wire(rule: &DedupeRule) -> DedupeIn {
    let (header, body_path) = match &rule.key {
        DedupeKey::Header(h) => (Some(h.clone()), None),
        DedupeKey::BodyPath(p) => (None, Some(p.clone())),
    };
    DedupeIn {
        header,
        body_path,
        window_seconds: Some(rule.window_seconds),
    }
}

/// How ingress verifies a provider's signature; the secret is never shown again.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum VerificationIn {
    Hmac {
        /// `sha256` or `sha1`.
        algorithm: String,
        /// `hex` or `base64`.
        encoding: String,
        header: String,
        #[serde(default)]
        prefix: Option<String>,
        secret: String,
    },
    StandardWebhooks {
        secret: String,
    },
}

fn verification_in(v: &Verification) -> VerificationIn {
    match v {
        Verification::Hmac {
            algorithm,
            encoding,
            header,
            prefix,
            secret,
        } => VerificationIn::Hmac {
            algorithm: if *algorithm == HmacAlgorithm::Sha1 {
                "sha1"
            } else {
                "sha256"
            }
            .into(),
            encoding: if *encoding == SignatureEncoding::Base64 {
                "base64"
            } else {
                "hex"
            }
            .into(),
            header: header.clone(),
            prefix: prefix.clone(),
            secret: secret.clone(),
        },
        Verification::StandardWebhooks { secret } => VerificationIn::StandardWebhooks {
            secret: secret.clone(),
        },
    }
}

fn build_verification(v: VerificationIn) -> Result<Verification, ApiError> {
    match v {
        VerificationIn::Hmac {
            algorithm,
            encoding,
            header,
            prefix,
            secret,
        } => {
            let algorithm = match algorithm.as_str() {
                "sha256" => HmacAlgorithm::Sha256,
                "sha1" => HmacAlgorithm::Sha1,
                _ => {
                    return Err(ApiError::validation(
                        "verification.algorithm",
                        "must be sha256 or sha1",
                    ))
                }
            };
            let encoding = match encoding.as_str() {
                "hex" => SignatureEncoding::Hex,
                "base64" => SignatureEncoding::Base64,
                _ => {
                    return Err(ApiError::validation(
                        "verification.encoding",
                        "must be hex or base64",
                    ))
                }
            };
            let header = header.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ApiError::validation(
                    "verification.header",
                    "must be a valid header name",
                ));
            }
            if secret.is_empty() {
                return Err(ApiError::validation(
                    "verification.secret",
                    "must not be empty",
                ));
            }
            Ok(Verification::Hmac {
                algorithm,
                encoding,
                header,
                prefix: prefix.filter(|p| !p.is_empty()),
                secret,
            })
        }
        VerificationIn::StandardWebhooks { secret } => {
            if standardwebhooks::Webhook::new(&secret).is_err() {
                return Err(ApiError::validation(
                    "verification.secret",
                    "must be `whsec_` followed by base64",
                ));
            }
            Ok(Verification::StandardWebhooks { secret })
        }
    }
}

fn build(input: SourceIn, existing: Option<&Source>, team: &TeamId) -> Result<Source, ApiError> {
    let now = Timestamp::now();
    let methods = match input.allowed_http_methods {
        None => vec!["POST".to_string()],
        Some(list) => {
            let mut out = Vec::new();
            for m in list {
                let m = m.to_ascii_uppercase();
                if !METHODS.contains(&m.as_str()) {
                    return Err(ApiError::validation(
                        "allowed_http_methods",
                        "each must be one of GET, POST, PUT, PATCH, DELETE",
                    ));
                }
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            if out.is_empty() {
                return Err(ApiError::validation(
                    "allowed_http_methods",
                    "must not be empty",
                ));
            }
            out
        }
    };
    Ok(Source {
        id: existing.map_or_else(SourceId::new, |s| s.id.clone()),
        team_id: team.clone(),
        name: check_name("name", &input.name)?,
        allowed_http_methods: methods,
        verification: input.verification.map(build_verification).transpose()?,
        disabled_at: existing.and_then(|s| s.disabled_at),
        created_at: existing.map_or(now, |s| s.created_at),
        updated_at: now,
        dedupe: input.dedupe.map(build_dedupe).transpose()?,
    })
}

/// A source as the API shows it: the secret is never shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SourceOut {
    id: SourceId,
    team_id: TeamId,
    name: String,
    /// Where the provider sends: `<public_url>/e/<id>`.
    url: String,
    allowed_http_methods: Vec<String>,
    verification: Option<VerificationOut>,
    dedupe: Option<DedupeIn>,
    disabled_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum VerificationOut {
    Hmac {
        algorithm: String,
        encoding: String,
        header: String,
        prefix: Option<String>,
    },
    StandardWebhooks,
}

pub(super) fn render(source: &Source, engine: &Engine) -> SourceOut {
    let base = engine
        .config()
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", engine.config().server.listen));
    let verification = source
        .verification
        .as_ref()
        .map(|v| match verification_in(v) {
            VerificationIn::Hmac {
                algorithm,
                encoding,
                header,
                prefix,
                ..
            } => VerificationOut::Hmac {
                algorithm,
                encoding,
                header,
                prefix,
            },
            VerificationIn::StandardWebhooks { .. } => VerificationOut::StandardWebhooks,
        });
    SourceOut {
        id: source.id.clone(),
        team_id: source.team_id.clone(),
        name: source.name.clone(),
        url: format!("{}/e/{}", base.trim_end_matches('/'), source.id),
        allowed_http_methods: source.allowed_http_methods.clone(),
        verification,
        dedupe: source.dedupe.as_ref().map(dedupe_wire),
        disabled_at: source.disabled_at,
        created_at: source.created_at,
        updated_at: source.updated_at,
    }
}

fn input_form(s: &Source) -> serde_json::Value {
    serde_json::to_value(SourceIn {
        name: s.name.clone(),
        allowed_http_methods: Some(s.allowed_http_methods.clone()),
        verification: s.verification.as_ref().map(verification_in),
        dedupe: s.dedupe.as_ref().map(dedupe_wire),
    })
    .unwrap_or_default()
}

/// The team's source, or 404 exactly as if it did not exist.
fn owned(engine: &Engine, auth: &Auth, id: &str) -> Result<std::sync::Arc<Source>, ApiError> {
    let id = SourceId::parse(id).map_err(|_| ApiError::NotFound("source"))?;
    engine
        .source(&id)
        .filter(|s| s.team_id == auth.team)
        .ok_or(ApiError::NotFound("source"))
}

#[utoipa::path(post, path = "/v1/sources", tag = "sources", request_body = SourceIn,
    responses((status = 200, description = "The new source", body = SourceOut), ApiErrors))]
pub(super) async fn create(
    engine: web::Data<Engine>,
    auth: Auth,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let source = build(json::parse(&body)?, None, &auth.team)?;
    engine.save_source(source.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&source, &engine)))
}

#[utoipa::path(get, path = "/v1/sources", tag = "sources",
    params(ListParams, ("disabled" = Option<bool>, Query, description = "Only disabled (true) or enabled (false) sources")),
    responses((status = 200, description = "A page of sources", body = ListOut<SourceOut>), ApiErrors))]
pub(super) async fn list(
    engine: web::Data<Engine>,
    auth: Auth,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only_list(&["disabled"])?;
    let q = params.list_query(&auth.team)?;
    let disabled = params.bool("disabled")?;
    let page = engine.store().list_sources(&q, |s| {
        disabled.is_none_or(|d| d == s.disabled_at.is_some())
    })?;
    Ok(HttpResponse::Ok().json(json::list_envelope(page, &q, |s| render(&s, &engine))))
}

#[utoipa::path(get, path = "/v1/sources/{id}", tag = "sources", params(("id" = String, Path, description = "The source's id (src_…)")),
    responses((status = 200, description = "The source", body = SourceOut), ApiErrors))]
pub(super) async fn get(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(render(&*owned(&engine, &auth, &id)?, &engine)))
}

#[utoipa::path(patch, path = "/v1/sources/{id}", tag = "sources", params(("id" = String, Path, description = "The source's id (src_…)")),
    request_body(content = SourceIn, description = "Only the fields named change; the rest stay as they are"),
    responses((status = 200, description = "The source as changed", body = SourceOut), ApiErrors))]
pub(super) async fn update(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
    body: super::Body,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    let source = build(
        json::merge_patch(input_form(&current), &body)?,
        Some(&current),
        &auth.team,
    )?;
    engine.save_source(source.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&source, &engine)))
}

#[utoipa::path(delete, path = "/v1/sources/{id}", tag = "sources",
    params(("id" = String, Path, description = "The source's id (src_…)")),
    responses((status = 200, description = "Deleted, with its connections", body = Deleted), ApiErrors))]
pub(super) async fn delete(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let current = owned(&engine, &auth, &id)?;
    engine.delete_source(&current.id).await?;
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
    let mut source = (*owned(engine, auth, id)?).clone();
    let now = Timestamp::now();
    source.disabled_at = toggled(source.disabled_at, disabled, now);
    source.updated_at = now;
    engine.save_source(source.clone()).await?;
    Ok(HttpResponse::Ok().json(render(&source, engine)))
}

#[utoipa::path(put, path = "/v1/sources/{id}/disable", tag = "sources", params(("id" = String, Path, description = "The source's id (src_…)")),
    responses((status = 200, description = "The source", body = SourceOut), ApiErrors))]
pub(super) async fn disable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, true).await
}

#[utoipa::path(put, path = "/v1/sources/{id}/enable", tag = "sources", params(("id" = String, Path, description = "The source's id (src_…)")),
    responses((status = 200, description = "The source", body = SourceOut), ApiErrors))]
pub(super) async fn enable(
    engine: web::Data<Engine>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(&engine, &auth, &id, false).await
}

pub fn routes(r: &mut super::Routes) {
    r.post("/v1/sources", create)
        .get("/v1/sources", list)
        .get("/v1/sources/{id}", get)
        .patch("/v1/sources/{id}", update)
        .delete("/v1/sources/{id}", delete)
        .put("/v1/sources/{id}/disable", disable)
        .put("/v1/sources/{id}/enable", enable);
}
