//! Value encoding: one version byte, then bincode with variable-length integers. The version
//! byte lets a later release read old records (or refuse them clearly) instead of misreading
//! them. Varints matter here: every id and list carries a length, and every enum a tag, which
//! fixed-width bincode writes as 8 and 4 bytes; records are a fifth smaller, and sled copies
//! every byte of a record several times over (BENCHMARKS.md).

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub const VERSION: u8 = 4;

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_varint_encoding()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serializing plain structs into a Vec cannot fail.
    options()
        .serialize_into(&mut out, value)
        .expect("bincode serialization of a stored value");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => options()
            .deserialize(rest)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "record version {v} is not this build's ({VERSION}): the data directory was written by another version"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// The number of items of an encoded sequence, read from its length prefix without decoding
/// the items.
pub fn decode_len(bytes: &[u8]) -> Result<usize, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => options()
            .allow_trailing_bytes()
            .deserialize::<u64>(rest)
            .map(|len| len as usize)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
        _ => decode::<()>(bytes).map(|()| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::event;
    use crate::domain::TeamId;

    #[test]
    fn records_round_trip_smaller_than_fixed_width_bincode() {
        let e = event(&TeamId::new());
        let bytes = encode(&e);
        let back: crate::domain::Event = decode(&bytes).unwrap();
        assert_eq!(back.id, e.id);
        assert_eq!(back.created_at, e.created_at);
        let fixed = bincode::serialize(&e).unwrap();
        assert!(
            bytes.len() * 5 < fixed.len() * 4,
            "{} bytes, fixed-width {}",
            bytes.len(),
            fixed.len()
        );
        assert!(matches!(
            decode::<crate::domain::Event>(&[1, 0]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_sequence_length_reads_without_its_items() {
        for n in [0usize, 3, 250, 251, 70_000] {
            assert_eq!(decode_len(&encode(&vec![7u8; n])).unwrap(), n);
        }
        assert!(matches!(decode_len(&[1, 0]), Err(StoreError::Corrupt(_))));
    }
}
