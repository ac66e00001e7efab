//! Everything sled. Nothing outside this module imports sled.
//!
//! **Layout.** One sled tree, `fasthook`, holds every record under a one-letter kind prefix
//! (see `keys`): `T/` teams, `K/` API keys by secret hash, `I/` key ids, `S/` `D/` `C/`
//! sources, destinations, connections (global, carrying their team), `R/{team}/` requests
//! (their bodies are in the body log under `bodies/`, see `body_log`), `E/{team}/` events
//! with their first attempts (`event_record`), `A/{event}/{n}` attempts beyond those,
//! `Q/{seq}` queue records, each holding the entries one group added, by destination
//! (`queue_records`), `H/{connection}/{seq}` held events.
//!
//! **Fewer keys.** sled 0.34 copies a whole leaf (up to 16 entries) on every insert, so the
//! number of keys written per event, and the size of what is in the leaves, matter: a
//! delivered event costs three small inserts (request, event, the event again with its
//! attempt) and a share of its group's queue record, and its body is appended once outside
//! the tree.
//!
//! **Why one tree.** sled's `Batch` is atomic within one tree only. With one tree, a whole
//! group commit — every request, event and queue entry that arrived together — is a single
//! `apply_batch`, atomic and cheaper than a multi-tree transaction at group-commit sizes.
//!
//! **Encoding.** Values are a version byte then bincode (`codec`); keys are text ids and
//! big-endian integers so iteration order is creation order.
//!
//! **Group commit.** Only the `Writer` thread writes. A commit that must be durable (ingress,
//! CRUD) waits for the flush of its group; state changes after it (attempts, status) do not
//! wait and ride the next flush: losing the last few in a crash only repeats a delivery.
//! Reads go straight to sled; they never block on the writer.

mod body_log;
mod codec;
mod event_record;
pub mod keys;
mod queue_records;
mod request_record;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::breaker::BreakerSnapshot;
use crate::domain::destination_core::QueueEntry;
use crate::domain::*;
use body_log::BodyLog;
use event_record::{EventRecord, NewEventRecord};
use request_record::RequestRecord;
pub use writer::{Durability, Op, Writer, WriterStats};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(String),
    #[error("storage IO error: {0}")]
    Io(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    bodies: Arc<BodyLog>,
    writer: Writer,
    writer_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One page of a list.
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor for the next page, when there may be one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Newest first (the default of every list).
    Desc,
    Asc,
}

/// How far one list call may scan looking for matches before it returns a shorter page with
/// a cursor, so a rare filter over a huge table cannot pin a worker.
const MAX_SCAN_PER_PAGE: usize = 50_000;

impl Store {
    pub fn open(dir: &Path, durability: Durability, linger: Duration) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // The writer flushes every group that anyone waits for, and idle changes within
            // 200 ms; sled's own periodic flusher would only add wake-ups.
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        let tree = db.open_tree("fasthook")?;
        // sled 0.34 keeps its log in `<dir>/db`; fdatasync of that file closes the gap that
        // sled's own `sync_file_range` leaves (no device cache flush).
        let data_file = std::fs::File::open(dir.join("db")).ok();
        let (bodies, appender) = BodyLog::open(&dir.join("bodies"), body_log::SEGMENT_BYTES)?;
        let (writer, handle) = Writer::spawn(
            tree.clone(),
            db,
            appender,
            data_file,
            Some(dir.join("blobs")),
            durability,
            linger,
        );
        Ok(Store {
            inner: Arc::new(Inner {
                tree,
                bodies,
                writer,
                writer_thread: std::sync::Mutex::new(Some(handle)),
            }),
        })
    }

    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Applies `ops` atomically and waits until they are durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        self.inner
            .writer
            .commit(ops)
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Applies `ops` with the next group commit without waiting.
    pub fn submit(&self, ops: Vec<Op>) {
        self.inner.writer.submit(ops)
    }

    /// Stops the writer after it has written and flushed everything already handed to it.
    /// Waits on a helper thread so no async runtime thread blocks.
    pub async fn close(self) {
        let handle = self
            .inner
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut h| h.take());
        self.inner.writer.stop();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.inner.tree.get(key)? {
            Some(bytes) => codec::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn scan_all<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.inner
            .tree
            .scan_prefix(prefix)
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// A page of records under `prefix`, keyed `prefix + id`, that satisfy `keep`.
    fn page<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        cursor: Option<&str>,
        dir: Direction,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        use std::ops::Bound;
        let mut end = prefix.to_vec();
        end.push(0xff);
        let cursor_key = cursor.map(|c| [prefix, c.as_bytes()].concat());
        let range = match (&cursor_key, dir) {
            (Some(c), Direction::Desc) => {
                (Bound::Included(prefix.to_vec()), Bound::Excluded(c.clone()))
            }
            (Some(c), Direction::Asc) => (Bound::Excluded(c.clone()), Bound::Excluded(end)),
            (None, _) => (Bound::Included(prefix.to_vec()), Bound::Excluded(end)),
        };
        let iter = self.inner.tree.range::<Vec<u8>, _>(range);
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match dir {
            Direction::Desc => Box::new(iter.rev()),
            Direction::Asc => Box::new(iter),
        };
        let mut items = Vec::new();
        let mut last_key = None;
        for (scanned, kv) in iter.enumerate() {
            let (k, v) = kv?;
            if scanned >= MAX_SCAN_PER_PAGE {
                return Ok(Page {
                    items,
                    next: last_key,
                });
            }
            last_key = Some(String::from_utf8_lossy(keys::last_segment(&k)).into_owned());
            let item: T = codec::decode(&v)?;
            if keep(&item) {
                items.push(item);
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        next: last_key,
                    });
                }
            }
        }
        Ok(Page { items, next: None })
    }

    // ---- teams and keys -------------------------------------------------------------

    pub fn team(&self, id: &TeamId) -> Result<Option<Team>> {
        self.get(&keys::team(id))
    }

    pub fn api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>> {
        self.get(&keys::api_key(hash))
    }

    pub fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
        match self.get::<[u8; 32]>(&keys::api_key_id(id))? {
            Some(hash) => self.api_key_by_hash(&hash),
            None => Ok(None),
        }
    }

    pub fn any_api_key(&self) -> Result<bool> {
        Ok(self
            .inner
            .tree
            .scan_prefix(keys::API_KEY)
            .next()
            .transpose()?
            .is_some())
    }

    // ---- sources, destinations, connections --------------------------------------------

    pub fn source(&self, id: &SourceId) -> Result<Option<Source>> {
        self.get(&keys::source(id))
    }

    pub fn destination(&self, id: &DestinationId) -> Result<Option<Destination>> {
        self.get(&keys::destination(id))
    }

    /// The breaker state persisted with its last change (closed when it never changed).
    pub fn breaker(&self, id: &DestinationId) -> Result<BreakerSnapshot> {
        Ok(self.get(&keys::breaker(id))?.unwrap_or_default())
    }

    pub fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        self.get(&keys::connection(id))
    }

    pub fn all_sources(&self) -> Result<Vec<Source>> {
        self.scan_all(keys::SOURCE)
    }

    pub fn all_destinations(&self) -> Result<Vec<Destination>> {
        self.scan_all(keys::DESTINATION)
    }

    pub fn all_connections(&self) -> Result<Vec<Connection>> {
        self.scan_all(keys::CONNECTION)
    }

    pub fn list_sources(
        &self,
        q: &ListQuery,
        keep: impl Fn(&Source) -> bool,
    ) -> Result<Page<Source>> {
        self.page(
            keys::SOURCE,
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |s: &Source| s.team_id == q.team && keep(s),
        )
    }

    pub fn list_destinations(
        &self,
        q: &ListQuery,
        keep: impl Fn(&Destination) -> bool,
    ) -> Result<Page<Destination>> {
        self.page(
            keys::DESTINATION,
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |d: &Destination| d.team_id == q.team && keep(d),
        )
    }

    pub fn list_connections(
        &self,
        q: &ListQuery,
        keep: impl Fn(&Connection) -> bool,
    ) -> Result<Page<Connection>> {
        self.page(
            keys::CONNECTION,
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |c: &Connection| c.team_id == q.team && keep(c),
        )
    }

    // ---- requests, events, attempts ---------------------------------------------------

    pub fn request(&self, team: &TeamId, id: &RequestId) -> Result<Option<Request>> {
        self.get(&keys::request(team, id))?
            .map(|r| self.with_body(r))
            .transpose()
    }

    /// A page of requests; `keep` sees each request without its body.
    pub fn list_requests(
        &self,
        q: &ListQuery,
        keep: impl Fn(&Request) -> bool,
    ) -> Result<Page<Request>> {
        let page = self.page(
            &keys::team_prefix(keys::REQUEST, &q.team),
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |r: &RequestRecord| keep(&r.request),
        )?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|r| self.with_body(r))
                .collect::<Result<_>>()?,
            next: page.next,
        })
    }

    fn with_body(&self, record: RequestRecord) -> Result<Request> {
        let mut request = record.request;
        request.body = self.inner.bodies.read(&record.body)?.into();
        Ok(request)
    }

    pub fn event(&self, team: &TeamId, id: &EventId) -> Result<Option<Event>> {
        Ok(self.event_record(team, id)?.map(|r| r.event))
    }

    fn event_record(&self, team: &TeamId, id: &EventId) -> Result<Option<EventRecord>> {
        self.get(&keys::event(team, id))
    }

    pub fn list_events(&self, q: &ListQuery, keep: impl Fn(&Event) -> bool) -> Result<Page<Event>> {
        let page = self.page(
            &keys::team_prefix(keys::EVENT, &q.team),
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |r: &EventRecord| keep(&r.event),
        )?;
        Ok(Page {
            items: page.items.into_iter().map(|r| r.event).collect(),
            next: page.next,
        })
    }

    /// The team's event's attempts in order (empty for an unknown event): the first ones
    /// are inside the event record, later ones under their own keys.
    pub fn attempts(&self, team: &TeamId, event: &EventId) -> Result<Vec<Attempt>> {
        let Some(record) = self.event_record(team, event)? else {
            return Ok(Vec::new());
        };
        let mut attempts: Vec<Attempt> = record
            .attempts
            .iter()
            .map(|a| a.attempt(&record.event))
            .collect();
        if attempts.len() == event_record::INLINE_ATTEMPTS {
            attempts.extend(self.scan_all::<Attempt>(&keys::attempt_prefix(event))?);
        }
        Ok(attempts)
    }

    // ---- recovery -------------------------------------------------------------------

    /// Every destination's queue, in order, and the highest sequence number in use. Also
    /// hands the writer the index of where each entry is stored, so call it once, at boot,
    /// before any queue change.
    pub fn load_queues(&self) -> Result<(HashMap<DestinationId, Vec<QueueEntry>>, u64)> {
        let loaded = queue_records::load_all(&self.inner.tree)?;
        let mut max_seq = loaded.max_seq;
        // Held entries keep their sequence numbers for when they are released.
        for kv in self.inner.tree.scan_prefix(keys::HOLD) {
            let (_, v) = kv?;
            let entry: QueueEntry = codec::decode(&v)?;
            max_seq = max_seq.max(entry.seq);
        }
        self.inner.writer.set_queue_index(loaded.index);
        Ok((loaded.queues, max_seq))
    }

    /// A connection's held entries, in the order they were accepted. Blocking: call it off
    /// the actor and HTTP threads.
    pub fn held_entries(&self, connection: &ConnectionId) -> Result<Vec<QueueEntry>> {
        self.scan_all(&keys::hold_prefix(connection))
    }

    /// Held entries whose connection is not in `known`, with the connection they name: work
    /// no actor owns (left by a delete of an earlier version, or a crash in the middle of one).
    pub fn orphaned_held_entries(
        &self,
        known: &std::collections::HashSet<ConnectionId>,
    ) -> Result<Vec<(ConnectionId, QueueEntry)>> {
        let mut orphans = Vec::new();
        for kv in self.inner.tree.scan_prefix(keys::HOLD) {
            let (_, v) = kv?;
            let entry: QueueEntry = codec::decode(&v)?;
            if !known.contains(&entry.connection_id) {
                orphans.push((entry.connection_id.clone(), entry));
            }
        }
        Ok(orphans)
    }

    /// The team an event belongs to, found by probing each team's key: only for the rare
    /// entry whose destination or connection (which carries the team) is gone.
    pub fn team_of_event(&self, event: &EventId) -> Result<Option<TeamId>> {
        for team in self.scan_all::<Team>(keys::TEAM)? {
            if self.inner.tree.contains_key(keys::event(&team.id, event))? {
                return Ok(Some(team.id));
            }
        }
        Ok(None)
    }

    #[cfg(test)]
    fn count_keys(&self, prefix: &[u8]) -> usize {
        self.inner.tree.scan_prefix(prefix).count()
    }
}

/// The scope and paging of one list call.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub team: TeamId,
    pub limit: usize,
    pub cursor: Option<String>,
    pub dir: Direction,
}

/// Builders for writer operations, so callers never see the key or value encoding.
pub mod ops {
    use super::*;

    pub fn put<T: Serialize>(key: Vec<u8>, value: &T) -> Op {
        Op::Put(key, codec::encode(value))
    }

    pub fn put_team(team: &Team) -> Op {
        put(keys::team(&team.id), team)
    }

    pub fn put_api_key(key: &ApiKey) -> [Op; 2] {
        [
            put(keys::api_key(&key.hash), key),
            put(keys::api_key_id(&key.id), &key.hash),
        ]
    }

    pub fn remove_api_key(key: &ApiKey) -> [Op; 2] {
        [
            Op::Remove(keys::api_key(&key.hash)),
            Op::Remove(keys::api_key_id(&key.id)),
        ]
    }

    pub fn put_source(s: &Source) -> Op {
        put(keys::source(&s.id), s)
    }

    pub fn remove_source(id: &SourceId) -> Op {
        Op::Remove(keys::source(id))
    }

    pub fn put_destination(d: &Destination) -> Op {
        put(keys::destination(&d.id), d)
    }

    /// The destination and its breaker's state.
    pub fn remove_destination(id: &DestinationId) -> [Op; 2] {
        [
            Op::Remove(keys::destination(id)),
            Op::Remove(keys::breaker(id)),
        ]
    }

    pub fn put_breaker(id: &DestinationId, snapshot: &BreakerSnapshot) -> Op {
        put(keys::breaker(id), snapshot)
    }

    pub fn put_connection(c: &Connection) -> Op {
        put(keys::connection(&c.id), c)
    }

    pub fn remove_connection(id: &ConnectionId) -> Op {
        Op::Remove(keys::connection(id))
    }

    /// The body goes to the body log, the rest to the request's record.
    pub fn put_request(r: Request) -> Op {
        Op::PutRequest(Box::new(r))
    }

    pub fn put_event(e: &Event) -> Op {
        let record = NewEventRecord {
            event: e,
            attempts: &[],
        };
        put(keys::event(&e.team_id, &e.id), &record)
    }

    pub fn patch_event(team: &TeamId, id: &EventId, patch: EventPatch) -> Op {
        Op::PatchEvent {
            key: keys::event(team, id),
            patch,
        }
    }

    pub fn enqueue(destination: &DestinationId, entry: &QueueEntry) -> Op {
        Op::Enqueue {
            destination: destination.clone(),
            entry: entry.clone(),
        }
    }

    pub fn requeue(destination: &DestinationId, entry: &QueueEntry) -> Op {
        Op::Requeue {
            destination: destination.clone(),
            entry: entry.clone(),
        }
    }

    pub fn dequeue(destination: &DestinationId, seq: u64) -> Op {
        Op::Dequeue {
            destination: destination.clone(),
            seq,
        }
    }

    pub fn put_hold(connection: &ConnectionId, entry: &QueueEntry) -> Op {
        put(keys::hold(connection, entry.seq), entry)
    }

    /// The status change of an event that will never be attempted again by anyone.
    fn cancelled(now: Timestamp) -> EventPatch {
        EventPatch {
            status: Some(EventStatus::Cancelled),
            next_attempt_at: Some(None),
            updated_at: now,
            ..Default::default()
        }
    }

    /// Takes a waiting entry off its destination's queue and marks its event `CANCELLED`.
    pub fn cancel_queued(
        team: &TeamId,
        destination: &DestinationId,
        entry: &QueueEntry,
        now: Timestamp,
    ) -> [Op; 2] {
        [
            dequeue(destination, entry.seq),
            patch_event(team, &entry.event_id, cancelled(now)),
        ]
    }

    /// Removes a held entry and marks its event `CANCELLED`.
    pub fn cancel_held(
        team: &TeamId,
        connection: &ConnectionId,
        entry: &QueueEntry,
        now: Timestamp,
    ) -> [Op; 2] {
        [
            Op::Remove(keys::hold(connection, entry.seq)),
            patch_event(team, &entry.event_id, cancelled(now)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::fixtures::event;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn committed_records_survive_reopen_and_patches_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let e = event(&team);
        rt().block_on(async {
            let store = Store::open(dir.path(), Durability::Fsync, Duration::ZERO).unwrap();
            let patch = |n| EventPatch {
                attempts: Some(n),
                updated_at: Timestamp(n as u64),
                ..Default::default()
            };
            store
                .commit(vec![
                    ops::put_event(&e),
                    ops::patch_event(&team, &e.id, patch(1)),
                    ops::patch_event(&team, &e.id, patch(2)),
                ])
                .await
                .unwrap();
            store.submit(vec![ops::patch_event(
                &team,
                &e.id,
                EventPatch {
                    status: Some(EventStatus::Successful),
                    updated_at: Timestamp(9),
                    ..Default::default()
                },
            )]);
            store.close().await;
        });
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Fsync, Duration::ZERO).unwrap()
        });
        let got = store.event(&team, &e.id).unwrap().unwrap();
        assert_eq!(got.attempts, 2);
        assert_eq!(
            got.status,
            EventStatus::Successful,
            "a submitted change is flushed at close"
        );
        assert!(
            store.event(&TeamId::new(), &e.id).unwrap().is_none(),
            "another team cannot see it"
        );
    }

    #[test]
    fn a_request_reads_back_with_its_body_from_the_body_log_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let request = |body: &'static [u8]| Request {
            id: RequestId::new(),
            team_id: team.clone(),
            source_id: SourceId::new(),
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: bytes::Bytes::from_static(body),
            rejection_cause: None,
            event_ids: Vec::new(),
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        };
        let (a, b) = (request(br#"{"n":1}"#), request(b"not json"));
        rt().block_on(async {
            let store = Store::open(dir.path(), Durability::Fsync, Duration::ZERO).unwrap();
            store
                .commit(vec![
                    ops::put_request(a.clone()),
                    ops::put_request(b.clone()),
                ])
                .await
                .unwrap();
            store.close().await;
        });
        assert!(
            std::fs::read_dir(dir.path().join("bodies"))
                .unwrap()
                .count()
                > 0,
            "bodies are kept in their own segment files"
        );
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Fsync, Duration::ZERO).unwrap()
        });
        let got = store.request(&team, &a.id).unwrap().unwrap();
        assert_eq!(got.body, a.body);
        assert_eq!(got.headers, a.headers);
        let q = ListQuery {
            team: team.clone(),
            limit: 10,
            cursor: None,
            dir: Direction::Asc,
        };
        let listed = store.list_requests(&q, |_| true).unwrap().items;
        assert_eq!(
            listed.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
            vec![a.body, b.body]
        );
    }

    #[test]
    fn pages_follow_cursors_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        let events: Vec<Event> = (0..5).map(|_| event(&team)).collect();
        rt().block_on(store.commit(events.iter().map(ops::put_event).collect()))
            .unwrap();
        let q = |cursor: Option<String>, dir| ListQuery {
            team: team.clone(),
            limit: 2,
            cursor,
            dir,
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list_events(&q(cursor, Direction::Desc), |_| true)
                .unwrap();
            seen.extend(page.items.into_iter().map(|e| e.id));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let mut want: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        want.reverse();
        assert_eq!(seen, want);
        let asc = store
            .list_events(&q(Some(events[1].id.to_string()), Direction::Asc), |_| true)
            .unwrap();
        assert_eq!(
            asc.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            vec![events[2].id.clone(), events[3].id.clone()]
        );
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let e = event(&team);
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        rt().block_on(store.commit(vec![Op::Put(keys::event(&team, &e.id), vec![1, 2, 3])]))
            .unwrap();
        assert!(matches!(
            store.event(&team, &e.id),
            Err(StoreError::Corrupt(_))
        ));
        rt().block_on(store.commit(vec![Op::Put(keys::event(&team, &e.id), vec![99])]))
            .unwrap();
        assert!(matches!(
            store.event(&team, &e.id),
            Err(StoreError::Corrupt(_))
        ));
    }

    fn entry(seq: u64) -> QueueEntry {
        crate::domain::fixtures::queue_entry(seq, Default::default())
    }

    #[test]
    fn a_group_of_queue_entries_shares_one_record_across_destinations_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (d1, d2) = (DestinationId::new(), DestinationId::new());
        rt().block_on(async {
            let store = Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap();
            // Sequence numbers are handed out before commit, so groups can land out of order.
            store
                .commit(vec![
                    ops::enqueue(&d1, &entry(5)),
                    ops::enqueue(&d1, &entry(7)),
                    ops::enqueue(&d2, &entry(6)),
                ])
                .await
                .unwrap();
            store
                .commit((1..=4).map(|s| ops::enqueue(&d1, &entry(s))).collect())
                .await
                .unwrap();
            assert_eq!(
                store.count_keys(keys::QUEUE),
                2,
                "one record per group, whatever its destinations"
            );
            let mut retried = entry(7);
            retried.attempts = 1;
            retried.next_trigger = Trigger::Automatic;
            store
                .commit(vec![
                    ops::dequeue(&d1, 5),
                    ops::requeue(&d1, &retried),
                    ops::dequeue(&d2, 6),
                    ops::dequeue(&d2, 99),
                ])
                .await
                .unwrap();
            assert_eq!(
                store.count_keys(keys::QUEUE),
                2,
                "a record keeps its other entries"
            );
            store.close().await;
        });
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        let (queues, max_seq) = store.load_queues().unwrap();
        assert_eq!(max_seq, 7);
        let d1_queue = &queues[&d1];
        assert_eq!(
            d1_queue.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 7],
            "FIFO by sequence, whatever the order of the groups"
        );
        assert_eq!(
            d1_queue[4].attempts, 1,
            "the requeued entry replaced the old one"
        );
        assert!(!queues.contains_key(&d2));
        // The index rebuilt at boot lets the writer find entries stored before the restart.
        rt().block_on(async {
            store
                .commit((1..=4).map(|s| ops::dequeue(&d1, s)).collect())
                .await
                .unwrap();
        });
        let (queues, _) = store.load_queues().unwrap();
        assert_eq!(
            queues[&d1].iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![7]
        );
        assert_eq!(
            store.count_keys(keys::QUEUE),
            1,
            "an emptied record is removed"
        );
    }

    #[test]
    fn a_record_named_by_a_delivered_entry_is_never_reopened_after_a_restart() {
        // One group enqueues 7 before 5 (sequence numbers are handed out before commit), so
        // its record is named Q/7; 7 is delivered and 5 still waits in that record.
        let dir = tempfile::tempdir().unwrap();
        let d = DestinationId::new();
        rt().block_on(async {
            let store = Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap();
            store
                .commit(vec![
                    ops::enqueue(&d, &entry(7)),
                    ops::enqueue(&d, &entry(5)),
                ])
                .await
                .unwrap();
            store.commit(vec![ops::dequeue(&d, 7)]).await.unwrap();
            store.close().await;
        });
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        let (queues, max_seq) = store.load_queues().unwrap();
        assert_eq!(queues[&d].iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
        assert!(
            max_seq >= 7,
            "sequence {max_seq} + 1 would be handed out again while Q/7 exists"
        );
        // The next group opens a record of its own and leaves the survivor alone.
        rt().block_on(store.commit(vec![ops::enqueue(&d, &entry(max_seq + 1))]))
            .unwrap();
        let (queues, _) = store.load_queues().unwrap();
        assert_eq!(
            queues[&d].iter().map(|e| e.seq).collect::<Vec<_>>(),
            [5, max_seq + 1]
        );
    }

    #[test]
    fn a_failing_message_fails_alone_and_the_rest_of_its_group_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let d = DestinationId::new();
        let corrupt = EventId::new();
        // A long linger puts the next two messages in one group.
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::from_millis(300)).unwrap()
        });
        rt().block_on(async {
            store
                .commit(vec![
                    ops::enqueue(&d, &entry(1)),
                    ops::enqueue(&d, &entry(2)),
                    Op::Put(keys::event(&team, &corrupt), vec![1, 2, 3]),
                ])
                .await
                .unwrap();
        });
        let patch = EventPatch {
            status: Some(EventStatus::Successful),
            updated_at: Timestamp(1),
            ..Default::default()
        };
        let failed = rt().block_on(async {
            store.submit(vec![ops::dequeue(&d, 1)]);
            store
                .commit(vec![
                    ops::enqueue(&d, &entry(3)),
                    ops::patch_event(&team, &corrupt, patch),
                ])
                .await
        });
        assert!(
            matches!(failed, Err(StoreError::Corrupt(_))),
            "a patch of an unreadable event is an error, not swallowed: {failed:?}"
        );
        rt().block_on(store.commit(Vec::new())).unwrap();
        let (queues, _) = store.load_queues().unwrap();
        assert_eq!(
            queues[&d].iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2],
            "the other message of the group was applied; the failed one not at all"
        );
        // The writer's index still agrees with the disk: entry 2 can be taken off.
        rt().block_on(store.commit(vec![ops::dequeue(&d, 2)]))
            .unwrap();
        assert_eq!(store.count_keys(keys::QUEUE), 0);
    }

    #[test]
    fn attempts_are_listed_in_order_inline_and_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let e = event(&team);
        let store = rt().block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        let attempt = |n: u32| Attempt {
            id: AttemptId::new(),
            team_id: team.clone(),
            event_id: e.id.clone(),
            destination_id: e.destination_id.clone(),
            attempt_number: n,
            trigger: if n == 1 {
                Trigger::Initial
            } else {
                Trigger::Automatic
            },
            status: AttemptStatus::Failed,
            response_status: Some(503),
            error_code: None,
            duration_ms: 1,
            created_at: Timestamp(n as u64),
            updated_at: Timestamp(n as u64),
        };
        let total = event_record::INLINE_ATTEMPTS as u32 + 3;
        let mut writes = vec![ops::put_event(&e)];
        for n in 1..=total {
            let patch = EventPatch {
                attempts: Some(n),
                attempt: Some(attempt(n)),
                updated_at: Timestamp(n as u64),
                ..Default::default()
            };
            writes.push(ops::patch_event(&team, &e.id, patch));
        }
        rt().block_on(store.commit(writes)).unwrap();
        let listed = store.attempts(&team, &e.id).unwrap();
        assert_eq!(
            listed.iter().map(|a| a.attempt_number).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert!(listed
            .iter()
            .all(|a| a.event_id == e.id && a.team_id == team));
        assert_eq!(listed[0].trigger, Trigger::Initial);
        assert_eq!(store.event(&team, &e.id).unwrap().unwrap().attempts, total);
        assert!(
            store.attempts(&TeamId::new(), &e.id).unwrap().is_empty(),
            "another team sees none"
        );
    }

    #[test]
    fn a_blob_sled_makes_of_values_under_its_threshold_is_synced_before_the_answer() {
        // 15 KiB values: none is large enough to be a blob, but when sled splits a leaf of
        // them, the half it writes (nine entries, 135 KiB) is.
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let store = Store::open(dir.path(), Durability::Fsync, Duration::ZERO).unwrap();
            for i in 0u32..40 {
                let key = [b"X/".as_slice(), &i.to_be_bytes()].concat();
                store
                    .commit(vec![Op::Put(key, vec![i as u8; 15 * 1024])])
                    .await
                    .unwrap();
            }
            let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
            assert!(
                blobs > 0,
                "sled wrote no blob file; the test needs larger leaves"
            );
            let synced = store
                .writer()
                .stats
                .blob_syncs
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(synced > 0, "{blobs} blob files, never synced");
            store.close().await;
        });
    }
}
