//! Connection pause, HOLD and the drain on unpause, end to end: one branch held while its
//! sibling delivers, the release in acceptance order with trigger `UNPAUSE`, the destination's
//! rate limit and an unpause's `drain_rate` over a drain, disable/enable, and kill -9 while
//! paused and in the middle of a drain.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{eventually, id_of, most_in_one_second, TestReceiver, TestServer};

/// The event ids the receiver got on `path`, in arrival order, first arrivals only.
fn arrivals(receiver: &TestReceiver, path: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    receiver
        .hits()
        .iter()
        .filter(|h| h.path == path)
        .map(|h| h.event_id())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// The arrival times on `path` of the events in `ids`.
fn arrival_times(receiver: &TestReceiver, path: &str, ids: &HashSet<String>) -> Vec<Instant> {
    receiver
        .hits()
        .iter()
        .filter(|h| h.path == path && ids.contains(&h.event_id()))
        .map(|h| h.at)
        .collect()
}

async fn held(server: &TestServer, connection: &str) -> Vec<Value> {
    server
        .events(&format!("connection_id={connection}&status=HOLD"))
        .await
}

/// One source, two destinations on the receiver (`/live` and `/held`), one connection each.
/// Answers (source, live connection, held connection, held destination).
async fn two_branches(
    server: &TestServer,
    receiver: &TestReceiver,
    held_dest: Value,
) -> (String, String, String, String) {
    let src = id_of(&server.create_source("pause").await).to_string();
    let live_dest = server
        .create_destination(json!({ "url": format!("{}/live", receiver.base_url()) }))
        .await;
    let mut body = held_dest;
    body["url"] = json!(format!("{}/held", receiver.base_url()));
    let held_dest = server.create_destination(body).await;
    let live = server
        .create_connection(&src, id_of(&live_dest), json!([]))
        .await;
    let held = server
        .create_connection(&src, id_of(&held_dest), json!([]))
        .await;
    (
        src,
        id_of(&live).to_string(),
        id_of(&held).to_string(),
        id_of(&held_dest).to_string(),
    )
}

/// Events of `ids` routed to `connection`, in the order of `ids`.
async fn of_connection(server: &TestServer, connection: &str, ids: &[String]) -> Vec<String> {
    let mine: HashSet<String> = server
        .events(&format!("connection_id={connection}"))
        .await
        .iter()
        .map(|e| id_of(e).to_string())
        .collect();
    ids.iter()
        .filter(|id| mine.contains(*id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_branch_holds_while_its_sibling_delivers_and_unpause_drains_it_in_order() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _live, conn, _) =
        two_branches(&server, &receiver, json!({ "max_concurrency": 1 })).await;
    let api = server.api();

    let (status, first) = api
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert!(first["paused_at"].is_string(), "{first}");
    let (status, again) = api
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["paused_at"], first["paused_at"],
        "a second pause keeps the first time"
    );

    let ids = server.send_events(&src, 10, "held").await;
    assert_eq!(ids.len(), 20, "each request makes an event per connection");
    eventually(
        Duration::from_secs(20),
        "the sibling delivers all 10",
        || async { arrivals(&receiver, "/live").len() == 10 },
    )
    .await;
    let held_ids = of_connection(&server, &conn, &ids).await;
    assert_eq!(held_ids.len(), 10);
    let listed: Vec<String> = held(&server, &conn)
        .await
        .iter()
        .map(|e| id_of(e).to_string())
        .collect();
    assert_eq!(
        listed.iter().collect::<HashSet<_>>(),
        held_ids.iter().collect::<HashSet<_>>(),
        "status=HOLD lists the paused branch's events"
    );
    assert!(
        arrivals(&receiver, "/held").is_empty(),
        "nothing reached the paused branch"
    );

    let (status, v) = api
        .put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["paused_at"].is_null(), "{v}");
    eventually(
        Duration::from_secs(20),
        "the held events are delivered",
        || async { arrivals(&receiver, "/held").len() == 10 },
    )
    .await;
    assert_eq!(
        arrivals(&receiver, "/held"),
        held_ids,
        "in acceptance order"
    );
    // Each attempt is recorded once its outcome reaches the store, just after the receiver.
    let held_ref = &held_ids;
    eventually(
        Duration::from_secs(10),
        "every attempt recorded as UNPAUSE",
        || async {
            for id in held_ref {
                let attempts = server.attempts(id).await;
                if attempts.first().map(|a| &a["trigger"]) != Some(&serde_json::json!("UNPAUSE")) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(
        held(&server, &conn).await.is_empty(),
        "nothing left on hold"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_at_patch_is_stored_as_given_keeps_the_rules_and_null_drains() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 2, "interval": 500 }]);
    let (src, _, conn) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 1 }), rules)
        .await;
    let api = server.api();
    let (status, v) = api
        .patch(
            &format!("/v1/connections/{conn}"),
            &json!({ "paused_at": "2026-05-29T22:45:00.000Z" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["paused_at"], "2026-05-29T22:45:00.000Z");
    assert_eq!(v["rules"][0]["count"], 2, "rules kept: {v}");
    assert_eq!(v["rules"][0]["interval"], 500, "rules kept: {v}");

    let ids = server.send_events(&src, 5, "patch").await;
    eventually(Duration::from_secs(10), "five held", || async {
        held(&server, &conn).await.len() == 5
    })
    .await;
    let (status, v) = api
        .patch(
            &format!("/v1/connections/{conn}"),
            &json!({ "paused_at": null }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["paused_at"].is_null());
    assert_eq!(v["rules"][0]["count"], 2, "rules kept: {v}");
    eventually(
        Duration::from_secs(20),
        "drained like an unpause",
        || async { receiver.delivered_ids().len() == 5 },
    )
    .await;
    let mut seen = HashSet::new();
    let order: Vec<String> = receiver
        .hits()
        .iter()
        .map(|h| h.event_id())
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(order, ids);
    // Recorded once its outcome reaches the store, a moment after the receiver saw it.
    let first = &ids[0];
    eventually(Duration::from_secs(10), "the attempt recorded", || async {
        server
            .attempts(first)
            .await
            .first()
            .map(|a| a["trigger"].clone())
            == Some("UNPAUSE".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_clears_the_pause_keeps_held_events_held_and_enable_releases_them() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _live, conn, _) = two_branches(&server, &receiver, json!({})).await;
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let before = server.send_events(&src, 3, "before").await;
    let held_ids = of_connection(&server, &conn, &before).await;
    assert_eq!(held_ids.len(), 3);

    let (status, v) = api
        .put(&format!("/v1/connections/{conn}/disable"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["disabled_at"].is_string() && v["paused_at"].is_null(),
        "{v}"
    );
    let (status, v) = api
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    assert_eq!(status, 409, "a disabled connection cannot be paused: {v}");
    let during = server.send_events(&src, 2, "during").await;
    assert_eq!(during.len(), 2, "the disabled branch makes no event");
    // The sibling delivering the later events shows the engine has moved on; the held ones
    // are still held, and none reached the disabled branch.
    eventually(
        Duration::from_secs(20),
        "the sibling delivers all 5",
        || async { arrivals(&receiver, "/live").len() == 5 },
    )
    .await;
    assert_eq!(held(&server, &conn).await.len(), 3, "held while disabled");
    assert!(arrivals(&receiver, "/held").is_empty());

    let (status, v) = api
        .put(&format!("/v1/connections/{conn}/enable"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["disabled_at"].is_null(), "{v}");
    let after = server.send_events(&src, 1, "after").await;
    let new_ids = of_connection(&server, &conn, &after).await;
    assert_eq!(new_ids.len(), 1, "enable restores routing");
    eventually(
        Duration::from_secs(20),
        "held and new delivered",
        || async { arrivals(&receiver, "/held").len() == 4 },
    )
    .await;
    let got: HashSet<String> = arrivals(&receiver, "/held").into_iter().collect();
    assert!(held_ids.iter().chain(&new_ids).all(|id| got.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_2000_held_events_keeps_to_the_destinations_rate_limit_and_loses_none() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server
        .pipeline(
            &receiver.url(),
            json!({ "rate_limit": 50, "rate_limit_period": "second", "max_concurrency": 20 }),
            json!([]),
        )
        .await;
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let ids = server.send_events_concurrently(&src, 2000, "bulk").await;
    assert_eq!(ids.len(), 2000);
    api.put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    eventually(Duration::from_secs(90), "all 2000 delivered", || async {
        receiver.delivered_ids().len() == 2000
    })
    .await;
    let times: Vec<Instant> = receiver.hits().iter().map(|h| h.at).collect();
    let most = most_in_one_second(&times);
    assert!(most <= 50, "{most} attempts within one second (limit 50)");
    let delivered = receiver.delivered_ids();
    assert!(ids.iter().all(|id| delivered.contains(id)), "none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_rate_caps_the_backlog_while_new_events_keep_the_destinations_limit() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, conn) = server
        .pipeline(
            &receiver.url(),
            json!({ "rate_limit": 200, "rate_limit_period": "second", "max_concurrency": 20 }),
            json!([]),
        )
        .await;
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let backlog: HashSet<String> = server
        .send_events_concurrently(&src, 300, "backlog")
        .await
        .into_iter()
        .collect();
    let (status, v) = api
        .put(
            &format!("/v1/connections/{conn}/unpause"),
            Some(&json!({ "drain_rate": 30, "drain_rate_period": "second" })),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // New events while the backlog drains (about 10 s at 30/s) arrive at once, not behind it.
    let mut fresh = Vec::new();
    for round in 0..5 {
        eventually(Duration::from_secs(10), "the drain goes on", || async {
            receiver.delivered_ids().len() >= 30 * (round + 1)
        })
        .await;
        let new = server.send_events(&src, 5, "fresh").await;
        let probe = new.clone();
        eventually(
            Duration::from_secs(3),
            "new events are delivered while the backlog drains",
            || {
                let d = receiver.delivered_ids();
                let probe = probe.clone();
                async move { probe.iter().all(|id| d.contains(id)) }
            },
        )
        .await;
        fresh.extend(new);
    }
    assert!(
        receiver.delivered_ids().intersection(&backlog).count() < 300,
        "the fresh events did not wait for the whole backlog"
    );
    eventually(Duration::from_secs(40), "the backlog drains", || async {
        let d = receiver.delivered_ids();
        backlog.iter().all(|id| d.contains(id))
    })
    .await;
    let most = most_in_one_second(&arrival_times(&receiver, "/hook", &backlog));
    assert!(
        most <= 30,
        "{most} held events within one second (drain_rate 30)"
    );

    for bad in [
        json!({ "drain_rate": 0 }),
        json!({ "drain_rate_period": "second" }),
        json!({ "drain_rate": 5, "drain_rate_period": "fortnight" }),
        json!({ "drain_rte": 5 }),
    ] {
        let (status, v) = api
            .put(&format!("/v1/connections/{conn}/unpause"), Some(&bad))
            .await;
        assert_eq!(status, 422, "{bad} -> {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_killed_midway_resumes_after_restart_at_its_rate_in_order() {
    let receiver = TestReceiver::start().await;
    let mut server = TestServer::start().await;
    let (src, _, conn) = server
        .pipeline(&receiver.url(), json!({ "max_concurrency": 1 }), json!([]))
        .await;
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let ids = server.send_events(&src, 300, "crash").await;
    let (status, v) = api
        .put(
            &format!("/v1/connections/{conn}/unpause"),
            Some(&json!({ "drain_rate": 40 })),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    eventually(
        Duration::from_secs(20),
        "the drain is under way",
        || async { receiver.delivered_ids().len() >= 60 },
    )
    .await;
    server.kill9();
    let at_kill = receiver.delivered_ids().len();
    assert!(
        at_kill < 300,
        "the kill came mid-drain ({at_kill} delivered)"
    );
    server.restart().await;
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the rest drains after the restart",
        || async { receiver.delivered_ids().len() == 300 },
    )
    .await;
    assert_eq!(
        arrivals(&receiver, "/hook"),
        ids,
        "in acceptance order, none lost"
    );
    let after: Vec<Instant> = receiver
        .hits()
        .iter()
        .map(|h| h.at)
        .filter(|&t| t > restarted)
        .collect();
    let most = most_in_one_second(&after);
    assert!(
        most <= 40,
        "{most} within one second after the restart (drain_rate 40)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_paused_keeps_the_connection_paused_and_its_events_held() {
    let receiver = TestReceiver::start().await;
    let mut server = TestServer::start().await;
    let (src, live, conn, _) =
        two_branches(&server, &receiver, json!({ "max_concurrency": 1 })).await;
    let api = server.api();
    api.put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let ids = server.send_events(&src, 5, "paused").await;
    let held_ids = of_connection(&server, &conn, &ids).await;
    server.kill9();
    server.restart().await;
    let api = server.api();
    let (_, v) = api.get(&format!("/v1/connections/{conn}")).await;
    assert!(v["paused_at"].is_string(), "still paused: {v}");
    // A later event through the sibling is delivered: the engine runs, and holds still hold.
    server.send_events(&src, 1, "clock").await;
    eventually(Duration::from_secs(20), "the sibling delivers", || async {
        arrivals(&receiver, "/live").len() == 6
    })
    .await;
    let (_, v) = api.get(&format!("/v1/connections/{live}")).await;
    assert!(v["paused_at"].is_null());
    assert_eq!(held(&server, &conn).await.len(), 6, "HOLD intact (5 + 1)");
    assert!(arrivals(&receiver, "/held").is_empty());
    api.put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    eventually(
        Duration::from_secs(20),
        "released after unpause",
        || async { arrivals(&receiver, "/held").len() == 6 },
    )
    .await;
    assert_eq!(arrivals(&receiver, "/held")[..5], held_ids[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_and_failed_events_list_in_full_pages_from_the_index() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, live, conn, _) = two_branches(&server, &receiver, json!({})).await;
    // 300 delivered events on the sibling around 60 held ones: pages of held events are full.
    server.send_events_concurrently(&src, 150, "before").await;
    server
        .api()
        .put(&format!("/v1/connections/{conn}/pause"), None)
        .await;
    let sent = server.send_events(&src, 60, "held").await;
    let held_ids = of_connection(&server, &conn, &sent).await;
    server
        .api()
        .put(&format!("/v1/connections/{live}/disable"), None)
        .await;
    let (status, first) = server
        .api()
        .get(&format!(
            "/v1/events?connection_id={conn}&status=HOLD&limit=50&dir=asc"
        ))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["count"], 50, "a full page");
    let next = first["pagination"]["next"].as_str().expect("a next cursor");
    let (_, second) = server
        .api()
        .get(&format!(
            "/v1/events?connection_id={conn}&status=HOLD&limit=50&dir=asc&next={next}"
        ))
        .await;
    assert_eq!(second["count"], 10, "{second}");
    let listed: Vec<String> = first["models"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["models"].as_array().unwrap())
        .map(|e| id_of(e).to_string())
        .collect();
    assert_eq!(listed, held_ids, "every held event, oldest first");
    let (_, newest) = server.api().get("/v1/events?status=HOLD&limit=1").await;
    assert_eq!(
        id_of(&newest["models"][0]),
        held_ids[59],
        "newest first by default"
    );
    // Unpaused and delivered: the index lets them go.
    server
        .api()
        .put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    eventually(Duration::from_secs(20), "drained", || async {
        held(&server, &conn).await.is_empty()
    })
    .await;
}
