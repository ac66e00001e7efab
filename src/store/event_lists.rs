//! Every event of a connection in creation order, whatever its status: the list that answers
//! `GET /v1/events?connection_id=…` — and, merged over a destination's or a source's
//! connections (`keys::CONNECTION_LINK`), `destination_id=` and `source_id=` — without
//! walking the team's other events.
//!
//! A list is a series of runs, `P/{team}/{connection}/{first}`, each holding event ids in id
//! order. Runs never overlap: every id of a run sorts at or after its key's id and before the
//! next run's. The writer adds one run per connection per group rather than one key per
//! event, so a busy connection pays one write per group: two keys per event cost W1 14 %
//! (BENCHMARKS.md). Ids are minted before their commit, on several ingress threads, so one can
//! reach the writer after a later one was listed; it is merged into the runs it falls among.

use std::collections::HashMap;
use std::ops::{Bound, RangeBounds};

use super::{keys, StoreError};
use crate::domain::{ConnectionId, EventId, TeamId};

type Result<T> = std::result::Result<T, StoreError>;

/// Event ids, oldest or newest first, as the bytes of their text.
pub type IdStream = Box<dyn Iterator<Item = Result<Vec<u8>>>>;

/// Ids per run at most: a run stays a small value (15 KiB), never one of sled's blobs.
pub const MAX_RUN: usize = 512;

/// The length of an event id's text (`evt_` and a ULID): runs are ids end to end.
const ID_LEN: usize = EventId::PREFIX.len() + 26;

/// Lists whose last id the writer remembers; past this many it forgets them all and reads
/// the next group's tails from sled.
const MAX_TAILS: usize = 16_384;

fn encode(ids: &[Vec<u8>]) -> Vec<u8> {
    ids.concat()
}

fn decode(value: &[u8]) -> Result<std::slice::Chunks<'_, u8>> {
    if value.len() % ID_LEN != 0 {
        return Err(StoreError::Corrupt(format!(
            "an event list run of {} bytes is not a whole number of ids",
            value.len()
        )));
    }
    Ok(value.chunks(ID_LEN))
}

/// A key and its new value (`None`: removed).
pub type KeyWrite = (Vec<u8>, Option<Vec<u8>>);

/// What listing a group's new events writes, and the lists' tails once it is applied.
#[derive(Default)]
pub struct Listing {
    pub writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    tails: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A key's value as the group has it so far (`None`: absent or removed).
pub trait Current {
    fn current(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// New events of a group (or of one message, until it is applied whole), by list.
#[derive(Default)]
pub struct NewListed {
    by_list: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl NewListed {
    pub fn add(&mut self, team: &TeamId, connection: &ConnectionId, event: &[u8]) {
        self.by_list
            .entry(keys::event_list_prefix(team, connection))
            .or_default()
            .push(event.to_vec());
    }

    pub fn absorb(&mut self, message: &mut NewListed) {
        for (list, ids) in message.by_list.drain() {
            self.by_list.entry(list).or_default().extend(ids);
        }
    }

    pub fn clear(&mut self) {
        self.by_list.clear();
    }

    /// The writes that list the group's new events (its tails to `remember` once the group
    /// is applied).
    pub fn into_listing(
        self,
        tree: &sled::Tree,
        group: &impl Current,
        tails: &Tails,
    ) -> Result<Listing> {
        let mut writes = HashMap::new();
        let mut new_tails = Vec::with_capacity(self.by_list.len());
        for (list, mut ids) in self.by_list {
            ids.sort_unstable();
            ids.dedup();
            let tail = match tails.last.get(&list) {
                Some(tail) => Some(tail.clone()),
                None => last_id(tree, group, &list)?,
            };
            if tail.as_ref().is_some_and(|t| *t >= ids[0]) {
                // Late: take the runs from the one this id falls in to the end, and write
                // them again with it.
                let from = run_at_or_before(tree, &list, &ids[0])?.unwrap_or_else(|| list.clone());
                for kv in tree.range(from..keys::prefix_end(&list)) {
                    let (key, _) = kv?;
                    if let Some(value) = group.current(&key)? {
                        ids.extend(decode(&value)?.map(<[u8]>::to_vec));
                    }
                    writes.insert(key.to_vec(), None);
                }
                ids.sort_unstable();
                ids.dedup();
            }
            for run in ids.chunks(MAX_RUN) {
                writes.insert([&list[..], &run[0]].concat(), Some(encode(run)));
            }
            new_tails.push((list, ids.pop().expect("a list has new ids")));
        }
        Ok(Listing {
            writes,
            tails: new_tails,
        })
    }
}

/// The last id of each list the writer has written to lately.
#[derive(Default)]
pub struct Tails {
    last: HashMap<Vec<u8>, Vec<u8>>,
}

impl Tails {
    /// Records the tails of a group that is now applied.
    pub fn remember(&mut self, listing: Listing) {
        let tails = listing.tails;
        if self.last.len() + tails.len() > MAX_TAILS {
            self.last.clear();
        }
        self.last.extend(tails);
    }
}

/// The key of the run `id` falls in: the last run whose key is at or before it.
fn run_at_or_before(tree: &sled::Tree, list: &[u8], id: &[u8]) -> Result<Option<Vec<u8>>> {
    let at = [list, id].concat();
    Ok(tree
        .range(list.to_vec()..=at)
        .next_back()
        .transpose()?
        .map(|(k, _)| k.to_vec()))
}

/// The list's last id as the group has it (`None` for an empty list).
fn last_id(tree: &sled::Tree, group: &impl Current, list: &[u8]) -> Result<Option<Vec<u8>>> {
    for kv in tree.range(list.to_vec()..keys::prefix_end(list)).rev() {
        let (key, _) = kv?;
        if let Some(value) = group.current(&key)? {
            if let Some(last) = decode(&value)?.next_back() {
                return Ok(Some(last.to_vec()));
            }
        }
    }
    Ok(None)
}

/// The write that takes `event` out of its connection's list (a run without it, or the
/// run's removal when it was the last), if it is listed.
pub fn unlist(
    tree: &sled::Tree,
    group: &impl Current,
    team: &TeamId,
    connection: &ConnectionId,
    event: &EventId,
) -> Result<Option<KeyWrite>> {
    let list = keys::event_list_prefix(team, connection);
    let id = event.as_str().as_bytes();
    let Some(run) = run_at_or_before(tree, &list, id)? else {
        return Ok(None);
    };
    let Some(value) = group.current(&run)? else {
        return Ok(None);
    };
    let ids: Vec<&[u8]> = decode(&value)?.collect();
    let Ok(at) = ids.binary_search(&id) else {
        return Ok(None);
    };
    let mut rest = value;
    rest.drain(at * ID_LEN..(at + 1) * ID_LEN);
    Ok(Some((run, (!rest.is_empty()).then_some(rest))))
}

/// The ids of the list under `list` between `low` and `high`, in `dir` order.
pub fn ids(
    tree: &sled::Tree,
    list: &[u8],
    low: Bound<Vec<u8>>,
    high: Bound<Vec<u8>>,
    ascending: bool,
) -> IdStream {
    let from = match &low {
        Bound::Included(id) | Bound::Excluded(id) => match run_at_or_before(tree, list, id) {
            Ok(run) => run.unwrap_or_else(|| list.to_vec()),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        },
        Bound::Unbounded => list.to_vec(),
    };
    // A run whose key is past `high` holds only ids past it.
    let to = match &high {
        Bound::Included(id) | Bound::Excluded(id) => Bound::Included([list, id].concat()),
        Bound::Unbounded => Bound::Excluded(keys::prefix_end(list)),
    };
    let runs = tree.range::<Vec<u8>, _>((Bound::Included(from), to));
    let runs: Box<dyn Iterator<Item = _>> = if ascending {
        Box::new(runs)
    } else {
        Box::new(runs.rev())
    };
    let within = (low, high);
    Box::new(runs.flat_map(move |kv| {
        let run: Result<Vec<Vec<u8>>> = kv.map_err(StoreError::from).and_then(|(_, value)| {
            let mut ids: Vec<Vec<u8>> = decode(&value)?
                .map(<[u8]>::to_vec)
                .filter(|id| within.contains(id))
                .collect();
            if !ascending {
                ids.reverse();
            }
            Ok(ids)
        });
        match run {
            Ok(ids) => ids.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }
    }))
}

/// Builds every connection's list from the stored events (the migration to layout 6), and
/// links each connection that has events to its destination and its source, deleted ones
/// too: an event names all three. The events of a team come in id order, so each list's ids
/// come in order and make runs as they come. Hands every key and value to `write`.
pub fn build_all(
    tree: &sled::Tree,
    mut write: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<usize> {
    /// Ids held at once before every list's partial run is written out.
    const HELD: usize = 100_000;
    let mut pending: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut linked = std::collections::HashSet::new();
    let (mut held, mut listed) = (0, 0);
    // A run of `ids`, which it empties.
    let run = |list: &[u8], ids: &mut Vec<Vec<u8>>| {
        let run = ([list, &ids[0]].concat(), encode(ids));
        ids.clear();
        run
    };
    for kv in tree.scan_prefix(keys::EVENT) {
        let (_, value) = kv?;
        let e = super::codec::decode::<super::event_record::EventRecord>(&value)?.event;
        let list = keys::event_list_prefix(&e.team_id, &e.connection_id);
        if linked.insert(list.clone()) {
            for link in keys::links(
                &e.team_id,
                &e.connection_id,
                &e.destination_id,
                &e.source_id,
            ) {
                write(link, Vec::new())?;
            }
        }
        let ids = pending.entry(list.clone()).or_default();
        ids.push(e.id.as_str().as_bytes().to_vec());
        (held, listed) = (held + 1, listed + 1);
        if ids.len() >= MAX_RUN {
            let (key, value) = run(&list, ids);
            write(key, value)?;
        }
        if held >= HELD {
            for (list, mut ids) in pending.drain().filter(|(_, ids)| !ids.is_empty()) {
                let (key, value) = run(&list, &mut ids);
                write(key, value)?;
            }
            held = 0;
        }
    }
    for (list, mut ids) in pending.into_iter().filter(|(_, ids)| !ids.is_empty()) {
        let (key, value) = run(&list, &mut ids);
        write(key, value)?;
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree<'a>(&'a sled::Tree);

    impl Current for Tree<'_> {
        fn current(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(key)?.map(|v| v.to_vec()))
        }
    }

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("t").unwrap()
    }

    /// Lists one group's ids (in the order given) and applies it.
    fn commit(
        tree: &sled::Tree,
        tails: &mut Tails,
        list: (&TeamId, &ConnectionId),
        ids: &[&EventId],
    ) {
        let mut group = NewListed::default();
        for id in ids {
            group.add(list.0, list.1, id.as_str().as_bytes());
        }
        let mut listing = group.into_listing(tree, &Tree(tree), tails).unwrap();
        for (k, v) in std::mem::take(&mut listing.writes) {
            match v {
                Some(v) => tree.insert(k, v).unwrap(),
                None => tree.remove(k).unwrap(),
            };
        }
        tails.remember(listing);
    }

    fn all(tree: &sled::Tree, team: &TeamId, c: &ConnectionId, ascending: bool) -> Vec<String> {
        let list = keys::event_list_prefix(team, c);
        ids(tree, &list, Bound::Unbounded, Bound::Unbounded, ascending)
            .map(|id| String::from_utf8(id.unwrap()).unwrap())
            .collect()
    }

    fn runs_do_not_overlap(tree: &sled::Tree, list: &[u8]) {
        let mut last: Option<Vec<u8>> = None;
        for kv in tree.scan_prefix(list) {
            let (key, value) = kv.unwrap();
            let ids: Vec<&[u8]> = decode(&value).unwrap().collect();
            assert!(!ids.is_empty() && ids.len() <= MAX_RUN);
            assert_eq!(&key[list.len()..], ids[0], "a run is keyed by its first id");
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            assert!(last.as_deref().is_none_or(|l| l < ids[0]));
            last = Some(ids.last().unwrap().to_vec());
        }
    }

    #[test]
    fn ids_that_arrive_late_are_merged_into_the_runs_they_fall_among() {
        let tree = tree();
        let (team, c, other) = (TeamId::new(), ConnectionId::new(), ConnectionId::new());
        let ids: Vec<EventId> = (0..1200).map(|_| EventId::new()).collect();
        let list = keys::event_list_prefix(&team, &c);
        // Groups of 100 ids, each handing its oldest over to the group after it (older than
        // every id listed before it), and one id held back to the end (inside a long run);
        // a fresh writer (no tails) for every third group, as after a restart.
        let mut tails = Tails::default();
        let held_back = &ids[650];
        for (g, group) in ids.chunks(100).enumerate() {
            let mut members: Vec<&EventId> =
                group[1..].iter().filter(|i| *i != held_back).collect();
            if g > 0 {
                members.push(&ids[g * 100 - 100]);
            }
            members.reverse();
            if g % 3 == 0 {
                tails = Tails::default();
            }
            commit(&tree, &mut tails, (&team, &c), &members);
            commit(&tree, &mut tails, (&team, &other), &[&EventId::new()]);
            runs_do_not_overlap(&tree, &list);
        }
        commit(&tree, &mut tails, (&team, &c), &[&ids[1100], held_back]);
        let expected: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(all(&tree, &team, &c, true), expected);
        let mut newest_first = expected.clone();
        newest_first.reverse();
        assert_eq!(all(&tree, &team, &c, false), newest_first);
        runs_do_not_overlap(&tree, &list);
    }

    /// A list of `n` new ids, written as one group.
    struct OneGroup {
        tree: sled::Tree,
        team: TeamId,
        c: ConnectionId,
        ids: Vec<EventId>,
        tails: Tails,
        list: Vec<u8>,
    }

    fn one_group(n: usize) -> OneGroup {
        let tree = tree();
        let (team, c) = (TeamId::new(), ConnectionId::new());
        let ids: Vec<EventId> = (0..n).map(|_| EventId::new()).collect();
        let mut tails = Tails::default();
        commit(
            &tree,
            &mut tails,
            (&team, &c),
            &ids.iter().collect::<Vec<_>>(),
        );
        let list = keys::event_list_prefix(&team, &c);
        OneGroup {
            tree,
            team,
            c,
            ids,
            tails,
            list,
        }
    }

    #[test]
    fn a_big_group_is_cut_into_runs_and_bounds_pick_the_ids_between() {
        let OneGroup {
            tree, ids, list, ..
        } = one_group(1500);
        assert_eq!(tree.scan_prefix(&list).count(), 3);
        runs_do_not_overlap(&tree, &list);
        let id = |i: usize| ids[i].as_str().as_bytes().to_vec();
        let between =
            |low, high, ascending| -> Vec<Vec<u8>> { ids_of(&tree, &list, low, high, ascending) };
        // Across run boundaries (512, 1024), both ways, ends included or not.
        let expected: Vec<Vec<u8>> = (500..=1100).map(id).collect();
        assert_eq!(
            between(Bound::Included(id(500)), Bound::Included(id(1100)), true),
            expected
        );
        let mut reversed = expected[1..expected.len() - 1].to_vec();
        reversed.reverse();
        assert_eq!(
            between(Bound::Excluded(id(500)), Bound::Excluded(id(1100)), false),
            reversed
        );
        assert_eq!(
            between(Bound::Excluded(id(1499)), Bound::Unbounded, true),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            between(Bound::Unbounded, Bound::Excluded(id(0)), false),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            between(Bound::Unbounded, Bound::Included(id(0)), false),
            vec![id(0)]
        );
    }

    fn ids_of(
        tree: &sled::Tree,
        list: &[u8],
        low: Bound<Vec<u8>>,
        high: Bound<Vec<u8>>,
        ascending: bool,
    ) -> Vec<Vec<u8>> {
        ids(tree, list, low, high, ascending)
            .collect::<Result<_>>()
            .unwrap()
    }

    #[test]
    fn an_unlisted_event_leaves_its_run_and_the_last_one_takes_the_run_with_it() {
        let OneGroup {
            tree,
            team,
            c,
            ids,
            mut tails,
            list,
        } = one_group(3);
        for (i, id) in ids.iter().enumerate() {
            let (run, rest) = unlist(&tree, &Tree(&tree), &team, &c, id)
                .unwrap()
                .expect("listed");
            assert_eq!(run, [&list[..], ids[0].as_str().as_bytes()].concat());
            match rest {
                Some(rest) => tree.insert(run, rest).unwrap(),
                None => {
                    assert_eq!(i, 2, "the run goes with its last id");
                    tree.remove(run).unwrap()
                }
            };
            assert!(unlist(&tree, &Tree(&tree), &team, &c, id)
                .unwrap()
                .is_none());
        }
        assert_eq!(tree.scan_prefix(&list).count(), 0);
        // A list that went empty takes new ids as a fresh run, though the tail is remembered.
        let late = EventId::new();
        commit(&tree, &mut tails, (&team, &c), &[&late]);
        assert_eq!(all(&tree, &team, &c, true), [late.to_string()]);
    }
}
