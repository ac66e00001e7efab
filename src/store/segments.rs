//! The live requests of each body segment (`G/{segment}`), kept by the writer in the same
//! batch as the requests themselves, so a segment's file can be deleted exactly when nothing
//! refers to it any more: once its count is zero, it is no longer the segment being appended
//! to, and the batch that emptied it is durable.

use std::collections::HashMap;

use super::{keys, Result, StoreError};

#[derive(Debug, Default)]
pub struct SegmentCounts {
    live: HashMap<u32, u64>,
    /// Emptied by an applied batch; their files go once a flush has made it durable.
    removable: Vec<u32>,
}

/// One group's changes: requests stored (+) and purged (−) by segment.
pub type SegmentDeltas = HashMap<u32, i64>;

impl SegmentCounts {
    pub fn load(tree: &sled::Tree) -> Result<SegmentCounts> {
        let mut live = HashMap::new();
        for item in tree.scan_prefix(keys::SEGMENT) {
            let (key, value) = item?;
            let segment = keys::segment_of(&key)
                .ok_or_else(|| StoreError::Corrupt("a segment count key".into()))?;
            live.insert(segment, decode(&value)?);
        }
        Ok(SegmentCounts {
            live,
            removable: Vec::new(),
        })
    }

    /// The counts after `deltas`, and which segments (older than `current`) they leave empty.
    fn after(&self, deltas: &SegmentDeltas, current: u32) -> (Vec<(u32, u64)>, Vec<u32>) {
        let changed: Vec<(u32, u64)> = deltas
            .iter()
            .map(|(&s, &d)| {
                let count = self.live.get(&s).copied().unwrap_or(0);
                (s, count.saturating_add_signed(d))
            })
            .collect();
        let untouched = self
            .live
            .iter()
            .filter(|(s, _)| !deltas.contains_key(s))
            .map(|(&s, &c)| (s, c));
        let mut empty: Vec<u32> = changed
            .iter()
            .copied()
            .chain(untouched)
            .filter(|&(s, c)| c == 0 && s < current)
            .map(|(s, _)| s)
            .collect();
        empty.sort_unstable();
        (changed, empty)
    }

    /// The `G/` writes of a group: new counts, and the keys of segments left empty removed.
    pub fn writes(
        &self,
        deltas: &SegmentDeltas,
        current: u32,
    ) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        let (changed, empty) = self.after(deltas, current);
        let puts: Vec<_> = changed
            .into_iter()
            .filter(|(s, _)| !empty.contains(s))
            .map(|(s, count)| (keys::segment(s), Some(count.to_be_bytes().to_vec())))
            .collect();
        let removes = empty.into_iter().map(|s| (keys::segment(s), None));
        puts.into_iter().chain(removes)
    }

    /// The group's batch is applied: the counts follow it, and emptied segments wait for a
    /// durable flush before their files go.
    pub fn applied(&mut self, deltas: &SegmentDeltas, current: u32) {
        let (changed, empty) = self.after(deltas, current);
        for (segment, count) in changed {
            self.live.insert(segment, count);
        }
        for segment in empty {
            self.live.remove(&segment);
            self.removable.push(segment);
        }
    }

    /// Whether `segment` has a count (requests that refer to it, or it is the current one).
    pub fn contains(&self, segment: u32) -> bool {
        self.live.contains_key(&segment)
    }

    /// Segments whose emptying is durable, to delete now.
    pub fn take_removable(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.removable)
    }

    #[cfg(test)]
    pub fn live(&self, segment: u32) -> Option<u64> {
        self.live.get(&segment).copied()
    }
}

fn decode(bytes: &[u8]) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a segment count is not 8 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(pairs: &[(u32, i64)]) -> SegmentDeltas {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_segment_goes_once_empty_and_no_longer_appended_to() {
        let mut c = SegmentCounts::default();
        c.applied(&deltas(&[(0, 3)]), 0);
        c.applied(&deltas(&[(0, -3)]), 0);
        assert_eq!(c.live(0), Some(0), "still the current segment");
        assert!(c.take_removable().is_empty());
        // Appends moved on to segment 1: the empty segment 0 goes, with its key.
        let writes: Vec<_> = c.writes(&deltas(&[(1, 1)]), 1).collect();
        assert!(writes.contains(&(keys::segment(0), None)), "{writes:?}");
        assert!(writes.contains(&(keys::segment(1), Some(1u64.to_be_bytes().to_vec()))));
        c.applied(&deltas(&[(1, 1)]), 1);
        assert_eq!(c.take_removable(), vec![0]);
        assert_eq!(c.live(0), None);
        // A segment still referred to stays.
        c.applied(&deltas(&[(1, 2), (2, 5)]), 2);
        c.applied(&deltas(&[(1, -2)]), 2);
        assert_eq!(c.take_removable(), Vec::<u32>::new());
        c.applied(&deltas(&[(1, -1), (2, -1)]), 2);
        assert_eq!(c.take_removable(), vec![1]);
        assert_eq!(c.live(2), Some(4));
    }
}
