//! Value encoding: one version byte, then bincode. The version byte lets a later release
//! read old records (or refuse them clearly) instead of misreading them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serializing plain structs into a Vec cannot fail.
    bincode::serialize_into(&mut out, value).expect("bincode serialization of a stored value");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            bincode::deserialize(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!("unknown record version {v}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}
