//! Whether the store can write, and how it finds out that it can again. A full disk fails the
//! body log's writes (which recover by themselves once space returns) or sled's (which does
//! not: sled 0.34 keeps answering the first IO error until the database is reopened). The
//! writer records both; the server probes for space and, for sled, reopens the store by
//! restarting in place, which is exactly the crash recovery that kill -9 already exercises.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What the writer saw of its last group.
#[derive(Debug, Default)]
pub struct DiskHealth {
    /// The last group failed to write or sync: the store cannot take writes now.
    failing: AtomicBool,
    /// sled itself failed: it stays failed until the store is reopened.
    needs_reopen: AtomicBool,
}

impl DiskHealth {
    pub fn record(&self, outcome: &Result<(), super::StoreError>) {
        self.failing.store(outcome.is_err(), Relaxed);
        if let Err(super::StoreError::Sled(_)) = outcome {
            self.needs_reopen.store(true, Relaxed);
        }
    }

    pub fn failing(&self) -> bool {
        self.failing.load(Relaxed)
    }

    pub fn needs_reopen(&self) -> bool {
        self.needs_reopen.load(Relaxed)
    }

    /// Space came back and the body log can write again (its next group will say for sure).
    pub fn clear_failing(&self) {
        self.failing.store(false, Relaxed);
    }
}

/// Room for a few groups of commits: enough that writing again will not fail at once.
const PROBE_BYTES: usize = 4 * 1024 * 1024;

/// Whether `dir` takes `PROBE_BYTES` again (written, synced and removed). Blocking.
pub fn space_returned(dir: &Path) -> bool {
    if fault::disk_full() {
        return false;
    }
    let path = dir.join(".space-probe");
    let written = std::fs::File::create(&path).and_then(|mut f| {
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..PROBE_BYTES / chunk.len() {
            f.write_all(&chunk)?;
        }
        f.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    written.is_ok()
}

/// A full disk on demand, for the integration tests: in debug builds, while the file named by
/// `FASTHOOK_FAULT_FILE` exists, the writer fails its groups as sled does on a full disk (and
/// stays failed until the store is reopened), and the space probe fails. Release builds have
/// no switch.
pub mod fault {
    #[cfg(debug_assertions)]
    pub fn disk_full() -> bool {
        use std::sync::OnceLock;
        static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
        FILE.get_or_init(|| std::env::var_os("FASTHOOK_FAULT_FILE").map(Into::into))
            .as_ref()
            .is_some_and(|f| f.exists())
    }

    #[cfg(not(debug_assertions))]
    pub fn disk_full() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_sled_failure_needs_a_reopen_and_a_body_log_failure_only_space() {
        let h = DiskHealth::default();
        h.record(&Err(StoreError::Io("bodies/0.seg: no space".into())));
        assert!(h.failing() && !h.needs_reopen());
        h.record(&Ok(()));
        assert!(!h.failing());
        h.record(&Err(StoreError::Sled("IO error: no space".into())));
        assert!(h.failing() && h.needs_reopen());
        h.record(&Ok(()));
        assert!(h.needs_reopen(), "only a reopen clears sled's failure");
    }

    #[test]
    fn the_probe_writes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        assert!(space_returned(dir.path()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!space_returned(&dir.path().join("missing")));
    }
}
