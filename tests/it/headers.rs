//! R8: what a provider sends for one hop (hop-by-hop headers, the headers `Connection` names,
//! its `Host`) is never forwarded, and a destination's own headers cannot smuggle a line break.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{assert_error, eventually, TestReceiver, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_headers_and_host_are_never_forwarded_and_header_injection_is_refused() {
    let server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    for headers in [
        json!({"x-a": "v\r\nInjected: 1"}),
        json!({"x-a": "v\nInjected: 1"}),
        json!({"bad name": "v"}),
        json!({"x-a\r\nInjected": "v"}),
    ] {
        let v = assert_error(
            server
                .api()
                .post(
                    "/v1/destinations",
                    &json!({"name": "x", "url": receiver.url(), "headers": headers}),
                )
                .await,
            422,
            Some("VALIDATION_ERROR"),
        );
        assert!(v["message"].as_str().unwrap().starts_with("headers"), "{v}");
    }

    let (src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /e/{src} HTTP/1.1\r\nHost: evil.example\r\nConnection: close, X-Hop-Secret\r\n\
         X-Hop-Secret: s3cr3t\r\nProxy-Authorization: Basic eHl6\r\nKeep-Alive: timeout=5\r\n\
         TE: trailers\r\nX-Custom: kept\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    eventually(
        Duration::from_secs(20),
        "the event is delivered",
        || async { !receiver.hits().is_empty() },
    )
    .await;
    let hit = &receiver.hits()[0];
    assert_eq!(hit.header("x-custom"), Some("kept"));
    for gone in ["x-hop-secret", "proxy-authorization", "keep-alive", "te"] {
        assert_eq!(hit.header(gone), None, "{gone} was forwarded");
    }
    let receiver_host = receiver.base_url().trim_start_matches("http://").to_owned();
    assert_eq!(hit.header("host"), Some(receiver_host.as_str()));
}
