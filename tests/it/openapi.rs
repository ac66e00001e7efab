//! `GET /openapi.json` from a real server: it parses as OpenAPI 3.1 with an independent parser,
//! every reference resolves, and what the server really answers has the documented shape.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{eventually, id_of, TestReceiver, TestServer};

/// The schema `schema` stands for, with `$ref`s followed and `allOf` merged: its property
/// names and its required ones.
fn shape(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling reference {r}");
        return shape(doc, target);
    }
    let mut props = BTreeSet::new();
    let mut required = BTreeSet::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = shape(doc, part);
        props.extend(p);
        required.extend(r);
    }
    if let Some(map) = schema["properties"].as_object() {
        props.extend(map.keys().cloned());
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        required.insert(r.as_str().unwrap().to_owned());
    }
    (props, required)
}

/// The documented JSON schema of `method path`'s answer with `status`.
fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let schema =
        &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no JSON answer for {status}"
    );
    schema
}

/// `value` has exactly the documented fields: none undocumented, none required missing.
fn assert_matches(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let (props, required) = shape(doc, schema);
    let keys: BTreeSet<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    let undocumented: Vec<_> = keys.difference(&props).collect();
    let missing: Vec<_> = required.difference(&keys).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "{what}: undocumented fields {undocumented:?}, required fields missing {missing:?} in {value}"
    );
}

/// A list answer: the envelope, and each model against the documented item schema.
fn assert_list_matches(doc: &Value, path: &str, value: &Value) {
    let schema = answer_schema(doc, "get", path, "200");
    assert_matches(doc, schema, value, path);
    let name = schema["$ref"].as_str().unwrap();
    let envelope = &doc["components"]["schemas"][name.rsplit('/').next().unwrap()];
    let item = &envelope["properties"]["models"]["items"];
    let models = value["models"].as_array().unwrap();
    assert!(!models.is_empty(), "{path}: the list to check is empty");
    for m in models {
        assert_matches(doc, item, m, &format!("{path} item"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_openapi_3_1_and_the_answers_have_its_shapes() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;

    // Served without credentials, as a client generator fetches it.
    let resp = server
        .client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();

    let spec = oas3::from_json(&text).expect("the document parses as an OpenAPI 3.1 spec");
    spec.validate_version()
        .expect("the document says an OpenAPI 3.1 version");
    for (path, method, op) in spec.operations() {
        let resolved = op.responses(&spec);
        assert_eq!(
            resolved.len(),
            op.responses.as_ref().map_or(0, |r| r.len()),
            "{method} {path}: an answer does not resolve"
        );
        for (status, response) in resolved {
            for (media, content) in &response.content {
                if let Some(schema) = &content.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|e| panic!("{method} {path} {status} {media}: {e}"));
                }
            }
        }
    }
    let doc: Value = serde_json::from_str(&text).unwrap();
    let operations = spec.operations().count();
    assert!(operations >= 50, "only {operations} operations documented");

    // Real answers against their documented shapes.
    let (src, dest, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (_, source) = server.api().get(&format!("/v1/sources/{src}")).await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/sources/{id}", "200"),
        &source,
        "source",
    );
    let (_, destination) = server.api().get(&format!("/v1/destinations/{dest}")).await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/destinations/{id}", "200"),
        &destination,
        "destination",
    );
    let (_, connection) = server.api().get(&format!("/v1/connections/{conn}")).await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/connections/{id}", "200"),
        &connection,
        "connection",
    );
    let (status, accepted) = server.ingest(&src, r#"{"n": 1}"#, "application/json").await;
    assert_eq!(status, 200, "{accepted}");
    assert_matches(
        &doc,
        answer_schema(&doc, "post", "/e/{source_id}", "200"),
        &accepted,
        "ingress answer",
    );
    let event_id = accepted["event_ids"][0].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "the event is delivered", || {
        let server = &server;
        let event_id = event_id.clone();
        async move { server.event(&event_id).await["status"] == "SUCCESSFUL" }
    })
    .await;
    let (_, event) = server.api().get(&format!("/v1/events/{event_id}")).await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/events/{id}", "200"),
        &event,
        "event",
    );
    let (_, events) = server
        .api()
        .get(&format!("/v1/events?connection_id={conn}"))
        .await;
    assert_list_matches(&doc, "/v1/events", &events);
    let (_, attempts) = server
        .api()
        .get(&format!("/v1/attempts?event_id={event_id}"))
        .await;
    assert_list_matches(&doc, "/v1/attempts", &attempts);
    let (_, requests) = server.api().get("/v1/requests").await;
    assert_list_matches(&doc, "/v1/requests", &requests);
    let (_, circuit) = server
        .api()
        .get(&format!("/v1/destinations/{dest}/circuit"))
        .await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/destinations/{id}/circuit", "200"),
        &circuit,
        "circuit",
    );
    let (status, job) = server
        .api()
        .post(
            "/v1/bulk/events/retry",
            &json!({"query": {"connection_id": conn}}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    assert_matches(
        &doc,
        answer_schema(&doc, "post", "/v1/bulk/events/retry", "202"),
        &job,
        "bulk retry",
    );
    let (_, metrics) = server
        .api()
        .get(&format!("/v1/metrics/events?connection_id={conn}"))
        .await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/metrics/events", "200"),
        &metrics,
        "events metrics",
    );
    let (_, engine) = server.admin().get("/admin/engine").await;
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/admin/engine", "200"),
        &engine,
        "engine state",
    );

    // An error answer has the documented error body.
    let (status, error) = server.api().get("/v1/events/evt_nope").await;
    assert_eq!(status, 404);
    assert_matches(
        &doc,
        answer_schema(&doc, "get", "/v1/events/{id}", "404"),
        &error,
        "error body",
    );
    assert_eq!(id_of(&source), src);
}
