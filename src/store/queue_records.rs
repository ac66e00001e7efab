//! Destination queues on disk. The entries one group commit adds to a destination are stored
//! together, as one record under `Q/{destination}/{seq of the first}`: a burst of events to one
//! destination costs sled one insert per group, not one per event, and its removals rewrite
//! or delete that one record. sled's cost is per key (each insert copies its whole 16-entry
//! leaf), so this halves what the queue costs the writer at full load (BENCHMARKS.md).
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

/// The queue changes of one group, gathered per record and written when the group ends.
#[derive(Default)]
pub struct GroupQueues {
    /// The record this group opened for each destination it enqueued to.
    opened: HashMap<DestinationId, u64>,
    records: HashMap<(DestinationId, u64), Vec<QueueEntry>>,
}

impl GroupQueues {
    pub fn enqueue(
        &mut self,
        index: &mut QueueIndex,
        destination: DestinationId,
        entry: QueueEntry,
    ) {
        let record = *self.opened.entry(destination.clone()).or_insert(entry.seq);
        index.insert(&destination, entry.seq, record);
        // A record opened by this group is new: nothing to read back.
        self.records
            .entry((destination, record))
            .or_default()
            .push(entry);
    }

    /// Replaces a live entry (its retry was scheduled). An unknown entry is ignored.
    pub fn requeue(
        &mut self,
        index: &QueueIndex,
        destination: DestinationId,
        entry: QueueEntry,
        read: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) {
        let Some(record) = index.get(&destination, entry.seq) else {
            return;
        };
        let entries = self.record(destination, record, read);
        if let Some(slot) = entries.iter_mut().find(|e| e.seq == entry.seq) {
            *slot = entry;
        }
    }

    /// Removes a live entry (delivered, dead-lettered or held). An unknown one is ignored:
    /// it is already gone.
    pub fn dequeue(
        &mut self,
        index: &mut QueueIndex,
        destination: DestinationId,
        seq: u64,
        read: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) {
        let Some(record) = index.remove(&destination, seq) else {
            return;
        };
        self.record(destination, record, read)
            .retain(|e| e.seq != seq);
    }

    fn record(
        &mut self,
        destination: DestinationId,
        record: u64,
        read: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> &mut Vec<QueueEntry> {
        self.records
            .entry((destination, record))
            .or_insert_with_key(|(destination, record)| {
                let stored = read(&keys::queue(destination, *record));
                match stored.map(|bytes| decode(&bytes)) {
                    Some(Ok(entries)) => entries,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot decode a queue record to change it");
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            })
    }

    /// The writes that end the group: each touched record rewritten, or removed once empty.
    pub fn finish(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.records
            .into_iter()
            .map(|((destination, record), entries)| {
                let key = keys::queue(&destination, record);
                if entries.is_empty() {
                    (key, None)
                } else {
                    (key, Some(codec::encode(&entries)))
                }
            })
    }
}

pub fn decode(bytes: &[u8]) -> Result<Vec<QueueEntry>, StoreError> {
    codec::decode(bytes)
}
