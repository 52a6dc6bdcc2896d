//! The registry over the admin HTTP API, as JSON. Reads are open; every call that changes the
//! registry (or opens a session) needs `Authorization: Bearer <admin token>`.
//!
//! Errors answer with a status and `{"error": "<name>", "message": "..."}`: 404 `no node`, 409 for the
//! other registry refusals, 400 for bad input, 401 without the token, 403 `no auth` when a session's
//! secret is missing or wrong, 503 when no leader is reachable.
//!
//! Request bodies refuse unknown fields (a misspelt `version` must not turn a conditional write into an
//! unconditional one).
//!
//! Sessions belong to their openers: `session/open` answers with the session's `secret` (32 hex
//! characters), returned by no other call, and `session/keepalive`, `session/close` and creates of
//! ephemeral nodes under the session (`create`, `multi`) must present it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::http::AdminState;
use crate::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use crate::registry::{CreateMode, MultiOp, RegistryError, SessionId, SessionSecret, Stat, WatchKind, ZPath};
use crate::state::{Command, Outcome};

/// The registry routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/registry/node", get(get_node))
        .route("/registry/stat", get(stat))
        .route("/registry/children", get(children))
        .route("/registry/watch", get(watch))
        .route("/registry/create", post(create))
        .route("/registry/set", post(set))
        .route("/registry/delete", post(delete))
        .route("/registry/multi", post(multi))
        .route("/registry/sync", post(sync))
        .route("/registry/session/open", post(open_session))
        .route("/registry/session/keepalive", post(keepalive))
        .route("/registry/session/close", post(close_session))
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The short name (`no node`, `bad version`, `unauthorized`, ...).
    pub error: String,
    /// The full message.
    pub message: String,
}

/// An error as an HTTP answer.
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    /// The status, the short error name and the message.
    pub fn parts(&self) -> (StatusCode, &str, &str) {
        (self.0, &self.1.error, &self.1.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// An answer of the wrong kind from the coordinator: a bug, reported as a server error.
fn unexpected(other: impl std::fmt::Debug) -> ApiError {
    api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected {other:?}"))
}

pub(crate) fn api_error(status: StatusCode, name: &str, message: impl ToString) -> ApiError {
    ApiError(status, ErrorBody { error: name.to_string(), message: message.to_string() })
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let status = match error.name() {
            "no node" => StatusCode::NOT_FOUND,
            "invalid path" | "bad arguments" | "too large" => StatusCode::BAD_REQUEST,
            "no auth" => StatusCode::FORBIDDEN,
            _ => StatusCode::CONFLICT,
        };
        api_error(status, error.name(), &error)
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> Self {
        match error {
            CoordinatorError::Registry(error) => error.into(),
            CoordinatorError::Watch(_) => api_error(StatusCode::TOO_MANY_REQUESTS, error.name(), &error),
            CoordinatorError::EntryTooLarge { .. } => api_error(StatusCode::PAYLOAD_TOO_LARGE, error.name(), &error),
            CoordinatorError::Unavailable(_) | CoordinatorError::OutcomeUnknown(_) => {
                api_error(StatusCode::SERVICE_UNAVAILABLE, error.name(), &error)
            }
        }
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn coordinator(state: &AdminState) -> Result<Coordinator, ApiError> {
    state
        .view
        .coordinator()
        .ok_or_else(|| api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "coordinator not running"))
}

pub(crate) fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Constant-time comparison: the token must not leak through response timing.
    let expected = state.admin_token.as_bytes();
    let matches = presented.is_some_and(|presented| {
        presented.len() == expected.len() && presented.bytes().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if matches {
        Ok(())
    } else {
        Err(api_error(StatusCode::UNAUTHORIZED, "unauthorized", "this call needs the admin token"))
    }
}

fn parse_path(text: &str) -> Result<ZPath, ApiError> {
    ZPath::parse(text).map_err(|error| RegistryError::from(error).into())
}

/// Query of the read routes.
#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    path: String,
    #[serde(default)]
    consistency: Consistency,
}

/// A node's data and stat.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeBody {
    /// The path.
    pub path: String,
    /// The data as UTF-8 (lossy for binary data; `data_hex` is exact).
    pub data: String,
    /// The data in hex.
    pub data_hex: String,
    /// The stat.
    pub stat: Stat,
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn read(state: &AdminState, op: ReadOp, consistency: Consistency) -> Result<ReadResult, ApiError> {
    Ok(coordinator(state)?.read(&op, consistency).await?)
}

async fn get_node(State(state): State<Arc<AdminState>>, Query(query): Query<ReadQuery>) -> ApiResult<NodeBody> {
    let path = parse_path(&query.path)?;
    match read(&state, ReadOp::Get(path.clone()), query.consistency).await? {
        ReadResult::Data { data, stat } => Ok(Json(NodeBody {
            path: path.to_string(),
            data: String::from_utf8_lossy(&data).into_owned(),
            data_hex: hex(&data),
            stat,
        })),
        other => Err(unexpected(other)),
    }
}

/// A stat answer (`stat` is `null` when the node does not exist).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatBody {
    /// The path.
    pub path: String,
    /// The stat, if the node exists.
    pub stat: Option<Stat>,
}

async fn stat(State(state): State<Arc<AdminState>>, Query(query): Query<ReadQuery>) -> ApiResult<StatBody> {
    let path = parse_path(&query.path)?;
    match read(&state, ReadOp::Exists(path.clone()), query.consistency).await? {
        ReadResult::Exists(stat) => Ok(Json(StatBody { path: path.to_string(), stat })),
        other => Err(unexpected(other)),
    }
}

/// A children answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildrenBody {
    /// The parent.
    pub path: String,
    /// Child names, sorted.
    pub children: Vec<String>,
    /// The parent's stat.
    pub stat: Stat,
}

async fn children(State(state): State<Arc<AdminState>>, Query(query): Query<ReadQuery>) -> ApiResult<ChildrenBody> {
    let path = parse_path(&query.path)?;
    match read(&state, ReadOp::Children(path.clone()), query.consistency).await? {
        ReadResult::Children { children, stat } => Ok(Json(ChildrenBody { path: path.to_string(), children, stat })),
        other => Err(unexpected(other)),
    }
}

/// A create request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The path (a prefix for sequential modes).
    pub path: String,
    /// UTF-8 data.
    #[serde(default)]
    pub data: String,
    /// The mode.
    #[serde(default)]
    pub mode: CreateMode,
    /// Owner session for ephemeral modes.
    #[serde(default)]
    pub session: Option<u64>,
    /// The owner session's secret, as `session/open` gave it (needed for ephemeral modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
    /// Time to live for persistent modes.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A create answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedBody {
    /// The final path.
    pub path: String,
    /// Its stat.
    pub stat: Stat,
}

async fn write(state: &AdminState, headers: &HeaderMap, command: Command) -> Result<Outcome, ApiError> {
    authorize(state, headers)?;
    Ok(coordinator(state)?.write(command).await??)
}

async fn create(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> ApiResult<CreatedBody> {
    let (path, data) = (parse_path(&body.path)?, body.data.into_bytes());
    // Without a secret the old command goes: the registry refuses it for any session that has one.
    let command = match (body.session.map(SessionId), body.secret) {
        (Some(session), Some(secret)) => {
            Command::CreateOwned { path, data, mode: body.mode, session, secret, ttl_ms: body.ttl_ms }
        }
        (session, _) => Command::Create { path, data, mode: body.mode, session, ttl_ms: body.ttl_ms },
    };
    match write(&state, &headers, command).await? {
        Outcome::Created { path, stat } => Ok(Json(CreatedBody { path: path.to_string(), stat })),
        other => Err(unexpected(other)),
    }
}

/// A set request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// The path.
    pub path: String,
    /// New UTF-8 data.
    pub data: String,
    /// Expected version.
    #[serde(default)]
    pub version: Option<u32>,
}

async fn set(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<SetBody>,
) -> ApiResult<StatBody> {
    let path = parse_path(&body.path)?;
    let command = Command::Set { path: path.clone(), data: body.data.into_bytes(), version: body.version };
    match write(&state, &headers, command).await? {
        Outcome::Set { stat } => Ok(Json(StatBody { path: path.to_string(), stat: Some(stat) })),
        other => Err(unexpected(other)),
    }
}

/// A delete request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// The path.
    pub path: String,
    /// Expected version.
    #[serde(default)]
    pub version: Option<u32>,
}

async fn delete(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<DeleteBody>,
) -> ApiResult<serde_json::Value> {
    let command = Command::Delete { path: parse_path(&body.path)?, version: body.version };
    write(&state, &headers, command).await?;
    Ok(Json(serde_json::json!({ "deleted": body.path })))
}

/// A multi request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiBody {
    /// The ops.
    pub ops: Vec<MultiOp>,
    /// Owner session for ephemeral creates.
    #[serde(default)]
    pub session: Option<u64>,
    /// The owner session's secret (needed for ephemeral creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
}

async fn multi(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<MultiBody>,
) -> ApiResult<Outcome> {
    let command = match (body.session.map(SessionId), body.secret) {
        (Some(session), Some(secret)) => Command::MultiOwned { ops: body.ops, session, secret },
        (session, _) => Command::Multi { ops: body.ops, session },
    };
    Ok(Json(write(&state, &headers, command).await?))
}

async fn sync(State(state): State<Arc<AdminState>>) -> ApiResult<serde_json::Value> {
    let coordinator = coordinator(&state)?;
    coordinator.sync().await?;
    Ok(Json(serde_json::json!({ "applied_index": coordinator.status().applied_index })))
}

/// A session request/answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    /// The session (absent when opening).
    #[serde(default)]
    pub session: Option<u64>,
    /// Timeout (when opening; the granted one in answers).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Whether it is alive (keepalive answers).
    #[serde(default)]
    pub alive: Option<bool>,
    /// The session's secret: in the open's answer only, and required by keepalive and close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
}

async fn open_session(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<SessionBody>,
) -> ApiResult<SessionBody> {
    authorize(&state, &headers)?;
    let timeout_ms = body.timeout_ms.unwrap_or(10_000);
    let opened = coordinator(&state)?.open_session(timeout_ms).await?;
    Ok(Json(SessionBody {
        session: Some(opened.session.0),
        timeout_ms: Some(opened.timeout_ms),
        alive: Some(true),
        secret: Some(opened.secret),
    }))
}

/// The session and secret a keepalive or close names; a missing secret is refused here as the
/// registry would refuse it.
fn session_of(body: &SessionBody) -> Result<(SessionId, SessionSecret), ApiError> {
    let session = body
        .session
        .map(SessionId)
        .ok_or_else(|| api_error(StatusCode::BAD_REQUEST, "bad arguments", "missing session"))?;
    let secret = body.secret.ok_or_else(|| ApiError::from(RegistryError::NoAuth { session }))?;
    Ok((session, secret))
}

/// Keeps a session alive. Needs no admin token, but the session's secret: only its opener can hold
/// its ephemerals and locks.
async fn keepalive(State(state): State<Arc<AdminState>>, Json(body): Json<SessionBody>) -> ApiResult<SessionBody> {
    let (session, secret) = session_of(&body)?;
    let alive = coordinator(&state)?.keepalive(session, secret).await?;
    Ok(Json(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(alive), secret: None }))
}

async fn close_session(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(body): Json<SessionBody>,
) -> ApiResult<SessionBody> {
    authorize(&state, &headers)?;
    let (session, secret) = session_of(&body)?;
    write(&state, &headers, Command::CloseSessionSecured { session, secret }).await?;
    Ok(Json(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(false), secret: None }))
}

/// Query of the watch route.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    path: String,
    #[serde(default = "default_kind")]
    kind: WatchKind,
    /// The last zxid the client saw: changes after it are reported at once.
    #[serde(default)]
    since: Option<u64>,
}

fn default_kind() -> WatchKind {
    WatchKind::Data
}

/// Removes the watcher when the HTTP stream ends, however it ends, and gives back the client's place
/// for a watch stream.
struct WatcherGuard {
    coordinator: Coordinator,
    watcher: crate::registry::WatcherId,
    events: tokio::sync::mpsc::Receiver<crate::registry::WatchEvent>,
    _ticket: Option<super::connection::WatchTicket>,
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.coordinator.watches().close(self.watcher);
    }
}

/// Streams watch events as newline-delimited JSON. A one-shot watch ends the stream after its event;
/// a persistent recursive watch streams until the client disconnects. A client address holds at most
/// `ADMIN_WATCHES_PER_CLIENT_MAX` streams; past it the answer is 429 `too many watches`.
async fn watch(
    State(state): State<Arc<AdminState>>,
    client: Option<axum::Extension<super::connection::ClientAddr>>,
    Query(query): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    let path = parse_path(&query.path)?;
    let coordinator = coordinator(&state)?;
    let ticket = client
        .map(|axum::Extension(client)| super::connection::WatchTicket::admit(&state.gate, client.0.ip()))
        .transpose()
        .map_err(|refusal| api_error(StatusCode::TOO_MANY_REQUESTS, "too many watches", refusal))?;
    let (watcher, events) = coordinator.watches().open().map_err(|error| CoordinatorError::Watch(error.to_string()))?;
    let guard = WatcherGuard { coordinator: coordinator.clone(), watcher, events, _ticket: ticket };
    coordinator.sync().await?;
    coordinator
        .read_local(|registry| coordinator.watches().register(registry, watcher, &path, query.kind, query.since))
        .map_err(|error| CoordinatorError::Watch(error.to_string()))?;
    let one_shot = query.kind != WatchKind::PersistentRecursive;
    let stream = futures_util::stream::unfold((guard, false), move |(mut guard, done)| async move {
        if done {
            return None;
        }
        let event = guard.events.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), (guard, one_shot)))
    });
    Ok(([("content-type", "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<SetBody>(r#"{"path":"/a","data":"x","versoin":3}"#).is_err());
        assert!(serde_json::from_str::<CreateBody>(r#"{"path":"/a","sesion":1}"#).is_err());
        assert!(serde_json::from_str::<MultiBody>(r#"{"ops":[{"check":{"path":"/a","version":1,"x":0}}]}"#).is_err());
        assert!(serde_json::from_str::<SessionBody>(r#"{"session":1,"secrte":"00"}"#).is_err());
        let body: CreateBody = serde_json::from_str(&format!(
            r#"{{"path":"/a","mode":"ephemeral","session":5,"secret":"{}"}}"#,
            "ab".repeat(16)
        ))
        .expect("a create with a secret");
        assert_eq!(body.secret, Some(SessionSecret::from_bytes([0xab; 16])));
    }

    #[test]
    fn a_missing_or_wrong_secret_is_403_no_auth() {
        let body = SessionBody { session: Some(9), timeout_ms: None, alive: None, secret: None };
        let refused = session_of(&body).map(|_| ()).unwrap_err();
        assert_eq!(refused.parts().0, StatusCode::FORBIDDEN);
        assert_eq!(refused.parts().1, "no auth");
        let refused = ApiError::from(CoordinatorError::Registry(RegistryError::NoAuth { session: SessionId(9) }));
        assert_eq!(refused.parts().0, StatusCode::FORBIDDEN);
        let answer = SessionBody { session: Some(9), timeout_ms: None, alive: Some(true), secret: None };
        assert!(!serde_json::to_string(&answer).expect("json").contains("secret"), "no secret unless opening");
    }
}
