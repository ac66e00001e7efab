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

/// Runs the client with `--json` and answers the parsed output; panics with stderr if it fails.
fn fasthook_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = fasthook(server, &all);
    assert!(
        out.status.success(),
        "fasthook {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_commands_pause_drain_issues_alerts_and_bulk_retry() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let health = fasthook(&server, &["health"]);
    assert!(health.status.success(), "health: {:?}", health);

    // Pause, watch HOLD, unpause with a drain rate.
    fasthook_json(&server, &["connections", "pause", &conn]);
    server.send_events(&src, 3, "held").await;
    let held = fasthook_json(
        &server,
        &[
            "events",
            "list",
            "--connection_id",
            &conn,
            "--status",
            "HOLD",
            "--limit",
            "50",
        ],
    );
    assert_eq!(held["models"].as_array().unwrap().len(), 3, "{held}");
    let unpaused = fasthook_json(
        &server,
        &["connections", "unpause", &conn, "--drain-rate", "50/second"],
    );
    assert!(unpaused["paused_at"].is_null(), "{unpaused}");
    eventually(
        Duration::from_secs(20),
        "the held events drained",
        || async { receiver.hit_count() == 3 },
    )
    .await;

    // A breaker that opens makes an issue; acknowledge it from the command line.
    let failing = TestReceiver::start().await;
    failing.set_status(500);
    let (bad_src, bad_dest, bad_conn) = server.breaker_pipeline(&failing.url(), 1, 3).await;
    let channel = fasthook_json(
        &server,
        &["alert-channels", "create", "--url", &receiver.url()],
    );
    assert_eq!(
        channel["alert_types"],
        json!(["issue_opened", "issue_resolved"])
    );
    server.send_events(&bad_src, 1, "failing").await;
    let s = &server;
    let bad_dest_ref = &bad_dest;
    let issue = crate::common::poll(Duration::from_secs(20), || async move {
        let listed = fasthook_json(
            s,
            &[
                "issues",
                "list",
                "--status",
                "OPENED",
                "--destination_id",
                bad_dest_ref,
            ],
        );
        listed["models"].as_array().and_then(|m| m.first().cloned())
    })
    .await
    .expect("an issue for the open breaker");
    let id = issue["id"].as_str().unwrap();
    let acked = fasthook_json(&server, &["issues", "ack", id]);
    assert_eq!(acked["status"], "ACKNOWLEDGED");
    let channels = fasthook_json(&server, &["alert-channels", "list"]);
    assert_eq!(channels["models"].as_array().unwrap().len(), 1);

    // Retry the failed window in bulk once the receiver is fixed.
    failing.set_status(200);
    eventually(
        Duration::from_secs(20),
        "the event dead-lettered",
        || async {
            server
                .events(&format!("connection_id={bad_conn}&status=FAILED"))
                .await
                .len()
                == 1
        },
    )
    .await;
    let job = fasthook_json(
        &server,
        &[
            "bulk",
            "retry",
            "--connection_id",
            &bad_conn,
            "--status",
            "FAILED",
        ],
    );
    assert_eq!(job["estimated_count"], 1, "{job}");
    let job_id = job["id"].as_str().unwrap();
    let bad_conn_ref = &bad_conn;
    eventually(
        Duration::from_secs(20),
        "the bulk retry delivered it",
        || async move {
            let done = fasthook_json(s, &["bulk", "status", job_id]);
            done["status"] == "COMPLETED"
                && s.events(&format!("connection_id={bad_conn_ref}&status=SUCCESSFUL"))
                    .await
                    .len()
                    == 1
        },
    )
    .await;
    let channel_id = channel["id"].as_str().unwrap();
    fasthook_json(&server, &["alert-channels", "delete", channel_id]);

    // Errors: one line on stderr, non-zero exit.
    for args in [
        vec!["issues", "get", "iss_01KA0000000000000000000000"],
        vec![
            "connections",
            "unpause",
            &conn,
            "--drain-rate",
            "fast/second",
        ],
    ] {
        let out = fasthook(&server, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_goes_after_the_command_too_and_client_flags_stay_off_serve() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (_, _, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let args = [
        "events",
        "list",
        "--connection_id",
        &conn,
        "--status",
        "HOLD",
        "--limit",
        "50",
        "--json",
    ];
    let out = fasthook(&server, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(listed["models"], json!([]));
    let help = fasthook(&server, &["serve", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--config") && !help.contains("--json"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_follow_prints_new_matching_events_as_they_come() {
    use std::io::BufRead;
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let before = server.send_events(&src, 1, "before").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fasthook"))
        .args([
            "events",
            "list",
            "--connection_id",
            &conn,
            "--follow",
            "--json",
        ])
        .env("FASTHOOK_API_URL", &server.base)
        .env("FASTHOOK_API_KEY", &server.api_key)
        .env("FASTHOOK_TEAM_ID", &server.team_id)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the fasthook client");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut expect = before.clone();
    for round in 0..2 {
        if round == 1 {
            expect.extend(server.send_events(&src, 2, "after").await);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.len() < expect.len() && std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
                seen.push(event["id"].as_str().unwrap().to_string());
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, expect, "each event once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_and_a_team_are_made_and_unmade_from_the_command_line() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let src = fasthook_json(&server, &["sources", "create", "--name", "cli-src"]);
    let src = src["id"].as_str().unwrap().to_string();
    let dest = fasthook_json(
        &server,
        &[
            "destinations",
            "create",
            "--name",
            "cli-dest",
            "--url",
            &receiver.url(),
            "--rate-limit",
            "50/second",
        ],
    );
    assert_eq!(
        (
            dest["rate_limit"].as_u64(),
            dest["rate_limit_period"].as_str()
        ),
        (Some(50), Some("second")),
        "{dest}"
    );
    let dest = dest["id"].as_str().unwrap().to_string();
    let conn = fasthook_json(
        &server,
        &[
            "connections",
            "create",
            "--name",
            "cli-conn",
            "--source_id",
            &src,
            "--destination_id",
            &dest,
        ],
    );
    let conn = conn["id"].as_str().unwrap().to_string();
    let request = server
        .ingest_ok(&src, br#"{"n": 1}"#.to_vec(), "application/json")
        .await;
    assert_eq!(request.len(), 1);
    eventually(Duration::from_secs(20), "delivered", || async {
        receiver.hit_count() == 1
    })
    .await;
    let requests = fasthook_json(&server, &["requests", "list"]);
    let request_id = requests["models"][0]["id"].as_str().unwrap().to_string();
    let replay = fasthook_json(&server, &["requests", "retry", &request_id]);
    assert_eq!(replay["replay_of"], request_id.as_str());
    eventually(Duration::from_secs(20), "replayed", || async {
        receiver.hit_count() == 2
    })
    .await;
    let disabled = fasthook_json(&server, &["sources", "disable", &src]);
    assert!(disabled["disabled_at"].is_string());
    fasthook_json(&server, &["sources", "enable", &src]);
    fasthook_json(&server, &["destinations", "disable", &dest]);
    fasthook_json(&server, &["destinations", "enable", &dest]);
    fasthook_json(&server, &["connections", "delete", &conn]);
    let out = fasthook(&server, &["connections", "get", &conn]);
    assert!(!out.status.success(), "deleted");

    // Teams and keys need the admin key.
    let admin = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_fasthook"))
            .args(&all)
            .env("FASTHOOK_API_URL", &server.base)
            .env("FASTHOOK_ADMIN_KEY", &server.admin_key)
            .output()
            .expect("run the fasthook client");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let team = admin(&["teams", "create", "--name", "cli-team"]);
    let team_id = team["id"].as_str().unwrap();
    let key = admin(&["keys", "create", "--team_id", team_id]);
    assert!(
        key["key"].as_str().is_some_and(|k| k.starts_with("fhp_")),
        "{key}"
    );
    admin(&[
        "keys",
        "revoke",
        "--team_id",
        team_id,
        key["id"].as_str().unwrap(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_a_server_that_is_down_is_one_line_on_stderr_and_a_failure() {
    let server = TestServer::start().await;
    let client = |url: &str, key: &str| {
        Command::new(env!("CARGO_BIN_EXE_fasthook"))
            .args(["sources", "list"])
            .env("FASTHOOK_API_URL", url)
            .env("FASTHOOK_API_KEY", key)
            .env("FASTHOOK_TEAM_ID", &server.team_id)
            .output()
            .expect("run the fasthook client")
    };
    // A port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for (url, key, says) in [
        (
            server.base.as_str(),
            "fhp_not_a_key_of_this_server_at_all",
            "401",
        ),
        (down.as_str(), server.api_key.as_str(), "cannot reach"),
    ] {
        let out = client(url, key);
        assert!(!out.status.success(), "{url} {key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}
