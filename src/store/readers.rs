//! The threads that read the store: a fixed few, shared by the whole process.
//!
//! Blocking reads come from everywhere (each actor's queue pages, the bodies of attempts
//! about to start, API lists). On each runtime's own blocking pool every concurrent read
//! could start a thread, up to 512 per runtime, and mimalloc keeps memory per thread: a
//! destination starting 64 attempts at once held ~100 threads and ~500 MiB (BENCHMARKS.md,
//! W5). A fixed pool bounds both; reads beyond it wait their turn.

use std::sync::OnceLock;

/// Reads that run at once. sled reads mostly hit memory or the OS page cache; more threads
/// than this on two cores only add memory.
const READERS: usize = 4;

fn runtime() -> &'static tokio::runtime::Runtime {
    static READER_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    READER_RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(READERS)
            .thread_name("fasthook-read")
            .build()
            .expect("the store's reader threads start")
    })
}

/// Runs a blocking `read` on a reader thread; awaitable from any runtime.
pub async fn read<T, F>(read: F) -> Result<T, tokio::task::JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    runtime().spawn_blocking(read).await
}
