//! The receiver: a hyper HTTP/1.1 server on the bench's runtime (all cores) that records
//! every delivery by its `x-fasthook-event-id` header, with the time of the first 2xx answer.
//!
//! Paths choose the behaviour: `/delay/<ms>/...` answers after `<ms>` milliseconds (W4's slow
//! destination); anything else answers 200 at once. Deliveries on `/delay/` paths are
//! counted apart, so a run can wait for the fast ones only.
//!
//! [`Receiver::set_failing`] makes it answer an error status (W10: 503) to every delivery
//! until switched back; those answers are counted as `failed` and record nothing.
//! Each id's first 2xx also gets an arrival number (`first_seq`), the order the receiver
//! answered them in.

use crate::clock;
use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The header carrying the event id (set by the gateway; minted by the generator in
/// ceiling and forward).
pub const EVENT_ID_HEADER: &str = "x-fasthook-event-id";

const SHARDS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub count: u64,
    pub first_ns: u64,
    /// Arrival number of the first 2xx answer for this id (1-based, over all ids): the
    /// order in which the receiver accepted first deliveries.
    pub first_seq: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ReceiverConfig {
    /// Self-check: answer 200 to the n-th delivery (1-based) but do not record it, as if the
    /// event were lost on the way. The run must then be reported void.
    pub drop_nth: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Requests carrying an event id (all deliveries, duplicates included).
    pub hits: u64,
    /// Unique ids seen.
    pub unique: u64,
    /// Unique ids seen on `/delay/` paths.
    pub unique_delayed: u64,
    /// Requests without an event id.
    pub anonymous: u64,
    /// Deliveries dropped on purpose (self-check).
    pub dropped: u64,
    /// Deliveries answered with an error status while failing ([`Receiver::set_failing`]).
    pub failed: u64,
    pub body_bytes: u64,
}

struct State {
    shards: Vec<Mutex<HashMap<Box<str>, Hit>>>,
    hits: AtomicU64,
    unique: AtomicU64,
    unique_delayed: AtomicU64,
    anonymous: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// First-delivery arrival counter (see [`Hit::first_seq`]).
    firsts: AtomicU64,
    /// The status answered to every delivery while failing; 0 when healthy.
    fail_status: AtomicU16,
    body_bytes: AtomicU64,
    drop_nth: Option<u64>,
}

fn shard_of(id: &str) -> usize {
    // FNV-1a: cheap and good enough to spread ids over the shards.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % SHARDS as u64) as usize
}

impl State {
    fn record(&self, id: &str, delayed: bool) {
        let n = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if self.drop_nth == Some(n) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = clock::now_ns();
        let mut m = self.shards[shard_of(id)].lock().expect("receiver shard");
        match m.get_mut(id) {
            Some(h) => h.count += 1,
            None => {
                let first_seq = self.firsts.fetch_add(1, Ordering::Relaxed) + 1;
                m.insert(
                    id.into(),
                    Hit {
                        count: 1,
                        first_ns: now,
                        first_seq,
                    },
                );
                self.unique.fetch_add(1, Ordering::Relaxed);
                if delayed {
                    self.unique_delayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// `/delay/<ms>/...` → Some(ms).
pub fn parse_delay(path: &str) -> Option<Duration> {
    let rest = path.strip_prefix("/delay/")?;
    let ms: u64 = rest.split('/').next()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl Receiver {
    pub async fn start(cfg: ReceiverConfig) -> Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hits: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            unique_delayed: AtomicU64::new(0),
            anonymous: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            firsts: AtomicU64::new(0),
            fail_status: AtomicU16::new(0),
            body_bytes: AtomicU64::new(0),
            drop_nth: cfg.drop_nth,
        });
        let (tx, rx) = watch::channel(false);
        let st = state.clone();
        tokio::spawn(accept_loop(listener, st, rx));
        Ok(Receiver {
            addr,
            state,
            shutdown: tx,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counters(&self) -> Counters {
        let s = &self.state;
        Counters {
            hits: s.hits.load(Ordering::Relaxed),
            unique: s.unique.load(Ordering::Relaxed),
            unique_delayed: s.unique_delayed.load(Ordering::Relaxed),
            anonymous: s.anonymous.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            body_bytes: s.body_bytes.load(Ordering::Relaxed),
        }
    }

    /// From now on, answer `status` (e.g. 503, without `Retry-After`) to every delivery and
    /// record none of them; `None` answers 2xx again.
    pub fn set_failing(&self, status: Option<StatusCode>) {
        let code = status.map_or(0, |s| s.as_u16());
        self.state.fail_status.store(code, Ordering::SeqCst);
    }

    /// A copy of every recorded delivery.
    pub fn snapshot(&self) -> HashMap<Box<str>, Hit> {
        let mut all = HashMap::with_capacity(self.counters().unique as usize);
        for s in &self.state.shards {
            let m = s.lock().expect("receiver shard");
            all.extend(m.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut rx: watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = rx.changed() => return,
        };
        let Ok((stream, _)) = conn else {
            // Out of descriptors or similar: back off a little.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let mut rx2 = rx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, st.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = rx2.changed() => {}
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = req
        .headers()
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delay = parse_delay(req.uri().path());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad body")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        }
    };
    st.body_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let fail = st.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        if id.is_some() {
            st.failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut r = Response::new(Full::new(Bytes::from_static(b"failing on purpose")));
        *r.status_mut() = StatusCode::from_u16(fail).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(r);
    }
    // A delivery counts when the receiver answers 2xx, as it does for the sender: recorded
    // just before the answer, after any delay.
    match id {
        Some(id) => st.record(&id, delay.is_some()),
        None => {
            st.anonymous.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpc;
    use hyper::Request;

    #[test]
    fn delay_paths() {
        assert_eq!(
            parse_delay("/delay/200/3"),
            Some(Duration::from_millis(200))
        );
        assert_eq!(parse_delay("/ok/1"), None);
        assert_eq!(parse_delay("/delay/x"), None);
    }

    #[tokio::test]
    async fn records_unique_ids_duplicates_and_drops() {
        let r = Receiver::start(ReceiverConfig { drop_nth: Some(3) })
            .await
            .unwrap();
        let c = httpc::client();
        for id in ["a", "b", "c", "a", "d"] {
            let req = Request::post(format!("{}/ok/0", r.base_url()))
                .header(EVENT_ID_HEADER, id)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let (s, _) = httpc::send(&c, req, Duration::from_secs(5)).await.unwrap();
            assert_eq!(s, StatusCode::OK);
        }
        let k = r.counters();
        assert_eq!((k.hits, k.unique, k.dropped), (5, 3, 1));
        let snap = r.snapshot();
        assert_eq!(snap["a"].count, 2);
        assert!(!snap.contains_key("c"), "the 3rd hit was dropped");
        assert_eq!((snap["a"].first_seq, snap["b"].first_seq), (1, 2));
        assert_eq!(snap["d"].first_seq, 3);
        r.shutdown();
    }

    #[tokio::test]
    async fn failing_answers_the_status_and_records_nothing() {
        let r = Receiver::start(ReceiverConfig::default()).await.unwrap();
        let c = httpc::client();
        let post = |id: &str| {
            Request::post(format!("{}/ok/0", r.base_url()))
                .header(EVENT_ID_HEADER, id)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        r.set_failing(Some(StatusCode::SERVICE_UNAVAILABLE));
        for id in ["a", "b"] {
            let (s, _) = httpc::send(&c, post(id), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        }
        r.set_failing(None);
        let (s, _) = httpc::send(&c, post("b"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        let k = r.counters();
        assert_eq!((k.hits, k.unique, k.failed), (1, 1, 2));
        assert_eq!(r.snapshot()["b"].first_seq, 1);
        r.shutdown();
    }
}
