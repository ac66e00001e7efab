//! A copy of the store's high-water mark outside sled (`data/durable-mark`), written after
//! every flush that made sled's writes durable. sled's recovery cannot tell a log that ends
//! early because of damage from one that ends where the last flush did: it starts with what
//! it finds. If sled comes back below the mark, writes it had acknowledged are gone, and the
//! gateway refuses to start rather than run silently with less than it accepted.
//!
//! The mark is written after the flush and never synced itself, so it is never ahead of what
//! sled made durable: a crash or a power loss can leave it behind, never in front.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StoreError;

pub const FILE_NAME: &str = "durable-mark";
const MAGIC: &[u8; 4] = b"FHMK";

pub struct DurableMark {
    file: File,
    path: PathBuf,
    written: u64,
}

impl DurableMark {
    /// Opens (or creates) the mark in `dir` and answers the mark it holds, if it holds one.
    pub fn open(dir: &Path) -> Result<(DurableMark, Option<u64>), StoreError> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        let mut bytes = [0u8; 16];
        let mark = match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => decode(&bytes),
            Err(_) => None,
        };
        let mark_file = DurableMark {
            file,
            path,
            written: mark.unwrap_or(0),
        };
        Ok((mark_file, mark))
    }

    /// Records that sled holds everything up to `seq` durably.
    pub fn record(&mut self, seq: u64) {
        if seq <= self.written {
            return;
        }
        match self.file.write_all_at(&encode(seq), 0) {
            Ok(()) => self.written = seq,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot update the durable mark")
            }
        }
    }
}

/// Refuses a store whose sled came back below the mark.
pub fn check(dir: &Path, mark: Option<u64>, recovered: u64) -> Result<(), StoreError> {
    match mark {
        Some(mark) if mark > recovered => Err(StoreError::Damaged(format!(
            "{db} ends at sequence number {recovered}, but it had made {mark} durable \
             ({mark_file}): writes it acknowledged are gone. Restore the data directory from a \
             backup, or delete {mark_file} to start with what is left",
            db = dir.join("db").display(),
            mark_file = dir.join(FILE_NAME).display(),
        ))),
        _ => Ok(()),
    }
}

fn encode(seq: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The mark, or `None` for a file that is empty or not one (a torn first write).
fn decode(bytes: &[u8; 16]) -> Option<u64> {
    let crc = u32::from_be_bytes(bytes[12..].try_into().ok()?);
    (&bytes[..4] == MAGIC && crc32fast::hash(&bytes[..12]) == crc)
        .then(|| u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_round_trips_only_grows_and_a_torn_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let (mut m, none) = DurableMark::open(dir.path()).unwrap();
        assert_eq!(none, None);
        m.record(7);
        m.record(3);
        drop(m);
        let (_, mark) = DurableMark::open(dir.path()).unwrap();
        assert_eq!(mark, Some(7));
        let mut bytes = encode(9);
        bytes[6] ^= 1;
        assert_eq!(decode(&bytes), None);
        assert!(check(dir.path(), Some(7), 7).is_ok());
        assert!(check(dir.path(), None, 0).is_ok());
        let refused = check(dir.path(), Some(8), 7).unwrap_err().to_string();
        assert!(
            refused.contains("durable-mark") && refused.contains("db"),
            "{refused}"
        );
    }
}
