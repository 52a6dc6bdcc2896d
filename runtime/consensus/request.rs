//! What clients ask a coordinator, and what it answers. The same types travel when a follower
//! forwards a request to the leader, and (as JSON) over the admin HTTP API.

use serde::{Deserialize, Serialize};

use crate::registry::{RegistryError, SessionId, SessionSecret, Stat, ZPath};

use crate::state::{Applied, Command};

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
    /// A legacy session's client is alive (sent by earlier versions; refreshes only a session without
    /// a secret).
    Keepalive(SessionId),
    /// The leader's commit index, confirmed by a quorum (ReadIndex).
    ReadIndex,
    // Appended, so that the variants above keep their encoding between versions.
    /// A session's client is alive; the leader checks `secret` against its replicated state first.
    KeepaliveSecured {
        /// The session.
        session: SessionId,
        /// Its secret.
        secret: SessionSecret,
    },
    /// As [`Request::Write`], answered with [`Reply::AppliedAt`]: the answer names the entry's index.
    WriteIndexed(Command),
    /// How far each member's log matches the leader's ([`Reply::Replication`]).
    Replication,
    /// Adds a voter: records it and adds it as a learner; the leader promotes it once it caught up.
    AddMember {
        /// Its id, never used before.
        id: u64,
        /// Its mesh address, `HOST:PORT`.
        addr: String,
    },
    /// Removes a member for good (its id is never reused).
    RemoveMember {
        /// Its id.
        id: u64,
    },
    /// As [`Request::ReadIndex`], from a follower that reads often: the leader may grant it a read
    /// lease with the index ([`Reply::ReadIndexLease`], see [`super::follower_lease`]).
    ReadIndexLease,
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
    /// A write was refused before it reached the log: its entry would exceed the entry limit.
    EntryTooLarge {
        /// The entry's encoded size.
        bytes: usize,
        /// [`crate::limits::ENTRY_BYTES_MAX`] less the entry's overhead.
        max: usize,
    },
    /// The registry refused a request that is not a write (a keepalive with the wrong secret).
    Refused(RegistryError),
    // Appended, so that the variants above keep their encoding between versions.
    /// The result of a [`Request::WriteIndexed`] and the index (zxid) of its entry.
    AppliedAt {
        /// The entry's index.
        index: u64,
        /// Its result.
        applied: Applied,
    },
    /// The answer to [`Request::Replication`].
    Replication(Replication),
    /// A membership change was made (or there was nothing to do); the message says what.
    MembershipChanged(String),
    /// A membership change was refused; nothing changed. The message says why.
    MembershipRefused(String),
    /// The answer to [`Request::ReadIndexLease`] when the leader granted a read lease: the read
    /// index, and what was left of the lease on the leader's clock when it granted it.
    ReadIndexLease {
        /// The read index.
        index: u64,
        /// Microseconds of lease left on the leader's clock.
        lease_us: u64,
    },
}

/// The leader's view of replication: its last log index and, per member it replicates to, the
/// last index known to match its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// The leader.
    pub leader: u64,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// `(member, matched index)`; a member nothing is known to match yet is absent.
    pub matched: Vec<(u64, u64)>,
}

/// A session just opened, as only its opener learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedSession {
    /// Its id, drawn at random below 2^53.
    pub session: SessionId,
    /// Its secret, which keepalive, close and ephemeral creates must present.
    pub secret: SessionSecret,
    /// The granted timeout.
    pub timeout_ms: u64,
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
    /// A membership change was refused (it would leave no quorum, the id was removed before, ...);
    /// nothing changed.
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    /// A write was refused before it reached the log: its entry would exceed the entry limit. Nothing
    /// was applied; sending it again cannot succeed (split the request).
    #[error("entry of {bytes} bytes exceeds the limit of {max} bytes (ENTRY_BYTES_MAX); split the request")]
    EntryTooLarge {
        /// The entry's encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// The largest proposal, encoded, that a write may carry: the entry limit less the log id and tags
/// around it.
pub const PROPOSAL_BYTES_MAX: usize = crate::limits::ENTRY_BYTES_MAX - crate::limits::ENTRY_OVERHEAD_BYTES;

/// Checks that `command`, proposed at any time, encodes within [`PROPOSAL_BYTES_MAX`].
///
/// # Errors
/// [`CoordinatorError::EntryTooLarge`] with the encoded size.
pub fn check_entry_size(command: &Command) -> Result<(), CoordinatorError> {
    // A proposal is its time (a varint of at most 10 bytes) followed by its command.
    let bytes = postcard::experimental::serialized_size(command).unwrap_or(usize::MAX).saturating_add(10);
    if bytes > PROPOSAL_BYTES_MAX {
        return Err(CoordinatorError::EntryTooLarge { bytes, max: PROPOSAL_BYTES_MAX });
    }
    Ok(())
}
