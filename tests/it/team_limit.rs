//! The per-team ingress limit (R10): a team over `ingress.team_rate_limit` gets 429 with
//! `Retry-After` and nothing stored, while another team's requests go through; everything
//! answered 200 is delivered.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::auth::new_team;
use crate::common::{eventually, id_of, ServerOpts, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_team_gets_429s_and_the_others_do_not() {
    let server = TestServer::start_with(ServerOpts::config(
        "[ingress]\nteam_rate_limit = 5\nrate_limited_delay = \"200ms\"\n",
    ))
    .await;
    let receiver = TestReceiver::start().await;
    let (flooder, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;

    let (team_b, _, key_b) = new_team(&server, "quiet").await;
    let b = server.api_as(Some(&key_b), Some(&team_b));
    let (_, source_b) = b.post("/v1/sources", &json!({"name": "quiet"})).await;
    let (_, dest_b) = b
        .post(
            "/v1/destinations",
            &json!({"name": "quiet", "url": receiver.url()}),
        )
        .await;
    let (status, _) = b
        .post(
            "/v1/connections",
            &json!({"name": "quiet", "source_id": id_of(&source_b), "destination_id": id_of(&dest_b)}),
        )
        .await;
    assert_eq!(status, 200);

    let started = Instant::now();
    let (mut accepted, mut limited) = (0u64, 0u64);
    let mut retry_after = None;
    for i in 0..24 {
        let sent = Instant::now();
        let resp = server
            .client()
            .post(server.url(&format!("/e/{flooder}")))
            .header("content-type", "application/json")
            .body(format!(r#"{{"flood": {i}}}"#))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => accepted += 1,
            429 => {
                limited += 1;
                // The flooder waits for each refusal (half the delay at least): a tarpit,
                // not a fast answer to retry at once.
                assert!(
                    sent.elapsed() >= Duration::from_millis(100),
                    "a 429 after {:?}",
                    sent.elapsed()
                );
                retry_after = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value =
                    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                assert_eq!(body["code"], "RATE_LIMITED", "{body}");
            }
            other => panic!("flood request {i}: {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst of a second's allowance, then the refill at 5 a second.
    let most = 5 + (elapsed * 5.0).ceil() as u64;
    assert!(
        (5..=most).contains(&accepted),
        "{accepted} accepted in {elapsed:.2} s at 5/s"
    );
    assert!(limited > 0, "nothing was limited");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // The other team is not held back by the first one's flood.
    let (status, answer) = server
        .ingest(id_of(&source_b), r#"{"quiet": 1}"#, "application/json")
        .await;
    assert_eq!(status, 200, "{answer}");

    // What was refused left nothing behind; what was accepted is delivered.
    let stored = server
        .list_all("/v1/requests", &format!("source_id={flooder}"))
        .await;
    assert_eq!(stored.len() as u64, accepted);
    eventually(
        Duration::from_secs(20),
        "every accepted request is delivered",
        || async { receiver.hits().len() as u64 == accepted + 1 },
    )
    .await;
}
