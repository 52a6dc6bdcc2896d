//! Revoked credentials: a replicated list every node honours.
//!
//! A revocation is the persistent znode `/gridkeeper/revoked/<name>` whose data is a JSON
//! [`Revocation`]; committing it through the log is what makes every node refuse the name, and it
//! survives restarts and snapshots like any znode. Checking a name is a local read of the node's own
//! applied state: no round trip on the request path.
//!
//! Invariant: a revocation is never removed by the edge; only an operator reaching the registry
//! itself could delete the znode, and the ZooKeeper front end refuses writes under `/gridkeeper` to
//! anyone but the super user.

use super::registry::{create, parse_path};
pub use crate::api::auth::Revocation;
use crate::api::registry::CreateBody;
use crate::api::{ApiError, ErrorCode};
use crate::consensus::{Consistency, Coordinator};
use crate::credentials::role::check_credential_name;
use crate::registry::{CreateMode, ZPath};

/// The cluster's reserved subtree: what the cluster keeps about itself.
pub const RESERVED_PATH: &str = "/gridkeeper";
/// Where revocations are kept, one znode per revoked name.
pub const REVOKED_PATH: &str = "/gridkeeper/revoked";

/// Revokes `name` for good: every node refuses tokens and client certificates of that name once it
/// has applied the revocation. Revoking a name twice keeps the first revocation.
///
/// # Errors
/// Bad arguments for a name that no credential can carry; the registry's errors (unavailable).
pub async fn revoke(coordinator: &Coordinator, name: &str, by: &str, now_ms: u64) -> Result<Revocation, ApiError> {
    check_credential_name(name).map_err(|message| ApiError::new(ErrorCode::BadArguments, message))?;
    for parent in [RESERVED_PATH, REVOKED_PATH] {
        create_if_missing(coordinator, parent, String::new()).await?;
    }
    let revocation = Revocation { name: name.to_string(), ts_ms: now_ms, by: by.to_string() };
    let data = serde_json::to_string(&revocation).expect("a revocation serializes");
    create_if_missing(coordinator, &format!("{REVOKED_PATH}/{name}"), data).await?;
    Ok(revocation)
}

async fn create_if_missing(coordinator: &Coordinator, path: &str, data: String) -> Result<(), ApiError> {
    let body = CreateBody {
        path: path.into(),
        data,
        mode: CreateMode::Persistent,
        session: None,
        secret: None,
        ttl_ms: None,
        acl: None,
    };
    match create(coordinator, None, body).await {
        Ok(_) => Ok(()),
        Err(error) if error.code == ErrorCode::NodeExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether `name` is revoked, by this node's applied state.
pub fn is_revoked(coordinator: &Coordinator, name: &str) -> bool {
    let Ok(path) = ZPath::parse(&format!("{REVOKED_PATH}/{name}")) else { return false };
    coordinator.read_state(|state| state.registry.exists(&path).is_some())
}

/// Every revocation, by name.
///
/// # Errors
/// Unavailable for a linearizable read without a quorum.
pub async fn revoked(coordinator: &Coordinator) -> Result<Vec<Revocation>, ApiError> {
    let parent = parse_path(REVOKED_PATH)?;
    let names = match super::registry::children(coordinator, None, &parent, Consistency::Linearizable).await {
        Ok(listing) => listing.children,
        Err(error) if error.code == ErrorCode::NoNode => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let paths: Vec<(String, ZPath)> = names
        .into_iter()
        .filter_map(|name| ZPath::parse(&format!("{REVOKED_PATH}/{name}")).ok().map(|path| (name, path)))
        .collect();
    Ok(coordinator.read_state(|state| {
        paths
            .iter()
            .map(|(name, path)| {
                let data = state.registry.get(path).map(|(data, _)| data.to_vec()).unwrap_or_default();
                serde_json::from_slice(&data).unwrap_or_else(|_| Revocation {
                    name: name.clone(),
                    ts_ms: 0,
                    by: String::new(),
                })
            })
            .collect()
    }))
}
