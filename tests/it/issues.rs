//! Issues: a breaker opening opens one `circuit_open` issue for its destination, a failed
//! probe bumps it, closing resolves it; operators acknowledge, dismiss or resolve; all of it
//! durable across SIGKILL.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, poll, TestReceiver, TestServer};

async fn issues_of(server: &TestServer, dest: &str) -> Vec<Value> {
    server
        .list_all("/v1/issues", &format!("destination_id={dest}"))
        .await
}

async fn scrape(server: &TestServer) -> String {
    let resp = server.client().get(server.url("/metrics")).send().await;
    resp.expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Polls until the destination has exactly one issue for which `check` holds.
async fn one_issue(
    server: &TestServer,
    dest: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let check = &check;
    poll(Duration::from_secs(20), || async move {
        let issues = issues_of(server, dest).await;
        (issues.len() == 1 && check(&issues[0])).then(|| issues[0].clone())
    })
    .await
    .unwrap_or_else(|| panic!("no single issue of {dest} that is {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_one_issue_a_failed_probe_bumps_it_and_closing_resolves_it() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let mut server = TestServer::start().await;
    let (src, dest, _) = server.breaker_pipeline(&receiver.url(), 2, 1).await;
    server.send_events(&src, 2, "failing").await;
    let opened = one_issue(&server, &dest, "OPENED", |i| i["status"] == "OPENED").await;
    assert_eq!(opened["type"], "circuit_open");
    assert!(opened["id"].as_str().unwrap().starts_with("iss_"));
    assert_eq!(opened["opened_at"], opened["last_seen_at"]);
    assert!(opened["resolved_at"].is_null());
    let id = opened["id"].as_str().unwrap().to_string();
    let (status, got) = server.api().get(&format!("/v1/issues/{id}")).await;
    assert_eq!((status, &got), (200, &opened));
    let listed = server
        .list_all("/v1/issues", "status=OPENED&type=circuit_open")
        .await;
    assert_eq!(listed.len(), 1);
    assert!(scrape(&server).await.contains("\nfasthook_issues_open 1\n"));

    // Acknowledged; the probe (one waiting event) fails and the breaker opens again: the
    // same issue, seen later, still acknowledged.
    let (status, acked) = server
        .api()
        .put(
            &format!("/v1/issues/{id}"),
            Some(&json!({ "status": "ACKNOWLEDGED" })),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "ACKNOWLEDGED");
    server.send_events(&src, 1, "probe").await;
    let opened_at = opened["opened_at"].clone();
    let bumped = one_issue(&server, &dest, "seen again", |i| {
        i["last_seen_at"] != opened_at
    })
    .await;
    assert_eq!(
        (bumped["id"].as_str(), &bumped["status"]),
        (Some(id.as_str()), &json!("ACKNOWLEDGED"))
    );

    // Durable: after SIGKILL, the same issue.
    server.kill9();
    server.restart().await;
    let after = one_issue(&server, &dest, "the same", |i| i["id"] == id.as_str()).await;
    assert_eq!(after["status"], "ACKNOWLEDGED");

    // The next probe succeeds: the breaker closes, the issue is resolved.
    receiver.set_status(200);
    server.send_events(&src, 1, "healthy").await;
    let resolved = one_issue(&server, &dest, "RESOLVED", |i| i["status"] == "RESOLVED").await;
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    assert!(scrape(&server).await.contains("\nfasthook_issues_open 0\n"));

    // A closed issue does not open again; bad input is refused and names the field.
    let api = server.api();
    let path = format!("/v1/issues/{id}");
    assert_error(
        api.put(&path, Some(&json!({ "status": "ACKNOWLEDGED" })))
            .await,
        409,
        Some("ISSUE_CLOSED"),
    );
    assert_error(
        api.put(&path, Some(&json!({ "status": "OPENED" }))).await,
        422,
        None,
    );
    assert_error(
        api.put(&path, Some(&json!({ "state": "RESOLVED" }))).await,
        422,
        None,
    );
    let (status, dismissed) = api
        .put(&path, Some(&json!({ "status": "DISMISSED" })))
        .await;
    assert_eq!((status, &dismissed["status"]), (200, &json!("DISMISSED")));
    assert_error(
        api.get("/v1/issues/iss_01KA0000000000000000000000").await,
        404,
        None,
    );
    assert_error(api.get("/v1/issues?type=disk_full").await, 422, None);
    assert_error(api.get("/v1/issues?status=OPEN").await, 422, None);
    // Another team sees none of it.
    let (team, _, key) = crate::auth::new_team(&server, "other").await;
    let stranger = server.api_as(Some(&key), Some(&team));
    assert_error(stranger.get(&path).await, 404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_destination_resolves_its_open_issue() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server = TestServer::start().await;
    let (src, dest, conn) = server.breaker_pipeline(&receiver.url(), 1, 3).await;
    server.send_events(&src, 1, "failing").await;
    one_issue(&server, &dest, "OPENED", |i| i["status"] == "OPENED").await;
    let api = server.api();
    let (status, v) = api.delete(&format!("/v1/connections/{conn}")).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = api.delete(&format!("/v1/destinations/{dest}")).await;
    assert_eq!(status, 200, "{v}");
    let resolved = one_issue(&server, &dest, "RESOLVED", |i| i["status"] == "RESOLVED").await;
    assert!(resolved["resolved_at"].is_string());
}
