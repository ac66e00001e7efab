//! A backlog many times larger than a destination's in-memory window waits on disk, survives
//! kill -9, and is delivered completely and in acceptance order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{eventually, ServerOpts, TestReceiver, TestServer};

const EVENTS: usize = 50_000;
const BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_window_survives_kill9_and_is_delivered_in_order() {
    let receiver = TestReceiver::start().await;
    let mut server =
        TestServer::start_with(ServerOpts::config("[delivery]\nqueue_window = 1000\n")).await;
    let (src, _, _) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 1 }), json!([]))
        .await;
    // No attempt while the backlog builds: the whole engine is paused.
    let (status, v) = server.admin().put("/admin/engine/pause", None).await;
    assert_eq!(status, 200, "{v}");

    // Batches one after the other: every event of a batch was accepted before any of the
    // next, so deliveries must come in batch order.
    let started = Instant::now();
    let mut batch_of: HashMap<String, usize> = HashMap::with_capacity(EVENTS);
    let (client, url) = (server.client().clone(), server.url(&format!("/e/{src}")));
    for batch in 0..EVENTS / BATCH {
        let sends = (0..BATCH).map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let resp = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"batch":{batch},"i":{i}}}"#))
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(resp.status(), 200);
                let body = resp.bytes().await.expect("ingest answer");
                let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
                v["event_ids"][0].as_str().unwrap().to_string()
            }
        });
        for id in futures_util::future::join_all(sends).await {
            batch_of.insert(id, batch);
        }
    }
    eprintln!("{EVENTS} events accepted in {:?}", started.elapsed());
    assert_eq!(receiver.hit_count(), 0, "nothing is attempted while paused");

    server.kill9();
    server.restart().await;
    // The operator's pause survives the crash; resuming starts the delivery.
    let (_, v) = server.admin().get("/admin/engine").await;
    assert_eq!(v["paused"], true, "{v}");
    let (status, v) = server.admin().put("/admin/engine/resume", None).await;
    assert_eq!(status, 200, "{v}");
    eventually(
        Duration::from_secs(240),
        "the whole backlog is delivered after the restart",
        || async { receiver.delivered_ids().len() == EVENTS },
    )
    .await;
    let delivered: Vec<usize> = receiver
        .hits()
        .iter()
        .filter(|h| h.status == 200)
        .map(|h| batch_of[&h.event_id()])
        .collect();
    assert_eq!(delivered.len(), EVENTS, "each event delivered once");
    let out_of_order = delivered.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(out_of_order, 0, "deliveries out of acceptance order");
}
