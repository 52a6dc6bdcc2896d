//! The task grid's contract: the requests and answers of every grid operation, as the admin API
//! carries them (JSON) and the Rust client, the CLI and the `Grid` handle use them. Serde only: no
//! clock, no I/O.
//!
//! Request bodies refuse unknown fields: a misspelt option must not be silently dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use crate::grid::command::{Job, JobExtras, JobSpec};
use crate::grid::schedule::{Cadence, CronExpr, Misfire, Zone};
use crate::grid::task::{
    AttemptState, Encoding, FencingToken, RetryPolicy, Strategy, Task, TaskId, TaskSpec, TaskState,
};
use crate::grid::Report;
use crate::limits::{SUBMIT_BYTES_MAX, SUBMIT_COUNT_MAX};

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
            SubmitRefusal::Bad(message) => ApiError::bad_arguments(message),
            too_large @ SubmitRefusal::TooLarge { .. } => ApiError::new(ErrorCode::TooLarge, too_large),
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
    /// The specs this request asks for, submitted at `now_ms` (Unix ms: a delay counts from it).
    /// The size of `count` copies is checked on one spec before any copy is made.
    ///
    /// # Errors
    /// A [`SubmitRefusal`] naming the bad field or the size limit.
    pub fn specs(self, now_ms: u64) -> Result<Vec<TaskSpec>, SubmitRefusal> {
        if let Some(specs) = self.specs {
            if self.task.is_some() {
                return Err(SubmitRefusal::Bad("give either task or specs".into()));
            }
            check_specs(&specs)?;
            return Ok(specs);
        }
        let count = self.count.unwrap_or(1);
        let spec = self.spec(now_ms)?;
        check_submission(&spec, count)?;
        Ok(vec![spec; count])
    }

    /// The one spec a `task` request repeats `count` times, submitted at `now_ms` (Unix ms).
    ///
    /// # Errors
    /// [`SubmitRefusal::Bad`] naming the bad field.
    pub fn spec(self, now_ms: u64) -> Result<TaskSpec, SubmitRefusal> {
        let bad = |message: &str| SubmitRefusal::Bad(message.to_string());
        let kind = self.task.ok_or_else(|| bad("task is required"))?;
        let input = self.input.unwrap_or_else(|| serde_json::json!({}));
        let input = serde_json::to_vec(&input).map_err(|error| bad(&error.to_string()))?;
        let mut spec = TaskSpec::new(kind, input);
        spec.encoding = Encoding::Json;
        spec.priority = self.priority.unwrap_or(0);
        spec.not_before_ms = self.delay_ms.map_or(0, |delay| now_ms.saturating_add(delay));
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
        spec.affinity = self.affinity.map(crate::ids::NodeId);
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
    /// What it was submitted with: only in a view of one task (`id=`), never in a listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecView>,
}

/// What a task was submitted with, as a view of one task shows it: enough to submit it again (the
/// field names are a [`SubmitRequest`]'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecView {
    /// The input: JSON for JSON submissions; for rkyv ones, the bytes as an array.
    pub input: serde_json::Value,
    /// How input and result are encoded.
    pub encoding: Encoding,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the first retry (doubling).
    pub backoff_ms: u64,
    /// Shard key.
    pub key: Option<String>,
    /// The node it must run on.
    pub affinity: Option<u64>,
    /// Placement override.
    pub strategy: Option<Strategy>,
}

impl SpecView {
    /// The view of `spec`.
    pub fn of(spec: &TaskSpec) -> SpecView {
        let input = match spec.encoding {
            Encoding::Json => serde_json::from_slice(&spec.input).unwrap_or(serde_json::Value::Null),
            Encoding::Rkyv => serde_json::json!(spec.input),
        };
        SpecView {
            input,
            encoding: spec.encoding,
            timeout_ms: spec.timeout_ms,
            attempts: spec.retry.attempts_max,
            backoff_ms: spec.retry.backoff_ms,
            key: spec.shard_key.clone(),
            affinity: spec.affinity.map(|node| node.0),
            strategy: spec.strategy,
        }
    }
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
            spec: None,
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
    /// Only tasks of this kind (exact name).
    #[serde(default)]
    pub kind: Option<String>,
    /// Only tasks with an event at or after this (Unix ms).
    pub since_ms: Option<u64>,
    /// Only tasks with an event at or before this.
    pub until_ms: Option<u64>,
    /// At most this many (default 100, at most [`QUERY_LIMIT_MAX`](crate::limits::QUERY_LIMIT_MAX)).
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
    /// Give up after this (capped at [`WAIT_MS_MAX`](crate::limits::WAIT_MS_MAX)).
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
    /// A cron expression (5 or 6 fields; read in `tz`), or
    pub cron: Option<String>,
    /// a fixed interval.
    pub every_ms: Option<u64>,
    /// The IANA time zone the cron is read in (`Europe/Berlin`); default UTC. Only for a cron.
    #[serde(default)]
    pub tz: Option<String>,
    /// `skip` (default) or `run_once`.
    #[serde(default)]
    pub misfire: Misfire,
    /// Allow a run to start while the previous one goes on.
    #[serde(default)]
    pub overlap: bool,
}

impl ScheduleRequest {
    /// The zone the request's cron is read in: `tz`, or UTC.
    ///
    /// # Errors
    /// A message naming the unknown zone, with an example of a known one.
    pub fn zone(&self) -> Result<Zone, String> {
        self.tz.as_deref().map_or_else(|| Ok(Zone::utc()), |name| Zone::parse(name).map_err(|error| error.to_string()))
    }

    /// The job this asks for, scheduled at `now` (Unix ms: an interval counts from it).
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn job(self, now: u64) -> Result<JobSpec, String> {
        let zone = self.zone()?;
        let cadence = match (&self.cron, self.every_ms) {
            (Some(cron), None) => Cadence::Cron(CronExpr::parse(cron).map_err(|error| error.to_string())?),
            (None, Some(every)) => Cadence::interval(every, now).map_err(|error| error.to_string())?,
            _ => return Err("give exactly one of cron and every_ms".into()),
        };
        if !zone.is_utc() && matches!(cadence, Cadence::Interval { .. }) {
            return Err(format!("tz {} applies to a cron: an interval is the same in every zone", zone.name()));
        }
        if cadence.next_after_in(&zone, now).is_none() {
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
        let task = run.spec(now).map_err(|refusal| refusal.to_string())?;
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
    /// The IANA zone its cron is read in, or `UTC`.
    #[serde(default = "utc")]
    pub tz: String,
    /// Whether it is paused (it fires nothing until resumed; `due_ms` is then null).
    #[serde(default)]
    pub paused: bool,
}

fn utc() -> String {
    Zone::UTC.to_owned()
}

impl JobView {
    /// The view of `job`, with what the table keeps beside it.
    pub fn of(job: &Job, extras: &JobExtras) -> JobView {
        let cadence = match &job.spec.cadence {
            Cadence::Cron(expr) => format!("cron {expr}"),
            Cadence::Interval { every_ms, .. } => format!("every {every_ms} ms"),
        };
        JobView {
            name: job.spec.name.clone(),
            task: job.spec.task.kind.clone(),
            cadence,
            due_ms: job.due_ms.filter(|_| !extras.paused),
            runs: job.runs,
            skipped: job.skipped,
            last_task: job.last_task.map(|task| task.0),
            tz: extras.tz.clone().unwrap_or_else(utc),
            paused: extras.paused,
        }
    }
}

/// The jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsResponse {
    /// Every job, by name.
    pub jobs: Vec<JobView>,
}

/// A job to delete, pause, resume or trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    /// Its name.
    pub name: String,
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
    /// Wait up to this long for one (capped at [`WAIT_MS_MAX`](crate::limits::WAIT_MS_MAX)).
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

/// An attempt this node must run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AttemptOrder {
    /// The task.
    pub task: TaskId,
    /// The attempt's fencing token.
    pub token: FencingToken,
    /// 1 for the first attempt.
    pub number: u32,
    /// What to run.
    pub spec: TaskSpec,
}

/// The node a `GET /grid/node` asks about.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeQuery {
    /// Its id.
    pub node: u64,
}

/// A node as the task table sees it: whether it is registered and draining, and how many attempts it
/// holds that have not ended (exact, from the table's per-node index, however many tasks are newer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub node: u64,
    /// Whether it has a registration now.
    pub registered: bool,
    /// Whether it is being drained (it takes no new work).
    pub draining: bool,
    /// Attempts assigned to it that have not ended.
    pub held: u32,
}

#[cfg(test)]
mod tests;
