//! The `Grid` handle: submit tasks, await their results, cancel them, look them up. It works the
//! same from inside a node (straight to its coordinator) and from a client process (over any
//! node's admin API, failing over along a list of nodes).
//!
//! A submission returns once the tasks are committed: from then on they survive any minority failure
//! and a full-cluster restart, and run until they end.

use std::marker::PhantomData;
use std::time::Duration;

use super::port::Port;
use crate::api::grid::{TaskView, TasksQuery, TasksResponse};
use crate::api::{ApiError, ErrorCode};
use crate::client::Client;
use crate::clock::{monotonic, unix_millis};
use crate::consensus::Coordinator;
use crate::grid::kinds::{Decode, Encode, Task};
use crate::grid::task::{Encoding, RetryPolicy, Strategy, TaskId, TaskSpec, TaskState};
use crate::ids::NodeId;
use crate::limits::IDS_MAX;

/// Longest a single wait call holds before looking again (the overall wait has its own deadline).
const WAIT_SLICE: Duration = Duration::from_secs(5);

/// Why a grid call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridApiError {
    /// The cluster refused or failed the call. Branch on its code: retryable
    /// ([`ErrorCode::is_retryable`]: nothing was applied), outcome unknown
    /// ([`ErrorCode::may_have_applied`]: a submission may have been accepted), or a refusal (bad
    /// options, a full table, too large).
    #[error("{}: {}", .0.code, .0.message)]
    Api(ApiError),
    /// No such task (never accepted, or forgotten by history retention).
    #[error("no task {0:?}")]
    Unknown(TaskId),
    /// The wait ended before the task did.
    #[error("task {0:?} has not ended yet")]
    NotYet(TaskId),
    /// The task ended without a result.
    #[error("task {task:?} ended {state:?}: {error}")]
    Ended {
        /// The task.
        task: TaskId,
        /// How it ended.
        state: TaskState,
        /// The last attempt's error.
        error: String,
    },
    /// The result could not be decoded as the task type's output.
    #[error("task {task:?}: bad result: {reason}")]
    BadResult {
        /// The task.
        task: TaskId,
        /// Why.
        reason: String,
    },
}

impl GridApiError {
    /// The contract code of this error ([`ErrorCode::NoTask`] for an unknown task,
    /// [`ErrorCode::Unavailable`] for a wait that ended first, [`ErrorCode::BadArguments`] for a
    /// task that ended without a result of its type).
    pub fn code(&self) -> ErrorCode {
        match self {
            GridApiError::Api(error) => error.code,
            GridApiError::Unknown(_) => ErrorCode::NoTask,
            GridApiError::NotYet(_) => ErrorCode::Unavailable,
            GridApiError::Ended { .. } | GridApiError::BadResult { .. } => ErrorCode::BadArguments,
        }
    }
}

impl From<ApiError> for GridApiError {
    fn from(error: ApiError) -> Self {
        GridApiError::Api(error)
    }
}

/// How to run a submitted task.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Higher first (default 0).
    pub priority: i32,
    /// Not before this long from now.
    pub delay: Option<Duration>,
    /// Per-attempt timeout (default 30 s).
    pub timeout: Option<Duration>,
    /// Attempts and backoff (default 3, 100 ms doubling).
    pub retry: Option<RetryPolicy>,
    /// Key for consistent-hash placement.
    pub shard_key: Option<String>,
    /// Placement override.
    pub strategy: Option<Strategy>,
    /// Run only on this node.
    pub affinity: Option<NodeId>,
}

impl SubmitOptions {
    /// The spec of one task of kind `kind` with `input`.
    pub fn spec(&self, kind: &str, input: Vec<u8>, encoding: Encoding) -> TaskSpec {
        let mut spec = TaskSpec::new(kind, input);
        spec.encoding = encoding;
        spec.priority = self.priority;
        spec.not_before_ms = self.delay.map_or(0, |delay| unix_millis().saturating_add(delay.as_millis() as u64));
        if let Some(timeout) = self.timeout {
            spec.timeout_ms = timeout.as_millis().max(1) as u64;
        }
        if let Some(retry) = self.retry {
            spec.retry = retry;
        }
        spec.shard_key.clone_from(&self.shard_key);
        spec.strategy = self.strategy;
        spec.affinity = self.affinity;
        spec
    }
}

/// A handle on the task grid, in this process ([`Grid::local`]) or through a cluster's admin API
/// ([`Grid::remote`]); both answer alike (see [`Port`]). Cheap to clone; clones call concurrently.
#[derive(Clone, Debug)]
pub struct Grid {
    port: Port,
}

/// A submitted task of type `T`.
pub struct TaskHandle<T> {
    id: TaskId,
    grid: Grid,
    task: PhantomData<fn() -> T>,
}

impl<T> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        TaskHandle { id: self.id, grid: self.grid.clone(), task: PhantomData }
    }
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TaskHandle").field(&self.id).finish()
    }
}

impl<T: Task> TaskHandle<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Waits (up to `timeout`) for the task to end and returns its output.
    ///
    /// # Errors
    /// [`GridApiError::Ended`] if it failed, timed out or was cancelled; [`GridApiError::NotYet`] past
    /// the timeout.
    pub async fn result(&self, timeout: Duration) -> Result<T::Output, GridApiError> {
        let view = self.grid.wait(self.id, timeout).await?;
        if view.state != TaskState::Succeeded {
            let error = view.attempts.last().and_then(|attempt| attempt.error.clone()).unwrap_or_default();
            return Err(GridApiError::Ended { task: self.id, state: view.state, error });
        }
        let bytes: Vec<u8> = view
            .result
            .and_then(|value| serde_json::from_value(value).ok())
            .ok_or_else(|| GridApiError::BadResult { task: self.id, reason: "no result bytes".into() })?;
        T::Output::decode(&bytes).map_err(|reason| GridApiError::BadResult { task: self.id, reason })
    }

    /// The task as it stands, with its attempts.
    ///
    /// # Errors
    /// [`GridApiError::Unknown`] or unavailable.
    pub async fn status(&self) -> Result<TaskView, GridApiError> {
        self.grid.status(self.id).await
    }

    /// Cancels the task if it has not ended. Returns whether it was cancelled by this call.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn cancel(&self) -> Result<bool, GridApiError> {
        Ok(self.grid.cancel(&[self.id]).await? == 1)
    }
}

impl Grid {
    /// The grid through this node's coordinator.
    pub fn local(coordinator: Coordinator) -> Grid {
        Grid { port: Port::Local(coordinator) }
    }

    /// The grid through a client of the admin API (it needs the admin token to submit).
    pub fn remote(client: Client) -> Grid {
        Grid { port: Port::Remote(client) }
    }

    /// The port this handle calls through.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// Submits one task of type `T`.
    ///
    /// # Errors
    /// [`GridApiError::Api`]: a refusal for bad options or a full table; unavailable without a leader.
    pub async fn submit<T: Task>(
        &self,
        input: &T::Input,
        options: &SubmitOptions,
    ) -> Result<TaskHandle<T>, GridApiError> {
        let mut handles = self.submit_batch::<T>(std::slice::from_ref(input), options).await?;
        handles.pop().ok_or_else(|| GridApiError::Api(ApiError::unexpected("an empty submission")))
    }

    /// Submits one task of type `T` per input, committed together.
    ///
    /// # Errors
    /// As [`Grid::submit`]; nothing is accepted if anything is refused.
    pub async fn submit_batch<T: Task>(
        &self,
        inputs: &[T::Input],
        options: &SubmitOptions,
    ) -> Result<Vec<TaskHandle<T>>, GridApiError> {
        let specs = inputs
            .iter()
            .map(|input| {
                let encoded = input.encode().map_err(ApiError::bad_arguments)?;
                Ok(options.spec(T::NAME, encoded, Encoding::Rkyv))
            })
            .collect::<Result<Vec<_>, GridApiError>>()?;
        let ids = self.submit_specs(specs).await?;
        Ok(ids.into_iter().map(|id| TaskHandle { id, grid: self.clone(), task: PhantomData }).collect())
    }

    /// Submits raw specs (any kind, any encoding); returns their ids.
    ///
    /// One submission is one log entry: at most
    /// [`SUBMIT_COUNT_MAX`](crate::limits::SUBMIT_COUNT_MAX) tasks and
    /// [`SUBMIT_BYTES_MAX`](crate::limits::SUBMIT_BYTES_MAX) encoded bytes, all or none.
    ///
    /// # Errors
    /// As [`Grid::submit`]; a refusal ([`GridApiError::Api`]) naming the limit past either bound.
    pub async fn submit_specs(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, GridApiError> {
        Ok(self.port.submit(specs).await?)
    }

    /// A task with its attempts.
    ///
    /// # Errors
    /// [`GridApiError::Unknown`] or unavailable.
    pub async fn status(&self, id: TaskId) -> Result<TaskView, GridApiError> {
        let query = TasksQuery { id: Some(id.0), ..TasksQuery::default() };
        self.query(&query).await?.pop().ok_or(GridApiError::Unknown(id))
    }

    /// The first page of tasks matching `query`, newest first.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn query(&self, query: &TasksQuery) -> Result<Vec<TaskView>, GridApiError> {
        Ok(self.query_page(query).await?.tasks)
    }

    /// One page of tasks matching `query`, newest first; pass its `next` as the query's `cursor` for
    /// the following page.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn query_page(&self, query: &TasksQuery) -> Result<TasksResponse, GridApiError> {
        match self.port.query(query).await {
            // A query by id of an unknown task is an empty page to a listing.
            Err(error) if error.code == ErrorCode::NoTask => Ok(TasksResponse { tasks: Vec::new(), next: None }),
            other => Ok(other?),
        }
    }

    /// Waits (up to `timeout`) until every task in `ids` ended; returns how many are in each state.
    /// More than [`IDS_MAX`] ids are awaited in turns of that many.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn wait_all(
        &self,
        ids: &[TaskId],
        timeout: Duration,
    ) -> Result<std::collections::BTreeMap<String, usize>, GridApiError> {
        let deadline = monotonic() + timeout;
        let mut states = std::collections::BTreeMap::new();
        for chunk in ids.chunks(IDS_MAX) {
            let remaining = deadline.saturating_duration_since(monotonic());
            for (state, count) in self.wait_chunk(chunk, remaining).await? {
                *states.entry(state).or_default() += count;
            }
        }
        Ok(states)
    }

    async fn wait_chunk(
        &self,
        ids: &[TaskId],
        timeout: Duration,
    ) -> Result<std::collections::BTreeMap<String, usize>, GridApiError> {
        let deadline = monotonic() + timeout;
        loop {
            let slice = deadline.saturating_duration_since(monotonic()).min(WAIT_SLICE);
            let answer = self.port.wait(ids, slice).await?;
            if answer.done || monotonic() >= deadline {
                return Ok(answer.states);
            }
        }
    }

    /// Waits (up to `timeout`) until task `id` ended and returns it.
    ///
    /// # Errors
    /// [`GridApiError::NotYet`] past the timeout, [`GridApiError::Unknown`], unavailable.
    pub async fn wait(&self, id: TaskId, timeout: Duration) -> Result<TaskView, GridApiError> {
        self.wait_all(&[id], timeout).await?;
        let view = self.status(id).await?;
        if view.state.is_terminal() {
            Ok(view)
        } else {
            Err(GridApiError::NotYet(id))
        }
    }

    /// Cancels tasks that have not ended; returns how many were cancelled.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn cancel(&self, ids: &[TaskId]) -> Result<u32, GridApiError> {
        Ok(self.port.cancel(ids).await?.applied)
    }
}
