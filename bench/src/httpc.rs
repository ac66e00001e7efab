//! The one HTTP client stack used everywhere: a pooled keep-alive hyper client (HTTP/1.1,
//! TCP_NODELAY). The generator uses it in every mode, so ceiling and forward measure the
//! same stack the gateway is driven with.

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled keep-alive client.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Sends one request and reads the whole answer.
pub async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes)> {
    let fut = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("timed out after {timeout:?}"))?
}

/// A JSON API call with bearer auth; returns the status and the parsed body (`Null` when
/// empty or not JSON).
pub async fn json_call(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value)> {
    let mut b = Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let payload = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v)?)
        }
        None => Bytes::new(),
    };
    let req = b.body(Full::new(payload)).context("building request")?;
    let (status, bytes) = send(client, req, Duration::from_secs(60))
        .await
        .with_context(|| format!("{method} {url}"))?;
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}
