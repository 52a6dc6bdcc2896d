//! The task grid over the admin HTTP API, as JSON. Queries are open; submitting, cancelling and
//! draining need the admin token. Request bodies refuse unknown fields.
//!
//! - `POST /grid/submit` `{"task", "input", "count", "priority", "delay_ms", "key", ...}` or
//!   `{"specs": [TaskSpec, ...]}` → `{"ids": [...]}`, once committed. One submission is one log entry:
//!   at most [`SUBMIT_COUNT_MAX`] tasks and [`SUBMIT_BYTES_MAX`] encoded bytes (count × one spec's
//!   encoding, computed before any copy is made), else 413 `too large` naming the limit.
//! - `GET /grid/tasks?id=&state=&node=&since_ms=&until_ms=&limit=&cursor=&results=` →
//!   `{"tasks": [TaskView, ...], "next": CURSOR | null}`, newest first, one page of at most `limit`
//!   tasks and [`QUERY_RESPONSE_BYTES_MAX`] bytes; results only with `results=true` (or `id=`). Reads
//!   after a linearizable barrier, so a task acknowledged anywhere is visible.
//! - `POST /grid/wait` `{"ids", "timeout_ms"}` → `{"done", "states": {"succeeded": n, ...}}`; at most
//!   [`IDS_MAX`] ids; unknown and ended tasks are answered at once and hold no wait.
//! - `POST /grid/cancel` `{"ids"}`, `POST /grid/drain` `{"node", "draining"}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::http::AdminState;
use super::registry_api::{api_error, authorize, coordinator, ApiError};
use crate::clock::unix_millis;
use crate::consensus::Coordinator;
use crate::grid::command::{Job, JobSpec};
use crate::grid::schedule::{Cadence, CronExpr, Misfire};
use crate::grid::task::{AttemptState, Encoding, RetryPolicy, Strategy, Task, TaskId, TaskSpec, TaskState};
use crate::grid::{GridCommand, GridOutcome, Report};
use crate::ids::NodeId;
use crate::limits::{QUERY_RESPONSE_BYTES_MAX, QUERY_SCAN_MAX, SUBMIT_BYTES_MAX};
use crate::registry::ZPath;
use crate::service::hub::AttemptOrder;
use crate::state::replicated::NODES_PATH;
use crate::state::ReplicatedState;
use crate::state::{Command, Outcome};

/// Tasks one HTTP submission may create.
pub const SUBMIT_COUNT_MAX: usize = 100_000;
/// Tasks one query page returns at most (pages are also cut at
/// [`QUERY_RESPONSE_BYTES_MAX`]).
pub const QUERY_LIMIT_MAX: usize = 10_000;
/// Ids one wait or cancel may name: as many as one submission returns.
pub const IDS_MAX: usize = SUBMIT_COUNT_MAX;
/// Longest a wait call holds the connection.
pub const WAIT_MS_MAX: u64 = 60_000;

/// The grid routes, to merge into the admin router.
pub fn routes(state: Arc<AdminState>) -> Router<Arc<AdminState>> {
    // Submissions and reports carry bytes as JSON arrays of numbers (up to four characters a byte), so
    // their bodies may be larger than other routes'; the token is checked before any of it is read.
    let bulk = Router::new()
        .route("/grid/submit", post(submit))
        .route("/grid/worker/report", post(worker_report))
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::BULK_REQUEST_BYTES_MAX))
        .route_layer(axum::middleware::from_fn_with_state(state, token_first));
    Router::new()
        .route("/grid/tasks", get(tasks))
        .route("/grid/wait", post(wait))
        .route("/grid/cancel", post(cancel))
        .route("/grid/drain", post(drain))
        .route("/grid/jobs", get(jobs))
        .route("/grid/schedule", post(schedule))
        .route("/grid/unschedule", post(unschedule))
        .route("/grid/worker/poll", post(worker_poll))
        .merge(bulk)
}

/// Refuses a bulk request without the token before its body is read.
async fn token_first(
    State(state): State<Arc<AdminState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Why a submission was refused before it reached the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitRefusal {
    /// A field is missing or out of range.
    #[error("{0}")]
    Bad(String),
    /// The submission's encoded tasks exceed [`SUBMIT_BYTES_MAX`].
    #[error(
        "a submission of {bytes} encoded bytes exceeds SUBMIT_BYTES_MAX ({max} bytes): submit fewer tasks or smaller inputs"
    )]
    TooLarge {
        /// Its encoded bytes (count × each spec's encoding).
        bytes: usize,
        /// [`SUBMIT_BYTES_MAX`].
        max: usize,
    },
}

impl From<SubmitRefusal> for ApiError {
    fn from(refusal: SubmitRefusal) -> Self {
        match refusal {
            SubmitRefusal::Bad(message) => bad_request(message),
            too_large @ SubmitRefusal::TooLarge { .. } => {
                api_error(StatusCode::PAYLOAD_TOO_LARGE, "too large", too_large)
            }
        }
    }
}

/// The encoded bytes of `count` copies of `spec`, computed without making one.
///
/// # Errors
/// [`SubmitRefusal::Bad`] for a count outside 1..=[`SUBMIT_COUNT_MAX`]; [`SubmitRefusal::TooLarge`]
/// past [`SUBMIT_BYTES_MAX`].
pub fn check_submission(spec: &TaskSpec, count: usize) -> Result<usize, SubmitRefusal> {
    if count == 0 || count > SUBMIT_COUNT_MAX {
        return Err(SubmitRefusal::Bad(format!("count must be 1..={SUBMIT_COUNT_MAX}")));
    }
    let bytes = spec.encoded_bytes().saturating_mul(count);
    if bytes > SUBMIT_BYTES_MAX {
        return Err(SubmitRefusal::TooLarge { bytes, max: SUBMIT_BYTES_MAX });
    }
    Ok(bytes)
}

/// The encoded bytes of `specs`.
///
/// # Errors
/// As [`check_submission`].
pub fn check_specs(specs: &[TaskSpec]) -> Result<usize, SubmitRefusal> {
    if specs.is_empty() || specs.len() > SUBMIT_COUNT_MAX {
        return Err(SubmitRefusal::Bad(format!("a submission holds 1..={SUBMIT_COUNT_MAX} tasks")));
    }
    let bytes = specs.iter().map(TaskSpec::encoded_bytes).fold(0, usize::saturating_add);
    if bytes > SUBMIT_BYTES_MAX {
        return Err(SubmitRefusal::TooLarge { bytes, max: SUBMIT_BYTES_MAX });
    }
    Ok(bytes)
}

/// A submission.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Task kind (with `input`, `count` and the options below), or
    pub task: Option<String>,
    /// JSON input (default `{}`).
    pub input: Option<serde_json::Value>,
    /// How many identical tasks (default 1).
    pub count: Option<usize>,
    /// Priority (higher first).
    pub priority: Option<i32>,
    /// Not before now + this.
    pub delay_ms: Option<u64>,
    /// Shard key (consistent hashing).
    pub key: Option<String>,
    /// Per-attempt timeout.
    pub timeout_ms: Option<u64>,
    /// Attempts in all.
    pub attempts: Option<u32>,
    /// Wait before the first retry (doubling).
    pub backoff_ms: Option<u64>,
    /// Placement override.
    pub strategy: Option<Strategy>,
    /// Run only on this node.
    pub affinity: Option<u64>,
    /// Full specs (the Rust client); exclusive with `task`.
    pub specs: Option<Vec<TaskSpec>>,
}

impl SubmitRequest {
    /// The specs this request asks for. The size of `count` copies is checked on one spec before
    /// any copy is made.
    ///
    /// # Errors
    /// A [`SubmitRefusal`] naming the bad field or the size limit.
    pub fn specs(self) -> Result<Vec<TaskSpec>, SubmitRefusal> {
        if let Some(specs) = self.specs {
            if self.task.is_some() {
                return Err(SubmitRefusal::Bad("give either task or specs".into()));
            }
            check_specs(&specs)?;
            return Ok(specs);
        }
        let count = self.count.unwrap_or(1);
        let spec = self.spec()?;
        check_submission(&spec, count)?;
        Ok(vec![spec; count])
    }

    /// The one spec a `task` request repeats `count` times.
    ///
    /// # Errors
    /// [`SubmitRefusal::Bad`] naming the bad field.
    pub fn spec(self) -> Result<TaskSpec, SubmitRefusal> {
        let bad = |message: &str| SubmitRefusal::Bad(message.to_string());
        let kind = self.task.ok_or_else(|| bad("task is required"))?;
        let input = self.input.unwrap_or_else(|| serde_json::json!({}));
        let input = serde_json::to_vec(&input).map_err(|error| bad(&error.to_string()))?;
        let mut spec = TaskSpec::new(kind, input);
        spec.encoding = Encoding::Json;
        spec.priority = self.priority.unwrap_or(0);
        spec.not_before_ms = self.delay_ms.map_or(0, |delay| unix_millis().saturating_add(delay));
        spec.shard_key = self.key;
        if let Some(timeout) = self.timeout_ms {
            spec.timeout_ms = timeout;
        }
        let defaults = RetryPolicy::default();
        spec.retry = RetryPolicy {
            attempts_max: self.attempts.unwrap_or(defaults.attempts_max),
            backoff_ms: self.backoff_ms.unwrap_or(defaults.backoff_ms),
        };
        spec.strategy = self.strategy;
        spec.affinity = self.affinity.map(NodeId);
        Ok(spec)
    }
}

/// The ids a submission got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// One per task, in order.
    pub ids: Vec<u64>,
}

/// One attempt in a [`TaskView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    /// 1 for the first.
    pub attempt: u32,
    /// Where it ran.
    pub node: u64,
    /// How it stands or ended.
    pub state: AttemptState,
    /// When it was assigned (Unix ms).
    pub assigned_ms: u64,
    /// When it started (Unix ms).
    pub started_ms: Option<u64>,
    /// When it ended (Unix ms).
    pub ended_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its id.
    pub id: u64,
    /// Its kind.
    pub task: String,
    /// Its state.
    pub state: TaskState,
    /// Its priority.
    pub priority: i32,
    /// When it was accepted (Unix ms).
    pub submitted_ms: u64,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
    /// The result: JSON for JSON submissions; for rkyv ones, the bytes as an array. Left out of list
    /// views unless asked for (`results=true`); always in a view of one task (`id=`).
    pub result: Option<serde_json::Value>,
    /// Pending, and no registered node runs its kind (shown only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unplaceable: bool,
}

impl TaskView {
    /// The view of `task`, with its result.
    pub fn of(task: &Task) -> TaskView {
        TaskView::with(task, true)
    }

    /// The view of `task`, with its result if `result`.
    pub fn with(task: &Task, result: bool) -> TaskView {
        let result = task.result.as_ref().filter(|_| result).map(|bytes| match task.spec.encoding {
            Encoding::Json => serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null),
            Encoding::Rkyv => serde_json::json!(bytes),
        });
        TaskView {
            id: task.id.0,
            task: task.spec.kind.clone(),
            state: task.state,
            priority: task.spec.priority,
            submitted_ms: task.submitted_ms,
            attempts: task
                .attempts
                .iter()
                .map(|attempt| AttemptView {
                    attempt: attempt.number,
                    node: attempt.node.0,
                    state: attempt.state,
                    assigned_ms: attempt.assigned_ms,
                    started_ms: attempt.started_ms,
                    ended_ms: attempt.ended_ms,
                    error: attempt.error.clone(),
                })
                .collect(),
            result,
            unplaceable: false,
        }
    }
}

/// Query of `GET /grid/tasks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TasksQuery {
    /// One task.
    pub id: Option<u64>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks with an attempt on this node.
    pub node: Option<u64>,
    /// Only tasks with an event at or after this (Unix ms).
    pub since_ms: Option<u64>,
    /// Only tasks with an event at or before this.
    pub until_ms: Option<u64>,
    /// At most this many (default 100, at most [`QUERY_LIMIT_MAX`]).
    pub limit: Option<usize>,
    /// Skip the linearizable barrier.
    #[serde(default)]
    pub local: bool,
    /// Continue a listing: only tasks older than this (the `next` of the previous page).
    pub cursor: Option<u64>,
    /// Include results in a list view (a view of one task always has its result).
    #[serde(default)]
    pub results: bool,
}

/// One page of tasks, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksResponse {
    /// The tasks.
    pub tasks: Vec<TaskView>,
    /// The cursor of the next page, or `None` if this page ends the listing.
    #[serde(default)]
    pub next: Option<u64>,
}

/// A wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// Tasks to wait for.
    pub ids: Vec<u64>,
    /// Give up after this (capped at [`WAIT_MS_MAX`]).
    pub timeout_ms: u64,
}

/// Where awaited tasks stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitResponse {
    /// Whether every task is terminal.
    pub done: bool,
    /// Tasks per state (`unknown` for ids not in the table).
    pub states: BTreeMap<String, usize>,
}

/// Ids to cancel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsRequest {
    /// The tasks.
    pub ids: Vec<u64>,
}

/// A drain order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// The node.
    pub node: u64,
    /// Start (true, default) or stop draining.
    #[serde(default = "yes")]
    pub draining: bool,
}

/// A recurring job to create or replace. Its run's fields are those of a submission of one, listed
/// here rather than flattened so that unknown fields are refused (serde cannot deny them through a
/// flatten).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Unique name.
    pub name: String,
    /// Task kind of every run.
    pub task: Option<String>,
    /// JSON input (default `{}`).
    pub input: Option<serde_json::Value>,
    /// Priority (higher first).
    pub priority: Option<i32>,
    /// Not before the fire time + this.
    pub delay_ms: Option<u64>,
    /// Shard key (consistent hashing).
    pub key: Option<String>,
    /// Per-attempt timeout.
    pub timeout_ms: Option<u64>,
    /// Attempts in all.
    pub attempts: Option<u32>,
    /// Wait before the first retry (doubling).
    pub backoff_ms: Option<u64>,
    /// Placement override.
    pub strategy: Option<Strategy>,
    /// Run only on this node.
    pub affinity: Option<u64>,
    /// A cron expression (5 or 6 fields, UTC), or
    pub cron: Option<String>,
    /// a fixed interval.
    pub every_ms: Option<u64>,
    /// `skip` (default) or `run_once`.
    #[serde(default)]
    pub misfire: Misfire,
    /// Allow a run to start while the previous one goes on.
    #[serde(default)]
    pub overlap: bool,
}

impl ScheduleRequest {
    /// The job this asks for.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn job(self) -> Result<JobSpec, String> {
        let now = unix_millis();
        let cadence = match (&self.cron, self.every_ms) {
            (Some(cron), None) => Cadence::Cron(CronExpr::parse(cron).map_err(|error| error.to_string())?),
            (None, Some(every)) => Cadence::interval(every, now).map_err(|error| error.to_string())?,
            _ => return Err("give exactly one of cron and every_ms".into()),
        };
        if cadence.next_after(now).is_none() {
            let text = self.cron.as_deref().unwrap_or("the interval");
            return Err(format!("cron {text:?} never fires: it has no due time in the years ahead"));
        }
        let run = SubmitRequest {
            task: self.task,
            input: self.input,
            count: Some(1),
            priority: self.priority,
            delay_ms: self.delay_ms,
            key: self.key,
            timeout_ms: self.timeout_ms,
            attempts: self.attempts,
            backoff_ms: self.backoff_ms,
            strategy: self.strategy,
            affinity: self.affinity,
            specs: None,
        };
        let task = run.spec().map_err(|refusal| refusal.to_string())?;
        check_submission(&task, 1).map_err(|refusal| refusal.to_string())?;
        Ok(JobSpec { name: self.name, task, cadence, misfire: self.misfire, overlap: self.overlap })
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Its name.
    pub name: String,
    /// The task kind each run submits.
    pub task: String,
    /// `cron <expr>` or `every <ms> ms`.
    pub cadence: String,
    /// The next due time (Unix ms).
    pub due_ms: Option<u64>,
    /// Runs submitted.
    pub runs: u64,
    /// Fire times passed over.
    pub skipped: u64,
    /// The last run's task id.
    pub last_task: Option<u64>,
}

impl JobView {
    /// The view of `job`.
    pub fn of(job: &Job) -> JobView {
        let cadence = match &job.spec.cadence {
            Cadence::Cron(expr) => format!("cron {expr}"),
            Cadence::Interval { every_ms, .. } => format!("every {every_ms} ms"),
        };
        JobView {
            name: job.spec.name.clone(),
            task: job.spec.task.kind.clone(),
            cadence,
            due_ms: job.due_ms,
            runs: job.runs,
            skipped: job.skipped,
            last_task: job.last_task.map(|task| task.0),
        }
    }
}

/// The jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsResponse {
    /// Every job, by name.
    pub jobs: Vec<JobView>,
}

/// A job to delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    /// Its name.
    pub name: String,
}

async fn jobs(State(state): State<Arc<AdminState>>) -> Result<Json<JobsResponse>, ApiError> {
    let coordinator = coordinator(&state)?;
    coordinator.sync().await?;
    let jobs = coordinator.read_state(|state| state.grid.jobs().values().map(JobView::of).collect());
    Ok(Json(JobsResponse { jobs }))
}

async fn schedule(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<ScheduleRequest>,
) -> Result<Json<RecordedResponse>, ApiError> {
    authorize(&state, &headers)?;
    let job = request.job().map_err(bad_request)?;
    let coordinator = coordinator(&state)?;
    recorded(write_grid(&coordinator, GridCommand::Schedule { job: Box::new(job) }).await?)
}

async fn unschedule(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<NameRequest>,
) -> Result<Json<RecordedResponse>, ApiError> {
    authorize(&state, &headers)?;
    let coordinator = coordinator(&state)?;
    recorded(write_grid(&coordinator, GridCommand::Unschedule { name: request.name }).await?)
}

/// A joined worker asking for its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// The worker's node id.
    pub node: u64,
    /// The session owning its registration: only assignments to this incarnation are handed out.
    pub session: u64,
    /// Only attempts with a larger fencing token (the largest it has seen).
    pub after_token: u64,
    /// Wait up to this long for one (capped at [`WAIT_MS_MAX`]).
    pub wait_ms: u64,
}

/// Attempts for a joined worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollResponse {
    /// Attempts assigned to it and not ended, newer than `after_token`.
    pub attempts: Vec<AttemptOrder>,
    /// Whether its registration is still owned by its session (false: register again).
    pub registered: bool,
    /// Whether it is being drained (it takes no new work; once idle it may leave).
    #[serde(default)]
    pub draining: bool,
}

/// A joined worker's reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The reports.
    pub reports: Vec<Report>,
}

/// Attempts held by `node`'s current incarnation (owned by `session`) with a token above `after`,
/// or `None` if the registration is not owned by that session.
fn attempts_for(state: &ReplicatedState, node: NodeId, session: u64, after: u64) -> Option<Vec<AttemptOrder>> {
    let path = ZPath::parse(&format!("{NODES_PATH}/{node}")).ok()?;
    let stat = state.registry.exists(&path).filter(|stat| stat.ephemeral_owner == session && session != 0)?;
    // Assignments before this registration belong to an earlier incarnation of the node.
    let floor = after.max(stat.czxid);
    Some(
        state
            .grid
            .held_by(node)
            .into_iter()
            .filter(|(_, token)| token.0 > floor)
            .filter_map(|(task, token)| {
                let entry = state.grid.get(task)?;
                let attempt = entry.current_attempt()?;
                Some(AttemptOrder { task, token, number: attempt.number, spec: entry.spec.clone() })
            })
            .collect(),
    )
}

async fn worker_poll(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    authorize(&state, &headers)?;
    let coordinator = coordinator(&state)?;
    let node = NodeId(request.node);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.wait_ms.min(WAIT_MS_MAX));
    let mut applied = coordinator.grid_hub().watch_applied();
    loop {
        applied.borrow_and_update();
        let (found, draining) = coordinator.read_state(|state| {
            (attempts_for(state, node, request.session, request.after_token), state.grid.draining().contains(&node))
        });
        match found {
            None => return Ok(Json(PollResponse { attempts: Vec::new(), registered: false, draining })),
            Some(attempts) if !attempts.is_empty() || draining => {
                return Ok(Json(PollResponse { attempts, registered: true, draining }));
            }
            Some(_) => {}
        }
        if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
            return Ok(Json(PollResponse { attempts: Vec::new(), registered: true, draining }));
        }
    }
}

async fn worker_report(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<ReportRequest>,
) -> Result<Json<RecordedResponse>, ApiError> {
    authorize(&state, &headers)?;
    if request.reports.len() > crate::worker::REPORT_BATCH_MAX {
        return Err(bad_request(format!("at most {} reports", crate::worker::REPORT_BATCH_MAX)));
    }
    let coordinator = coordinator(&state)?;
    recorded(write_grid(&coordinator, GridCommand::Report { reports: request.reports }).await?)
}

fn yes() -> bool {
    true
}

/// What a cancel or drain did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// Applied.
    pub applied: u32,
    /// Refused (already ended, unknown).
    pub refused: u32,
}

/// An API error as plain text, for callers outside HTTP (the in-process `Grid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorText {
    /// Whether retrying later may help (no leader, no quorum).
    pub unavailable: bool,
    /// What went wrong.
    pub message: String,
}

impl From<ApiError> for ApiErrorText {
    fn from(error: ApiError) -> Self {
        let (status, _, message) = error.parts();
        ApiErrorText { unavailable: status == StatusCode::SERVICE_UNAVAILABLE, message: message.to_string() }
    }
}

fn bad_request(message: impl ToString) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, "bad arguments", message)
}

async fn write_grid(coordinator: &Coordinator, command: GridCommand) -> Result<GridOutcome, ApiError> {
    match coordinator.write(Command::App(command)).await? {
        Ok(Outcome::App(outcome)) => Ok(outcome),
        Ok(other) => Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected {other:?}"))),
        Err(error) => Err(error.into()),
    }
}

/// Submits `specs` through `coordinator`, in batches of at most the table's batch size.
///
/// # Errors
/// The coordinator's or the table's refusal.
pub async fn submit_specs(coordinator: &Coordinator, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, ApiError> {
    check_specs(&specs)?;
    let batch_max = coordinator.read_state(|state| state.grid.limits().batch_max).max(1);
    let mut ids = Vec::with_capacity(specs.len());
    let mut specs = specs;
    while !specs.is_empty() {
        let rest = specs.split_off(specs.len().min(batch_max));
        let outcome = write_grid(coordinator, GridCommand::Submit { tasks: specs }).await?;
        ids.extend(outcome.ids());
        specs = rest;
    }
    Ok(ids)
}

async fn submit(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<SubmitRequest>,
) -> Result<Json<SubmitResponse>, ApiError> {
    authorize(&state, &headers)?;
    let specs = request.specs()?;
    let coordinator = coordinator(&state)?;
    let ids = submit_specs(&coordinator, specs).await?;
    Ok(Json(SubmitResponse { ids: ids.into_iter().map(|id| id.0).collect() }))
}

/// Whether `task` passes the query's filters.
fn matches(task: &Task, query: &TasksQuery) -> bool {
    if query.state.is_some_and(|state| state != task.state) {
        return false;
    }
    if let Some(node) = query.node {
        if !task.attempts.iter().any(|attempt| attempt.node.0 == node) {
            return false;
        }
    }
    let last_event = task
        .attempts
        .iter()
        .flat_map(|attempt| [Some(attempt.assigned_ms), attempt.started_ms, attempt.ended_ms])
        .flatten()
        .max()
        .unwrap_or(task.submitted_ms)
        .max(task.submitted_ms);
    query.since_ms.is_none_or(|since| last_event >= since)
        && query.until_ms.is_none_or(|until| task.submitted_ms <= until)
}

/// Runs a task query against `coordinator`'s state: one page, newest first, cut at the query's
/// limit, at [`QUERY_RESPONSE_BYTES_MAX`] of views and at [`QUERY_SCAN_MAX`] tasks looked at.
///
/// # Errors
/// Unavailable if the barrier cannot reach a quorum.
pub async fn query_tasks(coordinator: &Coordinator, query: &TasksQuery) -> Result<TasksResponse, ApiError> {
    if !query.local {
        coordinator.sync().await?;
    }
    Ok(coordinator.read_state(|state| page(state, query)))
}

/// One page of `query` from `state`.
fn page(state: &ReplicatedState, query: &TasksQuery) -> TasksResponse {
    let kinds = state.registered_kinds();
    let view = |task: &Task, result: bool| {
        let mut view = TaskView::with(task, result);
        view.unplaceable = task.state == TaskState::Pending && !kinds.contains(&task.spec.kind);
        view
    };
    if let Some(id) = query.id {
        let tasks = state.grid.get(TaskId(id)).map(|task| view(task, true)).into_iter().collect();
        return TasksResponse { tasks, next: None };
    }
    let limit = query.limit.unwrap_or(100).clamp(1, QUERY_LIMIT_MAX);
    let before = query.cursor.map_or(TaskId(u64::MAX), TaskId);
    let (mut tasks, mut bytes, mut next) = (Vec::new(), 0usize, None);
    for (scanned, task) in state.grid.older_than(before).enumerate() {
        if scanned >= QUERY_SCAN_MAX || tasks.len() >= limit {
            next = Some(task.id.0 + 1);
            break;
        }
        if !matches(task, query) {
            continue;
        }
        let shown = view(task, query.results);
        let size = serde_json::to_vec(&shown).map_or(0, |encoded| encoded.len());
        if !tasks.is_empty() && bytes.saturating_add(size) > QUERY_RESPONSE_BYTES_MAX {
            next = Some(task.id.0 + 1);
            break;
        }
        bytes = bytes.saturating_add(size);
        tasks.push(shown);
    }
    TasksResponse { tasks, next }
}

async fn tasks(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<TasksQuery>,
) -> Result<Json<TasksResponse>, ApiError> {
    let coordinator = coordinator(&state)?;
    let page = query_tasks(&coordinator, &query).await?;
    if query.id.is_some() && page.tasks.is_empty() {
        return Err(api_error(StatusCode::NOT_FOUND, "no task", format!("no task {}", query.id.unwrap_or(0))));
    }
    Ok(Json(page))
}

/// Waits (bounded) until every id is terminal; returns the states then. Unknown and ended tasks are
/// answered at once and never registered; the waits this call registers are released when it
/// returns, on whichever node it runs.
///
/// # Errors
/// Bad arguments past [`IDS_MAX`] ids; unavailable without a quorum; too many waits.
pub async fn wait_for_tasks(
    coordinator: &Coordinator,
    ids: &[TaskId],
    timeout: Duration,
) -> Result<WaitResponse, ApiError> {
    if ids.len() > IDS_MAX {
        return Err(bad_request(format!("a wait names at most {IDS_MAX} ids")));
    }
    coordinator.sync().await?;
    let is_open =
        |state: &ReplicatedState, id: &TaskId| state.grid.get(*id).is_some_and(|task| !task.state.is_terminal());
    let open: Vec<TaskId> =
        coordinator.read_state(|state| ids.iter().copied().filter(|id| is_open(state, id)).collect());
    let hub = coordinator.grid_hub().clone();
    let receivers =
        hub.wait_all(&open).map_err(|error| api_error(StatusCode::TOO_MANY_REQUESTS, "too many waits", error))?;
    // Read again after registering: an ending between the two reads is caught by one or the other.
    let still_open: Vec<bool> = coordinator.read_state(|state| open.iter().map(|id| is_open(state, id)).collect());
    let pending: Vec<_> =
        receivers.into_iter().zip(still_open).filter(|(_, open)| *open).map(|(receiver, _)| receiver).collect();
    let _ = tokio::time::timeout(timeout, futures_util::future::join_all(pending)).await;
    hub.release(&open);
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut done = true;
    coordinator.read_state(|state| {
        for id in ids {
            let name = match state.grid.get(*id).map(|task| task.state) {
                Some(task_state) => {
                    done &= task_state.is_terminal();
                    state_name(task_state)
                }
                None => "unknown",
            };
            *states.entry(name.to_string()).or_default() += 1;
        }
    });
    Ok(WaitResponse { done, states })
}

/// The snake_case name of a state.
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "pending",
        TaskState::Assigned => "assigned",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::TimedOut => "timed_out",
        TaskState::Cancelled => "cancelled",
    }
}

async fn wait(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<WaitRequest>,
) -> Result<Json<WaitResponse>, ApiError> {
    let coordinator = coordinator(&state)?;
    let ids: Vec<TaskId> = request.ids.iter().map(|id| TaskId(*id)).collect();
    let timeout = Duration::from_millis(request.timeout_ms.min(WAIT_MS_MAX));
    Ok(Json(wait_for_tasks(&coordinator, &ids, timeout).await?))
}

async fn cancel(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<IdsRequest>,
) -> Result<Json<RecordedResponse>, ApiError> {
    authorize(&state, &headers)?;
    if request.ids.is_empty() || request.ids.len() > SUBMIT_COUNT_MAX {
        return Err(bad_request(format!("give 1..={SUBMIT_COUNT_MAX} ids")));
    }
    let coordinator = coordinator(&state)?;
    let tasks = request.ids.iter().map(|id| TaskId(*id)).collect();
    recorded(write_grid(&coordinator, GridCommand::Cancel { tasks }).await?)
}

async fn drain(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(request): Json<DrainRequest>,
) -> Result<Json<RecordedResponse>, ApiError> {
    authorize(&state, &headers)?;
    let coordinator = coordinator(&state)?;
    let command = GridCommand::Drain { node: NodeId(request.node), draining: request.draining };
    recorded(write_grid(&coordinator, command).await?)
}

fn recorded(outcome: GridOutcome) -> Result<Json<RecordedResponse>, ApiError> {
    match outcome {
        GridOutcome::Recorded { applied, refused } => Ok(Json(RecordedResponse { applied, refused })),
        other => Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected {other:?}"))),
    }
}

#[cfg(test)]
mod tests;
