//! Request bodies live outside the B-tree, appended to segment files under `bodies/`.
//!
//! **Why.** sled 0.34 rewrites whole leaves as they fill and split, so a 1 KiB body stored in
//! a record crosses sled's log several times; appended here it is written once, and sled's
//! records shrink to a few hundred bytes (BENCHMARKS.md has the figures).
//!
//! **Format.** A segment `{n:010}.seg` is a run of frames: body length (u32 LE), CRC-32 of the
//! body (u32 LE), the body. A record in sled points at a frame with a `BodyRef`.
//!
//! **Durability.** Only the store's writer appends. It writes a group's bodies with one
//! positional write and syncs them *before* the group's records go to sled, so a durable
//! record never points at a body that is not. A crash can leave a torn frame at the tail;
//! nothing refers to it, and appends after a restart go past it.
//!
//! **Removal.** Retention removes requests, never single bodies: the writer counts the live
//! requests of each segment (`G/{segment}` in sled, in the same batch as the requests) and
//! deletes a finished segment's file once its count reaches zero and that batch is durable.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where a body is: its segment, and its frame's offset and body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyRef {
    segment: u32,
    offset: u64,
    len: u32,
}

const FRAME_HEADER: usize = 8;

/// Segment files kept open for reading at most; past it the oldest is closed (reads of old
/// bodies are rare: retries and API reads of old requests).
const MAX_OPEN_SEGMENTS: usize = 64;

/// A new segment is started once the current one has reached this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

impl BodyRef {
    pub fn segment(&self) -> u32 {
        self.segment
    }
}

/// The read side, shared by every reader; files are opened once and kept until removed.
pub struct BodyLog {
    dir: PathBuf,
    files: Mutex<HashMap<u32, Arc<File>>>,
}

/// The append side, owned by the writer thread.
pub struct BodyAppender {
    dir: PathBuf,
    segment_bytes: u64,
    segment: u32,
    file: File,
    /// Bytes of the segment already written.
    written: u64,
    /// Frames staged by the current group, written by `write_staged`.
    staged: Vec<u8>,
    /// Written but not yet synced.
    unsynced: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(format!("{}: {e}", path.display()))
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.seg"))
}

impl BodyLog {
    /// Opens (or creates) the body directory; appends continue the newest segment.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
    ) -> Result<(Arc<BodyLog>, BodyAppender), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut newest = 0;
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let name = entry.map_err(io(dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u32>().ok())
            {
                newest = newest.max(n);
            }
        }
        let path = segment_path(dir, newest);
        let file = open_for_append(&path)?;
        let written = file.metadata().map_err(io(&path))?.len();
        let log = Arc::new(BodyLog {
            dir: dir.to_path_buf(),
            files: Mutex::new(HashMap::new()),
        });
        let appender = BodyAppender {
            dir: dir.to_path_buf(),
            segment_bytes,
            segment: newest,
            file,
            written,
            staged: Vec::new(),
            unsynced: false,
        };
        Ok((log, appender))
    }

    /// Reads a body back, checking its frame.
    pub fn read(&self, at: &BodyRef) -> Result<Vec<u8>, StoreError> {
        let file = self.file(at.segment)?;
        let mut frame = vec![0; FRAME_HEADER + at.len as usize];
        let corrupt = |why: &str| {
            StoreError::Corrupt(format!(
                "body at segment {} offset {}: {why}",
                at.segment, at.offset
            ))
        };
        file.read_exact_at(&mut frame, at.offset)
            .map_err(|e| corrupt(&e.to_string()))?;
        let (header, body) = frame.split_at(FRAME_HEADER);
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len != at.len {
            return Err(corrupt("length differs from its record"));
        }
        if crc != crc32fast::hash(body) {
            return Err(corrupt("checksum mismatch"));
        }
        frame.drain(..FRAME_HEADER);
        Ok(frame)
    }

    /// The segments on disk, oldest first.
    pub fn segments(&self) -> Result<Vec<u32>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let name = entry.map_err(io(&self.dir))?.file_name();
            if let Some(n) = name
                .to_string_lossy()
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u32>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes a segment nothing refers to any more, and forgets its open file (an open file
    /// would keep its disk space).
    pub fn remove_segment(&self, segment: u32) -> Result<(), StoreError> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
        let path = segment_path(&self.dir, segment);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    fn file(&self, segment: u32) -> Result<Arc<File>, StoreError> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = files.get(&segment) {
            return Ok(file.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = Arc::new(File::open(&path).map_err(io(&path))?);
        if files.len() >= MAX_OPEN_SEGMENTS {
            if let Some(oldest) = files.keys().min().copied() {
                files.remove(&oldest);
            }
        }
        files.insert(segment, file.clone());
        Ok(file)
    }
}

fn open_for_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))
}

impl BodyAppender {
    /// The segment being appended to.
    pub fn current_segment(&self) -> u32 {
        self.segment
    }

    /// Stages a body for the current group and says where it will be.
    pub fn stage(&mut self, body: &[u8]) -> Result<BodyRef, StoreError> {
        let frame_len = (FRAME_HEADER + body.len()) as u64;
        let end = self.written + self.staged.len() as u64;
        if end > 0 && end + frame_len > self.segment_bytes {
            self.roll()?;
        }
        let at = BodyRef {
            segment: self.segment,
            offset: self.written + self.staged.len() as u64,
            len: u32::try_from(body.len())
                .map_err(|_| StoreError::Io("a body over 4 GiB cannot be stored".into()))?,
        };
        self.staged.extend_from_slice(&at.len.to_le_bytes());
        self.staged
            .extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        self.staged.extend_from_slice(body);
        Ok(at)
    }

    /// Writes the staged frames with one positional write. On failure nothing counts as
    /// written, so the next group writes over whatever part reached the file.
    pub fn write_staged(&mut self) -> Result<(), StoreError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all_at(&self.staged, self.written);
        if result.is_ok() {
            self.written += self.staged.len() as u64;
            self.unsynced = true;
        }
        self.staged.clear();
        result.map_err(io(&segment_path(&self.dir, self.segment)))
    }

    /// Makes written bodies durable (`fdatasync`), if any are not yet.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(io(&segment_path(&self.dir, self.segment)))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Finishes the current segment (its staged frames written and synced) and starts the
    /// next; the directory is synced so the new file survives a power loss too.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.write_staged()?;
        self.sync()?;
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        self.file = open_for_append(&path)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.segment = next;
        self.written = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_a_bounded_number_of_segments_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut appender) = BodyLog::open(dir.path(), 16).unwrap();
        let refs: Vec<BodyRef> = (0..200u8)
            .map(|i| {
                let r = appender.stage(&[i; 12]).unwrap();
                appender.write_staged().unwrap();
                r
            })
            .collect();
        assert!(refs.last().unwrap().segment as usize > MAX_OPEN_SEGMENTS);
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(log.read(r).unwrap(), vec![i as u8; 12]);
        }
        let open = log.files.lock().unwrap().len();
        assert!(open <= MAX_OPEN_SEGMENTS, "{open} files open");
        // An old segment closed in between is opened again when read.
        assert_eq!(log.read(&refs[0]).unwrap(), vec![0u8; 12]);
    }

    #[test]
    fn bodies_read_back_across_segments_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let bodies: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize * 7]).collect();
        let mut refs = Vec::new();
        {
            let (log, mut appender) = BodyLog::open(dir.path(), 100).unwrap();
            for (i, body) in bodies.iter().enumerate() {
                refs.push(appender.stage(body).unwrap());
                if i % 3 == 2 {
                    appender.write_staged().unwrap();
                    appender.sync().unwrap();
                }
            }
            appender.write_staged().unwrap();
            assert!(
                refs.iter().map(|r| r.segment).max().unwrap() > 3,
                "small segments roll over"
            );
            for (r, body) in refs.iter().zip(&bodies) {
                assert_eq!(&log.read(r).unwrap(), body);
            }
        }
        let (log, mut appender) = BodyLog::open(dir.path(), 100).unwrap();
        for (r, body) in refs.iter().zip(&bodies) {
            assert_eq!(&log.read(r).unwrap(), body, "after reopen");
        }
        let last = refs.last().unwrap();
        let more = appender.stage(b"after").unwrap();
        assert!(
            (more.segment, more.offset) > (last.segment, last.offset),
            "appends continue after the last body"
        );
        appender.write_staged().unwrap();
        assert_eq!(log.read(&more).unwrap(), b"after");
        let on_disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(
            on_disk,
            bodies.iter().map(|b| b.len() as u64 + 8).sum::<u64>() + 5 + 8,
            "each body takes its length and an 8-byte frame, nothing more"
        );
    }

    #[test]
    fn appends_go_past_a_torn_tail_and_a_damaged_body_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut appender) = BodyLog::open(dir.path(), SEGMENT_BYTES).unwrap();
        let first = appender.stage(b"kept").unwrap();
        appender.write_staged().unwrap();
        appender.sync().unwrap();
        drop(appender);
        // A crash mid-append leaves part of a frame that no record points at.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        fs::write(&seg, &bytes).unwrap();

        let (_, mut appender) = BodyLog::open(dir.path(), SEGMENT_BYTES).unwrap();
        let second = appender.stage(b"next").unwrap();
        appender.write_staged().unwrap();
        assert_eq!(log.read(&first).unwrap(), b"kept");
        assert_eq!(log.read(&second).unwrap(), b"next");

        // Flip a byte of the first body: its checksum no longer matches.
        let mut bytes = fs::read(&seg).unwrap();
        bytes[FRAME_HEADER] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let fresh = BodyLog::open(dir.path(), SEGMENT_BYTES).unwrap().0;
        assert!(matches!(fresh.read(&first), Err(StoreError::Corrupt(_))));
        let past_end = BodyRef {
            segment: 0,
            offset: 1 << 20,
            len: 4,
        };
        assert!(matches!(fresh.read(&past_end), Err(StoreError::Corrupt(_))));
    }
}
