//! R1: SIGKILL at a random moment under load, again and again. After every restart the
//! ledger balances: every event answered 200 exists, the held ones are still `HOLD`, an open
//! breaker is still open; at the end every accepted delivery has arrived. 20 loops by default;
//! `FASTHOOK_KILL_LOOPS=100` for more, `FASTHOOK_KILL_SEED` to replay a run (the seed is printed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common::{eventually, poll, TestReceiver, TestServer};

/// Sends to `sources` in turn until a request fails (the process was killed); records the
/// event ids answered 200, per source.
fn load(
    client: reqwest::Client,
    base: String,
    sources: Vec<String>,
    acked: Arc<Mutex<Vec<Vec<String>>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0u64.. {
            let which = (n % sources.len() as u64) as usize;
            let sent = client
                .post(format!("{base}/e/{}", sources[which]))
                .header("content-type", "application/json")
                .body(format!(r#"{{"n": {n}}}"#))
                .send()
                .await;
            let Ok(resp) = sent else { return };
            if resp.status().as_u16() != 200 {
                return;
            }
            let Ok(bytes) = resp.bytes().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let ids = v["event_ids"].as_array().unwrap();
            let mut acked = acked.lock().unwrap();
            acked[which].extend(ids.iter().map(|e| e.as_str().unwrap().to_owned()));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_at_random_moments_under_load_loses_nothing() {
    let loops: usize = std::env::var("FASTHOOK_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FASTHOOK_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("kill loop: {loops} loops, FASTHOOK_KILL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut server = TestServer::start().await;
    let receiver = TestReceiver::start().await;
    let sick = TestReceiver::start().await;
    sick.set_status(500);
    let (delivered_src, _, _) = server.pipeline(&receiver.url(), json!({}), json!([])).await;
    let (held_src, _, held_conn) = server.paused_pipeline(&receiver.url()).await;
    // A breaker that opens after two failures and cools down for longer than the test.
    let (sick_src, sick_dest, _) = server.breaker_pipeline(&sick.url(), 2, 3600).await;
    for _ in 0..2 {
        server.ingest_ok(&sick_src, "{}", "application/json").await;
    }
    let circuit = |server: &TestServer| {
        let (api, path) = (
            server.api(),
            format!("/v1/destinations/{sick_dest}/circuit"),
        );
        async move { api.get(&path).await.1["state"].clone() }
    };
    eventually(Duration::from_secs(20), "the breaker opens", || async {
        circuit(&server).await == "open"
    })
    .await;

    let acked = Arc::new(Mutex::new(vec![Vec::new(), Vec::new()]));
    for round in 0..loops {
        let before: usize = acked.lock().unwrap().iter().map(Vec::len).sum();
        let target = before + rng.gen_range(5..150);
        let task = load(
            server.client().clone(),
            server.base.clone(),
            vec![delivered_src.clone(), held_src.clone()],
            acked.clone(),
        );
        poll(Duration::from_secs(30), || async {
            let n: usize = acked.lock().unwrap().iter().map(Vec::len).sum();
            (n >= target).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("round {round}: the load never reached {target} (seed {seed})"));
        server.kill9();
        let _ = task.await;
        server.restart().await;

        // The ledger after this restart.
        let (sent, held) = {
            let acked = acked.lock().unwrap();
            (acked[0].clone(), acked[1].clone())
        };
        let exist: HashSet<String> = server
            .events(&format!("source_id={delivered_src}"))
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<_> = sent.iter().filter(|id| !exist.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "round {round} (seed {seed}): lost {lost:?}"
        );
        let holding: HashSet<String> = server
            .events(&format!("connection_id={held_conn}&status=HOLD"))
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let released: Vec<_> = held.iter().filter(|id| !holding.contains(*id)).collect();
        assert!(
            released.is_empty(),
            "round {round} (seed {seed}): no longer held: {released:?}"
        );
        assert_eq!(
            circuit(&server).await,
            "open",
            "round {round} (seed {seed}): the breaker"
        );
    }

    let sent = acked.lock().unwrap()[0].clone();
    eventually(
        Duration::from_secs(60),
        "every accepted event is delivered",
        || async {
            let delivered = receiver.delivered_ids();
            sent.iter().all(|id| delivered.contains(id))
        },
    )
    .await;
    println!(
        "kill loop: {loops} kills, {} delivered and {} held events accounted for",
        sent.len(),
        acked.lock().unwrap()[1].len()
    );
}
