//! Source dedupe: a provider that resends a webhook (a timeout on its side, a retry storm)
//! must not make a second set of events. A source names where a request's identity is — a
//! header, or a JSON path into the body — and for how long a repeat counts as one. The store's
//! writer claims each identity atomically with the request it belongs to.

use serde::{Deserialize, Serialize};

use super::ids::{EventId, RequestId, SourceId};
use super::time::Timestamp;

/// Where a request's identity is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DedupeKey {
    /// A header's value (the name in lower case).
    Header(String),
    /// A value in the JSON body, as written by the operator (`$.id`, `$.data.object.id`,
    /// `$.items[0].id`).
    BodyPath(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeRule {
    pub key: DedupeKey,
    /// A repeat within this long of the first is answered with the first request.
    pub window_seconds: u32,
}

/// The first request of an identity, as claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeClaim {
    pub request_id: RequestId,
    pub event_ids: Vec<EventId>,
    pub at: Timestamp,
}

impl DedupeClaim {
    /// Whether a request at `now` is a repeat of this one, within `window_ms`.
    pub fn covers(&self, now: Timestamp, window_ms: u64) -> bool {
        now.millis() < self.at.millis().saturating_add(window_ms)
    }
}

/// `$.a.b[0]['c d']` → the JSON pointer `/a/b/0/c d`, or why the path is not one this reads.
pub fn json_pointer(path: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("`{path}`: {why}"));
    let Some(mut rest) = path.trim().strip_prefix('$') else {
        return bad("must start with `$`");
    };
    let mut pointer = String::new();
    let mut push = |step: &str| {
        pointer.push('/');
        pointer.push_str(&step.replace('~', "~0").replace('/', "~1"));
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return bad("a `.` must be followed by a field name");
            }
            push(name);
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            let Some(end) = after.find("']") else {
                return bad("`['` without its `']`");
            };
            push(&after[..end]);
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return bad("`[` without its `]`");
            };
            let index = &after[..end];
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return bad("an index must be a whole number, like `[0]`");
            }
            push(index);
            rest = &after[end + 1..];
        } else {
            return bad("expected `.name`, `['name']` or `[index]`");
        }
    }
    if pointer.is_empty() {
        return bad("must name a value inside the body, like `$.id`");
    }
    Ok(pointer)
}

impl DedupeRule {
    pub fn window_ms(&self) -> u64 {
        u64::from(self.window_seconds) * 1000
    }

    /// Whether the identity is read from the body (which must then be parsed as JSON).
    pub fn reads_body(&self) -> bool {
        matches!(self.key, DedupeKey::BodyPath(_))
    }

    /// The request's identity under this rule, or `None` when it has none (no such header,
    /// a body that is not JSON — `body` is the parsed body — or lacks the value): such a
    /// request is never a repeat.
    pub fn identity(
        &self,
        headers: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> Option<String> {
        match &self.key {
            DedupeKey::Header(name) => headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            DedupeKey::BodyPath(path) => {
                let pointer = json_pointer(path).ok()?;
                match body?.pointer(&pointer)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
        }
    }
}

/// The claim key's distinguishing part: a digest of the source and the identity, so keys have
/// one length whatever a provider puts in its ids.
pub fn identity_digest(source: &SourceId, identity: &str) -> [u8; 16] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(source.as_str().as_bytes());
    hash.update([0]);
    hash.update(identity.as_bytes());
    let full = hash.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_json_pointers() {
        for (path, pointer) in [
            ("$.id", "/id"),
            ("$.data.object.id", "/data/object/id"),
            ("$.items[0].id", "/items/0/id"),
            ("$['a b'].c", "/a b/c"),
            ("$['x/y']['t~']", "/x~1y/t~0"),
        ] {
            assert_eq!(json_pointer(path).as_deref(), Ok(pointer), "{path}");
        }
        for bad in [
            "id", "$", "$.", "$..a", "$[x]", "$[0", "$['a", "$.a[]", "$a",
        ] {
            assert!(json_pointer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_identity_comes_from_the_header_or_the_body() {
        let header = DedupeRule {
            key: DedupeKey::Header("idempotency-key".into()),
            window_seconds: 60,
        };
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("Idempotency-Key".to_string(), " k-1 ".to_string()),
        ];
        assert_eq!(header.identity(&headers, None).as_deref(), Some("k-1"));
        assert_eq!(header.identity(&[], None), None);
        let blank = vec![("idempotency-key".to_string(), "  ".to_string())];
        assert_eq!(header.identity(&blank, None), None);
        assert!(!header.reads_body());

        let body = DedupeRule {
            key: DedupeKey::BodyPath("$.data.id".into()),
            window_seconds: 60,
        };
        let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert!(body.reads_body());
        assert_eq!(
            body.identity(&[], Some(&parsed(r#"{"data": {"id": "evt_1"}}"#)))
                .as_deref(),
            Some("evt_1")
        );
        assert_eq!(
            body.identity(&[], Some(&parsed(r#"{"data": {"id": 42}}"#)))
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            body.identity(&[], Some(&parsed(r#"{"data": {"id": null}}"#))),
            None
        );
        assert_eq!(body.identity(&[], Some(&parsed(r#"{"data": {}}"#))), None);
        assert_eq!(body.identity(&[], None), None, "a body that is not JSON");
    }

    #[test]
    fn a_claim_covers_its_window_and_no_longer() {
        let claim = DedupeClaim {
            request_id: RequestId::new(),
            event_ids: vec![],
            at: Timestamp(1_000),
        };
        assert!(claim.covers(Timestamp(1_000), 500));
        assert!(claim.covers(Timestamp(1_499), 500));
        assert!(!claim.covers(Timestamp(1_500), 500));
    }

    #[test]
    fn digests_tell_sources_and_identities_apart() {
        let (a, b) = (SourceId::new(), SourceId::new());
        assert_eq!(identity_digest(&a, "k"), identity_digest(&a, "k"));
        assert_ne!(identity_digest(&a, "k"), identity_digest(&b, "k"));
        assert_ne!(identity_digest(&a, "k1"), identity_digest(&a, "k2"));
    }
}
