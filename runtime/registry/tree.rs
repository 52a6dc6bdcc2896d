//! The znode tree: the registry's deterministic state machine.
//!
//! It owns nodes, sessions and the last applied zxid, and nothing else: no I/O, no clock (time comes
//! in each [`Proposal`]), no watch delivery (it reports [`Change`]s; `watch.rs` turns them into
//! events). Every replica applying the same log reaches the same tree.
//!
//! Invariant: a failed command changes nothing, and a multi applies all its ops or none.
//! Invariant: an ephemeral node's owner session exists and lists it; a session lists only its ephemerals.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{
    Applied, Change, Command, CreateMode, MultiOp, Outcome, Proposal, RegistryError, SessionId, Stat,
};
use super::path::ZPath;

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
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            data_bytes_max: 1 << 20,
            znodes_max: 10_000_000,
            sessions_max: 100_000,
            multi_ops_max: 1_000,
            session_timeout_ms_min: 600,
            session_timeout_ms_max: 60_000,
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
}

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
}

/// Prior values of what a multi touched, to roll it back.
#[derive(Default)]
struct Undo {
    nodes: BTreeMap<ZPath, Option<Znode>>,
    sessions: BTreeMap<SessionId, Option<SessionRecord>>,
}

/// Per-command context: the zxid and time being applied, changes so far, and the undo log of a multi.
struct Ctx {
    zxid: u64,
    now_ms: u64,
    changes: Vec<Change>,
    undo: Option<Undo>,
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
        };
        Registry { limits, nodes: BTreeMap::from([(ZPath::root(), root)]), sessions: BTreeMap::new(), last_zxid: 0 }
    }

    /// The limits in force.
    pub fn limits(&self) -> RegistryLimits {
        self.limits
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

    /// TTL nodes due for deletion at `now_ms`, for the leader to propose (re-checked at apply).
    pub fn ttl_candidates(&self, now_ms: u64, max: usize) -> Vec<ZPath> {
        self.nodes
            .iter()
            .filter(|(_, node)| Self::ttl_expired(node, now_ms))
            .map(|(path, _)| path.clone())
            .take(max)
            .collect()
    }

    fn ttl_expired(node: &Znode, now_ms: u64) -> bool {
        node.ttl_ms.is_some_and(|ttl| node.children.is_empty() && now_ms.saturating_sub(node.stat.mtime) >= ttl)
    }

    /// Applies the proposal at `zxid`, returning its result and the changes watchers should hear of.
    ///
    /// # Panics
    /// If `zxid` does not increase: the log feeds each entry once, in order.
    pub fn apply(&mut self, zxid: u64, proposal: &Proposal) -> (Applied, Vec<Change>) {
        assert!(zxid > self.last_zxid, "zxid {zxid} applied after {}", self.last_zxid);
        self.last_zxid = zxid;
        let mut ctx = Ctx { zxid, now_ms: proposal.now_ms, changes: Vec::new(), undo: None };
        let result = match &proposal.command {
            Command::Create { path, data, mode, session, ttl_ms } => self
                .create(&mut ctx, path, data, *mode, *session, *ttl_ms)
                .map(|(path, stat)| Outcome::Created { path, stat }),
            Command::Set { path, data, version } => {
                self.set(&mut ctx, path, data, *version).map(|stat| Outcome::Set { stat })
            }
            Command::Delete { path, version } => self.delete(&mut ctx, path, *version).map(|()| Outcome::Deleted),
            Command::Multi { ops, session } => self.multi(&mut ctx, ops, *session),
            Command::OpenSession { timeout_ms } => self.open_session(zxid, *timeout_ms),
            Command::CloseSession { session } => {
                if self.sessions.contains_key(session) {
                    Ok(self.end_sessions(&mut ctx, &[*session]))
                } else {
                    Err(RegistryError::SessionExpired { session: *session })
                }
            }
            Command::ExpireSessions { sessions } => Ok(self.end_sessions(&mut ctx, sessions)),
            Command::ExpireTtl { paths } => Ok(self.expire_ttl(&mut ctx, paths)),
            // The task table applies these (`grid::replicated`); the registry only keeps the zxid.
            Command::Noop | Command::Grid(_) => Ok(Outcome::Nothing),
        };
        (result, ctx.changes)
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

    fn create(
        &mut self,
        ctx: &mut Ctx,
        path: &ZPath,
        data: &[u8],
        mode: CreateMode,
        session: Option<SessionId>,
        ttl_ms: Option<u64>,
    ) -> Result<(ZPath, Stat), RegistryError> {
        self.check_data(data)?;
        let parent_path = path.parent().ok_or_else(|| RegistryError::NodeExists { path: "/".into() })?;
        if ttl_ms.is_some() && !matches!(mode, CreateMode::Persistent | CreateMode::PersistentSequential) {
            return Err(RegistryError::BadArguments { reason: "a TTL needs a persistent mode".into() });
        }
        if ttl_ms == Some(0) {
            return Err(RegistryError::BadArguments { reason: "a TTL must be positive".into() });
        }
        let owner = match (mode.is_ephemeral(), session) {
            (true, Some(session)) if self.sessions.contains_key(&session) => session.0,
            (true, Some(session)) => return Err(RegistryError::SessionExpired { session }),
            (true, None) => {
                return Err(RegistryError::BadArguments { reason: "an ephemeral node needs a session".into() })
            }
            (false, _) => 0,
        };
        let parent = self.nodes.get(&parent_path).ok_or_else(|| no_node(&parent_path))?;
        if parent.mode.is_ephemeral() {
            return Err(RegistryError::NoChildrenForEphemerals { path: parent_path.to_string() });
        }
        let path = if mode.is_sequential() {
            if parent.sequence_next > SEQUENCE_MAX {
                return Err(RegistryError::QuotaExceeded { reason: format!("sequence of {parent_path} exhausted") });
            }
            path.with_suffix(&format!("{:010}", parent.sequence_next))?
        } else {
            path.clone()
        };
        if self.nodes.contains_key(&path) {
            return Err(RegistryError::NodeExists { path: path.to_string() });
        }
        if self.nodes.len() >= self.limits.znodes_max {
            return Err(RegistryError::QuotaExceeded { reason: format!("{} znodes", self.limits.znodes_max) });
        }
        self.record_node(ctx, &parent_path);
        self.record_node(ctx, &path);
        let zxid = ctx.zxid;
        let parent = self.nodes.get_mut(&parent_path).expect("parent checked above");
        parent.children.insert(path.name().to_string());
        parent.stat.cversion += 1;
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
        let node = Znode { data: data.to_vec(), stat, mode, ttl_ms, children: BTreeSet::new(), sequence_next: 0 };
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
        if let Some(expected) = version.filter(|&expected| expected != node.stat.version) {
            return Err(RegistryError::BadVersion { path: path.to_string(), expected, actual: node.stat.version });
        }
        self.record_node(ctx, path);
        let node = self.nodes.get_mut(path).expect("checked above");
        node.data = data.to_vec();
        node.stat.version += 1;
        node.stat.mzxid = ctx.zxid;
        node.stat.mtime = ctx.now_ms;
        node.stat.data_length = data.len() as u32;
        ctx.changes.push(Change::NodeDataChanged { path: path.clone() });
        Ok(node.stat)
    }

    fn delete(&mut self, ctx: &mut Ctx, path: &ZPath, version: Option<u32>) -> Result<(), RegistryError> {
        let parent_path =
            path.parent().ok_or_else(|| RegistryError::BadArguments { reason: "the root cannot be deleted".into() })?;
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
        if node.stat.ephemeral_owner != 0 {
            let owner = SessionId(node.stat.ephemeral_owner);
            self.record_session(ctx, owner);
            if let Some(session) = self.sessions.get_mut(&owner) {
                session.ephemerals.remove(path);
            }
        }
        let parent = self.nodes.get_mut(parent_path).expect("a node's parent exists");
        parent.children.remove(path.name());
        parent.stat.cversion += 1;
        parent.stat.pzxid = ctx.zxid;
        parent.stat.num_children = parent.children.len() as u32;
        ctx.changes.push(Change::NodeDeleted { path: path.clone() });
        ctx.changes.push(Change::NodeChildrenChanged { path: parent_path.clone() });
    }

    fn multi(&mut self, ctx: &mut Ctx, ops: &[MultiOp], session: Option<SessionId>) -> Applied {
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
                    Some(node) if node.stat.version != *version => Err(RegistryError::BadVersion {
                        path: path.to_string(),
                        expected: *version,
                        actual: node.stat.version,
                    }),
                    Some(_) => Ok(Outcome::Checked),
                },
                MultiOp::Create { path, data, mode } => self
                    .create(ctx, path, data, *mode, session, None)
                    .map(|(path, stat)| Outcome::Created { path, stat }),
                MultiOp::Set { path, data, version } => {
                    self.set(ctx, path, data, *version).map(|stat| Outcome::Set { stat })
                }
                MultiOp::Delete { path, version } => self.delete(ctx, path, *version).map(|()| Outcome::Deleted),
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

    fn roll_back(&mut self, ctx: &mut Ctx) {
        let undo = ctx.undo.take().expect("roll_back only inside a multi");
        for (path, prior) in undo.nodes {
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

    fn open_session(&mut self, zxid: u64, timeout_ms: u64) -> Applied {
        if self.sessions.len() >= self.limits.sessions_max {
            return Err(RegistryError::QuotaExceeded { reason: format!("{} sessions", self.limits.sessions_max) });
        }
        let timeout_ms = timeout_ms.clamp(self.limits.session_timeout_ms_min, self.limits.session_timeout_ms_max);
        // The zxid is unique and the same on every replica: a deterministic session id.
        let session = SessionId(zxid);
        self.sessions.insert(session, SessionRecord { timeout_ms, ephemerals: BTreeSet::new() });
        Ok(Outcome::SessionOpened { session, timeout_ms })
    }

    fn end_sessions(&mut self, ctx: &mut Ctx, sessions: &[SessionId]) -> Outcome {
        let (mut ended, mut ephemerals) = (0, 0);
        for session in sessions {
            let Some(record) = self.sessions.remove(session) else { continue };
            ended += 1;
            for path in record.ephemerals {
                // Ephemerals never have children, so each is a leaf.
                if let Some(parent) = path.parent() {
                    if self.nodes.contains_key(&path) {
                        self.remove_leaf_and_containers(ctx, &path, parent);
                        ephemerals += 1;
                    }
                }
            }
        }
        Outcome::SessionsEnded { sessions: ended, ephemerals }
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
mod tests {
    use super::*;

    fn p(text: &str) -> ZPath {
        ZPath::parse(text).expect("valid")
    }

    struct Fixture {
        registry: Registry,
        zxid: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture { registry: Registry::new(RegistryLimits::default()), zxid: 0 }
        }
        fn run(&mut self, command: Command) -> Applied {
            self.run_at(1_000 + self.zxid, command).0
        }
        fn run_at(&mut self, now_ms: u64, command: Command) -> (Applied, Vec<Change>) {
            self.zxid += 1;
            self.registry.apply(self.zxid, &Proposal { now_ms, command })
        }
        fn create(&mut self, path: &str, mode: CreateMode, session: Option<SessionId>) -> Applied {
            self.run(Command::Create { path: p(path), data: b"d".to_vec(), mode, session, ttl_ms: None })
        }
        fn session(&mut self) -> SessionId {
            match self.run(Command::OpenSession { timeout_ms: 5_000 }) {
                Ok(Outcome::SessionOpened { session, .. }) => session,
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn create_sets_stat_and_updates_the_parent() {
        let mut f = Fixture::new();
        let Ok(Outcome::Created { path, stat }) = f.create("/a", CreateMode::Persistent, None) else { panic!() };
        assert_eq!(path, p("/a"));
        assert_eq!((stat.czxid, stat.mzxid, stat.pzxid, stat.version, stat.data_length), (1, 1, 1, 0, 1));
        let (children, root) = f.registry.children(&ZPath::root()).expect("root");
        assert_eq!(children, vec!["a".to_string()]);
        assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 1, 1));
        assert_eq!(f.create("/a", CreateMode::Persistent, None).unwrap_err().name(), "node exists");
        assert_eq!(
            f.create("/x/y", CreateMode::Persistent, None).unwrap_err(),
            RegistryError::NoNode { path: "/x".into() }
        );
    }

    #[test]
    fn set_and_delete_check_versions() {
        let mut f = Fixture::new();
        f.create("/a", CreateMode::Persistent, None).expect("create");
        let bad = f.run(Command::Set { path: p("/a"), data: vec![1], version: Some(3) });
        assert_eq!(bad.unwrap_err().name(), "bad version");
        let Ok(Outcome::Set { stat }) = f.run(Command::Set { path: p("/a"), data: vec![1, 2], version: Some(0) })
        else {
            panic!()
        };
        assert_eq!((stat.version, stat.mzxid, stat.czxid, stat.data_length), (1, 3, 1, 2));
        f.create("/a/b", CreateMode::Persistent, None).expect("child");
        assert_eq!(f.run(Command::Delete { path: p("/a"), version: None }).unwrap_err().name(), "not empty");
        assert_eq!(f.run(Command::Delete { path: p("/a/b"), version: Some(1) }).unwrap_err().name(), "bad version");
        f.run(Command::Delete { path: p("/a/b"), version: Some(0) }).expect("delete");
        assert_eq!(f.registry.get(&p("/a/b")).unwrap_err().name(), "no node");
        let big = vec![0; RegistryLimits::default().data_bytes_max + 1];
        assert_eq!(f.run(Command::Set { path: p("/a"), data: big, version: None }).unwrap_err().name(), "too large");
    }

    #[test]
    fn sequential_names_count_per_parent() {
        let mut f = Fixture::new();
        f.create("/q", CreateMode::Persistent, None).expect("parent");
        let names: Vec<String> = (0..3)
            .map(|_| match f.create("/q/item-", CreateMode::PersistentSequential, None) {
                Ok(Outcome::Created { path, .. }) => path.name().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["item-0000000000", "item-0000000001", "item-0000000002"]);
        f.create("/r", CreateMode::Persistent, None).expect("other parent");
        let Ok(Outcome::Created { path, .. }) = f.create("/r/x", CreateMode::PersistentSequential, None) else {
            panic!()
        };
        assert_eq!(path.as_str(), "/r/x0000000000");
    }

    #[test]
    fn ephemerals_belong_to_sessions_and_go_with_them() {
        let mut f = Fixture::new();
        let session = f.session();
        assert_eq!(f.create("/e", CreateMode::Ephemeral, None).unwrap_err().name(), "bad arguments");
        assert_eq!(f.create("/e", CreateMode::Ephemeral, Some(SessionId(999))).unwrap_err().name(), "session expired");
        let Ok(Outcome::Created { stat, .. }) = f.create("/e", CreateMode::Ephemeral, Some(session)) else { panic!() };
        assert_eq!(stat.ephemeral_owner, session.0);
        f.create("/e2", CreateMode::EphemeralSequential, Some(session)).expect("sequential ephemeral");
        assert_eq!(
            f.create("/e/child", CreateMode::Persistent, None).unwrap_err().name(),
            "no children for ephemerals"
        );
        let (result, changes) = f.run_at(2_000, Command::ExpireSessions { sessions: vec![session] });
        assert_eq!(result, Ok(Outcome::SessionsEnded { sessions: 1, ephemerals: 2 }));
        assert!(changes.contains(&Change::NodeDeleted { path: p("/e") }));
        assert!(f.registry.exists(&p("/e")).is_none() && !f.registry.has_session(session));
        assert_eq!(f.run(Command::CloseSession { session }).unwrap_err().name(), "session expired");
    }

    #[test]
    fn a_container_goes_with_its_last_child() {
        let mut f = Fixture::new();
        f.create("/c", CreateMode::Container, None).expect("container");
        f.create("/c/inner", CreateMode::Container, None).expect("nested container");
        f.create("/c/inner/x", CreateMode::Persistent, None).expect("child");
        f.run(Command::Delete { path: p("/c/inner/x"), version: None }).expect("delete");
        assert!(f.registry.exists(&p("/c/inner")).is_none() && f.registry.exists(&p("/c")).is_none());
    }

    #[test]
    fn ttl_nodes_expire_only_when_idle_and_childless() {
        let mut f = Fixture::new();
        let create = Command::Create {
            path: p("/t"),
            data: vec![],
            mode: CreateMode::Persistent,
            session: None,
            ttl_ms: Some(100),
        };
        f.run_at(1_000, create).0.expect("ttl node");
        assert_eq!(f.registry.ttl_candidates(1_099, 10), Vec::<ZPath>::new());
        assert_eq!(f.registry.ttl_candidates(1_100, 10), vec![p("/t")]);
        // Touched since: the apply-time re-check keeps it.
        f.run_at(1_090, Command::Set { path: p("/t"), data: vec![1], version: None }).0.expect("set");
        assert_eq!(
            f.run_at(1_150, Command::ExpireTtl { paths: vec![p("/t")] }).0,
            Ok(Outcome::TtlExpired { deleted: 0 })
        );
        assert_eq!(
            f.run_at(1_200, Command::ExpireTtl { paths: vec![p("/t")] }).0,
            Ok(Outcome::TtlExpired { deleted: 1 })
        );
        let bad = Command::Create {
            path: p("/u"),
            data: vec![],
            mode: CreateMode::Ephemeral,
            session: None,
            ttl_ms: Some(5),
        };
        assert_eq!(f.run(bad).unwrap_err().name(), "bad arguments");
    }

    #[test]
    fn a_failed_multi_changes_nothing() {
        let mut f = Fixture::new();
        f.create("/a", CreateMode::Persistent, None).expect("a");
        let before = f.registry.clone();
        let ops = vec![
            MultiOp::Create { path: p("/b"), data: vec![], mode: CreateMode::Persistent },
            MultiOp::Set { path: p("/a"), data: vec![9], version: None },
            MultiOp::Delete { path: p("/a"), version: None },
            MultiOp::Check { path: p("/b"), version: 7 },
        ];
        let (result, changes) = f.run_at(5_000, Command::Multi { ops, session: None });
        assert_eq!(result.clone().unwrap_err().name(), "bad version");
        assert!(matches!(result, Err(RegistryError::MultiFailed { index: 3, .. })));
        assert!(changes.is_empty());
        let mut expected = before;
        expected.last_zxid = f.registry.last_zxid;
        assert_eq!(f.registry, expected, "rolled back exactly");
        let ops = vec![
            MultiOp::Check { path: p("/a"), version: 0 },
            MultiOp::Create { path: p("/b"), data: vec![], mode: CreateMode::Persistent },
        ];
        let Ok(Outcome::Multi { results }) = f.run(Command::Multi { ops, session: None }) else { panic!() };
        assert_eq!(results.len(), 2);
    }

    #[test]
    fn session_timeouts_are_clamped_and_ids_are_zxids() {
        let mut f = Fixture::new();
        let limits = RegistryLimits::default();
        let Ok(Outcome::SessionOpened { session, timeout_ms }) = f.run(Command::OpenSession { timeout_ms: 1 }) else {
            panic!()
        };
        assert_eq!((session, timeout_ms), (SessionId(1), limits.session_timeout_ms_min));
        let Ok(Outcome::SessionOpened { timeout_ms, .. }) = f.run(Command::OpenSession { timeout_ms: u64::MAX }) else {
            panic!()
        };
        assert_eq!(timeout_ms, limits.session_timeout_ms_max);
    }

    #[test]
    #[should_panic(expected = "applied after")]
    fn zxids_must_increase() {
        let mut registry = Registry::new(RegistryLimits::default());
        let noop = Proposal { now_ms: 0, command: Command::Noop };
        let _ = registry.apply(2, &noop);
        let _ = registry.apply(2, &noop);
    }
}
