//! Delivery: byte-for-byte, in order, one attempt each; fan-out to two connections.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, sample_body, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_events_arrive_in_order_byte_for_byte() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _dest, _conn) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 1 }), json!([]))
        .await;

    let mut sent = Vec::new(); // (event id, body, content-type)
    for i in 0..100 {
        let body = sample_body("order", i);
        let content_type = if i % 7 == 0 {
            "application/json; charset=utf-8"
        } else {
            "application/json"
        };
        let ids = server.ingest_ok(&src, body.clone(), content_type).await;
        assert_eq!(ids.len(), 1, "one connection, one event: {ids:?}");
        sent.push((ids[0].clone(), body, content_type));
    }
    let ids: Vec<String> = sent.iter().map(|s| s.0.clone()).collect();

    eventually(Duration::from_secs(30), "receiver got 100 hits", || async {
        receiver.hit_count() >= 100
    })
    .await;
    let s = &server;
    let src_ref = &src;
    let ids_ref = &ids;
    eventually(
        Duration::from_secs(30),
        "all 100 events SUCCESSFUL",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;

    let hits = receiver.hits();
    assert_eq!(
        hits.len(),
        100,
        "no failure, so exactly one delivery per event"
    );
    for (i, (hit, (id, body, content_type))) in hits.iter().zip(&sent).enumerate() {
        assert_eq!(
            hit.header("x-fasthook-event-id"),
            Some(id.as_str()),
            "hit #{i} is not the event POSTed #{i} (order broken?)"
        );
        assert_eq!(hit.method, "POST", "hit #{i}");
        assert_eq!(
            hit.body,
            *body,
            "hit #{i}: body not byte-for-byte:\n got {:?}\nsent {:?}",
            String::from_utf8_lossy(&hit.body),
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            hit.header("content-type"),
            Some(*content_type),
            "hit #{i} content-type"
        );
        assert_eq!(
            hit.header("x-fasthook-attempt"),
            Some("1"),
            "hit #{i} attempt header"
        );
    }

    let events = server.events(&format!("source_id={src}")).await;
    assert_eq!(events.len(), 100, "events listed for the source");
    for (i, id) in ids.iter().enumerate() {
        let event = server.event(id).await;
        let sent_json: serde_json::Value = serde_json::from_slice(&sent[i].1).unwrap();
        assert_eq!(
            event["data"]["body"], sent_json,
            "GET /v1/events/{id} data.body: {event}"
        );
        assert!(
            event["data"]["headers"].is_object(),
            "data.headers: {event}"
        );
        assert_eq!(event["status"], "SUCCESSFUL", "{event}");
        assert_eq!(event["attempts"], 1, "{event}");
        assert!(event["dead_lettered_at"].is_null(), "{event}");
        let attempts = server.attempts(id).await;
        assert_eq!(attempts.len(), 1, "event {id} attempts: {attempts:?}");
        let a = &attempts[0];
        assert_eq!(a["event_id"], id.as_str(), "{a}");
        assert_eq!(a["attempt_number"], 1, "{a}");
        assert_eq!(a["trigger"], "INITIAL", "{a}");
        assert_eq!(a["status"], "SUCCESSFUL", "{a}");
        assert_eq!(a["response_status"], 200, "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_two_connections() {
    let r1 = TestReceiver::start().await;
    let r2 = TestReceiver::start().await;
    let server = TestServer::start().await;
    let src = server.create_source("fanout").await;
    let src_id = src["id"].as_str().unwrap().to_string();
    let d1 = server.create_destination(json!({ "url": r1.url() })).await;
    let d2 = server.create_destination(json!({ "url": r2.url() })).await;
    let c1 = server
        .create_connection(&src_id, d1["id"].as_str().unwrap(), json!([]))
        .await;
    let c2 = server
        .create_connection(&src_id, d2["id"].as_str().unwrap(), json!([]))
        .await;

    let body = sample_body("fanout", 1);
    // A provider header travels with the event (only hop-by-hop headers are dropped).
    let resp = server
        .client()
        .post(server.url(&format!("/e/{src_id}")))
        .header("content-type", "application/json")
        .header("x-provider-event", "evt-from-provider-42")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let answer: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{answer}");
    let ids: Vec<String> = answer["event_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no event_ids: {answer}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "two connections, two events: {answer}");
    assert_ne!(ids[0], ids[1]);

    eventually(
        Duration::from_secs(15),
        "both receivers got the event",
        || async { r1.hit_count() >= 1 && r2.hit_count() >= 1 },
    )
    .await;
    let h1 = r1.hits();
    let h2 = r2.hits();
    for h in [&h1[0], &h2[0]] {
        assert_eq!(h.body, body);
        assert_eq!(h.header("content-type"), Some("application/json"));
        assert_eq!(
            h.header("x-provider-event"),
            Some("evt-from-provider-42"),
            "original headers are forwarded: {:?}",
            h.headers
        );
        assert_eq!(h.header("x-fasthook-attempt"), Some("1"));
    }
    let seen: HashSet<String> = [h1[0].event_id(), h2[0].event_id()].into_iter().collect();
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(seen, expected, "each receiver gets its own event id");

    let request_id = answer["request_id"].as_str().unwrap();
    let events = server.events(&format!("request_id={request_id}")).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let conns: HashSet<&str> = events
        .iter()
        .map(|e| e["connection_id"].as_str().unwrap())
        .collect();
    let want: HashSet<&str> = [c1["id"].as_str().unwrap(), c2["id"].as_str().unwrap()]
        .into_iter()
        .collect();
    assert_eq!(conns, want);
    for e in &events {
        assert_eq!(e["request_id"], request_id, "{e}");
        assert_eq!(e["source_id"], src_id.as_str(), "{e}");
    }
    let s = &server;
    let src_ref = &src_id;
    let ids_ref = &ids;
    eventually(
        Duration::from_secs(15),
        "both events SUCCESSFUL",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_utf8_is_shown_and_delivered_byte_for_byte() {
    use base64::Engine as _;
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let bytes: Vec<u8> = vec![0xff, 0xfe, 0x00, b'a', 0xc3, 0x28, b'\n'];
    let (status, v) = server
        .ingest(&src, bytes.clone(), "application/octet-stream")
        .await;
    assert_eq!(status, 200, "{v}");
    let request_id = v["request_id"].as_str().unwrap().to_string();
    let event_id = v["event_ids"][0].as_str().unwrap().to_string();
    let decode = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 string"))
            .expect("valid base64")
    };
    let (status, request) = server
        .api()
        .get(&format!("/v1/requests/{request_id}"))
        .await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["encoding"], "base64", "{request}");
    assert_eq!(decode(&request["body"]), bytes);
    let event = server.event(&event_id).await;
    assert_eq!(event["data"]["encoding"], "base64", "{event}");
    assert_eq!(decode(&event["data"]["body"]), bytes);
    eventually(Duration::from_secs(10), "delivered", || async {
        receiver.hit_count() == 1
    })
    .await;
    assert_eq!(receiver.hits()[0].body, bytes, "delivered exactly");
    // Text and JSON say so.
    let (_, v) = server.ingest(&src, "plain text", "text/plain").await;
    let id = v["request_id"].as_str().unwrap();
    let (_, request) = server.api().get(&format!("/v1/requests/{id}")).await;
    assert_eq!(
        (request["encoding"].clone(), request["body"].clone()),
        (json!("text"), json!("plain text"))
    );
}
