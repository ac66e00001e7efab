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
pub const SCHEDULED: &[u8] = b"W/";
pub const HOLD: &[u8] = b"H/";
pub const BREAKER: &[u8] = b"B/";
pub const BULK_RETRY: &[u8] = b"J/";
/// The event index: `X/{team}/s/{STATUS}/{event}` and `X/{team}/c/{connection}/{STATUS}/{event}`
/// for events whose status `is_indexed`.
pub const EVENT_INDEX: &[u8] = b"X/";
/// The events of each connection in creation order, whatever their status:
/// `P/{team}/{connection}/{first event}` holds a run of event ids (`event_lists`).
pub const EVENT_LIST: &[u8] = b"P/";
/// Which connections a destination or a source has ever had, so their events are the merge
/// of those connections' lists: `F/{team}/d/{destination}/{connection}` and
/// `F/{team}/s/{source}/{connection}` (empty values, written with the connection).
pub const CONNECTION_LINK: &[u8] = b"F/";
/// Events metrics: `Y/{team}/{minute}{connection}` (the minute a big-endian `u64` of
/// milliseconds) holds the counts of the connection's events created in that minute.
pub const EVENT_COUNTS: &[u8] = b"Y/";
/// Issues, `N/{team}/{issue}`, and the active issue of a destination, `O/{destination}`
/// (the issue's id).
pub const ISSUE: &[u8] = b"N/";
pub const ACTIVE_ISSUE: &[u8] = b"O/";
/// Alert channels, `V/{team}/{channel}`, and alerts waiting to be sent, `L/{alert}`.
pub const ALERT_CHANNEL: &[u8] = b"V/";
pub const ALERT: &[u8] = b"L/";
/// The live requests of each body segment, `G/{segment:010}` (a big-endian `u64`).
pub const SEGMENT: &[u8] = b"G/";
/// Dedupe claims: `Z/{source}/{digest of the identity}` (the first request of an identity).
pub const DEDUPE: &[u8] = b"Z/";
/// The drain rate an unpause asked for, kept while the connection's drain runs.
pub const DRAIN_RATE: &[u8] = b"U/";
/// The store's own bookkeeping: `M/layout` (the layout version, a big-endian `u32`) and
/// `M/seq` (the highest sequence number any key has named, a big-endian `u64`).
pub const LAYOUT: &[u8] = b"M/layout";
pub const HIGH_WATER: &[u8] = b"M/seq";
/// The whole-engine pause as last changed, and the config file's value it was changed with.
pub const ENGINE_PAUSE: &[u8] = b"M/engine_pause";

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

pub fn segment(n: u32) -> Vec<u8> {
    join(&[SEGMENT, format!("{n:010}").as_bytes()])
}

/// The segment a `G/` key names.
pub fn segment_of(key: &[u8]) -> Option<u32> {
    std::str::from_utf8(key.strip_prefix(SEGMENT)?)
        .ok()?
        .parse()
        .ok()
}

pub fn dedupe_claim(source: &SourceId, identity: &str) -> Vec<u8> {
    let digest = crate::domain::dedupe::identity_digest(source, identity);
    join(&[
        DEDUPE,
        source.as_str().as_bytes(),
        hex::encode(digest).as_bytes(),
    ])
}

pub fn destination(id: &DestinationId) -> Vec<u8> {
    join(&[DESTINATION, id.as_str().as_bytes()])
}

/// A destination's circuit breaker snapshot.
pub fn breaker(id: &DestinationId) -> Vec<u8> {
    join(&[BREAKER, id.as_str().as_bytes()])
}

pub fn bulk_retry(id: &BulkRetryId) -> Vec<u8> {
    join(&[BULK_RETRY, id.as_str().as_bytes()])
}

/// The statuses the event index keeps: the ones an operator looks for among many delivered
/// events. `QUEUED` and `SUCCESSFUL`, the path of nearly every event, are left out, so
/// delivering an event costs the index nothing.
pub fn is_indexed(status: EventStatus) -> bool {
    matches!(
        status,
        EventStatus::Hold | EventStatus::Scheduled | EventStatus::Failed | EventStatus::Cancelled
    )
}

/// Where the index lists the team's events with `status`, optionally of one connection.
pub fn event_index_prefix(
    team: &TeamId,
    connection: Option<&ConnectionId>,
    status: EventStatus,
) -> Vec<u8> {
    let team = team.as_str().as_bytes();
    let status = status.as_str().as_bytes();
    let mut key = match connection {
        None => join(&[EVENT_INDEX, team, b"s", status]),
        Some(c) => join(&[EVENT_INDEX, team, b"c", c.as_str().as_bytes(), status]),
    };
    key.push(b'/');
    key
}

/// Where the index lists the team's events by connection: `{connection}/{STATUS}/{event}`
/// follows.
pub fn connection_index_prefix(team: &TeamId) -> Vec<u8> {
    let mut key = join(&[EVENT_INDEX, team.as_str().as_bytes(), b"c"]);
    key.push(b'/');
    key
}

/// The index keys of an event with `status` (none when the status is not indexed).
pub fn event_index(
    team: &TeamId,
    connection: &ConnectionId,
    status: EventStatus,
    event: &EventId,
) -> Vec<Vec<u8>> {
    if !is_indexed(status) {
        return Vec::new();
    }
    [None, Some(connection)]
        .into_iter()
        .map(|c| {
            let mut key = event_index_prefix(team, c, status);
            key.extend_from_slice(event.as_str().as_bytes());
            key
        })
        .collect()
}

/// Where the runs of `connection`'s event list are: `P/{team}/{connection}/`.
pub fn event_list_prefix(team: &TeamId, connection: &ConnectionId) -> Vec<u8> {
    let mut key = join(&[
        EVENT_LIST,
        team.as_str().as_bytes(),
        connection.as_str().as_bytes(),
    ]);
    key.push(b'/');
    key
}

/// What a connection link names: the connections of a destination or of a source.
#[derive(Debug, Clone, Copy)]
pub enum LinkOf<'a> {
    Destination(&'a DestinationId),
    Source(&'a SourceId),
}

/// Where the connections linked to `of` are listed: `F/{team}/{d|s}/{id}/`.
pub fn link_prefix(team: &TeamId, of: LinkOf) -> Vec<u8> {
    let team = team.as_str().as_bytes();
    let mut key = match of {
        LinkOf::Destination(d) => join(&[CONNECTION_LINK, team, b"d", d.as_str().as_bytes()]),
        LinkOf::Source(s) => join(&[CONNECTION_LINK, team, b"s", s.as_str().as_bytes()]),
    };
    key.push(b'/');
    key
}

/// The links of a connection to its destination and its source (neither ever changes).
pub fn connection_links(c: &Connection) -> [Vec<u8>; 2] {
    links(&c.team_id, &c.id, &c.destination_id, &c.source_id)
}

/// The links of `connection` to `destination` and `source`.
pub fn links(
    team: &TeamId,
    connection: &ConnectionId,
    destination: &DestinationId,
    source: &SourceId,
) -> [Vec<u8>; 2] {
    [LinkOf::Destination(destination), LinkOf::Source(source)].map(|of| {
        [
            link_prefix(team, of),
            connection.as_str().as_bytes().to_vec(),
        ]
        .concat()
    })
}

/// Where a team's event counts start: the minute and the connection follow.
pub fn event_counts_prefix(team: &TeamId) -> Vec<u8> {
    let mut key = join(&[EVENT_COUNTS, team.as_str().as_bytes()]);
    key.push(b'/');
    key
}

pub fn event_counts(team: &TeamId, minute: u64, connection: &ConnectionId) -> Vec<u8> {
    let mut key = event_counts_prefix(team);
    key.extend_from_slice(&minute.to_be_bytes());
    key.extend_from_slice(connection.as_str().as_bytes());
    key
}

pub fn issue(team: &TeamId, id: &IssueId) -> Vec<u8> {
    join(&[ISSUE, team.as_str().as_bytes(), id.as_str().as_bytes()])
}

pub fn active_issue(destination: &DestinationId) -> Vec<u8> {
    join(&[ACTIVE_ISSUE, destination.as_str().as_bytes()])
}

pub fn alert_channel(team: &TeamId, id: &AlertChannelId) -> Vec<u8> {
    join(&[
        ALERT_CHANNEL,
        team.as_str().as_bytes(),
        id.as_str().as_bytes(),
    ])
}

pub fn alert(id: &AlertId) -> Vec<u8> {
    join(&[ALERT, id.as_str().as_bytes()])
}

pub fn drain_rate(id: &ConnectionId) -> Vec<u8> {
    join(&[DRAIN_RATE, id.as_str().as_bytes()])
}

pub fn connection(id: &ConnectionId) -> Vec<u8> {
    join(&[CONNECTION, id.as_str().as_bytes()])
}

pub fn team_prefix(kind: &[u8], team: &TeamId) -> Vec<u8> {
    let mut key = join(&[kind, team.as_str().as_bytes()]);
    key.push(b'/');
    key
}

/// Where a team's requests are: `R/{team}/`.
pub fn request_team_prefix(team: &TeamId) -> Vec<u8> {
    let mut key = join(&[REQUEST, team.as_str().as_bytes()]);
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

/// Where a destination's FIFO records are: `Q/{destination}/`.
pub fn queue_prefix(destination: &DestinationId) -> Vec<u8> {
    let mut key = join(&[QUEUE, destination.as_str().as_bytes()]);
    key.push(b'/');
    key
}

/// A FIFO record of `destination`, named by the sequence number of its first entry.
pub fn queue(destination: &DestinationId, first: u64) -> Vec<u8> {
    let mut key = queue_prefix(destination);
    key.extend_from_slice(&first.to_be_bytes());
    key
}

/// Where a destination's scheduled entries are: `W/{destination}/`.
pub fn scheduled_prefix(destination: &DestinationId) -> Vec<u8> {
    let mut key = join(&[SCHEDULED, destination.as_str().as_bytes()]);
    key.push(b'/');
    key
}

/// A scheduled entry: `W/{destination}/{due_at ms}/{seq}`, so a destination's scheduled
/// entries sort by due time, then by sequence.
pub fn scheduled(destination: &DestinationId, due_at: Timestamp, seq: u64) -> Vec<u8> {
    let mut key = scheduled_prefix(destination);
    key.extend_from_slice(&due_at.millis().to_be_bytes());
    key.push(b'/');
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The first key after every key that starts with `prefix` (which ends in `/`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
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

/// The destination (its id's text) and the sequence number of a FIFO record's key.
pub fn parse_queue(key: &[u8]) -> Option<(&[u8], u64)> {
    let rest = key.strip_prefix(QUEUE)?;
    let (destination, seq) = split_seq(rest)?;
    Some((destination.strip_suffix(b"/")?, seq))
}

/// The destination (its id's text), due time and sequence number of a scheduled entry's key.
pub fn parse_scheduled(key: &[u8]) -> Option<(&[u8], Timestamp, u64)> {
    let rest = key.strip_prefix(SCHEDULED)?;
    let (rest, seq) = split_seq(rest)?;
    let (rest, due) = split_seq(rest.strip_suffix(b"/")?)?;
    Some((rest.strip_suffix(b"/")?, Timestamp(due), seq))
}

/// Splits a big-endian `u64` off the end of a key.
fn split_seq(key: &[u8]) -> Option<(&[u8], u64)> {
    let at = key.len().checked_sub(8)?;
    let (head, tail) = key.split_at(at);
    Some((head, u64::from_be_bytes(tail.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_sequence_within_their_destination_and_parse_back() {
        let d = DestinationId::new();
        let (a, b) = (queue(&d, 2), queue(&d, 256));
        assert!(a < b);
        assert!(a.starts_with(&queue_prefix(&d)) && a < prefix_end(&queue_prefix(&d)));
        assert_eq!(parse_queue(&b), Some((d.as_str().as_bytes(), 256)));
        assert_eq!(parse_queue(b"Q/short"), None);
        // A sequence number whose bytes hold a `/` still parses: it is cut off by width.
        let slash = u64::from_be_bytes(*b"////////");
        assert_eq!(
            parse_queue(&queue(&d, slash)),
            Some((d.as_str().as_bytes(), slash))
        );
    }

    #[test]
    fn scheduled_keys_sort_by_due_time_then_sequence_and_parse_back() {
        let d = DestinationId::new();
        let early_late_seq = scheduled(&d, Timestamp(5), 900);
        let late_early_seq = scheduled(&d, Timestamp(6), 1);
        assert!(early_late_seq < late_early_seq);
        assert!(scheduled(&d, Timestamp(6), 1) < scheduled(&d, Timestamp(6), 2));
        assert_eq!(
            parse_scheduled(&late_early_seq),
            Some((d.as_str().as_bytes(), Timestamp(6), 1))
        );
        assert_eq!(parse_scheduled(&queue(&d, 1)), None);
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
