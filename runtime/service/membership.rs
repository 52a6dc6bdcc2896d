//! Membership changes, for every front end: add, remove, and what a joining voter needs.
//!
//! The decisions are `consensus::membership`'s (core); the leader carries them out
//! (`Coordinator::add_member`, `Coordinator::remove_member`). This layer parses and answers in the
//! contract's types.

use crate::api::membership::{JoinInfo, MemberChange};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::membership::RecordState;
use crate::consensus::Coordinator;
use crate::ids::NodeId;
use crate::mesh::PeerAddr;

fn node_id(id: u64) -> Result<NodeId, ApiError> {
    id.to_string().parse::<NodeId>().map_err(|error| ApiError::new(ErrorCode::BadArguments, error))
}

/// Adds `id` at `addr` as a voter (a learner until it has caught up).
///
/// # Errors
/// Bad arguments for a bad id or address; `membership refused` for a retired id or a member
/// elsewhere; unavailable or outcome unknown.
pub async fn add(coordinator: &Coordinator, id: u64, addr: &str) -> Result<MemberChange, ApiError> {
    let id = node_id(id)?;
    let addr: PeerAddr =
        addr.parse().map_err(|error| ApiError::new(ErrorCode::BadArguments, format!("address {addr}: {error}")))?;
    Ok(MemberChange { message: coordinator.add_member(id, &addr).await? })
}

/// Removes `id` for good.
///
/// # Errors
/// `membership refused` if it would leave no quorum or another change is in flight; unavailable or
/// outcome unknown.
pub async fn remove(coordinator: &Coordinator, id: u64) -> Result<MemberChange, ApiError> {
    Ok(MemberChange { message: coordinator.remove_member(node_id(id)?).await? })
}

/// The members a joining voter starts its mesh with, once an operator added it.
///
/// # Errors
/// `membership refused` if `node` was not added (or was removed); unavailable without a quorum.
pub async fn join(coordinator: &Coordinator, node: u64) -> Result<JoinInfo, ApiError> {
    // A linearizable read: a node added a moment ago through another member is found.
    coordinator.sync().await?;
    let record = coordinator.member_records().remove(&node);
    let members = coordinator.membership_addrs();
    match record {
        Some(record) if record.state == RecordState::Added && members.contains_key(&NodeId(node)) => {
            Ok(JoinInfo { members: members.into_iter().map(|(id, addr)| (id.0, addr.to_string())).collect() })
        }
        Some(record) if record.state == RecordState::Removed => Err(ApiError::new(
            ErrorCode::MembershipRefused,
            format!("node {node} was removed from the cluster; ids are never reused"),
        )),
        _ => Err(ApiError::new(
            ErrorCode::MembershipRefused,
            format!("node {node} was not added: run `gridkeeper members add --id {node} --addr HOST:PORT` first"),
        )),
    }
}
