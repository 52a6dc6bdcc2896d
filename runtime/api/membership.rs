//! Membership changes over the admin API.
//!
//! - `POST /members/add` `{"id", "addr"}` → [`MemberChange`] (operator): records the id and adds it
//!   as a learner; the leader promotes it to voter once it is up and caught up.
//! - `POST /members/remove` `{"id"}` → [`MemberChange`] (operator): retires the id for good and takes
//!   it out of the voters, refused (`membership refused`, 409) if that would leave no quorum.
//! - `POST /members/join` `{"node"}` → [`JoinInfo`] (that node's own certificate): what a node
//!   started with `--join --voter` needs to start its mesh, if it was added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /members/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The new member's id (never used before in this cluster).
    pub id: u64,
    /// Its mesh address, `HOST:PORT` (an IP address or a DNS name), as the other members dial it.
    pub addr: String,
}

/// `POST /members/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveMemberRequest {
    /// The member to remove.
    pub id: u64,
}

/// What a membership change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// One line for the operator.
    pub message: String,
}

/// `POST /members/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The joining node (its certificate's).
    pub node: u64,
}

/// What a joining voter starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// Every member (voters and learners, the joining node included) and its mesh address.
    pub members: BTreeMap<u64, String>,
}
