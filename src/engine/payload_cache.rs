//! Request bodies kept in memory for events not yet attempted, so a first attempt does not
//! read its body back from the store. One byte budget is shared by every destination: a
//! burst to one destination may use all of it, and no backlog, however long, pins more. An
//! event beyond the budget is delivered all the same; its body is read from the store when
//! its turn comes, which costs a store read per attempt (the old per-destination cap of 1,024
//! bodies turned a short burst into that slow path and the backlog fed itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::delivery::Payload;

/// Bytes of bodies cached across all destinations.
pub const PAYLOAD_CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct PayloadBudget {
    limit: usize,
    used: AtomicUsize,
}

impl PayloadBudget {
    pub fn new(limit: usize) -> Arc<PayloadBudget> {
        Arc::new(PayloadBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One destination's cached bodies, by queue sequence; each holds its share of the budget
/// until it is removed or the cache is dropped.
pub struct PayloadCache {
    budget: Arc<PayloadBudget>,
    entries: HashMap<u64, (Arc<Payload>, usize)>,
}

impl PayloadCache {
    pub fn new(budget: Arc<PayloadBudget>) -> PayloadCache {
        PayloadCache {
            budget,
            entries: HashMap::new(),
        }
    }

    /// Keeps the body for `seq` if the budget allows; otherwise it will be read from the store.
    pub fn insert(&mut self, seq: u64, payload: &Arc<Payload>) {
        let bytes = payload.size();
        if self.entries.contains_key(&seq) || !self.budget.try_take(bytes) {
            return;
        }
        self.entries.insert(seq, (payload.clone(), bytes));
    }

    pub fn get(&self, seq: u64) -> Option<Arc<Payload>> {
        self.entries.get(&seq).map(|(p, _)| p.clone())
    }

    pub fn remove(&mut self, seq: u64) {
        if let Some((_, bytes)) = self.entries.remove(&seq) {
            self.budget.give_back(bytes);
        }
    }
}

impl Drop for PayloadCache {
    fn drop(&mut self) {
        let bytes: usize = self.entries.values().map(|(_, b)| b).sum();
        self.budget.give_back(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize) -> Arc<Payload> {
        Arc::new(Payload::new(&[], bytes::Bytes::from(vec![b'x'; len])))
    }

    #[test]
    fn the_budget_is_shared_and_returned_on_remove_and_drop() {
        let one = payload(100).size();
        let budget = PayloadBudget::new(one * 3);
        let mut a = PayloadCache::new(budget.clone());
        let mut b = PayloadCache::new(budget.clone());
        let p = payload(100);
        a.insert(1, &p);
        a.insert(2, &p);
        a.insert(2, &p); // the same entry twice is charged once
        b.insert(7, &p);
        b.insert(8, &p); // over the budget: not cached
        assert!(a.get(1).is_some() && a.get(2).is_some() && b.get(7).is_some());
        assert!(
            b.get(8).is_none(),
            "beyond the budget the body is read from the store"
        );
        assert_eq!(budget.used(), one * 3);
        a.remove(1);
        a.remove(1);
        assert_eq!(budget.used(), one * 2);
        b.insert(8, &p);
        assert!(
            b.get(8).is_some(),
            "room freed by one destination is usable by another"
        );
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
