//! Bulk retry jobs: created with a query, run in the background a page of events at a time,
//! stored with every step so a restart resumes them where they stopped.

use super::{Engine, EngineError, Result};
use crate::domain::bulk_retry::{BulkQuery, BulkRetryJob};
use crate::domain::*;
use crate::store::ops;

/// Events read per step of a job.
const PAGE: usize = 500;

impl Engine {
    /// Counts what `query` selects now, stores the job and starts it.
    pub async fn start_bulk_retry(&self, team: &TeamId, query: BulkQuery) -> Result<BulkRetryJob> {
        let now = Timestamp::now();
        let (store, t, q) = (self.store().clone(), team.clone(), query.clone());
        let estimated = tokio::task::spawn_blocking(move || -> crate::store::Result<u64> {
            let mut count = 0;
            let mut after: Option<EventId> = None;
            loop {
                let page = store.events_after(&t, after.as_ref(), PAGE)?;
                count += page.iter().filter(|e| q.selects(e, now)).count() as u64;
                match page.last() {
                    Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
                    _ => return Ok(count),
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
        let jobs = tokio::task::spawn_blocking(move || store.running_bulk_retries())
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
            let (t, after) = (job.team_id.clone(), job.cursor.clone());
            let page = self
                .store()
                .read_applied(move |s| s.events_after(&t, after.as_ref(), PAGE))
                .await?;
            let mut skipped = 0;
            for event in &page {
                if !job.query.selects(event, job.created_at) {
                    continue;
                }
                // The job's progress is stored with each retry: a crash never retries one
                // twice, nor skips one.
                let next = job.retried(&event.id, Timestamp::now());
                let retried = self
                    .retry_event(
                        &job.team_id,
                        &event.id,
                        Trigger::BulkRetry,
                        vec![ops::put_bulk_retry(&next)],
                    )
                    .await;
                match retried {
                    Ok(_) => job = next,
                    Err(EngineError::Refused { .. } | EngineError::NotFound(_)) => skipped += 1,
                    Err(e) => return Err(e),
                }
            }
            let now = Timestamp::now();
            if let Some(last) = page.last() {
                job = job.passed(&last.id, skipped, now);
            }
            if page.len() < PAGE {
                job = job.completed(now);
            }
            self.store().commit(vec![ops::put_bulk_retry(&job)]).await?;
            if page.len() < PAGE {
                tracing::info!(bulk_retry_id = %job.id, retried = job.retried_count, skipped = job.skipped_count, "bulk retry completed");
                return Ok(());
            }
        }
    }
}
