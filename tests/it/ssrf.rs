//! The SSRF guard (R9), against a real server and receiver. Every packet stays on this
//! machine: the guard is shown refusing loopback (with `block_private_networks = true`), the
//! unspecified address, a name that resolves to loopback, and a redirect to another local
//! receiver. Metadata, RFC 1918, CGNAT, ULA and multicast are covered by the address
//! classifier's and the stub resolver's unit tests, which send nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, eventually, id_of, ServerOpts, TestReceiver, TestServer};

const STRICT: &str = "[delivery]\nblock_private_networks = true\n";

fn no_retries() -> Value {
    json!([{ "type": "retry", "strategy": "linear", "count": 0, "interval": 1000 }])
}

/// The event's final state once its attempt has been recorded.
async fn finished(server: &TestServer, event_id: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        "the attempt is recorded",
        || async {
            server.event(event_id).await["status"] == "FAILED"
                && server.attempts(event_id).await.len() == 1
        },
    )
    .await;
    server.event(event_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_refused_addresses_are_refused_when_configured() {
    let open = TestServer::start().await;
    // The unspecified address is refused whatever the setting, in every spelling.
    for url in [
        "http://0.0.0.0:9/hook",
        "http://0:9/",
        "http://[::]:9/",
        "http://[::ffff:0.0.0.0]/",
    ] {
        let v = assert_error(
            open.api()
                .post("/v1/destinations", &json!({"name": "x", "url": url}))
                .await,
            422,
            Some("VALIDATION_ERROR"),
        );
        assert!(
            v["message"].as_str().unwrap().starts_with("url:"),
            "{url}: {v}"
        );
    }
    // Loopback is allowed unless private networks are blocked.
    let receiver = TestReceiver::start().await;
    open.create_destination(json!({"url": receiver.url()}))
        .await;

    let strict = TestServer::start_with(ServerOpts::config(STRICT)).await;
    let port = receiver.base_url().rsplit(':').next().unwrap().to_owned();
    for url in [
        receiver.url(),
        format!("http://2130706433:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
    ] {
        let v = assert_error(
            strict
                .api()
                .post("/v1/destinations", &json!({"name": "x", "url": url}))
                .await,
            422,
            Some("VALIDATION_ERROR"),
        );
        assert!(
            v["message"].as_str().unwrap().contains("private network"),
            "{url}: {v}"
        );
    }
    // Alert channels are held to the same rule, and an update cannot slip one in.
    assert_error(
        strict
            .api()
            .post(
                "/v1/alert-channels",
                &json!({"type": "webhook", "url": receiver.url(), "alert_types": ["issue_opened"]}),
            )
            .await,
        422,
        Some("VALIDATION_ERROR"),
    );
    let named = strict
        .create_destination(json!({"url": format!("http://localhost:{port}/hook")}))
        .await;
    assert_error(
        strict
            .api()
            .patch(
                &format!("/v1/destinations/{}", id_of(&named)),
                &json!({"url": receiver.url()}),
            )
            .await,
        422,
        Some("VALIDATION_ERROR"),
    );
    assert!(receiver.hits().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_refused_address_is_refused_at_connect_time() {
    let server = TestServer::start_with(ServerOpts::config(STRICT)).await;
    let receiver = TestReceiver::start().await;
    let port = receiver.base_url().rsplit(':').next().unwrap().to_owned();
    // A name is accepted at configuration: what it resolves to is judged when connecting.
    let (src, dest, _) = server
        .pipeline(
            &format!("http://localhost:{port}/hook"),
            json!({}),
            no_retries(),
        )
        .await;
    let ids = server
        .ingest_ok(&src, r#"{"n": 1}"#, "application/json")
        .await;
    let event = finished(&server, &ids[0]).await;
    assert_eq!(event["error_code"], "BLOCKED_ADDRESS", "{event}");
    assert!(event["response_status"].is_null(), "{event}");
    assert!(receiver.hits().is_empty(), "the guard let a packet through");
    // The gateway's refusal says nothing about the receiver: the breaker stays closed.
    let (_, circuit) = server
        .api()
        .get(&format!("/v1/destinations/{dest}/circuit"))
        .await;
    assert_eq!(circuit["state"], "closed", "{circuit}");
    assert_eq!(circuit["failure_count"], 0, "{circuit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    let server = TestServer::start().await;
    let bouncer = TestReceiver::start().await;
    let elsewhere = TestReceiver::start().await;
    bouncer.set_status(307);
    bouncer.set_location(&elsewhere.url());
    let (src, _, _) = server
        .pipeline(&bouncer.url(), json!({}), no_retries())
        .await;
    let ids = server
        .ingest_ok(&src, r#"{"n": 1}"#, "application/json")
        .await;
    let event = finished(&server, &ids[0]).await;
    assert_eq!(event["response_status"], 307, "{event}");
    assert_eq!(bouncer.hits().len(), 1);
    assert!(
        elsewhere.hits().is_empty(),
        "the redirect was followed to {}",
        elsewhere.url()
    );
}

/// A proxy in the gateway's environment would resolve and connect beyond the guard, so
/// deliveries never use one: the receiver gets the event straight, the "proxy" nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_in_the_environment_is_not_used_for_deliveries() {
    let proxy = TestReceiver::start().await;
    let env = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k.to_string(), proxy.base_url()))
    .collect();
    let server = TestServer::start_with(ServerOpts { config: None, env }).await;
    let receiver = TestReceiver::start().await;
    let (src, _, _) = server
        .pipeline(&receiver.url(), json!({}), no_retries())
        .await;
    let ids = server.send_events(&src, 2, "direct").await;
    eventually(Duration::from_secs(20), "delivered straight", || async {
        server.all_have_status(&src, &ids, "SUCCESSFUL").await
    })
    .await;
    assert_eq!(receiver.delivered_ids().len(), 2);
    assert_eq!(proxy.hit_count(), 0, "a delivery went through the proxy");
}
