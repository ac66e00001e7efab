//! The one thread that writes. Callers hand it a list of operations; it applies everything
//! that has arrived as one `sled::Batch` (one tree, so one atomic unit), flushes once, and
//! only then answers the callers that asked to wait (group commit). Callers that did not
//! ask to wait (attempt records, status changes) ride the next flush. A group's request
//! bodies are appended to the body log, and synced, before its records reach sled.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::body_log::BodyAppender;
use super::body_log::BodyLog;
use super::codec;
use super::durable_mark::DurableMark;
use super::event_counts::{CountChanges, EventPlace};
use super::event_lists::{self, NewListed, Tails};
use super::event_record::EventRecord;
use super::keys;
use super::layout;
use super::queue_records::{GroupQueues, QueueChange};
use super::request_record::NewRequestRecord;
use super::request_record::RequestRecord;
use super::segments::{SegmentCounts, SegmentDeltas};
use super::tally::Tally;
use super::StoreError;
use crate::domain::dedupe::DedupeClaim;
use crate::domain::destination_core::QueueEntry;
use crate::domain::retention;
use crate::domain::{
    AttemptStatus, ConnectionId, EventPatch, EventStatus, Request, RequestId, TeamId, Timestamp,
};

/// What "durable" means when a commit is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// sled flush (`sync_file_range`) then `fdatasync` of the data file: survives power loss.
    Fsync,
    /// sled flush only: survives a process crash, not necessarily power loss.
    Flush,
    /// Acknowledge once applied in memory, before any flush. Benchmarks only.
    None,
}

pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// A new event's record; its place and status are for the tally and the counts.
    PutEvent {
        key: Vec<u8>,
        record: Vec<u8>,
        place: Box<EventPlace>,
        status: EventStatus,
    },
    /// A request: its body to the body log, the rest to its record.
    PutRequest(Box<Request>),
    /// Read-modify-write of an event, done by the writer so it sees every earlier write.
    PatchEvent {
        key: Vec<u8>,
        patch: EventPatch,
    },
    /// A change to a destination's durable queue (see `queue_records`).
    Queue(QueueChange),
    /// Stores a held entry of a connection.
    Hold {
        connection: ConnectionId,
        entry: QueueEntry,
    },
    /// Purges a request with its events, their attempts and (through its segment's count) its
    /// body, if it and every one of its events is still purgeable at `cutoff` (see
    /// `domain::retention`); otherwise leaves all of it.
    PurgeRequest {
        team: TeamId,
        id: RequestId,
        cutoff: Timestamp,
    },
    /// Removes a dedupe claim whose window has passed, unless a newer claim replaced it.
    ExpireClaim {
        key: Vec<u8>,
        at: Timestamp,
    },
    /// Claims a request identity for a source's dedupe: the whole message fails with
    /// `StoreError::Duplicate` (naming the first request) when a claim still covers it.
    ClaimDedupe {
        key: Vec<u8>,
        claim: DedupeClaim,
        window_ms: u64,
    },
}

impl Op {
    /// Roughly the bytes this op holds while it waits for the writer.
    fn weight(&self) -> usize {
        const SMALL: usize = 64;
        match self {
            Op::Put(key, value) => key.len() + value.len(),
            Op::PutEvent { key, record, .. } => key.len() + record.len() + SMALL,
            Op::PutRequest(request) => {
                let headers: usize = request.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
                request.body.len() + headers + SMALL
            }
            _ => SMALL,
        }
    }
}

/// Past this many bytes waiting for the writer, new ingress waits for room
/// (`Writer::room`): a disk that falls behind a flood slows the senders down instead of
/// growing the queue. The gateway's own writes (actors' state changes) never wait; their
/// number is bounded by what the actors have in flight.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

struct Message {
    ops: Vec<Op>,
    /// The ops' weight, counted in `WriterStats::queued_bytes` until the writer takes it.
    weight: usize,
    ack: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Answered once the group holding this message is applied, flushed or not.
    on_applied: Option<oneshot::Sender<()>>,
    /// The last message: write what came before, flush, and end the thread.
    stop: bool,
}

/// Figures for `/metrics` and the benchmark: how well group commit is grouping.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: std::sync::atomic::AtomicU64,
    pub flushes: std::sync::atomic::AtomicU64,
    pub messages: std::sync::atomic::AtomicU64,
    /// Groups after which new sled blob files were synced.
    pub blob_syncs: std::sync::atomic::AtomicU64,
    /// Whether the last group could be written.
    pub disk: super::disk_health::DiskHealth,
    /// Bytes of ops handed over and not yet taken into a group.
    pub queued_bytes: std::sync::atomic::AtomicUsize,
    /// Woken whenever the writer takes a group, for ingress waiting for room.
    room: tokio::sync::Notify,
    /// The sequence numbers of new entries, in the order the writer applied them.
    #[cfg(test)]
    pub applied_seqs: std::sync::Mutex<Vec<u64>>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    pub stats: std::sync::Arc<WriterStats>,
}

/// A group holds at most this many messages, so one huge burst cannot delay every ack
/// behind one enormous batch.
const MAX_GROUP: usize = 4096;

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
        tree: sled::Tree,
        db: sled::Db,
        bodies: BodyAppender,
        data_file: Option<File>,
        blob_dir: Option<std::path::PathBuf>,
        durability: Durability,
        linger: Duration,
        high_water: u64,
        tally: Arc<Tally>,
        body_log: Arc<BodyLog>,
        segments: SegmentCounts,
        mark: DurableMark,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let stats = std::sync::Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("fasthook-writer".into())
            .spawn(move || {
                let blobs = BlobSync {
                    dir: blob_dir,
                    since: std::time::SystemTime::now(),
                };
                run(
                    tree,
                    db,
                    bodies,
                    data_file,
                    blobs,
                    durability,
                    linger,
                    high_water,
                    rx,
                    &thread_stats,
                    &tally,
                    &body_log,
                    segments,
                    mark,
                )
            })
            .expect("spawn the store writer thread");
        (Writer { tx, stats }, handle)
    }

    /// Applies `ops` atomically and resolves once they are durable.
    pub fn commit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::SendError(msg)) = self.send(Message::new(ops, Some(ack))) {
            if let Some(ack) = msg.ack {
                let _ = ack.send(Err(StoreError::Closed));
            }
        }
        rx
    }

    /// Asks the thread to finish: everything sent before is written and flushed first.
    pub fn stop(&self) {
        let _ = self.send(Message {
            stop: true,
            ..Message::new(Vec::new(), None)
        });
    }

    /// Resolves once everything sent before is applied (readable), without waiting for a
    /// flush: a read after it sees every change the caller handed over before.
    pub fn applied(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.send(Message {
            on_applied: Some(tx),
            ..Message::new(Vec::new(), None)
        });
        rx
    }

    /// Applies `ops` atomically with the next group; nobody waits for the flush.
    pub fn submit(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        if self.send(Message::new(ops, None)).is_err() {
            tracing::error!("store writer is gone; a state change was not recorded");
        }
    }

    fn send(&self, message: Message) -> Result<(), mpsc::SendError<Message>> {
        use std::sync::atomic::Ordering::Relaxed;
        let weight = message.weight;
        self.stats.queued_bytes.fetch_add(weight, Relaxed);
        self.tx.send(message).inspect_err(|_| {
            self.stats.queued_bytes.fetch_sub(weight, Relaxed);
        })
    }

    /// Whether fewer than `MAX_QUEUED_BYTES` wait for the writer now.
    pub fn has_room(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.queued_bytes.load(Relaxed) < MAX_QUEUED_BYTES
    }

    /// Resolves once fewer than `MAX_QUEUED_BYTES` wait for the writer. Ingress waits here
    /// before it hands anything over, so nothing is stored while it waits.
    pub async fn room(&self) {
        loop {
            let room = self.stats.room.notified();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }
}

impl Message {
    fn new(ops: Vec<Op>, ack: Option<oneshot::Sender<Result<(), StoreError>>>) -> Message {
        Message {
            weight: ops.iter().map(Op::weight).sum(),
            ops,
            ack,
            on_applied: None,
            stop: false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    tree: sled::Tree,
    db: sled::Db,
    mut bodies: BodyAppender,
    data_file: Option<File>,
    mut blobs: BlobSync,
    durability: Durability,
    linger: Duration,
    mut high_water: u64,
    rx: mpsc::Receiver<Message>,
    stats: &WriterStats,
    tally: &Tally,
    body_log: &BodyLog,
    mut segments: SegmentCounts,
    mut mark: DurableMark,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut dirty = false;
    let mut injected_full = false;
    let mut tails = Tails::default();
    loop {
        // Block for the first message; if the channel is closed, flush what is left and stop.
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Idle: make unacknowledged writes durable too, so they never wait long.
                if dirty && make_durable(&db, data_file.as_ref(), durability).is_ok() {
                    dirty = false;
                    mark.record(high_water);
                    remove_segments(&mut segments, body_log);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut stopping = first.stop;
        let mut group = vec![first];
        let deadline = Instant::now() + linger;
        while group.len() < MAX_GROUP && !stopping {
            match rx.try_recv() {
                Ok(m) => {
                    stopping = m.stop;
                    group.push(m);
                }
                Err(mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                    std::hint::spin_loop()
                }
                Err(_) => break,
            }
        }
        stats.messages.fetch_add(group.len() as u64, Relaxed);
        let taken: usize = group.iter().map(|m| m.weight).sum();
        stats.queued_bytes.fetch_sub(taken, Relaxed);
        stats.room.notify_waiters();
        let mut acks = Vec::new();
        // Sized once: growing it op by op rehashed every key several times per group.
        let op_count = group.iter().map(|m| m.ops.len()).sum();
        let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::with_capacity(op_count);
        let mut staged = Staged::default();
        let mut queues = GroupQueues::default();
        // The highest sequence number the group's keys name, once applied.
        let mut group_high = high_water;
        let mut applied_waiters = Vec::new();
        let mut counted = CountChanges::default();
        let mut segment_deltas = SegmentDeltas::new();
        let mut listed = NewListed::default();
        for message in group {
            applied_waiters.extend(message.on_applied);
            #[cfg(test)]
            let seqs: Vec<u64> = message
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Queue(QueueChange::Enqueue { entry, .. }) | Op::Hold { entry, .. } => {
                        Some(entry.seq)
                    }
                    _ => None,
                })
                .collect();
            // Each message is applied whole or not at all: one that fails (a corrupt record
            // to patch, a body that cannot be staged) is answered with its error, and the
            // others of the group go on. Without a waiter its error is logged: it is a state
            // change an actor has already made in memory.
            let applied = apply_message(
                &tree,
                &mut bodies,
                &mut overlay,
                &mut staged,
                &mut queues,
                high_water,
                message.ops,
            )
            .map(|named| {
                group_high = group_high.max(named);
                counted.absorb(&mut staged.counts);
                listed.absorb(&mut staged.listed);
                for (segment, delta) in staged.segments.drain() {
                    *segment_deltas.entry(segment).or_default() += delta;
                }
            });
            #[cfg(test)]
            if applied.is_ok() {
                stats.applied_seqs.lock().unwrap().extend(seqs);
            }
            match (message.ack, applied) {
                (Some(ack), applied) => acks.push((ack, applied)),
                (None, Ok(())) => {}
                (None, Err(e)) => {
                    tracing::error!(error = %e, "a state change could not be recorded");
                }
            }
        }
        overlay.extend(queues.finish());
        let in_group = InGroup {
            tree: &tree,
            overlay: &overlay,
            staged: &staged,
        };
        // A group whose events cannot be listed is not written: a list never misses one.
        let listing = listed.into_listing(&tree, &in_group, &tails);
        let listing = listing.map(|mut listing| {
            overlay.extend(std::mem::take(&mut listing.writes));
            listing
        });
        let tallied = counted.by_connection();
        // The counts' records are written only here, so sled has the last group's.
        match counted.into_writes(&tree) {
            Ok(writes) => overlay.extend(writes.map(|(k, v)| (k, Some(v)))),
            Err(e) => tracing::error!(error = %e, "event counts could not be updated"),
        }
        let current_segment = bodies.current_segment();
        overlay.extend(segments.writes(&segment_deltas, current_segment));
        if group_high > high_water {
            overlay.insert(
                keys::HIGH_WATER.to_vec(),
                Some(layout::encode_mark(group_high)),
            );
        }
        let mut batch = sled::Batch::default();
        for (key, value) in overlay {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        // Bodies first, durable when the group is to be, so no record points at a lost body.
        let mut result = bodies.write_staged();
        if result.is_ok() && durability == Durability::Fsync {
            result = bodies.sync();
        }
        if let (Ok(()), Err(e)) = (&result, &listing) {
            result = Err(e.clone());
        }
        if result.is_ok() && (injected_full || super::disk_health::fault::disk_full()) {
            // The test switch: fail as sled does on a full disk, and stay failed.
            injected_full = true;
            result = Err(StoreError::Sled(
                "IO error: no space left on device (injected)".into(),
            ));
        }
        if result.is_ok() {
            result = tree.apply_batch(batch).map_err(StoreError::from);
            if result.is_ok() {
                high_water = group_high;
                tails.remember(listing.unwrap_or_default());
                tally.apply(tallied.iter());
                segments.applied(&segment_deltas, current_segment);
            }
        }
        // Readers waiting for the group read it now (or, if it failed, the disk as it was).
        for waiter in applied_waiters {
            let _ = waiter.send(());
        }
        stats.commits.fetch_add(1, Relaxed);
        dirty = true;
        if result.is_ok() && !acks.is_empty() && durability != Durability::None {
            result = make_durable(&db, data_file.as_ref(), durability);
            if durability == Durability::Fsync && result.is_ok() && blobs.changed() {
                result = blobs.sync_new();
                if result.is_ok() {
                    stats.blob_syncs.fetch_add(1, Relaxed);
                }
            }
            stats.flushes.fetch_add(1, Relaxed);
            dirty = false;
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "store commit failed");
        }
        stats.disk.record(&result);
        if result.is_ok() && !dirty {
            mark.record(high_water);
        }
        if result.is_ok() && (!dirty || durability == Durability::None) {
            remove_segments(&mut segments, body_log);
        }
        for (ack, applied) in acks {
            // A repeat names a first request that may be in this very group: it is answered
            // only once that request is durable.
            let outcome = match applied {
                Err(StoreError::Duplicate { .. }) => result.clone().and(applied),
                applied => applied.and(result.clone()),
            };
            let _ = ack.send(outcome);
        }
        if stopping {
            break;
        }
    }
    let last = bodies
        .write_staged()
        .and_then(|()| bodies.sync())
        .and_then(|()| make_durable(&db, data_file.as_ref(), Durability::Fsync));
    match last {
        Ok(()) => mark.record(high_water),
        Err(e) => tracing::error!(error = %e, "final flush failed"),
    }
}

/// File times come from the kernel's coarse clock, a few milliseconds behind; a file
/// written just after the last sync began may carry an earlier time than it.
const BLOB_MTIME_SLACK: Duration = Duration::from_millis(20);

/// sled writes a log item too large for a quarter of its segment (a value, or a whole leaf of
/// up to 33 entries when it rewrites one) to a file of its own under `blobs/`, and never
/// syncs it. Which groups make one cannot be told from their values (the 17-entry half of
/// a split leaf of 15 KiB records is one), so the writer watches the directory instead: a
/// new blob file changes its time. Tracks which blob files have been synced: those modified
/// since the last sync began.
struct BlobSync {
    dir: Option<std::path::PathBuf>,
    since: std::time::SystemTime,
}

impl BlobSync {
    /// Whether a blob file may have been made (or removed) since the last sync began: one
    /// `statx` per durable group.
    fn changed(&self) -> bool {
        let Some(dir) = &self.dir else { return false };
        std::fs::metadata(dir)
            .and_then(|m| m.modified())
            // A directory that cannot be read is synced: `sync_new` reports what is wrong.
            .map_or(true, |t| t + BLOB_MTIME_SLACK >= self.since)
    }

    fn sync_new(&mut self) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let started = std::time::SystemTime::now();
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", dir.display()));
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(true, |t| t + BLOB_MTIME_SLACK >= self.since);
            if fresh {
                File::open(entry.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
            }
        }
        File::open(dir).and_then(|f| f.sync_all()).map_err(io)?;
        self.since = started;
        Ok(())
    }
}

fn make_durable(
    db: &sled::Db,
    data_file: Option<&File>,
    durability: Durability,
) -> Result<(), StoreError> {
    db.flush()?;
    if durability == Durability::Fsync {
        if let Some(file) = data_file {
            file.sync_data()
                .map_err(|e| StoreError::Io(e.to_string()))?;
        }
    }
    Ok(())
}

/// Scratch space of one message, reused across messages: its writes before they join the
/// group's, and its queue changes, applied only once every other operation succeeded.
#[derive(Default)]
struct Staged {
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    queue_ops: Vec<QueueChange>,
    /// What it changes in the event counts (and so in the tally), written with the group.
    counts: CountChanges,
    /// Requests it stores (+) and purges (−), by body segment.
    segments: SegmentDeltas,
    /// The new events it lists in their connections' lists.
    listed: NewListed,
}

/// Keys as a message sees them: its own writes, then its group's, then sled.
struct InGroup<'a> {
    tree: &'a sled::Tree,
    overlay: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    staged: &'a Staged,
}

impl event_lists::Current for InGroup<'_> {
    fn current(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        current_value(self.tree, self.overlay, self.staged, key)
    }
}

/// A key's value as the group has it so far: the message's own writes, then the group's, then
/// sled (`None` when absent or removed).
fn current_value(
    tree: &sled::Tree,
    overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    staged: &Staged,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    match staged.writes.get(key).or_else(|| overlay.get(key)) {
        Some(v) => Ok(v.clone()),
        None => Ok(tree.get(key)?.map(|v| v.to_vec())),
    }
}

/// Deletes the files of segments emptied by batches that are now durable.
fn remove_segments(segments: &mut SegmentCounts, body_log: &BodyLog) {
    for segment in segments.take_removable() {
        match body_log.remove_segment(segment) {
            Ok(()) => tracing::info!(segment, "body segment removed: nothing in it is kept"),
            Err(e) => tracing::warn!(error = %e, segment, "cannot remove an emptied body segment"),
        }
    }
}

/// `Op::PurgeRequest`: reads the request and its events as the group has them, and removes
/// all of it only if every event is still purgeable.
fn purge_request(
    tree: &sled::Tree,
    overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    staged: &mut Staged,
    team: &TeamId,
    id: &RequestId,
    cutoff: Timestamp,
) -> Result<(), StoreError> {
    let current = |staged: &Staged, key: &[u8]| current_value(tree, overlay, staged, key);
    let request_key = keys::request(team, id);
    let Some(bytes) = current(staged, &request_key)? else {
        return Ok(());
    };
    let record: RequestRecord = codec::decode(&bytes)?;
    if record.request.created_at >= cutoff {
        return Ok(());
    }
    let mut events = Vec::with_capacity(record.request.event_ids.len());
    for event_id in &record.request.event_ids {
        let key = keys::event(team, event_id);
        if let Some(bytes) = current(staged, &key)? {
            let event = codec::decode::<EventRecord>(&bytes)?.event;
            if !retention::purgeable(&event, cutoff) {
                return Ok(());
            }
            events.push((key, event));
        }
    }
    for (key, event) in events {
        let group = InGroup {
            tree,
            overlay,
            staged: &*staged,
        };
        if let Some((run, rest)) =
            event_lists::unlist(tree, &group, team, &event.connection_id, &event.id)?
        {
            staged.writes.insert(run, rest);
        }
        staged.writes.insert(key, None);
        for index in keys::event_index(team, &event.connection_id, event.status, &event.id) {
            staged.writes.insert(index, None);
        }
        for attempt in tree.scan_prefix(keys::attempt_prefix(&event.id)).keys() {
            staged.writes.insert(attempt?.to_vec(), None);
        }
        staged
            .counts
            .change(&EventPlace::of(&event), |c| c.removed(event.status));
    }
    staged.writes.insert(request_key, None);
    *staged.segments.entry(record.body.segment()).or_default() -= 1;
    Ok(())
}

/// Applies one message's operations to the group, all or none. Returns the highest sequence
/// number its keys name (0 for none). `high_water` is at least every number named in sled.
fn apply_message(
    tree: &sled::Tree,
    bodies: &mut BodyAppender,
    overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    staged: &mut Staged,
    queues: &mut GroupQueues,
    high_water: u64,
    ops: Vec<Op>,
) -> Result<u64, StoreError> {
    staged.writes.clear();
    staged.queue_ops.clear();
    staged.counts.clear();
    staged.segments.clear();
    staged.listed.clear();
    let mut named = 0;
    // Queue records are written only at the end of a group, so earlier groups' are in sled.
    for op in ops {
        let change = match op {
            Op::Queue(change) => change,
            Op::Hold { connection, entry } => {
                named = named.max(entry.seq);
                staged.writes.insert(
                    keys::hold(&connection, entry.seq),
                    Some(codec::encode(&entry)),
                );
                continue;
            }
            Op::Put(k, v) => {
                staged.writes.insert(k, Some(v));
                continue;
            }
            Op::PutEvent {
                key,
                record,
                place,
                status,
            } => {
                staged
                    .listed
                    .add(&place.team, &place.connection, keys::last_segment(&key));
                staged.writes.insert(key, Some(record));
                staged.counts.change(&place, |c| c.moved(None, status));
                continue;
            }
            Op::Remove(k) => {
                staged.writes.insert(k, None);
                continue;
            }
            Op::ExpireClaim { key, at } => {
                let current = current_value(tree, overlay, staged, &key)?;
                if let Some(bytes) = current {
                    if codec::decode::<DedupeClaim>(&bytes)?.at == at {
                        staged.writes.insert(key, None);
                    }
                }
                continue;
            }
            Op::PurgeRequest { team, id, cutoff } => {
                purge_request(tree, overlay, staged, &team, &id, cutoff)?;
                continue;
            }
            Op::ClaimDedupe {
                key,
                claim,
                window_ms,
            } => {
                let current = current_value(tree, overlay, staged, &key)?;
                if let Some(bytes) = current {
                    let first = codec::decode::<DedupeClaim>(&bytes)?;
                    if first.covers(claim.at, window_ms) {
                        return Err(StoreError::Duplicate {
                            request_id: first.request_id,
                            event_ids: first.event_ids,
                        });
                    }
                }
                staged.writes.insert(key, Some(codec::encode(&claim)));
                continue;
            }
            Op::PutRequest(request) => {
                let body = bodies.stage(&request.body)?;
                *staged.segments.entry(body.segment()).or_default() += 1;
                let record = NewRequestRecord {
                    body,
                    request: &request,
                };
                staged.writes.insert(
                    keys::request(&request.team_id, &request.id),
                    Some(codec::encode(&record)),
                );
                continue;
            }
            Op::PatchEvent { key, patch } => {
                let current = current_value(tree, overlay, staged, &key)?;
                // A patch for an event that no longer exists (purged) is dropped.
                let Some(bytes) = current else { continue };
                let mut record = codec::decode::<EventRecord>(&bytes)?;
                let before = record.event.status;
                let attempted = patch
                    .attempt
                    .as_ref()
                    .map(|a| a.status == AttemptStatus::Failed);
                if let Some(spilled) = record.apply(patch) {
                    let attempt_key = keys::attempt(&spilled.event_id, spilled.attempt_number);
                    staged
                        .writes
                        .insert(attempt_key, Some(codec::encode(&spilled)));
                }
                let e = &record.event;
                if e.status != before || attempted.is_some() {
                    staged.counts.change(&EventPlace::of(e), |c| {
                        if e.status != before {
                            c.moved(Some(before), e.status);
                        }
                        if let Some(failed) = attempted {
                            c.attempted(failed);
                        }
                    });
                }
                if e.status != before {
                    // The index follows the status in the same batch.
                    for gone in keys::event_index(&e.team_id, &e.connection_id, before, &e.id) {
                        staged.writes.insert(gone, None);
                    }
                    for new in keys::event_index(&e.team_id, &e.connection_id, e.status, &e.id) {
                        staged.writes.insert(new, Some(Vec::new()));
                    }
                }
                staged.writes.insert(key, Some(codec::encode(&record)));
                continue;
            }
        };
        // Read now what the change will touch; change it only once the whole message is in.
        queues.prepare(tree, &change, high_water)?;
        named = named.max(change.names());
        staged.queue_ops.push(change);
    }
    overlay.extend(staged.writes.drain());
    for change in staged.queue_ops.drain(..) {
        queues.apply(change);
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::SystemTime;

    #[test]
    fn ingress_waits_for_room_while_the_writer_is_behind_and_goes_on_once_it_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store =
                super::super::Store::open(dir.path(), Durability::Flush, Duration::ZERO).unwrap();
            let stats = &store.writer().stats;
            // As if a full queue were waiting: the writer has not taken it yet.
            stats.queued_bytes.fetch_add(MAX_QUEUED_BYTES, Relaxed);
            // A writer that does not catch up: ingress gives up, nothing handed over.
            let short = Duration::from_millis(50);
            assert!(matches!(
                store.room(short).await,
                Err(StoreError::Behind(d)) if d == short
            ));
            let mut room = std::pin::pin!(store.room(Duration::from_secs(10)));
            tokio::select! {
                biased;
                _ = &mut room => panic!("room while the writer is a full queue behind"),
                _ = tokio::task::yield_now() => {}
            }
            // The writer catches up: the next group it takes wakes the waiter.
            stats.queued_bytes.fetch_sub(MAX_QUEUED_BYTES, Relaxed);
            let big = vec![7u8; 1 << 20];
            store
                .commit(vec![Op::Put(b"k".to_vec(), big)])
                .await
                .unwrap();
            room.await.expect("room once the writer took its group");
            assert_eq!(
                stats.queued_bytes.load(Relaxed),
                0,
                "every taken byte is uncounted"
            );
        });
    }

    #[test]
    fn the_blob_directory_counts_as_changed_only_after_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let mut sync = BlobSync {
            dir: Some(dir.path().to_path_buf()),
            since: later,
        };
        assert!(
            !sync.changed(),
            "nothing new since a sync that began after the last change"
        );

        let before = SystemTime::now();
        std::fs::write(dir.path().join("123"), b"blob").unwrap();
        sync.since = before;
        assert!(sync.changed(), "a file made after the last sync began");
        sync.sync_new().unwrap();
        assert!(sync.since >= before);

        let none = BlobSync {
            dir: None,
            since: before,
        };
        assert!(!none.changed(), "no blob directory, nothing to sync");
    }
}
