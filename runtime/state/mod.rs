//! The replicated state: the registry and the task table applied together from one log, so that
//! one entry changes both atomically. This is what the consensus layer replicates; it sees the state
//! only through this module (`ReplicatedState::apply`, its snapshot extras and its effects), never the
//! grid's or the registry's internals.
//!
//! Core: no I/O, no clock. The log's entry types are the registry's, carrying the grid's commands in
//! their `App` variant; the aliases below name them once.
//!
//! Snapshots add what a newer build replicates beyond the older layouts in extras structs stored after
//! the state, one per format ([`StateExtras`] from format 2, [`StateExtras3`] from 3, [`StateExtras4`]
//! from 4, [`StateExtras5`] from 5); the layouts of the state and of earlier extras never change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod replicated;

pub use crate::grid::{ActorId, ClusterSettings, GridCommand, GridEffects, GridOutcome, TableLimits};
pub use replicated::{InFlight, NodeRecord, ReplicatedState, AGING_STEP_MS, NODES_PATH};

use crate::grid::actors::ActorRecord;
use crate::grid::command::JobExtras;
use crate::registry::tree::AclRecord;
use crate::registry::{SessionId, SessionSecret, ZPath};

/// A change replicated through the log: a registry command, or a grid command in `App`.
pub type Command = crate::registry::Command<GridCommand>;
/// A [`Command`] with the proposer's clock reading.
pub type Proposal = crate::registry::Proposal<GridCommand>;
/// What a successful [`Command`] produced.
pub type Outcome = crate::registry::Outcome<GridOutcome>;
/// The result of applying one [`Command`].
pub type Applied = crate::registry::Applied<GridOutcome>;
/// What applying an entry asks of the layers above beyond the registry's changes (attempts to
/// start, tasks that ended, ...).
pub type Effects = GridEffects;

/// Replicated state that a format-1 snapshot had no place for, stored after it in a format-2 snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateExtras {
    /// The committed settings, if any were committed yet.
    pub settings: Option<ClusterSettings>,
    /// Each open session's secret.
    pub session_secrets: BTreeMap<SessionId, SessionSecret>,
}

/// Replicated state that a format-2 snapshot had no place for, stored after [`StateExtras`] in a
/// format-3 snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateExtras3 {
    /// The state version in force (0 reads as 1).
    pub version: u32,
    /// The ACL and ACL version of every node with an ACL of its own or a changed one.
    pub acls: BTreeMap<ZPath, AclRecord>,
}

/// Replicated state that a format-3 snapshot had no place for, stored after [`StateExtras3`] in a
/// format-4 snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateExtras4 {
    /// What jobs have beyond their stored layout (an IANA zone, a pause), by job name; only jobs that are
    /// not plain UTC and running have an entry.
    pub jobs: BTreeMap<String, JobExtras>,
}

/// Replicated state that a format-4 snapshot had no place for, stored after [`StateExtras4`] in a
/// format-5 snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateExtras5 {
    /// Every actor's ownership record (see `grid::actors`).
    pub actors: BTreeMap<ActorId, ActorRecord>,
}
