//! The znode tree: the registry's deterministic state machine.
//!
//! It owns nodes, sessions and the last applied zxid, and nothing else: no I/O, no clock (time comes
//! in each [`Proposal`]), no watch delivery (it reports [`Change`]s; `watch.rs` turns them into
//! events). Every replica applying the same log reaches the same tree.
//!
//! Invariant: a failed command changes nothing, and a multi applies all its ops or none.
//! Invariant: an ephemeral node's owner session exists and lists it; a session lists only its ephemerals.
//! Invariant: a session with a secret is kept alive, closed and given ephemerals only by a command
//! that presents that secret (session handling lives in `tree/sessions.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::acl::{self, perms, Acl, Caller, NodeAcl};
use super::command::{
    Applied, Change, Command, CreateMode, MultiOp, Outcome, Proposal, RegistryError, SessionId, Stat, STATE_VERSION,
};
use super::path::ZPath;
use super::secret::SessionSecret;

mod sessions;

use sessions::Claim;

/// Largest sequential suffix: ten decimal digits.
const SEQUENCE_MAX: u64 = 9_999_999_999;

/// Bounds on what clients can make the registry hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLimits {
    /// Bytes of data per znode (ZooKeeper's jute.maxbuffer default: 1 MiB).
    pub data_bytes_max: usize,
    /// Znodes in the tree.
    pub znodes_max: usize,
    /// Open sessions.
    pub sessions_max: usize,
    /// Ops in one multi.
    pub multi_ops_max: usize,
    /// Shortest session timeout granted; shorter requests are raised to it.
    pub session_timeout_ms_min: u64,
    /// Longest session timeout granted; longer requests are lowered to it.
    pub session_timeout_ms_max: u64,
    /// Bytes of data and paths the whole tree holds; a create or set past it is refused
    /// (`QuotaExceeded`), as etcd's backend quota refuses writes. Not stored in this type's layout
    /// (format-1 snapshots fix it): it comes from the committed cluster settings.
    #[serde(skip, default = "data_bytes_total_max_default")]
    pub data_bytes_total_max: usize,
}

/// Bytes a registry holds in data and paths by default: 1 GiB, half of etcd's default backend quota,
/// so a node's registry, task table and a snapshot's copy of both stay within a few GiB.
pub const DATA_BYTES_TOTAL_MAX_DEFAULT: usize = 1 << 30;

fn data_bytes_total_max_default() -> usize {
    DATA_BYTES_TOTAL_MAX_DEFAULT
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            data_bytes_max: 1 << 20,
            znodes_max: 10_000_000,
            sessions_max: 100_000,
            multi_ops_max: 1_000,
            session_timeout_ms_min: crate::limits::SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: crate::limits::SESSION_TIMEOUT_MS_MAX_DEFAULT,
            data_bytes_total_max: DATA_BYTES_TOTAL_MAX_DEFAULT,
        }
    }
}

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Znode {
    /// Its data.
    pub data: Vec<u8>,
    /// Its metadata.
    pub stat: Stat,
    /// How it was created.
    pub mode: CreateMode,
    /// Time to live (persistent nodes only).
    pub ttl_ms: Option<u64>,
    /// Names of its children, sorted.
    pub children: BTreeSet<String>,
    /// Next sequential suffix for its children.
    pub sequence_next: u64,
    /// Its ACL (`None`: open to everyone). Not in this type's serde layout (snapshots of earlier
    /// formats fix it): the snapshot keeps it beside the tree, through [`Registry::acl_records`].
    #[serde(skip)]
    pub acl: NodeAcl,
}

/// What the snapshot keeps of a node's ACL beside the tree: its entries and its `aversion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRecord {
    /// The entries.
    pub acl: Vec<Acl>,
    /// The ACL version.
    pub aversion: u32,
}

/// The paths of ZooKeeper's own subtree, which state version 2 creates.
pub const ZOOKEEPER_PATH: &str = "/zookeeper";
/// ZooKeeper's quota subtree.
pub const ZOOKEEPER_QUOTA_PATH: &str = "/zookeeper/quota";
/// ZooKeeper's configuration node.
pub const ZOOKEEPER_CONFIG_PATH: &str = "/zookeeper/config";

/// A session as replicated: its timeout and its ephemeral nodes. Liveness is tracked by the leader
/// (`session.rs`), not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Granted timeout.
    pub timeout_ms: u64,
    /// Its ephemeral nodes.
    pub ephemerals: BTreeSet<ZPath>,
}

/// The replicated registry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    limits: RegistryLimits,
    nodes: BTreeMap<ZPath, Znode>,
    sessions: BTreeMap<SessionId, SessionRecord>,
    last_zxid: u64,
    /// Secrets of the sessions that have one (opened by [`Command::OpenSessionSecured`]); a session
    /// absent here is a legacy one. Replicated state kept outside this type's serde layout (which
    /// older snapshots fix): the snapshot carries it beside the registry, through
    /// [`Registry::session_secrets`] and [`Registry::restore_session_secrets`].
    #[serde(skip)]
    secrets: BTreeMap<SessionId, SessionSecret>,
    /// Bytes of data and paths held (derived; see [`Registry::rebuild_derived`]).
    #[serde(skip)]
    data_bytes: usize,
    /// The nodes with a TTL (derived): the leader's expiry scan, every 50 ms, reads these rather
    /// than the whole tree.
    #[serde(skip)]
    ttl_nodes: BTreeSet<ZPath>,
    /// The state version in force (see [`STATE_VERSION`]). Kept beside the tree in the snapshot,
    /// like the secrets.
    #[serde(skip, default = "first_version")]
    version: u32,
}

fn first_version() -> u32 {
    1
}

/// What a znode counts against [`RegistryLimits::data_bytes_total_max`].
fn znode_bytes(path: &ZPath, node: &Znode) -> usize {
    path.as_str().len() + node.data.len()
}

/// How a sequential child is numbered.
#[derive(Clone, Copy)]
enum Numbering {
    /// By the parent's counter of sequential creates (commands of earlier versions).
    Counter,
    /// By the parent's changes to its children: `cversion` itself in state version 1, the count of
    /// creates in version 2 (ZooKeeper's rule).
    ChildChanges,
}

/// Where a create puts its node: the child `name` of `parent` (a prefix, if sequential).
struct Target<'a> {
    parent: &'a ZPath,
    name: &'a str,
    numbering: Numbering,
}

/// Prior values of what a multi touched, to roll it back.
#[derive(Default)]
struct Undo {
    nodes: BTreeMap<ZPath, Option<Znode>>,
    sessions: BTreeMap<SessionId, Option<SessionRecord>>,
}

/// Per-command context: the zxid and time being applied, changes so far, the undo log of a multi,
/// and the caller whose ACL rights are checked (`None`: the cluster's own command, not checked).
struct Ctx<'c> {
    zxid: u64,
    now_ms: u64,
    changes: Vec<Change>,
    undo: Option<Undo>,
    caller: Option<&'c Caller>,
}

impl Ctx<'_> {
    /// Refuses unless the caller may do `wanted` on a node with `acl` at `path`.
    fn check(&self, acl: &NodeAcl, wanted: u32, path: &ZPath) -> Result<(), RegistryError> {
        match self.caller {
            Some(caller) if !caller.may(acl, wanted) => Err(RegistryError::Denied { path: path.to_string() }),
            _ => Ok(()),
        }
    }
}

/// The roots of the subtrees the cluster itself writes: the grid's registrations and the credentials'
/// revocations. From state version 2 every node in them is world-readable only, so no client but the
/// super user changes them; the cluster's own commands are not checked.
pub const CLUSTER_ROOTS: [&str; 2] = ["/grid", "/gridkeeper"];

/// Whether `path` lies in one of [`CLUSTER_ROOTS`].
pub fn cluster_owned(path: &ZPath) -> bool {
    CLUSTER_ROOTS
        .iter()
        .any(|root| path.as_str().strip_prefix(root).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Refuses an ACL the edges should have fixed up already (see `acl::fix_up`): empty or too long.
fn check_acl(acl: &[Acl]) -> Result<(), RegistryError> {
    if acl.is_empty() || acl.len() > acl::ACL_ENTRIES_MAX {
        return Err(RegistryError::InvalidAcl {
            reason: format!("an ACL has 1 to {} entries, not {}", acl::ACL_ENTRIES_MAX, acl.len()),
        });
    }
    Ok(())
}

/// Whether deleting `path` is refused as ZooKeeper refuses it (its own nodes).
fn protected(path: &ZPath) -> bool {
    matches!(path.as_str(), ZOOKEEPER_PATH | ZOOKEEPER_CONFIG_PATH | ZOOKEEPER_QUOTA_PATH)
}

fn no_node(path: &ZPath) -> RegistryError {
    RegistryError::NoNode { path: path.to_string() }
}

impl Registry {
    /// An empty registry holding only `/`.
    pub fn new(limits: RegistryLimits) -> Registry {
        let root = Znode {
            data: Vec::new(),
            stat: Stat::default(),
            mode: CreateMode::Persistent,
            ttl_ms: None,
            children: BTreeSet::new(),
            sequence_next: 0,
            acl: None,
        };
        Registry {
            limits,
            nodes: BTreeMap::from([(ZPath::root(), root)]),
            sessions: BTreeMap::new(),
            last_zxid: 0,
            secrets: BTreeMap::new(),
            data_bytes: 1,
            ttl_nodes: BTreeSet::new(),
            version: 1,
        }
    }

    /// The state version in force.
    pub fn version(&self) -> u32 {
        self.version.max(1)
    }

    /// A node's ACL and stat (`aversion` included).
    ///
    /// # Errors
    /// [`RegistryError::NoNode`].
    pub fn acl(&self, path: &ZPath) -> Result<(Vec<Acl>, Stat), RegistryError> {
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        Ok((acl::entries(&node.acl), node.stat))
    }

    /// Whether `caller` may do any of `wanted` on `path` (a missing node allows nothing).
    pub fn may(&self, caller: &Caller, path: &ZPath, wanted: u32) -> bool {
        self.nodes.get(path).is_some_and(|node| caller.may(&node.acl, wanted))
    }

    /// The ACLs and ACL versions to keep beside the tree in a snapshot (nodes with an ACL of their
    /// own or a changed one), and the state version.
    pub fn acl_records(&self) -> (u32, BTreeMap<ZPath, AclRecord>) {
        let records = self
            .nodes
            .iter()
            .filter(|(_, node)| node.acl.is_some() || node.stat.aversion != 0)
            .map(|(path, node)| {
                (path.clone(), AclRecord { acl: acl::entries(&node.acl), aversion: node.stat.aversion })
            })
            .collect();
        (self.version(), records)
    }

    /// Puts back what [`Self::acl_records`] gave, after the tree was read from a snapshot.
    pub fn restore_acl_records(&mut self, version: u32, records: BTreeMap<ZPath, AclRecord>) {
        self.version = version.max(1);
        for (path, record) in records {
            if let Some(node) = self.nodes.get_mut(&path) {
                node.acl = acl::node_acl(record.acl);
                node.stat.aversion = record.aversion;
            }
        }
    }

    /// Recounts the derived byte count. Call after deserializing a registry (it is not stored).
    pub fn rebuild_derived(&mut self) {
        self.data_bytes = self.nodes.iter().map(|(path, node)| znode_bytes(path, node)).sum();
        self.ttl_nodes =
            self.nodes.iter().filter(|(_, node)| node.ttl_ms.is_some()).map(|(path, _)| path.clone()).collect();
    }

    /// Bytes of data and paths held now.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    fn check_total(&self, adding: usize, removing: usize) -> Result<(), RegistryError> {
        let after = (self.data_bytes + adding).saturating_sub(removing);
        if adding > removing && after > self.limits.data_bytes_total_max {
            return Err(RegistryError::QuotaExceeded {
                reason: format!(
                    "the registry holds {} bytes at most (data_bytes_total_max)",
                    self.limits.data_bytes_total_max
                ),
            });
        }
        Ok(())
    }

    /// The limits in force.
    pub fn limits(&self) -> RegistryLimits {
        self.limits
    }

    /// Replaces the limits in force (cluster-wide settings were committed). What the registry already
    /// holds stays; the new limits apply to what comes next.
    pub fn set_limits(&mut self, limits: RegistryLimits) {
        self.limits = limits;
    }

    /// The zxid of the last applied command.
    pub fn last_zxid(&self) -> u64 {
        self.last_zxid
    }

    /// Number of znodes, the root included.
    pub fn znode_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every open session and its timeout.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, u64)> + '_ {
        self.sessions.iter().map(|(&id, record)| (id, record.timeout_ms))
    }

    /// `session`'s granted timeout, if it is open.
    pub fn session_timeout_ms(&self, session: SessionId) -> Option<u64> {
        self.sessions.get(&session).map(|record| record.timeout_ms)
    }

    /// Whether `session` is open.
    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// A node's data and stat.
    ///
    /// # Errors
    /// [`RegistryError::NoNode`].
    pub fn get(&self, path: &ZPath) -> Result<(&[u8], Stat), RegistryError> {
        self.nodes.get(path).map(|node| (node.data.as_slice(), node.stat)).ok_or_else(|| no_node(path))
    }

    /// A node's stat, if it exists.
    pub fn exists(&self, path: &ZPath) -> Option<Stat> {
        self.nodes.get(path).map(|node| node.stat)
    }

    /// A node's children (sorted) and stat.
    ///
    /// # Errors
    /// [`RegistryError::NoNode`].
    pub fn children(&self, path: &ZPath) -> Result<(Vec<String>, Stat), RegistryError> {
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        Ok((node.children.iter().cloned().collect(), node.stat))
    }

    /// How many nodes lie below `path`, at any depth (ZooKeeper's `getAllChildrenNumber`).
    ///
    /// # Errors
    /// [`RegistryError::NoNode`].
    pub fn descendant_count(&self, path: &ZPath) -> Result<usize, RegistryError> {
        if !self.nodes.contains_key(path) {
            return Err(no_node(path));
        }
        if path.is_root() {
            return Ok(self.nodes.len() - 1);
        }
        // Paths sort as strings, so every path starting with this one's text is in one run after it;
        // of those, the descendants are the ones that go on with a `/`.
        let prefix = path.as_str();
        Ok(self
            .nodes
            .range(path.clone()..)
            .map(|(key, _)| key.as_str())
            .take_while(|key| key.starts_with(prefix))
            .filter(|key| key.as_bytes().get(prefix.len()) == Some(&b'/'))
            .count())
    }

    /// The ephemeral nodes `session` owns, sorted; none for a session that is not open.
    pub fn session_ephemerals(&self, session: SessionId) -> Vec<ZPath> {
        self.sessions.get(&session).map(|record| record.ephemerals.iter().cloned().collect()).unwrap_or_default()
    }

    /// TTL nodes due for deletion at `now_ms`, for the leader to propose (re-checked at apply).
    pub fn ttl_candidates(&self, now_ms: u64, max: usize) -> Vec<ZPath> {
        self.ttl_nodes
            .iter()
            .filter(|path| self.nodes.get(*path).is_some_and(|node| Self::ttl_expired(node, now_ms)))
            .take(max)
            .cloned()
            .collect()
    }

    fn ttl_expired(node: &Znode, now_ms: u64) -> bool {
        node.ttl_ms.is_some_and(|ttl| node.children.is_empty() && now_ms.saturating_sub(node.stat.mtime) >= ttl)
    }

    /// Applies the proposal at `zxid`, returning its result and the changes watchers should hear of.
    ///
    /// # Panics
    /// If `zxid` does not increase: the log feeds each entry once, in order.
    pub fn apply<A>(&mut self, zxid: u64, proposal: &Proposal<A>) -> (Applied, Vec<Change>) {
        assert!(zxid > self.last_zxid, "zxid {zxid} applied after {}", self.last_zxid);
        self.last_zxid = zxid;
        let mut ctx = Ctx { zxid, now_ms: proposal.now_ms, changes: Vec::new(), undo: None, caller: None };
        let result = self.apply_command(&mut ctx, &proposal.command);
        (result, ctx.changes)
    }

    fn apply_command<'c, A>(&mut self, ctx: &mut Ctx<'c>, command: &'c Command<A>) -> Applied {
        match command {
            Command::Create { path, data, mode, session, ttl_ms } => self
                .create(ctx, path, data, *mode, Claim::legacy(*session), *ttl_ms)
                .map(|(path, stat)| Outcome::Created { path, stat }),
            Command::CreateOwned { path, data, mode, session, secret, ttl_ms } => self
                .create(ctx, path, data, *mode, Claim::Proven(*session, secret), *ttl_ms)
                .map(|(path, stat)| Outcome::Created { path, stat }),
            Command::CreateChild { parent, name, data, mode, owner, ttl_ms } => {
                let claim = owner.as_ref().map_or(Claim::Nobody, |(session, secret)| Claim::Proven(*session, secret));
                self.create_child(ctx, parent, name, data, *mode, claim, *ttl_ms)
                    .map(|(path, stat)| Outcome::Created { path, stat })
            }
            Command::Set { path, data, version } => {
                self.set(ctx, path, data, *version).map(|stat| Outcome::Set { stat })
            }
            Command::Delete { path, version } => self.delete(ctx, path, *version).map(|()| Outcome::Deleted),
            Command::Multi { ops, session } => self.multi(ctx, ops, Claim::legacy(*session)),
            Command::MultiOwned { ops, session, secret } => self.multi(ctx, ops, Claim::Proven(*session, secret)),
            Command::OpenSession { timeout_ms } => self.open_session(SessionId(ctx.zxid), None, *timeout_ms),
            Command::OpenSessionSecured { session, secret, timeout_ms } => {
                self.open_session(*session, Some(*secret), *timeout_ms)
            }
            Command::CloseSession { session } => self.close_session(ctx, Claim::Legacy(*session)),
            Command::CloseSessionSecured { session, secret } => {
                self.close_session(ctx, Claim::Proven(*session, secret))
            }
            Command::ExpireSessions { sessions } => Ok(self.end_sessions(ctx, sessions)),
            Command::ExpireTtl { paths } => Ok(self.expire_ttl(ctx, paths)),
            // The state beside the registry applies these (`state::replicated`); the registry only
            // keeps the zxid.
            Command::Noop | Command::App(_) => Ok(Outcome::Nothing),
            Command::Upgrade { version, zookeeper_config } => Ok(self.upgrade(ctx, *version, zookeeper_config)),
            Command::As { caller, command } => {
                if matches!(**command, Command::As { .. } | Command::Upgrade { .. } | Command::App(_)) {
                    return Err(RegistryError::BadArguments {
                        reason: "this command is not checked as a caller".into(),
                    });
                }
                ctx.caller = Some(caller);
                self.apply_command(ctx, command)
            }
            Command::CreateNode { parent, name, data, mode, owner, ttl_ms, acl } => {
                let claim = owner.as_ref().map_or(Claim::Nobody, |(session, secret)| Claim::Proven(*session, secret));
                let target = Target { parent, name, numbering: Numbering::ChildChanges };
                self.create_in(ctx, target, data, *mode, claim, *ttl_ms, Some(acl))
                    .map(|(path, stat)| Outcome::Created { path, stat })
            }
            Command::SetAcl { path, acl, version } => {
                self.set_acl(ctx, path, acl, *version).map(|stat| Outcome::Set { stat })
            }
        }
    }

    /// Raises the state version. Version 2 carries every node's child numbering over (see below),
    /// creates ZooKeeper's own nodes (`/zookeeper`, its quota subtree and its configuration) and makes the cluster's subtrees (`/grid`, `/gridkeeper`)
    /// world-readable only, so that only the cluster itself and the super user change them.
    ///
    /// # Panics
    /// If `version` is above what this build applies ([`STATE_VERSION`]): a replica that cannot apply
    /// the log as the others do stops rather than diverge. Leaders propose a version only once every
    /// voter advertises it.
    fn upgrade(&mut self, ctx: &mut Ctx<'_>, version: u32, zookeeper_config: &str) -> Outcome {
        assert!(
            version <= STATE_VERSION,
            "the log raises the state version to {version}, and this build applies versions up to {STATE_VERSION}: \
             run a newer gridkeeper on this node"
        );
        if version <= self.version() {
            return Outcome::Nothing;
        }
        if version >= 2 && self.version() < 2 {
            // Version 2 numbers a sequential child by its parent's count of creates, read from
            // cversion as (cversion + children) / 2. Version 1 numbered by cversion itself, so every
            // number used so far is below it: counting that many creates keeps numbers growing.
            for node in self.nodes.values_mut() {
                let changes = i64::from(node.stat.cversion as i32);
                node.stat.cversion = (2 * changes - node.children.len() as i64) as i32 as u32;
            }
            self.create_zookeeper_subtree(ctx, zookeeper_config);
            for (path, node) in self.nodes.iter_mut() {
                if cluster_owned(path) {
                    node.acl = acl::node_acl(acl::read_only());
                }
            }
        }
        self.version = version;
        Outcome::Nothing
    }

    /// ZooKeeper's own nodes as a fresh ZooKeeper 3.8 ensemble shows them: `/zookeeper` (its
    /// `cversion` at -2 and the root's one lower, as ZooKeeper's initial tree has them), `/zookeeper/quota`, and
    /// `/zookeeper/config` (world-readable only; version and aversion -1). Nodes already at those
    /// paths are kept as they are.
    fn create_zookeeper_subtree(&mut self, ctx: &mut Ctx<'_>, zookeeper_config: &str) {
        let config = zookeeper_config.as_bytes();
        let config = if config.len() <= self.limits.data_bytes_max { config } else { &[] };
        for (path, data) in
            [(ZOOKEEPER_PATH, &[][..]), (ZOOKEEPER_QUOTA_PATH, &[][..]), (ZOOKEEPER_CONFIG_PATH, config)]
        {
            let path = ZPath::parse(path).expect("a valid constant path");
            let Some(parent) = path.parent() else { continue };
            if self.nodes.contains_key(&path) || !self.nodes.contains_key(&parent) {
                continue;
            }
            let target = Target { parent: &parent, name: path.name(), numbering: Numbering::ChildChanges };
            if self.create_in(ctx, target, data, CreateMode::Persistent, Claim::Nobody, None, None).is_err() {
                continue;
            }
            // ZooKeeper's own nodes are part of its initial tree, not creates: its cversion is
            // 2 * creates - children, so each shows as -1 in its parent's (the create added 1).
            let parent_node = self.nodes.get_mut(&parent).expect("created under it");
            parent_node.stat.cversion = parent_node.stat.cversion.wrapping_sub(2);
        }
        let config_path = ZPath::parse(ZOOKEEPER_CONFIG_PATH).expect("a valid constant path");
        if let Some(node) = self.nodes.get_mut(&config_path) {
            if node.stat.czxid == ctx.zxid {
                node.acl = acl::node_acl(acl::read_only());
                node.stat.version = u32::MAX;
                node.stat.aversion = u32::MAX;
            }
        }
    }

    fn record_node(&self, ctx: &mut Ctx, path: &ZPath) {
        if let Some(undo) = ctx.undo.as_mut() {
            undo.nodes.entry(path.clone()).or_insert_with(|| self.nodes.get(path).cloned());
        }
    }

    fn record_session(&self, ctx: &mut Ctx, session: SessionId) {
        if let Some(undo) = ctx.undo.as_mut() {
            undo.sessions.entry(session).or_insert_with(|| self.sessions.get(&session).cloned());
        }
    }

    fn check_data(&self, data: &[u8]) -> Result<(), RegistryError> {
        if data.len() > self.limits.data_bytes_max {
            return Err(RegistryError::TooLarge { bytes: data.len(), max: self.limits.data_bytes_max });
        }
        Ok(())
    }

    /// A create of an earlier version's command: `path` names the node (or the prefix of a sequential
    /// one, numbered by the parent's counter of sequential creates).
    fn create(
        &mut self,
        ctx: &mut Ctx,
        path: &ZPath,
        data: &[u8],
        mode: CreateMode,
        claim: Claim<'_>,
        ttl_ms: Option<u64>,
    ) -> Result<(ZPath, Stat), RegistryError> {
        let parent = path.parent().ok_or_else(|| RegistryError::NodeExists { path: "/".into() })?;
        self.create_in(
            ctx,
            Target { parent: &parent, name: path.name(), numbering: Numbering::Counter },
            data,
            mode,
            claim,
            ttl_ms,
            None,
        )
    }

    /// A create of [`Command::CreateChild`]: sequential children numbered by the parent's cversion.
    #[allow(clippy::too_many_arguments)]
    fn create_child(
        &mut self,
        ctx: &mut Ctx,
        parent: &ZPath,
        name: &str,
        data: &[u8],
        mode: CreateMode,
        claim: Claim<'_>,
        ttl_ms: Option<u64>,
    ) -> Result<(ZPath, Stat), RegistryError> {
        self.create_in(
            ctx,
            Target { parent, name, numbering: Numbering::ChildChanges },
            data,
            mode,
            claim,
            ttl_ms,
            None,
        )
    }

    /// Creates a node with `acl` (`None`: open, or world-readable only in the cluster's subtrees).
    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &mut self,
        ctx: &mut Ctx,
        target: Target<'_>,
        data: &[u8],
        mode: CreateMode,
        claim: Claim<'_>,
        ttl_ms: Option<u64>,
        acl: Option<&[Acl]>,
    ) -> Result<(ZPath, Stat), RegistryError> {
        self.check_data(data)?;
        let parent_path = target.parent.clone();
        if ttl_ms.is_some() && !matches!(mode, CreateMode::Persistent | CreateMode::PersistentSequential) {
            return Err(RegistryError::BadArguments { reason: "a TTL needs a persistent mode".into() });
        }
        if ttl_ms == Some(0) {
            return Err(RegistryError::BadArguments { reason: "a TTL must be positive".into() });
        }
        let owner = match (mode.is_ephemeral(), claim.session()) {
            (true, Some(session)) => {
                self.check_claim(claim)?;
                session.0
            }
            (true, None) => {
                return Err(RegistryError::BadArguments { reason: "an ephemeral node needs a session".into() })
            }
            (false, _) => 0,
        };
        let parent = self.nodes.get(&parent_path).ok_or_else(|| no_node(&parent_path))?;
        ctx.check(&parent.acl, perms::CREATE, &parent_path)?;
        if let Some(acl) = acl {
            check_acl(acl)?;
        }
        if parent.mode.is_ephemeral() {
            return Err(RegistryError::NoChildrenForEphemerals { path: parent_path.to_string() });
        }
        let path = if mode.is_sequential() {
            let number = match target.numbering {
                Numbering::Counter => parent.sequence_next,
                // Version 1 numbered by cversion; version 2 by the count of creates, as ZooKeeper
                // does: its cversion counts creates and deletes, which are (cversion + children) / 2
                // and (cversion - children) / 2 (ZooKeeper stores the creates and shows
                // 2 * creates - children).
                Numbering::ChildChanges if self.version() < 2 => u64::from(parent.stat.cversion),
                Numbering::ChildChanges => {
                    let changes = i64::from(parent.stat.cversion as i32);
                    u64::try_from((changes + parent.children.len() as i64) / 2).unwrap_or(0)
                }
            };
            if number > SEQUENCE_MAX {
                return Err(RegistryError::QuotaExceeded { reason: format!("sequence of {parent_path} exhausted") });
            }
            parent_path.child(&format!("{}{number:010}", target.name))?
        } else {
            parent_path.child(target.name)?
        };
        if self.nodes.contains_key(&path) {
            return Err(RegistryError::NodeExists { path: path.to_string() });
        }
        if self.nodes.len() >= self.limits.znodes_max {
            return Err(RegistryError::QuotaExceeded { reason: format!("{} znodes", self.limits.znodes_max) });
        }
        self.check_total(path.as_str().len() + data.len(), 0)?;
        self.record_node(ctx, &parent_path);
        self.record_node(ctx, &path);
        let zxid = ctx.zxid;
        let parent = self.nodes.get_mut(&parent_path).expect("parent checked above");
        parent.children.insert(path.name().to_string());
        parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
        parent.stat.pzxid = zxid;
        parent.stat.num_children = parent.children.len() as u32;
        if mode.is_sequential() {
            parent.sequence_next += 1;
        }
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: ctx.now_ms,
            mtime: ctx.now_ms,
            ephemeral_owner: owner,
            data_length: data.len() as u32,
            ..Stat::default()
        };
        let acl = match acl {
            Some(acl) => acl::node_acl(acl.to_vec()),
            None if self.version() >= 2 && cluster_owned(&path) => acl::node_acl(acl::read_only()),
            None => None,
        };
        let node = Znode { data: data.to_vec(), stat, mode, ttl_ms, children: BTreeSet::new(), sequence_next: 0, acl };
        self.data_bytes += znode_bytes(&path, &node);
        if node.ttl_ms.is_some() {
            self.ttl_nodes.insert(path.clone());
        }
        self.nodes.insert(path.clone(), node);
        if owner != 0 {
            self.record_session(ctx, SessionId(owner));
            self.sessions.get_mut(&SessionId(owner)).expect("owner checked above").ephemerals.insert(path.clone());
        }
        ctx.changes.push(Change::NodeCreated { path: path.clone() });
        ctx.changes.push(Change::NodeChildrenChanged { path: parent_path });
        Ok((path, stat))
    }

    fn set(&mut self, ctx: &mut Ctx, path: &ZPath, data: &[u8], version: Option<u32>) -> Result<Stat, RegistryError> {
        self.check_data(data)?;
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        ctx.check(&node.acl, perms::WRITE, path)?;
        if let Some(expected) = version.filter(|&expected| expected != node.stat.version) {
            return Err(RegistryError::BadVersion { path: path.to_string(), expected, actual: node.stat.version });
        }
        self.check_total(data.len(), node.data.len())?;
        self.record_node(ctx, path);
        let node = self.nodes.get_mut(path).expect("checked above");
        self.data_bytes = (self.data_bytes + data.len()).saturating_sub(node.data.len());
        node.data = data.to_vec();
        node.stat.version = node.stat.version.wrapping_add(1);
        node.stat.mzxid = ctx.zxid;
        node.stat.mtime = ctx.now_ms;
        node.stat.data_length = data.len() as u32;
        ctx.changes.push(Change::NodeDataChanged { path: path.clone() });
        Ok(node.stat)
    }

    fn delete(&mut self, ctx: &mut Ctx, path: &ZPath, version: Option<u32>) -> Result<(), RegistryError> {
        let parent_path =
            path.parent().ok_or_else(|| RegistryError::BadArguments { reason: "the root cannot be deleted".into() })?;
        if self.version() >= 2 && protected(path) {
            return Err(RegistryError::BadArguments { reason: format!("{path} is ZooKeeper's own node") });
        }
        if let Some(parent) = self.nodes.get(&parent_path) {
            ctx.check(&parent.acl, perms::DELETE, &parent_path)?;
        }
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        if let Some(expected) = version.filter(|&expected| expected != node.stat.version) {
            return Err(RegistryError::BadVersion { path: path.to_string(), expected, actual: node.stat.version });
        }
        if !node.children.is_empty() {
            return Err(RegistryError::NotEmpty { path: path.to_string() });
        }
        self.remove_leaf_and_containers(ctx, path, parent_path);
        Ok(())
    }

    /// Removes a childless node, updating its parent and owner session.
    fn remove_leaf(&mut self, ctx: &mut Ctx, path: &ZPath, parent_path: &ZPath) {
        self.record_node(ctx, path);
        self.record_node(ctx, parent_path);
        let node = self.nodes.remove(path).expect("callers check the node exists");
        self.data_bytes = self.data_bytes.saturating_sub(znode_bytes(path, &node));
        if node.ttl_ms.is_some() {
            self.ttl_nodes.remove(path);
        }
        if node.stat.ephemeral_owner != 0 {
            let owner = SessionId(node.stat.ephemeral_owner);
            self.record_session(ctx, owner);
            if let Some(session) = self.sessions.get_mut(&owner) {
                session.ephemerals.remove(path);
            }
        }
        let parent = self.nodes.get_mut(parent_path).expect("a node's parent exists");
        parent.children.remove(path.name());
        parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
        parent.stat.pzxid = ctx.zxid;
        parent.stat.num_children = parent.children.len() as u32;
        ctx.changes.push(Change::NodeDeleted { path: path.clone() });
        ctx.changes.push(Change::NodeChildrenChanged { path: parent_path.clone() });
    }

    fn multi(&mut self, ctx: &mut Ctx, ops: &[MultiOp], claim: Claim<'_>) -> Applied {
        if ops.len() > self.limits.multi_ops_max {
            return Err(RegistryError::QuotaExceeded {
                reason: format!("more than {} ops in a multi", self.limits.multi_ops_max),
            });
        }
        ctx.undo = Some(Undo::default());
        let mut results = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let result = match op {
                MultiOp::Check { path, version } => match self.nodes.get(path) {
                    None => Err(no_node(path)),
                    Some(node) if ctx.check(&node.acl, perms::READ, path).is_err() => {
                        Err(RegistryError::Denied { path: path.to_string() })
                    }
                    Some(node) if node.stat.version != *version => Err(RegistryError::BadVersion {
                        path: path.to_string(),
                        expected: *version,
                        actual: node.stat.version,
                    }),
                    Some(_) => Ok(Outcome::Checked),
                },
                MultiOp::Create { path, data, mode } => {
                    self.create(ctx, path, data, *mode, claim, None).map(|(path, stat)| Outcome::Created { path, stat })
                }
                MultiOp::CreateChild { parent, name, data, mode } => self
                    .create_child(ctx, parent, name, data, *mode, claim, None)
                    .map(|(path, stat)| Outcome::Created { path, stat }),
                MultiOp::Set { path, data, version } => {
                    self.set(ctx, path, data, *version).map(|stat| Outcome::Set { stat })
                }
                MultiOp::Delete { path, version } => self.delete(ctx, path, *version).map(|()| Outcome::Deleted),
                MultiOp::CreateNode { parent, name, data, mode, acl } => {
                    let target = Target { parent, name, numbering: Numbering::ChildChanges };
                    self.create_in(ctx, target, data, *mode, claim, None, Some(acl))
                        .map(|(path, stat)| Outcome::Created { path, stat })
                }
            };
            match result {
                Ok(outcome) => results.push(outcome),
                Err(cause) => {
                    self.roll_back(ctx);
                    return Err(RegistryError::MultiFailed { index, cause: Box::new(cause) });
                }
            }
        }
        ctx.undo = None;
        Ok(Outcome::Multi { results })
    }

    fn set_acl(
        &mut self,
        ctx: &mut Ctx,
        path: &ZPath,
        acl: &[Acl],
        version: Option<u32>,
    ) -> Result<Stat, RegistryError> {
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        ctx.check(&node.acl, perms::ADMIN, path)?;
        check_acl(acl)?;
        if let Some(expected) = version.filter(|&expected| expected != node.stat.aversion) {
            return Err(RegistryError::BadVersion { path: path.to_string(), expected, actual: node.stat.aversion });
        }
        self.record_node(ctx, path);
        let node = self.nodes.get_mut(path).expect("checked above");
        node.acl = acl::node_acl(acl.to_vec());
        node.stat.aversion = node.stat.aversion.wrapping_add(1);
        Ok(node.stat)
    }

    fn roll_back(&mut self, ctx: &mut Ctx) {
        let undo = ctx.undo.take().expect("roll_back only inside a multi");
        for (path, prior) in undo.nodes {
            let now = self.nodes.get(&path).map_or(0, |node| znode_bytes(&path, node));
            let before = prior.as_ref().map_or(0, |node| znode_bytes(&path, node));
            self.data_bytes = (self.data_bytes + before).saturating_sub(now);
            self.ttl_nodes.remove(&path);
            if prior.as_ref().is_some_and(|node| node.ttl_ms.is_some()) {
                self.ttl_nodes.insert(path.clone());
            }
            match prior {
                Some(node) => self.nodes.insert(path, node),
                None => self.nodes.remove(&path),
            };
        }
        for (session, prior) in undo.sessions {
            match prior {
                Some(record) => self.sessions.insert(session, record),
                None => self.sessions.remove(&session),
            };
        }
        ctx.changes.clear();
    }

    /// Removes a childless node; a container parent left empty goes too, and so on upwards.
    fn remove_leaf_and_containers(&mut self, ctx: &mut Ctx, path: &ZPath, parent: ZPath) {
        self.remove_leaf(ctx, path, &parent);
        let mut current = parent;
        while let (Some(node), Some(grandparent)) = (self.nodes.get(&current), current.parent()) {
            if node.mode != CreateMode::Container || !node.children.is_empty() {
                break;
            }
            self.remove_leaf(ctx, &current, &grandparent);
            current = grandparent;
        }
    }

    fn expire_ttl(&mut self, ctx: &mut Ctx, paths: &[ZPath]) -> Outcome {
        let mut deleted = 0;
        for path in paths {
            let due = self.nodes.get(path).is_some_and(|node| Self::ttl_expired(node, ctx.now_ms));
            if let (true, Some(parent)) = (due, path.parent()) {
                self.remove_leaf_and_containers(ctx, path, parent);
                deleted += 1;
            }
        }
        Outcome::TtlExpired { deleted }
    }
}

#[cfg(test)]
mod tests;
