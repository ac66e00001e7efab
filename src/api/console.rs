//! The operator console: three static files compiled into the binary and served at
//! `/console`. It is a client of the public API like any other; the server only hands out
//! the files, under a Content-Security-Policy that lets them load nothing else.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::ApiError;

/// Only the console's own files, and calls back to this origin. No inline script or style,
/// no frames, no form posts: an injected string in an event's payload cannot run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/console.css"),
    },
];

fn serve(name: &str) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return actix_web::ResponseError::error_response(&ApiError::NoRoute {
            method: "GET".into(),
            path: format!("/console/{name}"),
        });
    };
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // A new binary may bring new files: revalidate rather than run a stale console.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.bytes)
}

async fn index() -> HttpResponse {
    serve("index.html")
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    serve(&name)
}

/// `/console`, `/console/` and `/console/{file}`, for GET and HEAD. Not in the API's route
/// table: these are not API routes and the API document does not list them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // HEAD too: uptime checks and link checkers ask with it.
    for path in ["/console", "/console/"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(index))
                .route(web::head().to(index)),
        );
    }
    cfg.service(
        web::resource("/console/{name}")
            .route(web::get().to(asset))
            .route(web::head().to(asset)),
    );
}
