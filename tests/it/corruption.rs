//! R3: a damaged data directory. The gateway either refuses to start with an error that names
//! what is damaged, or starts with everything it had accepted; it never starts silently with
//! less, and never panics.

use std::time::Duration;

use serde_json::json;

use crate::common::{breaker_off, eventually, TestReceiver, TestServer};

fn body(i: usize) -> String {
    format!(r#"{{"i": {i}, "pad": "{}"}}"#, "p".repeat(500))
}

/// A server with `n` events waiting for a retry (their receiver answers 500), stopped cleanly.
async fn stopped_with_waiting_events(n: usize) -> (TestServer, TestReceiver, String, Vec<String>) {
    let mut server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let rules = json!([{ "type": "retry", "strategy": "linear", "count": 1000, "interval": 300 }]);
    let (src, _, _) = server.pipeline(&receiver.url(), breaker_off(), rules).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.extend(server.ingest_ok(&src, body(i), "application/json").await);
    }
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(20)).await.success());
    (server, receiver, src, ids)
}

/// The start was refused with an error naming `names`, and nothing panicked.
fn assert_refused(
    server: &TestServer,
    outcome: Result<(), std::process::ExitStatus>,
    names: &[&str],
) {
    let stderr = server.stderr_text();
    let status = outcome.expect_err("the damaged data directory was opened");
    assert!(!status.success(), "{status}");
    for name in names {
        assert!(
            stderr.contains(name),
            "the error does not name {name}: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decode_stops_the_start_and_is_named() {
    let (mut server, _receiver, _, _) = stopped_with_waiting_events(5).await;
    let data = server.data_dir();
    let store =
        fasthook::store::Store::open(&data, fasthook::store::Durability::Flush, Duration::ZERO)
            .unwrap();
    let destination = store.all_destinations().unwrap()[0].id.clone();
    let key = fasthook::store::keys::destination(&destination);
    store
        .commit(vec![fasthook::store::Op::Put(key, vec![9, 1, 2, 3])])
        .await
        .unwrap();
    store.close().await;
    let outcome = server.restart_or_exit().await;
    assert_refused(
        &server,
        outcome,
        &[destination.as_str(), "record version 9"],
    );
}

/// sled's log is not written in file order (it reuses segments), so cutting its file short
/// may cost nothing that is still live. Either way: refused, or started with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_lost_acknowledged_writes_is_refused_until_the_operator_says_otherwise() {
    for keep_tenths in [6, 3] {
        let (mut server, _receiver, src, ids) = stopped_with_waiting_events(200).await;
        let db = server.data_dir().join("db");
        let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len * keep_tenths / 10).unwrap();
        drop(file);
        match server.restart_or_exit().await {
            Ok(()) => {
                let n = server.events(&format!("source_id={src}")).await.len();
                assert_eq!(n, ids.len(), "started with less than it had accepted");
            }
            refused if !server.stderr_text().contains("durable-mark") => {
                // The cut took pages the tree still links to: sled's files do not read back.
                assert_refused(&server, refused, &["damaged", "db", "do not read back"]);
            }
            refused => {
                assert_refused(&server, refused, &["durable-mark", "db", "acknowledged"]);
                // The way out the message gives: start with what is left.
                std::fs::remove_file(server.data_dir().join("durable-mark")).unwrap();
                server
                    .restart_or_exit()
                    .await
                    .expect("starts once told to take what is left");
                let left = server.events(&format!("source_id={src}")).await.len();
                assert!(left <= ids.len(), "{left} of {} events", ids.len());
            }
        }
    }
}

/// Where a flipped run of bytes lands in sled's log decides what recovery meets: a torn
/// message, a page whose records are gone, a leaf whose updates no longer fit it, or nothing
/// live. Each used to be met differently (a panic in recovery, a start that lost index keys,
/// lookups that spun and panicked). The same store is damaged at 31 places, each time from an
/// intact copy, and first opened intact: the check at open must not refuse a whole store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_inside_the_log_or_to_sleds_own_files_never_starts_silently_with_less() {
    const PLACES: usize = 32;
    let (mut server, _receiver, src, ids) = stopped_with_waiting_events(1000).await;
    let data = server.data_dir();
    let intact = tempfile::tempdir().unwrap();
    copy_dir(&data, intact.path());
    for place in 0..PLACES {
        std::fs::remove_dir_all(&data).unwrap();
        copy_dir(intact.path(), &data);
        if place > 0 {
            let db = data.join("db");
            let mut bytes = std::fs::read(&db).unwrap();
            let at = bytes.len() * place / PLACES;
            for b in &mut bytes[at..at + 64] {
                *b ^= 0xff;
            }
            std::fs::write(&db, bytes).unwrap();
        }
        server.clear_stderr();
        match server.restart_or_exit().await {
            Ok(()) => {
                let listed = server.events(&format!("source_id={src}")).await.len();
                assert_eq!(
                    listed,
                    ids.len(),
                    "damage at {place}/{PLACES}: started with less"
                );
                server.sigterm();
                assert!(server.wait_exit(Duration::from_secs(20)).await.success());
            }
            refused => {
                assert!(
                    place > 0,
                    "the intact store was refused: {}",
                    server.stderr_text()
                );
                // Refused by the durable mark (the log came back short) or by sled's files
                // not reading back: either names the log file and calls it damaged.
                assert_refused(&server, refused, &["damaged", "db"]);
                let stderr = server.stderr_text();
                assert!(
                    stderr.contains("durable-mark") || stderr.contains("do not read back"),
                    "damage at {place}/{PLACES}: the error does not say what was found: {stderr}"
                );
            }
        }
    }

    let (mut server, _receiver, _, _) = stopped_with_waiting_events(5).await;
    std::fs::write(server.data_dir().join("conf"), b"garbage\x00\xff").unwrap();
    let outcome = server.restart_or_exit().await;
    let data = server.data_dir().display().to_string();
    assert_refused(&server, outcome, &[data.as_str(), "damaged", "conf"]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A body segment cut short: the gateway starts with every event; those whose bodies are gone
/// fail with `BODY_UNAVAILABLE`, the others are delivered byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_body_segment_fails_only_the_events_whose_bodies_are_gone() {
    let (mut server, receiver, src, ids) = stopped_with_waiting_events(100).await;
    let segment = server.data_dir().join("bodies").join("0000000000.seg");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 2).unwrap();
    drop(file);
    receiver.set_status(200);
    server.restart_or_exit().await.expect("starts");
    assert_eq!(
        server.events(&format!("source_id={src}")).await.len(),
        ids.len()
    );
    eventually(
        Duration::from_secs(30),
        "every event is delivered or says its body is unavailable",
        || async {
            server
                .events(&format!("source_id={src}"))
                .await
                .iter()
                .all(|e| e["status"] == "SUCCESSFUL" || e["error_code"] == "BODY_UNAVAILABLE")
        },
    )
    .await;
    let events = server.events(&format!("source_id={src}")).await;
    let delivered = events
        .iter()
        .filter(|e| e["status"] == "SUCCESSFUL")
        .count();
    assert!(
        delivered > 0 && delivered < ids.len(),
        "{delivered} delivered"
    );
    for hit in receiver.hits().iter().filter(|h| h.status == 200) {
        let i = ids.iter().position(|id| *id == hit.event_id()).unwrap();
        assert_eq!(
            hit.body,
            body(i).as_bytes(),
            "event {i} delivered with another body"
        );
    }
    assert!(!server.stderr_text().contains("panicked"));
}
