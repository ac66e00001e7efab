//! The layout version of a data directory, the migration from older layouts, and the
//! sequence numbers' high-water mark.
//!
//! `M/layout` holds the version of the key layout (`keys`, `queue_records`). A directory
//! without it was written before versions were kept (version 1: queue records `Q/{seq}`
//! holding one group's entries for every destination); it is rewritten in the current layout
//! at open, in one atomic batch that ends with the version key, so a crash leaves it either
//! old or new. A version newer than this build's is refused.
//!
//! `M/seq` holds the highest sequence number any key or stored entry has named. The writer
//! raises it in the same batch as the keys that name a higher one, so it is never behind
//! them, and sequence numbers handed out after a restart start above it: a number is never
//! reissued, even once every key that named it is gone.

use std::collections::HashMap;

use super::event_record::EventRecord;
use super::{codec, event_counts, keys, StoreError};
use crate::domain::destination_core::QueueEntry;
use crate::domain::DestinationId;

type Result<T> = std::result::Result<T, StoreError>;

/// The layout this build reads and writes. Version 3 added the event index (`X/`),
/// version 4 the event counts (`Y/`), version 5 the sources' dedupe (and its claims, `Z/`),
/// version 6 every connection's list of events (`P/`) and the connection links (`F/`).
pub const VERSION: u32 = 6;

/// The per-destination queue layout, before the event index.
const V2: u32 = 2;

/// The event index, before the event counts.
const V3: u32 = 3;

/// The event counts, before the sources' dedupe.
const V4: u32 = 4;

/// The sources' dedupe, before the connections' lists of events.
const V5: u32 = 5;

/// Index keys written per batch by the migration to version 3.
const INDEX_BATCH: usize = 10_000;

/// Entries per FIFO record written by a migration: a page of the actor's is a few records,
/// and no record is one huge value.
const MIGRATED_RECORD_ENTRIES: usize = 1024;

/// Checks the layout of `tree`, migrating an older one, and returns the high-water mark.
pub fn open(tree: &sled::Tree) -> Result<u64> {
    let version = match tree.get(keys::LAYOUT)? {
        None => {
            migrate_from_v1(tree)?;
            V2
        }
        Some(version) => u32::from_be_bytes(
            version
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("the layout version is not 4 bytes".into()))?,
        ),
    };
    if version > VERSION {
        return Err(StoreError::NewerLayout {
            found: version,
            supported: VERSION,
        });
    }
    if version < V2 {
        return Err(StoreError::Corrupt(format!(
            "store layout version {version} is not one this build knows"
        )));
    }
    if version == V2 {
        migrate_v2_to_v3(tree)?;
    }
    if version <= V3 {
        migrate_v3_to_v4(tree)?;
    }
    if version <= V4 {
        migrate_v4_to_v5(tree)?;
    }
    if version <= V5 {
        migrate_v5_to_v6(tree)?;
    }
    match tree.get(keys::HIGH_WATER)? {
        Some(mark) => decode_mark(&mark),
        // Only if the key was lost: every key that can name a sequence number, read once.
        None => scan_high_water(tree),
    }
}

pub fn encode_mark(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

pub fn decode_mark(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("the sequence high-water mark is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The highest sequence number any FIFO record, scheduled or held key, or entry names.
fn scan_high_water(tree: &sled::Tree) -> Result<u64> {
    let mut high = 0;
    for kv in tree.scan_prefix(keys::QUEUE) {
        let (key, value) = kv?;
        let (_, first) =
            keys::parse_queue(&key).ok_or_else(|| StoreError::Corrupt("bad queue key".into()))?;
        high = high.max(first);
        let entries: Vec<QueueEntry> = codec::decode(&value)?;
        high = high.max(entries.iter().map(|e| e.seq).max().unwrap_or(0));
    }
    for kv in tree.scan_prefix(keys::SCHEDULED) {
        let (key, _) = kv?;
        let (_, _, seq) = keys::parse_scheduled(&key)
            .ok_or_else(|| StoreError::Corrupt("bad scheduled key".into()))?;
        high = high.max(seq);
    }
    Ok(high.max(held_high_water(tree)?))
}

fn held_high_water(tree: &sled::Tree) -> Result<u64> {
    let mut high = 0;
    for kv in tree.scan_prefix(keys::HOLD) {
        let (key, value) = kv?;
        let entry: QueueEntry = codec::decode(&value)?;
        let named = key
            .len()
            .checked_sub(8)
            .and_then(|at| key[at..].try_into().ok())
            .map_or(0, u64::from_be_bytes);
        high = high.max(entry.seq).max(named);
    }
    Ok(high)
}

/// A version 1 queue key: `Q/` and a big-endian sequence number.
fn parse_v1_queue(key: &[u8]) -> Option<u64> {
    let seq: [u8; 8] = key.strip_prefix(keys::QUEUE)?.try_into().ok()?;
    Some(u64::from_be_bytes(seq))
}

/// Rewrites version 1 queue records in the current layout (a new directory has none) and
/// stamps the version, in one batch, then makes it durable.
fn migrate_from_v1(tree: &sled::Tree) -> Result<u64> {
    let mut batch = sled::Batch::default();
    let mut high = 0;
    let mut queues: HashMap<DestinationId, Vec<QueueEntry>> = HashMap::new();
    for kv in tree.scan_prefix(keys::QUEUE) {
        let (key, value) = kv?;
        let record = parse_v1_queue(&key).ok_or_else(|| {
            StoreError::Corrupt("a queue key of no known layout, and no layout version".into())
        })?;
        high = high.max(record);
        let shares: Vec<(DestinationId, Vec<QueueEntry>)> = codec::decode(&value)?;
        for (destination, entries) in shares {
            queues.entry(destination).or_default().extend(entries);
        }
        batch.remove(key);
    }
    let mut migrated = 0;
    for (destination, mut entries) in queues {
        migrated += entries.len();
        // Version 1 numbered entries before commit, so its records could interleave.
        entries.sort_by_key(|e| e.seq);
        high = high.max(entries.last().map_or(0, |e| e.seq));
        let (fifo, scheduled): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.due_at.is_none());
        for entry in scheduled {
            let due = entry.due_at.expect("partitioned by due_at");
            batch.insert(
                keys::scheduled(&destination, due, entry.seq),
                codec::encode(&entry),
            );
        }
        for chunk in fifo.chunks(MIGRATED_RECORD_ENTRIES) {
            batch.insert(
                keys::queue(&destination, chunk[0].seq),
                codec::encode(&chunk),
            );
        }
    }
    high = high.max(held_high_water(tree)?);
    batch.insert(keys::HIGH_WATER, encode_mark(high));
    batch.insert(keys::LAYOUT, V2.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tree.flush()?;
    if migrated > 0 {
        tracing::info!(
            entries = migrated,
            "queue records rewritten in the per-destination layout"
        );
    }
    Ok(high)
}

/// Builds the event index from every stored event, then stamps version 3. Index keys are
/// idempotent, so a crash part-way leaves version 2 and the next open starts over.
fn migrate_v2_to_v3(tree: &sled::Tree) -> Result<()> {
    let mut batch = sled::Batch::default();
    let (mut pending, mut indexed) = (0, 0);
    for kv in tree.scan_prefix(keys::EVENT) {
        let (_, value) = kv?;
        let e = codec::decode::<EventRecord>(&value)?.event;
        for key in keys::event_index(&e.team_id, &e.connection_id, e.status, &e.id) {
            batch.insert(key, Vec::new());
            pending += 1;
            indexed += 1;
        }
        if pending >= INDEX_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(keys::LAYOUT, V3.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tree.flush()?;
    tracing::info!(index_keys = indexed, "event index built (store layout 3)");
    Ok(())
}

/// Counts every stored event into the event counts, then stamps version 4, in one batch:
/// a crash leaves version 3 and no counts, and the next open starts over.
fn migrate_v3_to_v4(tree: &sled::Tree) -> Result<()> {
    let changes = event_counts::count_all(tree)?;
    let mut batch = sled::Batch::default();
    let mut records = 0;
    for (key, value) in changes.into_writes(tree)? {
        batch.insert(key, value);
        records += 1;
    }
    batch.insert(keys::LAYOUT, V4.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tree.flush()?;
    tracing::info!(records, "event counts built (store layout 4)");
    Ok(())
}

/// A source as layout 4 stored it: before `dedupe`.
#[derive(serde::Deserialize)]
struct SourceV4 {
    id: crate::domain::SourceId,
    team_id: crate::domain::TeamId,
    name: String,
    allowed_http_methods: Vec<String>,
    verification: Option<crate::domain::Verification>,
    disabled_at: Option<crate::domain::Timestamp>,
    created_at: crate::domain::Timestamp,
    updated_at: crate::domain::Timestamp,
}

/// Rewrites every source with `dedupe: None` and counts the requests of each body segment
/// (for retention), then stamps version 5, in one batch.
fn migrate_v4_to_v5(tree: &sled::Tree) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut per_segment: HashMap<u32, u64> = HashMap::new();
    for item in tree.scan_prefix(keys::REQUEST) {
        let (_, value) = item?;
        let record: super::request_record::RequestRecord = codec::decode(&value)?;
        *per_segment.entry(record.body.segment()).or_default() += 1;
    }
    for (segment, count) in &per_segment {
        batch.insert(keys::segment(*segment), count.to_be_bytes().to_vec());
    }
    let mut sources = 0;
    for item in tree.scan_prefix(keys::SOURCE) {
        let (key, value) = item?;
        let old: SourceV4 = codec::decode(&value)?;
        let source = crate::domain::Source {
            id: old.id,
            team_id: old.team_id,
            name: old.name,
            allowed_http_methods: old.allowed_http_methods,
            verification: old.verification,
            disabled_at: old.disabled_at,
            created_at: old.created_at,
            updated_at: old.updated_at,
            dedupe: None,
        };
        batch.insert(key, codec::encode(&source));
        sources += 1;
    }
    batch.insert(keys::LAYOUT, V5.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tree.flush()?;
    tracing::info!(
        sources,
        segments = per_segment.len(),
        "sources rewritten with dedupe, body segments counted (store layout 5)"
    );
    Ok(())
}

/// Lists every stored event in its connection's list and links every connection to its
/// destination and its source, then stamps version 6. The lists are built anew, so a crash
/// part-way leaves version 5 and the next open starts over.
fn migrate_v5_to_v6(tree: &sled::Tree) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let mut add = |batch: &mut sled::Batch, key: Vec<u8>, value: Vec<u8>| -> Result<()> {
        batch.insert(key, value);
        pending += 1;
        if pending >= INDEX_BATCH {
            tree.apply_batch(std::mem::take(batch))?;
            pending = 0;
        }
        Ok(())
    };
    for key in tree.scan_prefix(keys::EVENT_LIST).keys() {
        batch.remove(key?);
    }
    let listed = super::event_lists::build_all(tree, |key, run| add(&mut batch, key, run))?;
    let mut connections = 0;
    for value in tree.scan_prefix(keys::CONNECTION).values() {
        let connection: crate::domain::Connection = codec::decode(&value?)?;
        for link in keys::connection_links(&connection) {
            add(&mut batch, link, Vec::new())?;
        }
        connections += 1;
    }
    batch.insert(keys::LAYOUT, VERSION.to_be_bytes().to_vec());
    tree.apply_batch(batch)?;
    tree.flush()?;
    tracing::info!(
        events = listed,
        connections,
        "every connection's events listed (store layout 6)"
    );
    Ok(())
}
