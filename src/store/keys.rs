//! Key encoding. Every key starts with a one-letter kind and a `/`; ids are fixed-width
//! ULID text and sequence numbers are big-endian, so sled's byte order is creation order.

use crate::domain::*;

pub const TEAM: &[u8] = b"T/";
pub const API_KEY: &[u8] = b"K/";
pub const API_KEY_ID: &[u8] = b"I/";
pub const SOURCE: &[u8] = b"S/";
pub const DESTINATION: &[u8] = b"D/";
pub const CONNECTION: &[u8] = b"C/";
pub const REQUEST: &[u8] = b"R/";
pub const EVENT: &[u8] = b"E/";
pub const ATTEMPT: &[u8] = b"A/";
pub const QUEUE: &[u8] = b"Q/";
pub const HOLD: &[u8] = b"H/";
pub const BREAKER: &[u8] = b"B/";

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 1 {
            key.push(b'/');
        }
        key.extend_from_slice(part);
    }
    key
}

pub fn team(id: &TeamId) -> Vec<u8> {
    join(&[TEAM, id.as_str().as_bytes()])
}

/// API keys are found by the hex SHA-256 of the secret.
pub fn api_key(hash: &[u8; 32]) -> Vec<u8> {
    join(&[API_KEY, hex::encode(hash).as_bytes()])
}

pub fn api_key_id(id: &ApiKeyId) -> Vec<u8> {
    join(&[API_KEY_ID, id.as_str().as_bytes()])
}

pub fn source(id: &SourceId) -> Vec<u8> {
    join(&[SOURCE, id.as_str().as_bytes()])
}

pub fn destination(id: &DestinationId) -> Vec<u8> {
    join(&[DESTINATION, id.as_str().as_bytes()])
}

/// A destination's circuit breaker snapshot.
pub fn breaker(id: &DestinationId) -> Vec<u8> {
    join(&[BREAKER, id.as_str().as_bytes()])
}

pub fn connection(id: &ConnectionId) -> Vec<u8> {
    join(&[CONNECTION, id.as_str().as_bytes()])
}

pub fn team_prefix(kind: &[u8], team: &TeamId) -> Vec<u8> {
    let mut key = join(&[kind, team.as_str().as_bytes()]);
    key.push(b'/');
    key
}

pub fn request(team: &TeamId, id: &RequestId) -> Vec<u8> {
    join(&[REQUEST, team.as_str().as_bytes(), id.as_str().as_bytes()])
}

pub fn event(team: &TeamId, id: &EventId) -> Vec<u8> {
    join(&[EVENT, team.as_str().as_bytes(), id.as_str().as_bytes()])
}

pub fn attempt_prefix(event: &EventId) -> Vec<u8> {
    let mut key = join(&[ATTEMPT, event.as_str().as_bytes()]);
    key.push(b'/');
    key
}

pub fn attempt(event: &EventId, number: u32) -> Vec<u8> {
    let mut key = attempt_prefix(event);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// A queue record, named by the sequence number of the first entry its group added.
pub fn queue(record: u64) -> Vec<u8> {
    [QUEUE, &record.to_be_bytes()].concat()
}

pub fn hold_prefix(connection: &ConnectionId) -> Vec<u8> {
    let mut key = join(&[HOLD, connection.as_str().as_bytes()]);
    key.push(b'/');
    key
}

pub fn hold(connection: &ConnectionId, seq: u64) -> Vec<u8> {
    let mut key = hold_prefix(connection);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The id text at the end of a key (after the last `/`), for cursors.
pub fn last_segment(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == b'/') {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

/// The sequence number naming a queue record's key.
pub fn parse_queue(key: &[u8]) -> Option<u64> {
    let seq: [u8; 8] = key.strip_prefix(QUEUE)?.try_into().ok()?;
    Some(u64::from_be_bytes(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_sequence_and_parse_back() {
        let a = queue(2);
        let b = queue(256);
        assert!(a < b);
        assert_eq!(parse_queue(&b), Some(256));
        assert_eq!(parse_queue(b"Q/short"), None);
    }

    #[test]
    fn team_scoped_keys_share_their_prefix() {
        let t = TeamId::new();
        let e = EventId::new();
        let key = event(&t, &e);
        assert!(key.starts_with(&team_prefix(EVENT, &t)));
        assert_eq!(last_segment(&key), e.as_str().as_bytes());
    }
}
