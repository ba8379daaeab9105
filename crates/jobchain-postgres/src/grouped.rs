//! Plain enqueues of concurrent callers, written together: everything that waits while
//! the statements in flight run goes into the next statement, one round trip and one
//! commit for all of it. Each caller still returns only once its jobs are durable. (W7:
//! eight tasks enqueueing one job a call each waited for a commit of its own, and
//! PostgreSQL's group commit shared few of them.)

use std::sync::Arc;

use jobchain_core::job::NewJob;
use jobchain_core::store::Enqueued;
use jobchain_core::StoreError;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::queries::{map_err, ops, Sql};

/// Requests of at most this many jobs are grouped; a larger one is a batch already.
pub(crate) const MAX_REQUEST: usize = 100;

/// At most this many requests per statement.
const MAX_REQUESTS: usize = 256;

/// At most this many statements in flight. One makes the largest groups: W7 (8 tasks)
/// wrote 12,853 and 14,386 jobs/s with one, 12,125 and 12,314 with two, about 9,000 with
/// four (interleaved runs, same hour); under more load the groups grow instead.
const IN_FLIGHT: usize = 1;

/// Jobs to write, and where their result goes.
pub(crate) struct Request {
    pub(crate) jobs: Vec<NewJob>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
}

/// Writes the requests that arrive on `rx` until the store closes.
pub(crate) async fn run(pool: PgPool, sql: Arc<Sql>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut writes = JoinSet::new();
    loop {
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut group = Vec::new();
        if rx.recv_many(&mut group, MAX_REQUESTS).await == 0 {
            break;
        }
        let (pool, sql) = (pool.clone(), sql.clone());
        writes.spawn(async move {
            write(&pool, &sql, group).await;
            drop(slot);
        });
        while writes.try_join_next().is_some() {}
    }
    while writes.join_next().await.is_some() {}
}

/// One statement for the group; if it fails, each request on its own, so that each
/// caller gets its own result.
async fn write(pool: &PgPool, sql: &Sql, mut group: Vec<Request>) {
    if group.len() == 1 {
        let request = group.remove(0);
        let written = insert(pool, sql, &request.jobs).await;
        let _ = request.reply.send(written);
        return;
    }
    let sizes: Vec<usize> = group.iter().map(|r| r.jobs.len()).collect();
    let jobs: Vec<NewJob> = group
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.jobs))
        .collect();
    match insert(pool, sql, &jobs).await {
        Ok(written) => {
            let mut written = written.into_iter();
            for (request, n) in group.into_iter().zip(sizes) {
                let _ = request.reply.send(Ok(written.by_ref().take(n).collect()));
            }
        }
        Err(_) => {
            let mut jobs = jobs.into_iter();
            for (request, n) in group.into_iter().zip(sizes) {
                let mine: Vec<NewJob> = jobs.by_ref().take(n).collect();
                let _ = request.reply.send(insert(pool, sql, &mine).await);
            }
        }
    }
}

async fn insert(pool: &PgPool, sql: &Sql, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    ops::insert_many(&mut conn, sql, jobs).await
}
