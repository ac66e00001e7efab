//! The retention sweep: every `retention.sweep_interval`, purge what `retention.days` no longer
//! keeps. It reads on the store's reader threads and purges through the writer in small
//! commits, one after the other, so ingress and deliveries share the writer with it and never
//! wait behind a whole sweep.

use std::time::Duration;

use crate::config::RetentionConfig;
use crate::domain::{retention, Timestamp};
use crate::store::retention::Candidates;
use crate::store::{ops, readers, Op, Store};

/// Requests purged per commit.
const PURGE_BATCH: usize = 256;

/// Runs the sweep for as long as the process does (nothing to do when retention is off).
pub async fn run(store: Store, config: RetentionConfig) {
    let Some(max_age) = config.max_age() else {
        return;
    };
    loop {
        tokio::time::sleep(config.sweep_interval).await;
        match sweep(&store, max_age).await {
            Ok((0, 0)) => {}
            Ok((requests, claims)) => {
                tracing::info!(requests, claims, "retention: purged what is no longer kept")
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep stopped; it runs again later"),
        }
    }
}

/// One pass: every finished request older than the cutoff, and every expired dedupe claim.
/// Answers how many of each it purged (requests: as asked; the writer keeps any that changed).
pub async fn sweep(store: &Store, max_age: Duration) -> Result<(u64, u64), String> {
    let now = Timestamp::now();
    let cutoff = retention::cutoff(now, max_age.as_millis() as u64);
    let requests = purge_all(
        store,
        move |s, from| s.purge_candidates(cutoff, from),
        |(team, id)| ops::purge_request(team, id, cutoff),
    )
    .await?;
    let claims = purge_all(
        store,
        move |s, from| s.expired_claims(now, from),
        |(key, at)| ops::expire_claim(key.clone(), *at),
    )
    .await?;
    Ok((requests, claims))
}

/// Finds with `find` on a reader thread, a call at a time from where the last stopped, and
/// commits `op` of everything found in small batches. Answers how many ops it committed.
async fn purge_all<T: Send + 'static>(
    store: &Store,
    find: impl Fn(&Store, Option<Vec<u8>>) -> crate::store::Result<Candidates<T>>
        + Clone
        + Send
        + 'static,
    op: impl Fn(&T) -> Op,
) -> Result<u64, String> {
    let mut done = 0u64;
    let mut from = None;
    loop {
        let (reader, find) = (store.clone(), find.clone());
        let found = readers::read(move || find(&reader, from))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for chunk in found.found.chunks(PURGE_BATCH) {
            store
                .commit(chunk.iter().map(&op).collect())
                .await
                .map_err(|e| e.to_string())?;
            done += chunk.len() as u64;
        }
        from = found.resume;
        if from.is_none() {
            return Ok(done);
        }
    }
}
