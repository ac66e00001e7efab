//! Event lists narrowed by creation time: the range bounds the walk through the store (ids
//! sort by creation) and loses no event at its edges.

use serde_json::{json, Value};

use crate::common::{TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_at_range_lists_exactly_the_events_made_within_it_in_both_directions() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    server.send_events(&src, 6, "range").await;
    let all = server.events("").await;
    assert_eq!(all.len(), 6);
    let created = |e: &Value| e["created_at"].as_str().unwrap().to_string();
    let (from, to) = (created(&all[1]), created(&all[4]));
    // Timestamps are RFC 3339 with milliseconds, so they compare as text.
    let within: Vec<&Value> = all
        .iter()
        .filter(|e| created(e) >= from && created(e) <= to)
        .collect();
    let ids = |events: &[&Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let range = format!("created_at[gte]={from}&created_at[lte]={to}");
    let asc = server.events(&range).await;
    assert_eq!(ids(&asc.iter().collect::<Vec<_>>()), ids(&within));

    // Newest first, one at a time through the cursors.
    let seen = ids_by_pages(&server, &range, "desc", 1).await;
    let mut newest_first = ids(&within);
    newest_first.reverse();
    assert_eq!(seen, newest_first);
}

/// Every page of `GET /v1/events?{query}`, `limit` at a time in direction `dir`, through the
/// cursors: the ids in the order listed. Every page before the last is full.
async fn ids_by_pages(server: &TestServer, query: &str, dir: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let cursor = next
            .as_ref()
            .map(|c| format!("&next={c}"))
            .unwrap_or_default();
        let path = format!("/v1/events?{query}&limit={limit}&dir={dir}{cursor}");
        let (status, v) = server.api().get(&path).await;
        assert_eq!(status, 200, "{path}: {v}");
        let models = v["models"].as_array().unwrap();
        seen.extend(models.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match v["pagination"]["next"].as_str() {
            Some(c) => {
                assert_eq!(models.len(), limit, "{path}: a short page before the end");
                next = Some(c.to_string());
            }
            None => return seen,
        }
        assert!(seen.len() <= 100, "the cursor went round: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_by_connection_destination_and_source_hold_exactly_theirs_in_both_directions() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    // s1 fans out to d1 and d2; s2 goes to d1 too, through a connection deleted afterwards,
    // whose events stay its destination's and its source's.
    let s1 = crate::common::id_of(&server.create_source("s1").await).to_string();
    let s2 = crate::common::id_of(&server.create_source("s2").await).to_string();
    let dest = |name: &str| json!({ "name": name, "url": receiver.url() });
    let d1 = crate::common::id_of(&server.create_destination(dest("d1")).await).to_string();
    let d2 = crate::common::id_of(&server.create_destination(dest("d2")).await).to_string();
    let mut connections = Vec::new();
    for (s, d) in [(&s1, &d1), (&s1, &d2), (&s2, &d1)] {
        let c = server.create_connection(s, d, json!([])).await;
        connections.push(crate::common::id_of(&c).to_string());
    }
    server.send_events_concurrently(&s1, 12, "s1").await;
    server.send_events_concurrently(&s2, 8, "s2").await;
    let (status, v) = server
        .api()
        .delete(&format!("/v1/connections/{}", connections[2]))
        .await;
    assert_eq!(status, 200, "{v}");
    let all = server.events("").await;
    assert_eq!(all.len(), 32);
    let expected = |field: &str, id: &str| -> Vec<String> {
        all.iter()
            .filter(|e| e[field] == id)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let cases = [
        ("connection_id", &connections[0], 12),
        ("connection_id", &connections[2], 8),
        ("destination_id", &d1, 20),
        ("destination_id", &d2, 12),
        ("source_id", &s1, 24),
        ("source_id", &s2, 8),
    ];
    for (field, id, count) in cases {
        let want = expected(field, id);
        assert_eq!(want.len(), count, "{field}={id}");
        let query = format!("{field}={id}");
        assert_eq!(
            ids_by_pages(&server, &query, "asc", 3).await,
            want,
            "{query}"
        );
        let mut newest_first = want.clone();
        newest_first.reverse();
        assert_eq!(
            ids_by_pages(&server, &query, "desc", 3).await,
            newest_first,
            "{query}"
        );
    }
    // Two of them at once: their intersection.
    let both = format!("source_id={s2}&destination_id={d2}");
    assert!(ids_by_pages(&server, &both, "asc", 3).await.is_empty());
    let both = format!("source_id={s1}&destination_id={d1}");
    assert_eq!(
        ids_by_pages(&server, &both, "asc", 3).await,
        expected("connection_id", &connections[0])
    );
}
