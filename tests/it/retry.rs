//! Retry rules: attempt counts, triggers, waits between attempts, dead letter.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{breaker_off, eventually, sample_body, Hit, TestReceiver, TestServer};

/// A server with one source → destination pipeline to `receiver` under `rules`, and the id of
/// the one event sent through it.
async fn one_event(receiver: &TestReceiver, rules: Value, label: &str) -> (TestServer, String) {
    let server = TestServer::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), breaker_off(), rules).await;
    let id = server
        .ingest_ok(&src, sample_body(label, 0), "application/json")
        .await[0]
        .clone();
    (server, id)
}

/// Waits until the event reaches `status`, answers it.
async fn wait_status(server: &TestServer, id: &str, status: &str, deadline: Duration) -> Value {
    let what = format!("event {id} reaches {status}");
    eventually(deadline, &what, || async move {
        server.event(id).await["status"] == status
    })
    .await;
    server.event(id).await
}

fn gaps_ms(hits: &[Hit]) -> Vec<u128> {
    hits.windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect()
}

fn assert_attempts(
    attempts: &[Value],
    triggers: &[&str],
    statuses: &[&str],
    response_status: &[u16],
) {
    assert_eq!(attempts.len(), triggers.len(), "attempts: {attempts:#?}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt_number"], i as u64 + 1, "attempt #{i}: {a}");
        assert_eq!(a["trigger"], triggers[i], "attempt #{i}: {a}");
        assert_eq!(a["status"], statuses[i], "attempt #{i}: {a}");
        assert_eq!(
            a["response_status"], response_status[i],
            "attempt #{i}: {a}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_retries_then_dead_letter() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 3, "interval": 200 }]);
    let (server, id) = one_event(&receiver, rules, "linear").await;

    let event = wait_status(&server, &id, "FAILED", Duration::from_secs(15)).await;
    assert!(
        event["dead_lettered_at"].is_string(),
        "dead_lettered_at should be set: {event}"
    );
    assert_eq!(event["attempts"], 4, "{event}");
    assert_eq!(event["response_status"], 500, "{event}");

    let attempts = server.attempts(&id).await;
    assert_attempts(
        &attempts,
        &["INITIAL", "AUTOMATIC", "AUTOMATIC", "AUTOMATIC"],
        &["FAILED"; 4],
        &[500; 4],
    );
    let hits = receiver.hits();
    assert_eq!(hits.len(), 4, "1 attempt + 3 retries");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(
            h.header("x-fasthook-attempt"),
            Some((i + 1).to_string().as_str())
        );
        assert_eq!(h.event_id(), id);
    }
    let gaps = gaps_ms(&hits);
    for (i, g) in gaps.iter().enumerate() {
        assert!(
            *g >= 190,
            "linear gap #{i} {g} ms < interval 200 ms (gaps {gaps:?})"
        );
    }

    let dead = server.events("dead_lettered=true").await;
    assert!(
        dead.iter().any(|e| e["id"] == id.as_str()),
        "the event should be listed with dead_lettered=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_retries_double_the_wait() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let rules =
        json!([{ "type": "retry", "strategy": "exponential", "count": 3, "interval": 150 }]);
    let (server, id) = one_event(&receiver, rules, "expo").await;

    let event = wait_status(&server, &id, "FAILED", Duration::from_secs(15)).await;
    assert!(event["dead_lettered_at"].is_string(), "{event}");
    let attempts = server.attempts(&id).await;
    assert_attempts(
        &attempts,
        &["INITIAL", "AUTOMATIC", "AUTOMATIC", "AUTOMATIC"],
        &["FAILED"; 4],
        &[500; 4],
    );
    let hits = receiver.hits();
    assert_eq!(hits.len(), 4);
    let gaps = gaps_ms(&hits);
    for (i, (g, want)) in gaps.iter().zip([150u128, 300, 600]).enumerate() {
        assert!(
            *g * 10 >= want * 9,
            "exponential gap #{i} {g} ms < 0.9 × {want} ms (gaps {gaps:?})"
        );
    }
    // Growing, not a constant long wait: the first wait is shorter than the last (a server
    // waiting 600 ms every time would pass the lower bounds above).
    assert!(
        gaps[0] + 150 < gaps[2],
        "waits should grow (150, 300, 600 ms): {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_succeeds_ends_the_event() {
    let receiver = TestReceiver::start().await;
    receiver.push_statuses(&[500, 500]);
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 5, "interval": 100 }]);
    let (server, id) = one_event(&receiver, rules, "recover").await;

    let event = wait_status(&server, &id, "SUCCESSFUL", Duration::from_secs(15)).await;
    assert!(event["dead_lettered_at"].is_null(), "{event}");
    assert_eq!(event["attempts"], 3, "{event}");
    assert_eq!(event["response_status"], 200, "{event}");
    let attempts = server.attempts(&id).await;
    assert_attempts(
        &attempts,
        &["INITIAL", "AUTOMATIC", "AUTOMATIC"],
        &["FAILED", "FAILED", "SUCCESSFUL"],
        &[500, 500, 200],
    );
    assert_eq!(receiver.hit_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_retried_by_the_rules() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(400);
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 2, "interval": 100 }]);
    let (server, id) = one_event(&receiver, rules, "4xx").await;

    let event = wait_status(&server, &id, "FAILED", Duration::from_secs(15)).await;
    assert!(event["dead_lettered_at"].is_string(), "{event}");
    assert_eq!(event["response_status"], 400, "{event}");
    let attempts = server.attempts(&id).await;
    assert_attempts(
        &attempts,
        &["INITIAL", "AUTOMATIC", "AUTOMATIC"],
        &["FAILED"; 3],
        &[400; 3],
    );
    assert_eq!(receiver.hit_count(), 3);
}

/// The first attempts are stored inside the event's record and later ones under their own
/// keys; the list must read as one sequence, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_attempts_list_in_order_across_a_restart() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(503);
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 11, "interval": 20 }]);
    let (mut server, id) = one_event(&receiver, rules, "many").await;

    let event = wait_status(&server, &id, "FAILED", Duration::from_secs(20)).await;
    assert_eq!(event["attempts"], 12, "{event}");
    let mut triggers = vec!["AUTOMATIC"; 12];
    triggers[0] = "INITIAL";
    let before = server.attempts(&id).await;
    assert_attempts(&before, &triggers, &["FAILED"; 12], &[503; 12]);
    assert!(
        before.iter().all(|a| a["event_id"] == id.as_str()),
        "every attempt names its event: {before:#?}"
    );

    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit: {status:?}");
    server.restart().await;
    let after = server.attempts(&id).await;
    assert_eq!(after, before, "the same attempts after a restart");
}
