//! Routing through a source's connections: filter, disabled connection or destination,
//! paused (HOLD), delay (SCHEDULED, then delivered), in one request.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{eventually, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_routed_by_each_connections_state_and_rules() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let api = server.api();
    let src = server.create_source("routing").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dest = |name: &str| {
        let url = format!("{}/{name}", receiver.base_url());
        let server = &server;
        async move {
            server.create_destination(json!({ "url": url })).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let conn = |dest_id: String, rules: serde_json::Value| {
        let (server, src) = (&server, src.clone());
        async move {
            server.create_connection(&src, &dest_id, rules).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };

    let filtered = conn(
        dest("filtered").await,
        json!([{ "type": "filter", "body": { "type": "a" } }]),
    )
    .await;
    let disabled = conn(dest("disabled").await, json!([])).await;
    let paused = conn(dest("paused").await, json!([])).await;
    let delayed = conn(
        dest("delayed").await,
        json!([{ "type": "delay", "delay": 400 }]),
    )
    .await;
    let dest_off = dest("dest-off").await;
    let to_disabled_dest = conn(dest_off.clone(), json!([])).await;

    let (status, v) = api
        .put(&format!("/v1/connections/{disabled}/disable"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["disabled_at"].is_string() && v["paused_at"].is_null(),
        "{v}"
    );
    let (status, v) = api
        .patch(
            &format!("/v1/connections/{paused}"),
            &json!({ "paused_at": "2026-05-29T22:45:00.000Z" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["paused_at"], "2026-05-29T22:45:00.000Z");
    assert_eq!(
        v["rules"][0]["type"], "retry",
        "a pause-only PATCH keeps the rules: {v}"
    );
    let (status, v) = api
        .put(&format!("/v1/destinations/{dest_off}/disable"), None)
        .await;
    assert_eq!(status, 200, "{v}");

    let sent = Instant::now();
    let ids = server
        .ingest_ok(&src, br#"{"type": "b"}"#.to_vec(), "application/json")
        .await;
    assert_eq!(
        ids.len(),
        2,
        "only the paused and the delayed branch make events: {ids:?}"
    );
    let events = server.events(&format!("source_id={src}")).await;
    let status_of = |conn: &str| {
        events
            .iter()
            .find(|e| e["connection_id"] == json!(conn))
            .map(|e| e["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&paused).as_deref(), Some("HOLD"));
    assert_eq!(status_of(&delayed).as_deref(), Some("SCHEDULED"));
    for skipped in [&filtered, &disabled, &to_disabled_dest] {
        assert_eq!(status_of(skipped), None, "no event for {skipped}");
    }

    eventually(
        Duration::from_secs(10),
        "the delayed event is delivered",
        || async { receiver.hit_count() >= 1 },
    )
    .await;
    assert!(
        sent.elapsed() >= Duration::from_millis(380),
        "the delay rule was not honoured"
    );
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1, "only the delayed branch delivers");
    assert_eq!(hits[0].path, "/delayed");
    let held = events
        .iter()
        .find(|e| e["connection_id"] == json!(paused))
        .unwrap();
    assert_eq!(
        server.event(held["id"].as_str().unwrap()).await["status"],
        "HOLD",
        "a held event stays held"
    );

    // Enabling again routes again.
    let (status, _) = api
        .put(&format!("/v1/connections/{disabled}/enable"), None)
        .await;
    assert_eq!(status, 200);
    let ids = server
        .ingest_ok(&src, br#"{"type": "a"}"#.to_vec(), "application/json")
        .await;
    assert_eq!(
        ids.len(),
        4,
        "filtered (now matching), enabled, paused and delayed: {ids:?}"
    );
}
