//! The bookkeeping that keeps one of a destination's queues (its FIFO, or its entries
//! scheduled for a time) bounded in memory: which part of the queue on disk the actor has
//! seen, whether more waits there, and whether an entry handed over by ingress belongs in
//! memory or stays on disk to be paged in later, in order. Pure: the core asks it, and the
//! actor does the reading (after the writer has applied every change the core made, so a
//! page never shows an entry as it was before the core changed it).
//!
//! Entries are ordered by a key `K` (the sequence number for the FIFO, `(due, seq)` for the
//! scheduled ones). The invariant: every entry on disk whose key is at or below `read_to`
//! has been seen (it is in memory, in flight, or settled); while `more` is false, every
//! entry on disk has been seen.

/// What to do with an entry that ingress (or a retry) hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Keep it in memory.
    Keep,
    /// Leave it on disk: memory is full or older entries are still on disk; a page brings it.
    OnDisk,
    /// A page already brought it: ignore it.
    Seen,
}

#[derive(Debug, Clone)]
pub struct Paging<K> {
    /// Entries may wait on disk that are not in memory.
    more: bool,
    /// A page read is under way.
    loading: bool,
    /// Every entry on disk with a key at or below this has been seen.
    read_to: Option<K>,
    /// Hand-overs of entries with a sequence number at or below this were (or will be)
    /// brought by a page: the writer had applied them when the page was read.
    seen_seq: u64,
    /// An entry was left on disk while a page was being read; the page may not hold it.
    left_while_loading: bool,
    /// The lowest key left on disk while a page was being read, and the key just before it:
    /// the page cannot be trusted past it.
    lowest_left: Option<(K, K)>,
    /// Entries on disk and not in memory, as far as this actor knows (for counts only).
    pub on_disk: usize,
}

impl<K: Copy + Ord> Paging<K> {
    /// At boot: what is on disk is not known yet.
    pub fn unknown() -> Self {
        Paging {
            more: true,
            loading: false,
            read_to: None,
            seen_seq: 0,
            left_while_loading: false,
            lowest_left: None,
            on_disk: 0,
        }
    }

    pub fn more(&self) -> bool {
        self.more
    }

    pub fn loading(&self) -> bool {
        self.loading
    }

    /// An entry handed over with key `key` and sequence `seq`; `room` says whether memory
    /// has space for it.
    pub fn offer(&mut self, key: K, seq: u64, room: bool) -> Offer {
        if seq <= self.seen_seq {
            return Offer::Seen;
        }
        if !self.more && room {
            return Offer::Keep;
        }
        self.left_on_disk();
        // Only an entry already settled can be offered below what was read; reading again
        // from the start costs a page and loses nothing.
        if self.read_to.is_some_and(|r| r >= key) {
            self.read_to = None;
        }
        Offer::OnDisk
    }

    /// An entry the core itself files under `key` (a retry it scheduled): whether it stays
    /// in memory. It does only where pages will not bring it again out of order: when all
    /// is seen, or below what was read.
    pub fn place(&mut self, key: K, room: bool, before: K) -> bool {
        if room && (!self.more || self.read_to.is_some_and(|r| key <= r)) {
            return true;
        }
        self.evict(key, before);
        false
    }

    /// An entry known in memory is dropped from it (memory is full) but stays on disk;
    /// `before` is the key just before it.
    pub fn evict(&mut self, key: K, before: K) {
        self.left_on_disk();
        // It may sit below what was read: read again from just before it.
        if self.read_to.is_some_and(|r| r >= key) {
            self.read_to = Some(before);
        }
        // A page being read may end past it without holding it.
        if self.loading && self.lowest_left.is_none_or(|(k, _)| key < k) {
            self.lowest_left = Some((key, before));
        }
    }

    fn left_on_disk(&mut self) {
        self.more = true;
        self.on_disk += 1;
        if self.loading {
            self.left_while_loading = true;
        }
    }

    /// The position to read the next page after, when memory holds fewer than `low` of
    /// these entries and more wait on disk. Marks the read as under way.
    pub fn want_page(&mut self, in_memory: usize, low: usize) -> Option<Option<K>> {
        if !self.more || self.loading || in_memory >= low {
            return None;
        }
        self.loading = true;
        self.left_while_loading = false;
        self.lowest_left = None;
        Some(self.read_to)
    }

    /// A page came back: `last` is the key of its last entry taken in, `full` whether it held
    /// as many as asked (or was cut short because memory filled up), `high_water` the highest sequence number the writer had applied when it
    /// was read, `kept` how many of its entries went into memory.
    pub fn loaded(&mut self, last: Option<K>, full: bool, high_water: u64, kept: usize) {
        self.loading = false;
        if let Some(last) = last {
            self.read_to = Some(self.read_to.map_or(last, |r| r.max(last)));
        }
        if let Some((key, before)) = self.lowest_left.take() {
            if self.read_to.is_some_and(|r| r >= key) {
                self.read_to = Some(before);
            }
        }
        if !full {
            // The read saw everything applied by then: only later commits are unseen.
            self.seen_seq = self.seen_seq.max(high_water);
        }
        self.more = full || self.left_while_loading;
        self.on_disk = if self.more {
            self.on_disk.saturating_sub(kept)
        } else {
            0
        };
        self.left_while_loading = false;
    }

    /// A page could not be read: try again at the next chance.
    pub fn failed(&mut self) {
        self.loading = false;
        self.lowest_left = None;
    }

    /// A background count of what the destination has on disk (after a restart).
    pub fn counted(&mut self, on_disk: usize) {
        if self.more {
            self.on_disk = on_disk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_actor_reads_from_the_start_and_keeps_hand_overs_only_once_all_is_seen() {
        let mut p = Paging::<u64>::unknown();
        assert_eq!(
            p.offer(5, 5, true),
            Offer::OnDisk,
            "older entries may be on disk"
        );
        assert_eq!(p.want_page(0, 10), Some(None));
        assert_eq!(p.want_page(0, 10), None, "one read at a time");
        assert_eq!(p.offer(6, 6, true), Offer::OnDisk);
        // The page held 5 and 6 and was not full, but 7 was left on disk meanwhile.
        p.loaded(Some(6), false, 6, 2);
        assert!(p.more(), "an entry was left on disk during the read");
        assert_eq!(p.offer(6, 6, true), Offer::Seen, "a page brought it");
        assert_eq!(p.want_page(2, 10), Some(Some(6)));
        p.loaded(Some(7), false, 8, 1);
        assert!(!p.more());
        assert_eq!(p.on_disk, 0);
        assert_eq!(p.offer(8, 8, true), Offer::Seen, "applied before the read");
        assert_eq!(p.offer(9, 9, true), Offer::Keep);
        assert_eq!(p.offer(10, 10, false), Offer::OnDisk, "no room");
        assert!(p.more());
        assert_eq!(p.want_page(9, 10), Some(Some(7)));
    }

    #[test]
    fn a_full_page_means_more_and_an_eviction_reads_again_from_before_it() {
        let mut p = Paging::<u64>::unknown();
        p.want_page(0, 4);
        p.loaded(Some(40), true, 100, 4);
        assert!(p.more());
        assert_eq!(p.offer(41, 41, true), Offer::OnDisk);
        p.evict(30, 29);
        assert_eq!(p.want_page(0, 4), Some(Some(29)));
        p.failed();
        assert_eq!(
            p.want_page(0, 4),
            Some(Some(29)),
            "a failed read is retried"
        );
    }
}
