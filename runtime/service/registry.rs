//! The registry's operations over this node's coordinator, in the contract's types: reads at either
//! consistency, create, set, delete, multi, sync, sessions and watches. The admin API's routes call
//! these (the ZooKeeper front end will too); errors are [`ApiError`]s.

use crate::api::registry::{
    hex, ChildrenBody, CreateBody, CreatedBody, DeleteBody, MultiBody, NodeBody, SessionBody, SetBody, StatBody,
};
use crate::api::ApiError;
use crate::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use crate::registry::{RegistryError, SessionId, SessionSecret, WatchEvent, WatchKind, WatcherId, ZPath};
use crate::state::{Command, Outcome};

/// Session timeout when an open names none, in ms.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Parses a path at the edge.
///
/// # Errors
/// [`ErrorCode::InvalidPath`](crate::api::ErrorCode::InvalidPath) with ZooKeeper's rule that was broken.
pub fn parse_path(text: &str) -> Result<ZPath, ApiError> {
    Ok(ZPath::parse(text)?)
}

async fn read(coordinator: &Coordinator, op: ReadOp, consistency: Consistency) -> Result<ReadResult, ApiError> {
    Ok(coordinator.read(&op, consistency).await?)
}

/// A node's data and stat.
///
/// # Errors
/// No node; unavailable for a linearizable read without a quorum.
pub async fn get(coordinator: &Coordinator, path: &ZPath, consistency: Consistency) -> Result<NodeBody, ApiError> {
    match read(coordinator, ReadOp::Get(path.clone()), consistency).await? {
        ReadResult::Data { data, stat } => Ok(NodeBody {
            path: path.to_string(),
            data: String::from_utf8_lossy(&data).into_owned(),
            data_hex: hex(&data),
            stat,
        }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// A node's stat, `None` inside if it does not exist.
///
/// # Errors
/// Unavailable for a linearizable read without a quorum.
pub async fn stat(coordinator: &Coordinator, path: &ZPath, consistency: Consistency) -> Result<StatBody, ApiError> {
    match read(coordinator, ReadOp::Exists(path.clone()), consistency).await? {
        ReadResult::Exists(stat) => Ok(StatBody { path: path.to_string(), stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// A node's children, sorted, with its stat.
///
/// # Errors
/// No node; unavailable for a linearizable read without a quorum.
pub async fn children(
    coordinator: &Coordinator,
    path: &ZPath,
    consistency: Consistency,
) -> Result<ChildrenBody, ApiError> {
    match read(coordinator, ReadOp::Children(path.clone()), consistency).await? {
        ReadResult::Children { children, stat } => Ok(ChildrenBody { path: path.to_string(), children, stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Proposes a registry command.
///
/// # Errors
/// The coordinator's or the registry's refusal.
pub async fn write(coordinator: &Coordinator, command: Command) -> Result<Outcome, ApiError> {
    Ok(coordinator.write(command).await??)
}

/// Creates a node. An ephemeral node is owned by the body's session, whose secret must come with it.
///
/// # Errors
/// Invalid path, node exists, no node (parent), no auth, too large, quota, unavailable.
pub async fn create(coordinator: &Coordinator, body: CreateBody) -> Result<CreatedBody, ApiError> {
    let (path, data) = (parse_path(&body.path)?, body.data.into_bytes());
    // Without a secret the old command goes: the registry refuses it for any session that has one.
    let command = match (body.session.map(SessionId), body.secret) {
        (Some(session), Some(secret)) => {
            Command::CreateOwned { path, data, mode: body.mode, session, secret, ttl_ms: body.ttl_ms }
        }
        (session, _) => Command::Create { path, data, mode: body.mode, session, ttl_ms: body.ttl_ms },
    };
    match write(coordinator, command).await? {
        Outcome::Created { path, stat } => Ok(CreatedBody { path: path.to_string(), stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Replaces a node's data, if it is at the expected version (when one is given).
///
/// # Errors
/// Invalid path, no node, bad version, too large, unavailable.
pub async fn set(coordinator: &Coordinator, body: SetBody) -> Result<StatBody, ApiError> {
    let path = parse_path(&body.path)?;
    let command = Command::Set { path: path.clone(), data: body.data.into_bytes(), version: body.version };
    match write(coordinator, command).await? {
        Outcome::Set { stat } => Ok(StatBody { path: path.to_string(), stat: Some(stat) }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Deletes a childless node, if it is at the expected version (when one is given).
///
/// # Errors
/// Invalid path, no node, not empty, bad version, unavailable.
pub async fn delete(coordinator: &Coordinator, body: &DeleteBody) -> Result<(), ApiError> {
    let command = Command::Delete { path: parse_path(&body.path)?, version: body.version };
    write(coordinator, command).await.map(|_| ())
}

/// All of a multi's ops or none.
///
/// # Errors
/// The first failing op's code; no auth for an ephemeral create without its session's secret.
pub async fn multi(coordinator: &Coordinator, body: MultiBody) -> Result<Outcome, ApiError> {
    let command = match (body.session.map(SessionId), body.secret) {
        (Some(session), Some(secret)) => Command::MultiOwned { ops: body.ops, session, secret },
        (session, _) => Command::Multi { ops: body.ops, session },
    };
    write(coordinator, command).await
}

/// Catches this node up with the leader; returns its applied index after.
///
/// # Errors
/// Unavailable without a quorum.
pub async fn sync(coordinator: &Coordinator) -> Result<u64, ApiError> {
    coordinator.sync().await?;
    Ok(coordinator.status().applied_index)
}

/// Opens a session; the answer carries its secret, which no other call returns.
///
/// # Errors
/// Bad arguments (timeout out of range), quota, unavailable.
pub async fn open_session(coordinator: &Coordinator, timeout_ms: Option<u64>) -> Result<SessionBody, ApiError> {
    let opened = coordinator.open_session(timeout_ms.unwrap_or(SESSION_TIMEOUT_MS_DEFAULT)).await?;
    Ok(SessionBody {
        session: Some(opened.session.0),
        timeout_ms: Some(opened.timeout_ms),
        alive: Some(true),
        secret: Some(opened.secret),
    })
}

/// The session and secret a keepalive or close names; a missing secret is refused here as the
/// registry would refuse it.
///
/// # Errors
/// Bad arguments without a session; no auth without a secret.
pub fn session_of(body: &SessionBody) -> Result<(SessionId, SessionSecret), ApiError> {
    let session = body.session.map(SessionId).ok_or_else(|| ApiError::bad_arguments("missing session"))?;
    let secret = body.secret.ok_or_else(|| ApiError::from(RegistryError::NoAuth { session }))?;
    Ok((session, secret))
}

/// Keeps a session alive; answers whether it still is.
///
/// # Errors
/// No auth for a wrong secret; unavailable.
pub async fn keepalive(coordinator: &Coordinator, body: &SessionBody) -> Result<SessionBody, ApiError> {
    let (session, secret) = session_of(body)?;
    let alive = coordinator.keepalive(session, secret).await?;
    Ok(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(alive), secret: None })
}

/// Closes a session, deleting its ephemerals in the same step.
///
/// # Errors
/// No auth for a wrong secret; unavailable.
pub async fn close_session(coordinator: &Coordinator, body: &SessionBody) -> Result<SessionBody, ApiError> {
    let (session, secret) = session_of(body)?;
    write(coordinator, Command::CloseSessionSecured { session, secret }).await?;
    Ok(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(false), secret: None })
}

/// An open watch: its events, and the watcher, removed when this is dropped however the caller
/// stops listening.
pub struct Watch {
    coordinator: Coordinator,
    watcher: WatcherId,
    /// The events, in order. A one-shot watch sends one.
    pub events: tokio::sync::mpsc::Receiver<WatchEvent>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.coordinator.watches().close(self.watcher);
    }
}

/// Sets a watch on `path` after catching up with the leader; changes after `since` (a zxid the caller
/// saw) are reported at once.
///
/// # Errors
/// Watch limit when this node's watch table is full; unavailable.
pub async fn watch(
    coordinator: &Coordinator,
    path: &ZPath,
    kind: WatchKind,
    since: Option<u64>,
) -> Result<Watch, ApiError> {
    let watch_error = |error: &dyn std::fmt::Display| ApiError::from(CoordinatorError::Watch(error.to_string()));
    let (watcher, events) = coordinator.watches().open().map_err(|error| watch_error(&error))?;
    let watch = Watch { coordinator: coordinator.clone(), watcher, events };
    coordinator.sync().await?;
    coordinator
        .read_local(|registry| coordinator.watches().register(registry, watcher, path, kind, since))
        .map_err(|error| watch_error(&error))?;
    Ok(watch)
}
