//! Bad input is refused with the documented status and code, and stores nothing.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::common::{
    assert_error, breaker_off, eventually, id_of, sample_body, ServerOpts, TestReceiver, TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_json_is_refused() {
    let server = TestServer::start().await;
    let api = server.api();

    assert_error(
        api.post_raw("/v1/sources", br#"{"name": "#).await,
        400,
        Some("INVALID_JSON"),
    );
    assert_error(
        api.post_raw("/v1/destinations", b"not json at all").await,
        400,
        Some("INVALID_JSON"),
    );

    let v = assert_error(
        api.post("/v1/sources", &json!({ "name": "ok", "colour": "blue" }))
            .await,
        422,
        Some("VALIDATION_ERROR"),
    );
    assert!(
        v["message"].as_str().unwrap().contains("colour"),
        "the message should name the unknown field: {v}"
    );

    for url in ["not a url", "ftp://x"] {
        let v = assert_error(
            api.post(
                "/v1/destinations",
                &json!({ "name": "bad-url", "url": url }),
            )
            .await,
            422,
            Some("VALIDATION_ERROR"),
        );
        assert!(
            v["message"].as_str().unwrap().starts_with("url"),
            "url {url:?}: the message should start with the field name: {v}"
        );
    }

    // Nothing was created by the refused requests.
    assert!(server.list_all("/v1/sources", "").await.is_empty());
    assert!(server.list_all("/v1/destinations", "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_refuses_unknown_sources_big_bodies_and_wrong_methods() {
    let server = TestServer::start().await;

    let (status, v) = server
        .ingest(
            "src_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            b"{}".to_vec(),
            "application/json",
        )
        .await;
    assert_error((status, v), 404, Some("NOT_FOUND"));

    let receiver = TestReceiver::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;

    // 2 MiB, over the default 1 MiB limit.
    let mut big = b"{\"pad\": \"".to_vec();
    big.resize(2 * 1024 * 1024 - 2, b'x');
    big.extend_from_slice(b"\"}");
    let resp = server
        .client()
        .post(server.url(&format!("/e/{src}")))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap_or_else(|e| panic!("2 MiB POST to ingress: no HTTP answer ({e}); expected 413"));
    let status = resp.status().as_u16();
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap_or_default())
        .unwrap_or(serde_json::Value::Null);
    assert_error((status, body), 413, Some("PAYLOAD_TOO_LARGE"));
    assert!(
        server.events(&format!("source_id={src}")).await.is_empty(),
        "a refused body must not make events"
    );

    // allowed_http_methods
    let post_only = server
        .create_source_json(json!({ "name": "post-only", "allowed_http_methods": ["POST"] }))
        .await;
    assert_eq!(
        post_only["allowed_http_methods"],
        json!(["POST"]),
        "{post_only}"
    );
    let post_only = id_of(&post_only).to_string();
    let resp = server
        .client()
        .put(server.url(&format!("/e/{post_only}")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
    assert_error((status, body), 405, Some("METHOD_NOT_ALLOWED"));
    let (status, v) = server
        .ingest(&post_only, b"{}".to_vec(), "application/json")
        .await;
    assert_eq!(status, 200, "POST is allowed: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_verification_rejects_and_records_bad_signatures() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let src = server
        .create_source_json(json!({
            "name": "verified",
            "verification": {
                "type": "hmac",
                "algorithm": "sha256",
                "encoding": "hex",
                "header": "x-signature",
                "secret": "s3cret"
            }
        }))
        .await;
    assert!(
        !src.to_string().contains("s3cret"),
        "the secret must not be echoed: {src}"
    );
    let src_id = id_of(&src).to_string();
    let dest = server
        .create_destination(json!({ "url": receiver.url() }))
        .await;
    server
        .create_connection(&src_id, id_of(&dest), json!([]))
        .await;

    let body = sample_body("verify", 0);
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&body);
    let good: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bad = "0".repeat(64);

    let post = |sig: Option<String>| {
        let mut req = server
            .client()
            .post(server.url(&format!("/e/{src_id}")))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("x-signature", sig);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let v: serde_json::Value =
                serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
            (status, v)
        }
    };

    assert_error(post(Some(bad)).await, 401, Some("VERIFICATION_FAILED"));
    assert_error(post(None).await, 401, Some("VERIFICATION_FAILED"));

    let requests = server
        .list_all("/v1/requests", &format!("source_id={src_id}"))
        .await;
    assert_eq!(
        requests.len(),
        2,
        "rejected requests are kept: {requests:?}"
    );
    for r in &requests {
        assert_eq!(r["rejection_cause"], "VERIFICATION_FAILED", "{r}");
        assert_eq!(r["source_id"], src_id.as_str(), "{r}");
        assert_eq!(r["event_ids"], json!([]), "{r}");
    }
    assert!(
        server
            .events(&format!("source_id={src_id}"))
            .await
            .is_empty(),
        "a rejected request must not make events"
    );

    let (status, v) = post(Some(good)).await;
    assert_eq!(status, 200, "right signature: {v}");
    assert_eq!(v["event_ids"].as_array().map(Vec::len), Some(1), "{v}");
    let events = server.events(&format!("source_id={src_id}")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let requests = server
        .list_all("/v1/requests", &format!("source_id={src_id}"))
        .await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r["rejection_cause"].is_null())
            .count(),
        1,
        "{requests:?}"
    );
    eventually(
        Duration::from_secs(15),
        "the verified event is delivered",
        || async { receiver.hit_count() >= 1 },
    )
    .await;
    assert_eq!(receiver.hits()[0].body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_config_key_stops_the_start() {
    let (status, stdout, stderr) = TestServer::run_to_exit(
        ServerOpts::config("[ingress]\nmax_body_bites = 5\n"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !status.success(),
        "serve with an unknown config key must fail; exited {status}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("max_body_bites"),
        "stderr should name the unknown key; stderr:\n{stderr}"
    );
    assert!(
        !stdout.contains("fasthook listening on"),
        "must not start listening with a bad config; stdout:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_unknown_routes_answer_json_errors() {
    let server = TestServer::start().await;
    let (status, v) = server.api().delete("/v1/sources").await;
    assert_eq!(status, 405, "{v}");
    assert_eq!(v["code"], "METHOD_NOT_ALLOWED", "{v}");
    let (status, v) = server.api().get("/v1/nothing-here").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "NOT_FOUND", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_list_parameter_is_a_422_naming_it_and_attempts_page() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server = TestServer::start().await;
    let api = server.api();
    for (path, wrong) in [
        ("/v1/events?conection_id=web_x", "conection_id"),
        ("/v1/events?status=FAILED&dead_letered=true", "dead_letered"),
        ("/v1/connections?sorce_id=src_x", "sorce_id"),
        ("/v1/destinations?disbled=true", "disbled"),
        ("/v1/sources?limt=5", "limt"),
        ("/v1/requests?rejectd=true", "rejectd"),
        ("/v1/attempts?event=evt_x", "event"),
    ] {
        let v = assert_error(api.get(path).await, 422, None);
        assert!(
            v["message"].as_str().unwrap_or_default().contains(wrong),
            "{path}: {v}"
        );
    }

    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 4, "interval": 1 }]);
    let (src, _, _) = server.pipeline(&receiver.url(), breaker_off(), rules).await;
    let id = server.send_events(&src, 1, "paged").await[0].clone();
    eventually(Duration::from_secs(20), "five attempts", || async {
        server.event(&id).await["dead_lettered_at"].is_string()
    })
    .await;
    let (status, first) = api
        .get(&format!("/v1/attempts?event_id={id}&limit=2"))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["count"], 2, "{first}");
    assert_eq!(
        first["models"][0]["attempt_number"], 1,
        "in attempt order: {first}"
    );
    assert!(first["pagination"]["next"].is_string(), "{first}");
    let all = server.attempts(&id).await;
    let numbers: Vec<u64> = all
        .iter()
        .map(|a| a["attempt_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    let (_, desc) = api
        .get(&format!("/v1/attempts?event_id={id}&dir=desc&limit=1"))
        .await;
    assert_eq!(desc["models"][0]["attempt_number"], 5, "{desc}");
    assert_error(
        api.get(&format!("/v1/attempts?event_id={id}&next=atm_unknown"))
            .await,
        422,
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_server_does_not_have_answers_a_404_naming_it() {
    let server = TestServer::start().await;
    let (status, v) = server.api().get("/v1/evnets?status=HOLD").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "NOT_FOUND");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("GET /v1/evnets"), "{message}");
}
