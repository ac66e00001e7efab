//! Opening sled's files: its recovery, then a walk of the tree's structure, with damage said
//! as a damaged data directory instead of a panic.
//!
//! sled 0.34 checksums each message of its log, but it can still recover a log whose damage
//! it does not see (a page the tree links to, lost; a page whose updates no longer fit it),
//! and it meets that damage with `assert!`s and `panic!`s on the first read of the page,
//! or with lookups that quietly miss keys. `Tree::check_structure` (vendor/sled/PATCHED.md)
//! reads every page once at open; a panic of sled's on this thread while it opens is caught
//! and reported, with where sled stopped, and the start is refused. Nothing opened that way
//! is used.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use super::StoreError;

thread_local! {
    /// While this thread opens sled: where sled panicked, instead of printing it.
    static CAUGHT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Opens sled in `dir` with a page cache of `cache_bytes` and its tree of `name`, checked.
pub fn open(
    dir: &Path,
    cache_bytes: u64,
    name: &str,
) -> Result<(sled::Db, sled::Tree), StoreError> {
    install_hook();
    CAUGHT.with(|caught| *caught.borrow_mut() = Some(None));
    let opened = panic::catch_unwind(AssertUnwindSafe(|| open_checked(dir, cache_bytes, name)));
    let panicked = CAUGHT.with(|caught| caught.borrow_mut().take().flatten());
    match opened {
        Ok(opened) => opened,
        Err(_) => Err(StoreError::Damaged(format!(
            "sled's own files (db, conf, snap.*) in {} do not read back (sled stopped: {}); \
             restore the directory from a backup",
            dir.display(),
            panicked.unwrap_or_else(|| "no message".into())
        ))),
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
        sled::Error::Corruption { .. } => StoreError::Damaged(format!(
            "sled's own files (db, conf, snap.*) in {} do not read back ({e}); \
             restore the directory from a backup",
            dir.display()
        )),
        e => e.into(),
    }
}

/// Chains a hook in front of the process's panic hook, once: on a thread inside `open`
/// it keeps the panic's message and place for the error; elsewhere it hands the panic on.
fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let kept = CAUGHT.with(|caught| match caught.borrow_mut().as_mut() {
                Some(slot) => {
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
                    *slot = Some(format!("{message}{place}"));
                    true
                }
                None => false,
            });
            if !kept {
                previous(info);
            }
        }));
    });
}
