//! The HTTP surface: one file per resource, each with its DTOs, handlers and `configure`.
//! This module only wires them together.

pub mod admin;
mod alert_channels;
pub mod auth;
pub mod bulk;
pub mod connections;
pub mod destinations;
pub mod error;
pub mod events;
pub mod health;
pub mod ingress;
mod issues;
pub mod json;
mod metrics;
pub mod sources;

use actix_web::{web, HttpRequest, HttpResponse};

use error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    ingress::configure(cfg);
    sources::configure(cfg);
    destinations::configure(cfg);
    connections::configure(cfg);
    events::configure(cfg);
    bulk::configure(cfg);
    metrics::configure(cfg);
    issues::configure(cfg);
    alert_channels::configure(cfg);
    admin::configure(cfg);
}

/// A route whose other methods answer 405 with the JSON error body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}

/// Unknown routes answer the JSON error body too.
/// A path (or method) the server does not have: the 404 names it.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}

/// Largest body the management API reads (ingress has its own limit).
pub const MAX_API_BODY: usize = 1024 * 1024;

/// A management API body, bounded, whose errors are the JSON error body like the rest.
pub struct Body(pub web::Bytes);

impl actix_web::FromRequest for Body {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Body, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        let fut = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            fut.await.map(Body).map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    ApiError::PayloadTooLarge(MAX_API_BODY)
                } else {
                    ApiError::InvalidJson(format!("cannot read the body: {e}"))
                }
            })
        })
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}
