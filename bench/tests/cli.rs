//! The binary as a user runs it: `--help`, and the self-check in which the receiver loses
//! one delivery and every run must be reported VOID (exit status 1).

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fasthook-bench"))
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
        "w1",
        "w2",
        "w3",
        "w4",
        "w6",
        "w7",
        "w8",
        "w9",
        "--quick",
        "--json",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn a_lost_delivery_makes_every_run_void() {
    let out = bench()
        .args([
            "--quick",
            "--modes",
            "ceiling,forward",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--receiver-drop-nth",
            "100",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["all_balanced"], false);
    let runs = report["runs"].as_array().unwrap();
    // W1 max for both modes; no latency phase, since no maximum was valid.
    assert_eq!(runs.len(), 2, "{stderr}");
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
