//! `GET /v1/metrics/events`: the events created in each time bucket, counted by their status
//! now, and their attempts; read from the store's per-minute counts, never from the events.

use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeMap;

use serde_json::Value;

use super::auth::Auth;
use super::error::ApiError;
use super::json::QueryParams;
use super::openapi::ApiErrors;
use crate::domain::event_metrics::{buckets, Granularity, Measure};
use crate::domain::*;
use crate::engine::Engine;
use crate::store::CountsFilter;

/// The most buckets one query answers (a day by the minute fits).
const MAX_BUCKETS: u64 = 1500;

/// Without `from`, the day before `to`.
const DEFAULT_SPAN_MS: u64 = 24 * 60 * 60 * 1000;

/// The answer: one entry per time bucket, oldest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct EventsMetricsOut {
    data: Vec<MetricsBucket>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct MetricsBucket {
    /// The bucket's start.
    time_bucket: Timestamp,
    /// The filters asked for (`connection_id`, `destination_id`, `source_id`).
    dimensions: BTreeMap<&'static str, String>,
    /// The measures asked for, by name.
    #[schema(value_type = BTreeMap<String, f64>)]
    metrics: BTreeMap<&'static str, Value>,
}

/// Events created in each bucket, counted by their status now, and their attempts.
#[utoipa::path(get, path = "/v1/metrics/events", tag = "metrics",
    params(
        ("from" = Option<String>, Query, description = "RFC 3339; default a day before `to`"),
        ("to" = Option<String>, Query, description = "RFC 3339; default now"),
        ("granularity" = Option<String>, Query, description = "`1m`, `1h` (default) or `1d`; at most 1500 buckets"),
        ("connection_id" = Option<String>, Query, description = "Only this connection's events (web_…)"),
        ("destination_id" = Option<String>, Query, description = "Only this destination's events (des_…)"),
        ("source_id" = Option<String>, Query, description = "Only this source's events (src_…)"),
        ("measures[]" = Option<Vec<String>>, Query, description = "hold_count, queued_count, scheduled_count, failed_count, delivered_count, attempt_count, error_rate; repeatable (default all)"),
    ),
    responses((status = 200, description = "The buckets", body = EventsMetricsOut), ApiErrors))]
pub(super) async fn events_metrics(
    engine: web::Data<Engine>,
    auth: Auth,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(req.query_string())?;
    params.only(&[
        "from",
        "to",
        "granularity",
        "connection_id",
        "destination_id",
        "source_id",
        "measures",
        "measures[]",
    ])?;
    let to = params
        .timestamp("to")?
        .unwrap_or_else(Timestamp::now)
        .millis();
    let from = match params.timestamp("from")? {
        Some(t) => t.millis(),
        None => to.saturating_sub(DEFAULT_SPAN_MS),
    };
    if from >= to {
        return Err(ApiError::validation("from", "must be before `to`"));
    }
    let granularity = match params.get("granularity") {
        None => Granularity::Hour,
        Some(g) => Granularity::parse(g)
            .ok_or_else(|| ApiError::validation("granularity", "must be one of 1m, 1h, 1d"))?,
    };
    let span = to - granularity.bucket_of(from);
    if span.div_ceil(granularity.millis()) > MAX_BUCKETS {
        return Err(ApiError::validation(
            "granularity",
            format!("the range holds more than {MAX_BUCKETS} buckets of this size; use a larger one or a shorter range"),
        ));
    }
    let measures = match params.all("measures") {
        asked if asked.is_empty() => Measure::ALL.to_vec(),
        asked => asked
            .into_iter()
            .map(|m| {
                Measure::parse(m).ok_or_else(|| {
                    let valid: Vec<&str> = Measure::ALL.iter().map(|m| m.as_str()).collect();
                    ApiError::validation(
                        "measures[]",
                        format!("`{m}` is not a measure; one of {}", valid.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let filter = CountsFilter {
        connection: params.id("connection_id", ConnectionId::parse)?,
        destination: params.id("destination_id", DestinationId::parse)?,
        source: params.id("source_id", SourceId::parse)?,
    };
    let mut dimensions = BTreeMap::new();
    for (name, id) in [
        (
            "connection_id",
            filter.connection.as_ref().map(|c| c.as_str()),
        ),
        (
            "destination_id",
            filter.destination.as_ref().map(|d| d.as_str()),
        ),
        ("source_id", filter.source.as_ref().map(|s| s.as_str())),
    ] {
        if let Some(id) = id {
            dimensions.insert(name, id.to_owned());
        }
    }
    let (store, team) = (engine.store().clone(), auth.team.clone());
    let first = granularity.bucket_of(from);
    let minutes =
        crate::store::readers::read(move || store.event_counts(&team, first, to, &filter))
            .await
            .map_err(|e| ApiError::Internal(format!("events metrics: {e}")))??;
    let data = buckets(minutes, from, to, granularity)
        .into_iter()
        .map(|(start, counts)| MetricsBucket {
            time_bucket: Timestamp(start),
            dimensions: dimensions.clone(),
            metrics: measures
                .iter()
                .map(|m| (m.as_str(), m.value(&counts)))
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(EventsMetricsOut { data }))
}

pub fn routes(r: &mut super::Routes) {
    r.get("/v1/metrics/events", events_metrics);
}
