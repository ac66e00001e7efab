//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the `ToSchema` types they answer with. The shapes shared
//! by every resource (the error body, the list envelope, the paging parameters) live here.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use super::Routes;

/// Every error: `{"status": 422, "code": "VALIDATION_ERROR", "message": "url: ..."}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": 422, "code": "VALIDATION_ERROR", "message": "url: must be an absolute http or https URL"}))]
pub struct ErrorBody {
    /// The HTTP status again.
    pub status: u16,
    /// What went wrong, for programs: `INVALID_JSON`, `VALIDATION_ERROR`, `UNAUTHORIZED`,
    /// `FORBIDDEN`, `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `SOURCE_DISABLED`, `PAYLOAD_TOO_LARGE`,
    /// `VERIFICATION_FAILED`, `RATE_LIMITED`, `SERVICE_UNAVAILABLE`, `INTERNAL_ERROR`, or a conflict's own
    /// code (`CONFLICT`, `EVENT_ON_HOLD`, `CONNECTION_DISABLED`, `REQUEST_REJECTED`, ...).
    pub code: &'static str,
    /// What went wrong, for people; a validation error names the field first.
    pub message: String,
}

/// One page of a list, newest first unless `dir=asc`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListOut<T> {
    pub models: Vec<T>,
    /// Items on this page.
    pub count: usize,
    pub pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub limit: usize,
    /// The `next` of the following page; null on the last one.
    pub next: Option<String>,
    pub dir: SortDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortDir {
    Asc,
    Desc,
}

/// The answer to a delete: the id of what is gone.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
}

/// The paging parameters of every list.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Items per page, 1 to 250 (default 100; more is clamped to 250).
    limit: Option<u32>,
    /// The cursor a previous page answered as `pagination.next`.
    next: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    dir: Option<SortDir>,
}

/// The errors any authenticated call may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ApiErrors {
    /// Malformed JSON.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No key, or an unknown or revoked one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key belongs to another team.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such object for this team (another team's objects answer the same).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The object's state does not allow it; `code` says why.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than the API reads (1 MiB).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A field, parameter or cursor is invalid; the message names it.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Storage cannot write now; nothing was stored, retry (`Retry-After`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors of the provider-facing ingress.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum IngressErrors {
    /// The signature did not verify; the request is kept with `rejection_cause`, no events.
    #[response(status = 401)]
    VerificationFailed(#[to_schema] ErrorBody),
    /// No such source.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The source does not take this method.
    #[response(status = 405)]
    MethodNotAllowed(ErrorBody),
    /// The source is disabled; nothing was stored.
    #[response(status = 410)]
    SourceDisabled(ErrorBody),
    /// The body is larger than `ingress.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body did not arrive within `ingress.body_timeout`; nothing was stored.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// The team is over `ingress.team_rate_limit`; nothing was stored, retry after `Retry-After`.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// Not stored (starting, or storage cannot write); retry after `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The credentials: a team's API key with its team id, or the operator's admin key.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = || {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fhp_…")
                    .build(),
            )
        };
        components.add_security_scheme("api_key", bearer());
        components.add_security_scheme(
            "team_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-team-id",
                "The team the API key belongs to (tm_…)",
            ))),
        );
        components.add_security_scheme("admin_key", bearer());
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FastHook",
        description = "Self-hosted webhook gateway: durable ingress, per-destination actors with a circuit breaker, at-least-once delivery. Every /v1 call needs `Authorization: Bearer <api key>` and `x-team-id`; /admin calls need the admin key.",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&Credentials),
    security(("api_key" = [], "team_id" = [])),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        openapi_json,
        super::ingress::ingest,
        super::sources::create,
        super::sources::list,
        super::sources::get,
        super::sources::update,
        super::sources::delete,
        super::sources::disable,
        super::sources::enable,
        super::destinations::create,
        super::destinations::list,
        super::destinations::get,
        super::destinations::update,
        super::destinations::delete,
        super::destinations::disable,
        super::destinations::enable,
        super::destinations::circuit,
        super::destinations::reset_circuit,
        super::connections::create,
        super::connections::list,
        super::connections::get,
        super::connections::update,
        super::connections::delete,
        super::connections::pause,
        super::connections::unpause,
        super::connections::disable,
        super::connections::enable,
        super::events::list_events,
        super::events::get_event,
        super::events::retry_event,
        super::events::list_attempts,
        super::events::list_requests,
        super::events::get_request,
        super::events::retry_request,
        super::bulk::create,
        super::bulk::get,
        super::metrics::events_metrics,
        super::issues::list_issues,
        super::issues::get_issue,
        super::issues::put_issue,
        super::alert_channels::list_channels,
        super::alert_channels::create_channel,
        super::alert_channels::get_channel,
        super::alert_channels::delete_channel,
        super::engine::engine_state_for_team,
        super::engine::engine_state,
        super::engine::engine_pause,
        super::engine::engine_resume,
        super::admin::create_team,
        super::admin::create_key,
        super::admin::revoke_key,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "ingress", description = "Where providers send"),
        (name = "sources"), (name = "destinations"), (name = "connections"),
        (name = "events", description = "Events, attempts, requests and retries"),
        (name = "metrics"), (name = "issues"), (name = "alert-channels"),
        (name = "engine", description = "The whole-engine pause: read with a team key, changed with the admin key"),
        (name = "admin", description = "Operator calls, with the admin key"),
        (name = "health"),
    ),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc
    })
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

pub fn routes(r: &mut Routes) {
    r.get("/openapi.json", openapi_json);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// actix writes `/v1/events/{id}`, OpenAPI the same: the paths compare as they are.
    #[test]
    fn every_served_route_is_documented_and_nothing_else() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| {
                        ["get", "put", "post", "delete", "patch", "head", "options"]
                            .contains(&k.as_str())
                    })
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let mut served: Vec<(String, String)> = super::super::routes()
            .served()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_owned()))
            .collect();
        documented.sort();
        served.sort();
        let missing: Vec<_> = served.iter().filter(|r| !documented.contains(r)).collect();
        let extra: Vec<_> = documented.iter().filter(|r| !served.contains(r)).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    /// Every `$ref` names a schema the document has, and each operation says its errors.
    #[test]
    fn every_reference_resolves_and_every_call_documents_its_errors() {
        let doc = serde_json::to_value(document()).unwrap();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
            let rest = &text[i + "\"$ref\":\"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} has no success answer"
                );
                let public = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
                if !public.contains(&path.as_str()) {
                    assert!(
                        responses.keys().any(|s| s.starts_with('4')),
                        "{method} {path} documents no error"
                    );
                }
            }
        }
    }

    /// The enums of the contract are in the document with their wire spelling.
    #[test]
    fn the_contract_enums_are_spelled_as_on_the_wire() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let values = |name: &str| -> Vec<String> {
            schemas[name]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} is not an enum schema"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            values("EventStatus"),
            [
                "SCHEDULED",
                "QUEUED",
                "HOLD",
                "SUCCESSFUL",
                "FAILED",
                "CANCELLED"
            ]
        );
        assert_eq!(
            values("Trigger"),
            [
                "INITIAL",
                "AUTOMATIC",
                "MANUAL",
                "BULK_RETRY",
                "UNPAUSE",
                "PROBE",
                "RESET"
            ]
        );
        assert_eq!(values("AttemptStatus"), ["SUCCESSFUL", "FAILED"]);
        assert_eq!(values("CircuitState"), ["closed", "open", "half_open"]);
        assert_eq!(
            values("IssueStatus"),
            ["OPENED", "ACKNOWLEDGED", "RESOLVED", "DISMISSED"]
        );
        assert_eq!(values("RatePeriod"), ["second", "minute", "hour"]);
        assert!(values("DeliveryError").contains(&"CONNECTION_REFUSED".to_owned()));
    }
}
