//! A node's own registration in the registry: a session it keeps alive, owning the ephemeral
//! `/grid/nodes/<id>` whose data is the node's address and load. When the node dies, the session
//! expires and the node disappears from `/grid/nodes`. The session's secret stays in this task: no one
//! else can keep the registration of a dead node alive.

use std::sync::Arc;
use std::time::Duration;

use crate::api::ErrorCode;
use crate::client::{Client, ClientError, Session};
use crate::consensus::request::OpenedSession;
use crate::consensus::{Consistency, Coordinator, CoordinatorError};
use crate::ids::NodeId;
use crate::registry::{CreateMode, RegistryError, ZPath};
use crate::state::Command;

/// Session timeout of a node's own session: the registry notices a dead node this long after its last
/// keepalive.
pub const NODE_SESSION_TIMEOUT_MS: u64 = 750;
/// Keepalives per session timeout: several may be lost before the session expires.
const KEEPALIVES_PER_TIMEOUT: u64 = 5;
/// Wait before retrying a failed registration.
const RETRY_WAIT: Duration = Duration::from_millis(100);

pub use crate::state::NodeRecord;

/// Keeps the node registered for as long as it runs (re-registering after a lost session).
pub async fn keep_registered(coordinator: Coordinator, node: NodeId, record: NodeRecord) {
    loop {
        match register(&coordinator, node, &record).await {
            Ok(opened) => {
                let session = opened.session;
                tracing::info!(%node, %session, "registered in /grid/nodes");
                if let Some(hub) = crate::service::hub::GridHub::of(&coordinator) {
                    coordinator.read_state(|state| hub.on_registered(session.0, state));
                }
                keep_alive(&coordinator, &opened).await;
                tracing::warn!(%node, %session, "node session lost; registering again");
            }
            Err(error) => {
                tracing::debug!(%node, %error, "registration failed; retrying");
                tokio::time::sleep(RETRY_WAIT).await;
            }
        }
    }
}

async fn keep_alive(coordinator: &Coordinator, opened: &OpenedSession) {
    let period = Duration::from_millis(NODE_SESSION_TIMEOUT_MS / KEEPALIVES_PER_TIMEOUT);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match coordinator.keepalive(opened.session, opened.secret).await {
            Ok(true) | Err(CoordinatorError::Unavailable(_)) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

async fn create_persistent(coordinator: &Coordinator, path: &str) -> Result<(), CoordinatorError> {
    let path = ZPath::parse(path).expect("constant paths are valid");
    let command = Command::Create { path, data: Vec::new(), mode: CreateMode::Persistent, session: None, ttl_ms: None };
    match coordinator.write(command).await? {
        Ok(_) | Err(RegistryError::NodeExists { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn register(
    coordinator: &Coordinator,
    node: NodeId,
    record: &NodeRecord,
) -> Result<OpenedSession, CoordinatorError> {
    create_persistent(coordinator, "/grid").await?;
    create_persistent(coordinator, "/grid/nodes").await?;
    let opened = coordinator.open_session(NODE_SESSION_TIMEOUT_MS).await?;
    let OpenedSession { session, secret, .. } = opened;
    let data = serde_json::to_vec(record).expect("a record serializes");
    let path = node_registration_path(node);
    // A previous incarnation's node may still be there until its session expires: replace it.
    let _ = coordinator.write(Command::Delete { path: path.clone(), version: None }).await?;
    coordinator
        .write(Command::CreateOwned { path, data, mode: CreateMode::Ephemeral, session, secret, ttl_ms: None })
        .await??;
    Ok(opened)
}

/// How often a joined worker checks that its registration is still its own.
const REMOTE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps a joined worker (`gridkeeper node --join`) registered through a member's admin API, with a
/// client session of its own; publishes the session in `slot` (0 while unregistered) so the worker
/// asks only for assignments to this registration.
pub async fn keep_registered_remote(
    client: Client,
    node: NodeId,
    record: NodeRecord,
    slot: Arc<std::sync::atomic::AtomicU64>,
) {
    let path = node_registration_path(node).as_str().to_string();
    loop {
        let session = match register_remote(&client, &path, &record).await {
            Ok(session) => session,
            Err(error) => {
                tracing::debug!(%node, %error, "registration through the admin API failed; retrying");
                tokio::time::sleep(RETRY_WAIT).await;
                continue;
            }
        };
        tracing::info!(%node, session = session.id(), "joined: registered in /grid/nodes");
        slot.store(session.id(), std::sync::atomic::Ordering::SeqCst);
        loop {
            tokio::time::sleep(REMOTE_CHECK_INTERVAL).await;
            match client.exists(&path, Consistency::Local).await {
                Ok(Some(stat)) if stat.ephemeral_owner == session.id() => {}
                Ok(_) => break,
                // Unreachable for now: the session may still be alive; look again.
                Err(_) => {}
            }
        }
        slot.store(0, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(%node, "registration lost; registering again");
    }
}

async fn register_remote(client: &Client, path: &str, record: &NodeRecord) -> Result<Session, ClientError> {
    for parent in ["/grid", "/grid/nodes"] {
        match client.create(parent, "", CreateMode::Persistent, None).await {
            Ok(_) => {}
            Err(error) if error.code() == ErrorCode::NodeExists => {}
            Err(error) => return Err(error),
        }
    }
    let session = client.open_session(NODE_SESSION_TIMEOUT_MS).await?;
    let data = serde_json::to_string(record).expect("a record serializes");
    // A previous incarnation's node may still be there until its session expires: replace it.
    match client.delete(path, None).await {
        Ok(()) => {}
        Err(error) if error.code() == ErrorCode::NoNode => {}
        Err(error) => return Err(error),
    }
    client.create(path, &data, CreateMode::Ephemeral, Some(&session)).await?;
    Ok(session)
}

/// The path of a node's own registration.
///
/// # Panics
/// Never: the format always yields a valid path.
pub fn node_registration_path(node: NodeId) -> ZPath {
    ZPath::parse(&format!("{}/{node}", crate::state::NODES_PATH)).expect("a numeric segment is a valid path")
}
