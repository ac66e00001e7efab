//! Logs: JSON lines with `[log] format = "json"`, and with debug spans on, every line of an
//! attempt carries its event, request and destination ids; no secret is ever written.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{poll, ServerOpts, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_ids_of_the_ingest_and_the_attempt_and_no_secret() {
    let receiver = TestReceiver::start().await;
    let mut opts = ServerOpts::config("[log]\nformat = \"json\"\n");
    opts.env
        .push(("FASTHOOK_LOG".into(), "fasthook=debug".into()));
    let server = TestServer::start_with(opts).await;
    // Secrets of every kind travel through this run: the destination signs, and a second
    // source verifies Standard Webhooks signatures (a request with a bad one is refused).
    let signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verifying = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let (src, dest, conn) = server
        .pipeline(
            &receiver.url(),
            json!({"signing_secret": signing}),
            json!([]),
        )
        .await;
    let verified = server
        .create_source_json(json!({"name": "verified", "verification": {"type": "standard_webhooks", "secret": verifying}}))
        .await;
    let (status, _) = server
        .ingest(verified["id"].as_str().unwrap(), "{}", "application/json")
        .await;
    assert_eq!(status, 401);
    let event = server.send_events(&src, 1, "logged").await.remove(0);
    let lines = poll(Duration::from_secs(20), || async {
        let lines: Vec<Value> = server
            .stderr_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "attempt finished")
            .then_some(lines)
    })
    .await
    .expect("a JSON line for the finished attempt");
    let finished = lines
        .iter()
        .find(|l| l["fields"]["message"] == "attempt finished")
        .unwrap();
    let span = &finished["span"];
    assert_eq!(span["name"], "attempt", "{finished}");
    assert_eq!(span["event_id"], event.as_str(), "{finished}");
    assert_eq!(span["destination_id"], dest.as_str(), "{finished}");
    assert_eq!(span["attempt"], 1, "{finished}");
    assert!(span["request_id"]
        .as_str()
        .is_some_and(|r| r.starts_with("req_")));
    let routed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "routed")
        .expect("a routing line");
    assert_eq!(routed["span"]["name"], "ingest");
    assert_eq!(routed["span"]["source_id"], src.as_str());
    assert_eq!(routed["span"]["request_id"], span["request_id"]);
    assert_eq!(routed["fields"]["connection_id"], conn.as_str());
    let text = server.stderr_text();
    assert!(
        !text.contains(&server.api_key),
        "the API key is never logged"
    );
    assert!(
        !text.contains(&server.admin_key),
        "the admin key is never logged"
    );
    for secret in [signing, verifying] {
        assert!(!text.contains(secret), "a signing secret was logged");
        assert!(!text.contains(&secret["whsec_".len()..]));
    }
}
