//! The README quickstart runs as written against a real server.

use std::process::Stdio;
use std::time::Duration;

use crate::common::{eventually, TestReceiver, TestServer};

const START: &str = "<!-- quickstart:start -->";
const END: &str = "<!-- quickstart:end -->";

/// The contents of every ```bash block between the quickstart markers, concatenated.
fn quickstart_script(readme: &str) -> String {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == START)
        .unwrap_or_else(|| panic!("README.md has no `{START}` line"));
    let end = lines[start..]
        .iter()
        .position(|l| l.trim() == END)
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("README.md has no `{END}` line after `{START}`"));
    let mut script = String::new();
    let mut in_bash = false;
    let mut blocks = 0;
    for line in &lines[start + 1..end] {
        let t = line.trim();
        if !in_bash {
            if t.starts_with("```") && t.trim_start_matches('`').trim() == "bash" {
                in_bash = true;
                blocks += 1;
            }
        } else if t.starts_with("```") {
            in_bash = false;
            script.push('\n');
        } else {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(!in_bash, "unterminated ```bash block in the quickstart");
    assert!(
        blocks > 0,
        "no ```bash block between the quickstart markers"
    );
    script
}

#[test]
fn the_extractor_takes_only_bash_blocks_in_the_region() {
    let readme = "```bash\necho outside\n```\n<!-- quickstart:start -->\ntext\n```bash\necho one\n```\n```json\n{}\n```\n```bash\necho two\n```\n<!-- quickstart:end -->\n";
    assert_eq!(quickstart_script(readme), "echo one\n\necho two\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quickstart_runs() {
    let curl = std::process::Command::new("curl").arg("--version").output();
    match curl {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "the quickstart test needs `curl` on PATH, and `curl --version` failed: {other:?}"
        ),
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let script = quickstart_script(&readme);

    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let workdir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(workdir.path())
        .env("FASTHOOK_URL", &server.base)
        .env("FASTHOOK_TEAM_ID", &server.team_id)
        .env("FASTHOOK_API_KEY", &server.api_key)
        .env("RECEIVER_URL", receiver.base_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bash");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the quickstart script ran over 60 s:\n{script}"))
        .expect("run bash");
    assert!(
        out.status.success(),
        "the quickstart script failed ({}):\n--- script ---\n{script}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(15),
        "the receiver got the quickstart's event",
        || async { receiver.hit_count() >= 1 },
    )
    .await;
}
