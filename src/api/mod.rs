//! The HTTP surface: one file per resource, each with its DTOs, handlers and `configure`.
//! This module only wires them together.

pub mod admin;
mod alert_channels;
pub mod auth;
pub mod bulk;
pub mod connections;
pub mod console;
pub mod destinations;
mod engine;
pub mod error;
pub mod events;
pub mod health;
pub mod ingress;
mod issues;
pub mod json;
mod metrics;
pub mod openapi;
pub mod sources;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for resource in routes().resources {
        cfg.service(resource.service);
    }
    console::configure(cfg);
}

/// Every route of the API, each resource once with all of its methods. The one list both
/// the server and the API document's test read, so a route cannot be served undocumented.
pub fn routes() -> Routes {
    let mut r = Routes::default();
    health::routes(&mut r);
    ingress::routes(&mut r);
    sources::routes(&mut r);
    destinations::routes(&mut r);
    connections::routes(&mut r);
    events::routes(&mut r);
    bulk::routes(&mut r);
    metrics::routes(&mut r);
    issues::routes(&mut r);
    alert_channels::routes(&mut r);
    admin::routes(&mut r);
    engine::routes(&mut r);
    openapi::routes(&mut r);
    r
}

/// The routes as they are registered: a path, its methods, and the resource serving them.
#[derive(Default)]
pub struct Routes {
    resources: Vec<RouteResource>,
}

struct RouteResource {
    path: &'static str,
    methods: Vec<Method>,
    service: actix_web::Resource,
}

impl Routes {
    /// Serves `method path` with `handler`; a path's other methods answer 405.
    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        let i = match self.resources.iter().position(|r| r.path == path) {
            Some(i) => i,
            None => {
                self.resources.push(RouteResource {
                    path,
                    methods: Vec::new(),
                    service: resource(path),
                });
                self.resources.len() - 1
            }
        };
        let entry = &mut self.resources[i];
        let service = std::mem::replace(&mut entry.service, web::resource(path));
        entry.service = service.route(web::method(method.clone()).to(handler));
        entry.methods.push(method);
        self
    }

    /// Every method reaches `handler`, which answers for the `documented` ones.
    pub fn any<F, Args>(&mut self, path: &'static str, documented: &[&str], handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.resources.push(RouteResource {
            path,
            methods: documented
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            service: web::resource(path).route(web::route().to(handler)),
        });
        self
    }

    pub fn get<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.add(Method::GET, path, handler)
    }

    pub fn post<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.add(Method::POST, path, handler)
    }

    pub fn put<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.add(Method::PUT, path, handler)
    }

    pub fn patch<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.add(Method::PATCH, path, handler)
    }

    pub fn delete<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.add(Method::DELETE, path, handler)
    }

    /// Every `(method, path)` served, paths in actix form (`/v1/events/{id}`).
    pub fn served(&self) -> Vec<(Method, &'static str)> {
        self.resources
            .iter()
            .flat_map(|r| r.methods.iter().map(|m| (m.clone(), r.path)))
            .collect()
    }
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

/// R7: whatever bytes arrive, the API's parsers and the filter matcher answer (an error or a
/// value) and never panic or overflow the stack.
#[cfg(test)]
mod parsers_never_panic {
    use proptest::prelude::*;

    use super::json;
    use crate::domain::rules::json_contains;

    fn parse_all(bytes: &[u8]) {
        let _ = json::parse::<serde_json::Value>(bytes);
        let _ = json::parse::<super::sources::SourceIn>(bytes);
        let _ = json::parse::<super::destinations::DestinationIn>(bytes);
        let _ = json::parse::<super::connections::ConnectionIn>(bytes);
        let _ = json::parse::<super::connections::UnpauseIn>(bytes);
        let _ = json::parse::<super::bulk::BulkRetryIn>(bytes);
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(params) = json::QueryParams::parse(text) {
                let _ = params.list_query(&crate::domain::TeamId::new());
                let _ = params.timestamp("created_at[gte]");
                let _ = params.bool("dead_lettered");
            }
            let _ = crate::domain::dedupe::json_pointer(text);
        }
    }

    #[test]
    fn deep_nesting_huge_numbers_and_bad_utf8_are_refused_not_fatal() {
        let deep_array = "[".repeat(10_000) + &"]".repeat(10_000);
        let deep_object = r#"{"a":"#.repeat(10_000) + "1" + &"}".repeat(10_000);
        let huge = format!(
            r#"{{"name": "x", "url": "http://a", "rate_limit": {}}}"#,
            "9".repeat(400)
        );
        let floats = r#"{"name": "x", "url": "http://a", "timeout_ms": 1e308}"#;
        for input in [
            deep_array.as_bytes(),
            deep_object.as_bytes(),
            huge.as_bytes(),
            floats.as_bytes(),
            b"{\"name\": \"\xff\xfe\"}",
            b"\xef\xbb\xbf{}",
            b"",
            b"null",
        ] {
            parse_all(input);
            assert!(json::parse::<super::destinations::DestinationIn>(input).is_err());
        }
        // The deepest a body can be is serde_json's limit; the matcher handles that.
        let deep: Result<serde_json::Value, _> = serde_json::from_str(&deep_object);
        assert!(deep.is_err(), "serde_json refuses 10,000 levels");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z]{0,4}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            parse_all(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics_and_a_value_contains_itself(v in json_value(), w in json_value()) {
            let text = serde_json::to_vec(&v).unwrap();
            parse_all(&text);
            prop_assert!(json_contains(&v, &v));
            let _ = json_contains(&v, &w);
        }
    }
}
