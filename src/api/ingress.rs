//! `ANY /e/{source_id}`: the provider-facing URL. Answers 200 only once the request and
//! every event routed from it are durable.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;

use super::error::ApiError;
use super::openapi::IngressErrors;
use crate::domain::verify::verify;
use crate::domain::{EventId, RejectionCause, RequestId, SourceId};
use crate::engine::delivery::is_hop_by_hop;
use crate::engine::{Engine, Intake};
use crate::telemetry;

/// The provider-facing URL. Answers 200 only once the request and every event routed from it
/// are on disk; the methods a source takes are its `allowed_http_methods` (default POST).
#[utoipa::path(
    method(post, put, patch, get, delete), path = "/e/{source_id}", tag = "ingress", security(()),
    params(("source_id" = String, Path, description = "The source's id (src_…)")),
    request_body(content = Object, description = "Any body, stored and delivered byte for byte", content_type = "*/*"),
    responses((status = 200, description = "Stored, and routed to these events", body = Accepted), IngressErrors),
)]
pub(super) async fn ingest(
    engine: web::Data<Engine>,
    req: HttpRequest,
    id: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !engine.is_ready() {
        return Err(ApiError::Unavailable(
            "starting: recovery is not finished".into(),
        ));
    }
    if engine.store().disk_health().needs_reopen() {
        // It would fail at the commit anyway; this way the body is not written either.
        return Err(ApiError::Unavailable(
            "storage is full or failing; nothing was stored, retry later".into(),
        ));
    }
    let source = SourceId::parse(&id)
        .ok()
        .and_then(|id| engine.source(&id))
        .ok_or(ApiError::NotFound("source"))?;
    let label = if engine.config().telemetry.per_id_labels {
        source.id.to_string()
    } else {
        telemetry::ALL.into()
    };
    let count = |outcome: &'static str| {
        metrics::counter!(telemetry::INGRESS_REQUESTS_TOTAL, "source_id" => label.clone(), "outcome" => outcome).increment(1)
    };
    if source.disabled_at.is_some() {
        count("disabled");
        return Err(ApiError::SourceDisabled);
    }
    let method = req.method().as_str().to_ascii_uppercase();
    if !source.allowed_http_methods.contains(&method) {
        count("method_not_allowed");
        return Err(ApiError::MethodNotAllowed(method));
    }
    // Before the body is read: a flood costs the gateway as little as it can.
    if let Err(retry_after) = engine.take_ingress_allowance(&source.team_id) {
        count("rate_limited");
        // A flooding client waits for its answer instead of getting the next 429 at once:
        // its connections stay idle, not busy, and the cores go to the other teams. The wait
        // varies (½ to 1½ of the delay) so that its connections, refused together, do not
        // all come back together and spend the refilled allowance in one burst.
        let delay = engine.config().ingress.rate_limited_delay;
        tokio::time::sleep(delay.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5)))
            .await;
        return Err(ApiError::RateLimited(retry_after));
    }

    // Refuse an oversized body before reading it when its length is declared, and stop
    // reading as soon as it goes over when it is not.
    let max = engine.config().ingress.max_body_bytes;
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        count("too_large");
        return Err(ApiError::PayloadTooLarge(max));
    }
    // A body that never ends (a slow or stalled sender) is cut off: the connection and its
    // buffer are not held for ever.
    let limit = engine.config().ingress.body_timeout;
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(max));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::InvalidJson(format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > max {
                count("too_large");
                return Err(ApiError::PayloadTooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = match tokio::time::timeout(limit, read).await {
        Ok(body) => body?,
        Err(_) => {
            count("timeout");
            return Err(ApiError::RequestTimeout(limit));
        }
    };

    // Headers the `Connection` header names are this hop's too (RFC 9110 §7.6.1).
    let nominated: Vec<String> = req
        .headers()
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut headers = Vec::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        let name = name.as_str();
        if !is_hop_by_hop(name) && !nominated.iter().any(|n| n == name) {
            headers.push((
                name.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
    }

    if let Some(v) = &source.verification {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if !verify(v, lookup, &body) {
            count("rejected");
            engine
                .reject(
                    &source,
                    method,
                    headers,
                    body,
                    RejectionCause::VerificationFailed,
                )
                .await?;
            return Err(ApiError::VerificationFailed);
        }
    }

    let taken = engine
        .ingest(&source, method, headers, body, Intake::Provider)
        .await?;
    let mut answer = HttpResponse::Ok();
    if taken.repeat {
        // The first request's answer again: a provider that resends gets what it missed.
        count("duplicate");
        answer.insert_header(("x-fasthook-duplicate", "true"));
    } else {
        count("accepted");
    }
    Ok(answer.json(Accepted {
        status: "SUCCESS",
        request_id: &taken.request_id,
        event_ids: &taken.event_ids,
    }))
}

/// The answer to an accepted request (a struct, not a `json!` value: this is every request).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Accepted<'a> {
    /// Always `SUCCESS`.
    status: &'static str,
    #[schema(value_type = RequestId)]
    request_id: &'a RequestId,
    /// One per connection the request was routed to (none when nothing matched).
    #[schema(value_type = Vec<EventId>)]
    event_ids: &'a [EventId],
}

pub fn routes(r: &mut super::Routes) {
    // Any method reaches the handler, which answers for the source's own methods.
    r.any("/e/{source_id}", &super::sources::METHODS, ingest);
}
