//! Destination queues on disk. The entries one group commit adds are stored together, as one
//! record under `Q/{seq of the first}` holding each destination's share: a burst of events
//! costs sled one insert per group, not one per event, whether it goes to one destination or
//! to thousands, and removals rewrite or delete that one record. sled's cost is per key (each
//! insert copies its whole 16-entry leaf), so this halves what the queue costs the writer at
//! full load, and keeps 10,000 destinations from costing a key each (BENCHMARKS.md, W3).
//!
//! Only the writer thread touches these records. It keeps an index of which record holds
//! each live entry; `Store::load_queues` rebuilds that index at boot.

use std::collections::HashMap;

use super::{codec, keys, StoreError};
use crate::domain::destination_core::QueueEntry;
use crate::domain::DestinationId;

/// For each destination, the record (named by the sequence in its key) of each live entry.
#[derive(Debug, Default)]
pub struct QueueIndex {
    home: HashMap<DestinationId, HashMap<u64, u64>>,
}

impl QueueIndex {
    pub fn insert(&mut self, destination: &DestinationId, seq: u64, record: u64) {
        match self.home.get_mut(destination) {
            Some(homes) => {
                homes.insert(seq, record);
            }
            None => {
                self.home
                    .insert(destination.clone(), HashMap::from([(seq, record)]));
            }
        }
    }

    fn get(&self, destination: &DestinationId, seq: u64) -> Option<u64> {
        self.home.get(destination)?.get(&seq).copied()
    }

    fn remove(&mut self, destination: &DestinationId, seq: u64) -> Option<u64> {
        let homes = self.home.get_mut(destination)?;
        let record = homes.remove(&seq);
        if homes.is_empty() {
            self.home.remove(destination);
        }
        record
    }
}

/// What a queue record holds: each destination's entries from one group.
pub type QueueRecord = Vec<(DestinationId, Vec<QueueEntry>)>;

/// The queue changes of one group, gathered per record and written when the group ends.
#[derive(Default)]
pub struct GroupQueues {
    /// The record this group opened, named by its first entry.
    opened: Option<u64>,
    records: HashMap<u64, QueueRecord>,
}

impl GroupQueues {
    pub fn enqueue(
        &mut self,
        index: &mut QueueIndex,
        destination: DestinationId,
        entry: QueueEntry,
    ) {
        let record = *self.opened.get_or_insert(entry.seq);
        index.insert(&destination, entry.seq, record);
        // A record opened by this group is new: nothing to read back.
        let shares = self.records.entry(record).or_default();
        share(shares, destination).push(entry);
    }

    /// Reads into the group the record that holds `destination`'s entry `seq`, if it is
    /// live, so that applying a change to it afterwards cannot fail. Changes nothing else:
    /// a message whose other operations fail leaves the index and the records as they were.
    pub fn load(
        &mut self,
        index: &QueueIndex,
        destination: &DestinationId,
        seq: u64,
        read: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(record) = index.get(destination, seq) else {
            return Ok(());
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.records.entry(record) {
            let shares = match read(&keys::queue(record))? {
                Some(bytes) => decode(&bytes)?,
                None => Vec::new(),
            };
            slot.insert(shares);
        }
        Ok(())
    }

    /// Replaces a live entry (its retry was scheduled). An unknown entry is ignored. Its
    /// record must have been `load`ed.
    pub fn requeue(&mut self, index: &QueueIndex, destination: DestinationId, entry: QueueEntry) {
        let Some(record) = index.get(&destination, entry.seq) else {
            return;
        };
        let Some(shares) = self.records.get_mut(&record) else {
            debug_assert!(false, "requeue of a record that was not loaded");
            return;
        };
        if let Some(slot) = share(shares, destination)
            .iter_mut()
            .find(|e| e.seq == entry.seq)
        {
            *slot = entry;
        }
    }

    /// Removes a live entry (delivered, dead-lettered, cancelled or held). An unknown one is
    /// ignored: it is already gone. Its record must have been `load`ed.
    pub fn dequeue(&mut self, index: &mut QueueIndex, destination: DestinationId, seq: u64) {
        let Some(record) = index.remove(&destination, seq) else {
            return;
        };
        let Some(shares) = self.records.get_mut(&record) else {
            debug_assert!(false, "dequeue of a record that was not loaded");
            return;
        };
        share(shares, destination).retain(|e| e.seq != seq);
    }

    /// The writes that end the group: each touched record rewritten, or removed once empty.
    pub fn finish(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.records.into_iter().map(|(record, mut shares)| {
            shares.retain(|(_, entries)| !entries.is_empty());
            let key = keys::queue(record);
            if shares.is_empty() {
                (key, None)
            } else {
                (key, Some(codec::encode(&shares)))
            }
        })
    }
}

/// A destination's entries within a record, added if it has none yet. A record holds a
/// group's destinations, usually one and at most a few thousand; a scan is enough.
fn share(shares: &mut QueueRecord, destination: DestinationId) -> &mut Vec<QueueEntry> {
    match shares.iter().position(|(d, _)| *d == destination) {
        Some(i) => &mut shares[i].1,
        None => {
            shares.push((destination, Vec::new()));
            &mut shares.last_mut().expect("just pushed").1
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<QueueRecord, StoreError> {
    codec::decode(bytes)
}

/// Every destination's stored queue, read at boot (and by the writer after a failed group,
/// to make its index agree with the disk again).
pub struct LoadedQueues {
    pub index: QueueIndex,
    /// Each destination's entries, in sequence (FIFO) order.
    pub queues: HashMap<DestinationId, Vec<QueueEntry>>,
    /// The highest sequence number any queue key or entry names: a record is named by its
    /// group's first entry, which can be delivered while later ones stay, and that name must
    /// never be handed out again.
    pub max_seq: u64,
}

pub fn load_all(tree: &sled::Tree) -> Result<LoadedQueues, StoreError> {
    let mut loaded = LoadedQueues {
        index: QueueIndex::default(),
        queues: HashMap::new(),
        max_seq: 0,
    };
    for kv in tree.scan_prefix(keys::QUEUE) {
        let (k, v) = kv?;
        let Some(record) = keys::parse_queue(&k) else {
            return Err(StoreError::Corrupt("bad queue key".into()));
        };
        loaded.max_seq = loaded.max_seq.max(record);
        for (destination, entries) in decode(&v)? {
            for entry in &entries {
                loaded.max_seq = loaded.max_seq.max(entry.seq);
                loaded.index.insert(&destination, entry.seq, record);
            }
            loaded
                .queues
                .entry(destination)
                .or_default()
                .extend(entries);
        }
    }
    // Records are in the order their groups committed, which can differ a little from the
    // order sequence numbers were handed out; FIFO is by sequence.
    for queue in loaded.queues.values_mut() {
        queue.sort_by_key(|e| e.seq);
    }
    Ok(loaded)
}
