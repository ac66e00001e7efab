//! Whole-engine pause from the admin API and from the config file: ingress keeps accepting,
//! no attempt starts, resume delivers without a restart; the last change wins.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, poll, sample_body, ServerOpts, TestReceiver, TestServer};

const CONFIG: &str = "[engine]\npaused = false\nconfig_poll_interval = \"100ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_pauses_and_resumes_from_the_api_and_the_config_file() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start_with(ServerOpts {
        config: Some(CONFIG.into()),
        ..Default::default()
    })
    .await;
    let admin = server.admin();
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;

    let (status, v) = admin.put("/admin/engine/pause", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["paused"].clone(), v["changed_by"].clone()),
        (json!(true), json!("api")),
        "{v}"
    );
    assert!(v["paused_at"].is_string(), "{v}");
    let id = server
        .ingest_ok(&src, sample_body("paused", 0), "application/json")
        .await[0]
        .clone();
    let delivered = poll(Duration::from_millis(600), || async {
        (receiver.hit_count() > 0).then_some(())
    })
    .await;
    assert!(
        delivered.is_none(),
        "an attempt started while the engine was paused"
    );
    assert_eq!(server.event(&id).await["status"], "QUEUED");

    let (status, v) = admin.put("/admin/engine/resume", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["paused"], false);
    eventually(
        Duration::from_secs(10),
        "resume delivers the queued event",
        || async { receiver.hit_count() == 1 },
    )
    .await;

    // The file says paused: applied within the poll interval, changed_by config.
    std::fs::write(
        server.config_path(),
        CONFIG.replace("paused = false", "paused = true"),
    )
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the config file pauses the engine",
        || async {
            let (_, v) = admin.get("/admin/engine").await;
            v["paused"] == json!(true) && v["changed_by"] == json!("config")
        },
    )
    .await;
    server
        .ingest_ok(&src, sample_body("paused", 1), "application/json")
        .await;
    let delivered = poll(Duration::from_millis(600), || async {
        (receiver.hit_count() > 1).then_some(())
    })
    .await;
    assert!(
        delivered.is_none(),
        "an attempt started while the config paused the engine"
    );

    // The API resumes; the unchanged file does not pause it again (the last change wins).
    admin.put("/admin/engine/resume", None).await;
    eventually(
        Duration::from_secs(10),
        "the second event is delivered",
        || async { receiver.hit_count() == 2 },
    )
    .await;
    let (_, v) = admin.get("/admin/engine").await;
    assert_eq!(
        (v["paused"].clone(), v["changed_by"].clone()),
        (json!(false), json!("api")),
        "{v}"
    );

    let (status, _) = server.api().put("/admin/engine/pause", None).await;
    assert_eq!(status, 401, "an API key is not the admin key");
}
