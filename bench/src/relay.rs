//! The `forward` mode's relay: no storage, the generator's own stack. A hyper HTTP/1.1
//! server takes a request, POSTs the same body and event id to the receiver with the pooled
//! hyper client of [`crate::httpc`], and answers 200 once the receiver has answered 2xx.
//! It runs as a child process (`fasthook-bench relay --target URL`), like the gateway, so
//! its CPU and memory are read the same way.
//!
//! Fan-out: a request carrying `x-bench-dests: /a,/b,…` is sent to each of those receiver
//! paths, with event ids `<id>.0`, `<id>.1`, …, concurrently.

use crate::generator::RELAY_DESTS_HEADER;
use crate::httpc::{self, HttpClient};
use crate::receiver::EVENT_ID_HEADER;
use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The line a relay prints once it listens.
pub const LISTEN_MARKER: &str = "relay listening on";

struct Relay {
    client: HttpClient,
    target: String,
}

/// Serves until killed.
pub async fn serve(listen: &str, target: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{LISTEN_MARKER} http://{addr}")?;
        out.flush()?;
    }
    let relay = Arc::new(Relay {
        client: httpc::client(),
        target: target.trim_end_matches('/').to_string(),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let r = relay.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, r.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    *r.status_mut() = status;
    r
}

async fn forward_one(r: &Relay, path: &str, id: Option<String>, body: Bytes) -> Result<(), String> {
    let uri: Uri = format!("{}{}", r.target, path)
        .parse()
        .map_err(|e| format!("bad path {path}: {e}"))?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = hyper::Method::POST;
    *req.uri_mut() = uri;
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
        req.headers_mut().insert(EVENT_ID_HEADER, id);
    }
    match httpc::send(&r.client, req, Duration::from_secs(30)).await {
        Ok((s, _)) if s.is_success() => Ok(()),
        Ok((s, _)) => Err(format!("receiver answered {s}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn handle(
    req: Request<Incoming>,
    r: Arc<Relay>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let hdr = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = hdr(EVENT_ID_HEADER);
    let dests = hdr(RELAY_DESTS_HEADER);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let result = match dests {
        None => forward_one(&r, &path, id, body).await,
        Some(list) => {
            let mut set = tokio::task::JoinSet::new();
            for (i, d) in list.split(',').enumerate() {
                let (r, d, body) = (r.clone(), d.to_string(), body.clone());
                let id = id.as_ref().map(|id| format!("{id}.{i}"));
                set.spawn(async move { forward_one(&r, &d, id, body).await });
            }
            let mut res = Ok(());
            while let Some(x) = set.join_next().await {
                match x {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => res = Err(e),
                    Err(e) => res = Err(e.to_string()),
                }
            }
            res
        }
    };
    Ok(match result {
        Ok(()) => answer(StatusCode::OK, "ok".into()),
        Err(e) => answer(StatusCode::BAD_GATEWAY, e),
    })
}
