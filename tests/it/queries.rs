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
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let cursor = next
            .as_ref()
            .map(|c| format!("&next={c}"))
            .unwrap_or_default();
        let (status, v) = server
            .api()
            .get(&format!("/v1/events?{range}&limit=1{cursor}"))
            .await;
        assert_eq!(status, 200, "{v}");
        let models = v["models"].as_array().unwrap();
        seen.extend(models.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match v["pagination"]["next"].as_str() {
            Some(c) if !models.is_empty() => next = Some(c.to_string()),
            _ => break,
        }
        assert!(seen.len() <= all.len(), "the cursor went round: {seen:?}");
    }
    let mut newest_first = ids(&within);
    newest_first.reverse();
    assert_eq!(seen, newest_first);
}
