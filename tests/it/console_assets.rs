//! What the console stands on without a browser: its files are served from the binary under
//! a strict Content-Security-Policy, they load nothing inline that the policy would block, and
//! the API gives it what its pages show (a connection's held count, the engine's pause).

use serde_json::json;

use crate::common::{eventually, TestReceiver, TestServer};

const ASSETS: [(&str, &str); 3] = [
    ("/console", "text/html"),
    ("/console/console.js", "text/javascript"),
    ("/console/console.css", "text/css"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let server = TestServer::start().await;
    for (path, content_type) in ASSETS {
        let resp = server.client().get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} not in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(!resp.bytes().await.unwrap().is_empty(), "{path} is empty");
    }
    let head = server
        .client()
        .head(server.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "HEAD /console");
    let missing = server
        .client()
        .get(server.url("/console/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The policy forbids inline script, inline style and event-handler attributes; a console
/// that used them would load blank. Checked on the files as served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_uses_nothing_its_policy_forbids() {
    let server = TestServer::start().await;
    let get = |path: &'static str| {
        let request = server.client().get(server.url(path)).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let html = get("/console").await.to_lowercase();
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains("src=\"/console/"), "an inline script: {tag}");
    }
    assert!(!html.contains("<style"), "an inline <style> block");
    assert!(!html.contains(" style="), "an inline style attribute");
    let handler = inline_handler(&html);
    assert!(handler.is_none(), "an inline event handler: {handler:?}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "an external URL"
    );

    let js = get("/console/console.js").await;
    for forbidden in ["eval(", "new Function(", "localStorage"] {
        assert!(!js.contains(forbidden), "console.js uses {forbidden}");
    }
    assert!(
        js.contains("sessionStorage"),
        "credentials are not kept per session"
    );
}

/// The first ` on…=` attribute inside a tag, if any.
fn inline_handler(html: &str) -> Option<String> {
    let bytes = html.as_bytes();
    let mut in_tag = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            b' ' | b'\n' | b'\t' if in_tag => {
                let rest = &html[i + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                if name.len() > 2 && name.starts_with("on") && rest[name.len()..].starts_with('=') {
                    return Some(name);
                }
            }
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_shows_its_held_count_and_any_team_sees_the_engine_pause() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let (src, _, conn) = server.paused_pipeline(&receiver.url()).await;
    server.send_events(&src, 3, "held").await;
    let path = format!("/v1/connections/{conn}");
    let (status, v) = server.api().get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(v["held_count"], 3, "{v}");
    assert_eq!(v["failed_count"], 0, "{v}");
    let (_, list) = server.api().get("/v1/connections").await;
    assert_eq!(list["models"][0]["held_count"], 3, "{list}");

    let (status, v) = server
        .api()
        .put(&format!("/v1/connections/{conn}/unpause"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    eventually(std::time::Duration::from_secs(20), "the drain", || async {
        server.api().get(&path).await.1["held_count"] == 0
    })
    .await;

    let (status, v) = server.api().get("/v1/engine").await;
    assert_eq!((status, &v["paused"]), (200, &json!(false)), "{v}");
    let (status, _) = server.admin().put("/admin/engine/pause", None).await;
    assert_eq!(status, 200);
    let (status, v) = server.api().get("/v1/engine").await;
    assert_eq!((status, &v["paused"]), (200, &json!(true)), "{v}");
    assert_eq!(v["changed_by"], "api", "{v}");
    // Seeing it is not changing it: a team key cannot resume.
    let (status, _) = server.api().put("/admin/engine/resume", None).await;
    assert_eq!(status, 401);
    let (status, _) = server.api_as(None, None).get("/v1/engine").await;
    assert_eq!(status, 401);
}
