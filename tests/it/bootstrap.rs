//! First start without keys: team `tm_default` and one API key, printed once; later starts
//! print nothing secret.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::poll;

/// Starts `fasthook serve` with no key configured; answers the child and its stdout lines
/// up to the point where `/readyz` answers 200.
async fn start(data: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fasthook"))
        .arg("serve")
        .current_dir(data)
        .env("FASTHOOK_LISTEN", "127.0.0.1:0")
        .env("FASTHOOK_DATA_DIR", data.join("data"))
        .env("FASTHOOK_LOG", "warn")
        .env_remove("FASTHOOK_TEAM_ID")
        .env_remove("FASTHOOK_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fasthook");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a first stdout line");
    let base = first
        .strip_prefix("fasthook listening on ")
        .expect("the listening line")
        .to_string();
    let client = reqwest::Client::new();
    let ready = poll(Duration::from_secs(30), || {
        let req = client.get(format!("{base}/readyz")).send();
        async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
    assert!(ready.is_some(), "not ready");
    // The key is printed before recovery starts, so every line of it is in by now.
    let lines: Vec<String> = rx.try_iter().collect();
    (child, base, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_a_working_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, lines) = start(dir.path()).await;
    let key = lines
        .iter()
        .find_map(|l| l.strip_prefix("FASTHOOK_API_KEY="))
        .unwrap_or_else(|| panic!("no key printed: {lines:?}"))
        .to_string();
    assert!(
        lines.iter().any(|l| l == "FASTHOOK_TEAM_ID=tm_default"),
        "{lines:?}"
    );
    assert_key_works(&base, &key).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, _, lines) = start(dir.path()).await;
    assert!(
        !lines.iter().any(|l| l.contains("fhp_")),
        "a later start printed a secret: {lines:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A first start that cannot listen (its port is taken) makes no key and stores nothing of
/// it, so the key is not lost with the failed start's output: the next start makes and
/// prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_that_cannot_listen_makes_no_key_and_the_next_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let failed = Command::new(env!("CARGO_BIN_EXE_fasthook"))
        .arg("serve")
        .current_dir(dir.path())
        .env("FASTHOOK_LISTEN", &addr)
        .env("FASTHOOK_DATA_DIR", dir.path().join("data"))
        .env("FASTHOOK_LOG", "warn")
        .env_remove("FASTHOOK_TEAM_ID")
        .env_remove("FASTHOOK_API_KEY")
        .output()
        .expect("run fasthook");
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success(),
        "started on a taken port: {stdout}"
    );
    assert!(
        stderr.contains(&addr),
        "the error does not name {addr}: {stderr}"
    );
    assert!(
        !stdout.contains("fhp_"),
        "a failed start printed a key: {stdout}"
    );
    drop(taken);

    let (mut child, base, lines) = start(dir.path()).await;
    let key = lines
        .iter()
        .find_map(|l| l.strip_prefix("FASTHOOK_API_KEY="))
        .unwrap_or_else(|| panic!("the start after the failed one printed no key: {lines:?}"));
    assert_key_works(&base, key).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The printed key reads the default team's sources.
async fn assert_key_works(base: &str, key: &str) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/sources"))
        .bearer_auth(key)
        .header("x-team-id", "tm_default")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the printed key works");
}
