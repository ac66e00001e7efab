//! The `bare` mode's relay: the least a durable store-and-forward hop can do on FastHook's own
//! stack — actix-web in, sled with group commit and `fdatasync`, reqwest out — and nothing
//! else: no routing, no records but the body, no actors, no metrics. The targets cite
//! such a relay as the reference; running it in the same invocation as the gateway shows how
//! much of the gap to the ceiling is the stack and how much is the gateway.
//!
//! Like the gateway it answers 200 once the body is durable and delivers afterwards, retrying
//! every 100 ms until the receiver answers 2xx; a delivered body is removed with the next
//! group.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::receiver::EVENT_ID_HEADER;

pub const LISTEN_MARKER: &str = "bare relay listening on";

/// A group holds at most this many messages, as in the gateway's writer.
const MAX_GROUP: usize = 4096;

enum Msg {
    Put(u64, Bytes, oneshot::Sender<()>),
    Remove(u64),
}

struct Shared {
    writer: mpsc::Sender<Msg>,
    client: reqwest::Client,
    target: String,
    seq: AtomicU64,
}

/// Runs the relay until the process is killed.
pub fn run(listen: &str, target: &str, data_dir: &Path) -> Result<()> {
    let db = sled::Config::new()
        .path(data_dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .cache_capacity(256 * 1024 * 1024)
        .open()
        .context("opening sled")?;
    let tree = db.open_tree("bare")?;
    let data_file = File::open(data_dir.join("db")).context("sled's data file")?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bare-writer".into())
        .spawn(move || write_groups(&db, &tree, &data_file, &rx))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let shared = web::Data::new(Shared {
        writer: tx,
        client,
        target: target.trim_end_matches('/').to_string(),
        seq: AtomicU64::new(0),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(ingest))
        })
        .disable_signals()
        .bind(listen)?;
        let addr = server.addrs()[0];
        println!("{LISTEN_MARKER} http://{addr}");
        server.run().await?;
        Ok(())
    })
}

/// Group commit: everything that has arrived goes into one batch, one flush and one
/// `fdatasync` (only when someone waits), then every waiting request is answered.
fn write_groups(db: &sled::Db, tree: &sled::Tree, data_file: &File, rx: &mpsc::Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let mut batch = sled::Batch::default();
        let mut acks = Vec::new();
        for m in group {
            match m {
                Msg::Put(seq, body, ack) => {
                    batch.insert(&seq.to_be_bytes(), &*body);
                    acks.push(ack);
                }
                Msg::Remove(seq) => batch.remove(&seq.to_be_bytes()),
            }
        }
        let durable = tree.apply_batch(batch).is_ok()
            && (acks.is_empty() || (db.flush().is_ok() && data_file.sync_data().is_ok()));
        if durable {
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }
}

async fn ingest(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let id = req
        .headers()
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let url = format!("{}{}", shared.target, req.uri().path());
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let (ack, durable) = oneshot::channel();
    if shared
        .writer
        .send(Msg::Put(seq, body.clone(), ack))
        .is_err()
        || durable.await.is_err()
    {
        return HttpResponse::ServiceUnavailable().body("store failed");
    }
    actix_web::rt::spawn(deliver(shared.into_inner(), seq, url, id, body));
    HttpResponse::Ok().finish()
}

async fn deliver(
    shared: std::sync::Arc<Shared>,
    seq: u64,
    url: String,
    id: Option<String>,
    body: Bytes,
) {
    loop {
        let mut req = shared
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(id) = &id {
            req = req.header(EVENT_ID_HEADER, id);
        }
        if let Ok(resp) = req.send().await {
            let ok = resp.status().is_success();
            let _ = resp.bytes().await;
            if ok {
                let _ = shared.writer.send(Msg::Remove(seq));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
