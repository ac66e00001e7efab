//! Standard Webhooks signatures on delivery, checked by an independent implementation.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::json;
use sha2::Sha256;

use crate::common::{eventually, sample_body, TestReceiver, TestServer};

/// `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` keyed with the base64 part of `whsec_…`.
fn sign(secret: &str, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// True when one of the space-separated signatures of the header matches.
pub fn verify(secret: &str, msg_id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let expected = sign(secret, msg_id, timestamp, body);
    header.split_whitespace().any(|s| s == expected)
}

#[test]
fn checker_matches_the_standard_webhooks_test_vector() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let got = sign(
        secret,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert!(verify(
        secret,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
        "v1,bm9ldHUx v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
    assert!(!verify(
        secret,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232315}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_when_the_destination_has_a_secret() {
    let signed = TestReceiver::start().await;
    let unsigned = TestReceiver::start().await;
    // The first hit of the signed receiver fails, so one event is delivered twice: the retry
    // must carry the same webhook-id and a valid signature too.
    signed.push_statuses(&[500]);
    let server = TestServer::start().await;

    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!("whsec_{}", B64.encode(key));

    let src = server.create_source("signed").await;
    let src_id = src["id"].as_str().unwrap().to_string();
    let d_signed = server
        .create_destination(json!({ "url": signed.url(), "signing_secret": secret }))
        .await;
    assert_eq!(d_signed["signing_secret_set"], true, "{d_signed}");
    assert!(
        !d_signed.to_string().contains(&secret[6..]),
        "the signing secret must never be returned: {d_signed}"
    );
    let d_unsigned = server
        .create_destination(json!({ "url": unsigned.url() }))
        .await;
    assert_eq!(d_unsigned["signing_secret_set"], false, "{d_unsigned}");
    let (status, fetched) = server
        .api()
        .get(&format!(
            "/v1/destinations/{}",
            d_signed["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{fetched}");
    assert!(
        !fetched.to_string().contains(&secret[6..]),
        "secret returned by GET: {fetched}"
    );

    let retry = json!([{ "type": "retry", "strategy": "linear", "count": 3, "interval": 100 }]);
    server
        .create_connection(&src_id, d_signed["id"].as_str().unwrap(), retry.clone())
        .await;
    server
        .create_connection(&src_id, d_unsigned["id"].as_str().unwrap(), retry)
        .await;

    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new(); // event id → body
    for i in 0..5 {
        let body = sample_body("sig", i);
        let ids = server
            .ingest_ok(&src_id, body.clone(), "application/json")
            .await;
        assert_eq!(ids.len(), 2, "two connections: {ids:?}");
        for id in ids {
            bodies.insert(id, body.clone());
        }
    }

    eventually(
        Duration::from_secs(20),
        "5 deliveries to each receiver",
        || async { signed.delivered_ids().len() >= 5 && unsigned.delivered_ids().len() >= 5 },
    )
    .await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hits = signed.hits();
    assert!(
        hits.len() >= 6,
        "5 events plus one retry: {} hits",
        hits.len()
    );
    let mut attempts_per_id: HashMap<String, usize> = HashMap::new();
    for hit in &hits {
        let event_id = hit.event_id();
        let body = bodies
            .get(&event_id)
            .unwrap_or_else(|| panic!("unknown event id {event_id}"));
        assert_eq!(&hit.body, body);
        let id = hit.header("webhook-id").expect("webhook-id header");
        assert_eq!(id, event_id, "webhook-id must be the event id");
        let ts = hit
            .header("webhook-timestamp")
            .expect("webhook-timestamp header");
        let ts_num: i64 = ts
            .parse()
            .unwrap_or_else(|_| panic!("webhook-timestamp {ts:?}"));
        assert!(
            (now - ts_num).abs() <= 300,
            "webhook-timestamp {ts} too far from now {now}"
        );
        let sig = hit
            .header("webhook-signature")
            .expect("webhook-signature header");
        assert!(
            verify(&secret, id, ts, &hit.body, sig),
            "bad signature {sig:?} for id {id} ts {ts}; expected {}",
            sign(&secret, id, ts, &hit.body)
        );
        *attempts_per_id.entry(event_id).or_default() += 1;
    }
    assert!(
        attempts_per_id.values().any(|&n| n >= 2),
        "the failed first hit should have been retried: {attempts_per_id:?}"
    );

    for hit in unsigned.hits() {
        assert!(
            hit.header("webhook-signature").is_none(),
            "destination without signing_secret got webhook-signature: {:?}",
            hit.headers
        );
        let event_id = hit.event_id();
        assert_eq!(Some(&hit.body), bodies.get(&event_id));
    }
}
