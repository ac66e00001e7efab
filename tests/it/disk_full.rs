//! A full disk (R12) with the store's test switch (`FASTHOOK_FAULT_FILE`, debug builds): sled
//! fails as it does on ENOSPC and stays failed. Ingress answers 503 with `Retry-After` and
//! never 200 for what it did not store, `/readyz` says 503, and when space returns the
//! gateway reopens its store by itself, in the same process and on the same address. Every
//! event answered 200 is delivered. (`scripts/check-disk-full.sh` does the same on a real
//! full filesystem, in `.ci/run`.)

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, poll, ServerOpts, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_the_gateway_recovers_by_itself_when_space_returns() {
    let faults = tempfile::tempdir().unwrap();
    let switch = faults.path().join("disk-full");
    let server = TestServer::start_with(ServerOpts {
        config: None,
        env: vec![("FASTHOOK_FAULT_FILE".into(), switch.display().to_string())],
    })
    .await;
    let receiver = TestReceiver::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let pid = server.pid();
    let mut accepted: Vec<String> = Vec::new();
    for i in 0..5 {
        accepted.extend(
            server
                .ingest_ok(&src, format!(r#"{{"before": {i}}}"#), "application/json")
                .await,
        );
    }

    std::fs::write(&switch, b"").unwrap();
    let mut refused = 0;
    for i in 0..20 {
        let resp = server
            .client()
            .post(server.url(&format!("/e/{src}")))
            .header("content-type", "application/json")
            .body(format!(r#"{{"full": {i}}}"#))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(status, 503, "request {i} on a full disk");
        assert!(resp.headers().get("retry-after").is_some());
        refused += 1;
    }
    assert_eq!(server.readyz().await, 503, "/readyz on a full disk");

    std::fs::remove_file(&switch).unwrap();
    let after = poll(Duration::from_secs(60), || async {
        let resp = server
            .client()
            .post(server.url(&format!("/e/{src}")))
            .header("content-type", "application/json")
            .body(r#"{"after": 0}"#)
            .send()
            .await
            .ok()?;
        if resp.status().as_u16() != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
        Some(
            v["event_ids"]
                .as_array()?
                .iter()
                .map(|e| e.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
        )
    })
    .await
    .expect("ingress takes requests again within 60 s of space returning");
    accepted.extend(after);
    assert_eq!(server.pid(), pid, "the gateway kept running");
    assert!(
        server.stderr_text().contains("restarting in place"),
        "the store was reopened by a restart in place"
    );
    assert_eq!(server.readyz().await, 200);

    // The ledger: every event answered 200 is delivered; nothing refused was stored.
    eventually(
        Duration::from_secs(30),
        "every accepted event is delivered",
        || async {
            let delivered: std::collections::HashSet<String> =
                receiver.hits().iter().map(|h| h.event_id()).collect();
            accepted.iter().all(|e| delivered.contains(e))
        },
    )
    .await;
    let stored = server
        .list_all("/v1/requests", &format!("source_id={src}"))
        .await;
    assert_eq!(stored.len(), accepted.len(), "refused: {refused}");
}
