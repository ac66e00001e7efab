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

/// The scenario's backlog: four held on the paused connection, two dead-lettered on the
/// failing one, nothing waiting at its destination.
fn assert_backlog(s: &Scrape, held_conn: &str, bad_conn: &str, bad_dest: &str) {
    let hold = s.get("fasthook_events_hold", &[("connection_id", held_conn)]);
    let failed = s.get("fasthook_events_failed", &[("connection_id", bad_conn)]);
    let queued = s.get("fasthook_events_queued", &[("destination_id", bad_dest)]);
    assert_eq!((hold, failed, queued), (Some(4.0), Some(2.0), Some(0.0)));
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
    let (bad_src, bad_dest, bad_conn) = server.breaker_pipeline(&failing.url(), 2, 2).await;
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
    let open = scrape_until(&server, "the breaker open", |s| {
        s.get(
            "fasthook_circuit_state",
            &[("destination_id", bad_dest_ref), ("state", "open")],
        ) == Some(1.0)
            && s.get("fasthook_events_failed", &[("connection_id", bad_conn_ref)]) == Some(2.0)
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
    // The receiver is back; the next event is the probe that closes the breaker.
    failing.set_status(200);
    server.send_events(&bad_src, 1, "probe").await;

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
                && s.get(
                    "fasthook_circuit_transitions_total",
                    &[("destination_id", bad_dest_ref), ("to", "closed")],
                ) == Some(1.0)
        },
    )
    .await;
    assert_backlog(&s, &held_conn, &bad_conn, &bad_dest);
    assert_eq!(
        s.get("fasthook_events_hold", &[("connection_id", &sibling)]),
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
    assert_backlog(&s, &held_conn, &bad_conn, &bad_dest);

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
    // With the engine paused nothing is attempted: a request waits QUEUED on the branch left
    // (the sibling was deleted).
    let (status, v) = server.admin().put("/admin/engine/pause", None).await;
    assert_eq!(status, 200, "{v}");
    server.send_events(&src, 1, "waiting").await;
    let s = scrape_until(&server, "one waiting", |s| {
        s.get("fasthook_events_queued", &[("destination_id", "all")]) == Some(1.0)
    })
    .await;
    assert_eq!(s.get("fasthook_engine_paused", &[]), Some(1.0));
}

/// Waits until the scenario's events have their final statuses: 3 delivered, 3 held, 2 failed.
async fn settled(server: &TestServer) {
    crate::common::eventually(
        Duration::from_secs(20),
        "3 delivered, 3 held, 2 failed",
        || async move {
            let all = server.events("").await;
            let n = |status: &str| all.iter().filter(|e| e["status"] == status).count();
            n("SUCCESSFUL") == 3 && n("HOLD") == 3 && n("FAILED") == 2
        },
    )
    .await;
}

/// `GET /v1/metrics/events` by the minute from `from`, with `extra` parameters.
async fn events_metrics(server: &TestServer, from: &str, extra: &str) -> serde_json::Value {
    let (status, v) = server
        .api()
        .get(&format!(
            "/v1/metrics/events?from={from}&granularity=1m{extra}"
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The start of the minute of an RFC 3339 timestamp with milliseconds (`...T12:34:56.789Z`).
fn minute_of(t: &str) -> String {
    format!("{}:00.000Z", &t[..16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_metrics_count_each_bucket_by_status_now_and_survive_kill9() {
    use serde_json::Value;
    let healthy = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.set_status(500);
    let mut server = TestServer::start().await;
    let no_retries =
        json!([{ "type": "retry", "strategy": "linear", "count": 0, "interval": 1000 }]);
    let (src, _, delivered_conn) = server.pipeline(&healthy.url(), json!({}), json!([])).await;
    let held_dest = server
        .create_destination(json!({ "url": healthy.url() }))
        .await;
    let held_conn = server
        .create_connection(&src, held_dest["id"].as_str().unwrap(), json!([]))
        .await;
    let held_conn = held_conn["id"].as_str().unwrap().to_string();
    server
        .api()
        .put(&format!("/v1/connections/{held_conn}/pause"), None)
        .await;
    let (bad_src, bad_dest, _) = server
        .pipeline(&failing.url(), crate::common::breaker_off(), no_retries)
        .await;
    server.send_events(&src, 3, "metrics").await;
    server.send_events(&bad_src, 2, "metrics").await;
    settled(&server).await;
    let events = server.events("").await;
    let created: Vec<String> = events
        .iter()
        .map(|e| e["created_at"].as_str().unwrap().to_string())
        .collect();
    let from = minute_of(created.iter().min().unwrap());
    // Expected: per minute, each measure from the events as they are now.
    let expected_of = |events: &[Value], only: &dyn Fn(&Value) -> bool| {
        let mut by_minute: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for e in events.iter().filter(|e| only(e)) {
            let slot = by_minute
                .entry(minute_of(e["created_at"].as_str().unwrap()))
                .or_default();
            match e["status"].as_str().unwrap() {
                "HOLD" => slot[0] += 1,
                "SUCCESSFUL" => slot[1] += 1,
                "FAILED" => slot[2] += 1,
                other => panic!("unexpected status {other}"),
            }
            slot[3] += e["attempts"].as_u64().unwrap();
        }
        by_minute
    };
    let expected = |only: &dyn Fn(&Value) -> bool| expected_of(&events, only);
    // Non-empty buckets of an answer: minute -> [hold, delivered, failed, attempts].
    let counted = |v: &Value| {
        let mut out: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for bucket in v["data"].as_array().unwrap() {
            let m = &bucket["metrics"];
            let row = [
                "hold_count",
                "delivered_count",
                "failed_count",
                "attempt_count",
            ]
            .map(|k| m[k].as_u64().unwrap());
            if row != [0; 4] {
                out.insert(bucket["time_bucket"].as_str().unwrap().to_string(), row);
            }
        }
        out
    };
    let all = events_metrics(&server, &from, "").await;
    assert_eq!(counted(&all), expected(&|_| true), "{all}");
    let first = &all["data"][0];
    assert_eq!(first["time_bucket"], from.as_str());
    assert_eq!(first["dimensions"], json!({}));
    for measure in ["queued_count", "scheduled_count", "error_rate"] {
        assert!(first["metrics"][measure].is_number(), "{first}");
    }
    let held = events_metrics(&server, &from, &format!("&connection_id={held_conn}")).await;
    let held_only = |e: &Value| e["connection_id"] == held_conn.as_str();
    assert_eq!(counted(&held), expected(&held_only));
    assert_eq!(
        held["data"][0]["dimensions"]["connection_id"],
        held_conn.as_str()
    );
    let bad = events_metrics(
        &server,
        &from,
        &format!("&destination_id={bad_dest}&measures[]=error_rate&measures[]=failed_count"),
    )
    .await;
    let with_attempts: Vec<&Value> = bad["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["metrics"]["failed_count"].as_u64() > Some(0))
        .collect();
    assert!(!with_attempts.is_empty(), "{bad}");
    for b in with_attempts {
        assert_eq!(b["metrics"]["error_rate"], 1.0, "{b}");
        assert_eq!(
            b["metrics"].as_object().unwrap().len(),
            2,
            "only the measures asked: {b}"
        );
    }
    let delivered_only = |e: &Value| e["connection_id"] == delivered_conn.as_str();
    let by_source = events_metrics(
        &server,
        &from,
        &format!("&source_id={src}&connection_id={delivered_conn}"),
    )
    .await;
    assert_eq!(counted(&by_source), expected(&delivered_only));

    // Durable with the events they count: after SIGKILL the counts are the events' as the
    // store has them (an outcome the kill caught before its flush is made again, and counted
    // when it is).
    server.kill9();
    server.restart().await;
    settled(&server).await;
    let after = server.events("").await;
    assert_eq!(
        counted(&events_metrics(&server, &from, "").await),
        expected_of(&after, &|_| true)
    );

    // Bad input names the parameter.
    for (query, field) in [
        (
            format!("from={}&to=2020-01-01T00:00:00.000Z", minute_of(&from)),
            "from",
        ),
        ("granularity=5m".to_string(), "granularity"),
        ("measures[]=held_count".to_string(), "measures[]"),
        (
            "granularity=1m&from=2020-01-01T00:00:00.000Z&to=2020-01-03T00:00:00.000Z".to_string(),
            "granularity",
        ),
        ("connection_id=nope".to_string(), "connection_id"),
        ("conection_id=web_x".to_string(), "conection_id"),
    ] {
        let (status, v) = server
            .api()
            .get(&format!("/v1/metrics/events?{query}"))
            .await;
        assert_eq!(status, 422, "{query}: {v}");
        assert!(v.to_string().contains(field), "{query}: {v}");
    }
}
