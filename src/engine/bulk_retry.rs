//! Bulk retry jobs: created with a query, run in the background a page of events at a time,
//! stored with every step so a restart resumes them where they stopped.

use super::{Engine, EngineError, Result};
use crate::domain::bulk_retry::{BulkQuery, BulkRetryJob};
use crate::domain::*;
use crate::store::{ops, Direction, ListQuery, Store, StoreError};

/// Events read per step of a job.
const PAGE: usize = 500;

impl Engine {
    /// Counts what `query` selects now, stores the job and starts it.
    pub async fn start_bulk_retry(&self, team: &TeamId, query: BulkQuery) -> Result<BulkRetryJob> {
        let now = Timestamp::now();
        let (store, t, q) = (self.store().clone(), team.clone(), query.clone());
        let estimated = crate::store::readers::read(move || -> crate::store::Result<u64> {
            let mut count = 0;
            let mut after: Option<EventId> = None;
            loop {
                let (selected, next) = select_page(&store, &t, &q, now, after)?;
                count += selected.len() as u64;
                match next {
                    Some(next) => after = Some(next),
                    None => return Ok(count),
                }
            }
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("bulk retry counter: {e}")))??;
        let job = BulkRetryJob::new(team.clone(), query, estimated, now);
        self.store().commit(vec![ops::put_bulk_retry(&job)]).await?;
        self.run_bulk_retry(job.clone());
        Ok(job)
    }

    pub fn bulk_retry(&self, team: &TeamId, id: &BulkRetryId) -> Result<BulkRetryJob> {
        self.store()
            .bulk_retry(id)?
            .filter(|j| &j.team_id == team)
            .ok_or(EngineError::NotFound("bulk retry"))
    }

    /// Resumes the jobs a stop or crash interrupted.
    pub(super) async fn resume_bulk_retries(&self) -> Result<()> {
        let store = self.store().clone();
        let jobs = crate::store::readers::read(move || store.running_bulk_retries())
            .await
            .map_err(|e| EngineError::Unavailable(format!("bulk retry reader: {e}")))??;
        for job in jobs {
            tracing::warn!(bulk_retry_id = %job.id, retried = job.retried_count, "resuming a bulk retry a stop interrupted");
            self.run_bulk_retry(job);
        }
        Ok(())
    }

    fn run_bulk_retry(&self, job: BulkRetryJob) {
        let engine = self.clone();
        actix::spawn(async move {
            let id = job.id.clone();
            if let Err(e) = engine.bulk_retry_steps(job).await {
                // It stays RUNNING in the store: the next start resumes it.
                tracing::error!(bulk_retry_id = %id, error = %e, "bulk retry stopped");
            }
        });
    }

    async fn bulk_retry_steps(&self, mut job: BulkRetryJob) -> Result<()> {
        loop {
            let (t, q, started, after) = (
                job.team_id.clone(),
                job.query.clone(),
                job.created_at,
                job.cursor.clone(),
            );
            let (page, next) = self
                .store()
                .read_applied(move |s| select_page(s, &t, &q, started, after))
                .await?;
            let mut skipped = 0;
            for event in &page {
                // The job's progress is stored with each retry: a crash never retries one
                // twice, nor skips one.
                let progressed = job.retried(&event.id, Timestamp::now());
                let retried = self
                    .retry_event(
                        &job.team_id,
                        &event.id,
                        Trigger::BulkRetry,
                        vec![ops::put_bulk_retry(&progressed)],
                    )
                    .await;
                match retried {
                    Ok(_) => job = progressed,
                    Err(EngineError::Refused { .. } | EngineError::NotFound(_)) => skipped += 1,
                    Err(e) => return Err(e),
                }
            }
            let now = Timestamp::now();
            if let Some(last) = next.as_ref().or(page.last().map(|e| &e.id)) {
                job = job.passed(last, skipped, now);
            }
            if next.is_none() {
                job = job.completed(now);
            }
            self.store().commit(vec![ops::put_bulk_retry(&job)]).await?;
            if next.is_none() {
                tracing::info!(bulk_retry_id = %job.id, retried = job.retried_count, skipped = job.skipped_count, "bulk retry completed");
                return Ok(());
            }
        }
    }
}

/// The next events `query` selects after `after`, in creation order, and where the page
/// after starts (`None`: nothing is left). From the narrowest list of the store's that holds
/// them (the status index for the common `FAILED`). Blocking.
fn select_page(
    store: &Store,
    team: &TeamId,
    query: &BulkQuery,
    started_at: Timestamp,
    after: Option<EventId>,
) -> crate::store::Result<(Vec<Event>, Option<EventId>)> {
    let q = ListQuery {
        team: team.clone(),
        limit: PAGE,
        cursor: after.map(|a| a.to_string()),
        dir: Direction::Asc,
    };
    let Some(filter) = query.filter(started_at) else {
        return Ok((Vec::new(), None));
    };
    let page = store.list_events(&q, &filter, |e| filter.admits(e))?;
    let next = page
        .next
        .map(|n| EventId::parse(&n).map_err(|e| StoreError::Corrupt(format!("event cursor: {e}"))))
        .transpose()?;
    Ok((page.items, next))
}
