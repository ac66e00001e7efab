//! The container: the Dockerfile lints clean by the rules below (no container engine runs
//! here), the compose file parses, and their command, port, volume and environment match the
//! README and each other.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if let Some((op, args)) = current.trim().split_once(' ') {
                    out.push((op.to_uppercase(), args.trim().to_string()));
                }
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged_with_a_volume_and_a_health_check() {
    let all = instructions(&read("Dockerfile"));
    let stages: Vec<&String> = all
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    for from in &stages {
        let image = from.split_whitespace().next().unwrap();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "pinned base image: {from}"
        );
    }
    // The runtime stage: everything after the last FROM.
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &all[last_from..];
    let arg = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let user = arg("USER");
    assert!(
        user.len() == 1 && !["root", "0"].contains(&user[0]),
        "one non-root USER: {user:?}"
    );
    assert_eq!(arg("VOLUME"), ["/data"]);
    assert_eq!(arg("EXPOSE"), ["8080"]);
    assert_eq!(arg("STOPSIGNAL"), ["SIGTERM"]);
    let env = arg("ENV").join(" ");
    for pair in ["FASTHOOK_DATA_DIR=/data", "FASTHOOK_LISTEN=0.0.0.0:8080"] {
        assert!(env.contains(pair), "ENV {pair}: {env}");
    }
    let health = arg("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains(r#"CMD ["fasthook", "health"]"#),
        "{health:?}"
    );
    assert_eq!(arg("ENTRYPOINT"), [r#"["fasthook"]"#]);
    assert!(arg("CMD")[0].starts_with(r#"["serve""#), "{:?}", arg("CMD"));
    // Lint rules of the usual Dockerfile linters.
    for (op, args) in &all {
        if op == "RUN" && args.contains("apt-get install") {
            assert!(
                args.contains("--no-install-recommends") && args.contains("-y"),
                "{args}"
            );
            assert!(
                args.contains("rm -rf /var/lib/apt/lists"),
                "apt lists removed: {args}"
            );
        }
        assert!(op != "ADD", "COPY, not ADD: {args}");
        if op == "COPY" {
            if let Some(stage) = args.strip_prefix("--from=") {
                let stage = stage.split_whitespace().next().unwrap();
                assert!(
                    stages.iter().any(|f| f.ends_with(&format!(" AS {stage}"))),
                    "COPY --from a stage of this file: {stage}"
                );
            }
        }
    }
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "the build context leaves target out"
    );
}

#[test]
fn the_compose_file_parses_and_matches_the_dockerfile_and_the_readme() {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    let services = &docs[0]["services"];
    let gateway = &services["fasthook"];
    let strings = |y: &Yaml| -> Vec<String> {
        y.as_vec()
            .unwrap_or_else(|| panic!("a list: {y:?}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    assert_eq!(strings(&gateway["ports"]), ["8080:8080"]);
    assert!(strings(&gateway["volumes"])
        .iter()
        .any(|v| v.ends_with(":/data")));
    assert_eq!(
        gateway["environment"]["FASTHOOK_DATA_DIR"].as_str(),
        Some("/data")
    );
    assert_eq!(
        gateway["environment"]["FASTHOOK_LISTEN"].as_str(),
        Some("0.0.0.0:8080")
    );
    let prometheus = strings(&services["prometheus"]["volumes"]);
    assert!(prometheus
        .iter()
        .any(|v| v.starts_with("./config/prometheus.yml:")));
    let grafana = strings(&services["grafana"]["volumes"]);
    for mount in [
        "./dashboards/provisioning/datasources:",
        "./dashboards/provisioning/dashboards:",
        "./dashboards:/var/lib/grafana/dashboards/fasthook",
    ] {
        assert!(
            grafana.iter().any(|v| v.starts_with(mount)),
            "{mount} in {grafana:?}"
        );
    }
    // The mounted files exist, and Prometheus scrapes the gateway's service and port.
    for file in [
        "config/prometheus.yml",
        "dashboards/provisioning/datasources/prometheus.yml",
        "dashboards/provisioning/dashboards/fasthook.yml",
    ] {
        YamlLoader::load_from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    assert!(read("config/prometheus.yml").contains("fasthook:8080"));
    let readme = read("README.md");
    for shown in [
        "docker build -t fasthook .",
        "docker run -p 8080:8080 -v fasthook-data:/data fasthook",
        "docker compose up --build",
    ] {
        assert!(readme.contains(shown), "the README shows `{shown}`");
    }
}
