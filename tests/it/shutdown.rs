//! SIGTERM: in-flight attempts finish, the process exits 0, nothing is lost.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, sample_body, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_loses_nothing() {
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(300));
    let mut server = TestServer::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.extend(
            server
                .ingest_ok(&src, sample_body("term", i), "application/json")
                .await,
        );
    }
    assert_eq!(ids.len(), 20);
    eventually(Duration::from_secs(15), "a delivery in flight", || async {
        receiver.in_flight() >= 1
    })
    .await;
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");

    server.restart().await;
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(
        Duration::from_secs(30),
        "all 20 events SUCCESSFUL after restart",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
    let seen = receiver.delivered_ids();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
}
