//! The JSON API under `/api/v1`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use jobchain::core::workflow::WorkflowCursor;
use jobchain::{
    Client, JobFilter, JobId, JobOptions, JobSpec, JobState, WorkflowDocument, WorkflowFilter,
    WorkflowId, WorkflowState,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::Problem;
use crate::views::{
    Bulk, BulkFailure, Enqueued, JobPage, Queue, Started, Stats, WorkflowDetail, WorkflowPage,
};
use crate::AppState;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

/// Most items per page.
pub const MAX_LIMIT: usize = 500;

/// Bodies up to the client's payload limit (16 MiB) and some room for the envelope.
const BODY_LIMIT: usize = 17 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/stats", get(stats))
        .route("/workers", get(workers))
        .route("/jobs", get(list_jobs).post(enqueue))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/workflows", get(list_workflows).post(start_workflow))
        .route("/workflows/{id}", get(workflow))
        .route("/workflows/{id}/cancel", post(cancel_workflow))
        .route("/workflows/{id}/signals/{name}", post(signal_workflow))
        .route("/workflows/{id}/result", get(workflow_result))
        .route("/queues", get(queues))
        .route("/queues/{name}/pause", post(pause_queue))
        .route("/queues/{name}/resume", post(resume_queue))
        .route("/dlq/retry", post(dlq_retry))
        .route("/dlq/cancel", post(dlq_cancel))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

type ApiResult = Result<Response, Problem>;

fn ok<T: serde::Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "no such API path: see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this path does not take that method: see /api/v1/openapi.json",
    )
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn stats(State(state): State<AppState>) -> ApiResult {
    let client = &state.client;
    let since = Utc::now() - chrono::Duration::hours(1);
    let (queues, throughput, workers) = tokio::try_join!(
        client.queue_stats(),
        async { Ok(client.store().throughput(since).await?) },
        client.workers(),
    )?;
    ok(
        StatusCode::OK,
        &Stats::new(queues, throughput, workers.len()),
    )
}

async fn workers(State(state): State<AppState>) -> ApiResult {
    let workers = state.client.workers().await?;
    ok(StatusCode::OK, &serde_json::json!({ "workers": workers }))
}

async fn queues(State(state): State<AppState>) -> ApiResult {
    let stats = state.client.queue_stats().await?;
    let queues: Vec<Queue> = stats.into_iter().map(Queue::from).collect();
    ok(StatusCode::OK, &serde_json::json!({ "queues": queues }))
}

async fn pause_queue(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let info = state.client.pause_queue(&name).await?;
    ok(StatusCode::OK, &info)
}

async fn resume_queue(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let info = state.client.resume_queue(&name).await?;
    ok(StatusCode::OK, &info)
}

/// An optional query parameter: absent and empty are the same.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn parse_limit(value: &Option<String>, default: usize) -> Result<usize, Problem> {
    match given(value) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Problem::bad_request(format!(
                "limit `{text}` is not a whole number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

fn parse_job_id(text: &str) -> Result<JobId, Problem> {
    text.parse::<i64>().map(JobId).map_err(|_| {
        Problem::bad_request(format!(
            "`{text}` is not a job id: job ids are whole numbers"
        ))
    })
}

fn parse_workflow_id(text: &str) -> Result<WorkflowId, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!(
            "`{text}` is not a workflow id: workflow ids are UUIDs"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsQuery {
    state: Option<String>,
    kind: Option<String>,
    queue: Option<String>,
    workflow: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    order: Option<String>,
}

async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query?;
    let newest_first = match given(&q.order) {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "order `{other}` is neither `newest` nor `oldest`"
            )))
        }
    };
    let limit = parse_limit(&q.limit, 50)?;
    let filter = JobFilter {
        state: given(&q.state)
            .map(str::parse::<JobState>)
            .transpose()
            .map_err(Problem::bad_request)?,
        kind: given(&q.kind).map(str::to_string),
        queue: given(&q.queue).map(str::to_string),
        workflow_id: given(&q.workflow).map(parse_workflow_id).transpose()?,
        newest_first,
        limit: Some(limit),
        offset: 0,
        after: given(&q.cursor)
            .map(|c| {
                parse_job_id(c).map_err(|_| {
                    Problem::bad_request(format!(
                        "cursor `{c}` is not one this API gave: pass next_cursor as it came"
                    ))
                })
            })
            .transpose()?,
    };
    let jobs = state.client.jobs(filter).await?;
    let next_cursor = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    ok(StatusCode::OK, &JobPage { jobs, next_cursor })
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let job = state.client.job(parse_job_id(&id)?).await?;
    ok(StatusCode::OK, &job)
}

/// `POST /api/v1/jobs`: the shape of an exec handler's follow-up.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    kind: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    options: JobOptions,
    workflow_id: Option<String>,
}

async fn enqueue(
    State(state): State<AppState>,
    body: Result<Json<EnqueueBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let mut options = body
        .options
        .into_options()
        .map_err(|e| Problem::bad_request(format!("options: {e}")))?;
    options.workflow_id = body
        .workflow_id
        .as_deref()
        .map(parse_workflow_id)
        .transpose()?;
    let enqueued = state
        .client
        .enqueue_with(JobSpec::new(&body.kind, body.payload), options)
        .await?;
    let status = if enqueued.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    ok(
        status,
        &Enqueued {
            id: enqueued.id,
            duplicate: enqueued.duplicate,
        },
    )
}

async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let job = state.client.retry(parse_job_id(&id)?).await?;
    ok(StatusCode::OK, &job)
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let job = state.client.cancel(parse_job_id(&id)?).await?;
    ok(StatusCode::OK, &job)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowsQuery {
    state: Option<String>,
    name: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A workflow listing cursor: `created_at` (RFC 3339 with nanoseconds) `~` id.
fn workflow_cursor(info: &jobchain::WorkflowInfo) -> String {
    let c = WorkflowCursor::of(info);
    format!(
        "{}~{}",
        c.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        c.id
    )
}

fn parse_workflow_cursor(text: &str) -> Result<WorkflowCursor, Problem> {
    let wrong = || {
        Problem::bad_request(format!(
            "cursor `{text}` is not one this API gave: pass next_cursor as it came"
        ))
    };
    let (at, id) = text.split_once('~').ok_or_else(wrong)?;
    Ok(WorkflowCursor {
        created_at: DateTime::parse_from_rfc3339(at)
            .map_err(|_| wrong())?
            .with_timezone(&Utc),
        id: id.parse().map_err(|_| wrong())?,
    })
}

async fn list_workflows(
    State(state): State<AppState>,
    query: Result<Query<WorkflowsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query?;
    let limit = parse_limit(&q.limit, 50)?;
    let filter = WorkflowFilter {
        state: given(&q.state)
            .map(str::parse::<WorkflowState>)
            .transpose()
            .map_err(Problem::bad_request)?,
        name: given(&q.name).map(str::to_string),
        limit: Some(limit),
        offset: 0,
        before: given(&q.cursor).map(parse_workflow_cursor).transpose()?,
    };
    let workflows = state.client.workflows(filter).await?;
    let next_cursor = (workflows.len() == limit)
        .then(|| workflows.last().map(workflow_cursor))
        .flatten();
    ok(
        StatusCode::OK,
        &WorkflowPage {
            workflows,
            next_cursor,
        },
    )
}

async fn workflow(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_workflow_id(&id)?;
    let client = &state.client;
    let workflow = client.workflow(id).await?;
    let (jobs, edges) = tokio::try_join!(client.workflow_jobs(id), async {
        Ok(client.store().dependencies(id).await?)
    })?;
    ok(
        StatusCode::OK,
        &WorkflowDetail {
            workflow,
            jobs,
            edges,
        },
    )
}

/// `POST /api/v1/workflows`: a declared workflow document, as `jobchain workflow start
/// --file` reads.
async fn start_workflow(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    require_json(&headers, "the workflow document")?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| Problem::bad_request(format!("the body is not UTF-8 text: {e}")))?;
    let document = WorkflowDocument::from_json(text).map_err(Problem::bad_request)?;
    let workflow = document.into_workflow(None).map_err(Problem::bad_request)?;
    let started = state.client.start_workflow(workflow).await?;
    let status = if started.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    ok(
        status,
        &Started {
            id: started.id,
            duplicate: started.duplicate,
            jobs: started.jobs,
        },
    )
}

async fn cancel_workflow(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let info = state
        .client
        .cancel_workflow(parse_workflow_id(&id)?)
        .await?;
    ok(StatusCode::OK, &info)
}

/// Refuses a body that is not declared JSON, naming `what` it should be.
fn require_json(headers: &axum::http::HeaderMap, what: &str) -> Result<(), Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("send {what} as JSON with `Content-Type: application/json`"),
        ))
    }
}

/// Sends a signal; the body (any JSON, `null` when empty) is its payload.
async fn signal_workflow(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let id = parse_workflow_id(&id)?;
    let payload = if body.is_empty() {
        serde_json::Value::Null
    } else {
        require_json(&headers, "the signal's payload")?;
        serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("the signal's payload is not JSON: {e}")))?
    };
    let receipt = state.client.signal(id, &name, payload).await?;
    ok(StatusCode::OK, &receipt)
}

#[derive(Serialize)]
struct ResultView {
    result: serde_json::Value,
}

/// A finished workflow's result; 409 while it runs or when it has none.
async fn workflow_result(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let result = state
        .client
        .workflow_result_value(parse_workflow_id(&id)?)
        .await?;
    ok(
        StatusCode::OK,
        &ResultView {
            result: result.unwrap_or(serde_json::Value::Null),
        },
    )
}

/// Which dead jobs a bulk action takes: listed ids, or every dead job (of a kind).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadSelection {
    #[serde(default)]
    ids: Vec<JobId>,
    #[serde(default)]
    all: bool,
    kind: Option<String>,
}

/// At most this many jobs per bulk request.
const MAX_BULK: usize = 10_000;

async fn selected(client: &Client, selection: DeadSelection) -> Result<Vec<JobId>, Problem> {
    match (selection.ids.is_empty(), selection.all) {
        (false, false) if selection.kind.is_none() => {
            if selection.ids.len() > MAX_BULK {
                return Err(Problem::bad_request(format!(
                    "{} ids: at most {MAX_BULK} per request",
                    selection.ids.len()
                )));
            }
            Ok(selection.ids)
        }
        (true, true) => {
            let mut ids = Vec::new();
            let mut after = None;
            loop {
                let page = client
                    .jobs(JobFilter {
                        state: Some(JobState::Dead),
                        kind: selection.kind.clone(),
                        limit: Some(1000),
                        after,
                        ..JobFilter::default()
                    })
                    .await?;
                let full = page.len() == 1000;
                after = page.last().map(|j| j.id);
                ids.extend(page.into_iter().map(|j| j.id));
                if !full || ids.len() >= MAX_BULK {
                    ids.truncate(MAX_BULK);
                    return Ok(ids);
                }
            }
        }
        _ => Err(Problem::bad_request(
            "give either `ids` (a list of dead job ids) or `all: true` (optionally with `kind`)",
        )),
    }
}

async fn bulk<F, Fut>(
    state: &AppState,
    body: Result<Json<DeadSelection>, JsonRejection>,
    action: F,
) -> ApiResult
where
    F: Fn(Client, JobId) -> Fut,
    Fut: std::future::Future<Output = jobchain::Result<jobchain::Job>>,
{
    let Json(selection) = body?;
    let ids = selected(&state.client, selection).await?;
    let mut result = Bulk {
        done: Vec::with_capacity(ids.len()),
        failed: Vec::new(),
    };
    for id in ids {
        match action(state.client.clone(), id).await {
            Ok(_) => result.done.push(id),
            Err(e) => {
                let problem = Problem::from(e);
                if problem.status.is_server_error() {
                    return Err(problem);
                }
                result.failed.push(BulkFailure {
                    id,
                    status: problem.status.as_u16(),
                    detail: problem.detail,
                });
            }
        }
    }
    ok(StatusCode::OK, &result)
}

/// Retries dead jobs (revives their workflows' cancelled branches).
async fn dlq_retry(
    State(state): State<AppState>,
    body: Result<Json<DeadSelection>, JsonRejection>,
) -> ApiResult {
    bulk(
        &state,
        body,
        |client, id| async move { client.retry(id).await },
    )
    .await
}

/// Discards dead jobs: they become cancelled.
async fn dlq_cancel(
    State(state): State<AppState>,
    body: Result<Json<DeadSelection>, JsonRejection>,
) -> ApiResult {
    bulk(&state, body, |client, id| async move {
        let job = client.job(id).await?;
        if job.state != JobState::Dead {
            return Err(jobchain::StoreError::Conflict(format!(
                "job {id} is {}, not dead: the dead-letter queue cancels only dead jobs",
                job.state
            ))
            .into());
        }
        client.cancel(id).await
    })
    .await
}
