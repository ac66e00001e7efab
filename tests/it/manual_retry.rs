//! `POST /v1/events/:id/retry`: a `MANUAL` attempt of a finished event, out of the
//! dead-letter queue; held while its connection is paused; refused for an event that is
//! held or waiting already.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, breaker_off, eventually, TestReceiver, TestServer};

fn no_retries() -> Value {
    json!([{ "type": "retry", "strategy": "linear", "count": 0, "interval": 1000 }])
}

/// A pipeline whose receiver answers 500 and one event dead-lettered after its only attempt.
/// Answers (source, connection, event).
async fn dead_lettered_event(
    server: &TestServer,
    receiver: &TestReceiver,
) -> (String, String, String) {
    receiver.set_status(500);
    let (src, _, conn) = server
        .pipeline(&receiver.url(), breaker_off(), no_retries())
        .await;
    let id = server
        .ingest_ok(&src, r#"{"n":1}"#, "application/json")
        .await[0]
        .clone();
    eventually(Duration::from_secs(20), "dead-lettered", || async {
        server.event(&id).await["dead_lettered_at"].is_string()
    })
    .await;
    (src, conn, id)
}

async fn retry(server: &TestServer, id: &str) -> (u16, Value) {
    server
        .api()
        .post(&format!("/v1/events/{id}/retry"), &json!({}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_takes_an_event_out_of_the_dead_letter_queue_and_delivers_it_manually() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (_, _, id) = dead_lettered_event(&server, &receiver).await;
    let listed = server.events("dead_lettered=true").await;
    assert!(listed.iter().any(|e| e["id"] == id.as_str()));

    receiver.set_status(200);
    let (status, v) = retry(&server, &id).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "QUEUED", "{v}");
    assert!(
        v["dead_lettered_at"].is_null(),
        "out of the dead-letter queue: {v}"
    );
    eventually(Duration::from_secs(20), "delivered", || async {
        server.event(&id).await["status"] == "SUCCESSFUL"
    })
    .await;
    let attempts = server.attempts(&id).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1]["trigger"], "MANUAL");
    assert_eq!(
        attempts[1]["attempt_number"], 2,
        "numbers go on: {attempts:?}"
    );
    let listed = server.events("dead_lettered=true").await;
    assert!(!listed.iter().any(|e| e["id"] == id.as_str()));
    // Delivered events can be sent again too.
    let (status, v) = retry(&server, &id).await;
    assert_eq!(status, 200, "{v}");
    eventually(Duration::from_secs(20), "sent again", || async {
        receiver.hit_count() == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_retried_while_paused_is_held_and_reaches_the_receiver_after_unpause() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (_, conn, id) = dead_lettered_event(&server, &receiver).await;
    receiver.set_status(200);
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;

    let (status, v) = retry(&server, &id).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "HOLD", "{v}");
    assert_error(retry(&server, &id).await, 409, Some("EVENT_ON_HOLD"));
    let held = server
        .events(&format!("connection_id={conn}&status=HOLD"))
        .await;
    assert_eq!(held.len(), 1);
    assert_eq!(
        receiver.hit_count(),
        1,
        "only the first, failed attempt so far"
    );

    api.put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    eventually(
        Duration::from_secs(20),
        "delivered after unpause",
        || async { server.event(&id).await["status"] == "SUCCESSFUL" },
    )
    .await;
    assert_eq!(receiver.hit_count(), 2);
    assert_eq!(server.attempts(&id).await[1]["trigger"], "UNPAUSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_waiting_or_unknown_event_is_refused() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    server
        .api()
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let held = server
        .ingest_ok(&src, r#"{"n":1}"#, "application/json")
        .await[0]
        .clone();
    assert_error(retry(&server, &held).await, 409, Some("EVENT_ON_HOLD"));
    server.admin().put("/admin/engine/pause", None).await;
    server
        .api()
        .put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    let queued = server
        .ingest_ok(&src, r#"{"n":2}"#, "application/json")
        .await[0]
        .clone();
    assert_error(retry(&server, &queued).await, 409, Some("EVENT_QUEUED"));
    assert_error(
        retry(&server, "evt_01M97KBVMTHGG1QE4EKD96QX9Q").await,
        404,
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_replays_through_todays_routing_as_new_events() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (status, first) = server.ingest(&src, r#"{"n":1}"#, "application/json").await;
    assert_eq!(status, 200, "{first}");
    eventually(Duration::from_secs(10), "delivered", || async {
        receiver.hit_count() == 1
    })
    .await;
    // A second branch since: the replay goes down both.
    let dest = server
        .create_destination(json!({ "url": format!("{}/second", receiver.base_url()) }))
        .await;
    server
        .create_connection(&src, dest["id"].as_str().unwrap(), json!([]))
        .await;
    let original = first["request_id"].as_str().unwrap();
    let (status, v) = server
        .api()
        .post(&format!("/v1/requests/{original}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["replay_of"], original);
    assert_ne!(v["request_id"], original);
    let new_events = v["event_ids"].as_array().unwrap();
    assert_eq!(new_events.len(), 2, "{v}");
    eventually(Duration::from_secs(10), "both delivered", || async {
        receiver.hit_count() == 3
    })
    .await;
    // The request's own record lists its events: a page of one, then the other.
    let replay = v["request_id"].as_str().unwrap();
    let (_, first) = server
        .api()
        .get(&format!("/v1/events?request_id={replay}&limit=1&dir=asc"))
        .await;
    assert_eq!(first["count"], 1, "{first}");
    let next = first["pagination"]["next"].as_str().expect("a second page");
    let (_, second) = server
        .api()
        .get(&format!(
            "/v1/events?request_id={replay}&limit=1&dir=asc&next={next}"
        ))
        .await;
    assert_eq!(second["count"], 1, "{second}");
    assert!(second["pagination"]["next"].is_null(), "{second}");
    let listed: Vec<&Value> = vec![&first["models"][0]["id"], &second["models"][0]["id"]];
    assert_eq!(listed, new_events.iter().collect::<Vec<_>>());
    let bodies: Vec<Vec<u8>> = receiver.hits().iter().map(|h| h.body.clone()).collect();
    assert!(
        bodies.iter().all(|b| b == br#"{"n":1}"#),
        "the same body each time"
    );
    assert_error(
        server
            .api()
            .post(
                "/v1/requests/req_01M97KBVMTHGG1QE4EKD96QX9Q/retry",
                &json!({}),
            )
            .await,
        404,
        None,
    );
}
