//! The load generator: closed loop (N requests in flight, each sent when the previous one
//! answered) and open loop (requests sent on a fixed schedule; latency is measured from the
//! *scheduled* time, so a generator that falls behind shows up as latency instead of
//! hiding it). Every request goes through the pooled hyper client of [`crate::httpc`].

use crate::clock;
use crate::httpc::HttpClient;
use crate::receiver::EVENT_ID_HEADER;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Uri};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Header naming the receiver paths the forward relay fans one request out to.
pub const RELAY_DESTS_HEADER: &str = "x-bench-dests";

/// Where one logical request goes, by mode.
#[derive(Debug, Clone)]
pub enum Target {
    /// ceiling: POST the body to each receiver URI directly; the generator mints the ids.
    Direct(Vec<Uri>),
    /// forward: one POST to the relay, which answers after the receiver did; for fan-out,
    /// `dests` lists the receiver paths and the relay mints `<id>.<i>`.
    Relay {
        uri: Uri,
        dests: Option<HeaderValue>,
        fanout: usize,
    },
    /// gateway: POST to `/e/<source_id>`; the event ids come from the answer.
    Gateway(Uri),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub target: Target,
    /// Traffic class (0 = normal, 1 = sent to a deliberately slow destination).
    pub class: u8,
}

/// What the generator drives: routes used round-robin, one body, one client.
pub struct Endpoint {
    pub routes: Vec<Route>,
    pub client: HttpClient,
    pub body: Bytes,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum Outcome {
    /// 2xx: these event ids were accepted.
    Accepted(Vec<Box<str>>),
    /// 429 or 503: back off.
    Rejected,
    /// Anything else.
    Failed(String),
}

#[derive(Deserialize)]
struct IngressAnswer {
    #[serde(default)]
    event_ids: Vec<String>,
}

impl Endpoint {
    fn post(&self, uri: Uri, id: Option<&str>) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(id) = id {
            if let Ok(v) = HeaderValue::from_str(id) {
                h.insert(EVENT_ID_HEADER, v);
            }
        }
        req
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }

    fn classify(status: u16, body: &[u8]) -> Option<Outcome> {
        match status {
            200..=299 => None,
            429 | 503 => Some(Outcome::Rejected),
            s => Some(Outcome::Failed(format!(
                "HTTP {s}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }

    /// Sends logical request number `seq` and returns its outcome and traffic class.
    pub async fn send(self: &Arc<Self>, seq: u64) -> (Outcome, u8) {
        let route = &self.routes[(seq % self.routes.len() as u64) as usize];
        let out =
            match &route.target {
                Target::Direct(uris) if uris.len() == 1 => {
                    let id = format!("b{seq}");
                    match self.exchange(self.post(uris[0].clone(), Some(&id))).await {
                        Ok((s, b)) => Self::classify(s, &b)
                            .unwrap_or_else(|| Outcome::Accepted(vec![id.into()])),
                        Err(e) => Outcome::Failed(e),
                    }
                }
                Target::Direct(uris) => {
                    let mut set = tokio::task::JoinSet::new();
                    for (i, uri) in uris.iter().enumerate() {
                        let me = self.clone();
                        let id = format!("b{seq}.{i}");
                        let req = self.post(uri.clone(), Some(&id));
                        set.spawn(async move { (id, me.exchange(req).await) });
                    }
                    let mut ids = Vec::with_capacity(uris.len());
                    let mut bad = None;
                    while let Some(r) = set.join_next().await {
                        match r {
                            Ok((id, Ok((s, b)))) => match Self::classify(s, &b) {
                                None => ids.push(id.into()),
                                Some(o) => bad = Some(o),
                            },
                            Ok((_, Err(e))) => bad = Some(Outcome::Failed(e)),
                            Err(e) => bad = Some(Outcome::Failed(e.to_string())),
                        }
                    }
                    bad.unwrap_or(Outcome::Accepted(ids))
                }
                Target::Relay { uri, dests, fanout } => {
                    let id = format!("b{seq}");
                    let mut req = self.post(uri.clone(), Some(&id));
                    if let Some(d) = dests {
                        req.headers_mut().insert(RELAY_DESTS_HEADER, d.clone());
                    }
                    match self.exchange(req).await {
                        Ok((s, b)) => Self::classify(s, &b).unwrap_or_else(|| {
                            Outcome::Accepted(if dests.is_some() {
                                (0..*fanout).map(|i| format!("{id}.{i}").into()).collect()
                            } else {
                                vec![id.into()]
                            })
                        }),
                        Err(e) => Outcome::Failed(e),
                    }
                }
                Target::Gateway(uri) => match self.exchange(self.post(uri.clone(), None)).await {
                    Ok((s, b)) => Self::classify(s, &b).unwrap_or_else(|| {
                        match serde_json::from_slice::<IngressAnswer>(&b) {
                            Ok(a) => {
                                Outcome::Accepted(a.event_ids.into_iter().map(Into::into).collect())
                            }
                            Err(e) => Outcome::Failed(format!("bad ingress answer: {e}")),
                        }
                    }),
                    Err(e) => Outcome::Failed(e),
                },
            };
        (out, route.class)
    }
}

/// One accepted request: scheduled/sent time and answer time (ns on [`clock`]).
#[derive(Debug, Clone, Copy)]
pub struct ReqRec {
    /// When it was due (open loop) or sent (closed loop).
    pub t0: u64,
    /// When the generator actually sent it: `sent - t0` is the generator's own lag.
    pub sent: u64,
    pub done: u64,
    pub events: u32,
}

/// One accepted event.
#[derive(Debug, Clone)]
pub struct EventRec {
    pub id: Box<str>,
    pub t0: u64,
    /// When its request was sent, and when the answer accepting it came back: an event
    /// whose request was sent after another's answer was certainly accepted after it.
    pub sent: u64,
    pub done: u64,
    pub class: u8,
}

#[derive(Debug, Default)]
pub struct Records {
    pub requests: Vec<ReqRec>,
    pub events: Vec<EventRec>,
}

impl Records {
    fn absorb(&mut self, other: Records) {
        self.requests.extend(other.requests);
        self.events.extend(other.events);
    }
}

/// Counters read by the progress line and the drain loop while a run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub accepted_requests: AtomicU64,
    pub accepted_events: AtomicU64,
    pub accepted_class: [AtomicU64; 2],
    pub rejected: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Live {
    fn note(&self, out: &Outcome, class: u8) {
        match out {
            Outcome::Accepted(ids) => {
                self.accepted_requests.fetch_add(1, Ordering::Relaxed);
                self.accepted_events
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.accepted_class[(class as usize).min(1)]
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
            Outcome::Rejected => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut f = self.first_error.lock().expect("live");
                if f.is_none() {
                    *f = Some(e.clone());
                }
            }
        }
    }
}

fn keep(rec: &mut Records, out: Outcome, class: u8, t0: u64, sent: u64, done: u64) {
    if let Outcome::Accepted(ids) = out {
        rec.requests.push(ReqRec {
            t0,
            sent,
            done,
            events: ids.len() as u32,
        });
        rec.events.extend(ids.into_iter().map(|id| EventRec {
            id,
            t0,
            sent,
            done,
            class,
        }));
    }
}

/// Closed loop: `concurrency` workers, each sending its next request as soon as the last
/// one answered, until `stop_ns` or until `limit` requests were accepted. Rejections
/// (429/503) back off 5 ms, errors 10 ms.
pub async fn closed_loop(
    ep: Arc<Endpoint>,
    concurrency: usize,
    stop_ns: u64,
    limit: u64,
    live: Arc<Live>,
) -> Records {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (ep, next, live) = (ep.clone(), next.clone(), live.clone());
        workers.spawn(async move {
            let mut rec = Records::default();
            while clock::now_ns() < stop_ns
                && live.accepted_requests.load(Ordering::Relaxed) < limit
            {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                live.sent.fetch_add(1, Ordering::Relaxed);
                let t0 = clock::now_ns();
                let (out, class) = ep.send(seq).await;
                let done = clock::now_ns();
                live.note(&out, class);
                match out {
                    Outcome::Rejected => tokio::time::sleep(Duration::from_millis(5)).await,
                    Outcome::Failed(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Outcome::Accepted(_) => {}
                }
                keep(&mut rec, out, class, t0, t0, done);
            }
            rec
        });
    }
    let mut all = Records::default();
    while let Some(r) = workers.join_next().await {
        if let Ok(r) = r {
            all.absorb(r);
        }
    }
    all
}

/// Open loop: request `i` is due at `start_ns + i / rate`; every request due before
/// `stop_ns` is sent, late or not, and its latency counts from when it was due. At most
/// `max_inflight` requests are outstanding; waiting for a slot also counts as latency.
pub async fn open_loop(
    ep: Arc<Endpoint>,
    rate: f64,
    max_inflight: usize,
    start_ns: u64,
    stop_ns: u64,
    live: Arc<Live>,
) -> Records {
    open_loop_until(
        ep,
        rate,
        max_inflight,
        start_ns,
        Arc::new(AtomicU64::new(stop_ns)),
        live,
    )
    .await
}

/// [`open_loop`] with an end that can move while it runs: requests due before the value of
/// `stop_ns` (read before each one) are sent. Setting it to now ends the load at once.
pub async fn open_loop_until(
    ep: Arc<Endpoint>,
    rate: f64,
    max_inflight: usize,
    start_ns: u64,
    stop_ns: Arc<AtomicU64>,
    live: Arc<Live>,
) -> Records {
    const SHARDS: usize = 16;
    let shards: Arc<Vec<Mutex<Records>>> = Arc::new(
        (0..SHARDS)
            .map(|_| Mutex::new(Records::default()))
            .collect(),
    );
    let max_inflight = max_inflight.clamp(1, 1_000_000);
    let sem = Arc::new(Semaphore::new(max_inflight));
    let interval = 1e9 / rate.max(1e-3);
    let mut i: u64 = 0;
    loop {
        let due = start_ns + (i as f64 * interval) as u64;
        if due >= stop_ns.load(Ordering::Relaxed) {
            break;
        }
        let now = clock::now_ns();
        if due > now {
            // Not past the end either: wake at least every 100 ms to see a moved end.
            let wake = due.min(now + 100_000_000);
            tokio::time::sleep_until(clock::instant_at(wake).into()).await;
            continue;
        }
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (ep, live, shards) = (ep.clone(), live.clone(), shards.clone());
        live.sent.fetch_add(1, Ordering::Relaxed);
        let seq = i;
        tokio::spawn(async move {
            let sent = clock::now_ns();
            let (out, class) = ep.send(seq).await;
            let done = clock::now_ns();
            live.note(&out, class);
            keep(
                &mut shards[seq as usize % SHARDS].lock().expect("shard"),
                out,
                class,
                due,
                sent,
                done,
            );
            drop(permit);
        });
        i += 1;
    }
    let _all = sem.acquire_many(max_inflight as u32).await;
    let mut all = Records::default();
    for s in shards.iter() {
        all.absorb(std::mem::take(&mut *s.lock().expect("shard")));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::{Receiver, ReceiverConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_ends_when_its_end_is_moved() {
        let r = Receiver::start(ReceiverConfig::default()).await.unwrap();
        let ep = Arc::new(Endpoint {
            routes: vec![Route {
                target: Target::Direct(vec![format!("{}/ok/0", r.base_url()).parse().unwrap()]),
                class: 0,
            }],
            client: crate::httpc::client(),
            body: Bytes::from_static(b"{}"),
            timeout: Duration::from_secs(5),
        });
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicU64::new(u64::MAX));
        let start = clock::now_ns();
        let run = tokio::spawn(open_loop_until(
            ep,
            200.0,
            16,
            start,
            stop.clone(),
            live.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(clock::now_ns(), Ordering::Relaxed);
        let recs = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the load ends once its end has passed")
            .unwrap();
        let n = recs.events.len();
        assert!((20..=120).contains(&n), "{n} events in ~0.3 s at 200/s");
        for e in &recs.events {
            assert!(e.t0 <= e.sent && e.sent <= e.done, "{e:?}");
        }
        r.shutdown();
    }
}
