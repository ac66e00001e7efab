//! `/metrics` after a scenario: exact gauge and counter values, the gauges right again after
//! SIGKILL and a restart, summed with per-id labels off, and a deleted object's series gone.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::common::{poll, TestReceiver, TestServer};

/// One scrape: `name` and its labels → value.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            samples.push((name.to_string(), labels, value.parse().expect("a number")));
        }
        Scrape(samples)
    }

    /// The value of the series `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    fn names_any(&self, id: &str) -> bool {
        self.0.iter().any(|(_, l, _)| l.values().any(|v| v == id))
    }
}

async fn scrape(server: &TestServer) -> Scrape {
    let text = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    Scrape::parse(&text)
}

/// Polls `/metrics` until `check` holds, then answers the scrape.
async fn scrape_until(server: &TestServer, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let check = &check;
    poll(Duration::from_secs(20), || async move {
        let s = scrape(server).await;
        check(&s).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("/metrics never showed {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_and_counters_are_exact_and_the_gauges_survive_kill9_and_labels_off() {
    let healthy = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.set_status(500);
    let mut server = TestServer::start().await;
    let no_retries =
        json!([{ "type": "retry", "strategy": "linear", "count": 0, "interval": 1000 }]);

    // Four requests: each held on the paused connection and delivered on its sibling.
    let (src, good_dest, held_conn) = server.pipeline(&healthy.url(), json!({}), json!([])).await;
    let sibling = server.create_connection(&src, &good_dest, json!([])).await;
    let sibling = sibling["id"].as_str().unwrap().to_string();
    let api = server.api();
    api.put(&format!("/v1/connections/{held_conn}/pause"), None)
        .await;
    server.send_events(&src, 3, "held").await;
    server.send_events(&src, 1, "delivered").await;
    let sibling_ref = &sibling;

    // A breaker opened by two failures (both dead-lettered), then closed by a probe.
    let (bad_src, bad_dest, bad_conn) = server
        .pipeline(
            &failing.url(),
            json!({ "max_concurrency": 1, "circuit": { "failure_threshold": 2, "cooldown_seconds": 2 } }),
            no_retries.clone(),
        )
        .await;
    let (bad_dest_ref, bad_conn_ref) = (&bad_dest, &bad_conn);
    server.send_events(&bad_src, 1, "failing").await;
    scrape_until(&server, "one consecutive failure", |s| {
        s.get(
            "fasthook_circuit_failures",
            &[("destination_id", bad_dest_ref)],
        ) == Some(1.0)
    })
    .await;
    server.send_events(&bad_src, 1, "failing").await;
    scrape_until(&server, "the breaker open, one waiting", |s| {
        s.get(
            "fasthook_circuit_state",
            &[("destination_id", bad_dest_ref), ("state", "open")],
        ) == Some(1.0)
            && s.get("fasthook_events_failed", &[("connection_id", bad_conn_ref)]) == Some(2.0)
    })
    .await;
    server.send_events(&bad_src, 1, "waiting").await;
    let open = scrape_until(&server, "the waiting event", |s| {
        s.get(
            "fasthook_events_queued",
            &[("destination_id", bad_dest_ref)],
        ) == Some(1.0)
    })
    .await;
    // Opening starts the count again (as `GET .../circuit` shows it).
    assert_eq!(
        open.get(
            "fasthook_circuit_failures",
            &[("destination_id", &bad_dest)]
        ),
        Some(0.0)
    );
    assert_eq!(
        open.get(
            "fasthook_circuit_state",
            &[("destination_id", &bad_dest), ("state", "closed")]
        ),
        Some(0.0)
    );
    failing.set_status(200);

    let s = scrape_until(
        &server,
        "the breaker closed and the sibling's deliveries",
        |s| {
            s.get(
                "fasthook_circuit_state",
                &[("destination_id", bad_dest_ref), ("state", "closed")],
            ) == Some(1.0)
                && s.get(
                    "fasthook_events_delivered_total",
                    &[
                        ("connection_id", sibling_ref),
                        ("destination_id", &good_dest),
                    ],
                ) == Some(4.0)
        },
    )
    .await;
    let hold = |s: &Scrape, c: &str| s.get("fasthook_events_hold", &[("connection_id", c)]);
    assert_eq!(hold(&s, &held_conn), Some(4.0));
    assert_eq!(hold(&s, &sibling), Some(0.0));
    assert_eq!(
        s.get("fasthook_events_failed", &[("connection_id", &bad_conn)]),
        Some(2.0)
    );
    assert_eq!(
        s.get("fasthook_events_queued", &[("destination_id", &bad_dest)]),
        Some(0.0)
    );
    assert_eq!(
        s.get("fasthook_events_queued", &[("destination_id", &good_dest)]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "fasthook_circuit_failures",
            &[("destination_id", &bad_dest)]
        ),
        Some(0.0)
    );
    for (to, n) in [("open", 1.0), ("half_open", 1.0), ("closed", 1.0)] {
        assert_eq!(
            s.get(
                "fasthook_circuit_transitions_total",
                &[("destination_id", &bad_dest), ("to", to)]
            ),
            Some(n),
            "transitions to {to}"
        );
    }
    let attempts = |trigger, outcome| {
        s.get(
            "fasthook_delivery_attempts_total",
            &[
                ("destination_id", &bad_dest),
                ("trigger", trigger),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(attempts("INITIAL", "failure"), Some(2.0));
    assert_eq!(attempts("INITIAL", "success"), None);
    assert_eq!(attempts("PROBE", "success"), Some(1.0));
    assert_eq!(
        s.get(
            "fasthook_delivery_errors_total",
            &[("destination_id", &bad_dest), ("code", "HTTP_500")]
        ),
        Some(2.0)
    );
    assert_eq!(
        s.get(
            "fasthook_events_delivered_total",
            &[("connection_id", &bad_conn), ("destination_id", &bad_dest)]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            "fasthook_ingress_requests_total",
            &[("source_id", &src), ("outcome", "accepted")]
        ),
        Some(4.0)
    );
    assert_eq!(s.get("fasthook_engine_paused", &[]), Some(0.0));

    // After SIGKILL the gauges are right again, from the store.
    server.kill9();
    server.restart().await;
    let s = scrape_until(&server, "the gauges after a restart", |s| {
        s.get(
            "fasthook_circuit_state",
            &[("destination_id", bad_dest_ref), ("state", "closed")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(hold(&s, &held_conn), Some(4.0));
    assert_eq!(
        s.get("fasthook_events_failed", &[("connection_id", &bad_conn)]),
        Some(2.0)
    );
    assert_eq!(
        s.get("fasthook_events_queued", &[("destination_id", &bad_dest)]),
        Some(0.0)
    );

    // A deleted connection's series go.
    let (status, v) = server
        .api()
        .delete(&format!("/v1/connections/{sibling}"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(!scrape(&server).await.names_any(&sibling));

    // With per-id labels off, one series per metric, summed.
    let mut config = std::fs::read_to_string(server.config_path()).unwrap_or_default();
    config.push_str("\n[telemetry]\nper_id_labels = false\n");
    server.set_config(&config);
    server.kill9();
    server.restart().await;
    let s = scrape_until(&server, "the sums", |s| {
        s.get(
            "fasthook_circuit_state",
            &[("destination_id", "all"), ("state", "closed")],
        ) == Some(2.0)
    })
    .await;
    assert_eq!(
        s.get("fasthook_events_hold", &[("connection_id", "all")]),
        Some(4.0)
    );
    assert_eq!(
        s.get("fasthook_events_failed", &[("connection_id", "all")]),
        Some(2.0)
    );
    assert_eq!(
        s.get("fasthook_events_queued", &[("destination_id", "all")]),
        Some(0.0)
    );
    assert!(
        !s.names_any(&held_conn) && !s.names_any(&bad_dest),
        "no per-id series"
    );
    // Unpausing drains the held events; the sum follows.
    let (status, v) = server
        .api()
        .put(&format!("/v1/connections/{held_conn}/unpause"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    scrape_until(&server, "the held events drained", |s| {
        s.get("fasthook_events_hold", &[("connection_id", "all")]) == Some(0.0)
    })
    .await;
}
