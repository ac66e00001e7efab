//! kill -9 loses nothing that was answered 200, and in-flight attempts are made again.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::common::{breaker_off, eventually, is_2xx, sample_body, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_survive_kill9_and_are_delivered_after_restart() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let mut server = TestServer::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 1000, "interval": 300 }]);
    let (src, _, _) = server.pipeline(&receiver.url(), breaker_off(), rules).await;

    let mut ids = Vec::new();
    for i in 0..50 {
        let got = server
            .ingest_ok(&src, sample_body("crash", i), "application/json")
            .await;
        assert_eq!(got.len(), 1);
        ids.extend(got);
    }
    server.kill9();
    server.restart().await;

    let listed: HashSet<String> = server
        .events(&format!("source_id={src}"))
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !listed.contains(*id)).collect();
    assert!(missing.is_empty(), "events lost by kill -9: {missing:?}");
    assert_eq!(listed.len(), 50, "no extra events either");

    receiver.set_status(200);
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(
        Duration::from_secs(30),
        "all 50 events SUCCESSFUL after restart",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
    let delivered = receiver.delivered_ids();
    let not_delivered: Vec<&String> = ids.iter().filter(|id| !delivered.contains(*id)).collect();
    assert!(
        not_delivered.is_empty(),
        "SUCCESSFUL but never answered 2xx: {not_delivered:?}"
    );
    // Bodies come back from the body log after the kill, byte for byte.
    let hits = receiver.hits();
    for (i, id) in ids.iter().enumerate() {
        let delivered = hits
            .iter()
            .find(|h| h.event_id() == *id && is_2xx(h.status))
            .expect("delivered");
        assert_eq!(
            delivered.body,
            sample_body("crash", i),
            "event {id} was delivered after the restart with another body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_deliveries_are_made_again_after_kill9() {
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(200));
    let mut server = TestServer::start().await;
    let (src, _, _) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 4 }), json!([]))
        .await;

    // Ingest in parallel so that ingestion is short next to the ~2 s of deliveries.
    let answers = futures_util::future::join_all(
        (0..40).map(|i| server.ingest_ok(&src, sample_body("inflight", i), "application/json")),
    )
    .await;
    let ids: Vec<String> = answers.into_iter().flatten().collect();
    assert_eq!(ids.len(), 40);
    eventually(Duration::from_secs(15), "deliveries in flight", || async {
        receiver.in_flight() >= 1
    })
    .await;
    server.kill9();
    // The process is dead: these attempts never got their answer, so they must be made again.
    let cut = receiver.hit_count();
    let interrupted = receiver.in_flight_ids();
    assert!(
        !interrupted.is_empty(),
        "no delivery was in flight at the kill; the test proves nothing"
    );
    server.restart().await;

    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(
        Duration::from_secs(30),
        "all 40 events SUCCESSFUL after restart",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
    let seen = receiver.delivered_ids();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let hits = receiver.hits();
    for id in &interrupted {
        assert!(
            hits[cut..]
                .iter()
                .any(|h| h.event_id() == *id && h.is_completed() && is_2xx(h.status)),
            "event {id} was in flight at the kill but was not delivered again after restart"
        );
    }
}
