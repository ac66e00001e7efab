//! Prefixed ULID identifiers. Every object id is `<prefix>_<ulid>`, so ids sort by creation
//! time and a wrong kind of id is rejected at the edge rather than deep inside a query.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an id starting with `{prefix}` followed by a ULID")]
pub struct BadId {
    pub prefix: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id; ULIDs from one process are monotonic.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, crate::domain::ids::next_ulid()))
            }

            pub fn parse(s: &str) -> Result<Self, BadId> {
                match s.strip_prefix($prefix) {
                    Some(rest) if ulid::Ulid::from_string(rest).is_ok() => Ok(Self(s.to_owned())),
                    _ => Err(BadId { prefix: $prefix }),
                }
            }

            /// For ids whose form is chosen by the operator (bootstrap team ids): only the
            /// prefix and a safe character set are checked.
            pub fn parse_loose(s: &str) -> Result<Self, BadId> {
                let ok = s.starts_with($prefix)
                    && s.len() > $prefix.len()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if ok { Ok(Self(s.to_owned())) } else { Err(BadId { prefix: $prefix }) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse_loose(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A team: the unit of tenancy; nothing is visible across teams.
    TeamId, "tm_");
id_type!(
    /// An API key's public id (the secret itself is never stored).
    ApiKeyId, "key_");
id_type!(SourceId, "src_");
id_type!(DestinationId, "des_");
id_type!(ConnectionId, "web_");
id_type!(RequestId, "req_");
id_type!(EventId, "evt_");
id_type!(AttemptId, "atm_");

/// ULIDs from one generator so that ids minted in the same millisecond still sort in the
/// order they were made.
pub(crate) fn next_ulid() -> ulid::Ulid {
    use std::sync::Mutex;
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow needs 2^80 ids in one millisecond; fall back to a fresh ULID if it happens.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a.as_str().starts_with("evt_"));
        assert!(a < b);
        assert_eq!(EventId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn wrong_prefix_or_garbage_is_rejected() {
        let src = SourceId::new();
        assert!(EventId::parse(src.as_str()).is_err());
        assert!(SourceId::parse("src_nope").is_err());
        assert!(TeamId::parse_loose("tm_default").is_ok());
        assert!(TeamId::parse_loose("tm_bad/slash").is_err());
    }
}
