//! [`Store`] for [`SqliteStore`]: each operation is one write (group-committed) or one
//! read, delegating its SQL to [`crate::queries`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobchain_core::job::{Job, JobId, NewJob};
use jobchain_core::registry::{PendingKind, WorkerRecord, WorkerRegistration};
use jobchain_core::store::{
    Capabilities, ClaimRequest, ClaimedJob, CleanReport, Enqueued, ExpiredJob, JobFilter, Lease,
    MinuteCount, QueueInfo, QueueStats, SettleResult, Settlement, SignalReceipt, Store,
};
use jobchain_core::workflow::{
    Dependency, NewWorkflow, StepResult, WorkflowFilter, WorkflowInfo, WorkflowStarted,
};
use jobchain_core::{StoreError, WorkflowId};

use crate::queries::{
    dependency, duration_ms, job, limit, now_ms, ops, queue, to_time, wait, worker, workflow,
};
use crate::SqliteStore;

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: false,
            claim_on_settle: false,
        }
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        // One job outside workflows is one INSERT (a unique key adds only a read).
        if let [job] = jobs.as_slice() {
            if job.workflow_id.is_none() {
                return self
                    .write_statement(move |conn| ops::insert_many(conn, now_ms(), &jobs))
                    .await;
            }
        }
        self.write(move |conn| ops::insert_many(conn, now_ms(), &jobs))
            .await
    }

    async fn start_workflow(&self, wf: NewWorkflow) -> Result<WorkflowStarted, StoreError> {
        self.write(move |conn| ops::start_workflow(conn, now_ms(), &wf))
            .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if request.limit == 0 || request.kinds.is_empty() {
            return Ok(Vec::new());
        }
        if request.is_limited() {
            return self
                .write(move |conn| ops::claim_limited(conn, now_ms(), &request))
                .await;
        }
        self.write_statement(move |conn| job::claim(conn, now_ms(), &request, job::Pick::Due))
            .await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |conn| ops::settle(conn, now_ms(), &settlements))
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
        self.write(move |conn| job::heartbeat(conn, now_ms(), &leases, lease))
            .await
    }

    async fn expired(&self, limit: usize) -> Result<Vec<ExpiredJob>, StoreError> {
        self.read(move |conn| job::expired(conn, now_ms(), limit))
            .await
    }

    async fn next_scheduled(&self) -> Result<Option<Duration>, StoreError> {
        self.read(|conn| job::next_scheduled(conn, now_ms())).await
    }

    async fn change_marker(&self) -> Result<u64, StoreError> {
        self.data_version().await
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.read(move |conn| job::get(conn, id)).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        self.read(move |conn| job::list(conn, &filter)).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        self.read(job::queue_stats).await
    }

    async fn throughput(&self, since: DateTime<Utc>) -> Result<Vec<MinuteCount>, StoreError> {
        let since = since.timestamp_millis();
        self.read(move |conn| job::throughput(conn, since)).await
    }

    async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        self.write(move |conn| ops::retry(conn, now_ms(), id)).await
    }

    async fn cancel(&self, id: JobId, reason: &str) -> Result<Job, StoreError> {
        let reason = reason.to_string();
        self.write(move |conn| ops::cancel(conn, now_ms(), id, &reason))
            .await
    }

    async fn workflow(&self, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
        self.read(move |conn| workflow::get(conn, id)).await
    }

    async fn list_workflows(
        &self,
        filter: WorkflowFilter,
    ) -> Result<Vec<WorkflowInfo>, StoreError> {
        self.read(move |conn| workflow::list(conn, &filter)).await
    }

    async fn dependencies(&self, id: WorkflowId) -> Result<Vec<Dependency>, StoreError> {
        self.read(move |conn| dependency::of_workflow(conn, id))
            .await
    }

    async fn step_results(&self, id: JobId) -> Result<Vec<StepResult>, StoreError> {
        self.read(move |conn| dependency::step_results(conn, id))
            .await
    }

    async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowInfo, StoreError> {
        self.write(move |conn| ops::cancel_workflow(conn, now_ms(), id))
            .await
    }

    async fn send_signal(
        &self,
        workflow: WorkflowId,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<SignalReceipt, StoreError> {
        let name = name.to_string();
        self.write(move |conn| ops::send_signal(conn, now_ms(), workflow, &name, payload))
            .await
    }

    async fn received_signal(
        &self,
        workflow: WorkflowId,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| wait::received(conn, workflow, &name))
            .await
    }

    async fn timer(
        &self,
        job: JobId,
        proposed: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let proposed = proposed.timestamp_millis();
        let due = self
            .write_statement(move |conn| wait::timer(conn, job, proposed))
            .await?;
        Ok(to_time(due))
    }

    async fn clean(&self, older_than: Duration, limit: usize) -> Result<CleanReport, StoreError> {
        self.write(move |conn| ops::clean(conn, now_ms(), older_than, limit))
            .await
    }

    async fn purge_dead(
        &self,
        older_than: Duration,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let kind = kind.map(str::to_string);
        self.write_statement(move |conn| {
            let cutoff = now_ms().saturating_sub(duration_ms(older_than));
            job::purge_dead(conn, cutoff, kind.as_deref(), limit)
        })
        .await
    }

    async fn register_worker(&self, w: WorkerRegistration) -> Result<(), StoreError> {
        self.write_statement(move |conn| worker::register(conn, now_ms(), &w))
            .await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write_statement(move |conn| worker::deregister(conn, &id))
            .await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.read(|conn| worker::live(conn, now_ms())).await
    }

    async fn expire_workers(&self) -> Result<u64, StoreError> {
        self.write_statement(|conn| worker::expire(conn, now_ms()))
            .await
    }

    async fn pending_kinds(&self) -> Result<Vec<PendingKind>, StoreError> {
        self.read(worker::pending_kinds).await
    }

    async fn set_queue_paused(&self, name: &str, paused: bool) -> Result<QueueInfo, StoreError> {
        let name = name.to_string();
        self.write_statement(move |conn| queue::set_paused(conn, now_ms(), &name, paused))
            .await
    }

    async fn queue_records(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.read(queue::all).await
    }

    async fn periodic_last(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let name = name.to_string();
        let last = self
            .read(move |conn| limit::periodic_last(conn, &name))
            .await?;
        Ok(last.map(crate::queries::to_time))
    }

    async fn take_tick(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: Option<NewJob>,
    ) -> Result<Option<Enqueued>, StoreError> {
        let name = name.to_string();
        self.write(move |conn| {
            if !limit::advance_tick(conn, &name, tick.timestamp_millis())? {
                return Ok(None);
            }
            match job {
                Some(job) => Ok(ops::insert_many(conn, now_ms(), &[job])?.pop()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn close(&self) {
        let store = self.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    }
}
