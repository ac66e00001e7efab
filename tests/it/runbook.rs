//! The README's incident runbook, run as written: every `fasthook` line of its block, in
//! order, against a real gateway and a receiver that fails and is then fixed.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{eventually, poll, TestReceiver, TestServer};

/// The runbook block's lines (commands and `# n.` step comments).
fn runbook() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("## Incident runbook")
        .nth(1)
        .expect("a runbook section");
    let block = section
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a runbook block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn run(server: &TestServer, line: &str) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "fasthook", "{line}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fasthook"))
        .arg("--json")
        .args(&words[1..])
        .env("FASTHOOK_API_URL", &server.base)
        .env("FASTHOOK_API_KEY", &server.api_key)
        .env("FASTHOOK_TEAM_ID", &server.team_id)
        .output()
        .expect("run the fasthook client");
    assert!(
        out.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

fn total(metrics: &Value, measure: &str) -> u64 {
    metrics["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["metrics"][measure].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_incident_runbook_runs_step_by_step() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let server = TestServer::start().await;
    let (src, dest, conn) = server.breaker_pipeline(&receiver.url(), 2, 3).await;
    // The incident: two failures open the breaker (an issue), both dead-lettered.
    server.send_events(&src, 2, "failing").await;
    let s = &server;
    eventually(
        Duration::from_secs(20),
        "two dead-lettered",
        || async move { s.events("status=FAILED").await.len() == 2 },
    )
    .await;

    let (mut issue, mut bulk) = (String::new(), String::new());
    let lines = runbook();
    assert!(
        lines.iter().filter(|l| l.starts_with("fasthook ")).count() >= 10,
        "{lines:?}"
    );
    for line in &lines {
        if line.starts_with("# 4.") {
            receiver.set_status(200);
        }
        if line.starts_with('#') {
            continue;
        }
        let filled = line
            .replace("<destination>", &dest)
            .replace("<connection>", &conn)
            .replace("<issue>", &issue)
            .replace("<bulk retry>", &bulk);
        if filled.starts_with("fasthook metrics events") && filled.contains("delivered_count") {
            // Step 6 watches a drain: wait for it to be over first.
            eventually(Duration::from_secs(20), "the drain is over", || async {
                receiver.delivered_ids().len() == 3
            })
            .await;
        }
        let answer = run(&server, &filled);
        let verb: Vec<&str> = filled.split_whitespace().skip(1).take(2).collect();
        match verb.as_slice() {
            ["issues", "list"] => {
                let models = answer["models"].as_array().unwrap();
                assert_eq!(models.len(), 1, "{answer}");
                issue = models[0]["id"].as_str().unwrap().to_string();
            }
            ["destinations", "circuit"] => assert_eq!(answer["state"], "open", "{answer}"),
            ["events", "list"] if filled.contains("FAILED") => {
                assert_eq!(answer["models"].as_array().unwrap().len(), 2, "{answer}")
            }
            ["connections", "pause"] => {
                assert!(answer["paused_at"].is_string(), "{answer}");
                server.send_events(&src, 3, "held").await;
            }
            ["events", "list"] => {
                assert_eq!(
                    answer["models"].as_array().unwrap().len(),
                    3,
                    "HOLD: {answer}"
                )
            }
            ["metrics", "events"] if filled.contains("failed_count") => {
                assert_eq!(total(&answer, "hold_count"), 3, "{answer}");
                assert_eq!(total(&answer, "failed_count"), 2, "{answer}");
            }
            ["destinations", "reset-circuit"] => assert_eq!(answer["state"], "closed", "{answer}"),
            ["connections", "unpause"] => assert!(answer["paused_at"].is_null(), "{answer}"),
            ["metrics", "events"] => {
                assert_eq!(total(&answer, "hold_count"), 0, "{answer}");
                assert_eq!(total(&answer, "delivered_count"), 3, "{answer}");
            }
            ["bulk", "retry"] => {
                assert_eq!(answer["estimated_count"], 2, "{answer}");
                bulk = answer["id"].as_str().unwrap().to_string();
            }
            ["bulk", "status"] => {
                let (s, id) = (&server, bulk.as_str());
                poll(Duration::from_secs(20), || async move {
                    let job = run(s, &format!("fasthook bulk status {id}"));
                    (job["status"] == "COMPLETED").then_some(())
                })
                .await
                .expect("the bulk retry completes");
                eventually(
                    Duration::from_secs(20),
                    "the failed window delivered",
                    || async { receiver.delivered_ids().len() == 5 },
                )
                .await;
            }
            ["issues", "resolve"] => assert_eq!(answer["status"], "RESOLVED", "{answer}"),
            other => panic!("a runbook command this test does not check: {other:?}"),
        }
    }
    assert!(!issue.is_empty() && !bulk.is_empty());
}
