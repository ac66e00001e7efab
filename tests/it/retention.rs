//! Retention (R14's mechanism) on a real server: finished requests go with their events,
//! attempts and bodies once `retention.days` has passed, whole body segments are deleted, and
//! anything with work left — a held event — is kept, body and all, however old.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, id_of, ServerOpts, TestReceiver, TestServer};

/// 0.00003 days is 2.6 s.
const CONFIG: &str = "[retention]\ndays = 0.00003\nsweep_interval = \"300ms\"\n\n[store]\nbody_segment_bytes = 8192\n";

fn segments(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("bodies"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_requests_are_purged_with_their_bodies_and_held_work_is_kept() {
    let server = TestServer::start_with(ServerOpts::config(CONFIG)).await;
    let receiver = TestReceiver::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (held_src, _, held_conn) = server.paused_pipeline(&receiver.url()).await;
    let held_body = format!(r#"{{"held": true, "pad": "{}"}}"#, "h".repeat(900));
    let held = server
        .ingest_ok(&held_src, held_body.clone(), "application/json")
        .await;

    let pad = "x".repeat(1000);
    let mut delivered = Vec::new();
    for i in 0..40 {
        delivered.extend(
            server
                .ingest_ok(
                    &src,
                    format!(r#"{{"i": {i}, "pad": "{pad}"}}"#),
                    "application/json",
                )
                .await,
        );
    }
    eventually(Duration::from_secs(20), "the 40 are delivered", || async {
        receiver.hits().len() == 40
    })
    .await;
    let before = segments(&server);
    assert!(before >= 4, "{before} segments");

    eventually(
        Duration::from_secs(30),
        "the delivered requests are purged",
        || async {
            server
                .list_all("/v1/requests", &format!("source_id={src}"))
                .await
                .is_empty()
        },
    )
    .await;
    for id in &delivered {
        let (status, _) = server.api().get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, 404, "{id} is gone");
    }
    eventually(
        Duration::from_secs(10),
        "their body segments are deleted",
        || async { segments(&server) <= 3 },
    )
    .await;

    // The held request is older than the retention too, and kept whole.
    let (status, event) = server.api().get(&format!("/v1/events/{}", held[0])).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "HOLD");
    let (status, _) = server
        .api()
        .put(&format!("/v1/connections/{held_conn}/unpause"), None)
        .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(20),
        "the held event is delivered",
        || async { receiver.hits().iter().any(|h| h.event_id() == held[0]) },
    )
    .await;
    let hit = receiver
        .hits()
        .into_iter()
        .find(|h| h.event_id() == held[0])
        .unwrap();
    assert_eq!(
        hit.body,
        held_body.as_bytes(),
        "its body outlived the segments around it"
    );
    assert!(id_of(&event).starts_with("evt_"));
}
