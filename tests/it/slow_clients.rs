//! R6: clients that send too slowly are cut off, and what they sent is not stored: a request
//! head that never ends (slow-loris), and a body that never ends.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{ServerOpts, TestServer};

/// What the server sends back before it closes, read until it closes (or `deadline`).
async fn answer_until_closed(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(deadline, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server kept a stalled connection open for {deadline:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_or_body_that_never_ends_is_cut_off_and_nothing_is_stored() {
    let server =
        TestServer::start_with(ServerOpts::config("[ingress]\nbody_timeout = \"1s\"\n")).await;
    let source = server.create_source("slow").await;
    let source = source["id"].as_str().unwrap().to_owned();
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Slow-loris: the head starts and never ends.
    let mut loris = TcpStream::connect(&addr).await.unwrap();
    loris
        .write_all(format!("POST /e/{source} HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").as_bytes())
        .await
        .unwrap();
    let answer = answer_until_closed(&mut loris, Duration::from_secs(15)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body that stops a tenth of the way through.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /e/{source} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"partial\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = answer_until_closed(&mut stalled, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");

    let stored = server
        .list_all("/v1/requests", &format!("source_id={source}"))
        .await;
    assert!(stored.is_empty(), "{stored:?}");
}
