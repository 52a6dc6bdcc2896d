//! The registry's operations over this node's coordinator, in the contract's types: reads at either
//! consistency, create, set, delete, multi, sync, sessions and watches. The admin API's routes call
//! these (the ZooKeeper front end will too); errors are [`ApiError`]s.

use crate::api::registry::{
    hex, ChildrenBody, CreateBody, CreatedBody, DeleteBody, MultiBody, NodeBody, SessionBody, SetBody, StatBody,
};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::coordinator::read_registry;
use crate::consensus::request::OpenedSession;
use crate::consensus::{Consistency, Coordinator, CoordinatorError, ReadOp, ReadResult};
use crate::registry::acl::perms;
use crate::registry::{
    Acl, Caller, Change, CreateMode, MultiOp, RegistryError, SessionId, SessionSecret, Stat, WatchEvent, WatchKind,
    WatcherId, ZPath, STATE_VERSION_ACLS,
};
use crate::state::replicated::{NodeRecord, NODES_PATH};
use crate::state::{Command, Outcome};

/// Who a call is made for: `None` is the cluster itself (registration, revocations), whose commands
/// are not checked against ACLs; `Some` is a client, checked as that [`Caller`].
pub type Asker<'a> = Option<&'a Caller>;

/// Whether writes may carry a caller to check (`Command::As`) and ACLs: every voter's build applies
/// them (the state version is at least 2, or every voter's registration advertises it, which comes
/// first). Until then nothing has an ACL of its own and a caller's write goes as before, unchecked.
pub fn acls_ready(coordinator: &Coordinator) -> bool {
    cluster_applies(coordinator, STATE_VERSION_ACLS)
}

/// Whether every voter applies what state version `version` brings: the committed version is at least
/// `version`, or every voter's registration advertises it. A command only such builds decode is
/// proposed only then, so no replica of a cluster in a rolling upgrade is handed an entry it cannot
/// apply.
pub fn cluster_applies(coordinator: &Coordinator, version: u32) -> bool {
    if coordinator.read_local(|registry| registry.version()) >= version {
        return true;
    }
    let voters = coordinator.voters();
    !voters.is_empty()
        && coordinator.read_local(|registry| {
            voters.iter().all(|(node, _)| {
                ZPath::parse(&format!("{NODES_PATH}/{node}"))
                    .ok()
                    .and_then(|path| registry.get(&path).ok().map(|(data, _)| data.to_vec()))
                    .and_then(|data| serde_json::from_slice::<NodeRecord>(&data).ok())
                    .is_some_and(|record| record.state_version >= version)
            })
        })
}

/// `command` as `asker` sends it: checked against ACLs at apply for a client once ACLs are ready.
pub fn checked(coordinator: &Coordinator, asker: Asker<'_>, command: Command) -> Command {
    match asker {
        Some(caller) if acls_ready(coordinator) => Command::As { caller: caller.clone(), command: Box::new(command) },
        _ => command,
    }
}

/// Refuses with `NoAuth` unless `asker` may do any of `wanted` on `path` on this node's state (a
/// missing node passes: the read that follows answers `NoNode`). Reads are checked here, on the
/// serving node, after the read they guard (so an ACL tightened meanwhile refuses).
///
/// # Errors
/// `NoAuth`.
pub fn allowed(coordinator: &Coordinator, asker: Asker<'_>, path: &ZPath, wanted: u32) -> Result<(), ApiError> {
    let Some(caller) = asker else { return Ok(()) };
    let refused =
        coordinator.read_local(|registry| registry.exists(path).is_some() && !registry.may(caller, path, wanted));
    if refused {
        return Err(RegistryError::Denied { path: path.to_string() }.into());
    }
    Ok(())
}

/// A node's ACL and stat (`aversion` included), if `asker` may read it (ZooKeeper: READ or ADMIN).
///
/// # Errors
/// No node, no auth; unavailable for a linearizable read without a quorum.
pub async fn acl(
    coordinator: &Coordinator,
    asker: Asker<'_>,
    path: &ZPath,
    consistency: Consistency,
) -> Result<(Vec<Acl>, Stat), ApiError> {
    if consistency == Consistency::Linearizable {
        coordinator.sync().await?;
    }
    allowed(coordinator, asker, path, perms::READ | perms::ADMIN)?;
    Ok(coordinator.read_local(|registry| registry.acl(path))?)
}

/// Replaces a node's ACL (fixed up for `asker`: see `acl::fix_up`) if its ACL version is `version`
/// (when one is given).
///
/// # Errors
/// Invalid ACL, no node, no auth, bad version; unimplemented while a voter runs a build without ACLs.
pub async fn set_acl(
    coordinator: &Coordinator,
    asker: Asker<'_>,
    path: &ZPath,
    given: &[Acl],
    version: Option<u32>,
) -> Result<Stat, ApiError> {
    let acl = fix_up_acl(coordinator, asker, given)?;
    let command = checked(coordinator, asker, Command::SetAcl { path: path.clone(), acl, version });
    match write_at(coordinator, command).await? {
        (Outcome::Set { stat }, _) => Ok(with_aversion(coordinator, path, stat)),
        (other, _) => Err(ApiError::unexpected(other)),
    }
}

/// `stat` of `path` with its `aversion` from this node's state, which has applied the write that
/// returned it: a result relayed from the leader carries no `aversion` (the log's encoding of `Stat`
/// leaves it out, see `registry::Stat`).
pub fn with_aversion(coordinator: &Coordinator, path: &ZPath, mut stat: Stat) -> Stat {
    if let Some(local) = coordinator.read_local(|registry| registry.exists(path)) {
        if local.czxid == stat.czxid {
            stat.aversion = local.aversion;
        }
    }
    stat
}

/// The ACL to store for `given` as `asker` asks it (ZooKeeper's fixup); refused while a voter runs a
/// build without ACLs.
///
/// # Errors
/// Invalid ACL; unimplemented before ACLs are ready.
pub fn fix_up_acl(coordinator: &Coordinator, asker: Asker<'_>, given: &[Acl]) -> Result<Vec<Acl>, ApiError> {
    let anonymous = Caller::anonymous();
    let fixed = crate::registry::acl::fix_up(given, asker.unwrap_or(&anonymous))
        .map_err(|error| ApiError::from(RegistryError::InvalidAcl { reason: error.0 }))?;
    if !acls_ready(coordinator) && fixed != crate::registry::acl::open() {
        return Err(ApiError::new(
            ErrorCode::Unimplemented,
            "a voter of this cluster runs a build without ACLs: upgrade it to set an ACL",
        ));
    }
    Ok(fixed)
}

/// Session timeout when an open names none, in ms.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Parses a path at the edge.
///
/// # Errors
/// [`ErrorCode::InvalidPath`](crate::api::ErrorCode::InvalidPath) with ZooKeeper's rule that was broken.
pub fn parse_path(text: &str) -> Result<ZPath, ApiError> {
    Ok(ZPath::parse(text)?)
}

async fn read(coordinator: &Coordinator, op: ReadOp, consistency: Consistency) -> Result<ReadResult, ApiError> {
    Ok(coordinator.read(&op, consistency).await?)
}

/// A node's data and stat.
///
/// # Errors
/// No node; unavailable for a linearizable read without a quorum.
pub async fn get(
    coordinator: &Coordinator,
    asker: Asker<'_>,
    path: &ZPath,
    consistency: Consistency,
) -> Result<NodeBody, ApiError> {
    let result = read(coordinator, ReadOp::Get(path.clone()), consistency).await?;
    allowed(coordinator, asker, path, perms::READ)?;
    match result {
        ReadResult::Data { data, stat } => Ok(NodeBody {
            path: path.to_string(),
            data: String::from_utf8_lossy(&data).into_owned(),
            data_hex: hex(&data),
            stat,
        }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// A node's stat, `None` inside if it does not exist.
///
/// # Errors
/// Unavailable for a linearizable read without a quorum.
pub async fn stat(coordinator: &Coordinator, path: &ZPath, consistency: Consistency) -> Result<StatBody, ApiError> {
    match read(coordinator, ReadOp::Exists(path.clone()), consistency).await? {
        ReadResult::Exists(stat) => Ok(StatBody { path: path.to_string(), stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// A node's children, sorted, with its stat.
///
/// # Errors
/// No node; unavailable for a linearizable read without a quorum.
pub async fn children(
    coordinator: &Coordinator,
    asker: Asker<'_>,
    path: &ZPath,
    consistency: Consistency,
) -> Result<ChildrenBody, ApiError> {
    let result = read(coordinator, ReadOp::Children(path.clone()), consistency).await?;
    allowed(coordinator, asker, path, perms::READ)?;
    match result {
        ReadResult::Children { children, stat } => Ok(ChildrenBody { path: path.to_string(), children, stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Proposes a registry command.
///
/// # Errors
/// The coordinator's or the registry's refusal.
pub async fn write(coordinator: &Coordinator, command: Command) -> Result<Outcome, ApiError> {
    Ok(coordinator.write(command).await??)
}

/// Creates a node. An ephemeral node is owned by the body's session, whose secret must come with it.
///
/// # Errors
/// Invalid path, node exists, no node (parent), no auth, too large, quota, unavailable.
pub async fn create(coordinator: &Coordinator, asker: Asker<'_>, body: CreateBody) -> Result<CreatedBody, ApiError> {
    let (path, data) = (parse_path(&body.path)?, body.data.into_bytes());
    let acl = match &body.acl {
        Some(given) => Some(fix_up_acl(coordinator, asker, given)?),
        None => None,
    };
    let command = match (body.session.map(SessionId), body.secret) {
        // A legacy session (no secret) keeps the old command: the registry refuses it for any
        // session that has a secret.
        (Some(session), None) => {
            Command::Create { path, data, mode: body.mode, session: Some(session), ttl_ms: body.ttl_ms }
        }
        (session, secret) => {
            let owner = session.zip(secret);
            match (acl, path.parent()) {
                (Some(acl), Some(parent)) if acls_ready(coordinator) => Command::CreateNode {
                    parent,
                    name: path.name().to_string(),
                    data,
                    mode: body.mode,
                    owner,
                    ttl_ms: body.ttl_ms,
                    acl,
                },
                _ => create_child(&path, data, body.mode, owner, body.ttl_ms),
            }
        }
    };
    match write(coordinator, checked(coordinator, asker, command)).await? {
        Outcome::Created { path, stat } => Ok(CreatedBody { path: path.to_string(), stat }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// The command creating `path`: the child of its parent, numbered by ZooKeeper's rule if sequential
/// (the root, which has no parent, goes as an old create, which the registry refuses: it exists).
pub fn create_child(
    path: &ZPath,
    data: Vec<u8>,
    mode: CreateMode,
    owner: Option<(SessionId, SessionSecret)>,
    ttl_ms: Option<u64>,
) -> Command {
    match path.parent() {
        Some(parent) => Command::CreateChild { parent, name: path.name().to_string(), data, mode, owner, ttl_ms },
        None => Command::Create { path: path.clone(), data, mode, session: owner.map(|(session, _)| session), ttl_ms },
    }
}

/// A multi's create as the child of its parent, numbered by ZooKeeper's rule if sequential.
pub fn child_op(op: MultiOp) -> MultiOp {
    match op {
        MultiOp::Create { path, data, mode } => match path.parent() {
            Some(parent) => MultiOp::CreateChild { parent, name: path.name().to_string(), data, mode },
            None => MultiOp::Create { path, data, mode },
        },
        other => other,
    }
}

/// Replaces a node's data, if it is at the expected version (when one is given).
///
/// # Errors
/// Invalid path, no node, bad version, too large, unavailable.
pub async fn set(coordinator: &Coordinator, asker: Asker<'_>, body: SetBody) -> Result<StatBody, ApiError> {
    let path = parse_path(&body.path)?;
    let command = Command::Set { path: path.clone(), data: body.data.into_bytes(), version: body.version };
    match write(coordinator, checked(coordinator, asker, command)).await? {
        Outcome::Set { stat } => Ok(StatBody { path: path.to_string(), stat: Some(stat) }),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Deletes a childless node, if it is at the expected version (when one is given).
///
/// # Errors
/// Invalid path, no node, not empty, bad version, unavailable.
pub async fn delete(coordinator: &Coordinator, asker: Asker<'_>, body: &DeleteBody) -> Result<(), ApiError> {
    let command = Command::Delete { path: parse_path(&body.path)?, version: body.version };
    write(coordinator, checked(coordinator, asker, command)).await.map(|_| ())
}

/// All of a multi's ops or none.
///
/// # Errors
/// The first failing op's code; no auth for an ephemeral create without its session's secret.
pub async fn multi(coordinator: &Coordinator, asker: Asker<'_>, body: MultiBody) -> Result<Outcome, ApiError> {
    let ops = body.ops.into_iter().map(child_op).collect();
    let command = match (body.session.map(SessionId), body.secret) {
        (Some(session), Some(secret)) => Command::MultiOwned { ops, session, secret },
        (session, _) => Command::Multi { ops, session },
    };
    write(coordinator, checked(coordinator, asker, command)).await
}

/// Catches this node up with the leader; returns its applied index after.
///
/// # Errors
/// Unavailable without a quorum.
pub async fn sync(coordinator: &Coordinator) -> Result<u64, ApiError> {
    coordinator.sync().await?;
    Ok(coordinator.status().applied_index)
}

/// Opens a session; the answer carries its secret, which no other call returns.
///
/// # Errors
/// Bad arguments (timeout out of range), quota, unavailable.
pub async fn open_session(coordinator: &Coordinator, timeout_ms: Option<u64>) -> Result<SessionBody, ApiError> {
    let opened = coordinator.open_session(timeout_ms.unwrap_or(SESSION_TIMEOUT_MS_DEFAULT)).await?;
    Ok(SessionBody {
        session: Some(opened.session.0),
        timeout_ms: Some(opened.timeout_ms),
        alive: Some(true),
        secret: Some(opened.secret),
    })
}

/// The session and secret a keepalive or close names; a missing secret is refused here as the
/// registry would refuse it.
///
/// # Errors
/// Bad arguments without a session; no auth without a secret.
pub fn session_of(body: &SessionBody) -> Result<(SessionId, SessionSecret), ApiError> {
    let session = body.session.map(SessionId).ok_or_else(|| ApiError::bad_arguments("missing session"))?;
    let secret = body.secret.ok_or_else(|| ApiError::from(RegistryError::NoAuth { session }))?;
    Ok((session, secret))
}

/// Keeps a session alive; answers whether it still is.
///
/// # Errors
/// No auth for a wrong secret; unavailable.
pub async fn keepalive(coordinator: &Coordinator, body: &SessionBody) -> Result<SessionBody, ApiError> {
    let (session, secret) = session_of(body)?;
    let alive = coordinator.keepalive(session, secret).await?;
    Ok(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(alive), secret: None })
}

/// Closes a session, deleting its ephemerals in the same step.
///
/// # Errors
/// No auth for a wrong secret; unavailable.
pub async fn close_session(coordinator: &Coordinator, body: &SessionBody) -> Result<SessionBody, ApiError> {
    let (session, secret) = session_of(body)?;
    write(coordinator, Command::CloseSessionSecured { session, secret }).await?;
    Ok(SessionBody { session: Some(session.0), timeout_ms: None, alive: Some(false), secret: None })
}

/// An open watch: its events, and the watcher, removed when this is dropped however the caller
/// stops listening.
pub struct Watch {
    coordinator: Coordinator,
    watcher: WatcherId,
    /// The events, in order. A one-shot watch sends one.
    pub events: tokio::sync::mpsc::Receiver<WatchEvent>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.coordinator.watches().close(self.watcher);
    }
}

/// Sets a watch on `path` after catching up with the leader; changes after `since` (a zxid the caller
/// saw) are reported at once.
///
/// # Errors
/// Watch limit when this node's watch table is full; unavailable.
pub async fn watch(
    coordinator: &Coordinator,
    path: &ZPath,
    kind: WatchKind,
    since: Option<u64>,
) -> Result<Watch, ApiError> {
    let watch_error = |error: &dyn std::fmt::Display| ApiError::from(CoordinatorError::Watch(error.to_string()));
    let (watcher, events) = coordinator.watches().open().map_err(|error| watch_error(&error))?;
    let watch = Watch { coordinator: coordinator.clone(), watcher, events };
    coordinator.sync().await?;
    coordinator
        .read_local(|registry| coordinator.watches().register(registry, watcher, path, kind, since))
        .map_err(|error| watch_error(&error))?;
    Ok(watch)
}

/// Proposes a registry command and waits until this node has applied it, so the caller's next read
/// here sees it and its watch events are already queued; answers with the command's zxid.
///
/// # Errors
/// The coordinator's or the registry's refusal; a failed multi names its failing op.
pub async fn write_at(coordinator: &Coordinator, command: Command) -> Result<(Outcome, u64), ApiError> {
    let (applied, zxid) = coordinator.write_at(command).await?;
    Ok((applied?, zxid))
}

/// The zxid of the newest change a read on this node sees.
pub fn applied_zxid(coordinator: &Coordinator) -> u64 {
    coordinator.applied_zxid()
}

/// A watch to set with a read, in the same step, so no change between the two is missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchWith {
    /// The watcher (the client connection's).
    pub watcher: WatcherId,
    /// What to watch.
    pub kind: WatchKind,
    /// Whether the watch is set when the node does not exist (ZooKeeper's `exists` does; `getData`
    /// and `getChildren` do not).
    pub if_missing: bool,
}

fn watch_error(error: &dyn std::fmt::Display) -> ApiError {
    ApiError::from(CoordinatorError::Watch(error.to_string()))
}

/// Reads on this node (ZooKeeper's consistency: what this node has applied) and, with `watch`, sets
/// a watch in the same step. Answers the read's result and the zxid it saw.
///
/// # Errors
/// No node (the watch is still set if `if_missing`); watch limit.
pub fn read_watched(
    coordinator: &Coordinator,
    op: &ReadOp,
    watch: Option<WatchWith>,
) -> Result<(ReadResult, u64), ApiError> {
    let path = match op {
        ReadOp::Get(path) | ReadOp::Exists(path) | ReadOp::Children(path) => path,
    };
    coordinator.read_local(|registry| {
        let result = read_registry(registry, op);
        let found = !matches!(result, Err(_) | Ok(ReadResult::Exists(None)));
        if let Some(watch) = watch.filter(|watch| found || watch.if_missing) {
            coordinator
                .watches()
                .register(registry, watch.watcher, path, watch.kind, None)
                .map_err(|error| watch_error(&error))?;
        }
        Ok((result?, registry.last_zxid()))
    })
}

/// How many nodes lie below `path`, at any depth.
///
/// # Errors
/// No node.
pub fn descendant_count(coordinator: &Coordinator, path: &ZPath) -> Result<usize, ApiError> {
    Ok(coordinator.read_local(|registry| registry.descendant_count(path))?)
}

/// The ephemeral nodes `session` owns whose path starts with `prefix` (as text, ZooKeeper's rule).
pub fn session_ephemerals(coordinator: &Coordinator, session: SessionId, prefix: &str) -> Vec<ZPath> {
    let mut owned = coordinator.read_local(|registry| registry.session_ephemerals(session));
    owned.retain(|path| path.as_str().starts_with(prefix));
    owned
}

/// Opens a watcher: a client connection's one stream of watch events.
///
/// # Errors
/// Watch limit when the node has too many watchers.
pub fn open_watcher(coordinator: &Coordinator) -> Result<Watch, ApiError> {
    let (watcher, events) = coordinator.watches().open().map_err(|error| watch_error(&error))?;
    Ok(Watch { coordinator: coordinator.clone(), watcher, events })
}

impl Watch {
    /// The watcher's id, to set watches with.
    pub fn watcher(&self) -> WatcherId {
        self.watcher
    }

    /// Sets a watch of `kind` on `path`.
    ///
    /// # Errors
    /// Watch limit.
    pub fn add(&self, path: &ZPath, kind: WatchKind) -> Result<(), ApiError> {
        self.coordinator
            .read_local(|registry| self.coordinator.watches().register(registry, self.watcher, path, kind, None))
            .map_err(|error| watch_error(&error))
    }

    /// Removes this watcher's watches of the given kinds on `path`; answers whether any was held.
    pub fn remove(&self, path: &ZPath, kinds: &[WatchKind]) -> bool {
        let hub = self.coordinator.watches();
        kinds.iter().fold(false, |removed, &kind| hub.remove(self.watcher, path, kind) | removed)
    }

    /// Whether this watcher holds a watch of any of the given kinds on `path`.
    pub fn holds(&self, path: &ZPath, kinds: &[WatchKind]) -> bool {
        let hub = self.coordinator.watches();
        kinds.iter().any(|&kind| hub.contains(self.watcher, path, kind))
    }

    /// Sets watches again after a reconnect (ZooKeeper's `setWatches`), in one step against this
    /// node's state: for each watch whose event the client missed since `since` (a zxid it saw),
    /// the event is queued at once instead (ZooKeeper's rules) and the one-shot watch is not set.
    /// Answers the zxid read.
    ///
    /// # Errors
    /// Watch limit; watch limit too if the watcher was cut off for falling behind.
    pub fn restore(&self, since: u64, watches: &[(ZPath, RestoredWatch)]) -> Result<u64, ApiError> {
        let hub = self.coordinator.watches();
        self.coordinator.read_local(|registry| {
            let zxid = registry.last_zxid();
            for (path, watch) in watches {
                let stat = registry.exists(path);
                let event = |change| WatchEvent { zxid, change };
                let path = path.clone();
                let (kind, due) = match watch {
                    RestoredWatch::Data => (
                        WatchKind::Data,
                        match stat {
                            None => Some(Change::NodeDeleted { path: path.clone() }),
                            Some(stat) if stat.mzxid > since => Some(Change::NodeDataChanged { path: path.clone() }),
                            Some(_) => None,
                        },
                    ),
                    RestoredWatch::Exist => (WatchKind::Data, stat.map(|_| Change::NodeCreated { path: path.clone() })),
                    RestoredWatch::Child => (
                        WatchKind::Child,
                        match stat {
                            None => Some(Change::NodeDeleted { path: path.clone() }),
                            Some(stat) if stat.pzxid > since => {
                                Some(Change::NodeChildrenChanged { path: path.clone() })
                            }
                            Some(_) => None,
                        },
                    ),
                    RestoredWatch::Persistent => (WatchKind::Persistent, None),
                    RestoredWatch::PersistentRecursive => (WatchKind::PersistentRecursive, None),
                };
                match due {
                    Some(change) => hub.deliver(self.watcher, event(change)),
                    None => hub.register(registry, self.watcher, &path, kind, None),
                }
                .map_err(|error| watch_error(&error))?;
            }
            Ok(zxid)
        })
    }
}

/// A watch a client sets again after reconnecting, as ZooKeeper's `setWatches` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoredWatch {
    /// From `getData`: fires on a data change or deletion.
    Data,
    /// From `exists` on a missing node: fires on its creation.
    Exist,
    /// From `getChildren`.
    Child,
    /// From `addWatch` in persistent mode.
    Persistent,
    /// From `addWatch` in persistent-recursive mode.
    PersistentRecursive,
}

/// Opens a session whose timeout the registry clamps to the cluster's bounds; the answer carries
/// the secret.
///
/// # Errors
/// Quota, unavailable.
pub async fn open_session_for(coordinator: &Coordinator, timeout_ms: u64) -> Result<OpenedSession, ApiError> {
    Ok(coordinator.open_session(timeout_ms).await?)
}

/// Resumes `session` on this node: checks the secret against this node's state (caught up with the
/// leader first if the session is unknown here), then tells the leader the client is alive. Answers
/// the session's timeout.
///
/// # Errors
/// Session expired (not open, or the leader says it ended); no auth for a wrong secret; unavailable.
pub async fn resume_session(
    coordinator: &Coordinator,
    session: SessionId,
    secret: SessionSecret,
) -> Result<u64, ApiError> {
    let check = || {
        coordinator.read_local(|registry| {
            registry.check_session_secret(session, &secret)?;
            registry.session_timeout_ms(session).ok_or(RegistryError::SessionExpired { session })
        })
    };
    let timeout_ms = match check() {
        // This node may not have applied the session's opening yet (a client that saw no reply since
        // its handshake brings no zxid to refuse this node with): catch up, then ask again.
        Err(RegistryError::SessionExpired { .. }) => {
            coordinator.sync().await?;
            check()?
        }
        checked => checked?,
    };
    touch_session(coordinator, session, secret).await?;
    Ok(timeout_ms)
}

/// Tells the leader `session`'s client is alive.
///
/// # Errors
/// Session expired if the leader says it is not open; no auth; unavailable.
pub async fn touch_session(
    coordinator: &Coordinator,
    session: SessionId,
    secret: SessionSecret,
) -> Result<(), ApiError> {
    match coordinator.keepalive(session, secret).await? {
        true => Ok(()),
        false => Err(RegistryError::SessionExpired { session }.into()),
    }
}

/// The cluster's bounds on session timeouts, in ms.
pub fn session_timeout_bounds(coordinator: &Coordinator) -> (u64, u64) {
    let limits = coordinator.read_local(|registry| registry.limits());
    (limits.session_timeout_ms_min, limits.session_timeout_ms_max)
}

/// What this node holds and is, for a front end's status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySummary {
    /// Whether this node leads the group now.
    pub leader: bool,
    /// The zxid of the newest change applied here.
    pub zxid: u64,
    /// Znodes, the root included.
    pub znodes: usize,
    /// Open sessions.
    pub sessions: usize,
    /// Bytes of data and paths held.
    pub data_bytes: usize,
    /// Watches set on this node.
    pub watches: usize,
    /// Watchers (client connections and watch streams) on this node.
    pub watchers: usize,
}

/// This node's registry at a glance.
pub fn summary(coordinator: &Coordinator) -> RegistrySummary {
    let (znodes, sessions, data_bytes) =
        coordinator.read_local(|registry| (registry.znode_count(), registry.session_count(), registry.data_bytes()));
    RegistrySummary {
        leader: coordinator.is_leader(),
        zxid: coordinator.applied_zxid(),
        znodes,
        sessions,
        data_bytes,
        watches: coordinator.watches().watch_count(),
        watchers: coordinator.watches().watcher_count(),
    }
}
