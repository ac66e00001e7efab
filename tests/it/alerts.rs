//! Alert channels: a breaker opening sends a signed `issue_opened`, closing an
//! `issue_resolved`; an alert receiver that is down gets them later, across SIGKILL too.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, poll, Hit, TestReceiver, TestServer};
use crate::signatures::verify;

/// The first alert of `alert_type` the receiver answered 2xx, once there is one.
async fn taken(receiver: &TestReceiver, alert_type: &str) -> (Hit, Value) {
    poll(Duration::from_secs(30), || async {
        receiver.hits().into_iter().find_map(|hit| {
            let body: Value = serde_json::from_slice(&hit.body).ok()?;
            (hit.status == 200 && body["type"] == alert_type).then_some((hit, body))
        })
    })
    .await
    .unwrap_or_else(|| panic!("no {alert_type} alert was taken"))
}

fn assert_signed(hit: &Hit, secret: &str) {
    let header = |name| {
        hit.header(name)
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    assert!(header("webhook-id").starts_with("alr_"));
    assert!(
        verify(
            secret,
            header("webhook-id"),
            header("webhook-timestamp"),
            &hit.body,
            header("webhook-signature")
        ),
        "the alert's signature verifies with the channel's secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_alerts_are_signed_and_reach_a_receiver_that_was_down_across_a_restart() {
    let alerts = TestReceiver::start().await;
    alerts.set_status(503);
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let mut server = TestServer::start().await;
    let api = server.api();
    let (status, channel) = api
        .post(
            "/v1/alert-channels",
            &json!({ "type": "webhook", "url": alerts.url(), "alert_types": ["issue_opened", "issue_resolved"] }),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert!(channel["id"].as_str().unwrap().starts_with("alc_"));
    let secret = channel["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once: never again in a read or a list (R15).
    let id = channel["id"].as_str().unwrap();
    let (_, read) = server.api().get(&format!("/v1/alert-channels/{id}")).await;
    assert_eq!(read["id"], id);
    assert!(read.get("signing_secret").is_none(), "{read}");
    let (_, listed) = server.api().get("/v1/alert-channels").await;
    assert!(!listed.to_string().contains(&secret), "{listed}");

    let (src, dest, _) = server.breaker_pipeline(&receiver.url(), 1, 1).await;
    server.send_events(&src, 1, "failing").await;
    // The alert receiver is down: tried, refused, tried again.
    poll(Duration::from_secs(20), || async {
        (alerts.hit_count() >= 2).then_some(())
    })
    .await
    .expect("the alert is retried while its receiver is down");
    server.kill9();
    server.restart().await;
    alerts.set_status(200);
    let (hit, body) = taken(&alerts, "issue_opened").await;
    assert_signed(&hit, &secret);
    assert_eq!(body["issue"]["type"], "circuit_open");
    assert_eq!(body["issue"]["destination_id"], dest.as_str());
    assert_eq!(body["issue"]["status"], "OPENED");
    let ids: Vec<String> = alerts
        .hits()
        .iter()
        .map(|h| h.header("webhook-id").unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "every try of one alert has its id: {ids:?}"
    );

    // The receiver recovers; the probe closes the breaker: issue_resolved.
    receiver.set_status(200);
    server.send_events(&src, 1, "healthy").await;
    let (hit, resolved) = taken(&alerts, "issue_resolved").await;
    assert_signed(&hit, &secret);
    assert_eq!(resolved["issue"]["id"], body["issue"]["id"]);
    assert_eq!(resolved["issue"]["status"], "RESOLVED");

    // The channel API: listed, fetched, bad input named, deleted.
    let api = server.api();
    let id = channel["id"].as_str().unwrap();
    assert_eq!(server.list_all("/v1/alert-channels", "").await.len(), 1);
    let (status, got) = api.get(&format!("/v1/alert-channels/{id}")).await;
    assert_eq!((status, &got["url"]), (200, &channel["url"]));
    for bad in [
        json!({ "type": "email", "url": alerts.url(), "alert_types": ["issue_opened"] }),
        json!({ "type": "webhook", "url": "not a url", "alert_types": ["issue_opened"] }),
        json!({ "type": "webhook", "url": alerts.url(), "alert_types": [] }),
        json!({ "type": "webhook", "url": alerts.url(), "alert_types": ["disk_full"] }),
        json!({ "type": "webhook", "url": alerts.url(), "alert_types": ["issue_opened"], "secret": "x" }),
    ] {
        assert_error(api.post("/v1/alert-channels", &bad).await, 422, None);
    }
    let (status, _) = api.delete(&format!("/v1/alert-channels/{id}")).await;
    assert_eq!(status, 200);
    assert_error(
        api.get(&format!("/v1/alert-channels/{id}")).await,
        404,
        None,
    );
}
