//! Opening sled's files: its recovery, then a walk of the tree's structure, with damage said
//! as a damaged data directory instead of a panic.
//!
//! sled 0.34 checksums each message of its log, but it can still recover a log whose damage
//! it does not see (a page the tree links to, lost; a page whose updates no longer fit it),
//! and it meets that damage with `assert!`s and `panic!`s on the first read of the page,
//! or with lookups that quietly miss keys. `Tree::check_structure` (vendor/sled/PATCHED.md)
//! reads every page once at open; a panic of sled's while a store opens is caught
//! and reported, with where sled stopped, and the start is refused. Nothing opened that way
//! is used.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use super::StoreError;

/// Whether a store is being opened: sled's panics then (on the opening thread or on the
/// walk's) are kept for the error instead of printed.
static OPENING: AtomicBool = AtomicBool::new(false);

/// The first panic of sled's while opening: its message and place.
static CAUGHT: Mutex<Option<String>> = Mutex::new(None);

/// Opens sled in `dir` with a page cache of `cache_bytes` and its tree of `name`, checked.
pub fn open(
    dir: &Path,
    cache_bytes: u64,
    name: &str,
) -> Result<(sled::Db, sled::Tree), StoreError> {
    install_hook();
    OPENING.store(true, Ordering::SeqCst);
    let opened = panic::catch_unwind(AssertUnwindSafe(|| open_checked(dir, cache_bytes, name)));
    OPENING.store(false, Ordering::SeqCst);
    let caught = CAUGHT.lock().unwrap_or_else(|e| e.into_inner()).take();
    let stopped = |caught: Option<String>| {
        caught.map_or_else(String::new, |place| format!(" (sled stopped: {place})"))
    };
    match opened {
        Ok(Err(StoreError::Damaged(what))) => {
            Err(StoreError::Damaged(format!("{what}{}", stopped(caught))))
        }
        Ok(opened) => opened,
        Err(_) => Err(unreadable(dir, &stopped(caught))),
    }
}

fn open_checked(
    dir: &Path,
    cache_bytes: u64,
    name: &str,
) -> Result<(sled::Db, sled::Tree), StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // The writer flushes every group that anyone waits for, and idle changes within
        // 200 ms; sled's own periodic flusher would only add wake-ups.
        .flush_every_ms(None)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| damaged(dir, e))?;
    let tree = db.open_tree(name)?;
    let started = std::time::Instant::now();
    let pages = tree.check_structure().map_err(|e| damaged(dir, e))?;
    tracing::info!(pages, elapsed = ?started.elapsed(), "the store's tree is whole");
    Ok((db, tree))
}

/// sled's corruption, said as a damaged data directory naming sled's files.
fn damaged(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => unreadable(dir, &format!(" ({e})")),
        e => e.into(),
    }
}

/// The data directory is damaged: sled's files in `dir` do not read back (`detail` says how).
fn unreadable(dir: &Path, detail: &str) -> StoreError {
    StoreError::Damaged(format!(
        "sled's own files (db, conf, snap.*) in {} do not read back{detail}; restore the \
         directory from a backup",
        dir.display()
    ))
}

/// Chains a hook in front of the process's panic hook, once: while a store opens it keeps
/// the first panic's message and place for the error; otherwise it hands the panic on.
fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !OPENING.load(Ordering::SeqCst) {
                return previous(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            CAUGHT
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(format!("{message}{place}"));
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of many leaves (more than one stretch per level) that was written, split and
    /// partly emptied (merges) opens whole, and the walk reads at least every leaf once.
    #[test]
    fn a_whole_tree_of_many_leaves_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, tree) = open(dir.path(), 8 << 20, "t").unwrap();
            for i in 0u32..60_000 {
                tree.insert(i.to_be_bytes(), vec![7u8; 100]).unwrap();
            }
            for i in (0u32..60_000).filter(|i| i % 3 != 0 || *i < 20_000) {
                tree.remove(i.to_be_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let (_db, tree) = open(dir.path(), 8 << 20, "t").unwrap();
        let read = tree.check_structure().unwrap();
        assert!(read > 2 * 1024, "{read} pages read");
        assert_eq!(tree.len(), 13_333);
    }

    #[test]
    fn garbage_in_sleds_conf_is_a_damaged_directory_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), 8 << 20, "t").unwrap());
        std::fs::write(dir.path().join("conf"), b"garbage\x00\xff").unwrap();
        let refused = open(dir.path(), 8 << 20, "t").map(|_| ()).unwrap_err();
        let said = refused.to_string();
        assert!(matches!(refused, StoreError::Damaged(_)), "{said}");
        assert!(said.contains("conf") && said.contains("damaged"), "{said}");
    }
}
