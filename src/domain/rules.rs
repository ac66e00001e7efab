//! Connection rules: the retry schedule, the filter and the delay. Pure data and pure
//! functions; the wire form (a tagged list) lives in the API layer.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetryStrategy {
    Linear,
    Exponential,
}

/// When to try again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub strategy: RetryStrategy,
    /// Retries after the first attempt.
    pub count: u32,
    /// Milliseconds before the first retry (every retry, for linear).
    pub interval_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            strategy: RetryStrategy::Exponential,
            count: 5,
            interval_ms: 60_000,
        }
    }
}

/// Exponential waits stop growing here (one day) so the schedule never overflows.
pub const MAX_RETRY_WAIT_MS: u64 = 86_400_000;

impl RetryPolicy {
    /// The wait before the next try, given how many attempts have failed so far (at least 1),
    /// or `None` when the retries are used up.
    pub fn wait_after(&self, failed_attempts: u32) -> Option<u64> {
        if failed_attempts == 0 || failed_attempts > self.count {
            return None;
        }
        let wait = match self.strategy {
            RetryStrategy::Linear => self.interval_ms,
            RetryStrategy::Exponential => {
                let doublings = (failed_attempts - 1).min(40);
                self.interval_ms.saturating_mul(1u64 << doublings)
            }
        };
        Some(wait.min(MAX_RETRY_WAIT_MS))
    }
}

/// A JSON value kept as JSON text in the store (bincode cannot carry `serde_json::Value`)
/// and as itself on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonValue(pub serde_json::Value);

impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            serde_json::Value::deserialize(d).map(JsonValue)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text)
                .map(JsonValue)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// Routes only requests whose body and headers contain the given JSON subsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub body: Option<JsonValue>,
    pub headers: Option<JsonValue>,
}

impl Filter {
    /// `body` is the parsed request body (`None` when it is not JSON); `headers` are lower-case
    /// names.
    pub fn matches(&self, body: Option<&serde_json::Value>, headers: &[(String, String)]) -> bool {
        if let Some(JsonValue(want)) = &self.body {
            match body {
                Some(have) if json_contains(have, want) => {}
                _ => return false,
            }
        }
        if let Some(JsonValue(want)) = &self.headers {
            let have: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let want = lower_case_keys(want);
            if !json_contains(&serde_json::Value::Object(have), &want) {
                return false;
            }
        }
        true
    }
}

fn lower_case_keys(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON subset match: every key of `want` is in `have` with a matching value; arrays match
/// when every element of `want` matches some element of `have`; scalars compare equal.
pub fn json_contains(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| json_contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            w.iter().all(|wv| h.iter().any(|hv| json_contains(hv, wv)))
        }
        (h, w) => h == w,
    }
}

/// The rules of one connection, one of each kind at most.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rules {
    pub retry: RetryPolicy,
    pub filter: Option<Filter>,
    /// Milliseconds to hold each event before its first attempt.
    pub delay_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn linear(count: u32, interval_ms: u64) -> RetryPolicy {
        RetryPolicy {
            strategy: RetryStrategy::Linear,
            count,
            interval_ms,
        }
    }

    #[test]
    fn linear_waits_the_same_interval_until_the_count_runs_out() {
        let p = linear(3, 200);
        assert_eq!(p.wait_after(1), Some(200));
        assert_eq!(p.wait_after(2), Some(200));
        assert_eq!(p.wait_after(3), Some(200));
        assert_eq!(p.wait_after(4), None);
        assert_eq!(p.wait_after(0), None);
    }

    #[test]
    fn exponential_doubles_each_time() {
        let p = RetryPolicy {
            strategy: RetryStrategy::Exponential,
            count: 4,
            interval_ms: 150,
        };
        let waits: Vec<_> = (1..=5).map(|n| p.wait_after(n)).collect();
        assert_eq!(
            waits,
            vec![Some(150), Some(300), Some(600), Some(1200), None]
        );
    }

    #[test]
    fn the_default_rule_is_exponential_five_times_from_a_minute() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait_after(1), Some(60_000));
        assert_eq!(p.wait_after(5), Some(960_000));
        assert_eq!(p.wait_after(6), None);
    }

    #[test]
    fn huge_exponents_are_capped_not_overflowed() {
        let p = RetryPolicy {
            strategy: RetryStrategy::Exponential,
            count: 1000,
            interval_ms: u64::MAX / 2,
        };
        assert_eq!(p.wait_after(999), Some(MAX_RETRY_WAIT_MS));
    }

    #[test]
    fn filters_match_json_subsets_of_body_and_headers() {
        let f = Filter {
            body: Some(JsonValue(
                json!({"type": "invoice.paid", "data": {"tags": ["a"]}}),
            )),
            headers: Some(JsonValue(json!({"X-Provider": "stripe"}))),
        };
        let headers = vec![("x-provider".to_string(), "stripe".to_string())];
        let body = json!({"type": "invoice.paid", "data": {"tags": ["b", "a"], "n": 1}});
        assert!(f.matches(Some(&body), &headers));
        let other = json!({"type": "invoice.created", "data": {"tags": ["a"]}});
        assert!(!f.matches(Some(&other), &headers));
        assert!(!f.matches(None, &headers));
        assert!(!f.matches(Some(&body), &[]));
    }

    #[test]
    fn rules_survive_the_store_codec() {
        let rules = Rules {
            retry: linear(2, 10),
            filter: Some(Filter {
                body: Some(JsonValue(json!({"a": [1, {"b": null}]}))),
                headers: None,
            }),
            delay_ms: Some(5),
        };
        let bytes = bincode::serialize(&rules).unwrap();
        assert_eq!(bincode::deserialize::<Rules>(&bytes).unwrap(), rules);
    }
}
