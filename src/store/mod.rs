//! Everything sled. Nothing outside this module imports sled.
//!
//! **Layout** (version 2, see `layout`). One sled tree, `fasthook`, holds every record under
//! a one-letter kind prefix (see `keys`):
//!
//! | key | value |
//! |---|---|
//! | `T/{team}` · `K/{hash}` · `I/{key id}` | teams, API keys by secret hash, key ids |
//! | `S/{id}` · `D/{id}` · `C/{id}` | sources, destinations, connections (global, each carrying its team) |
//! | `R/{team}/{request}` | a request without its body, which is in the body log under `bodies/` (`body_log`) |
//! | `E/{team}/{event}` | an event with its first attempts (`event_record`) |
//! | `A/{event}/{n}` | attempts beyond those |
//! | `Q/{destination}/{first seq}` | a run of the destination's FIFO entries, in sequence order (`queue_records`) |
//! | `W/{destination}/{due_at}/{seq}` | one scheduled entry of the destination: a delay or a retry (`queue_records`) |
//! | `H/{connection}/{seq}` | a held entry |
//! | `M/layout` · `M/seq` | the layout version; the highest sequence number ever named (`layout`) |
//!
//! Ids are their fixed-width text; `seq`, `due_at` (ms) and `n` are big-endian, so sled's order
//! is creation, sequence or due order within each prefix.
//!
//! **Why queues look like this.** A destination's actor keeps only a window of its queue in
//! memory and pages the rest in order, so what it reads must be a range of one destination's
//! keys: its next N waiting entries (`Q/{d}/`, from the record holding a position onwards)
//! and its scheduled entries by due time (`W/{d}/`). Sequence numbers are drawn in commit
//! order (`Store::commit_numbered`), so a destination's records never overlap and the
//! record holding an entry is found by one seek: no index of entries lives in memory, and
//! nothing has to be read at boot to find an entry later. Sequence numbers are never
//! reissued: `M/seq` is raised in the same batch as any key that names a higher one.
//!
//! **Fewer keys.** sled 0.34 copies a whole leaf (up to 32 entries) on every insert, so the
//! number of keys written per event, and the size of what is in the leaves, matter: a
//! delivered event costs three small inserts (request, event, the event again with its
//! attempt) and a share of its group's queue record for its destination, and its body is
//! appended once outside the tree. (A record per destination per group, rather than one per
//! group for every destination, costs a key per destination a group touches: the price of
//! reading one destination's queue as a range.)
//!
//! **Why one tree.** sled's `Batch` is atomic within one tree only. With one tree, a whole
//! group commit — every request, event and queue entry that arrived together — is a single
//! `apply_batch`, atomic and cheaper than a multi-tree transaction at group-commit sizes.
//!
//! **Encoding.** Values are a version byte then bincode (`codec`), except the two `M/`
//! numbers, which are plain big-endian; keys are text ids and big-endian integers so
//! iteration order is creation order.
//!
//! **Group commit.** Only the `Writer` thread writes. A commit that must be durable (ingress,
//! CRUD) waits for the flush of its group; state changes after it (attempts, status) do not
//! wait and ride the next flush: losing the last few in a crash only repeats a delivery.
//! Reads go straight to sled; they never block on the writer.

mod body_log;
mod codec;
pub mod disk_health;
mod durable_mark;
mod event_counts;
mod event_lists;
mod event_record;
pub mod keys;
mod layout;
mod queue_records;
pub mod readers;
mod request_record;
pub mod retention;
mod segments;
mod sled_open;
mod tally;
mod writer;

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::alerts::{Alert, AlertChannel};
use crate::domain::breaker::BreakerSnapshot;
use crate::domain::bulk_retry::{BulkRetryJob, BulkStatus};
use crate::domain::destination_core::QueueEntry;
pub use crate::domain::event_filter::EventFilter as EventScope;
use crate::domain::issues::Issue;
use crate::domain::rate_limiter::RateLimit;
use crate::domain::*;
use body_log::BodyLog;
pub use event_counts::{CountsFilter, EventPlace};
use event_lists::IdStream;
use event_record::{EventRecord, NewEventRecord};
pub use queue_records::QueueChange;
use request_record::RequestRecord;
pub use tally::{Counts, Tally};
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
    /// The writer did not catch up within the wait ingress gives it (a stalled disk).
    #[error("the store's writer has been behind for {0:?}; nothing was stored, retry later")]
    Behind(Duration),
    #[error("the data directory is damaged: {0}")]
    Damaged(String),
    /// A source's dedupe found this request's identity already claimed by `request_id`.
    #[error("a repeat of request {request_id}")]
    Duplicate {
        request_id: RequestId,
        event_ids: Vec<EventId>,
    },
    #[error("the data directory has store layout version {found}, newer than this build's ({supported}): it was written by a newer FastHook")]
    NewerLayout { found: u32, supported: u32 },
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
    /// The next sequence number to hand out. Locked while a commit draws its numbers and is
    /// sent to the writer, so the writer receives them in increasing order.
    next_seq: std::sync::Mutex<u64>,
    /// `MAX_SCAN_PER_PAGE`, smaller in tests that need a walk to run out.
    scan_budget: std::sync::atomic::AtomicUsize,
    /// Held and failed events by connection, kept by the writer.
    tally: Arc<Tally>,
    /// The data directory, where the space probe writes.
    dir: std::path::PathBuf,
}

/// Decodes the record at `key`; a record that does not decode is named in the error, so an
/// operator knows which one is damaged.
fn decode_at<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    codec::decode(bytes).map_err(|e| match e {
        StoreError::Corrupt(why) => {
            StoreError::Corrupt(format!("{} ({why})", String::from_utf8_lossy(key)))
        }
        other => other,
    })
}

/// sled's page cache unless the configuration says otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

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

/// Keys and values read from sled in one direction or the other.
type KeyValues = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;

impl Store {
    /// Opens with sled's page cache at its default size (`DEFAULT_CACHE_BYTES`).
    pub fn open(dir: &Path, durability: Durability, linger: Duration) -> Result<Store> {
        Store::open_with_cache(
            dir,
            durability,
            linger,
            DEFAULT_CACHE_BYTES,
            body_log::SEGMENT_BYTES,
        )
    }

    /// Opens with a page cache of `cache_bytes`: most of what a gateway's memory grows by
    /// as it writes (BENCHMARKS.md, W7 and W10).
    /// Body segments are started anew once `segment_bytes` long.
    pub fn open_with_cache(
        dir: &Path,
        durability: Durability,
        linger: Duration,
        cache_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        let (db, tree) = sled_open::open(dir, cache_bytes, "fasthook")?;
        let high_water = layout::open(&tree)?;
        let (mark, marked) = durable_mark::DurableMark::open(dir)?;
        durable_mark::check(dir, marked, high_water)?;
        let tally = Arc::new(Tally::count(&tree)?);
        // sled 0.34 keeps its log in `<dir>/db`; fdatasync of that file closes the gap that
        // sled's own `sync_file_range` leaves (no device cache flush).
        let data_file = std::fs::File::open(dir.join("db")).ok();
        let (bodies, appender) = BodyLog::open(&dir.join("bodies"), segment_bytes)?;
        let segments = segments::SegmentCounts::load(&tree)?;
        // A crash between the batch that emptied a segment and its file's removal leaves the
        // file: any finished segment without a count is one.
        let on_disk = bodies.segments()?;
        for &segment in on_disk.iter().rev().skip(1) {
            if !segments.contains(segment) {
                bodies.remove_segment(segment)?;
                tracing::info!(segment, "body segment removed: nothing in it is kept");
            }
        }
        let (writer, handle) = Writer::spawn(
            tree.clone(),
            db,
            appender,
            data_file,
            Some(dir.join("blobs")),
            durability,
            linger,
            high_water,
            tally.clone(),
            bodies.clone(),
            segments,
            mark,
        );
        Ok(Store {
            inner: Arc::new(Inner {
                tree,
                bodies,
                writer,
                writer_thread: std::sync::Mutex::new(Some(handle)),
                next_seq: std::sync::Mutex::new(high_water + 1),
                scan_budget: MAX_SCAN_PER_PAGE.into(),
                tally,
                dir: dir.to_path_buf(),
            }),
        })
    }

    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Whether the store can take writes, as its last group found out.
    pub fn disk_health(&self) -> &disk_health::DiskHealth {
        &self.inner.writer.stats.disk
    }

    /// Whether the data directory has room again. Blocking: it writes and syncs a probe file.
    pub fn space_returned(&self) -> bool {
        disk_health::space_returned(&self.inner.dir)
    }

    /// The team's events created from minute `from` to `to` (exclusive, milliseconds) that
    /// `filter` admits, counted by status with their attempts: one entry per connection and
    /// minute. Blocking.
    pub fn event_counts(
        &self,
        team: &TeamId,
        from: u64,
        to: u64,
        filter: &CountsFilter,
    ) -> Result<Vec<(u64, crate::domain::event_metrics::EventCounts)>> {
        event_counts::read(&self.inner.tree, team, from, to, filter)
    }

    pub fn issue(&self, team: &TeamId, id: &IssueId) -> Result<Option<Issue>> {
        self.get(&keys::issue(team, id))
    }

    /// The destination's issue that is still active (opened or acknowledged), if any.
    pub fn active_issue(
        &self,
        team: &TeamId,
        destination: &DestinationId,
    ) -> Result<Option<Issue>> {
        let Some(id) = self.inner.tree.get(keys::active_issue(destination))? else {
            return Ok(None);
        };
        let id = IssueId::parse_loose(&String::from_utf8_lossy(&id))
            .map_err(|e| StoreError::Corrupt(format!("active issue id: {e}")))?;
        Ok(self.issue(team, &id)?.filter(|i| i.status.is_active()))
    }

    pub fn list_issues(&self, q: &ListQuery, keep: impl Fn(&Issue) -> bool) -> Result<Page<Issue>> {
        self.page(
            &keys::team_prefix(keys::ISSUE, &q.team),
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            keep,
        )
    }

    pub fn alert_channel(
        &self,
        team: &TeamId,
        id: &AlertChannelId,
    ) -> Result<Option<AlertChannel>> {
        self.get(&keys::alert_channel(team, id))
    }

    /// Every alert channel of the team (a team has a handful).
    pub fn team_alert_channels(&self, team: &TeamId) -> Result<Vec<AlertChannel>> {
        self.scan_all(&keys::team_prefix(keys::ALERT_CHANNEL, team))
    }

    pub fn list_alert_channels(&self, q: &ListQuery) -> Result<Page<AlertChannel>> {
        self.page(
            &keys::team_prefix(keys::ALERT_CHANNEL, &q.team),
            q.cursor.as_deref(),
            q.dir,
            q.limit,
            |_: &AlertChannel| true,
        )
    }

    /// How many destinations have an active issue. Blocking.
    pub fn active_issue_count(&self) -> Result<usize> {
        let mut n = 0;
        for key in self.inner.tree.scan_prefix(keys::ACTIVE_ISSUE).keys() {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// Every alert not yet taken by its receiver.
    pub fn pending_alerts(&self) -> Result<Vec<Alert>> {
        self.scan_all(keys::ALERT)
    }

    /// Held and failed events by connection, as the store holds them now.
    pub fn tally(&self) -> &Tally {
        &self.inner.tally
    }

    /// Applies `ops` atomically and waits until they are durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        self.inner
            .writer
            .commit(ops)
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Applies the ops that `build` returns atomically, like `commit`, and gives `build` the
    /// sequence numbers they need: each call of its argument draws the next one. Numbers
    /// are drawn and the ops handed to the writer under one lock, so the writer receives
    /// sequence numbers in the order they were drawn, and a destination's queue records
    /// never overlap (`queue_records`). Keep `build` short: every such commit waits for it.
    ///
    /// The ops are on their way when this returns; the future resolves once they are
    /// durable (dropping it does not withdraw them).
    pub fn commit_numbered<F>(&self, build: F) -> Committed
    where
        F: FnOnce(&mut dyn FnMut() -> u64) -> Vec<Op>,
    {
        let mut next_seq = self
            .inner
            .next_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut draw = || {
            let seq = *next_seq;
            *next_seq += 1;
            seq
        };
        let ops = build(&mut draw);
        Committed(self.inner.writer.commit(ops))
    }

    /// Resolves once the writer has room for more (see `writer::MAX_QUEUED_BYTES`): what
    /// comes from outside (ingress) waits here, so a flood cannot outgrow a slow disk. Gives
    /// up with `Behind` after `within`: a disk that stalls (or a writer that is gone) makes
    /// ingress answer 503, not hang.
    pub async fn room(&self, within: Duration) -> Result<()> {
        // The usual case costs one load, not a timer.
        if self.inner.writer.has_room() {
            return Ok(());
        }
        tokio::time::timeout(within, self.inner.writer.room())
            .await
            .map_err(|_| StoreError::Behind(within))
    }

    /// Applies `ops` with the next group commit without waiting.
    pub fn submit(&self, ops: Vec<Op>) {
        self.inner.writer.submit(ops)
    }

    /// Runs a blocking `read` on a blocking thread once everything handed to the writer
    /// before this call is applied: a reader that submitted changes (a destination actor
    /// paging its queue) never reads what it has already changed as it was before.
    pub async fn read_applied<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        self.inner
            .writer
            .applied()
            .await
            .map_err(|_| StoreError::Closed)?;
        let store = self.clone();
        readers::read(move || read(&store))
            .await
            .map_err(|e| StoreError::Io(format!("store reader: {e}")))?
    }

    /// The highest sequence number the writer has applied: a read that follows sees every
    /// entry numbered up to it.
    pub fn high_water(&self) -> Result<u64> {
        match self.inner.tree.get(keys::HIGH_WATER)? {
            Some(mark) => layout::decode_mark(&mark),
            None => Ok(0),
        }
    }

    /// Destinations with anything in their queue (FIFO or scheduled), one seek each.
    pub fn queued_destinations(&self) -> Result<Vec<DestinationId>> {
        let tree = &self.inner.tree;
        let mut found = queue_records::destinations(tree, keys::QUEUE)?;
        let known: std::collections::HashSet<_> = found.iter().cloned().collect();
        for d in queue_records::destinations(tree, keys::SCHEDULED)? {
            if !known.contains(&d) {
                found.push(d);
            }
        }
        Ok(found)
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
            Some(bytes) => decode_at(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn scan_all<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.inner
            .tree
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item?;
                decode_at(&key, &value)
            })
            .collect()
    }

    /// The keys under `prefix` (each `prefix + id`) past the id `cursor`, in `dir` order:
    /// what a page of a list reads.
    fn keys_past(
        &self,
        prefix: &[u8],
        cursor: Option<&str>,
        dir: Direction,
        span: &IdSpan,
    ) -> KeyValues {
        let key = |id: Vec<u8>| [prefix, &id].concat();
        let (low, high) = id_bounds(cursor, dir, span);
        let low = match low {
            Bound::Unbounded => Bound::Included(prefix.to_vec()),
            low => low.map(key),
        };
        let high = match high {
            Bound::Unbounded => Bound::Excluded(keys::prefix_end(prefix)),
            high => high.map(key),
        };
        // sled's range refuses a start past its end.
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) =
            (&low, &high)
        {
            if l > h {
                return Box::new(std::iter::empty());
            }
        }
        let iter = self.inner.tree.range::<Vec<u8>, _>((low, high));
        match dir {
            Direction::Desc => Box::new(iter.rev()),
            Direction::Asc => Box::new(iter),
        }
    }

    fn scan_budget(&self) -> usize {
        self.inner
            .scan_budget
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    fn set_scan_budget(&self, keys: usize) {
        self.inner
            .scan_budget
            .store(keys, std::sync::atomic::Ordering::Relaxed);
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
        self.page_within(prefix, cursor, dir, &IdSpan::default(), limit, keep)
    }

    /// `page`, of the ids within `span` only.
    fn page_within<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        cursor: Option<&str>,
        dir: Direction,
        span: &IdSpan,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let iter = self.keys_past(prefix, cursor, dir, span);
        let mut items = Vec::new();
        let mut last_key = None;
        for (scanned, kv) in iter.enumerate() {
            let (k, v) = kv?;
            if scanned >= self.scan_budget() {
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

    /// A page of the team's events within `scope` that `keep` accepts, in id (creation)
    /// order; `next` is the cursor of the page after, if any. The scope picks the narrowest
    /// lists that hold every event it admits (`lists_for`) — the request's own ids, the
    /// status index, the lists of its connections — else every event of the team, and a
    /// creation-time range bounds the walk, since ids sort by creation. `keep` must admit no
    /// event outside `scope`. Blocking.
    pub fn list_events(
        &self,
        q: &ListQuery,
        scope: &EventScope,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<Page<Event>> {
        if let Some(request) = &scope.request {
            return self.list_request_events(q, request, keep);
        }
        let span = id_span(scope);
        match self.lists_for(q, scope, &span)? {
            Some(lists) => self.list_events_listed(q, lists, keep),
            None => {
                let page = self.page_within(
                    &keys::team_prefix(keys::EVENT, &q.team),
                    q.cursor.as_deref(),
                    q.dir,
                    &span,
                    q.limit,
                    |r: &EventRecord| keep(&r.event),
                )?;
                Ok(Page {
                    items: page.items.into_iter().map(|r| r.event).collect(),
                    next: page.next,
                })
            }
        }
    }

    /// The lists of event ids, past the cursor and within `span`, that together hold every
    /// event `scope` admits: for statuses the index keeps, the index (by connection when the
    /// scope names few connections); otherwise the lists of its connections, those of its
    /// destination or source through their links. `None` when it names none of these.
    fn lists_for(
        &self,
        q: &ListQuery,
        scope: &EventScope,
        span: &IdSpan,
    ) -> Result<Option<Vec<IdStream>>> {
        /// Lists merged at most for a page; past it a status index lists the whole team.
        const MAX_INDEX_LISTS: usize = 64;
        let team = &q.team;
        let connections = self.connections_in(team, scope)?;
        let cursor = q.cursor.as_deref();
        let index = |connection: Option<&ConnectionId>, status| -> IdStream {
            let keys = self.keys_past(
                &keys::event_index_prefix(team, connection, status),
                cursor,
                q.dir,
                span,
            );
            Box::new(keys.map(|kv| Ok(keys::last_segment(&kv?.0).to_vec())))
        };
        if by_status_index(scope) {
            let statuses = &scope.statuses;
            return Ok(Some(match connections {
                Some(cs) if cs.len() * statuses.len() <= MAX_INDEX_LISTS => cs
                    .iter()
                    .flat_map(|c| statuses.iter().map(|&s| index(Some(c), s)))
                    .collect(),
                _ => statuses.iter().map(|&s| index(None, s)).collect(),
            }));
        }
        let (low, high) = id_bounds(cursor, q.dir, span);
        Ok(connections.map(|cs| {
            cs.iter()
                .map(|c| {
                    event_lists::ids(
                        &self.inner.tree,
                        &keys::event_list_prefix(team, c),
                        low.clone(),
                        high.clone(),
                        q.dir == Direction::Asc,
                    )
                })
                .collect()
        }))
    }

    /// The connections whose events are all `scope` can admit: the one it names, or those
    /// ever linked to the destination and the source it names. `None`: any connection.
    fn connections_in(
        &self,
        team: &TeamId,
        scope: &EventScope,
    ) -> Result<Option<BTreeSet<ConnectionId>>> {
        if let Some(c) = &scope.connection {
            return Ok(Some(BTreeSet::from([c.clone()])));
        }
        let mut within: Option<BTreeSet<ConnectionId>> = None;
        let named = [
            scope.destination.as_ref().map(keys::LinkOf::Destination),
            scope.source.as_ref().map(keys::LinkOf::Source),
        ];
        for of in named.into_iter().flatten() {
            let mut linked = BTreeSet::new();
            let prefix = keys::link_prefix(team, of);
            for key in self.inner.tree.scan_prefix(&prefix).keys() {
                let key = key?;
                let id = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|id| ConnectionId::parse(id).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt("a connection link names no connection".into())
                    })?;
                linked.insert(id);
            }
            within = Some(match within {
                None => linked,
                Some(earlier) => earlier.intersection(&linked).cloned().collect(),
            });
        }
        Ok(within)
    }

    /// A page of the events named by `lists` (each in id order), merged in id order, that
    /// `keep` accepts: a page costs what it returns plus what `keep` turns down, not a walk
    /// past every delivered event.
    fn list_events_listed(
        &self,
        q: &ListQuery,
        lists: Vec<IdStream>,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<Page<Event>> {
        // Each list, and the id at its head.
        let mut sources: Vec<(IdStream, Option<Vec<u8>>)> =
            lists.into_iter().map(|list| (list, None)).collect();
        let next_id = |(iter, head): &mut (IdStream, Option<Vec<u8>>)| -> Result<()> {
            if head.is_none() {
                *head = iter.next().transpose()?;
            }
            Ok(())
        };
        let mut items = Vec::new();
        let mut scanned = 0;
        loop {
            for source in &mut sources {
                next_id(source)?;
            }
            // The lists merge in id order: the newest first, or the oldest.
            let pick = sources
                .iter()
                .enumerate()
                .filter_map(|(i, (_, head))| head.as_ref().map(|h| (i, h)))
                .reduce(|a, b| match q.dir {
                    Direction::Asc if b.1 < a.1 => b,
                    Direction::Desc if b.1 > a.1 => b,
                    _ => a,
                })
                .map(|(i, _)| i);
            let Some(i) = pick else {
                return Ok(Page { items, next: None });
            };
            let id = sources[i].1.take().expect("picked a head");
            let id_text = String::from_utf8_lossy(&id).into_owned();
            scanned += 1;
            let key = [&keys::team_prefix(keys::EVENT, &q.team)[..], &id].concat();
            // A listed id without its event (purged between the two reads) is passed over.
            if let Some(record) = self.get::<EventRecord>(&key)? {
                if keep(&record.event) {
                    items.push(record.event);
                }
            }
            if items.len() == q.limit || scanned >= self.scan_budget() {
                return Ok(Page {
                    items,
                    next: Some(id_text),
                });
            }
        }
    }

    /// A page of the events made from one request that `keep` accepts: the request's
    /// record names them, so nothing else is read. Blocking.
    fn list_request_events(
        &self,
        q: &ListQuery,
        request: &RequestId,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<Page<Event>> {
        let Some(record) = self.get::<RequestRecord>(&keys::request(&q.team, request))? else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mut ids = record.request.event_ids;
        ids.sort();
        if q.dir == Direction::Desc {
            ids.reverse();
        }
        let after = |id: &EventId| match (&q.cursor, q.dir) {
            (None, _) => true,
            (Some(c), Direction::Asc) => id.as_str() > c.as_str(),
            (Some(c), Direction::Desc) => id.as_str() < c.as_str(),
        };
        let mut items = Vec::new();
        let mut rest = ids.into_iter().filter(|id| after(id)).peekable();
        while let Some(id) = rest.next() {
            if let Some(e) = self.event(&q.team, &id)? {
                if keep(&e) {
                    items.push(e);
                }
            }
            if items.len() == q.limit {
                let next = rest.peek().is_some().then(|| id.to_string());
                return Ok(Page { items, next });
            }
        }
        Ok(Page { items, next: None })
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

    // ---- destination queues -----------------------------------------------------------

    /// The next `limit` entries of `destination`'s FIFO with a sequence number above
    /// `after_seq` (from the start for `None`), in sequence order. Scheduled entries are not
    /// in it (`due_page`). Blocking: call it off the actor and HTTP threads.
    pub fn queue_page(
        &self,
        destination: &DestinationId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<QueueEntry>> {
        queue_records::fifo_page(&self.inner.tree, destination, after_seq, limit)
    }

    /// The next `limit` scheduled entries of `destination` (a delay or a retry) after the
    /// position `after` (due time, sequence number), in that order. Blocking.
    pub fn due_page(
        &self,
        destination: &DestinationId,
        after: Option<(Timestamp, u64)>,
        limit: usize,
    ) -> Result<Vec<QueueEntry>> {
        queue_records::due_page(&self.inner.tree, destination, after, limit)
    }

    /// How many entries wait in `destination`'s FIFO and how many are scheduled. Reads
    /// every record and key of the destination's queue: call it in the background.
    pub fn queue_counts(&self, destination: &DestinationId) -> Result<(usize, usize)> {
        queue_records::counts(&self.inner.tree, destination)
    }

    /// Every destination's whole queue: its FIFO in sequence order, then its scheduled
    /// entries in due order; also for destinations that no longer exist. Reads every waiting
    /// entry: the gateway never does (it pages), the store's tests check the layout with it.
    #[cfg(test)]
    pub fn load_queues(&self) -> Result<std::collections::HashMap<DestinationId, Vec<QueueEntry>>> {
        const PAGE: usize = 4096;
        let tree = &self.inner.tree;
        let mut destinations = queue_records::destinations(tree, keys::QUEUE)?;
        destinations.extend(queue_records::destinations(tree, keys::SCHEDULED)?);
        let mut queues = std::collections::HashMap::new();
        for destination in destinations {
            if queues.contains_key(&destination) {
                continue;
            }
            let mut entries = Vec::new();
            loop {
                let after = entries.last().map(|e: &QueueEntry| e.seq);
                let page = self.queue_page(&destination, after, PAGE)?;
                let done = page.len() < PAGE;
                entries.extend(page);
                if done {
                    break;
                }
            }
            let fifo = entries.len();
            loop {
                let after = entries[fifo..]
                    .last()
                    .map(|e| (e.due_at.unwrap_or_default(), e.seq));
                let page = self.due_page(&destination, after, PAGE)?;
                let done = page.len() < PAGE;
                entries.extend(page);
                if done {
                    break;
                }
            }
            queues.insert(destination, entries);
        }
        Ok(queues)
    }

    /// A connection's held entries, in the order they were accepted. Blocking: call it off
    /// the actor and HTTP threads.
    pub fn held_entries(&self, connection: &ConnectionId) -> Result<Vec<QueueEntry>> {
        self.scan_all(&keys::hold_prefix(connection))
    }

    pub fn bulk_retry(&self, id: &BulkRetryId) -> Result<Option<BulkRetryJob>> {
        self.get(&keys::bulk_retry(id))
    }

    /// Bulk retry jobs that have not finished. Blocking.
    pub fn running_bulk_retries(&self) -> Result<Vec<BulkRetryJob>> {
        let jobs: Vec<BulkRetryJob> = self.scan_all(keys::BULK_RETRY)?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.status == BulkStatus::Running)
            .collect())
    }

    /// The whole-engine pause as last stored.
    pub fn engine_pause(&self) -> Result<Option<StoredPause>> {
        self.get(keys::ENGINE_PAUSE)
    }

    /// The oldest `limit` held entries of a connection, in the order they were accepted.
    /// Blocking.
    pub fn held_page(&self, connection: &ConnectionId, limit: usize) -> Result<Vec<QueueEntry>> {
        self.inner
            .tree
            .scan_prefix(keys::hold_prefix(connection))
            .values()
            .take(limit)
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Connections with held entries, one seek each. Blocking.
    pub fn connections_with_held(&self) -> Result<Vec<ConnectionId>> {
        queue_records::owners(&self.inner.tree, keys::HOLD, ConnectionId::parse_loose)
    }

    /// The drain rate an unpause of `connection` asked for, while its drain runs.
    pub fn drain_rate(&self, connection: &ConnectionId) -> Result<Option<RateLimit>> {
        self.get(&keys::drain_rate(connection))
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

/// Ids a walk keeps to, both ends included; `None` leaves that end open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSpan {
    pub first: Option<String>,
    pub last: Option<String>,
}

/// How far an event id's time may run ahead of its `created_at`: the id is minted just
/// after the clock is read, and ids stay monotonic if the clock steps back. A span of ids
/// this much wider than the span of times loses no event; the filter trims the rest.
const ID_CLOCK_SLACK_MS: u64 = 60_000;

/// The ids a list of events may return: within `span`, and past the cursor.
fn id_bounds(
    cursor: Option<&str>,
    dir: Direction,
    span: &IdSpan,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = |id: &Option<String>| {
        id.as_ref().map_or(Bound::Unbounded, |id| {
            Bound::Included(id.as_bytes().to_vec())
        })
    };
    let (mut low, mut high) = (end(&span.first), end(&span.last));
    if let Some(c) = cursor.map(|c| c.as_bytes().to_vec()) {
        match dir {
            Direction::Asc if !matches!(&low, Bound::Included(l) if *l > c) => {
                low = Bound::Excluded(c)
            }
            Direction::Desc if !matches!(&high, Bound::Included(h) if *h < c) => {
                high = Bound::Excluded(c)
            }
            _ => {}
        }
    }
    (low, high)
}

/// Every status `scope` asks for is in the status index.
fn by_status_index(scope: &EventScope) -> bool {
    !scope.statuses.is_empty() && scope.statuses.iter().all(|s| keys::is_indexed(*s))
}

/// The ids of the events `scope` admits lie in this span (ids sort by creation).
fn id_span(scope: &EventScope) -> IdSpan {
    let bound = |t: Option<Timestamp>, slack: i64, upper| {
        t.map(|t| {
            let ms = t.millis().saturating_add_signed(slack);
            ids::id_bound_at(EventId::PREFIX, ms, upper)
        })
    };
    IdSpan {
        first: bound(scope.created_gte, -(ID_CLOCK_SLACK_MS as i64), false),
        last: bound(scope.created_lte, ID_CLOCK_SLACK_MS as i64, true),
    }
}

/// A commit on its way to the writer (`Store::commit_numbered`): resolves once it is durable.
pub struct Committed(tokio::sync::oneshot::Receiver<Result<()>>);

impl Future for Committed {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(StoreError::Closed)))
    }
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

    /// Purges a finished request older than `cutoff` with all it made (see `Op::PurgeRequest`).
    pub fn purge_request(team: &TeamId, id: &RequestId, cutoff: Timestamp) -> Op {
        Op::PurgeRequest {
            team: team.clone(),
            id: id.clone(),
            cutoff,
        }
    }

    /// Removes an expired dedupe claim found at `key` with `at`.
    pub fn expire_claim(key: Vec<u8>, at: Timestamp) -> Op {
        Op::ExpireClaim { key, at }
    }

    /// Claims `identity` of a request for `source`'s dedupe window.
    pub fn claim_dedupe(
        source: &SourceId,
        identity: &str,
        claim: crate::domain::dedupe::DedupeClaim,
        window_ms: u64,
    ) -> Op {
        Op::ClaimDedupe {
            key: keys::dedupe_claim(source, identity),
            claim,
            window_ms,
        }
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

    /// The connection, and its links to its destination and its source (for their lists
    /// of events).
    pub fn put_connection(c: &Connection) -> [Op; 3] {
        let [to_destination, to_source] = keys::connection_links(c);
        [
            put(keys::connection(&c.id), c),
            Op::Put(to_destination, Vec::new()),
            Op::Put(to_source, Vec::new()),
        ]
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
        Op::PutEvent {
            key: keys::event(&e.team_id, &e.id),
            record: codec::encode(&record),
            place: Box::new(EventPlace::of(e)),
            status: e.status,
        }
    }

    /// The index keys of a new event (none for the common `QUEUED`).
    pub fn index_event(e: &Event) -> impl Iterator<Item = Op> {
        keys::event_index(&e.team_id, &e.connection_id, e.status, &e.id)
            .into_iter()
            .map(|key| Op::Put(key, Vec::new()))
    }

    pub fn patch_event(team: &TeamId, id: &EventId, patch: EventPatch) -> Op {
        Op::PatchEvent {
            key: keys::event(team, id),
            patch,
        }
    }

    pub fn enqueue(destination: &DestinationId, entry: &QueueEntry) -> Op {
        Op::Queue(QueueChange::Enqueue {
            destination: destination.clone(),
            entry: entry.clone(),
        })
    }

    /// Files `entry` anew by its `due_at`, taking it from where it was filed while its
    /// `due_at` was `previous_due_at`: a retry was scheduled.
    pub fn requeue(
        destination: &DestinationId,
        entry: &QueueEntry,
        previous_due_at: Option<Timestamp>,
    ) -> Op {
        Op::Queue(QueueChange::Requeue {
            destination: destination.clone(),
            entry: entry.clone(),
            previous_due_at,
        })
    }

    /// Takes `entry` off its destination's queue, from where its `due_at` says it is filed.
    pub fn dequeue(destination: &DestinationId, entry: &QueueEntry) -> Op {
        Op::Queue(QueueChange::Dequeue {
            destination: destination.clone(),
            seq: entry.seq,
            due_at: entry.due_at,
        })
    }

    pub fn put_hold(connection: &ConnectionId, entry: &QueueEntry) -> Op {
        Op::Hold {
            connection: connection.clone(),
            entry: entry.clone(),
        }
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
            dequeue(destination, entry),
            patch_event(team, &entry.event_id, cancelled(now)),
        ]
    }

    /// Moves a held entry (filed under `held_seq`) to its destination's queue as `entry`,
    /// renumbered, and its event from `HOLD` to `QUEUED`: the drain after an unpause.
    pub fn release_held(
        team: &TeamId,
        destination: &DestinationId,
        held_seq: u64,
        entry: &QueueEntry,
        now: Timestamp,
    ) -> [Op; 3] {
        [
            Op::Remove(keys::hold(&entry.connection_id, held_seq)),
            enqueue(destination, entry),
            patch_event(
                team,
                &entry.event_id,
                EventPatch {
                    status: Some(EventStatus::Queued),
                    updated_at: now,
                    ..Default::default()
                },
            ),
        ]
    }

    /// Stores `issue`; an active one becomes its destination's active issue, and one that is
    /// no longer active stops being it (`was_active`: it was).
    pub fn put_issue(issue: &Issue, was_active: bool) -> Vec<Op> {
        let mut ops = vec![put(keys::issue(&issue.team_id, &issue.id), issue)];
        let pointer = keys::active_issue(&issue.destination_id);
        if issue.status.is_active() {
            ops.push(Op::Put(pointer, issue.id.as_str().as_bytes().to_vec()));
        } else if was_active {
            ops.push(Op::Remove(pointer));
        }
        ops
    }

    pub fn put_alert_channel(channel: &AlertChannel) -> Op {
        put(keys::alert_channel(&channel.team_id, &channel.id), channel)
    }

    pub fn remove_alert_channel(team: &TeamId, id: &AlertChannelId) -> Op {
        Op::Remove(keys::alert_channel(team, id))
    }

    pub fn put_alert(alert: &Alert) -> Op {
        put(keys::alert(&alert.id), alert)
    }

    pub fn remove_alert(id: &AlertId) -> Op {
        Op::Remove(keys::alert(id))
    }

    pub fn put_bulk_retry(job: &BulkRetryJob) -> Op {
        put(keys::bulk_retry(&job.id), job)
    }

    pub fn put_engine_pause(pause: &StoredPause) -> Op {
        put(keys::ENGINE_PAUSE.to_vec(), pause)
    }

    /// Keeps the drain rate of an unpause while the drain runs (`None`: no cap).
    pub fn put_drain_rate(connection: &ConnectionId, rate: Option<RateLimit>) -> Op {
        match rate {
            Some(rate) => put(keys::drain_rate(connection), &rate),
            None => Op::Remove(keys::drain_rate(connection)),
        }
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

    /// Retention purges a finished request with everything it made, keeps one with work
    /// left, and deletes a body segment once nothing in it is kept (and only then).
    #[test]
    fn a_purge_takes_finished_requests_whole_and_frees_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let open_small = || {
            rt().block_on(async {
                Store::open_with_cache(
                    dir.path(),
                    Durability::Flush,
                    Duration::ZERO,
                    DEFAULT_CACHE_BYTES,
                    4096,
                )
                .unwrap()
            })
        };
        let store = open_small();
        // 30 requests of 1 KiB bodies: several 4 KiB segments. Each has one event; the 7th is
        // held (work left), the others delivered after four attempts (spilled records).
        let mut made = Vec::new();
        for i in 0..30u8 {
            let mut e = crate::domain::fixtures::event(&team);
            let request = request_of(&e, bytes::Bytes::from(vec![i; 1024]));
            e.status = if i == 7 {
                EventStatus::Hold
            } else {
                EventStatus::Queued
            };
            let mut commit = vec![ops::put_request(request.clone()), ops::put_event(&e)];
            commit.extend(ops::index_event(&e));
            rt().block_on(store.commit(commit)).unwrap();
            if i != 7 {
                for n in 1..=4 {
                    let patch = EventPatch {
                        status: (n == 4).then_some(EventStatus::Successful),
                        attempts: Some(n),
                        updated_at: Timestamp(2),
                        attempt: Some(Attempt {
                            id: AttemptId::new(),
                            team_id: team.clone(),
                            event_id: e.id.clone(),
                            destination_id: e.destination_id.clone(),
                            attempt_number: n,
                            trigger: Trigger::Initial,
                            status: AttemptStatus::Failed,
                            response_status: Some(500),
                            error_code: None,
                            duration_ms: 1,
                            created_at: Timestamp(2),
                            updated_at: Timestamp(2),
                        }),
                        ..Default::default()
                    };
                    rt().block_on(store.commit(vec![ops::patch_event(&team, &e.id, patch)]))
                        .unwrap();
                }
            }
            made.push((request, e));
        }
        let segments_before = store.inner.bodies.segments().unwrap();
        assert!(segments_before.len() >= 6, "{segments_before:?}");
        let (_, kept_event) = &made[7];
        let statuses = |store: &Store| {
            let mut total = crate::domain::event_metrics::EventCounts::default();
            for (_, c) in store
                .event_counts(&team, 0, 120_000, &CountsFilter::default())
                .unwrap()
            {
                total.add(&c);
            }
            (total.successful, total.hold)
        };
        assert_eq!(statuses(&store), (29, 1));

        // Nothing is purged before its time.
        let early = store.purge_candidates(Timestamp(2), None).unwrap();
        assert!(early.found.is_empty());
        let cutoff = Timestamp(1_000);
        let found = store.purge_candidates(cutoff, None).unwrap();
        assert_eq!(found.found.len(), 29, "all but the held one");
        let purge = found
            .found
            .iter()
            .map(|(t, id)| ops::purge_request(t, id, cutoff))
            .collect();
        rt().block_on(store.commit(purge)).unwrap();

        for (i, (request, e)) in made.iter().enumerate() {
            let kept = store.request(&team, &request.id).unwrap();
            if i == 7 {
                assert_eq!(kept.unwrap().body, request.body, "the held request's body");
                assert!(store.event(&team, &e.id).unwrap().is_some());
            } else {
                assert!(kept.is_none(), "request {i}");
                assert!(store.event(&team, &e.id).unwrap().is_none(), "event {i}");
                assert!(
                    store.attempts(&team, &e.id).unwrap().is_empty(),
                    "attempts {i}"
                );
            }
        }
        let index: Vec<_> = store
            .inner
            .tree
            .scan_prefix(keys::EVENT_INDEX)
            .keys()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            index.iter().all(|k| k
                .windows(kept_event.id.as_str().len())
                .any(|w| w == kept_event.id.as_str().as_bytes())),
            "only the held event is indexed"
        );
        assert!(store
            .inner
            .tree
            .scan_prefix(keys::attempt_prefix(&made[0].1.id))
            .next()
            .is_none());
        // The held request's segment and the current one are all that is left, and the
        // event counts lost the purged events.
        let kept_segment = store
            .get::<request_record::RequestRecord>(&keys::request(&team, &made[7].0.id))
            .unwrap()
            .unwrap()
            .body
            .segment();
        let current = *segments_before.last().unwrap();
        let left = store.inner.bodies.segments().unwrap();
        assert!(
            left.iter().all(|s| *s == kept_segment || *s == current),
            "{left:?} (kept {kept_segment}, current {current})"
        );
        assert_eq!(statuses(&store), (0, 1), "the counts forget purged events");
        // A crash between the counts and the file removal leaves no orphan: at open, any
        // finished segment without a count goes.
        let removed = *segments_before
            .iter()
            .find(|s| !left.contains(s))
            .expect("a segment was removed");
        rt().block_on(store.close());
        let orphan = dir.path().join("bodies").join(format!("{removed:010}.seg"));
        std::fs::write(&orphan, [0u8; 64]).unwrap();
        let store = open_small();
        assert!(!orphan.exists(), "the orphaned segment is removed at open");
        let left = store.inner.bodies.segments().unwrap();
        assert!(
            left.iter().all(|s| *s == kept_segment || *s == current),
            "{left:?}"
        );
        assert_eq!(
            store.request(&team, &made[7].0.id).unwrap().unwrap().body,
            made[7].0.body
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
                .list_events(&q(cursor, Direction::Desc), &EventScope::default(), |_| {
                    true
                })
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
            .list_events(
                &q(Some(events[1].id.to_string()), Direction::Asc),
                &EventScope::default(),
                |_| true,
            )
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

    /// An entry filed under a delay or retry due at `due` ms.
    fn due(seq: u64, due: u64) -> QueueEntry {
        QueueEntry {
            due_at: Some(Timestamp(due)),
            ..entry(seq)
        }
    }

    /// The request `e` was made from, with `body`, created at 1 ms.
    fn request_of(e: &Event, body: bytes::Bytes) -> Request {
        Request {
            id: e.request_id.clone(),
            team_id: e.team_id.clone(),
            source_id: e.source_id.clone(),
            method: "POST".into(),
            headers: Vec::new(),
            body,
            rejection_cause: None,
            event_ids: vec![e.id.clone()],
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        }
    }

    fn open(dir: &Path) -> Store {
        rt().block_on(async { Store::open(dir, Durability::Flush, Duration::ZERO).unwrap() })
    }

    fn reopen(store: Store, dir: &Path) -> Store {
        rt().block_on(store.close());
        open(dir)
    }

    /// Commits `n` new entries for `destination`, numbered by the store (made by `make` from
    /// their sequence numbers); returns those numbers.
    fn add(
        store: &Store,
        destination: &DestinationId,
        n: usize,
        make: impl Fn(u64) -> QueueEntry,
    ) -> Vec<u64> {
        let mut seqs = Vec::new();
        let committed = store.commit_numbered(|next| {
            (0..n)
                .map(|_| {
                    let e = make(next());
                    seqs.push(e.seq);
                    ops::enqueue(destination, &e)
                })
                .collect()
        });
        rt().block_on(committed).unwrap();
        seqs
    }

    fn seqs(entries: &[QueueEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    /// The destination's FIFO records as stored: each one's name and entries.
    fn records(store: &Store, destination: &DestinationId) -> Vec<(u64, Vec<u64>)> {
        store
            .inner
            .tree
            .scan_prefix(keys::queue_prefix(destination))
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let (_, first) = keys::parse_queue(&k).unwrap();
                (first, seqs(&queue_records::decode(&v).unwrap()))
            })
            .collect()
    }

    fn due_seqs(store: &Store, destination: &DestinationId) -> Vec<(u64, u64)> {
        store
            .due_page(destination, None, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| (e.due_at.unwrap().millis(), e.seq))
            .collect()
    }

    fn fifo(store: &Store, destination: &DestinationId) -> Vec<u64> {
        seqs(&store.queue_page(destination, None, usize::MAX).unwrap())
    }

    #[test]
    fn sequence_numbers_reach_the_writer_in_the_order_they_are_drawn_under_concurrency() {
        const TASKS: usize = 64;
        const COMMITS: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(async {
            Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap()
        });
        let destinations: Vec<DestinationId> = (0..3).map(|_| DestinationId::new()).collect();
        let connection = ConnectionId::new();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (store, destinations) = (store.clone(), destinations.clone());
                    let connection = connection.clone();
                    tokio::spawn(async move {
                        for i in 0..COMMITS {
                            let d = &destinations[(t + i) % destinations.len()];
                            let n = 1 + (t * 7 + i) % 4;
                            let committed = store.commit_numbered(|next| {
                                let ops = (0..n)
                                    .map(|k| match k {
                                        3 => ops::put_hold(&connection, &entry(next())),
                                        _ => ops::enqueue(d, &entry(next())),
                                    })
                                    .collect();
                                // Widens the gap a commit that numbers and sends apart leaves.
                                std::thread::yield_now();
                                ops
                            });
                            committed.await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let applied = store.writer().stats.applied_seqs.lock().unwrap().clone();
        let drawn: usize = (0..TASKS)
            .flat_map(|t| (0..COMMITS).map(move |i| 1 + (t * 7 + i) % 4))
            .sum();
        assert_eq!(applied.len(), drawn);
        assert!(
            applied.windows(2).all(|w| w[0] < w[1]),
            "the writer received sequence numbers out of order"
        );
        let mut total = 0;
        for d in &destinations {
            let records = records(&store, d);
            for (first, entries) in &records {
                assert!(!entries.is_empty());
                assert!(entries.windows(2).all(|w| w[0] < w[1]));
                assert!(entries[0] >= *first, "record {first} holds {entries:?}");
            }
            for pair in records.windows(2) {
                assert!(
                    pair[0].1.last() < Some(&pair[1].0),
                    "records overlap: {pair:?}"
                );
            }
            // The record holding each entry is the last one named at or below it.
            let all: Vec<u64> = records.iter().flat_map(|(_, e)| e.clone()).collect();
            for &seq in &all {
                let (key, value) = store
                    .inner
                    .tree
                    .range(keys::queue_prefix(d)..=keys::queue(d, seq))
                    .next_back()
                    .unwrap()
                    .unwrap();
                assert!(keys::parse_queue(&key).unwrap().1 <= seq);
                assert!(seqs(&queue_records::decode(&value).unwrap()).contains(&seq));
            }
            assert_eq!(fifo(&store, d), all);
            total += all.len();
            // Every entry can be taken off again.
            let dequeues = all.iter().rev().map(|&s| ops::dequeue(d, &entry(s)));
            runtime.block_on(store.commit(dequeues.collect())).unwrap();
        }
        let held = store.count_keys(keys::HOLD);
        assert_eq!(total + held, drawn);
        assert_eq!(store.count_keys(keys::QUEUE), 0);
        runtime.block_on(store.close());
    }

    #[test]
    fn a_group_s_entries_share_one_record_per_destination_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (d1, d2) = (DestinationId::new(), DestinationId::new());
        let store = open(dir.path());
        let committed = store.commit_numbered(|next| {
            vec![
                ops::enqueue(&d1, &entry(next())),
                ops::enqueue(&d2, &entry(next())),
                ops::enqueue(&d1, &entry(next())),
            ]
        });
        rt().block_on(committed).unwrap();
        add(&store, &d1, 2, entry);
        assert_eq!(records(&store, &d1), [(1, vec![1, 3]), (4, vec![4, 5])]);
        assert_eq!(records(&store, &d2), [(2, vec![2])]);
        let store = reopen(store, dir.path());
        let queues = store.load_queues().unwrap();
        assert_eq!(seqs(&queues[&d1]), [1, 3, 4, 5]);
        assert_eq!(seqs(&queues[&d2]), [2]);
        // Entries stored before the restart are found without anything read at boot.
        let store = reopen(store, dir.path());
        let dequeues = [1, 3, 4].map(|s| ops::dequeue(&d1, &entry(s)));
        rt().block_on(store.commit(dequeues.into())).unwrap();
        assert_eq!(
            records(&store, &d1),
            [(4, vec![5])],
            "an emptied record is removed"
        );
    }

    #[test]
    fn a_record_named_by_a_delivered_entry_is_never_reopened_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let d = DestinationId::new();
        let store = open(dir.path());
        add(&store, &d, 2, entry);
        // 1 is delivered; its record keeps its name and 2.
        rt().block_on(store.commit(vec![ops::dequeue(&d, &entry(1))]))
            .unwrap();
        assert_eq!(records(&store, &d), [(1, vec![2])]);
        let store = reopen(store, dir.path());
        // The next group opens a record of its own and leaves the survivor alone.
        assert_eq!(add(&store, &d, 1, entry), [3]);
        assert_eq!(records(&store, &d), [(1, vec![2]), (3, vec![3])]);
        assert_eq!(fifo(&store, &d), [2, 3]);
    }

    #[test]
    fn a_sequence_number_is_never_reissued_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (d, connection) = (DestinationId::new(), ConnectionId::new());
        let store = open(dir.path());
        assert_eq!(add(&store, &d, 3, entry), [1, 2, 3]);
        let committed =
            store.commit_numbered(|next| vec![ops::put_hold(&connection, &entry(next()))]);
        rt().block_on(committed).unwrap();
        assert_eq!(add(&store, &d, 1, |s| due(s, 50)), [5]);
        // Every key that named 3, 4 or 5 goes: the delivered 3 (the FIFO's last), the
        // cancelled held 4, the scheduled 5.
        let removals = vec![
            ops::dequeue(&d, &entry(3)),
            ops::dequeue(&d, &entry(1)),
            Op::Remove(keys::hold(&connection, 4)),
            ops::dequeue(&d, &due(5, 50)),
        ];
        rt().block_on(store.commit(removals)).unwrap();
        assert_eq!(records(&store, &d), [(1, vec![2])]);
        let store = reopen(store, dir.path());
        assert_eq!(add(&store, &d, 1, entry), [6]);
        assert_eq!(fifo(&store, &d), [2, 6]);
        rt().block_on(store.commit(vec![ops::dequeue(&d, &entry(2))]))
            .unwrap();
        assert_eq!(fifo(&store, &d), [6]);
        rt().block_on(store.close());

        // Without the persisted mark, the highest number a FIFO, scheduled or held entry names
        // is found at open.
        for highest in ["fifo", "scheduled", "held"] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            add(&store, &d, 1, entry);
            let committed = store.commit_numbered(|next| {
                let seq = next();
                vec![match highest {
                    "fifo" => ops::enqueue(&d, &entry(seq)),
                    "scheduled" => ops::enqueue(&d, &due(seq, 9)),
                    _ => ops::put_hold(&connection, &entry(seq)),
                }]
            });
            rt().block_on(committed).unwrap();
            rt().block_on(store.commit(vec![Op::Remove(keys::HIGH_WATER.to_vec())]))
                .unwrap();
            let store = reopen(store, dir.path());
            assert_eq!(
                add(&store, &d, 1, entry),
                [3],
                "{highest} entry 2 is the highest"
            );
            rt().block_on(store.close());
        }
    }

    #[test]
    fn pages_cross_records_in_order_and_scheduled_entries_read_by_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let (d, other) = (DestinationId::new(), DestinationId::new());
        let store = open(dir.path());
        assert_eq!(add(&store, &d, 4, entry), [1, 2, 3, 4]);
        assert_eq!(add(&store, &other, 2, entry), [5, 6]);
        assert_eq!(add(&store, &d, 4, entry), [7, 8, 9, 10]);
        assert_eq!(add(&store, &d, 3, entry), [11, 12, 13]);
        assert_eq!(records(&store, &d).len(), 3, "one record per group");
        // Delivered: 1 (its record's name) and 8, 9, 10; retries scheduled for 3 and 12.
        let mut changes: Vec<Op> = [1, 8, 9, 10]
            .iter()
            .map(|&s| ops::dequeue(&d, &entry(s)))
            .collect();
        changes.push(ops::requeue(&d, &due(3, 50), None));
        changes.push(ops::requeue(&d, &due(12, 20), None));
        rt().block_on(store.commit(changes)).unwrap();

        assert_eq!(fifo(&store, &d), [2, 4, 7, 11, 13], "retries left the FIFO");
        let page = |after, limit| seqs(&store.queue_page(&d, after, limit).unwrap());
        assert_eq!(page(None, 2), [2, 4]);
        assert_eq!(page(Some(4), 2), [7, 11]);
        assert_eq!(page(Some(11), 2), [13]);
        assert_eq!(page(Some(13), 2), Vec::<u64>::new());
        assert_eq!(page(Some(8), 10), [11, 13], "after a removed entry");
        assert_eq!(page(Some(0), 1), [2]);
        assert_eq!(page(Some(u64::MAX), 1), Vec::<u64>::new());
        assert_eq!(page(None, 0), Vec::<u64>::new());
        assert_eq!(due_seqs(&store, &d), [(20, 12), (50, 3)]);
        let after_12 = store.due_page(&d, Some((Timestamp(20), 12)), 10).unwrap();
        assert_eq!(seqs(&after_12), [3]);
        assert_eq!(seqs(&store.due_page(&d, None, 1).unwrap()), [12]);
        assert_eq!(store.queue_counts(&d).unwrap(), (5, 2));
        assert_eq!(fifo(&store, &other), [5, 6], "other destinations untouched");

        // 3 fails again and is rescheduled, now before 12: its old key goes.
        let retried = QueueEntry {
            attempts: 2,
            ..due(3, 10)
        };
        rt().block_on(store.commit(vec![ops::requeue(&d, &retried, Some(Timestamp(50)))]))
            .unwrap();
        assert_eq!(due_seqs(&store, &d), [(10, 3), (20, 12)]);
        assert_eq!(store.due_page(&d, None, 1).unwrap()[0].attempts, 2);
        assert_eq!(store.count_keys(keys::SCHEDULED), 2);

        // Taken off by where each entry's due_at files it.
        let done = vec![ops::dequeue(&d, &due(12, 20)), ops::dequeue(&d, &entry(7))];
        rt().block_on(store.commit(done)).unwrap();
        assert_eq!(due_seqs(&store, &d), [(10, 3)]);
        assert_eq!(fifo(&store, &d), [2, 4, 11, 13]);
        assert_eq!(store.queue_counts(&d).unwrap(), (4, 1));
        assert_eq!(records(&store, &d).len(), 2, "the emptied record went");

        // A retry of an entry no longer stored does not bring it back.
        let stale = vec![
            ops::requeue(&d, &due(7, 5), None),
            ops::requeue(&d, &due(12, 5), Some(Timestamp(20))),
        ];
        rt().block_on(store.commit(stale)).unwrap();
        assert_eq!(store.queue_counts(&d).unwrap(), (4, 1));

        // A delayed event is scheduled from the start, never in the FIFO.
        assert_eq!(add(&store, &d, 1, |s| due(s, 30)), [14]);
        assert_eq!(due_seqs(&store, &d), [(10, 3), (30, 14)]);
        assert_eq!(fifo(&store, &d), [2, 4, 11, 13]);

        // Boot's whole-queue read: the FIFO, then the scheduled entries.
        let store = reopen(store, dir.path());
        let queues = store.load_queues().unwrap();
        assert_eq!(seqs(&queues[&d]), [2, 4, 11, 13, 3, 14]);
        assert_eq!(seqs(&queues[&other]), [5, 6]);
        assert_eq!(queues.len(), 2);
    }

    #[test]
    fn an_entry_numbered_before_later_ones_joins_the_fifo_in_its_place() {
        // A held entry keeps its number for when it is released, by then behind newer ones.
        let dir = tempfile::tempdir().unwrap();
        let (d, connection) = (DestinationId::new(), ConnectionId::new());
        let store = open(dir.path());
        let mixed = |store: &Store| {
            let committed = store.commit_numbered(|next| {
                vec![
                    ops::enqueue(&d, &entry(next())),
                    ops::put_hold(&connection, &entry(next())),
                    ops::enqueue(&d, &entry(next())),
                ]
            });
            rt().block_on(committed).unwrap();
        };
        mixed(&store); // 1, held 2, 3
        rt().block_on(store.commit(vec![
            ops::dequeue(&d, &entry(1)),
            ops::dequeue(&d, &entry(3)),
        ]))
        .unwrap();
        mixed(&store); // 4, held 5, 6
        add(&store, &d, 1, entry); // 7
        assert_eq!(records(&store, &d), [(4, vec![4, 6]), (7, vec![7])]);
        let release = |seq| {
            [
                Op::Remove(keys::hold(&connection, seq)),
                ops::enqueue(&d, &entry(seq)),
            ]
        };
        let store = reopen(store, dir.path());
        let released: Vec<Op> = release(2).into_iter().chain(release(5)).collect();
        rt().block_on(store.commit(released)).unwrap();
        assert_eq!(
            records(&store, &d),
            [(2, vec![2]), (4, vec![4, 5, 6]), (7, vec![7])],
            "before every record, a record of its own; inside one, in it"
        );
        assert_eq!(fifo(&store, &d), [2, 4, 5, 6, 7]);
        assert_eq!(seqs(&store.queue_page(&d, Some(4), 2).unwrap()), [5, 6]);
        assert_eq!(store.count_keys(keys::HOLD), 0);
    }

    #[test]
    fn a_destination_with_only_scheduled_entries_is_loaded_too() {
        let dir = tempfile::tempdir().unwrap();
        let d = DestinationId::new();
        let store = open(dir.path());
        add(&store, &d, 2, |s| due(s, 100 - s));
        let queues = store.load_queues().unwrap();
        assert_eq!(seqs(&queues[&d]), [2, 1], "in due order");
    }

    #[test]
    fn a_data_directory_of_the_first_layout_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (d1, d2, connection) = (
            DestinationId::new(),
            DestinationId::new(),
            ConnectionId::new(),
        );
        let v1_key = |seq: u64| [keys::QUEUE, &seq.to_be_bytes()].concat();
        let v1_record = |shares: Vec<(DestinationId, Vec<QueueEntry>)>| codec::encode(&shares);
        let store = open(dir.path());
        // What version 1 wrote: no version, no mark, queue records of one group each across
        // destinations, numbered before commit so they interleave.
        let old = vec![
            Op::Remove(keys::LAYOUT.to_vec()),
            Op::Remove(keys::HIGH_WATER.to_vec()),
            Op::Put(
                v1_key(7),
                v1_record(vec![
                    (d1.clone(), vec![entry(7), due(9, 40)]),
                    (d2.clone(), vec![entry(8)]),
                ]),
            ),
            Op::Put(
                v1_key(3),
                v1_record(vec![(d1.clone(), vec![entry(3), entry(10)])]),
            ),
            Op::Put(keys::hold(&connection, 12), codec::encode(&entry(12))),
        ];
        rt().block_on(store.commit(old)).unwrap();
        let store = reopen(store, dir.path());

        assert_eq!(fifo(&store, &d1), [3, 7, 10]);
        assert_eq!(due_seqs(&store, &d1), [(40, 9)]);
        assert_eq!(fifo(&store, &d2), [8]);
        assert_eq!(
            store.inner.tree.get(keys::LAYOUT).unwrap().as_deref(),
            Some(&layout::VERSION.to_be_bytes()[..])
        );
        assert!(store
            .inner
            .tree
            .scan_prefix(keys::QUEUE)
            .keys()
            .all(|k| keys::parse_queue(&k.unwrap()).is_some()));
        assert_eq!(store.count_keys(keys::QUEUE), 2);
        assert_eq!(add(&store, &d1, 1, entry), [13], "above the held 12");
        rt().block_on(store.commit(vec![ops::dequeue(&d1, &entry(7))]))
            .unwrap();
        assert_eq!(fifo(&store, &d1), [3, 10, 13]);
        // Opened again, it is not migrated again.
        let store = reopen(store, dir.path());
        assert_eq!(fifo(&store, &d1), [3, 10, 13]);
        assert_eq!(add(&store, &d1, 1, entry), [14]);
    }

    #[test]
    fn the_event_index_follows_each_status_and_is_rebuilt_from_a_version_2_store() {
        use crate::domain::fixtures::event;
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let store = open(dir.path());
        let mut held = event(&team);
        held.status = EventStatus::Hold;
        let delivered = event(&team);
        let mut writes = vec![ops::put_event(&held), ops::put_event(&delivered)];
        writes.extend(ops::index_event(&held));
        writes.extend(ops::index_event(&delivered));
        rt().block_on(store.commit(writes)).unwrap();
        let q = ListQuery {
            team: team.clone(),
            limit: 10,
            cursor: None,
            dir: Direction::Asc,
        };
        let ids = |store: &Store, statuses: &[EventStatus], c: Option<&ConnectionId>| {
            let scope = EventScope {
                statuses: statuses.to_vec(),
                connection: c.cloned(),
                ..Default::default()
            };
            store
                .list_events(&q, &scope, |_| true)
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&store, &[EventStatus::Hold], None),
            vec![held.id.clone()]
        );
        assert_eq!(
            ids(&store, &[EventStatus::Hold], Some(&held.connection_id)),
            vec![held.id.clone()]
        );
        assert!(ids(&store, &[EventStatus::Hold], Some(&delivered.connection_id)).is_empty());
        // A status change moves the event in the index, in the same batch.
        let to = |status| EventPatch {
            status: Some(status),
            updated_at: Timestamp(2),
            ..Default::default()
        };
        rt().block_on(store.commit(vec![
            ops::patch_event(&team, &held.id, to(EventStatus::Queued)),
            ops::patch_event(&team, &delivered.id, to(EventStatus::Failed)),
        ]))
        .unwrap();
        assert!(ids(&store, &[EventStatus::Hold], None).is_empty());
        assert_eq!(
            ids(&store, &[EventStatus::Failed, EventStatus::Hold], None),
            vec![delivered.id.clone()]
        );
        // A version 2 store (no index) gets it at open.
        let mut writes: Vec<Op> = keys::event_index(
            &team,
            &delivered.connection_id,
            EventStatus::Failed,
            &delivered.id,
        )
        .into_iter()
        .map(Op::Remove)
        .collect();
        writes.push(Op::Put(keys::LAYOUT.to_vec(), 2u32.to_be_bytes().to_vec()));
        rt().block_on(store.commit(writes)).unwrap();
        assert!(ids(&store, &[EventStatus::Failed], None).is_empty());
        rt().block_on(store.close());
        let store = open(dir.path());
        assert_eq!(
            ids(&store, &[EventStatus::Failed], None),
            vec![delivered.id.clone()]
        );
        assert_eq!(
            ids(
                &store,
                &[EventStatus::Failed],
                Some(&delivered.connection_id)
            ),
            vec![delivered.id]
        );
    }

    #[test]
    fn the_tally_follows_every_change_and_is_counted_again_at_open() {
        use crate::domain::fixtures::event;
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let store = open(dir.path());
        rt().block_on(store.commit(vec![ops::put_team(&Team {
            id: team.clone(),
            name: "t".into(),
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        })]))
        .unwrap();
        let connection = ConnectionId::new();
        let made = |status| {
            let mut e = event(&team);
            e.connection_id = connection.clone();
            e.status = status;
            e
        };
        let events = [
            made(EventStatus::Hold),
            made(EventStatus::Hold),
            made(EventStatus::Failed),
            made(EventStatus::Queued),
        ];
        let mut writes = Vec::new();
        for e in &events {
            writes.push(ops::put_event(e));
            writes.extend(ops::index_event(e));
        }
        rt().block_on(store.commit(writes)).unwrap();
        let counts = |store: &Store| store.tally().snapshot().get(&connection).copied();
        assert_eq!(counts(&store), Some(Counts { hold: 2, failed: 1 }));
        let to = |status| EventPatch {
            status: Some(status),
            updated_at: Timestamp(2),
            ..Default::default()
        };
        rt().block_on(store.commit(vec![
            ops::patch_event(&team, &events[0].id, to(EventStatus::Queued)),
            ops::patch_event(&team, &events[3].id, to(EventStatus::Failed)),
            // Not a change of status: nothing moves.
            ops::patch_event(&team, &events[1].id, to(EventStatus::Hold)),
        ]))
        .unwrap();
        assert_eq!(counts(&store), Some(Counts { hold: 1, failed: 2 }));
        rt().block_on(store.close());
        let store = open(dir.path());
        assert_eq!(counts(&store), Some(Counts { hold: 1, failed: 2 }));
    }

    #[test]
    fn a_source_stored_by_layout_4_is_read_without_dedupe() {
        #[derive(serde::Serialize)]
        struct SourceV4<'a> {
            id: &'a SourceId,
            team_id: &'a TeamId,
            name: &'a str,
            allowed_http_methods: Vec<String>,
            verification: Option<Verification>,
            disabled_at: Option<Timestamp>,
            created_at: Timestamp,
            updated_at: Timestamp,
        }
        let dir = tempfile::tempdir().unwrap();
        let (id, team) = (SourceId::new(), TeamId::new());
        let store = open(dir.path());
        let old = codec::encode(&SourceV4 {
            id: &id,
            team_id: &team,
            name: "stripe",
            allowed_http_methods: vec!["POST".into()],
            verification: None,
            disabled_at: None,
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
        });
        rt().block_on(store.commit(vec![
            Op::Put(keys::source(&id), old),
            Op::Put(keys::LAYOUT.to_vec(), 4u32.to_be_bytes().to_vec()),
        ]))
        .unwrap();
        assert!(
            store.source(&id).is_err(),
            "the old form is not the new one"
        );
        rt().block_on(store.close());
        let store = open(dir.path());
        let source = store.source(&id).unwrap().expect("the source survives");
        assert_eq!((source.name.as_str(), source.dedupe), ("stripe", None));
        assert_eq!(source.updated_at, Timestamp(2));
    }

    #[test]
    fn a_dedupe_claim_answers_the_first_request_until_its_window_ends() {
        use crate::domain::dedupe::DedupeClaim;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let source = SourceId::new();
        let claim = |at: u64| DedupeClaim {
            request_id: RequestId::new(),
            event_ids: vec![EventId::new()],
            at: Timestamp(at),
        };
        let first = claim(1_000);
        let op = |c: &DedupeClaim, identity: &str| {
            ops::claim_dedupe(&source, identity, c.clone(), 60_000)
        };
        rt().block_on(store.commit(vec![op(&first, "k1")])).unwrap();
        // A repeat within the window names the first request, and nothing of it is written.
        let repeat = claim(30_000);
        let marker = keys::source(&SourceId::new());
        let got =
            rt().block_on(store.commit(vec![op(&repeat, "k1"), Op::Put(marker.clone(), vec![1])]));
        match got {
            Err(StoreError::Duplicate {
                request_id,
                event_ids,
            }) => {
                assert_eq!(request_id, first.request_id);
                assert_eq!(event_ids, first.event_ids);
            }
            other => panic!("a repeat was not refused: {other:?}"),
        }
        assert!(store.inner.tree.get(&marker).unwrap().is_none());
        // Another identity, or the same one after the window, is a new request.
        rt().block_on(store.commit(vec![op(&claim(30_000), "k2")]))
            .unwrap();
        let later = claim(61_000);
        rt().block_on(store.commit(vec![op(&later, "k1")])).unwrap();
        let again = rt().block_on(store.commit(vec![op(&claim(62_000), "k1")]));
        assert!(
            matches!(&again, Err(StoreError::Duplicate { request_id, .. }) if *request_id == later.request_id),
            "{again:?}"
        );
        // Two at once (one group): exactly one is first.
        let (a, b) = (claim(200_000), claim(200_000));
        let both = rt().block_on(async {
            tokio::join!(
                store.commit(vec![op(&a, "k3")]),
                store.commit(vec![op(&b, "k3")])
            )
        });
        let firsts = [&both.0, &both.1].iter().filter(|r| r.is_ok()).count();
        assert_eq!(firsts, 1, "{both:?}");
        // Claims survive a restart.
        rt().block_on(store.close());
        let store = open(dir.path());
        assert!(matches!(
            rt().block_on(store.commit(vec![op(&claim(201_000), "k3")])),
            Err(StoreError::Duplicate { .. })
        ));
    }

    #[test]
    fn event_counts_follow_changes_and_are_built_for_a_version_3_store() {
        use crate::domain::event_metrics::EventCounts;
        use crate::domain::fixtures::event;
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let store = open(dir.path());
        let at = |minute: u64| Timestamp(1_700_000_040_000 + minute * 60_000);
        let made = |minute, status| {
            let mut e = event(&team);
            e.created_at = at(minute);
            e.status = status;
            e
        };
        let (a, b) = (made(0, EventStatus::Queued), made(2, EventStatus::Hold));
        rt().block_on(store.commit(vec![ops::put_event(&a), ops::put_event(&b)]))
            .unwrap();
        let delivered = EventPatch {
            status: Some(EventStatus::Successful),
            updated_at: at(3),
            ..Default::default()
        };
        rt().block_on(store.commit(vec![ops::patch_event(&team, &a.id, delivered)]))
            .unwrap();
        let counts = |store: &Store| {
            let from = crate::domain::event_metrics::minute_of(at(0));
            store
                .event_counts(&team, from, at(10).millis(), &CountsFilter::default())
                .unwrap()
        };
        let want = vec![
            (
                crate::domain::event_metrics::minute_of(at(0)),
                EventCounts {
                    successful: 1,
                    ..Default::default()
                },
            ),
            (
                crate::domain::event_metrics::minute_of(at(2)),
                EventCounts {
                    hold: 1,
                    ..Default::default()
                },
            ),
        ];
        assert_eq!(counts(&store), want);
        // A version 3 store (no counts) gets them at open.
        let mut writes: Vec<Op> = store
            .inner
            .tree
            .scan_prefix(keys::EVENT_COUNTS)
            .keys()
            .map(|k| Op::Remove(k.unwrap().to_vec()))
            .collect();
        writes.push(Op::Put(keys::LAYOUT.to_vec(), 3u32.to_be_bytes().to_vec()));
        rt().block_on(store.commit(writes)).unwrap();
        assert!(counts(&store).is_empty());
        rt().block_on(store.close());
        let store = open(dir.path());
        assert_eq!(counts(&store), want);
    }

    #[test]
    fn a_creation_time_range_bounds_the_walk_in_both_directions() {
        use crate::domain::fixtures::event;
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let store = open(dir.path());
        store.set_scan_budget(3);
        // Events two minutes apart, their ids minted at their creation.
        let at = |i: u64| Timestamp(1_700_000_000_000 + i * 120_000);
        let events: Vec<Event> = (0..100)
            .map(|i| {
                let mut e = event(&team);
                e.id = EventId::parse(&ids::id_bound_at(EventId::PREFIX, at(i).millis(), false))
                    .unwrap();
                e.created_at = at(i);
                e
            })
            .collect();
        rt().block_on(store.commit(events.iter().map(ops::put_event).collect()))
            .unwrap();
        let scope = EventScope {
            created_gte: Some(at(90)),
            created_lte: Some(at(92)),
            ..Default::default()
        };
        let page = |cursor: Option<String>, dir, limit| {
            let q = ListQuery {
                team: team.clone(),
                limit,
                cursor,
                dir,
            };
            let page = store.list_events(&q, &scope, |_| true).unwrap();
            (
                page.items.into_iter().map(|e| e.id).collect::<Vec<_>>(),
                page.next,
            )
        };
        let id = |i: usize| events[i].id.clone();
        assert_eq!(
            page(None, Direction::Asc, 10),
            (vec![id(90), id(91), id(92)], None)
        );
        let (items, next) = page(None, Direction::Desc, 2);
        assert_eq!(items, [id(92), id(91)]);
        assert_eq!(next.as_deref(), Some(id(91).as_str()));
        assert_eq!(page(next, Direction::Desc, 2), (vec![id(90)], None));
        // A cursor before the range starts at the range; one past it ends the walk.
        assert_eq!(
            page(Some(id(10).to_string()), Direction::Asc, 10).0,
            [id(90), id(91), id(92)]
        );
        assert_eq!(
            page(Some(id(95).to_string()), Direction::Asc, 10),
            (vec![], None)
        );
    }

    #[test]
    fn events_are_listed_by_connection_destination_and_source_a_page_reading_what_it_returns() {
        use crate::domain::fixtures::event;
        let dir = tempfile::tempdir().unwrap();
        let team = TeamId::new();
        let mut store = open(dir.path());
        // A page may read a few events past the ones it returns, never a walk of the team's.
        store.set_scan_budget(30);
        let (s1, s2) = (SourceId::new(), SourceId::new());
        let (d1, d2) = (DestinationId::new(), DestinationId::new());
        let connection = |source: &SourceId, destination: &DestinationId| Connection {
            id: ConnectionId::new(),
            team_id: team.clone(),
            name: "c".into(),
            source_id: source.clone(),
            destination_id: destination.clone(),
            rules: Default::default(),
            paused_at: None,
            disabled_at: None,
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        };
        // a and b: s1 to d1; c: s2 to d2, with nearly every event.
        let (a, b, c) = (
            connection(&s1, &d1),
            connection(&s1, &d1),
            connection(&s2, &d2),
        );
        let mut writes = Vec::new();
        for conn in [&a, &b, &c] {
            writes.extend(ops::put_connection(conn));
        }
        rt().block_on(store.commit(writes)).unwrap();
        let on = |conn: &Connection| {
            let mut e = event(&team);
            e.connection_id = conn.id.clone();
            e.source_id = conn.source_id.clone();
            e.destination_id = conn.destination_id.clone();
            e.status = EventStatus::Successful;
            e
        };
        let events: Vec<Event> = (0..600)
            .map(|i| match i % 10 {
                0 => on(&a),
                5 => on(&b),
                _ => on(&c),
            })
            .collect();
        // Groups of 20, each with one event of the group before it: ids reach the writer
        // out of order, as from several ingress threads.
        for (g, group) in events.chunks(20).enumerate() {
            let mut commit: Vec<Op> = group[1..].iter().map(ops::put_event).collect();
            if g > 0 {
                commit.push(ops::put_event(&events[g * 20 - 20]));
            }
            rt().block_on(store.commit(commit)).unwrap();
        }
        rt().block_on(store.commit(vec![ops::put_event(&events[580])]))
            .unwrap();
        let ids_of = |pick: &dyn Fn(&Event) -> bool| -> Vec<EventId> {
            events
                .iter()
                .filter(|e| pick(e))
                .map(|e| e.id.clone())
                .collect()
        };
        // Every page of `scope` in both directions, following the cursors.
        let walk = |store: &Store, scope: &EventScope, dir| {
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let q = ListQuery {
                    team: team.clone(),
                    limit: 7,
                    cursor,
                    dir,
                };
                let page = store.list_events(&q, scope, |e| scope.admits(e)).unwrap();
                assert!(page.next.is_none() || page.items.len() == 7, "a short page");
                all.extend(page.items.into_iter().map(|e| e.id));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => return all,
                }
            }
        };
        let check = |store: &Store, gone: &[EventId]| {
            let ids_of = |pick: &dyn Fn(&Event) -> bool| -> Vec<EventId> {
                ids_of(&|e| pick(e) && !gone.contains(&e.id))
            };
            let scopes = [
                (
                    EventScope {
                        connection: Some(a.id.clone()),
                        ..Default::default()
                    },
                    ids_of(&|e| e.connection_id == a.id),
                ),
                (
                    EventScope {
                        destination: Some(d1.clone()),
                        ..Default::default()
                    },
                    ids_of(&|e| e.destination_id == d1),
                ),
                (
                    EventScope {
                        source: Some(s1.clone()),
                        statuses: vec![EventStatus::Successful],
                        ..Default::default()
                    },
                    ids_of(&|e| e.source_id == s1),
                ),
                (
                    EventScope {
                        source: Some(s1.clone()),
                        destination: Some(d2.clone()),
                        ..Default::default()
                    },
                    Vec::new(),
                ),
            ];
            for (scope, expected) in &scopes {
                assert_eq!(&walk(store, scope, Direction::Asc), expected, "{scope:?}");
                let mut newest_first = expected.clone();
                newest_first.reverse();
                assert_eq!(
                    walk(store, scope, Direction::Desc),
                    newest_first,
                    "{scope:?}"
                );
            }
        };
        check(&store, &[]);
        // Purged events leave their lists; a store of layout 5 is listed (and linked) at open.
        let purged: Vec<EventId> = events
            .iter()
            .filter(|e| e.connection_id == b.id)
            .take(10)
            .map(|e| {
                let request = request_of(e, bytes::Bytes::from_static(b"{}"));
                rt().block_on(store.commit(vec![ops::put_request(request)]))
                    .unwrap();
                e.id.clone()
            })
            .collect();
        let mut writes: Vec<Op> = events
            .iter()
            .filter(|e| purged.contains(&e.id))
            .map(|e| ops::purge_request(&team, &e.request_id, Timestamp(2)))
            .collect();
        rt().block_on(store.commit(std::mem::take(&mut writes)))
            .unwrap();
        for id in &purged {
            assert!(store.event(&team, id).unwrap().is_none(), "purged");
        }
        // What the lists hold: their ids, and the links.
        let listed = |store: &Store| -> BTreeSet<Vec<u8>> {
            let tree = &store.inner.tree;
            let mut held = BTreeSet::new();
            for kv in tree.scan_prefix(keys::EVENT_LIST) {
                held.extend(kv.unwrap().1.chunks(30).map(<[u8]>::to_vec));
            }
            for key in tree.scan_prefix(keys::CONNECTION_LINK).keys() {
                held.insert(key.unwrap().to_vec());
            }
            held
        };
        let before = listed(&store);
        assert_eq!(before.len(), 600 - purged.len() + 6);
        for id in &purged {
            assert!(!before.contains(id.as_str().as_bytes()));
        }
        for kv in store.inner.tree.scan_prefix(keys::EVENT_LIST) {
            writes.push(Op::Remove(kv.unwrap().0.to_vec()));
        }
        for kv in store.inner.tree.scan_prefix(keys::CONNECTION_LINK) {
            writes.push(Op::Remove(kv.unwrap().0.to_vec()));
        }
        // b is deleted before the upgrade: its events still link it to d1 and s1.
        writes.push(ops::remove_connection(&b.id));
        writes.push(Op::Put(keys::LAYOUT.to_vec(), 5u32.to_be_bytes().to_vec()));
        rt().block_on(store.commit(writes)).unwrap();
        store = reopen(store, dir.path());
        store.set_scan_budget(30);
        assert_eq!(listed(&store), before, "the lists built at open");
        check(&store, &purged);
    }

    #[test]
    fn a_data_directory_of_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let newer = (layout::VERSION + 1).to_be_bytes().to_vec();
        rt().block_on(store.commit(vec![Op::Put(keys::LAYOUT.to_vec(), newer)]))
            .unwrap();
        rt().block_on(store.close());
        let refused =
            rt().block_on(async { Store::open(dir.path(), Durability::Flush, Duration::ZERO) });
        match refused {
            Err(e @ StoreError::NewerLayout { found, supported })
                if found == layout::VERSION + 1 && supported == layout::VERSION =>
            {
                assert!(e.to_string().contains(&format!("version {found}")), "{e}");
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a newer layout was opened"),
        }
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
            store.submit(vec![ops::dequeue(&d, &entry(1))]);
            store
                .commit(vec![
                    ops::enqueue(&d, &entry(3)),
                    ops::requeue(&d, &due(2, 7), None),
                    ops::patch_event(&team, &corrupt, patch),
                ])
                .await
        });
        assert!(
            matches!(failed, Err(StoreError::Corrupt(_))),
            "a patch of an unreadable event is an error, not swallowed: {failed:?}"
        );
        rt().block_on(store.commit(Vec::new())).unwrap();
        let queues = store.load_queues().unwrap();
        assert_eq!(
            seqs(&queues[&d]),
            [2],
            "the other message of the group was applied; the failed one not at all"
        );
        assert_eq!(store.queue_counts(&d).unwrap(), (1, 0));
        // The failed group left nothing to repair: entry 2 can be taken off.
        rt().block_on(store.commit(vec![ops::dequeue(&d, &entry(2))]))
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
        // them, the half it writes (17 entries, 255 KiB) is.
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
