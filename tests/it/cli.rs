//! The `fasthook` client commands against a real server: JSON with `--json`, a table
//! otherwise, errors on stderr with a non-zero exit.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{eventually, TestReceiver, TestServer};

fn fasthook(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fasthook"))
        .args(args)
        .env("FASTHOOK_API_URL", &server.base)
        .env("FASTHOOK_API_KEY", &server.api_key)
        .env("FASTHOOK_TEAM_ID", &server.team_id)
        .output()
        .expect("run the fasthook client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_lists_and_shows_what_the_api_has() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, dest, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let ids = server
        .ingest_ok(&src, br#"{"n": 1}"#.to_vec(), "application/json")
        .await;
    eventually(
        Duration::from_secs(20),
        "the event is delivered",
        || async { receiver.hit_count() >= 1 },
    )
    .await;

    let out = fasthook(
        &server,
        &["--json", "events", "list", "--connection_id", &conn],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(listed["models"][0]["id"], json!(ids[0]));

    let out = fasthook(&server, &["connections", "get", &conn]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("id") && l.contains(&conn)),
        "table: {text}"
    );

    let out = fasthook(&server, &["attempts", "--event_id", &ids[0]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("INITIAL") && text.contains("SUCCESSFUL"),
        "table: {text}"
    );

    let out = fasthook(&server, &["--json", "destinations", "circuit", &dest]);
    assert!(out.status.success());
    let circuit: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(circuit["state"], "closed");
    let out = fasthook(&server, &["destinations", "reset-circuit", &dest]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("failure_count") && l.contains('0')),
        "table: {text}"
    );

    let out = fasthook(
        &server,
        &["events", "get", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    );
    assert!(!out.status.success(), "an unknown event is an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("NOT_FOUND"),
        "stderr: {err}"
    );
}
