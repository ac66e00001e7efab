//! Destination queues on disk, laid out so that what a destination's actor reads is a range:
//!
//! - **The FIFO** of destination `d` is a run of records `Q/{d}/{first seq}`, each holding
//!   entries of `d` in sequence order: normally the ones one group commit added for `d`, so a
//!   burst costs sled one insert per destination per group, not one per event. Sequence
//!   numbers are handed out in commit order (`Store::commit_numbered`), so a group's record
//!   starts after every record of `d` before it and records never overlap: every entry of the
//!   record named `k` lies between `k` and the next record's name. The record that holds entry
//!   `s` is therefore the one with the greatest key `<= Q/{d}/{s}` (one reverse seek), the next
//!   `N` entries after a position are a forward range from there, and nothing in memory has
//!   to remember where an entry is. Taking an entry off rewrites its record, or removes it
//!   once empty.
//! - **Scheduled entries** (a delay or a retry: `due_at` set) are not in the FIFO, where they
//!   would fill a page while waiting. Each has a key of its own, `W/{d}/{due_at}/{seq}`, so a
//!   destination's scheduled entries read in due order. Retries are rare next to first
//!   attempts, so a key each costs little. An entry keeps its `due_at` after it comes due,
//!   until it settles or is scheduled again: `due_at` says where the entry is filed, so the
//!   operations that take it off or move it need nothing else.
//!
//! Only the writer thread changes these records (`GroupQueues`); reads go straight to sled.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{codec, keys, StoreError};
use crate::domain::destination_core::QueueEntry;
use crate::domain::{DestinationId, Timestamp};

type Result<T> = std::result::Result<T, StoreError>;

/// A change to a destination's queue, as the writer receives it.
pub enum QueueChange {
    /// Files a new entry: in the FIFO, or under its `due_at` when it has one.
    Enqueue {
        destination: DestinationId,
        entry: QueueEntry,
    },
    /// Takes a stored entry from where `previous_due_at` says it is filed and files it anew
    /// by its `due_at`. An entry that is not stored is left alone.
    Requeue {
        destination: DestinationId,
        entry: QueueEntry,
        previous_due_at: Option<Timestamp>,
    },
    /// Takes an entry off, from where `due_at` says it is filed. An unknown one is ignored:
    /// it is already gone.
    Dequeue {
        destination: DestinationId,
        seq: u64,
        due_at: Option<Timestamp>,
    },
}

impl QueueChange {
    /// The highest sequence number this change can make a key name.
    pub fn names(&self) -> u64 {
        match self {
            QueueChange::Enqueue { entry, .. } | QueueChange::Requeue { entry, .. } => entry.seq,
            QueueChange::Dequeue { .. } => 0,
        }
    }
}

/// A FIFO record as the writer holds it during a group.
struct Record {
    entries: Vec<QueueEntry>,
    /// Made by this group: entries of this group go on adding to it.
    opened: bool,
    dirty: bool,
}

/// A scheduled entry's key as the writer holds it during a group.
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// The queue changes of one group, gathered per record and key and written when it ends.
///
/// A message's changes are applied in two steps so that it applies whole or not at all:
/// `prepare` reads from sled what each change will touch (it may fail, and changes nothing
/// but what the group has read), then, once every operation of the message succeeded,
/// `apply` makes the changes (it cannot fail).
#[derive(Default)]
pub struct GroupQueues {
    records: BTreeMap<Vec<u8>, Record>,
    scheduled: HashMap<Vec<u8>, Slot>,
}

impl GroupQueues {
    /// Reads what `change` will touch. `high_water` is at least every sequence number the
    /// stored keys name: an entry above it cannot be in, or inside the range of, any stored
    /// record, so a new entry (the common case) reads nothing.
    pub fn prepare(
        &mut self,
        tree: &sled::Tree,
        change: &QueueChange,
        high_water: u64,
    ) -> Result<()> {
        match change {
            QueueChange::Enqueue { destination, entry } => {
                if entry.due_at.is_none() && entry.seq <= high_water {
                    self.load_record(tree, destination, entry.seq)?;
                }
            }
            QueueChange::Requeue {
                destination,
                entry,
                previous_due_at,
            } => {
                match previous_due_at {
                    None => self.load_record(tree, destination, entry.seq)?,
                    Some(due) => {
                        self.load_slot(tree, keys::scheduled(destination, *due, entry.seq))?
                    }
                }
                if entry.due_at.is_none() {
                    self.load_record(tree, destination, entry.seq)?;
                }
            }
            QueueChange::Dequeue {
                destination,
                seq,
                due_at: None,
            } => {
                if *seq <= high_water {
                    self.load_record(tree, destination, *seq)?;
                }
            }
            // Removing a scheduled key needs nothing read.
            QueueChange::Dequeue {
                due_at: Some(_), ..
            } => {}
        }
        Ok(())
    }

    /// Makes a change `prepare`d before.
    pub fn apply(&mut self, change: QueueChange) {
        match change {
            QueueChange::Enqueue { destination, entry } => self.file(&destination, entry),
            QueueChange::Requeue {
                destination,
                entry,
                previous_due_at,
            } => {
                if self.take(&destination, entry.seq, previous_due_at) {
                    self.file(&destination, entry);
                }
            }
            QueueChange::Dequeue {
                destination,
                seq,
                due_at,
            } => {
                self.take(&destination, seq, due_at);
            }
        }
    }

    /// Reads into the group the stored record whose range holds `seq`, if there is one.
    fn load_record(
        &mut self,
        tree: &sled::Tree,
        destination: &DestinationId,
        seq: u64,
    ) -> Result<()> {
        let range = keys::queue_prefix(destination)..=keys::queue(destination, seq);
        // Most changes of a group touch a record it already read: records never overlap, so
        // one that reaches `seq` is the one.
        if let Some((_, record)) = self.records.range(range.clone()).next_back() {
            if record.entries.last().is_some_and(|last| last.seq >= seq) {
                return Ok(());
            }
        }
        let Some(kv) = tree.range(range).next_back() else {
            return Ok(());
        };
        let (key, value) = kv?;
        if !self.records.contains_key(key.as_ref()) {
            let record = Record {
                entries: decode(&value)?,
                opened: false,
                dirty: false,
            };
            self.records.insert(key.to_vec(), record);
        }
        Ok(())
    }

    fn load_slot(&mut self, tree: &sled::Tree, key: Vec<u8>) -> Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.scheduled.entry(key) {
            let value = tree.get(slot.key())?.map(|v| v.to_vec());
            slot.insert(Slot {
                value,
                dirty: false,
            });
        }
        Ok(())
    }

    /// Files an entry by its `due_at`.
    fn file(&mut self, destination: &DestinationId, entry: QueueEntry) {
        let Some(due) = entry.due_at else {
            return self.insert_fifo(destination, entry);
        };
        self.scheduled.insert(
            keys::scheduled(destination, due, entry.seq),
            Slot {
                value: Some(codec::encode(&entry)),
                dirty: true,
            },
        );
    }

    /// Adds an entry to the record whose range holds it: the one this group opened, or a
    /// stored one it falls inside. An entry after everything stored opens a record of this
    /// group, named by it.
    fn insert_fifo(&mut self, destination: &DestinationId, entry: QueueEntry) {
        let seq = entry.seq;
        let covering = self
            .records
            .range_mut(keys::queue_prefix(destination)..=keys::queue(destination, seq))
            .next_back()
            .map(|(_, record)| record)
            .filter(|r| r.opened || r.entries.last().is_some_and(|last| last.seq >= seq));
        match covering {
            Some(record) => {
                match record.entries.binary_search_by_key(&seq, |e| e.seq) {
                    Ok(i) => record.entries[i] = entry,
                    Err(i) => record.entries.insert(i, entry),
                }
                record.dirty = true;
            }
            None => {
                let record = Record {
                    entries: vec![entry],
                    opened: true,
                    dirty: true,
                };
                self.records.insert(keys::queue(destination, seq), record);
            }
        }
    }

    /// Takes an entry off from where `due_at` says it is; whether it was there. A scheduled
    /// key not `prepare`d is removed blind (and reported absent).
    fn take(&mut self, destination: &DestinationId, seq: u64, due_at: Option<Timestamp>) -> bool {
        match due_at {
            Some(due) => {
                let slot = self
                    .scheduled
                    .entry(keys::scheduled(destination, due, seq))
                    .or_insert(Slot {
                        value: None,
                        dirty: false,
                    });
                slot.dirty = true;
                slot.value.take().is_some()
            }
            None => {
                let Some((_, record)) = self
                    .records
                    .range_mut(keys::queue_prefix(destination)..=keys::queue(destination, seq))
                    .next_back()
                else {
                    return false;
                };
                match record.entries.binary_search_by_key(&seq, |e| e.seq) {
                    Ok(i) => {
                        record.entries.remove(i);
                        record.dirty = true;
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// The writes that end the group: each changed record rewritten, or removed once empty,
    /// and each changed scheduled key.
    pub fn finish(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        let records = self
            .records
            .into_iter()
            .filter(|(_, r)| r.dirty)
            .map(|(key, r)| {
                let value = (!r.entries.is_empty()).then(|| codec::encode(&r.entries));
                (key, value)
            });
        let scheduled = self
            .scheduled
            .into_iter()
            .filter(|(_, s)| s.dirty)
            .map(|(key, s)| (key, s.value));
        records.chain(scheduled)
    }
}

pub fn decode(bytes: &[u8]) -> Result<Vec<QueueEntry>> {
    codec::decode(bytes)
}

// ---- reads ------------------------------------------------------------------------------

/// The next `limit` FIFO entries of `destination` after `after_seq`, in sequence order.
pub fn fifo_page(
    tree: &sled::Tree,
    destination: &DestinationId,
    after_seq: Option<u64>,
    limit: usize,
) -> Result<Vec<QueueEntry>> {
    let prefix = keys::queue_prefix(destination);
    let end = keys::prefix_end(&prefix);
    let mut page = Vec::new();
    if limit == 0 {
        return Ok(page);
    }
    // Start at the record whose range holds the first wanted sequence.
    let start = match after_seq {
        None => prefix,
        Some(after) => {
            let Some(first) = after.checked_add(1) else {
                return Ok(page);
            };
            let target = keys::queue(destination, first);
            match tree.range(prefix..=target.clone()).next_back() {
                Some(kv) => kv?.0.to_vec(),
                None => target,
            }
        }
    };
    for kv in tree.range(start..end) {
        let (_, value) = kv?;
        for entry in decode(&value)? {
            if after_seq.is_none_or(|after| entry.seq > after) {
                page.push(entry);
                if page.len() == limit {
                    return Ok(page);
                }
            }
        }
    }
    Ok(page)
}

/// The next `limit` scheduled entries of `destination` after the position `after` (a due
/// time and a sequence number), in due order.
pub fn due_page(
    tree: &sled::Tree,
    destination: &DestinationId,
    after: Option<(Timestamp, u64)>,
    limit: usize,
) -> Result<Vec<QueueEntry>> {
    let prefix = keys::scheduled_prefix(destination);
    let end = keys::prefix_end(&prefix);
    let start = match after {
        None => Bound::Included(prefix),
        Some((due, seq)) => Bound::Excluded(keys::scheduled(destination, due, seq)),
    };
    tree.range((start, Bound::Excluded(end)))
        .take(limit)
        .map(|kv| codec::decode(&kv?.1))
        .collect()
}

/// How many entries `destination` has in its FIFO and scheduled. Reads each FIFO record's
/// length, not its entries, and each scheduled key.
pub fn counts(tree: &sled::Tree, destination: &DestinationId) -> Result<(usize, usize)> {
    let mut fifo = 0;
    for kv in tree.scan_prefix(keys::queue_prefix(destination)) {
        fifo += codec::decode_len(&kv?.1)?;
    }
    let mut scheduled = 0;
    for kv in tree.scan_prefix(keys::scheduled_prefix(destination)) {
        kv?;
        scheduled += 1;
    }
    Ok((fifo, scheduled))
}

/// Every destination that has keys under `kind` (`Q/` or `W/`): one seek per destination,
/// whatever the number of its keys.
pub fn destinations(tree: &sled::Tree, kind: &[u8]) -> Result<Vec<DestinationId>> {
    owners(tree, kind, DestinationId::parse_loose)
}

/// Every owner (the id after `kind`, as in `H/{connection}/...`) that has keys under `kind`:
/// one seek per owner, whatever the number of its keys.
pub fn owners<T, E: std::fmt::Display>(
    tree: &sled::Tree,
    kind: &[u8],
    parse: impl Fn(&str) -> std::result::Result<T, E>,
) -> Result<Vec<T>> {
    let kind_end = keys::prefix_end(kind);
    let mut found = Vec::new();
    let mut from = kind.to_vec();
    while let Some(kv) = tree.range(from..kind_end.clone()).next() {
        let (key, _) = kv?;
        let rest = &key[kind.len()..];
        let id_len = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or_else(|| StoreError::Corrupt("queue key without an owner".into()))?;
        let text = std::str::from_utf8(&rest[..id_len])
            .map_err(|_| StoreError::Corrupt("queue key with a bad owner".into()))?;
        let id = parse(text).map_err(|e| StoreError::Corrupt(format!("queue key: {e}")))?;
        from = keys::prefix_end(&key[..kind.len() + id_len + 1]);
        found.push(id);
    }
    Ok(found)
}
