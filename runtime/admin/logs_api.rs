//! Task attempts' logs over the admin API: `GET /grid/logs?id=N[&attempt=K][&after=S]` on any member.
//!
//! The lines of an attempt are kept only by the node that ran it (`worker/logs.rs`). The route reads
//! the task table through the service layer (a linearizable read) to find the attempt (the latest
//! unless `attempt=` names one) and its node; it reads the lines itself if that node is this one, and
//! otherwise asks that node's admin API (`admin` in its registration `/grid/nodes/<id>`) with this
//! node's own certificate on the internal route `GET /grid/logs/local`, which serves only what the
//! node keeps and is open to the worker role (any node) besides readers.
//!
//! Answer: `{"task", "attempt", "node", "lines": [{"seq", "ts_ms", "level", "text"}], "truncated",
//! "ended"}`; `after=S` keeps lines numbered above `S`; `ended` once the table has ended the attempt
//! and its node has written its last line. A holder that is not registered, advertises no admin
//! address or cannot be reached is answered `unavailable` (503) naming it, never an empty success;
//! an unknown task or attempt number is `no task` (404).
//!
//! Bounded: one attempt's answer is at most its kept window (`TASK_LOG_ATTEMPT_BYTES_MAX` of stored
//! lines); the fetch between nodes is one request with the admin client's timeout and response
//! bound.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::api::grid::{AttemptView, TaskView, TasksQuery};
use crate::api::{ApiError, ErrorCode};
use crate::grid::task::{AttemptState, TaskId};
use crate::ids::NodeId;
use crate::mesh::PeerAddr;
use crate::service::tasks as service;
use crate::worker::logs::{AttemptKey, LogLine};

/// Query of `GET /grid/logs` and `GET /grid/logs/local`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// The task.
    pub id: u64,
    /// The attempt number (1 for the first); the latest by default (required on `/local`).
    #[serde(default)]
    pub attempt: Option<u32>,
    /// Only lines numbered above this.
    #[serde(default)]
    pub after: Option<u64>,
}

impl LogsQuery {
    /// The query string (`id=N&attempt=K&after=S`).
    pub fn to_query(&self) -> String {
        let mut query = format!("id={}", self.id);
        if let Some(attempt) = self.attempt {
            query.push_str(&format!("&attempt={attempt}"));
        }
        if let Some(after) = self.after {
            query.push_str(&format!("&after={after}"));
        }
        query
    }
}

/// The answer of `GET /grid/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsView {
    /// The task.
    pub task: u64,
    /// The attempt's number.
    pub attempt: u32,
    /// The node that ran it (and keeps its lines).
    pub node: u64,
    /// Its kept lines numbered above the query's `after`, oldest first.
    pub lines: Vec<LogLine>,
    /// Older lines were dropped by the per-attempt bound.
    pub truncated: bool,
    /// The attempt is over: no more lines will come.
    pub ended: bool,
}

/// The log routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/grid/logs", get(logs)).route("/grid/logs/local", get(local))
}

fn unavailable(message: String) -> HttpError {
    HttpError(ApiError::new(ErrorCode::Unavailable, message))
}

/// The attempt `number` of `task`, or its latest.
///
/// # Errors
/// `no task`, saying which attempts exist.
pub fn pick_attempt(task: &TaskView, number: Option<u32>) -> Result<&AttemptView, ApiError> {
    let found = match number {
        Some(number) => task.attempts.iter().find(|attempt| attempt.attempt == number),
        None => task.attempts.last(),
    };
    found.ok_or_else(|| {
        let has = match (task.attempts.first(), task.attempts.last()) {
            (Some(first), Some(last)) => format!("it has attempts {} to {}", first.attempt, last.attempt),
            _ => "it has no attempt yet".to_string(),
        };
        let which = number.map_or_else(|| "an attempt".to_string(), |number| format!("attempt {number}"));
        ApiError::new(ErrorCode::NoTask, format!("task {} has no {which}: {has}", task.id))
    })
}

async fn logs(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<LogsView>, HttpError> {
    let coordinator = coordinator(&state).map_err(|_| {
        unavailable("this node holds no task table (a joined worker, or starting): ask a member".into())
    })?;
    let tasks = service::query(&coordinator, &TasksQuery { id: Some(query.id), ..TasksQuery::default() }).await?;
    let task = tasks.tasks.first().ok_or_else(|| ApiError::new(ErrorCode::NoTask, format!("no task {}", query.id)))?;
    let attempt = pick_attempt(task, query.attempt)?;
    let table_ended = !matches!(attempt.state, AttemptState::Assigned | AttemptState::Running);
    let holder = NodeId(attempt.node);
    let asked = LogsQuery { attempt: Some(attempt.attempt), ..query };
    let mut view = if holder == state.view.node() {
        read_local(&state, &asked).await?
    } else {
        let admin = coordinator
            .read_state(|replicated| replicated.nodes())
            .into_iter()
            .find(|(id, _)| *id == holder)
            .map(|(_, record)| record.admin)
            .ok_or_else(|| unavailable(format!("node {holder} keeps these logs and is down (not registered)")))?
            .ok_or_else(|| {
                unavailable(format!("node {holder} keeps these logs and advertises no admin address (an older build)"))
            })?;
        fetch(&state, holder, &admin, &asked).await?
    };
    view.ended &= table_ended;
    Ok(Json(view))
}

/// The internal half: what this node keeps of one attempt.
async fn local(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<LogsView>, HttpError> {
    Ok(Json(read_local(&state, &query).await?))
}

async fn read_local(state: &AdminState, query: &LogsQuery) -> Result<LogsView, HttpError> {
    let node = state.view.node();
    let logs = state.view.task_logs().ok_or_else(|| unavailable(format!("node {node} keeps no task logs yet")))?;
    let number =
        query.attempt.ok_or_else(|| HttpError(ApiError::new(ErrorCode::BadArguments, "attempt= is required here")))?;
    let key = AttemptKey { task: TaskId(query.id), number };
    let after = query.after;
    let read = tokio::task::spawn_blocking(move || logs.read(key, after))
        .await
        .map_err(|error| unavailable(format!("node {node} could not read its task logs: {error}")))?
        .map_err(|error| unavailable(format!("node {node} could not read its task logs: {error}")))?;
    Ok(LogsView {
        task: query.id,
        attempt: number,
        node: node.0,
        lines: read.lines,
        truncated: read.truncated,
        ended: read.ended,
    })
}

/// Asks node `holder` at `admin` for what it keeps.
async fn fetch(state: &AdminState, holder: NodeId, admin: &str, query: &LogsQuery) -> Result<LogsView, HttpError> {
    let down =
        |reason: String| unavailable(format!("node {holder} keeps these logs and is unreachable at {admin}: {reason}"));
    let access = state.node_access.clone().ok_or_else(|| {
        unavailable(format!("node {holder} keeps these logs, and this node has no credential to ask it"))
    })?;
    let (addr, access) = resolve(admin, access).await.map_err(down)?;
    let path = format!("/grid/logs/local?{}", query.to_query());
    match super::client::get(addr, &path, &access).await {
        Ok(body) => serde_json::from_slice(&body).map_err(|error| down(format!("a bad answer: {error}"))),
        Err(super::client::AdminClientError::Status { body, .. }) => match serde_json::from_str::<ApiError>(&body) {
            Ok(error) => Err(HttpError(ApiError::new(error.code, format!("node {holder}: {}", error.message)))),
            Err(_) => Err(down(body)),
        },
        Err(error) => Err(down(error.to_string())),
    }
}

/// Longest the name of a node's advertised admin address may take to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The socket address of an advertised `HOST:PORT`, and the access checking its certificate for the
/// name if it is one.
async fn resolve(
    admin: &str,
    access: crate::client::Access,
) -> Result<(std::net::SocketAddr, crate::client::Access), String> {
    let addr: PeerAddr = admin.parse().map_err(|error| format!("a bad address: {error}"))?;
    if let Some(socket) = addr.socket_addr() {
        return Ok((socket, access));
    }
    let name = addr.name().unwrap_or_default().to_string();
    let lookup = tokio::net::lookup_host((name.as_str(), addr.port));
    let socket = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| "resolving it timed out".to_string())?
        .map_err(|error| error.to_string())?
        .next()
        .ok_or_else(|| "its name resolves to nothing".to_string())?;
    let access =
        if access.is_tls() { access.with_server_name(&name).map_err(|error| error.to_string())? } else { access };
    Ok((socket, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(attempts: &[u32]) -> TaskView {
        // From JSON, as a client reads it: fields added to the view later keep their defaults.
        let attempts: Vec<serde_json::Value> = attempts
            .iter()
            .map(|&attempt| {
                serde_json::json!({"attempt": attempt, "node": 2, "state": AttemptState::Failed, "assigned_ms": 0,
                    "started_ms": null, "ended_ms": null, "error": null})
            })
            .collect();
        let view = serde_json::json!({"id": 5, "task": "echo", "state": crate::grid::task::TaskState::Running,
            "priority": 0, "submitted_ms": 0, "attempts": attempts, "result": null});
        serde_json::from_value(view).expect("a task view")
    }

    #[test]
    fn the_latest_attempt_by_default_and_unknown_numbers_say_which_exist() {
        let three = task(&[1, 2, 3]);
        assert_eq!(pick_attempt(&three, None).map(|attempt| attempt.attempt), Ok(3));
        assert_eq!(pick_attempt(&three, Some(2)).map(|attempt| attempt.attempt), Ok(2));
        let error = pick_attempt(&three, Some(4)).expect_err("no attempt 4");
        assert_eq!(error.code, ErrorCode::NoTask);
        assert!(error.message.contains("no attempt 4") && error.message.contains("attempts 1 to 3"), "{error:?}");
        let error = pick_attempt(&task(&[]), None).expect_err("none yet");
        assert!(error.message.contains("no attempt yet"), "{error:?}");
    }

    #[test]
    fn queries_write_what_they_read() {
        let query = LogsQuery { id: 7, attempt: Some(2), after: Some(10) };
        assert_eq!(query.to_query(), "id=7&attempt=2&after=10");
        assert_eq!(LogsQuery { id: 7, ..LogsQuery::default() }.to_query(), "id=7");
    }
}
