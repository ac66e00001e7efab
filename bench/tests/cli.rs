//! The binary as a user runs it: `--help`, and the self-check in which the receiver loses
//! one delivery and every run must be reported VOID (exit status 1).

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fasthook-bench"))
}

/// A short `--quick --json` run with `args` added: its exit code, report and stderr.
fn quick_run(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = bench()
        .args(["--quick", "--duration", "0.5", "--warmup", "0.1", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    (out.status.code(), report, stderr)
}

#[test]
fn help_lists_modes_and_workloads() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "ceiling",
        "forward",
        "gateway",
        "gateway-nosync",
        "bare",
        "w1",
        "w2",
        "w3",
        "w4",
        "w6",
        "w7",
        "w8",
        "w9",
        "w10",
        "--w10-rate",
        "w12",
        "--w12-retention-s",
        "--quick",
        "--json",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn a_lost_delivery_makes_every_run_void() {
    let (code, report, stderr) = quick_run(&[
        "--modes",
        "ceiling,forward,bare",
        "--receiver-drop-nth",
        "100",
    ]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(report["all_balanced"], false);
    let runs = report["runs"].as_array().unwrap();
    // W1 max for each mode; no latency phase, since no maximum was valid.
    assert_eq!(runs.len(), 3, "{stderr}");
    for r in runs {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["ledger"]["balanced"], false, "{r}");
        assert_eq!(r["ledger"]["unaccounted"], 1, "{r}");
    }
    assert!(stderr.contains("VOID"), "{stderr}");
}

#[test]
fn missing_gateway_binary_exits_2() {
    let out = bench()
        .args([
            "--modes",
            "gateway",
            "--fasthook-bin",
            "/nonexistent/fasthook",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cargo build --release"), "{stderr}");
}

#[test]
fn the_bare_relay_delivers_what_it_accepted_and_runs_in_w1_only() {
    let (code, report, stderr) = quick_run(&["--workloads", "w1,w2", "--modes", "ceiling,bare"]);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert_eq!(report["all_balanced"], true, "{stderr}");
    let runs = report["runs"].as_array().unwrap();
    let bare: Vec<_> = runs.iter().filter(|r| r["mode"] == "bare").collect();
    // W1's maximum and its latency run; W2 (fan-out) is not run for bare.
    assert_eq!(bare.len(), 2, "{stderr}");
    for r in &bare {
        assert_eq!(r["workload"], "w1", "{r}");
        assert!(r["ledger"]["accepted"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["ledger"]["balanced"], true, "{r}");
    }
    assert!(runs
        .iter()
        .any(|r| r["workload"] == "w2" && r["mode"] == "ceiling"));
    let notes = report["notes"].to_string();
    assert!(notes.contains("w2 is not run for bare"), "{notes}");
    let ratios = report["ratios"].to_string();
    assert!(ratios.contains("w1.bare_over_ceiling"), "{ratios}");
}
