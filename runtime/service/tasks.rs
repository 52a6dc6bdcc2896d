//! The grid's operations over this node's coordinator: submit, query, wait, cancel, drain, schedule,
//! and a joined worker's poll and report. Each is written once, here; the admin API's routes and the
//! in-process `Grid` handle call these, and a remote caller reaches them through the admin API.
//!
//! Errors are the contract's [`ApiError`]s, whichever layer refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::hub::GridHub;
use crate::api::grid::{
    check_specs, state_name, AttemptOrder, JobView, NodeStatus, PollRequest, PollResponse, RecordedResponse,
    ScheduleRequest, SpecView, TaskView, TasksQuery, TasksResponse, WaitResponse,
};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::Coordinator;
use crate::grid::merge::{BatchBounds, SubmitSize};
use crate::grid::schedule::{resume as resume_decision, Zone};
use crate::grid::task::{Task, TaskId, TaskSpec, TaskState};
use crate::grid::{GridCommand, GridOutcome, Report};
use crate::ids::NodeId;
use crate::limits::{
    IDS_MAX, QUERY_LIMIT_MAX, QUERY_RESPONSE_BYTES_MAX, QUERY_SCAN_MAX, REPORT_BATCH_MAX, SUBMIT_BYTES_MAX,
    SUBMIT_COUNT_MAX, WAIT_MS_MAX,
};
use crate::state::{Command, Outcome, ReplicatedState};

/// The grid hub of `coordinator`'s node.
///
/// # Errors
/// Unavailable if the coordinator was started without one (a bare registry in a simulation).
pub fn hub(coordinator: &Coordinator) -> Result<Arc<GridHub>, ApiError> {
    GridHub::of(coordinator).ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "this node runs no task grid"))
}

/// Proposes a grid command and returns what it did.
///
/// # Errors
/// The coordinator's refusal (unavailable, outcome unknown, too large) or the table's.
pub async fn write(coordinator: &Coordinator, command: GridCommand) -> Result<GridOutcome, ApiError> {
    match coordinator.write(Command::App(command)).await? {
        Ok(Outcome::App(outcome)) => Ok(outcome),
        Ok(other) => Err(ApiError::unexpected(other)),
        Err(error) => Err(error.into()),
    }
}

/// As [`write`], and waits until this node applied it too, so that a read here sees it.
///
/// # Errors
/// As [`write`].
async fn write_here(coordinator: &Coordinator, command: GridCommand) -> Result<GridOutcome, ApiError> {
    match coordinator.write_at(Command::App(command)).await?.0 {
        Ok(Outcome::App(outcome)) => Ok(outcome),
        Ok(other) => Err(ApiError::unexpected(other)),
        Err(error) => Err(error.into()),
    }
}

fn recorded(outcome: GridOutcome) -> Result<RecordedResponse, ApiError> {
    match outcome {
        GridOutcome::Recorded { applied, refused } => Ok(RecordedResponse { applied, refused }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Submits `specs`, in batches of at most the table's batch size; returns their ids in order. A
/// submission that fits one entry goes out at once if one of this node's submission slots is free,
/// and otherwise waits to share the next entry with the others that waited (`grid::merge`).
///
/// # Errors
/// Bad arguments or too large (see [`check_specs`]) before anything is proposed; overloaded if too
/// many submissions wait for an entry here; then the coordinator's or the table's refusal. A batch
/// that fails leaves the earlier ones accepted.
pub async fn submit(coordinator: &Coordinator, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, ApiError> {
    let bytes = check_specs(&specs)?;
    let batch_max = coordinator.read_state(|state| state.grid.limits().batch_max).max(1);
    // A submission that fits one entry shares one with others when this node's slots are busy.
    let bounds = BatchBounds { tasks_max: batch_max, bytes_max: SUBMIT_BYTES_MAX };
    let size = SubmitSize { tasks: specs.len(), bytes };
    if bounds.admits(size) {
        if let Some(hub) = GridHub::of(coordinator) {
            return hub.submissions().submit(coordinator, specs, size, bounds).await;
        }
    }
    let mut ids = Vec::with_capacity(specs.len());
    let mut specs = specs;
    while !specs.is_empty() {
        let rest = specs.split_off(specs.len().min(batch_max));
        let outcome = write(coordinator, GridCommand::Submit { tasks: specs }).await?;
        ids.extend(outcome.ids());
        specs = rest;
    }
    Ok(ids)
}

/// Whether `task` passes the query's filters.
fn matches(task: &Task, query: &TasksQuery) -> bool {
    if query.state.is_some_and(|state| state != task.state) {
        return false;
    }
    if query.kind.as_ref().is_some_and(|kind| *kind != task.spec.kind) {
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

/// One page of tasks matching `query`: newest first, cut at the query's limit, at
/// [`QUERY_RESPONSE_BYTES_MAX`] of views and at [`QUERY_SCAN_MAX`] tasks looked at. Reads after a
/// linearizable barrier unless the query asks for local state.
///
/// # Errors
/// [`ErrorCode::NoTask`] for a query by id of an unknown task; unavailable if the barrier cannot
/// reach a quorum.
pub async fn query(coordinator: &Coordinator, query: &TasksQuery) -> Result<TasksResponse, ApiError> {
    if !query.local {
        coordinator.sync().await?;
    }
    let page = coordinator.read_state(|state| page(state, query));
    match query.id {
        Some(id) if page.tasks.is_empty() => Err(ApiError::new(ErrorCode::NoTask, format!("no task {id}"))),
        _ => Ok(page),
    }
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
        let one = |task: &Task| TaskView { spec: Some(SpecView::of(&task.spec)), ..view(task, true) };
        let tasks = state.grid.get(TaskId(id)).map(one).into_iter().collect();
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

/// Waits (up to `timeout`, at most [`WAIT_MS_MAX`]) until every id is terminal; returns the states
/// then. Unknown and ended tasks are answered at once and never registered; the waits this call
/// registers are released when it returns (or is dropped), on whichever node it runs.
///
/// # Errors
/// Bad arguments past [`IDS_MAX`] ids; unavailable without a quorum; too many waits.
///
/// # Cancel safety
/// Dropping the future releases its waits (they are swept as abandoned).
pub async fn wait(coordinator: &Coordinator, ids: &[TaskId], timeout: Duration) -> Result<WaitResponse, ApiError> {
    if ids.len() > IDS_MAX {
        return Err(ApiError::bad_arguments(format!("a wait names at most {IDS_MAX} ids")));
    }
    let timeout = timeout.min(Duration::from_millis(WAIT_MS_MAX));
    let hub = hub(coordinator)?;
    coordinator.sync().await?;
    let is_open =
        |state: &ReplicatedState, id: &TaskId| state.grid.get(*id).is_some_and(|task| !task.state.is_terminal());
    let open: Vec<TaskId> =
        coordinator.read_state(|state| ids.iter().copied().filter(|id| is_open(state, id)).collect());
    let receivers = hub.wait_all(&open).map_err(|error| ApiError::new(ErrorCode::TooManyWaits, error))?;
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

/// Cancels the tasks among `ids` that have not ended.
///
/// # Errors
/// Bad arguments for no ids or more than [`SUBMIT_COUNT_MAX`]; the coordinator's refusal.
pub async fn cancel(coordinator: &Coordinator, ids: &[TaskId]) -> Result<RecordedResponse, ApiError> {
    if ids.is_empty() || ids.len() > SUBMIT_COUNT_MAX {
        return Err(ApiError::bad_arguments(format!("give 1..={SUBMIT_COUNT_MAX} ids")));
    }
    recorded(write(coordinator, GridCommand::Cancel { tasks: ids.to_vec() }).await?)
}

/// Starts (or ends) draining `node`: it takes no new work.
///
/// # Errors
/// The coordinator's refusal.
pub async fn drain(coordinator: &Coordinator, node: NodeId, draining: bool) -> Result<RecordedResponse, ApiError> {
    recorded(write(coordinator, GridCommand::Drain { node, draining }).await?)
}

/// Adds or replaces a recurring job. A UTC job is committed as earlier builds committed it (replicas
/// compute its first due time with zone-free arithmetic); a zoned one with the first due time computed
/// here, so no replica reads time-zone data.
///
/// # Errors
/// Bad arguments for a malformed cadence or an unknown zone; the coordinator's or the table's refusal.
pub async fn schedule(coordinator: &Coordinator, request: ScheduleRequest) -> Result<RecordedResponse, ApiError> {
    let now = crate::clock::unix_millis();
    let zone = request.zone().map_err(ApiError::bad_arguments)?;
    let job = request.job(now).map_err(ApiError::bad_arguments)?;
    let command = if zone.is_utc() {
        GridCommand::Schedule { job: Box::new(job) }
    } else {
        job_control_ready(coordinator, "a time zone")?;
        let due_ms = job.cadence.next_after_in(&zone, now);
        GridCommand::ScheduleZoned { job: Box::new(job), tz: zone.name().to_owned(), due_ms }
    };
    recorded(write(coordinator, command).await?)
}

/// Deletes a recurring job.
///
/// # Errors
/// The coordinator's refusal.
pub async fn unschedule(coordinator: &Coordinator, name: String) -> Result<RecordedResponse, ApiError> {
    recorded(write(coordinator, GridCommand::Unschedule { name }).await?)
}

/// Every recurring job, by name, after a linearizable barrier.
///
/// # Errors
/// Unavailable without a quorum.
pub async fn jobs(coordinator: &Coordinator) -> Result<Vec<JobView>, ApiError> {
    coordinator.sync().await?;
    Ok(coordinator.read_state(|state| {
        state.grid.jobs().values().map(|job| JobView::of(job, &state.grid.job_extras(&job.spec.name))).collect()
    }))
}

/// `name`'s view from this node's state, or [`ErrorCode::NoJob`].
fn job_view(state: &ReplicatedState, name: &str) -> Result<JobView, ApiError> {
    let job = state.grid.jobs().get(name).ok_or_else(|| no_job(name))?;
    Ok(JobView::of(job, &state.grid.job_extras(name)))
}

/// Refuses `what` with [`ErrorCode::Unimplemented`] while a voter runs a build that cannot decode the
/// entries it commits (a rolling upgrade not yet finished): see
/// [`STATE_VERSION_JOB_CONTROL`](crate::registry::STATE_VERSION_JOB_CONTROL).
fn job_control_ready(coordinator: &Coordinator, what: &str) -> Result<(), ApiError> {
    let version = crate::registry::STATE_VERSION_JOB_CONTROL;
    if super::registry::cluster_applies(coordinator, version) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Unimplemented,
        format!("{what} needs state version {version}, and a voter runs an older build: upgrade every voter first"),
    ))
}

fn no_job(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NoJob, format!("no job named {name}"))
}

/// Pauses a job: it stays, and fires nothing until resumed. Pausing a paused job changes nothing.
/// Answers the job's view as committed.
///
/// # Errors
/// [`ErrorCode::NoJob`]; the coordinator's refusal.
pub async fn pause(coordinator: &Coordinator, name: String) -> Result<JobView, ApiError> {
    job_control_ready(coordinator, "pausing a job")?;
    write_here(coordinator, GridCommand::Pause { name: name.clone() }).await?;
    coordinator.read_state(|state| job_view(state, &name))
}

/// Resumes a paused job: the fire times that passed while it was paused are skipped (counted in its
/// `skipped`), and it is next due at its first fire time after now. This node computes both numbers
/// (reading the job's zone) and commits them. Resuming a job that is not paused changes nothing.
///
/// # Errors
/// [`ErrorCode::NoJob`]; bad arguments if its zone is unknown to this build; the coordinator's refusal.
pub async fn resume(coordinator: &Coordinator, name: String) -> Result<JobView, ApiError> {
    job_control_ready(coordinator, "resuming a job")?;
    coordinator.sync().await?;
    let now = crate::clock::unix_millis();
    let found = coordinator.read_state(|state| {
        let job = state.grid.jobs().get(&name)?;
        Some((job.spec.cadence.clone(), job.due_ms, state.grid.job_extras(&name)))
    });
    let (cadence, due_ms, extras) = found.ok_or_else(|| no_job(&name))?;
    if extras.paused {
        let zone = match &extras.tz {
            None => Zone::utc(),
            Some(tz) => Zone::parse(tz).map_err(ApiError::bad_arguments)?,
        };
        let decision = resume_decision(&cadence, &zone, due_ms, now);
        let command =
            GridCommand::Resume { name: name.clone(), due_ms: decision.next_due_ms, skipped: decision.skipped };
        write_here(coordinator, command).await?;
    }
    coordinator.read_state(|state| job_view(state, &name))
}

/// Submits one run of a job now, its cadence unchanged (a paused job too). Answers the job's view, whose
/// `last_task` is the new run.
///
/// # Errors
/// [`ErrorCode::NoJob`]; [`ErrorCode::JobRunning`] if its last run is still going and it does not allow
/// overlap; the table's refusal (full); the coordinator's.
pub async fn trigger(coordinator: &Coordinator, name: String) -> Result<JobView, ApiError> {
    job_control_ready(coordinator, "triggering a job")?;
    let outcome = write_here(coordinator, GridCommand::Trigger { name: name.clone() }).await?;
    coordinator.read_state(|state| {
        let view = job_view(state, &name)?;
        match outcome {
            GridOutcome::Recorded { applied: 0, .. } => {
                let run = view.last_task.map_or_else(String::new, |task| format!(" (task {task})"));
                Err(ApiError::new(
                    ErrorCode::JobRunning,
                    format!(
                        "job {name}'s last run{run} is still going and the job does not allow overlap: \
                         trigger it again once that run ends, or schedule it with overlap"
                    ),
                ))
            }
            _ => Ok(view),
        }
    })
}

/// The attempts `node`'s current incarnation (its registration owned by `session`) holds with a
/// token above `after`, as orders; `None` if that session does not own the registration. The one
/// answer to "which attempts belong to this incarnation", for the local worker (through the hub)
/// and a joined one (through [`poll`]) alike.
pub fn incarnation_orders(
    state: &ReplicatedState,
    node: NodeId,
    session: u64,
    after: u64,
) -> Option<Vec<AttemptOrder>> {
    let held = state.incarnation_attempts(node, session, after)?;
    Some(
        held.into_iter()
            .filter_map(|(task, token)| {
                let entry = state.grid.get(task)?;
                let attempt = entry.current_attempt().filter(|attempt| attempt.token == token)?;
                Some(AttemptOrder { task, token, number: attempt.number, spec: entry.spec.clone() })
            })
            .collect(),
    )
}

/// A joined worker's poll: its incarnation's attempts newer than its last token, waiting (bounded by
/// [`WAIT_MS_MAX`]) for one if there are none.
///
/// # Errors
/// Unavailable if this node runs no grid.
pub async fn poll(coordinator: &Coordinator, request: &PollRequest) -> Result<PollResponse, ApiError> {
    let node = NodeId(request.node);
    let deadline = crate::clock::monotonic() + Duration::from_millis(request.wait_ms.min(WAIT_MS_MAX));
    let mut applied = hub(coordinator)?.watch_applied();
    loop {
        applied.borrow_and_update();
        let (found, draining) = coordinator.read_state(|state| {
            (
                incarnation_orders(state, node, request.session, request.after_token),
                state.grid.draining().contains(&node),
            )
        });
        match found {
            None => return Ok(PollResponse { attempts: Vec::new(), registered: false, draining }),
            Some(attempts) if !attempts.is_empty() || draining => {
                return Ok(PollResponse { attempts, registered: true, draining });
            }
            Some(_) => {}
        }
        if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
            return Ok(PollResponse { attempts: Vec::new(), registered: true, draining });
        }
    }
}

/// `node` as the table sees it, after a linearizable barrier: registered, draining, and the attempts
/// it holds (exact: the table's per-node index, not a scan of recent tasks).
///
/// # Errors
/// Unavailable without a quorum.
pub async fn node_status(coordinator: &Coordinator, node: NodeId) -> Result<NodeStatus, ApiError> {
    coordinator.sync().await?;
    Ok(coordinator.read_state(|state| NodeStatus {
        node: node.0,
        registered: state.is_registered(node),
        draining: state.grid.draining().contains(&node),
        held: u32::try_from(state.grid.held_by(node).len()).unwrap_or(u32::MAX),
    }))
}

/// Records a worker's reports (fenced by token, so sending them again is harmless).
///
/// # Errors
/// Bad arguments past [`REPORT_BATCH_MAX`] reports; the coordinator's refusal.
pub async fn report(coordinator: &Coordinator, reports: Vec<Report>) -> Result<RecordedResponse, ApiError> {
    if reports.len() > REPORT_BATCH_MAX {
        return Err(ApiError::bad_arguments(format!("at most {REPORT_BATCH_MAX} reports")));
    }
    recorded(write(coordinator, GridCommand::Report { reports }).await?)
}

#[cfg(test)]
mod tests;
