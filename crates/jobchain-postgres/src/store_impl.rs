//! [`Store`] for [`PgStore`]: single statements run on a pooled connection; anything
//! with more than one statement runs in a transaction.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use jobchain_core::job::{Job, JobId, NewJob};
use jobchain_core::registry::{PendingKind, WorkerRecord, WorkerRegistration};
use jobchain_core::rules;
use jobchain_core::store::{
    in_claim_order, Capabilities, ClaimRequest, ClaimedJob, CleanReport, Enqueued, ExpiredJob,
    JobFilter, Lease, MinuteCount, QueueInfo, QueueStats, SettleClaims, SettleResult, Settlement,
    SignalReceipt, Store,
};
use jobchain_core::workflow::{
    Dependency, NewWorkflow, StepResult, WorkflowFilter, WorkflowInfo, WorkflowStarted,
};
use jobchain_core::{StoreError, WorkflowId};
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Transaction};

use crate::queries::{
    dependency, job, limit, map_err, ops, queue, transition, wait, worker, workflow,
};
use crate::{grouped, PgStore};

impl PgStore {
    async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool().acquire().await.map_err(map_err)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool().begin().await.map_err(map_err)
    }
}

/// Starts a settle's transaction (one round trip).
const SETTLE_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off";

async fn commit<T>(tx: Transaction<'static, Postgres>, value: T) -> Result<T, StoreError> {
    tx.commit().await.map_err(map_err)?;
    Ok(value)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: true,
            claim_on_settle: true,
        }
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        // Plain jobs take one autocommit statement (one round trip instead of three), with
        // those of other callers waiting at the same time unless they are many already.
        if ops::inserts_in_one_statement(&jobs) {
            let enqueued = if jobs.len() <= grouped::MAX_REQUEST {
                self.insert_grouped(jobs).await?
            } else {
                ops::insert_many(&mut *self.conn().await?, self.sql(), &jobs).await?
            };
            self.wake_others();
            return Ok(enqueued);
        }
        let mut tx = self.begin().await?;
        let enqueued = ops::insert_many(&mut tx, self.sql(), &jobs).await?;
        let enqueued = commit(tx, enqueued).await?;
        self.wake_others();
        Ok(enqueued)
    }

    async fn start_workflow(&self, wf: NewWorkflow) -> Result<WorkflowStarted, StoreError> {
        let at_once =
            ops::start_workflow_at_once(&mut *self.conn().await?, self.sql(), &wf).await?;
        let started = match at_once {
            Some(started) => started,
            None => {
                let mut tx = self.begin().await?;
                let started = ops::start_workflow(&mut tx, self.sql(), &wf).await?;
                commit(tx, started).await?
            }
        };
        self.wake_others();
        Ok(started)
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if request.limit == 0 || request.kinds.is_empty() {
            return Ok(Vec::new());
        }
        if request.is_limited() {
            return job::claim_limited(&mut *self.conn().await?, self.sql(), &request).await;
        }
        if request.is_builtin_only() {
            return job::claim(&mut *self.conn().await?, self.sql(), &request).await;
        }
        let availability = self.availability();
        let key = (request.queue.clone(), request.kinds.clone());
        let cursor = self.cursor(&key);
        let mut conn = self.conn().await?;
        let mut jobs = match &cursor {
            Some(c) => job::claim_after(&mut conn, self.sql(), &request, c).await?,
            None => Vec::new(),
        };
        let mut started = cursor.map(|c| c.started);
        if jobs.len() < request.limit {
            // No cursor, or nothing more after it in its priority: from the front.
            let rest = ClaimRequest {
                limit: request.limit - jobs.len(),
                ..request.clone()
            };
            let more = job::claim(&mut conn, self.sql(), &rest).await?;
            jobs = in_claim_order(jobs.into_iter().chain(more).collect());
            started = None;
        }
        self.set_cursor(
            key,
            jobs.last(),
            availability,
            started.unwrap_or_else(std::time::Instant::now),
        );
        Ok(jobs)
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError> {
        Ok(self.settle_offering(settlements, None).await?.0)
    }

    async fn settle_and_claim(
        &self,
        settlements: Vec<Settlement>,
        offer: ClaimRequest,
    ) -> Result<(Vec<SettleResult>, SettleClaims), StoreError> {
        let usable = offer.limit > 0 && !offer.kinds.is_empty() && !offer.is_limited();
        self.settle_offering(settlements, usable.then_some(&offer))
            .await
    }

    async fn heartbeat(
        &self,
        leases: Vec<Lease>,
        lease: Duration,
    ) -> Result<Vec<JobId>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        job::heartbeat(&mut *self.conn().await?, self.sql(), &leases, lease).await
    }

    async fn expired(&self, limit: usize) -> Result<Vec<ExpiredJob>, StoreError> {
        job::expired(&mut *self.conn().await?, self.sql(), limit).await
    }

    async fn next_scheduled(&self) -> Result<Option<Duration>, StoreError> {
        job::next_scheduled(&mut *self.conn().await?, self.sql()).await
    }

    async fn change_marker(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn wait_for_change(&self, timeout: Duration) -> Result<bool, StoreError> {
        self.listen(timeout).await
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        job::get(&mut *self.conn().await?, self.sql(), id).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        job::list(&mut *self.conn().await?, self.sql(), &filter).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        job::queue_stats(&mut *self.conn().await?, self.sql()).await
    }

    async fn throughput(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<MinuteCount>, StoreError> {
        job::throughput(&mut *self.conn().await?, self.sql(), since).await
    }

    async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.begin().await?;
        let job = ops::retry(&mut tx, self.sql(), id).await?;
        let job = commit(tx, job).await?;
        self.wake_others();
        Ok(job)
    }

    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job, StoreError> {
        let mut tx = self.begin().await?;
        let job = ops::cancel(&mut tx, self.sql(), id, reason).await?;
        commit(tx, job).await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
        workflow::get(&mut *self.conn().await?, self.sql(), id).await
    }

    async fn list_workflows(
        &self,
        filter: WorkflowFilter,
    ) -> Result<Vec<WorkflowInfo>, StoreError> {
        workflow::list(&mut *self.conn().await?, self.sql(), &filter).await
    }

    async fn dependencies(&self, id: WorkflowId) -> Result<Vec<Dependency>, StoreError> {
        dependency::of_workflow(&mut *self.conn().await?, self.sql(), id).await
    }

    async fn step_results(&self, id: JobId) -> Result<Vec<StepResult>, StoreError> {
        dependency::step_results(&mut *self.conn().await?, self.sql(), id).await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowInfo, StoreError> {
        let mut tx = self.begin().await?;
        let info = ops::cancel_workflow(&mut tx, self.sql(), id).await?;
        commit(tx, info).await
    }

    async fn send_signal(
        &self,
        workflow: WorkflowId,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<SignalReceipt, StoreError> {
        let mut tx = self
            .pool()
            .begin_with(SETTLE_BEGIN)
            .await
            .map_err(map_err)?;
        let receipt = ops::send_signal(&mut tx, self.sql(), workflow, name, payload).await?;
        let receipt = commit(tx, receipt).await?;
        if !receipt.completed.is_empty() {
            self.wake_others();
        }
        Ok(receipt)
    }

    async fn received_signal(
        &self,
        workflow: WorkflowId,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        wait::received(&mut *self.conn().await?, self.sql(), workflow, name).await
    }

    async fn timer(
        &self,
        job: JobId,
        proposed: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        wait::timer(&mut *self.conn().await?, self.sql(), job, proposed).await
    }

    async fn clean(&self, older_than: Duration, limit: usize) -> Result<CleanReport, StoreError> {
        let mut tx = self.begin().await?;
        let report = ops::clean(&mut tx, self.sql(), older_than, limit).await?;
        commit(tx, report).await
    }

    async fn purge_dead(
        &self,
        older_than: Duration,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        job::purge_dead(
            &mut *self.conn().await?,
            self.sql(),
            older_than,
            kind,
            limit,
        )
        .await
    }

    async fn register_worker(&self, w: WorkerRegistration) -> Result<(), StoreError> {
        worker::register(&mut *self.conn().await?, self.sql(), &w).await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        worker::deregister(&mut *self.conn().await?, self.sql(), id).await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        worker::live(&mut *self.conn().await?, self.sql()).await
    }

    async fn expire_workers(&self) -> Result<u64, StoreError> {
        worker::expire(&mut *self.conn().await?, self.sql()).await
    }

    async fn pending_kinds(&self) -> Result<Vec<PendingKind>, StoreError> {
        worker::pending_kinds(&mut *self.conn().await?, self.sql()).await
    }

    async fn set_queue_paused(&self, name: &str, paused: bool) -> Result<QueueInfo, StoreError> {
        let info = queue::set_paused(&mut *self.conn().await?, self.sql(), name, paused).await?;
        if !paused {
            self.wake_others();
        }
        Ok(info)
    }

    async fn queue_records(&self) -> Result<Vec<QueueInfo>, StoreError> {
        queue::all(&mut *self.conn().await?, self.sql()).await
    }

    async fn periodic_last(
        &self,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        limit::periodic_last(&mut *self.conn().await?, self.sql(), name).await
    }

    async fn take_tick(
        &self,
        name: &str,
        tick: chrono::DateTime<chrono::Utc>,
        job: Option<NewJob>,
    ) -> Result<Option<Enqueued>, StoreError> {
        let mut tx = self.begin().await?;
        if !limit::advance_tick(&mut tx, self.sql(), name, tick).await? {
            return Ok(None);
        }
        let enqueued = match job {
            Some(job) => ops::insert_many(&mut tx, self.sql(), &[job]).await?.pop(),
            None => None,
        };
        let enqueued = commit(tx, enqueued).await?;
        self.wake_others();
        Ok(enqueued)
    }

    async fn close(&self) {
        // The listener holds a connection of the pool: let it go first, or closing the
        // pool would wait for it forever.
        self.stop_listening().await;
        self.pool().close().await;
        // Enqueues after this fail: the store is closed.
        self.stop_grouping();
    }
}

impl PgStore {
    /// Settles a batch; with an offer, the completions that take one call also claim jobs
    /// for the offering worker (see [`Store::settle_and_claim`]); the full settle never does.
    async fn settle_offering(
        &self,
        settlements: Vec<Settlement>,
        offer: Option<&ClaimRequest>,
    ) -> Result<(Vec<SettleResult>, SettleClaims), StoreError> {
        if settlements.is_empty() {
            return Ok((Vec::new(), SettleClaims::default()));
        }
        let mut results = vec![SettleResult::Stale; settlements.len()];
        let mut claims = SettleClaims::default();
        // Plain completions take one autocommit statement; the rest one transaction. If
        // the transaction fails, the completer writes the whole batch again: the plain
        // completions already committed are then rejected by their fence, harmlessly.
        let (plain, mut full) = rules::split_settle_batch(&settlements);
        if !plain.is_empty() {
            let batch: Vec<&Settlement> = plain.iter().map(|&i| &settlements[i]).collect();
            let written =
                transition::complete_plain(&mut *self.conn().await?, self.sql(), &batch).await?;
            for (i, result) in plain.into_iter().zip(written) {
                match result {
                    transition::PlainResult::Applied => {
                        results[i] = SettleResult::Applied {
                            follow_ups: Vec::new(),
                        }
                    }
                    transition::PlainResult::Stale => {}
                    transition::PlainResult::InWorkflow => full.push(i),
                }
            }
        }
        if full.is_empty() {
            // Plain completions make no job available: nobody needs waking.
            return Ok((results, claims));
        }
        // Completions whose follow-ups are plain jobs take one call; the rest (and these,
        // when a step they release may have to be skipped) the full settle.
        let (quick, rest): (Vec<usize>, Vec<usize>) = full
            .iter()
            .partition(|&&i| transition::completes_in_one_call(&settlements[i]));
        if !quick.is_empty() {
            let batch: Vec<&Settlement> = quick.iter().map(|&i| &settlements[i]).collect();
            let written =
                transition::complete_batch(&mut *self.conn().await?, self.sql(), &batch, offer)
                    .await?;
            if let Some(written) = written {
                claims = written.claims;
                for (&i, follow_ups) in quick.iter().zip(written.follow_ups) {
                    if let Some(follow_ups) = follow_ups {
                        results[i] = SettleResult::Applied { follow_ups };
                    }
                }
                full = rest;
            }
        }
        if full.is_empty() {
            // Follow-ups and released dependents are available now, unless the call
            // claimed them all for the offering worker: then nobody else need look.
            if !claims.all_claimed {
                self.wake_others();
            }
            return Ok((results, claims));
        }
        full.sort_unstable();
        // Usually the whole batch (workflow jobs): no copy then.
        let batch: Cow<'_, [Settlement]> = if full.len() == settlements.len() {
            Cow::Borrowed(&settlements)
        } else {
            Cow::Owned(full.iter().map(|&i| settlements[i].clone()).collect())
        };
        // Every statement of a settle finds its rows by primary key. A fresh schema has no
        // statistics until autovacuum first analyzes it, and a generic plan made then
        // (hashing a scan of all jobs) stays cached on the connection; pricing scans and
        // hash joins out inside the settle keeps its plans index probes from the start.
        let mut tx = self
            .pool()
            .begin_with(SETTLE_BEGIN)
            .await
            .map_err(map_err)?;
        let written = ops::settle(&mut tx, self.sql(), &batch).await?;
        let written = commit(tx, written).await?;
        for (i, result) in full.into_iter().zip(written) {
            results[i] = result;
        }
        // Follow-ups, released dependents, releases and zero-delay retries are available
        // now; other processes' idle workers should look.
        self.wake_others();
        claims.all_claimed = false;
        Ok((results, claims))
    }
}
