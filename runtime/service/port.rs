//! The one port every caller of the grid goes through: this node's coordinator ([`Port::Local`]) or
//! a cluster's admin API through a client ([`Port::Remote`]). The `Grid` handle, the worker and the
//! node's registration all hold a port, so the local and remote paths answer alike: the same
//! operations, the same contract types, the same [`ApiError`] codes (the remote path's errors are the
//! admin API's answers to the same service calls, decoded by code).

use std::time::Duration;

use super::{registry, tasks};
use crate::api::grid::{
    JobView, NodeStatus, PollRequest, PollResponse, RecordedResponse, ScheduleRequest, SubmitRequest, TasksQuery,
    TasksResponse, WaitResponse,
};
use crate::api::registry::{CreateBody, CreatedBody, DeleteBody, SessionBody};
use crate::api::ApiError;
use crate::client::Client;
use crate::consensus::{Consistency, Coordinator};
use crate::grid::task::{TaskId, TaskSpec};
use crate::grid::Report;
use crate::ids::NodeId;
use crate::registry::{Stat, ZPath};

/// Where grid calls go.
#[derive(Clone)]
pub enum Port {
    /// Through this node's coordinator, in process.
    Local(Coordinator),
    /// Through a cluster's admin API (the admin token is needed for changes).
    Remote(Client),
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Port::Local(coordinator) => f.debug_tuple("Port::Local").field(&coordinator.node()).finish(),
            Port::Remote(client) => f.debug_tuple("Port::Remote").field(client).finish(),
        }
    }
}

fn ids(tasks: &[TaskId]) -> Vec<u64> {
    tasks.iter().map(|id| id.0).collect()
}

impl Port {
    /// Submits `specs` (one submission: all or, past a limit, none); returns their ids in order.
    ///
    /// # Errors
    /// Bad arguments or too large before anything is sent; then the cluster's refusal.
    /// [`crate::api::ErrorCode::OutcomeUnknown`] means the tasks may have been accepted.
    pub async fn submit(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, ApiError> {
        crate::api::grid::check_specs(&specs)?;
        match self {
            Port::Local(coordinator) => tasks::submit(coordinator, specs).await,
            Port::Remote(client) => {
                let request = SubmitRequest { specs: Some(specs), ..Default::default() };
                Ok(client.submit(&request).await?.into_iter().map(TaskId).collect())
            }
        }
    }

    /// One page of tasks matching `query`.
    ///
    /// # Errors
    /// No task (a query by id of an unknown task), unavailable.
    pub async fn query(&self, query: &TasksQuery) -> Result<TasksResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::query(coordinator, query).await,
            Port::Remote(client) => Ok(client.tasks_page(query).await?),
        }
    }

    /// Waits (up to `timeout`, at most one call's bound) until every id ended.
    ///
    /// # Errors
    /// Bad arguments, too many waits, unavailable.
    pub async fn wait(&self, tasks: &[TaskId], timeout: Duration) -> Result<WaitResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::wait(coordinator, tasks, timeout).await,
            Port::Remote(client) => Ok(client.wait_tasks(&ids(tasks), timeout.as_millis() as u64).await?),
        }
    }

    /// Cancels the tasks that have not ended.
    ///
    /// # Errors
    /// Bad arguments, unavailable, outcome unknown.
    pub async fn cancel(&self, tasks: &[TaskId]) -> Result<RecordedResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::cancel(coordinator, tasks).await,
            Port::Remote(client) => Ok(client.cancel(&ids(tasks)).await?),
        }
    }

    /// Starts or ends draining `node`.
    ///
    /// # Errors
    /// Unavailable, outcome unknown.
    pub async fn drain(&self, node: NodeId, draining: bool) -> Result<RecordedResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::drain(coordinator, node, draining).await,
            Port::Remote(client) => Ok(client.drain(node.0, draining).await?),
        }
    }

    /// `node` as the table sees it (registered, draining, attempts held).
    ///
    /// # Errors
    /// Unavailable.
    pub async fn node_status(&self, node: NodeId) -> Result<NodeStatus, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::node_status(coordinator, node).await,
            Port::Remote(client) => Ok(client.node_status(node.0).await?),
        }
    }

    /// Adds or replaces a recurring job.
    ///
    /// # Errors
    /// Bad arguments, unavailable, outcome unknown.
    pub async fn schedule(&self, request: ScheduleRequest) -> Result<RecordedResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::schedule(coordinator, request).await,
            Port::Remote(client) => Ok(client.schedule(&request).await?),
        }
    }

    /// Every recurring job.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::jobs(coordinator).await,
            Port::Remote(client) => Ok(client.jobs().await?),
        }
    }

    /// A worker's poll for its attempts.
    ///
    /// # Errors
    /// Unauthorized (remote, without the token), unavailable.
    pub async fn poll(&self, request: &PollRequest) -> Result<PollResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::poll(coordinator, request).await,
            Port::Remote(client) => Ok(client.post("/grid/worker/poll", request).await?),
        }
    }

    /// A worker's reports (fenced by token: sending them again is harmless).
    ///
    /// # Errors
    /// Unavailable or outcome unknown (send again), bad arguments.
    pub async fn report(&self, reports: Vec<Report>) -> Result<RecordedResponse, ApiError> {
        match self {
            Port::Local(coordinator) => tasks::report(coordinator, reports).await,
            Port::Remote(client) => {
                Ok(client.post("/grid/worker/report", &crate::api::grid::ReportRequest { reports }).await?)
            }
        }
    }

    /// Creates a node (see `service::registry::create`).
    ///
    /// # Errors
    /// Node exists, no node (parent), no auth, unavailable, outcome unknown.
    pub async fn create(&self, body: CreateBody) -> Result<CreatedBody, ApiError> {
        match self {
            Port::Local(coordinator) => registry::create(coordinator, None, body).await,
            Port::Remote(client) => Ok(client.post("/registry/create", &body).await?),
        }
    }

    /// Deletes a node.
    ///
    /// # Errors
    /// No node, not empty, bad version, unavailable, outcome unknown.
    pub async fn delete(&self, body: DeleteBody) -> Result<(), ApiError> {
        match self {
            Port::Local(coordinator) => registry::delete(coordinator, None, &body).await,
            Port::Remote(client) => {
                client.post::<_, serde_json::Value>("/registry/delete", &body).await.map(|_| ()).map_err(Into::into)
            }
        }
    }

    /// A node's stat, if it exists, at `consistency`.
    ///
    /// # Errors
    /// Unavailable.
    pub async fn stat(&self, path: &ZPath, consistency: Consistency) -> Result<Option<Stat>, ApiError> {
        match self {
            Port::Local(coordinator) => Ok(registry::stat(coordinator, path, consistency).await?.stat),
            Port::Remote(client) => Ok(client.exists(path.as_str(), consistency).await?),
        }
    }

    /// Opens a session; the answer carries its secret. Nothing keeps it alive but
    /// [`Port::keepalive`].
    ///
    /// # Errors
    /// Bad arguments (timeout out of range), quota, unavailable.
    pub async fn open_session(&self, timeout_ms: u64) -> Result<SessionBody, ApiError> {
        match self {
            Port::Local(coordinator) => registry::open_session(coordinator, Some(timeout_ms)).await,
            Port::Remote(client) => {
                let body = SessionBody { session: None, timeout_ms: Some(timeout_ms), alive: None, secret: None };
                Ok(client.post("/registry/session/open", &body).await?)
            }
        }
    }

    /// Keeps a session alive; the answer says whether it still is.
    ///
    /// # Errors
    /// No auth for a wrong secret, unavailable.
    pub async fn keepalive(&self, body: &SessionBody) -> Result<SessionBody, ApiError> {
        match self {
            Port::Local(coordinator) => registry::keepalive(coordinator, body).await,
            Port::Remote(client) => Ok(client.post("/registry/session/keepalive", body).await?),
        }
    }
}
