//! The destination's circuit breaker, rate limit, `Retry-After` and retry window, end to end
//! against a real receiver.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{eventually, most_in_one_second, poll, ServerOpts, TestReceiver, TestServer};

const NO_RETRIES: &str =
    r#"[{"type": "retry", "strategy": "linear", "count": 0, "interval": 1000}]"#;

fn no_retries() -> Value {
    serde_json::from_str(NO_RETRIES).unwrap()
}

async fn circuit(server: &TestServer, dest: &str) -> Value {
    let (status, v) = server
        .api()
        .get(&format!("/v1/destinations/{dest}/circuit"))
        .await;
    assert_eq!(status, 200, "GET circuit: {v}");
    v
}

async fn wait_state(server: &TestServer, dest: &str, state: &str) -> Value {
    poll(Duration::from_secs(20), || async move {
        let c = circuit(server, dest).await;
        (c["state"] == state).then_some(c)
    })
    .await
    .unwrap_or_else(|| panic!("circuit of {dest} never became {state}"))
}

/// The trigger of the event's first recorded attempt, once one is recorded: the receiver
/// sees an attempt before its outcome reaches the store.
async fn first_trigger(server: &TestServer, event: &str) -> String {
    poll(Duration::from_secs(10), || async {
        let attempts = server.attempts(event).await;
        attempts
            .first()
            .and_then(|a| a["trigger"].as_str())
            .map(str::to_string)
    })
    .await
    .unwrap_or_else(|| panic!("no attempt of {event} was recorded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hard_failures_open_the_breaker_and_one_probe_closes_it() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server = TestServer::start().await;
    let (src, dest, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "max_concurrency": 1, "circuit": { "cooldown_seconds": 2 } }),
            no_retries(),
        )
        .await;
    let c = circuit(&server, &dest).await;
    assert_eq!(c["state"], "closed");
    assert_eq!(c["failure_threshold"], 5);
    assert_eq!(c["cooldown_seconds"], 2);
    assert_eq!(c["success_threshold"], 1);

    server.send_events(&src, 5, "failing").await;
    let opened = wait_state(&server, &dest, "open").await;
    assert_eq!(receiver.hit_count(), 5, "exactly five attempts opened it");
    assert!(opened["opened_at"].is_string() && opened["next_probe_at"].is_string());
    assert_eq!(opened["last_transition_at"], opened["opened_at"]);

    let waiting = server.send_events(&src, 3, "waiting").await;
    let s = &server;
    let (src_ref, waiting_ref) = (&src, &waiting);
    eventually(
        Duration::from_secs(5),
        "later events wait QUEUED",
        || async move { s.all_have_status(src_ref, waiting_ref, "QUEUED").await },
    )
    .await;
    let c = circuit(&server, &dest).await;
    assert_eq!(c["state"], "open", "the 2 s cooldown is not over yet: {c}");
    assert_eq!(c["queued_count"], 3);
    receiver.set_status(200);

    // No attempt while it is open; then exactly one probe.
    let r = &receiver;
    let d = &dest;
    eventually(
        Duration::from_secs(10),
        "the breaker leaves open",
        || async move {
            let state = circuit(s, d).await["state"].clone();
            if state == "open" {
                assert_eq!(r.hit_count(), 5, "an attempt started while open");
            }
            state != "open"
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the waiting events are delivered",
        || async move { s.all_have_status(src_ref, waiting_ref, "SUCCESSFUL").await },
    )
    .await;
    assert_eq!(circuit(&server, &dest).await["state"], "closed");
    assert_eq!(
        receiver.hit_count(),
        8,
        "one attempt each after the five failures"
    );
    let order: Vec<String> = receiver.hits()[5..].iter().map(|h| h.event_id()).collect();
    assert_eq!(order, waiting, "the queue flushes in acceptance order");
    assert_eq!(first_trigger(&server, &waiting[0]).await, "PROBE");
    for id in &waiting[1..] {
        assert_eq!(first_trigger(&server, id).await, "INITIAL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_reset_closes_the_breaker_and_flushes_with_reset() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(503);
    let server = TestServer::start().await;
    let (src, dest, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "max_concurrency": 1, "circuit": { "failure_threshold": 2, "cooldown_seconds": 600 } }),
            no_retries(),
        )
        .await;
    server.send_events(&src, 2, "failing").await;
    wait_state(&server, &dest, "open").await;
    let waiting = server.send_events(&src, 3, "waiting").await;
    receiver.set_status(200);
    let (status, c) = server
        .api()
        .post(
            &format!("/v1/destinations/{dest}/circuit/reset"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "closed");
    assert_eq!(c["failure_count"], 0);
    assert!(c["next_probe_at"].is_null(), "{c}");
    let s = &server;
    let (src_ref, waiting_ref) = (&src, &waiting);
    eventually(
        Duration::from_secs(10),
        "waiting events delivered",
        || async move { s.all_have_status(src_ref, waiting_ref, "SUCCESSFUL").await },
    )
    .await;
    for id in &waiting {
        assert_eq!(first_trigger(&server, id).await, "RESET");
    }
    let (status, _) = server
        .api()
        .get("/v1/destinations/des_01H0000000000000000000000/circuit")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_probes_at_its_original_deadline_after_kill9() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let mut server = TestServer::start().await;
    let (src, dest, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "max_concurrency": 1, "circuit": { "failure_threshold": 1, "cooldown_seconds": 8 } }),
            no_retries(),
        )
        .await;
    server.send_events(&src, 1, "failing").await;
    let opened = wait_state(&server, &dest, "open").await;
    let waiting = server.send_events(&src, 1, "waiting").await;
    let probe_at = opened["next_probe_at"].clone();
    let opened_at = Instant::now();
    // Three seconds into the cooldown (a wait for a time, polled, not a guess).
    poll(Duration::from_secs(10), || async move {
        (opened_at.elapsed() >= Duration::from_secs(3)).then_some(())
    })
    .await;
    server.kill9();
    receiver.set_status(200);
    server.restart().await;
    let restarted = Instant::now();
    let c = circuit(&server, &dest).await;
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(
        c["next_probe_at"], probe_at,
        "the same deadline after the crash"
    );
    let r = &receiver;
    let probed = poll(Duration::from_secs(15), || async move {
        (r.hit_count() >= 2).then(Instant::now)
    })
    .await
    .expect("the probe after the restart");
    let after = probed - restarted;
    assert!(
        after < Duration::from_millis(6_500),
        "the probe came {after:?} after the restart: the cooldown started again"
    );
    assert!(
        after > Duration::from_millis(3_000),
        "the probe came {after:?} after the restart, before the deadline"
    );
    assert_eq!(receiver.hits()[1].event_id(), waiting[0]);
    assert_eq!(first_trigger(&server, &waiting[0]).await, "PROBE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_at_the_receiver_and_loses_nothing() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "rate_limit": 4, "rate_limit_period": "second", "max_concurrency": 10 }),
            json!([]),
        )
        .await;
    let ids = server.send_events(&src, 14, "limited").await;
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(Duration::from_secs(20), "all delivered", || async move {
        s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await
    })
    .await;
    let times: Vec<Instant> = receiver.hits().iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 14, "each event once");
    let most = most_in_one_second(&times);
    assert!(most <= 4, "{most} attempts within one second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_delays_the_next_attempt_and_a_404_does_not_trip_the_breaker() {
    let receiver = TestReceiver::start().await;
    receiver.set_retry_after(2);
    receiver.push_statuses(&[429]);
    let server = TestServer::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 3, "interval": 100 }]);
    let (src, dest, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "max_concurrency": 1, "circuit": { "failure_threshold": 2 } }),
            rules,
        )
        .await;
    let ids = server.send_events(&src, 1, "limited").await;
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    eventually(
        Duration::from_secs(10),
        "delivered after Retry-After",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
    let hits = receiver.hits();
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(1_900) && gap < Duration::from_millis(3_500),
        "the retry came {gap:?} after a 429 with Retry-After: 2 (interval 100 ms)"
    );

    receiver.set_status(404);
    let ids = server.send_events(&src, 3, "missing").await;
    let (ids_ref, s) = (&ids, &server);
    eventually(
        Duration::from_secs(10),
        "404s dead-lettered",
        || async move { s.all_have_status(src_ref, ids_ref, "FAILED").await },
    )
    .await;
    let c = circuit(&server, &dest).await;
    assert_eq!(c["state"], "closed", "twelve 404s, threshold 2: {c}");
    assert_eq!(c["failure_count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_behind_an_open_breaker_are_dead_lettered_at_max_event_age() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server =
        TestServer::start_with(ServerOpts::config("[delivery]\nmax_event_age = \"3s\"\n")).await;
    let (src, dest, _) = server
        .pipeline(
            &receiver.url(),
            json!({ "max_concurrency": 1, "circuit": { "failure_threshold": 1, "cooldown_seconds": 600 } }),
            no_retries(),
        )
        .await;
    server.send_events(&src, 1, "failing").await;
    wait_state(&server, &dest, "open").await;
    let waiting = server.send_events(&src, 2, "waiting").await;
    let s = &server;
    let (src_ref, waiting_ref) = (&src, &waiting);
    eventually(
        Duration::from_secs(10),
        "expired while queued",
        || async move { s.all_have_status(src_ref, waiting_ref, "FAILED").await },
    )
    .await;
    let dead: Vec<String> = server
        .events("dead_lettered=true")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    for id in &waiting {
        assert!(dead.contains(id), "{id} is in the dead-letter queue");
        assert!(
            server.attempts(id).await.is_empty(),
            "expired without an attempt"
        );
    }
    assert_eq!(receiver.hit_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_destination_keeps_its_queue_and_resumes_in_order_when_enabled() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server = TestServer::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 5, "interval": 200 }]);
    let (src, dest, _) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 1 }), rules)
        .await;
    let ids = server.send_events(&src, 3, "queued").await;
    let (status, v) = server
        .api()
        .put(&format!("/v1/destinations/{dest}/disable"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    receiver.set_status(200);
    let before = receiver.hit_count();
    let (status, v) = server.ingest(&src, "{}", "application/json").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["event_ids"],
        json!([]),
        "no event is routed to a disabled destination"
    );
    // Retries fall due while disabled: still nothing is attempted.
    let r = &receiver;
    let quiet = poll(Duration::from_millis(1_200), || async move {
        (r.hit_count() > before).then_some(())
    })
    .await;
    assert!(quiet.is_none(), "an attempt to a disabled destination");
    let s = &server;
    let (src_ref, ids_ref) = (&src, &ids);
    assert!(!s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await);
    let (status, v) = server
        .api()
        .put(&format!("/v1/destinations/{dest}/enable"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    eventually(
        Duration::from_secs(10),
        "delivered after enable",
        || async move { s.all_have_status(src_ref, ids_ref, "SUCCESSFUL").await },
    )
    .await;
    let delivered: Vec<String> = receiver
        .hits()
        .iter()
        .filter(|h| h.status == 200)
        .map(|h| h.event_id())
        .collect();
    assert_eq!(delivered, ids, "in acceptance order");
}
