//! What the registry state machine takes (commands, replicated through the log) and gives back.
//!
//! Commands carry everything apply needs, including the proposer's wall-clock time, so that every
//! replica computes the same result from the same log.

use serde::{Deserialize, Serialize};

use super::acl::{Acl, Caller};
use super::path::ZPath;
use super::secret::SessionSecret;

/// A client session's id; 0 means "no session".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// How a znode lives and is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CreateMode {
    /// Lives until deleted.
    #[default]
    Persistent,
    /// Persistent, with a 10-digit per-parent counter appended to the name.
    PersistentSequential,
    /// Deleted when its session ends; cannot have children.
    Ephemeral,
    /// Ephemeral and sequential.
    EphemeralSequential,
    /// Deleted once its last child is deleted.
    Container,
}

impl CreateMode {
    /// Whether the node belongs to a session.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, CreateMode::Ephemeral | CreateMode::EphemeralSequential)
    }

    /// Whether a counter is appended to the name.
    pub fn is_sequential(self) -> bool {
        matches!(self, CreateMode::PersistentSequential | CreateMode::EphemeralSequential)
    }
}

/// A znode's metadata, as ZooKeeper's `Stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Stat {
    /// Zxid of the create.
    pub czxid: u64,
    /// Zxid of the last data change.
    pub mzxid: u64,
    /// Zxid of the last change to the children.
    pub pzxid: u64,
    /// Creation time, Unix ms (proposer's clock).
    pub ctime: u64,
    /// Last data change time, Unix ms.
    pub mtime: u64,
    /// Number of data changes.
    pub version: u32,
    /// Number of changes to the children.
    pub cversion: u32,
    /// Owning session of an ephemeral node, 0 otherwise.
    pub ephemeral_owner: u64,
    /// Bytes of data.
    pub data_length: u32,
    /// Number of children.
    pub num_children: u32,
    /// Number of ACL changes. Not in this type's serde layout (snapshots of earlier formats fix it):
    /// the snapshot keeps it beside the tree (`StateExtras`), and it is left out of JSON bodies.
    #[serde(skip)]
    pub aversion: u32,
}

/// One step of a [`Command::Multi`]. Unknown fields are refused when it arrives as JSON (the log's
/// binary encoding has no field names, so this changes nothing there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MultiOp {
    /// Fails unless the node's version is `version`.
    Check {
        /// The node.
        path: ZPath,
        /// Expected version.
        version: u32,
    },
    /// As [`Command::Create`].
    Create {
        /// The node (prefix, if sequential).
        path: ZPath,
        /// Its data.
        #[serde(default)]
        data: Vec<u8>,
        /// Its mode.
        #[serde(default)]
        mode: CreateMode,
    },
    /// As [`Command::Set`].
    Set {
        /// The node.
        path: ZPath,
        /// New data.
        data: Vec<u8>,
        /// Expected version, or any.
        version: Option<u32>,
    },
    /// As [`Command::Delete`].
    Delete {
        /// The node.
        path: ZPath,
        /// Expected version, or any.
        version: Option<u32>,
    },
    // Appended after the first release, so that older encodings still decode.
    /// As [`Command::CreateChild`].
    CreateChild {
        /// The parent.
        parent: ZPath,
        /// The child's name (its prefix, if sequential; then it may be empty).
        #[serde(default)]
        name: String,
        /// Its data.
        #[serde(default)]
        data: Vec<u8>,
        /// Its mode.
        #[serde(default)]
        mode: CreateMode,
    },
    /// As [`Command::CreateNode`]: a child with its ACL (written only once every voter's build applies state version 2).
    CreateNode {
        /// The parent.
        parent: ZPath,
        /// The child's name (its prefix, if sequential; then it may be empty).
        #[serde(default)]
        name: String,
        /// Its data.
        #[serde(default)]
        data: Vec<u8>,
        /// Its mode.
        #[serde(default)]
        mode: CreateMode,
        /// Its ACL, already fixed up (see `acl::fix_up`).
        acl: Vec<Acl>,
    },
}

/// A change to the registry, as replicated through the log.
///
/// `A` is a command for state applied next to the registry in the same log (the task table's, see
/// `state::Command`); the registry keeps only its zxid. The registry alone uses `()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command<A = ()> {
    /// Creates a node; its parent must exist.
    Create {
        /// The node (prefix, if sequential).
        path: ZPath,
        /// Its data.
        data: Vec<u8>,
        /// Its mode.
        mode: CreateMode,
        /// Owner for ephemeral modes: only a session without a secret (legacy); a secured session's
        /// ephemerals are created with [`Command::CreateOwned`].
        session: Option<SessionId>,
        /// Time to live for persistent nodes without children, in ms.
        ttl_ms: Option<u64>,
    },
    /// Replaces a node's data.
    Set {
        /// The node.
        path: ZPath,
        /// New data.
        data: Vec<u8>,
        /// Expected version, or any.
        version: Option<u32>,
    },
    /// Deletes a childless node.
    Delete {
        /// The node.
        path: ZPath,
        /// Expected version, or any.
        version: Option<u32>,
    },
    /// All of `ops` or none.
    Multi {
        /// The steps, in order.
        ops: Vec<MultiOp>,
        /// Owner for ephemeral creates: only a session without a secret (legacy); see
        /// [`Command::MultiOwned`].
        session: Option<SessionId>,
    },
    /// Opens a session; its id is derived from the command's zxid, and it has no secret. Written by
    /// earlier versions; still applied when their log is replayed (see `tree.rs` on legacy sessions).
    OpenSession {
        /// Silence after which the session expires.
        timeout_ms: u64,
    },
    /// Closes a session, deleting its ephemeral nodes in the same step. Only for a session without a
    /// secret (a legacy one); a secured session needs [`Command::CloseSessionSecured`].
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// Expires sessions the leader found silent, deleting their ephemerals in one step.
    ExpireSessions {
        /// The sessions.
        sessions: Vec<SessionId>,
    },
    /// Deletes TTL nodes the leader found expired; each is re-checked at apply.
    ExpireTtl {
        /// Candidate nodes.
        paths: Vec<ZPath>,
    },
    /// Does nothing; used to commit a barrier (sync) and as a leader's first entry.
    Noop,
    /// A command for the state applied next to the registry in the same state machine (the task
    /// table's); the registry only records its zxid.
    App(A),
    // Variants below were added after the first release: appended so older log entries still decode.
    /// Opens a session with an id and secret the proposer drew. Refused if the id is taken (the
    /// proposer draws again), 0 or above [`super::secret::SESSION_ID_MAX`].
    OpenSessionSecured {
        /// The session's id.
        session: SessionId,
        /// Its secret, which keepalive, close and ephemeral creates must present.
        secret: SessionSecret,
        /// Silence after which the session expires.
        timeout_ms: u64,
    },
    /// Closes a session whose secret is presented, deleting its ephemeral nodes in the same step.
    CloseSessionSecured {
        /// The session.
        session: SessionId,
        /// Its secret.
        secret: SessionSecret,
    },
    /// As [`Command::Create`], with the owner session's secret for ephemeral modes.
    CreateOwned {
        /// The node (prefix, if sequential).
        path: ZPath,
        /// Its data.
        data: Vec<u8>,
        /// Its mode.
        mode: CreateMode,
        /// Owner for ephemeral modes (ignored for the others, as in [`Command::Create`]).
        session: SessionId,
        /// The owner's secret.
        secret: SessionSecret,
        /// Time to live for persistent nodes without children, in ms.
        ttl_ms: Option<u64>,
    },
    /// As [`Command::Multi`], with the owner session's secret for its ephemeral creates.
    MultiOwned {
        /// The steps, in order.
        ops: Vec<MultiOp>,
        /// Owner for ephemeral creates.
        session: SessionId,
        /// The owner's secret.
        secret: SessionSecret,
    },
    /// Creates the child `name` of `parent`, which must exist. A sequential child's name ends with
    /// the parent's `cversion` before the create in ten digits, ZooKeeper's rule (so `name` may be
    /// empty); [`Command::Create`] and [`Command::CreateOwned`], written by earlier versions, number
    /// by a counter of sequential creates instead. The number only grows either way: `cversion`
    /// counts every change to the children, the counter only sequential creates.
    CreateChild {
        /// The parent.
        parent: ZPath,
        /// The child's name (its prefix, if sequential).
        name: String,
        /// Its data.
        data: Vec<u8>,
        /// Its mode.
        mode: CreateMode,
        /// The owner of an ephemeral node, with its secret.
        owner: Option<(SessionId, SessionSecret)>,
        /// Time to live for persistent nodes without children, in ms.
        ttl_ms: Option<u64>,
    },
    /// Raises the state version to `version`, turning on the behaviour it names (see
    /// [`STATE_VERSION`]). Proposed by a leader only once every voter runs a build that knows it;
    /// a replica that does not know it stops rather than diverge.
    Upgrade {
        /// The new version.
        version: u32,
        /// The text of `/zookeeper/config` (the voters, as ZooKeeper's static configuration reads).
        zookeeper_config: String,
    },
    /// `command`, checked against the ACLs of the nodes it touches as `caller` (written only once every voter's build applies state version 2).
    /// Commands not wrapped are the cluster's own (registration, expiry) and are not checked.
    As {
        /// Who asks.
        caller: Caller,
        /// What it asks.
        command: Box<Command<A>>,
    },
    /// As [`Command::CreateChild`], with the node's ACL (written only once every voter's build applies state version 2).
    CreateNode {
        /// The parent.
        parent: ZPath,
        /// The child's name (its prefix, if sequential).
        name: String,
        /// Its data.
        data: Vec<u8>,
        /// Its mode.
        mode: CreateMode,
        /// The owner of an ephemeral node, with its secret.
        owner: Option<(SessionId, SessionSecret)>,
        /// Time to live for persistent nodes without children, in ms.
        ttl_ms: Option<u64>,
        /// Its ACL, already fixed up (see `acl::fix_up`).
        acl: Vec<Acl>,
    },
    /// Replaces a node's ACL (written only once every voter's build applies state version 2).
    SetAcl {
        /// The node.
        path: ZPath,
        /// The new ACL, already fixed up.
        acl: Vec<Acl>,
        /// Expected ACL version (`aversion`), or any.
        version: Option<u32>,
    },
}

/// The state version this build applies: 1 is the first release's behaviour; 2 adds ACLs (checked
/// at apply), `/zookeeper`, and ZooKeeper's child numbering (a delete leaves the parent's `cversion`
/// as it is, so sequential numbers are ZooKeeper's); 3 adds the grid's zoned, paused and triggered
/// jobs (log entries that builds before it cannot decode); 4 adds work stealing (`Reassign` entries);
/// 5 adds grid actors (`ActorActivate`, `ActorCommit`, `ActorRelease`, `ActorSingleton` entries, and
/// the actor records of format-5 snapshots); 6 adds `ActorForget` (volatile orphans' records removed);
/// 7 adds `SubmitPlaced` (a submission that assigns the tasks that find room at once).
pub const STATE_VERSION: u32 = 7;

/// The state version from which writes carry their caller and nodes their ACLs.
pub const STATE_VERSION_ACLS: u32 = 2;

/// The state version from which jobs may have a time zone and be paused, resumed and triggered.
pub const STATE_VERSION_JOB_CONTROL: u32 = 3;

/// The state version from which the leader moves queued attempts between nodes (work stealing).
pub const STATE_VERSION_STEAL: u32 = 4;

/// The state version from which nodes propose actor commands (grid actors).
pub const STATE_VERSION_ACTORS: u32 = 5;

/// The state version from which the leader removes volatile orphans' records (`ActorForget`).
pub const STATE_VERSION_ACTOR_FORGET: u32 = 6;

/// The state version from which the leader places submitted tasks in their own entry (`SubmitPlaced`).
pub const STATE_VERSION_PLACED: u32 = 7;

const _: () = assert!(
    STATE_VERSION_ACLS <= STATE_VERSION
        && STATE_VERSION_JOB_CONTROL <= STATE_VERSION
        && STATE_VERSION_STEAL <= STATE_VERSION
        && STATE_VERSION_ACTORS <= STATE_VERSION
        && STATE_VERSION_ACTOR_FORGET <= STATE_VERSION
        && STATE_VERSION_PLACED <= STATE_VERSION
);

/// A command with the proposer's clock reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal<A = ()> {
    /// Unix ms at the proposer; stored as ctime/mtime and used for TTL checks.
    pub now_ms: u64,
    /// The change.
    pub command: Command<A>,
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<B = ()> {
    /// A node was created under this (final) path.
    Created {
        /// The path, with the sequential suffix if any.
        path: ZPath,
        /// Its stat.
        stat: Stat,
    },
    /// A node's data was replaced.
    Set {
        /// Its new stat.
        stat: Stat,
    },
    /// A node was deleted.
    Deleted,
    /// A multi succeeded; one result per op.
    Multi {
        /// Per-op outcomes.
        results: Vec<Outcome<B>>,
    },
    /// A check passed.
    Checked,
    /// A session was opened.
    SessionOpened {
        /// Its id.
        session: SessionId,
        /// Its timeout.
        timeout_ms: u64,
    },
    /// Sessions were closed or expired, with the ephemerals deleted.
    SessionsEnded {
        /// How many sessions ended.
        sessions: u32,
        /// How many ephemeral nodes went with them.
        ephemerals: u32,
    },
    /// TTL nodes deleted.
    TtlExpired {
        /// How many.
        deleted: u32,
    },
    /// Nothing changed.
    Nothing,
    /// What a [`Command::App`] did, reported by the state applied next to the registry.
    App(B),
}

impl Outcome {
    /// The same outcome in a state whose commands also carry `B` (the registry never makes
    /// [`Outcome::App`]).
    pub fn widen<B>(self) -> Outcome<B> {
        match self {
            Outcome::Created { path, stat } => Outcome::Created { path, stat },
            Outcome::Set { stat } => Outcome::Set { stat },
            Outcome::Deleted => Outcome::Deleted,
            Outcome::Multi { results } => Outcome::Multi { results: results.into_iter().map(Outcome::widen).collect() },
            Outcome::Checked => Outcome::Checked,
            Outcome::SessionOpened { session, timeout_ms } => Outcome::SessionOpened { session, timeout_ms },
            Outcome::SessionsEnded { sessions, ephemerals } => Outcome::SessionsEnded { sessions, ephemerals },
            Outcome::TtlExpired { deleted } => Outcome::TtlExpired { deleted },
            Outcome::Nothing => Outcome::Nothing,
            Outcome::App(()) => Outcome::Nothing,
        }
    }
}

/// A registry error, named as ZooKeeper users know them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryError {
    /// The node (or, for create, its parent) does not exist.
    #[error("no node: {path}")]
    NoNode {
        /// The missing path.
        path: String,
    },
    /// The node already exists.
    #[error("node exists: {path}")]
    NodeExists {
        /// The path.
        path: String,
    },
    /// The expected version does not match.
    #[error("bad version: {path} is at version {actual}, expected {expected}")]
    BadVersion {
        /// The path.
        path: String,
        /// Expected.
        expected: u32,
        /// Actual.
        actual: u32,
    },
    /// The node has children.
    #[error("not empty: {path}")]
    NotEmpty {
        /// The path.
        path: String,
    },
    /// The parent is ephemeral.
    #[error("no children for ephemerals: {path}")]
    NoChildrenForEphemerals {
        /// The ephemeral parent.
        path: String,
    },
    /// The path is not valid.
    #[error("invalid path: {reason}")]
    InvalidPath {
        /// Why.
        reason: String,
    },
    /// The data exceeds the limit.
    #[error("too large: {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size given.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The session does not exist or has expired.
    #[error("session expired: {session}")]
    SessionExpired {
        /// The session.
        session: SessionId,
    },
    /// The arguments are inconsistent (TTL on an ephemeral, ephemeral without a session, ...).
    #[error("bad arguments: {reason}")]
    BadArguments {
        /// Why.
        reason: String,
    },
    /// A registry-wide bound was reached.
    #[error("quota exceeded: {reason}")]
    QuotaExceeded {
        /// Which bound.
        reason: String,
    },
    /// A multi failed at `index`; nothing was applied.
    #[error("multi failed at op {index}: {cause}")]
    MultiFailed {
        /// The failing op.
        index: usize,
        /// Its error.
        cause: Box<RegistryError>,
    },
    // Variants below were added after the first release: appended so older encodings still decode.
    /// The session's secret was missing or wrong (ZooKeeper's `NoAuth`): only its opener may keep
    /// it alive, close it or create ephemerals under it.
    #[error("no auth: session secret missing or wrong for session {session}")]
    NoAuth {
        /// The session.
        session: SessionId,
    },
    /// A proposer drew an id another session already has; it draws again.
    #[error("session exists: {session}")]
    SessionExists {
        /// The session.
        session: SessionId,
    },
    /// The node's ACL does not grant the caller what it asked (ZooKeeper's `NoAuth`).
    #[error("no auth: the ACL of {path} does not allow this")]
    Denied {
        /// The node whose ACL refused.
        path: String,
    },
    /// The ACL given is not valid (ZooKeeper's `InvalidACL`).
    #[error("invalid acl: {reason}")]
    InvalidAcl {
        /// Why.
        reason: String,
    },
}

impl From<super::path::PathError> for RegistryError {
    fn from(error: super::path::PathError) -> Self {
        RegistryError::InvalidPath { reason: error.to_string() }
    }
}

/// The result of applying one command.
pub type Applied<B = ()> = Result<Outcome<B>, RegistryError>;

/// A change the watch table turns into events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A node was created.
    NodeCreated {
        /// The node.
        path: ZPath,
    },
    /// A node was deleted.
    NodeDeleted {
        /// The node.
        path: ZPath,
    },
    /// A node's data changed.
    NodeDataChanged {
        /// The node.
        path: ZPath,
    },
    /// A node's set of children changed.
    NodeChildrenChanged {
        /// The parent.
        path: ZPath,
    },
}

impl Change {
    /// The path the change is about.
    pub fn path(&self) -> &ZPath {
        match self {
            Change::NodeCreated { path }
            | Change::NodeDeleted { path }
            | Change::NodeDataChanged { path }
            | Change::NodeChildrenChanged { path } => path,
        }
    }
}
