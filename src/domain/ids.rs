//! Prefixed ULID identifiers. Every object id is `<prefix>_<ulid>`, so ids sort by creation
//! time and a wrong kind of id is rejected at the edge rather than deep inside a query.

use std::fmt;
use std::sync::Arc;

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
        // Shared text: an id is cloned into every record and message about its object, and a
        // clone of an `Arc<str>` is a counter increment, not an allocation.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        // The stored form is rebuilt in a buffer this long.
        const _: () = assert!($prefix.len() <= MAX_PREFIX);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id; ULIDs from one process are monotonic.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, crate::domain::ids::next_ulid()).into())
            }

            pub fn parse(s: &str) -> Result<Self, BadId> {
                match s.strip_prefix($prefix) {
                    Some(rest) if ulid::Ulid::from_string(rest).is_ok() => Ok(Self(s.into())),
                    _ => Err(BadId { prefix: $prefix }),
                }
            }

            /// For ids whose form is chosen by the operator (bootstrap team ids): only the
            /// prefix and a safe character set are checked.
            pub fn parse_loose(s: &str) -> Result<Self, BadId> {
                check_loose($prefix, s).map(Self)
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
                serialize_id($prefix, &self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_id($prefix, d).map(Self)
            }
        }

        /// In the API document: the prefix and a ULID.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::domain::ids::id_schema($prefix)
            }
        }

        impl utoipa::ToSchema for $name {}
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
id_type!(
    /// A bulk retry job.
    BulkRetryId, "bch_");
id_type!(
    /// An issue (a breaker that opened).
    IssueId, "iss_");
id_type!(
    /// An alert channel (where issue alerts are sent).
    AlertChannelId, "alc_");
id_type!(
    /// One alert to one channel; its `webhook-id`.
    AlertId, "alr_");

/// The schema of an id with this prefix: text, the prefix then a ULID.
pub fn id_schema(prefix: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{prefix}")))
        .examples([format!("{prefix}01JQ3ZC7W6Y2V8E4K9M5T0R1AB")])
        .into()
}

/// Stored form tags. JSON and other human-readable forms carry the id's text; the store's
/// binary form carries `ULID_TAG` and the ULID's 16 bytes (the prefix is implied by the type),
/// or `TEXT_TAG` and the text of an id an operator chose. An id is in every record several
/// times, so this is a third of an event record.
const ULID_TAG: u8 = 0;
const TEXT_TAG: u8 = 1;
/// The longest id prefix (`key_`).
const MAX_PREFIX: usize = 4;

fn serialize_id<S: Serializer>(prefix: &str, text: &str, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return s.serialize_str(text);
    }
    if let Some(ulid) = text
        .strip_prefix(prefix)
        .filter(|rest| is_canonical(rest))
        .and_then(|rest| ulid::Ulid::from_string(rest).ok())
    {
        let mut bytes = [ULID_TAG; 17];
        bytes[1..].copy_from_slice(&ulid.to_bytes());
        return s.serialize_bytes(&bytes);
    }
    let mut bytes = Vec::with_capacity(1 + text.len());
    bytes.push(TEXT_TAG);
    bytes.extend_from_slice(text.as_bytes());
    s.serialize_bytes(&bytes)
}

/// Only a ULID written as it would be printed can be stored as bytes and read back as the
/// same text. Parsing also accepts lower case, and a first character above `7` (it wraps
/// past 128 bits), so those stay text. Checked on the text: this runs for every id of
/// every record written.
fn is_canonical(text: &str) -> bool {
    text.len() == ulid::ULID_LEN
        && text.as_bytes()[0] <= b'7'
        && !text.bytes().any(|b| b.is_ascii_lowercase())
}

fn deserialize_id<'de, D: Deserializer<'de>>(
    prefix: &'static str,
    d: D,
) -> Result<Arc<str>, D::Error> {
    if d.is_human_readable() {
        let text = String::deserialize(d)?;
        return check_loose(prefix, &text).map_err(serde::de::Error::custom);
    }
    d.deserialize_bytes(StoredIdVisitor { prefix })
}

/// The check of `parse_loose`: the prefix and a safe character set.
fn check_loose(prefix: &'static str, text: &str) -> Result<Arc<str>, BadId> {
    let ok = text.starts_with(prefix)
        && text.len() > prefix.len()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(text.into())
    } else {
        Err(BadId { prefix })
    }
}

struct StoredIdVisitor {
    prefix: &'static str,
}

impl serde::de::Visitor<'_> for StoredIdVisitor {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a stored `{}` id", self.prefix)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Arc<str>, E> {
        match bytes.split_first() {
            Some((&ULID_TAG, rest)) => {
                let raw: [u8; 16] = rest
                    .try_into()
                    .map_err(|_| E::custom("a stored ULID id is not 16 bytes"))?;
                // Built on the stack, then one allocation for the shared text; this runs for
                // every id of every record read.
                let mut text = [0u8; MAX_PREFIX + ulid::ULID_LEN];
                let len = self.prefix.len() + ulid::ULID_LEN;
                text[..self.prefix.len()].copy_from_slice(self.prefix.as_bytes());
                ulid::Ulid::from_bytes(raw).array_to_str(
                    (&mut text[self.prefix.len()..len])
                        .try_into()
                        .expect("ULID_LEN bytes"),
                );
                let text = std::str::from_utf8(&text[..len]).expect("prefix and ULID are ASCII");
                Ok(Arc::from(text))
            }
            Some((&TEXT_TAG, rest)) => {
                let text = std::str::from_utf8(rest).map_err(E::custom)?;
                check_loose(self.prefix, text).map_err(E::custom)
            }
            _ => Err(E::custom("unknown stored id form")),
        }
    }
}

/// The lowest (`upper` false) or highest id text with `prefix` whose ULID was made at `ms`:
/// ids compare as text in the order they were made, so a span of time is a span of ids.
pub fn id_bound_at(prefix: &str, ms: u64, upper: bool) -> String {
    let ms = ms.min((1 << 48) - 1);
    let random = if upper { (1u128 << 80) - 1 } else { 0 };
    format!("{prefix}{}", ulid::Ulid::from_parts(ms, random))
}

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
    fn stored_ids_are_ulid_bytes_and_operator_ids_stay_text() {
        let id = EventId::new();
        let stored = bincode::serialize(&id).unwrap();
        assert_eq!(stored.len(), 8 + 17, "length, tag and 16 bytes");
        assert_eq!(bincode::deserialize::<EventId>(&stored).unwrap(), id);
        assert_eq!(serde_json::to_value(&id).unwrap(), id.as_str());

        let chosen = TeamId::parse_loose("tm_default").unwrap();
        let stored = bincode::serialize(&chosen).unwrap();
        assert_eq!(bincode::deserialize::<TeamId>(&stored).unwrap(), chosen);
        // Parsing accepts lower case; such an id must still read back as written.
        let lower = format!("evt_{}", ulid::Ulid::new().to_string().to_lowercase());
        let lower = EventId::parse(&lower).unwrap();
        let stored = bincode::serialize(&lower).unwrap();
        assert_eq!(bincode::deserialize::<EventId>(&stored).unwrap(), lower);
        // Parsing also takes a first character above `7` (it wraps past 128 bits): text too.
        let wrapped = EventId::parse("evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ").unwrap();
        let stored = bincode::serialize(&wrapped).unwrap();
        assert_eq!(stored[8], TEXT_TAG);
        assert_eq!(bincode::deserialize::<EventId>(&stored).unwrap(), wrapped);
        // The longest prefix fits the buffer the stored form is rebuilt in.
        let key = ApiKeyId::new();
        let stored = bincode::serialize(&key).unwrap();
        assert_eq!(stored.len(), 8 + 17);
        assert_eq!(bincode::deserialize::<ApiKeyId>(&stored).unwrap(), key);
        assert!(bincode::deserialize::<EventId>(&[1, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
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
