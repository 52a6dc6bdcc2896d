//! What clients ask a coordinator, and what it answers. The same types travel when a follower
//! forwards a request to the leader, and (as JSON) over the admin HTTP API.

use serde::{Deserialize, Serialize};

use crate::registry::{Applied, Command, RegistryError, SessionId, Stat, ZPath};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (ReadIndex through the leader).
    #[default]
    Linearizable,
    /// This node's current state: may lag the leader (ZooKeeper's default read); `sync` catches up.
    Local,
}

/// A read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOp {
    /// Data and stat.
    Get(ZPath),
    /// Stat, if the node exists.
    Exists(ZPath),
    /// Sorted child names and stat.
    Children(ZPath),
}

/// A read's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadResult {
    /// From [`ReadOp::Get`].
    Data {
        /// The data.
        data: Vec<u8>,
        /// The stat.
        stat: Stat,
    },
    /// From [`ReadOp::Exists`].
    Exists(Option<Stat>),
    /// From [`ReadOp::Children`].
    Children {
        /// Child names, sorted.
        children: Vec<String>,
        /// The parent's stat.
        stat: Stat,
    },
}

/// A request to a coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A change, applied through the log.
    Write(Command),
    /// A session's client is alive.
    Keepalive(SessionId),
    /// The leader's commit index, confirmed by a quorum (ReadIndex).
    ReadIndex,
}

/// A coordinator's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The result of a write.
    Applied(Applied),
    /// Whether the session is alive.
    Keepalive(bool),
    /// The confirmed read index.
    ReadIndex(u64),
    /// The node could not serve it and nothing was applied; the message says why (no leader, ...).
    Unavailable(String),
    /// A write was proposed but its outcome was lost; it must not be retried blindly.
    OutcomeUnknown(String),
}

/// Why a coordinator call failed. Retryable: nothing is known to have been applied unless the
/// message says the outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CoordinatorError {
    /// No leader could be reached in time, or a quorum is missing.
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have been applied (the leader changed or went silent after it
    /// was proposed), as ZooKeeper's connection loss.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The registry refused the operation.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A watch could not be set.
    #[error("watch: {0}")]
    Watch(String),
}

impl CoordinatorError {
    /// The short name the CLI prints (`no node`, `unavailable`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            CoordinatorError::Unavailable(_) => "unavailable",
            CoordinatorError::OutcomeUnknown(_) => "outcome unknown",
            CoordinatorError::Registry(error) => error.name(),
            CoordinatorError::Watch(_) => "watch limit",
        }
    }
}
