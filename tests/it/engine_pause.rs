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

async fn engine_state(server: &TestServer) -> (serde_json::Value, serde_json::Value) {
    let (status, v) = server.admin().get("/admin/engine").await;
    assert_eq!(status, 200, "{v}");
    (v["paused"].clone(), v["changed_by"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_pause_survives_kill9_and_resume_delivers_each_event_once() {
    let receiver = TestReceiver::start().await;
    let mut server = TestServer::start_with(ServerOpts {
        config: Some(CONFIG.into()),
        ..Default::default()
    })
    .await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (status, v) = server.admin().put("/admin/engine/pause", None).await;
    assert_eq!(status, 200, "{v}");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.extend(
            server
                .ingest_ok(&src, sample_body("incident", i), "application/json")
                .await,
        );
    }
    server.kill9();
    server.restart().await;
    // The file still says `paused = false`, unchanged: the operator's pause holds.
    assert_eq!(engine_state(&server).await, (json!(true), json!("api")));
    let started = poll(Duration::from_millis(600), || async {
        (receiver.hit_count() > 0).then_some(())
    })
    .await;
    assert!(started.is_none(), "a restart undid the pause");
    for id in &ids {
        assert_eq!(server.event(id).await["status"], "QUEUED");
    }

    server.admin().put("/admin/engine/resume", None).await;
    eventually(Duration::from_secs(10), "resume delivers", || async {
        receiver.delivered_ids().len() == 3
    })
    .await;
    // The receiver answers before the attempt is recorded (the actor records its outcome
    // after it): wait for the events to show it, then count the attempts.
    eventually(Duration::from_secs(10), "the outcomes recorded", || async {
        server.all_have_status(&src, &ids, "SUCCESSFUL").await
    })
    .await;
    for id in &ids {
        assert_eq!(server.attempts(id).await.len(), 1, "{id}: one attempt");
    }
    assert_eq!(receiver.hit_count(), 3, "nothing started twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_the_config_file_wins_only_if_it_changed_since_the_last_change() {
    let mut server = TestServer::start_with(ServerOpts {
        config: Some(CONFIG.replace("paused = false", "paused = true")),
        ..Default::default()
    })
    .await;
    assert_eq!(engine_state(&server).await, (json!(true), json!("config")));
    // The API resumes while the file still says paused; a crash keeps it running.
    server.admin().put("/admin/engine/resume", None).await;
    server.kill9();
    server.restart().await;
    assert_eq!(engine_state(&server).await, (json!(false), json!("api")));
    // The file changes while the gateway is down: at start it wins.
    server.kill9();
    server.set_config(CONFIG);
    server.restart().await;
    assert_eq!(engine_state(&server).await, (json!(false), json!("config")));
    server.kill9();
    server.set_config(&CONFIG.replace("paused = false", "paused = true"));
    server.restart().await;
    assert_eq!(engine_state(&server).await, (json!(true), json!("config")));
}
