//! The task grid over the admin HTTP API, as JSON: thin routes that parse, authorize, call the
//! service layer (`crate::service::tasks`) and answer its errors (see `error.rs`). Who may call
//! what is decided before a route runs (`auth.rs`, `policy.rs`): queries and waits need a reader,
//! submitting, cancelling and scheduling a submitter, draining an operator, and a joined worker's poll
//! and report its own node's certificate. The bodies are the contract's (`crate::api::grid`).
//!
//! - `POST /grid/submit` `{"task", "input", "count", "priority", "delay_ms", "key", ...}` or
//!   `{"specs": [TaskSpec, ...]}` → `{"ids": [...]}`, once committed. One submission is at most
//!   `SUBMIT_COUNT_MAX` tasks and `SUBMIT_BYTES_MAX` encoded bytes (count × one spec's encoding,
//!   computed before any copy is made), else 413 `too large` naming the limit.
//! - `GET /grid/tasks?id=&state=&node=&kind=&since_ms=&until_ms=&limit=&cursor=&results=&local=` →
//!   `{"tasks": [TaskView, ...], "next": CURSOR | null}`, newest first, one page of at most `limit`
//!   tasks and `QUERY_RESPONSE_BYTES_MAX` bytes; results only with `results=true` (or `id=`, which
//!   answers 404 `no task` for an unknown id, and adds the task's `spec`: input, timeout, retry).
//! - `POST /grid/wait` `{"ids", "timeout_ms"}` → `{"done", "states": {"succeeded": n, ...}}`; at most
//!   `IDS_MAX` ids; unknown and ended tasks are answered at once and hold no wait.
//! - `POST /grid/cancel` `{"ids"}`, `POST /grid/drain` `{"node", "draining"}` → `{"applied", "refused"}`.
//! - `GET /grid/node?node=N` → `{"node", "registered", "draining", "held"}`: the attempts a node holds,
//!   exact (what `gridkeeper drain` waits on).
//! - `GET /grid/jobs` → `{"jobs": [JobView, ...]}` (each with its `tz` and whether it is `paused`),
//!   `POST /grid/schedule` (a job, with an optional IANA `tz` for its cron), `POST /grid/unschedule`
//!   `{"name"}`.
//! - `POST /grid/jobs/pause`, `POST /grid/jobs/resume`, `POST /grid/jobs/trigger` `{"name"}` → the job's
//!   `JobView`: pause keeps the job and fires nothing until resumed; resume skips the fire times missed
//!   while paused and is due next at the first after now; trigger submits one run now, cadence unchanged
//!   (409 `job running` while its last run goes on and it does not allow overlap). 404 `no job`.
//! - `POST /grid/worker/poll`, `POST /grid/worker/report`: a joined worker's attempts and reports.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::api::grid::{
    DrainRequest, IdsRequest, JobView, JobsResponse, NameRequest, NodeQuery, NodeStatus, PollRequest, PollResponse,
    RecordedResponse, ReportRequest, ScheduleRequest, SubmitRequest, SubmitResponse, TasksQuery, TasksResponse,
    WaitRequest, WaitResponse,
};
use crate::api::{ApiError, ErrorCode};
use crate::clock::unix_millis;
use crate::credentials::{Principal, Role};
use crate::grid::task::TaskId;
use crate::ids::NodeId;
use crate::service::tasks as service;

type ApiResult<T> = Result<Json<T>, HttpError>;

/// The grid routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    // Submissions and reports carry bytes as JSON arrays of numbers (up to four characters a byte), so
    // their bodies may be larger than other routes'; the caller is authorized before any of it is read.
    let bulk = Router::new()
        .route("/grid/submit", post(submit))
        .route("/grid/worker/report", post(worker_report))
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::BULK_REQUEST_BYTES_MAX));
    Router::new()
        .route("/grid/tasks", get(tasks))
        .route("/grid/wait", post(wait))
        .route("/grid/cancel", post(cancel))
        .route("/grid/drain", post(drain))
        .route("/grid/node", get(node))
        .route("/grid/jobs", get(jobs))
        .route("/grid/schedule", post(schedule))
        .route("/grid/unschedule", post(unschedule))
        .route("/grid/jobs/pause", post(pause_job))
        .route("/grid/jobs/resume", post(resume_job))
        .route("/grid/jobs/trigger", post(trigger_job))
        .route("/grid/worker/poll", post(worker_poll))
        .merge(bulk)
}

async fn submit(State(state): State<Arc<AdminState>>, Json(request): Json<SubmitRequest>) -> ApiResult<SubmitResponse> {
    let specs = request.specs(unix_millis())?;
    let ids = service::submit(&coordinator(&state)?, specs).await?;
    Ok(Json(SubmitResponse { ids: ids.into_iter().map(|id| id.0).collect() }))
}

async fn tasks(State(state): State<Arc<AdminState>>, Query(query): Query<TasksQuery>) -> ApiResult<TasksResponse> {
    Ok(Json(service::query(&coordinator(&state)?, &query).await?))
}

async fn wait(State(state): State<Arc<AdminState>>, Json(request): Json<WaitRequest>) -> ApiResult<WaitResponse> {
    let ids: Vec<TaskId> = request.ids.iter().map(|id| TaskId(*id)).collect();
    let timeout = Duration::from_millis(request.timeout_ms);
    Ok(Json(service::wait(&coordinator(&state)?, &ids, timeout).await?))
}

async fn cancel(State(state): State<Arc<AdminState>>, Json(request): Json<IdsRequest>) -> ApiResult<RecordedResponse> {
    let ids: Vec<TaskId> = request.ids.iter().map(|id| TaskId(*id)).collect();
    Ok(Json(service::cancel(&coordinator(&state)?, &ids).await?))
}

async fn drain(State(state): State<Arc<AdminState>>, Json(request): Json<DrainRequest>) -> ApiResult<RecordedResponse> {
    Ok(Json(service::drain(&coordinator(&state)?, NodeId(request.node), request.draining).await?))
}

async fn node(State(state): State<Arc<AdminState>>, Query(query): Query<NodeQuery>) -> ApiResult<NodeStatus> {
    Ok(Json(service::node_status(&coordinator(&state)?, NodeId(query.node)).await?))
}

async fn jobs(State(state): State<Arc<AdminState>>) -> ApiResult<JobsResponse> {
    Ok(Json(JobsResponse { jobs: service::jobs(&coordinator(&state)?).await? }))
}

async fn schedule(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<ScheduleRequest>,
) -> ApiResult<RecordedResponse> {
    Ok(Json(service::schedule(&coordinator(&state)?, request).await?))
}

async fn unschedule(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<NameRequest>,
) -> ApiResult<RecordedResponse> {
    Ok(Json(service::unschedule(&coordinator(&state)?, request.name).await?))
}

async fn pause_job(State(state): State<Arc<AdminState>>, Json(request): Json<NameRequest>) -> ApiResult<JobView> {
    Ok(Json(service::pause(&coordinator(&state)?, request.name).await?))
}

async fn resume_job(State(state): State<Arc<AdminState>>, Json(request): Json<NameRequest>) -> ApiResult<JobView> {
    Ok(Json(service::resume(&coordinator(&state)?, request.name).await?))
}

async fn trigger_job(State(state): State<Arc<AdminState>>, Json(request): Json<NameRequest>) -> ApiResult<JobView> {
    Ok(Json(service::trigger(&coordinator(&state)?, request.name).await?))
}

async fn worker_poll(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<PollRequest>,
) -> ApiResult<PollResponse> {
    Ok(Json(service::poll(&coordinator(&state)?, &request).await?))
}

async fn worker_report(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Principal>>,
    Json(request): Json<ReportRequest>,
) -> ApiResult<RecordedResponse> {
    let coordinator = coordinator(&state)?;
    // A worker reports only on attempts assigned to its own node.
    if let Some(Extension(Principal { role: Role::Worker(node), name, .. })) = caller {
        let foreign = coordinator.read_state(|state| {
            request
                .reports
                .iter()
                .find(|report| {
                    let holder =
                        state.grid.get(report.task).and_then(|task| task.current_attempt()).map(|attempt| attempt.node);
                    holder != Some(node)
                })
                .map(|report| report.task)
        });
        if let Some(task) = foreign {
            let message = format!("{name} may report only on attempts assigned to node {node}, not on task {}", task.0);
            return Err(HttpError(ApiError::new(ErrorCode::NoAuth, message)));
        }
    }
    Ok(Json(service::report(&coordinator, request.reports).await?))
}
