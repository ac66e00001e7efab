//! No accepted event is stranded: not by a client that hangs up, not by deletes racing
//! ingress, not by a delete that would leave work no actor owns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::common::{assert_error, breaker_off, eventually, id_of, poll, TestReceiver, TestServer};

/// Counts of each status among a source's events.
async fn status_counts(server: &TestServer, source: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for status in server.statuses(source).await.into_values() {
        *counts.entry(status).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_leave_nothing_or_an_event_that_is_delivered() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, _) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 16 }), json!([]))
        .await;
    let addr = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // Each client closes at once, as a provider with a short timeout does under load: a
    // third before its body, a third half-way through it, a third after all of it (the
    // answer never reaches anyone). `FASTHOOK_HANGUPS=10000` for the issue's full count.
    let hangups: usize = std::env::var("FASTHOOK_HANGUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let body = br#"{"type":"hangup","pad":"0123456789abcdef0123456789abcdef"}"#;
    let request = format!(
        "POST /e/{src} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut clients = Vec::new();
    for i in 0..hangups {
        let (addr, request, slots) = (addr.clone(), request.clone(), slots.clone());
        clients.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            match i % 3 {
                0 => {}
                1 => stream.write_all(&body[..body.len() / 2]).await.unwrap(),
                _ => stream.write_all(body).await.unwrap(),
            }
            // Closing with a zero linger resets the connection, as a client that gives up
            // does; the server learns at once that nobody is waiting for the answer. (Deprecated
            // because a non-zero linger blocks on drop; a zero one does not.)
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    // Wait until the stored events stop growing (the same count over six polls in a row),
    // then every one of them must be delivered.
    let s = &server;
    let src_ref = &src;
    let seen = std::cell::Cell::new((usize::MAX, 0u32));
    let seen_ref = &seen;
    let stored = poll(Duration::from_secs(20), || async move {
        let now = s.statuses(src_ref).await.len();
        let (last, same) = seen_ref.get();
        let same = if now == last { same + 1 } else { 0 };
        seen_ref.set((now, same));
        (now > 0 && same >= 6).then_some(now)
    })
    .await
    .expect("ingress never settled");
    eventually(
        Duration::from_secs(20),
        "every stored event of a hung-up client is delivered",
        || async move {
            let counts = status_counts(s, src_ref).await;
            counts.len() == 1 && counts.contains_key("SUCCESSFUL")
        },
    )
    .await;
    assert!(stored > 0, "no request was stored at all");
    // A request cut short before its body ended leaves nothing.
    let whole = hangups / 3;
    assert!(
        stored <= whole,
        "{stored} stored, but only {whole} clients sent a whole body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_connections_while_ingress_fans_out_strands_no_event() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let src = id_of(&server.create_source("fanout").await).to_string();
    let mut connections = Vec::new();
    for _ in 0..24 {
        let dest = server
            .create_destination(json!({ "url": receiver.url(), "max_concurrency": 4 }))
            .await;
        let conn = server
            .create_connection(&src, id_of(&dest), json!([]))
            .await;
        connections.push(id_of(&conn).to_string());
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let ingress = {
        let (client, url) = (server.client().clone(), server.url(&format!("/e/{src}")));
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut accepted = 0;
            let mut batch = Vec::new();
            for i in 0..600 {
                let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
                batch.push(tokio::spawn(async move {
                    let status = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"n":{i}}}"#))
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    answered.fetch_add(1, Ordering::SeqCst);
                    status
                }));
                if batch.len() == 32 {
                    for b in batch.drain(..) {
                        if b.await.unwrap().is_ok_and(|s| s == 200) {
                            accepted += 1;
                        }
                    }
                }
            }
            for b in batch {
                if b.await.unwrap().is_ok_and(|s| s == 200) {
                    accepted += 1;
                }
            }
            accepted
        })
    };
    // A connection deleted after every 25 answers, while requests routed to it are in flight.
    for (k, conn) in connections.iter().take(20).enumerate() {
        let answered = &answered;
        eventually(
            Duration::from_secs(30),
            "ingress makes progress",
            || async move { answered.load(Ordering::SeqCst) >= (k + 1) * 25 },
        )
        .await;
        let (status, v) = server
            .api()
            .delete(&format!("/v1/connections/{conn}"))
            .await;
        assert_eq!(status, 200, "delete {conn}: {v}");
    }
    let accepted = ingress.await.unwrap();
    assert_eq!(accepted, 600, "every request was answered 200");
    let s = &server;
    let src_ref = &src;
    eventually(
        Duration::from_secs(30),
        "every event, of deleted connections too, is delivered",
        || async move {
            let counts = status_counts(s, src_ref).await;
            counts.len() == 1 && counts.contains_key("SUCCESSFUL")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_waiting_events_is_deleted_only_with_them_cancelled() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let mut server = TestServer::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 100, "interval": 60000 }]);
    let (src, dest, conn) = server.pipeline(&receiver.url(), breaker_off(), rules).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.extend(
            server
                .ingest_ok(&src, format!(r#"{{"n":{i}}}"#), "application/json")
                .await,
        );
    }
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(
        Duration::from_secs(20),
        "20 events SCHEDULED",
        || async move { s.all_have_status(src_ref, ids_ref, "SCHEDULED").await },
    )
    .await;

    let (status, v) = server
        .api()
        .delete(&format!("/v1/connections/{conn}"))
        .await;
    assert_eq!(status, 200, "no held events: the connection goes: {v}");
    let got = server
        .api()
        .delete(&format!("/v1/destinations/{dest}"))
        .await;
    let err = assert_error(got, 409, Some("CONFLICT"));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("20 waiting events"),
        "{err}"
    );
    let got = server
        .api()
        .delete(&format!("/v1/destinations/{dest}?cancel=true"))
        .await;
    assert_error(got, 422, Some("VALIDATION_ERROR"));
    let (status, v) = server
        .api()
        .delete(&format!("/v1/destinations/{dest}?cancel_events=true"))
        .await;
    assert_eq!(status, 200, "{v}");
    let s = &server;
    eventually(
        Duration::from_secs(10),
        "20 events CANCELLED",
        || async move { s.all_have_status(src_ref, ids_ref, "CANCELLED").await },
    )
    .await;
    server.kill9();
    server.restart().await;
    assert!(
        server.all_have_status(&src, &ids, "CANCELLED").await,
        "cancelled for good: {:?}",
        server.statuses(&src).await
    );
    assert!(
        !server.stderr_text().contains("deleted"),
        "nothing was left for recovery to clean up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_held_events_is_deleted_only_with_them_cancelled() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (status, v) = server
        .api()
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    if status == 404 {
        // The pause action is not routed yet: pause through PATCH instead.
        let (status, v) = server
            .api()
            .patch(
                &format!("/v1/connections/{conn}"),
                &json!({ "paused_at": "2026-05-29T22:45:00.000Z" }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    } else {
        assert_eq!(status, 200, "{v}");
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.extend(
            server
                .ingest_ok(&src, format!(r#"{{"n":{i}}}"#), "application/json")
                .await,
        );
    }
    assert!(server.all_have_status(&src, &ids, "HOLD").await);
    let got = server
        .api()
        .delete(&format!("/v1/connections/{conn}"))
        .await;
    let err = assert_error(got, 409, Some("CONFLICT"));
    assert!(
        err["message"].as_str().unwrap().contains("5 held events"),
        "{err}"
    );
    let (status, v): (u16, Value) = server
        .api()
        .delete(&format!("/v1/connections/{conn}?cancel_events=true"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        server.all_have_status(&src, &ids, "CANCELLED").await,
        "{:?}",
        server.statuses(&src).await
    );
    assert_eq!(receiver.hit_count(), 0);
}
