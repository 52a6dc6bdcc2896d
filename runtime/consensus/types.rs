//! The openraft type configuration: what the log carries and how nodes are named.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Applied, Outcome, Proposal};

/// The response to one applied log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The registry's result.
    pub result: Applied,
}

impl Default for Response {
    fn default() -> Self {
        Response { result: Ok(Outcome::Nothing) }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.command, self.now_ms)
    }
}

/// The runtime openraft uses: tokio, with its random choices (election timeouts) drawn from a seeded
/// generator so that a simulation seed replays the same elections.
pub type RaftRuntime = openraft::rt::deterministic_rng::DeterministicRng<openraft_rt_tokio::TokioRuntime>;

openraft::declare_raft_types!(
    /// gridkeeper's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = RaftRuntime,
);

/// A log id.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot with its bytes.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
/// Membership as stored.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
