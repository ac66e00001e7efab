//! Outbound HTTP: one pooled reqwest client for the whole process, the delivery headers and
//! signatures of the contract, and the classification of every outcome into an
//! `AttemptResult` (one pure function per concern, table-tested).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::address_guard::{literal_refusal, BlockedAddress, GuardedResolver};
use crate::domain::address_policy::AddressPolicy;
use crate::domain::destination_core::AttemptResult;
use crate::domain::verify::hmac_digest;
use crate::domain::{DeliveryError, Destination, EventId, HmacAlgorithm, Timestamp};

/// What is delivered: the provider's headers and body, shared by every event of a request.
/// The headers are validated into a `HeaderMap` once, not on every attempt.
#[derive(Debug)]
pub struct Payload {
    headers: HeaderMap,
    pub body: Bytes,
}

impl Payload {
    pub fn new(headers: &[(String, String)], body: Bytes) -> Payload {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            // Stored headers came through an HTTP parser, so they are valid; skip, never fail.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        Payload { headers: map, body }
    }

    /// Roughly the memory it holds.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        self.body.len() + headers + std::mem::size_of::<Payload>()
    }
}

/// Everything about a destination that a delivery needs, parsed once when the destination is
/// configured: its URL, method, extra headers and signing key.
pub struct Target {
    pub destination: Arc<Destination>,
    url: Option<reqwest::Url>,
    method: reqwest::Method,
    headers: HeaderMap,
    signer: Option<Signer>,
}

impl Target {
    pub fn new(destination: Arc<Destination>) -> Target {
        let mut headers = HeaderMap::with_capacity(destination.headers.len());
        for (name, value) in &destination.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        Target {
            url: reqwest::Url::parse(&destination.url).ok(),
            method: reqwest::Method::from_bytes(destination.http_method.as_bytes())
                .unwrap_or(reqwest::Method::POST),
            signer: destination.signing_secret.as_deref().and_then(Signer::new),
            headers,
            destination,
        }
    }
}

/// Headers that describe one hop, not the message: never stored, never forwarded.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "expect"
    )
}

/// Headers this gateway sets itself on every delivery; the provider's copies are dropped.
fn is_gateway_header(name: &str) -> bool {
    name.starts_with("x-fasthook-")
}

/// Standard Webhooks signing key of one destination.
pub struct Signer {
    key: Vec<u8>,
    webhook: Option<standardwebhooks::Webhook>,
}

impl Signer {
    /// `secret` is `whsec_` + base64 of the key (validated when the destination was saved).
    pub fn new(secret: &str) -> Option<Signer> {
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .map(|key| Signer {
                webhook: standardwebhooks::Webhook::from_bytes(key.clone()).ok(),
                key,
            })
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let signed = match &self.webhook {
            Some(w) => w.sign(id, timestamp, body),
            None => Err(standardwebhooks::WebhookError::InvalidPayload),
        };
        match signed {
            Ok(sig) => sig,
            // The crate signs UTF-8 payloads only; the spec signs bytes, so do that for the rest.
            Err(_) => {
                let mut msg = format!("{id}.{timestamp}.").into_bytes();
                msg.extend_from_slice(body);
                let mac = hmac_digest(HmacAlgorithm::Sha256, &self.key, &msg);
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(mac)
                )
            }
        }
    }
}

/// The shared outbound client.
#[derive(Clone)]
pub struct DeliveryClient {
    client: reqwest::Client,
    policy: AddressPolicy,
}

/// Response bodies are read (so the connection can be reused) but only this much is kept.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl DeliveryClient {
    /// A client that connects only where `policy` allows.
    pub fn new(policy: AddressPolicy) -> Result<DeliveryClient, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Redirects are not followed: a receiver cannot bounce a delivery elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment (`HTTPS_PROXY`…) would resolve and connect to the
            // receiver itself, beyond the guard: deliveries always connect directly.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            // Many destinations often share one receiver host: with 64 kept idle, W3's
            // 10,000 destinations on one host kept opening new connections (BENCHMARKS.md).
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .user_agent(concat!("FastHook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(DeliveryClient { client, policy })
    }

    /// POSTs a JSON `body` signed by `signer` under `id` (the Standard Webhooks headers, as
    /// deliveries have them) and answers the receiver's status. For the gateway's own alerts.
    pub async fn post_signed(
        &self,
        url: &str,
        id: &str,
        body: Vec<u8>,
        signer: &Signer,
        timeout: Duration,
    ) -> Result<u16, DeliveryError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| DeliveryError::BadResponse)?;
        if literal_refusal(&parsed, self.policy).is_some() {
            return Err(DeliveryError::BlockedAddress);
        }
        let ts = (Timestamp::now().millis() / 1000) as i64;
        let signature = signer.sign(id, ts, &body);
        let resp = self
            .client
            .post(parsed)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_error(&e))?;
        Ok(resp.status().as_u16())
    }

    /// Makes one attempt. Never fails: every outcome is an `AttemptResult`.
    pub async fn deliver(
        &self,
        target: &Target,
        event_id: &EventId,
        attempt_number: u32,
        payload: Arc<Payload>,
    ) -> AttemptResult {
        let started = Instant::now();
        let Some(url) = target.url.clone() else {
            // Saved URLs are validated, so this is a record from an older, laxer version.
            return AttemptResult {
                response_status: None,
                error: Some(DeliveryError::BadResponse),
                retry_after_ms: None,
                duration_ms: 0,
            };
        };
        if literal_refusal(&url, self.policy).is_some() {
            return AttemptResult {
                response_status: None,
                error: Some(DeliveryError::BlockedAddress),
                retry_after_ms: None,
                duration_ms: 0,
            };
        }
        let signer = target.signer.as_ref();
        let mut headers =
            HeaderMap::with_capacity(payload.headers.len() + target.headers.len() + 5);
        for (name, value) in &payload.headers {
            // Our own headers, and the provider's Standard Webhooks headers when we sign, are
            // replaced below.
            let name_str = name.as_str();
            let replaced = is_gateway_header(name_str)
                || (signer.is_some() && name_str.starts_with("webhook-"));
            if !replaced {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &target.headers {
            headers.append(name.clone(), value.clone());
        }
        let id_value = HeaderValue::from_str(event_id.as_str()).expect("ids are ASCII");
        headers.insert("x-fasthook-event-id", id_value.clone());
        headers.insert("x-fasthook-attempt", HeaderValue::from(attempt_number));
        if let Some(signer) = signer {
            let ts = (Timestamp::now().millis() / 1000) as i64;
            let signature = signer.sign(event_id.as_str(), ts, &payload.body);
            headers.insert("webhook-id", id_value);
            headers.insert("webhook-timestamp", HeaderValue::from(ts));
            if let Ok(value) = HeaderValue::from_str(&signature) {
                headers.insert("webhook-signature", value);
            }
        }
        let req = self
            .client
            .request(target.method.clone(), url)
            .timeout(Duration::from_millis(target.destination.timeout_ms))
            .headers(headers);
        let outcome = async {
            let mut resp = req.body(payload.body.clone()).send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Timestamp::now()));
            let mut read = 0usize;
            while let Some(chunk) = resp.chunk().await? {
                read += chunk.len();
                if read > MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, retry_after))
        }
        .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok((status, retry_after)) => AttemptResult {
                response_status: Some(status),
                error: None,
                retry_after_ms: retry_after.filter(|_| status == 429 || status == 503),
                duration_ms,
            },
            Err(e) => AttemptResult {
                response_status: None,
                error: Some(classify_error(&e)),
                retry_after_ms: None,
                duration_ms,
            },
        }
    }
}

/// Maps a transport failure to the contract's error codes by walking the error chain.
pub fn classify_error(e: &reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        return DeliveryError::Timeout;
    }
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<BlockedAddress>().is_some() {
            return DeliveryError::BlockedAddress;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(code) = classify_io(io.kind()) {
                return code;
            }
        }
        text.push_str(&err.to_string().to_ascii_lowercase());
        text.push('\n');
        source = err.source();
    }
    classify_message(&text, e.is_connect())
}

pub fn classify_io(kind: std::io::ErrorKind) -> Option<DeliveryError> {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused => Some(DeliveryError::ConnectionRefused),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            Some(DeliveryError::ConnectionReset)
        }
        TimedOut => Some(DeliveryError::Timeout),
        _ => None,
    }
}

/// The fallback when no IO error kind says it: the error texts of hyper-util and rustls.
pub fn classify_message(text: &str, is_connect: bool) -> DeliveryError {
    if text.contains("dns error") || text.contains("failed to lookup address") {
        DeliveryError::Dns
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        DeliveryError::Tls
    } else if text.contains("connection refused") {
        DeliveryError::ConnectionRefused
    } else if text.contains("reset")
        || text.contains("closed before")
        || text.contains("incomplete message")
    {
        DeliveryError::ConnectionReset
    } else if is_connect {
        DeliveryError::ConnectionRefused
    } else {
        DeliveryError::BadResponse
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now.millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_map_to_contract_codes() {
        use std::io::ErrorKind;
        let table = [
            (
                ErrorKind::ConnectionRefused,
                Some(DeliveryError::ConnectionRefused),
            ),
            (
                ErrorKind::ConnectionReset,
                Some(DeliveryError::ConnectionReset),
            ),
            (ErrorKind::BrokenPipe, Some(DeliveryError::ConnectionReset)),
            (ErrorKind::TimedOut, Some(DeliveryError::Timeout)),
            (ErrorKind::Other, None),
        ];
        for (kind, want) in table {
            assert_eq!(classify_io(kind), want, "{kind:?}");
        }
        let messages = [
            (
                "dns error: failed to lookup address information",
                false,
                DeliveryError::Dns,
            ),
            (
                "invalid peer certificate: unknown issuer",
                true,
                DeliveryError::Tls,
            ),
            (
                "tcp connect error: connection refused",
                true,
                DeliveryError::ConnectionRefused,
            ),
            (
                "connection closed before message completed",
                false,
                DeliveryError::ConnectionReset,
            ),
            (
                "invalid http version parsed",
                false,
                DeliveryError::BadResponse,
            ),
            (
                "something odd while connecting",
                true,
                DeliveryError::ConnectionRefused,
            ),
        ];
        for (text, connect, want) in messages {
            assert_eq!(classify_message(text, connect), want, "{text}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = Timestamp(1_445_412_480_000); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_test_vector() {
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // Non-UTF-8 bodies are signed as bytes by the same formula.
        let a = signer.sign("id", 1, &[0xff, 0x00]);
        assert!(a.starts_with("v1,") && a != signer.sign("id", 1, &[0xfe, 0x00]));
    }

    #[test]
    fn hop_by_hop_headers_are_recognised() {
        for h in ["connection", "transfer-encoding", "host", "content-length"] {
            assert!(is_hop_by_hop(h));
        }
        assert!(!is_hop_by_hop("content-type"));
    }
}
