//! API keys, teams and the admin key.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    assert_error, eventually, id_of, is_2xx, sample_body, TestReceiver, TestServer,
};

/// Creates a team through `/admin` and one API key for it: (team id, key id, key).
pub async fn new_team(server: &TestServer, name: &str) -> (String, String, String) {
    let (status, team) = server
        .admin()
        .post("/admin/teams", &json!({ "name": name }))
        .await;
    assert!(is_2xx(status), "POST /admin/teams -> {status} {team}");
    let team_id = id_of(&team).to_string();
    assert!(team_id.starts_with("tm_"), "{team}");
    assert_eq!(team["name"], name, "{team}");
    let (status, key) = server
        .admin()
        .post(&format!("/admin/teams/{team_id}/api-keys"), &json!({}))
        .await;
    assert!(
        is_2xx(status),
        "POST /admin/teams/{team_id}/api-keys -> {status} {key}"
    );
    let key_id = key["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no key id: {key}"))
        .to_string();
    let secret = key["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key: {key}"))
        .to_string();
    assert!(key_id.starts_with("key_"), "{key}");
    assert!(secret.starts_with("fhp_"), "{key}");
    (team_id, key_id, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_needs_a_known_api_key() {
    let server = TestServer::start().await;
    let team = server.team_id.clone();

    let none = server.api_as(None, Some(&team));
    assert_error(none.get("/v1/sources").await, 401, Some("UNAUTHORIZED"));
    assert_error(
        none.post("/v1/sources", &json!({ "name": "x" })).await,
        401,
        Some("UNAUTHORIZED"),
    );

    let unknown = server.api_as(Some("fhp_test_thisisnotakeyatall0000000000"), Some(&team));
    assert_error(unknown.get("/v1/sources").await, 401, Some("UNAUTHORIZED"));

    // A correct key with a typo is still unknown.
    let mut almost = server.api_key.clone();
    almost.pop();
    almost.push('#');
    let almost = server.api_as(Some(&almost), Some(&team));
    assert_error(almost.get("/v1/sources").await, 401, Some("UNAUTHORIZED"));

    let (status, list) = server.api().get("/v1/sources").await;
    assert_eq!(status, 200, "the configured key works: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_do_not_see_each_other() {
    let receiver = TestReceiver::start().await;
    let server = TestServer::start().await;
    let (src, dest, conn) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let event_ids = server
        .ingest_ok(&src, sample_body("auth", 0), "application/json")
        .await;
    let event_id = event_ids[0].clone();

    let (team_b, _key_id, key_b) = new_team(&server, "team-b").await;

    // Team B's key with team A's id: forbidden.
    let wrong_team = server.api_as(Some(&key_b), Some(&server.team_id));
    assert_error(wrong_team.get("/v1/sources").await, 403, Some("FORBIDDEN"));
    assert_error(
        wrong_team.get(&format!("/v1/sources/{src}")).await,
        403,
        Some("FORBIDDEN"),
    );
    // Team A's key with team B's id: forbidden too.
    let wrong_team = server.api_as(Some(&server.api_key), Some(&team_b));
    assert_error(wrong_team.get("/v1/sources").await, 403, Some("FORBIDDEN"));

    // Team B asking for team A's objects: 404, as if they did not exist.
    let b = server.api_as(Some(&key_b), Some(&team_b));
    for path in [
        format!("/v1/sources/{src}"),
        format!("/v1/destinations/{dest}"),
        format!("/v1/connections/{conn}"),
        format!("/v1/events/{event_id}"),
    ] {
        assert_error(b.get(&path).await, 404, Some("NOT_FOUND"));
    }
    assert_error(
        b.delete(&format!("/v1/sources/{src}")).await,
        404,
        Some("NOT_FOUND"),
    );
    assert_error(
        b.patch(
            &format!("/v1/destinations/{dest}"),
            &json!({ "name": "stolen" }),
        )
        .await,
        404,
        Some("NOT_FOUND"),
    );
    let (status, attempts) = b.get(&format!("/v1/attempts?event_id={event_id}")).await;
    if status == 200 {
        assert_eq!(
            attempts["models"],
            json!([]),
            "team B sees team A's attempts: {attempts}"
        );
    } else {
        assert_error((status, attempts), 404, Some("NOT_FOUND"));
    }

    // Lists of team B are empty.
    for path in [
        "/v1/sources",
        "/v1/destinations",
        "/v1/connections",
        "/v1/events",
        "/v1/requests",
    ] {
        let (status, list) = b.get(path).await;
        assert_eq!(status, 200, "GET {path} as team B: {list}");
        assert_eq!(
            list["models"],
            json!([]),
            "team B sees objects of team A in {path}: {list}"
        );
    }

    // Team A's objects are untouched.
    let (status, v) = server.api().get(&format!("/v1/sources/{src}")).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = server.api().get(&format!("/v1/destinations/{dest}")).await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(v["name"], "stolen", "{v}");

    // Team B's own objects work with its key.
    let (status, own) = b.post("/v1/sources", &json!({ "name": "b-source" })).await;
    assert!(is_2xx(status), "{own}");
    assert_eq!(own["team_id"], team_b.as_str(), "{own}");
    let (status, v) = b.get(&format!("/v1/sources/{}", id_of(&own))).await;
    assert_eq!(status, 200, "{v}");
    // … and are invisible to team A.
    assert_error(
        server
            .api()
            .get(&format!("/v1/sources/{}", id_of(&own)))
            .await,
        404,
        Some("NOT_FOUND"),
    );

    eventually(
        Duration::from_secs(15),
        "team A's event delivered",
        || async { receiver.hit_count() >= 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_admin_key() {
    let server = TestServer::start().await;
    let body = json!({ "name": "nope" });
    assert_error(
        server.api_as(None, None).post("/admin/teams", &body).await,
        401,
        Some("UNAUTHORIZED"),
    );
    let wrong = format!("{}x", server.admin_key);
    assert_error(
        server
            .api_as(Some(&wrong), None)
            .post("/admin/teams", &body)
            .await,
        401,
        Some("UNAUTHORIZED"),
    );
    assert_error(
        server
            .api_as(Some("admin_wrong"), None)
            .post(
                &format!("/admin/teams/{}/api-keys", server.team_id),
                &json!({}),
            )
            .await,
        401,
        Some("UNAUTHORIZED"),
    );
    let (status, team) = server.admin().post("/admin/teams", &body).await;
    assert!(is_2xx(status), "{team}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once() {
    let server = TestServer::start().await;
    let (team, key_id, key) = new_team(&server, "team-revoke").await;
    let (status, second) = server
        .admin()
        .post(&format!("/admin/teams/{team}/api-keys"), &json!({}))
        .await;
    assert!(is_2xx(status), "{second}");
    let key2 = second["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{second}"))
        .to_string();
    let client = server.api_as(Some(&key), Some(&team));
    let (status, v) = client.get("/v1/sources").await;
    assert_eq!(status, 200, "{v}");

    let (status, v) = server
        .admin()
        .delete(&format!("/admin/teams/{team}/api-keys/{key_id}"))
        .await;
    assert_eq!(status, 204, "DELETE api key: {v}");
    assert!(v.is_null(), "204 has no body: {v}");

    assert_error(client.get("/v1/sources").await, 401, Some("UNAUTHORIZED"));
    assert_error(
        client
            .post("/v1/sources", &json!({ "name": "after-revoke" }))
            .await,
        401,
        Some("UNAUTHORIZED"),
    );
    // The team's other key still works.
    let (status, v) = server
        .api_as(Some(&key2), Some(&team))
        .get("/v1/sources")
        .await;
    assert_eq!(status, 200, "{v}");
}
