//! Request parsing shared by every resource: JSON bodies (malformed → 400, wrong shape or
//! unknown field → 422 naming the field), query strings, pagination and the list envelope.

use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::openapi::{ListOut, Pagination, SortDir};
use crate::domain::{TeamId, Timestamp};
use crate::store::{Direction, ListQuery, Page};

/// Parses a JSON body into `T`, naming the offending field on a shape error.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidJson(format!("malformed JSON: {e}")))?;
    from_value(value)
}

pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::Validation(message)
        } else {
            ApiError::Validation(format!("{path}: {message}"))
        }
    })
}

/// A PATCH: the current object's input form with the named fields replaced.
pub fn merge_patch<T: DeserializeOwned>(
    current: serde_json::Value,
    body: &[u8],
) -> Result<T, ApiError> {
    let patch: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidJson(format!("malformed JSON: {e}")))?;
    let serde_json::Value::Object(patch) = patch else {
        return Err(ApiError::Validation("body: must be a JSON object".into()));
    };
    let mut merged = current;
    if let serde_json::Value::Object(map) = &mut merged {
        for (k, v) in patch {
            map.insert(k, v);
        }
    }
    from_value(merged)
}

/// The parsed query string, with repeated keys kept.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: &str) -> Result<QueryParams, ApiError> {
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| ApiError::Validation(format!("query: {e}")))
    }

    /// Refuses a parameter not in `known`: a misspelled one must not be silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::validation(k, "is not a parameter of this call")),
            None => Ok(()),
        }
    }

    /// `only` for a list call: its own parameters and the paging ones.
    pub fn only_list(&self, own: &[&str]) -> Result<(), ApiError> {
        let mut known = vec!["limit", "dir", "next"];
        known.extend_from_slice(own);
        self.only(&known)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`status=A&status=B` or `status=A,B`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name || k.strip_suffix("[]") == Some(name))
            .flat_map(|(_, v)| v.split(','))
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn id<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, crate::domain::BadId>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| parse(v).map_err(|e| ApiError::validation(name, e)))
            .transpose()
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.get(name)
            .map(|v| {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| ApiError::validation(name, "must be an RFC 3339 timestamp"))
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::validation(name, "must be true or false")),
        }
    }

    /// `limit` (1..=250, default 100, larger clamped), `next` and `dir` for a team's list.
    pub fn list_query(&self, team: &TeamId) -> Result<ListQuery, ApiError> {
        // Above 250 is clamped, not refused: a client asking for more gets the most a page holds.
        let limit = match self.get("limit") {
            None => 100,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(250),
                _ => {
                    return Err(ApiError::validation(
                        "limit",
                        "must be a whole number from 1 to 250",
                    ))
                }
            },
        };
        let dir = match self.get("dir") {
            None | Some("desc") => Direction::Desc,
            Some("asc") => Direction::Asc,
            Some(_) => return Err(ApiError::validation("dir", "must be asc or desc")),
        };
        let cursor = self
            .get("next")
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if let Some(c) = &cursor {
            if c.len() > 80 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ApiError::validation(
                    "next",
                    "is not a cursor from a previous page",
                ));
            }
        }
        Ok(ListQuery {
            team: team.clone(),
            limit,
            cursor,
            dir,
        })
    }
}

/// `{"models": [...], "count": N, "pagination": {"limit": L, "next": ..., "dir": ...}}`.
pub fn list_envelope<T, O>(page: Page<T>, q: &ListQuery, render: impl Fn(T) -> O) -> ListOut<O> {
    let models: Vec<O> = page.items.into_iter().map(render).collect();
    ListOut {
        count: models.len(),
        models,
        pagination: Pagination {
            limit: q.limit,
            next: page.next,
            dir: if q.dir == Direction::Asc {
                SortDir::Asc
            } else {
                SortDir::Desc
            },
        },
    }
}

/// A non-empty name of at most 255 characters.
pub fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::validation(field, "must be 1 to 255 characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team() -> TeamId {
        TeamId::parse_loose("tm_test").unwrap()
    }

    #[test]
    fn list_paging_defaults_clamps_and_refuses() {
        let q = QueryParams::parse("").unwrap().list_query(&team()).unwrap();
        assert_eq!((q.limit, q.dir, q.cursor), (100, Direction::Desc, None));
        let q = QueryParams::parse("limit=1000&dir=asc&next=evt_1")
            .unwrap()
            .list_query(&team())
            .unwrap();
        assert_eq!(
            (q.limit, q.dir, q.cursor.as_deref()),
            (250, Direction::Asc, Some("evt_1"))
        );
        for bad in ["limit=0", "limit=ten", "dir=up", "next=a/b"] {
            assert!(
                QueryParams::parse(bad)
                    .unwrap()
                    .list_query(&team())
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn repeated_and_comma_separated_values_are_all_kept() {
        let p = QueryParams::parse("status=HOLD&status=QUEUED,FAILED&status[]=SCHEDULED").unwrap();
        assert_eq!(
            p.all("status"),
            vec!["HOLD", "QUEUED", "FAILED", "SCHEDULED"]
        );
    }

    #[test]
    fn shape_errors_name_the_field_and_syntax_errors_are_400() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct In {
            name: String,
            n: Option<u32>,
        }
        assert!(matches!(parse::<In>(b"{"), Err(ApiError::InvalidJson(_))));
        let e = parse::<In>(br#"{"name": "x", "n": "seven"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("n:"), "{e}");
        let e = parse::<In>(br#"{"name": "x", "colour": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
