//! R4: receivers that misbehave at the transport level. Each failure is classified with its
//! `error_code`, retried by the connection's rules, and a healthy destination beside them
//! delivers everything. (A name that does not resolve is classified by the delivery client's
//! unit tests: resolving one here could send a packet off this machine.)

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{breaker_off, eventually, TestReceiver, TestServer};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads the request and never answers.
    Hang,
    /// Starts a 200 answer and resets the connection half-way through its body.
    ResetMidBody,
    /// Sends its answer a byte every 100 ms.
    Drip,
    /// Answers with something that is not HTTP.
    Garbage,
}

/// A receiver on loopback that misbehaves as `fault` says; answers its URL.
async fn faulty(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(misbehave(stream, fault));
        }
    });
    format!("http://{addr}/hook")
}

async fn misbehave(mut stream: TcpStream, fault: Fault) {
    // Read the head and whatever body came with it.
    let mut buf = vec![0u8; 64 * 1024];
    let _ = stream.read(&mut buf).await;
    match fault {
        Fault::Hang => {
            let _ = stream.read(&mut buf).await;
            std::future::pending::<()>().await;
        }
        Fault::ResetMidBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
                .await;
            let _ = stream.flush().await;
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Fault::Drip => {
            for b in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" {
                if stream.write_all(&[*b]).await.is_err() {
                    return;
                }
                let _ =
                    tokio::time::timeout(Duration::from_millis(100), std::future::pending::<()>())
                        .await;
            }
        }
        Fault::Garbage => {
            let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
        }
    }
}

/// A port nothing listens on any more.
async fn refusing() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_classified_retried_and_contained() {
    let server = TestServer::start().await;
    let healthy = TestReceiver::start().await;
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 1, "interval": 100 }]);
    let mut dest = breaker_off();
    dest["timeout_ms"] = json!(500);
    let mut cases = Vec::new();
    for (fault, code) in [
        (Some(Fault::Hang), "TIMEOUT"),
        (Some(Fault::ResetMidBody), "CONNECTION_RESET"),
        (Some(Fault::Drip), "TIMEOUT"),
        (Some(Fault::Garbage), "BAD_RESPONSE"),
        (None, "CONNECTION_REFUSED"),
    ] {
        let url = match fault {
            Some(f) => faulty(f).await,
            None => refusing().await,
        };
        let (src, _, _) = server.pipeline(&url, dest.clone(), rules.clone()).await;
        let ids = server
            .ingest_ok(&src, r#"{"n": 1}"#, "application/json")
            .await;
        cases.push((fault, code, ids[0].clone()));
    }
    // A healthy destination beside them, sent to while they fail.
    let (good, _, _) = server.pipeline(&healthy.url(), json!({}), json!([])).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.extend(
            server
                .ingest_ok(&good, format!(r#"{{"i": {i}}}"#), "application/json")
                .await,
        );
    }
    eventually(
        Duration::from_secs(20),
        "the healthy destination gets all 50",
        || async {
            let delivered = healthy.delivered_ids();
            sent.iter().all(|id| delivered.contains(id))
        },
    )
    .await;

    for (fault, code, id) in &cases {
        eventually(
            Duration::from_secs(30),
            &format!("{fault:?} fails its two attempts"),
            || async {
                server.event(id).await["status"] == "FAILED" && server.attempts(id).await.len() == 2
            },
        )
        .await;
        let event = server.event(id).await;
        assert_eq!(event["error_code"], *code, "{fault:?}: {event}");
        for attempt in server.attempts(id).await {
            assert_eq!(attempt["error_code"], *code, "{fault:?}: {attempt}");
            assert_eq!(attempt["status"], "FAILED");
        }
    }
}
