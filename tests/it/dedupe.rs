//! Source dedupe (R11): a provider's resend within the window answers the first request and
//! makes no events; the window survives kill -9; it ends when it says.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, eventually, id_of, poll, TestReceiver, TestServer};

/// `POST /e/:source` with `headers`; (status, answer, whether it was marked a repeat).
async fn send(
    server: &TestServer,
    source: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, bool) {
    let mut req = server
        .client()
        .post(server.url(&format!("/e/{source}")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let repeat = resp.headers().get("x-fasthook-duplicate").is_some();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    (status, v, repeat)
}

/// A server and a receiver, and a source with `dedupe` routed to it.
async fn start_deduped(dedupe: Value) -> (TestServer, TestReceiver, String) {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let source = deduped_source(&server, &receiver, dedupe).await;
    (server, receiver, source)
}

/// A source with `dedupe`, routed to `receiver`.
async fn deduped_source(server: &TestServer, receiver: &TestReceiver, dedupe: Value) -> String {
    let source = server
        .create_source_json(json!({"name": "orders", "dedupe": dedupe}))
        .await;
    assert!(source["dedupe"]["window_seconds"].is_u64(), "{source}");
    let dest = server
        .create_destination(json!({"url": receiver.url()}))
        .await;
    server
        .create_connection(id_of(&source), id_of(&dest), json!([]))
        .await;
    id_of(&source).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_within_the_window_answers_the_first_request_even_after_kill9() {
    let (mut server, receiver, by_header) =
        start_deduped(json!({"header": "idempotency-key", "window_seconds": 3600})).await;
    let key = [("Idempotency-Key", "order-1")];
    let (status, first, repeat) = send(&server, &by_header, &key, r#"{"n": 1}"#).await;
    assert_eq!((status, repeat), (200, false), "{first}");
    let (status, again, repeat) = send(&server, &by_header, &key, r#"{"n": 1}"#).await;
    assert_eq!((status, repeat), (200, true), "{again}");
    assert_eq!(again["request_id"], first["request_id"]);
    assert_eq!(again["event_ids"], first["event_ids"]);
    // Another identity, or none, is a request of its own.
    let (_, other, repeat) =
        send(&server, &by_header, &[("idempotency-key", "order-2")], "{}").await;
    assert!(!repeat);
    assert_ne!(other["request_id"], first["request_id"]);
    let (_, bare1, _) = send(&server, &by_header, &[], "{}").await;
    let (_, bare2, _) = send(&server, &by_header, &[], "{}").await;
    assert_ne!(bare1["request_id"], bare2["request_id"]);

    let by_body = deduped_source(
        &server,
        &receiver,
        json!({"body_path": "$.data.id", "window_seconds": 3600}),
    )
    .await;
    let (_, a, _) = send(
        &server,
        &by_body,
        &[],
        r#"{"data": {"id": "evt_9"}, "try": 1}"#,
    )
    .await;
    let (_, b, repeat) = send(
        &server,
        &by_body,
        &[],
        r#"{"data": {"id": "evt_9"}, "try": 2}"#,
    )
    .await;
    assert!(repeat);
    assert_eq!(a["request_id"], b["request_id"]);

    // Every request delivered once: the repeats made nothing.
    eventually(Duration::from_secs(20), "five deliveries", || async {
        receiver.hits().len() == 5
    })
    .await;
    let stored = server
        .list_all("/v1/requests", &format!("source_id={by_header}"))
        .await;
    assert_eq!(stored.len(), 4);

    // The window survives kill -9.
    server.kill9();
    server.restart().await;
    let (status, after, repeat) = send(&server, &by_header, &key, r#"{"n": 1}"#).await;
    assert_eq!((status, repeat), (200, true), "{after}");
    assert_eq!(after["request_id"], first["request_id"]);

    // An operator's replay is a new request on purpose.
    let request_id = first["request_id"].as_str().unwrap();
    let (status, replay) = server
        .api()
        .post(&format!("/v1/requests/{request_id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{replay}");
    assert_ne!(replay["request_id"], first["request_id"]);
    assert!(receiver.hits().len() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_ends_and_the_rule_is_validated_and_editable() {
    let (server, _receiver, source) =
        start_deduped(json!({"header": "x-request-id", "window_seconds": 1})).await;
    let key = [("x-request-id", "r-1")];
    let (_, first, _) = send(&server, &source, &key, "{}").await;
    let first_id = first["request_id"].clone();
    // Once the second has passed, the same identity is a new request.
    let later = poll(Duration::from_secs(10), || async {
        let (_, v, repeat) = send(&server, &source, &key, "{}").await;
        (!repeat).then_some(v)
    })
    .await
    .expect("the window of one second ended");
    assert_ne!(later["request_id"], first_id);

    for (bad, field) in [
        (json!({"header": "a", "body_path": "$.id"}), "dedupe"),
        (json!({}), "dedupe"),
        (json!({"body_path": "id"}), "dedupe.body_path"),
        (json!({"header": "bad header"}), "dedupe.header"),
        (
            json!({"header": "a", "window_seconds": 0}),
            "dedupe.window_seconds",
        ),
        (json!({"header": "a", "colour": 1}), "dedupe"),
    ] {
        let v = assert_error(
            server
                .api()
                .post("/v1/sources", &json!({"name": "x", "dedupe": bad}))
                .await,
            422,
            Some("VALIDATION_ERROR"),
        );
        assert!(
            v["message"].as_str().unwrap().starts_with(field),
            "{bad}: {v}"
        );
    }

    // A PATCH can drop the rule: then repeats are requests of their own.
    let (status, patched) = server
        .api()
        .patch(&format!("/v1/sources/{source}"), &json!({"dedupe": null}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched["dedupe"].is_null(), "{patched}");
    let (_, x, _) = send(&server, &source, &key, "{}").await;
    let (_, y, repeat) = send(&server, &source, &key, "{}").await;
    assert!(!repeat);
    assert_ne!(x["request_id"], y["request_id"]);
}
