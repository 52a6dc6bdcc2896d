//! A node's own registration in the registry: a session it keeps alive, owning the ephemeral
//! `/grid/nodes/<id>` whose data is the node's address and load. When the node dies, the session
//! expires and the node disappears from `/grid/nodes`. The session's secret stays in this task: no one
//! else can keep the registration of a dead node alive.
//!
//! Written once over the service [`Port`]: a member registers through its own coordinator, a joined
//! worker (`gridkeeper node --join`) through a member's admin API, with the same steps and the same
//! error handling.

use std::sync::Arc;
use std::time::Duration;

use super::hub::GridHub;
use super::port::Port;
use crate::api::registry::{CreateBody, DeleteBody, SessionBody};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::{Consistency, Coordinator};
use crate::ids::NodeId;
use crate::limits::{KEEPALIVES_PER_NODE_SESSION, NODE_SESSION_TIMEOUT_MS};
use crate::registry::{CreateMode, ZPath};

/// Wait before retrying a failed registration.
const RETRY_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between registrations whose credential was refused (doubling from [`RETRY_WAIT`]).
const REFUSED_RETRY_WAIT_MAX: Duration = Duration::from_secs(10);

pub use crate::state::NodeRecord;

/// Hears of the session that owns this node's registration: its id once registered, 0 once lost.
pub type OnRegistered = Arc<dyn Fn(u64) + Send + Sync>;

/// Hears of each confirmed keepalive: the monotonic time the keepalive was sent, once it answered
/// alive and a linearizable stat then showed the registration still owned by the session (the actor
/// host's lease is renewed from it).
pub type OnHeld = Arc<dyn Fn(crate::clock::Instant) + Send + Sync>;

/// Keeps `node` registered for as long as the task runs, re-registering after a lost session or a
/// registration that is no longer its own.
pub async fn keep_registered(port: Port, node: NodeId, record: NodeRecord, on_registered: OnRegistered) {
    keep_registered_held(port, node, record, on_registered, Arc::new(|_| {})).await;
}

/// [`keep_registered`], telling `on_held` of every confirmed keepalive.
pub async fn keep_registered_held(
    port: Port,
    node: NodeId,
    record: NodeRecord,
    on_registered: OnRegistered,
    on_held: OnHeld,
) {
    let path = node_registration_path(node);
    let mut refused_wait = RETRY_WAIT;
    loop {
        let session = match register(&port, &path, &record).await {
            Ok(session) => session,
            // A refused credential will not pass by itself: say so once a round, and back off.
            Err(error) if matches!(error.code, ErrorCode::Unauthorized | ErrorCode::NoAuth) => {
                tracing::warn!(
                    %node,
                    retry_in_ms = refused_wait.as_millis() as u64,
                    "the cluster refused this node's credential: {}",
                    error.message
                );
                tokio::time::sleep(refused_wait).await;
                refused_wait = (refused_wait * 2).min(REFUSED_RETRY_WAIT_MAX);
                continue;
            }
            Err(error) => {
                tracing::debug!(%node, %error, "registration failed; retrying");
                tokio::time::sleep(RETRY_WAIT).await;
                continue;
            }
        };
        refused_wait = RETRY_WAIT;
        let id = session.session.unwrap_or_default();
        tracing::info!(%node, session = id, "registered in /grid/nodes");
        on_registered(id);
        hold(&port, &path, &session, &on_held).await;
        on_registered(0);
        tracing::warn!(%node, session = id, "node session or registration lost; registering again");
    }
}

/// Keeps a member registered through its own coordinator, telling its grid hub which session owns
/// the registration (so the hub hands its worker only this incarnation's attempts).
pub async fn keep_registered_local(coordinator: Coordinator, node: NodeId, record: NodeRecord) {
    let hub = GridHub::of(&coordinator);
    let reader = coordinator.clone();
    let held_hub = hub.clone();
    let on_registered: OnRegistered = Arc::new(move |session| {
        if let Some(hub) = &hub {
            if session == 0 {
                hub.on_lease(None);
            }
            reader.read_state(|state| hub.on_registered(session, state));
        }
    });
    let on_held: OnHeld = Arc::new(move |sent_at| {
        if let Some(hub) = &held_hub {
            hub.on_lease(Some(sent_at));
        }
    });
    keep_registered_held(Port::Local(coordinator), node, record, on_registered, on_held).await;
}

/// Keeps the session alive until it ends, or the registration is no longer owned by it.
async fn hold(port: &Port, path: &ZPath, session: &SessionBody, on_held: &OnHeld) {
    let period = Duration::from_millis(NODE_SESSION_TIMEOUT_MS / KEEPALIVES_PER_NODE_SESSION);
    // The first keepalive is due a period after the registration, not at once.
    let mut tick = tokio::time::interval_at(crate::clock::monotonic() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let id = session.session.unwrap_or_default();
    loop {
        tick.tick().await;
        let sent_at = crate::clock::monotonic();
        match port.keepalive(session).await {
            Ok(SessionBody { alive: Some(true), .. }) => {}
            // Nothing was applied and the session may well be alive: try again next tick.
            Err(error) if error.is_retryable() || error.code.may_have_applied() => continue,
            Ok(_) | Err(_) => return,
        }
        // Linearizable: a node whose own state still lags its registration's create must not take
        // the registration for lost (and churn it, losing the work it was just given). Bounded by
        // the keepalive period: a node slow to apply (its disk busy, say) waits for its own state,
        // and its session must not expire meanwhile; the check runs again on the next tick.
        match tokio::time::timeout(period, port.stat(path, Consistency::Linearizable)).await {
            Ok(Ok(Some(stat))) if stat.ephemeral_owner == id => on_held(sent_at),
            Ok(Ok(_)) => return,
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

async fn create_persistent(port: &Port, path: &str) -> Result<(), ApiError> {
    let body = CreateBody {
        path: path.into(),
        data: String::new(),
        mode: CreateMode::Persistent,
        session: None,
        secret: None,
        ttl_ms: None,
        acl: None,
    };
    match port.create(body).await {
        Ok(_) => Ok(()),
        Err(error) if error.code == ErrorCode::NodeExists => Ok(()),
        Err(error) => Err(error),
    }
}

async fn register(port: &Port, path: &ZPath, record: &NodeRecord) -> Result<SessionBody, ApiError> {
    create_persistent(port, "/grid").await?;
    create_persistent(port, crate::state::NODES_PATH).await?;
    let session = port.open_session(NODE_SESSION_TIMEOUT_MS).await?;
    let data = serde_json::to_string(record).expect("a record serializes");
    // A previous incarnation's node may still be there until its session expires: replace it.
    match port.delete(DeleteBody { path: path.to_string(), version: None }).await {
        Ok(()) => {}
        Err(error) if error.code == ErrorCode::NoNode => {}
        Err(error) => return Err(error),
    }
    let create = CreateBody {
        path: path.to_string(),
        data,
        mode: CreateMode::Ephemeral,
        session: session.session,
        secret: session.secret,
        ttl_ms: None,
        acl: None,
    };
    port.create(create).await?;
    Ok(session)
}

/// The path of a node's own registration.
///
/// # Panics
/// Never: the format always yields a valid path.
pub fn node_registration_path(node: NodeId) -> ZPath {
    ZPath::parse(&format!("{}/{node}", crate::state::NODES_PATH)).expect("a numeric segment is a valid path")
}
