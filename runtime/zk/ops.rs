//! Each ZooKeeper operation, answered through the service layer: the jute request in, the jute
//! response or a ZooKeeper error code out. Decides nothing of its own beyond ZooKeeper's argument
//! rules (flags, versions, ACLs, watch types); the registry decides everything else.

use crate::api::{ApiError, ErrorCode};
use crate::consensus::{Coordinator, ReadOp, ReadResult};
use crate::registry::acl::perms;
use crate::registry::{
    Acl as RegistryAcl, Caller, CreateMode, MultiOp as RegistryOp, Outcome, SessionId, SessionSecret, WatchKind, ZPath,
};
use crate::service::registry::{self as service, RestoredWatch, Watch, WatchWith};
use crate::state::Command;

use super::codes::{answer, Answer};
use super::proto::{
    self, add_watch_mode, code, create_flags, op, watcher_type, Acl, MultiOp, MultiReadOp, MultiReadResult,
    MultiResult, Request, Response,
};

/// What a request earned: a reply (a body, or an error code with none) at a zxid, or the end of the
/// connection.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this body.
    Body(Response),
    /// Answer with this ZooKeeper error code.
    Error(i32),
    /// Close the connection without answering.
    Close,
}

/// The session and watcher a connection serves requests for.
pub struct Context<'a> {
    /// This node's coordinator.
    pub coordinator: &'a Coordinator,
    /// The connection's session.
    pub session: SessionId,
    /// Its secret (ZooKeeper's session password).
    pub secret: SessionSecret,
    /// The connection's watcher.
    pub watch: &'a Watch,
    /// The identities the connection authenticated as, `(scheme, id)`, for `whoAmI`.
    pub identities: &'a [(String, String)],
    /// The connection authenticated as the super user (`addauth digest NAME:TOKEN` with an operator
    /// token, or `super:` with the legacy admin token).
    pub superuser: bool,
    /// Who the connection is to the registry's ACLs: its address, its `addauth` identities, and
    /// whether it is the super user.
    pub caller: &'a Caller,
    /// Whether createTTL is served (ZooKeeper's `extendedTypesEnabled`).
    pub extended_types: bool,
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Reply {
        match answer(error.code) {
            Answer::Code(value) => Reply::Error(value),
            Answer::Close => Reply::Close,
        }
    }
}

fn path(text: &str) -> Result<ZPath, ApiError> {
    service::parse_path(text)
}

/// The parent and name a create's path names. A sequential create's path may end in `/`: the child
/// is then named by its number alone (ZooKeeper checks the path with the number appended).
fn child_of(text: &str, mode: CreateMode) -> Result<(ZPath, String), ApiError> {
    if mode.is_sequential() {
        if let Some(parent) = text.strip_suffix('/') {
            let parent = if parent.is_empty() { ZPath::root() } else { path(parent)? };
            return Ok((parent, String::new()));
        }
    }
    let node = path(text)?;
    let parent = node.parent().ok_or_else(|| ApiError::new(ErrorCode::NodeExists, "node exists: /"))?;
    Ok((parent, node.name().to_string()))
}

/// A version from the wire: -1 is "any".
fn version(value: i32) -> Option<u32> {
    u32::try_from(value).ok()
}

fn bad_version(text: &str) -> ApiError {
    ApiError::new(ErrorCode::BadVersion, format!("{text}: no node has a negative version"))
}

/// Longest TTL ZooKeeper accepts: its TTL nodes keep the TTL in the 40 low bits of ephemeralOwner.
const TTL_MS_MAX: i64 = (1 << 40) - 1;

/// The registry's mode for a create's flags and TTL, or the ZooKeeper error.
fn create_mode(flags: i32, ttl_ms: Option<i64>, op_code: i32) -> Result<(CreateMode, Option<u64>), ApiError> {
    let mode =
        create_flags::mode(flags).ok_or_else(|| ApiError::bad_arguments(format!("unknown create flags {flags}")))?;
    let ttl = match (op_code == op::CREATE_TTL, create_flags::has_ttl(flags), ttl_ms) {
        (true, true, Some(ttl)) if ttl > 0 && ttl <= TTL_MS_MAX => Some(ttl as u64),
        (false, false, _) => None,
        _ => {
            return Err(ApiError::bad_arguments(format!(
                "a TTL needs createTTL, a TTL mode and a TTL from 1 to {TTL_MS_MAX} ms"
            )))
        }
    };
    // As in ZooKeeper, the flags decide the mode whatever the opcode (createContainer with
    // persistent flags makes a persistent node).
    Ok((mode, ttl))
}

/// The registry's ACL for a request's: the same entries (perms are bits; ZooKeeper's are an `int`).
fn registry_acl(acl: &[Acl]) -> Vec<RegistryAcl> {
    acl.iter().map(|entry| RegistryAcl::new(entry.perms as u32, &entry.scheme, &entry.id)).collect()
}

/// A reply's ACL for the registry's.
fn wire_acl(acl: &[RegistryAcl]) -> Vec<Acl> {
    acl.iter()
        .map(|entry| Acl { perms: entry.perms as i32, scheme: entry.scheme.clone(), id: entry.id.clone() })
        .collect()
}

/// The create command for `parent`/`name` with the request's ACL, fixed up for the caller: with the
/// ACL once every voter applies ACLs, as before otherwise (when the ACL is the open one; any other is
/// refused until then).
#[allow(clippy::too_many_arguments)]
fn create_command(
    context: &Context<'_>,
    acl: &[Acl],
    parent: ZPath,
    name: String,
    data: Vec<u8>,
    mode: CreateMode,
    owner: Option<(SessionId, SessionSecret)>,
    ttl_ms: Option<u64>,
) -> Result<Command, ApiError> {
    let acl = service::fix_up_acl(context.coordinator, Some(context.caller), &registry_acl(acl))?;
    Ok(if service::acls_ready(context.coordinator) {
        Command::CreateNode { parent, name, data, mode, owner, ttl_ms, acl }
    } else {
        Command::CreateChild { parent, name, data, mode, owner, ttl_ms }
    })
}

/// `command` checked against ACLs as the connection's caller.
fn checked(context: &Context<'_>, command: Command) -> Command {
    service::checked(context.coordinator, Some(context.caller), command)
}

/// Refuses unless the connection may do any of `wanted` on `path` (checked on this node's state).
fn allowed(context: &Context<'_>, path: &ZPath, wanted: u32) -> Result<(), ApiError> {
    service::allowed(context.coordinator, Some(context.caller), path, wanted)
}

fn stat(stat: &crate::registry::Stat) -> proto::Stat {
    proto::Stat::from(stat)
}

/// Serves one request; the caller sends the reply (after any watch events it queued) at the zxid it
/// reads after this returns, or at the write's zxid when this returns one.
pub async fn serve(context: &Context<'_>, request: Request) -> (Reply, Option<u64>) {
    if let Some(refusal) = malformed(context, &request) {
        return (Reply::Error(refusal), None);
    }
    if let Request::CheckWatches { path: text, kind } | Request::RemoveWatches { path: text, kind } = &request {
        let remove = matches!(request, Request::RemoveWatches { .. });
        return (watches(context, text, *kind, remove), None);
    }
    match serve_inner(context, request).await {
        Ok((response, zxid)) => (Reply::Body(response), zxid),
        Err(error) => (Reply::from(error), None),
    }
}

/// ZooKeeper's answer to a request whose path it never parses as a path, or whose arguments it cannot
/// read, if it is one: an empty path is a marshalling error; a read of any other malformed path finds
/// no node; a create or delete looks for the parent first (text before the last `/`), so it finds no
/// node unless that parent exists, when the path itself is refused as bad arguments; an addWatch mode
/// ZooKeeper has no enum value for is a marshalling error.
fn malformed(context: &Context<'_>, request: &Request) -> Option<i32> {
    let exists = |text: &str| {
        ZPath::parse(if text.is_empty() { "/" } else { text })
            .ok()
            .is_some_and(|path| context.coordinator.read_local(|registry| registry.exists(&path).is_some()))
    };
    let (text, parent_first) = match request {
        Request::AddWatch { mode, .. }
            if *mode != add_watch_mode::PERSISTENT && *mode != add_watch_mode::PERSISTENT_RECURSIVE =>
        {
            return Some(code::MARSHALLING_ERROR)
        }
        Request::Create { path, flags, .. } => {
            // A sequential create's path may end in `/` (see `child_of`).
            let mode = create_flags::mode(*flags).unwrap_or(CreateMode::Persistent);
            if mode.is_sequential() && path.ends_with('/') && path.len() > 1 {
                (path.trim_end_matches('/'), false)
            } else {
                (path.as_str(), true)
            }
        }
        Request::Delete { path, .. } => (path.as_str(), true),
        Request::Exists { path, .. }
        | Request::GetData { path, .. }
        | Request::GetChildren { path, .. }
        | Request::GetChildren2 { path, .. }
        | Request::GetAcl { path }
        | Request::SetData { path, .. }
        | Request::SetAcl { path, .. }
        | Request::GetAllChildrenNumber { path }
        | Request::AddWatch { path, .. } => (path.as_str(), false),
        _ => return None,
    };
    if text.is_empty() {
        return Some(code::MARSHALLING_ERROR);
    }
    if text.contains('\0') {
        return Some(code::BAD_ARGUMENTS);
    }
    if ZPath::parse(text).is_ok() {
        return None;
    }
    if !parent_first {
        return Some(match request {
            Request::SetData { .. } | Request::SetAcl { .. } | Request::AddWatch { .. } => code::BAD_ARGUMENTS,
            _ => code::NO_NODE,
        });
    }
    match text.rfind('/') {
        None => Some(code::BAD_ARGUMENTS),
        Some(slash) if exists(&text[..slash]) => Some(code::BAD_ARGUMENTS),
        Some(_) => Some(code::NO_NODE),
    }
}

/// Whether `path` is in one of the cluster's own subtrees (`/grid`: registrations; `/gridkeeper`:
/// revocations), which only the super user changes through this front end.
fn reserved(path: &str) -> bool {
    ZPath::parse(path).is_ok_and(|path| crate::registry::tree::cluster_owned(&path))
}

/// The first reserved path `request` would change, if any.
fn reserved_write(request: &Request) -> Option<&str> {
    match request {
        Request::Create { path, .. }
        | Request::Delete { path, .. }
        | Request::SetData { path, .. }
        | Request::SetAcl { path, .. } => Some(path.as_str()).filter(|path| reserved(path)),
        Request::Multi(ops) => ops
            .iter()
            .filter_map(|op| match op {
                MultiOp::Create { path, .. } | MultiOp::Delete { path, .. } | MultiOp::SetData { path, .. } => {
                    Some(path.as_str())
                }
                _ => None,
            })
            .find(|path| reserved(path)),
        _ => None,
    }
}

async fn serve_inner(context: &Context<'_>, request: Request) -> Result<(Response, Option<u64>), ApiError> {
    // Until state version 2 gives the cluster's subtrees their read-only ACL (it does so in the step
    // that raises the version), no client but the super user changes them.
    if !context.superuser && context.coordinator.read_local(|registry| registry.version()) < 2 {
        if let Some(path) = reserved_write(&request) {
            return Err(ApiError::new(ErrorCode::NoAuth, format!("{path} is changed only by the super user")));
        }
    }
    let coordinator = context.coordinator;
    let watched = |kind, if_missing, watch: bool| {
        watch.then_some(WatchWith { watcher: context.watch.watcher(), kind, if_missing })
    };
    let read = |op: ReadOp, watch| service::read_watched(coordinator, &op, watch).map(|(result, _)| result);
    let done = |response| Ok((response, None));
    match request {
        Request::Ping => done(Response::Empty),
        Request::Create { op: op_code, path: text, data, acl, flags, ttl_ms } => {
            if !context.extended_types && (op_code == op::CREATE_TTL || create_flags::has_ttl(flags)) {
                return Err(ApiError::new(ErrorCode::Unimplemented, "TTL nodes are off (--zk-extended-types false)"));
            }
            let (mode, ttl_ms) = create_mode(flags, ttl_ms, op_code)?;
            let (parent, name) = child_of(&text, mode)?;
            let owner = Some((context.session, context.secret));
            let command = create_command(context, &acl, parent, name, data, mode, owner, ttl_ms)?;
            match service::write_at(coordinator, checked(context, command)).await? {
                (Outcome::Created { path, .. }, zxid) if op_code == op::CREATE => {
                    Ok((Response::Create { path: path.to_string() }, Some(zxid)))
                }
                (Outcome::Created { path, stat: created }, zxid) => {
                    Ok((Response::Create2 { path: path.to_string(), stat: stat(&created) }, Some(zxid)))
                }
                (other, _) => Err(ApiError::unexpected(other)),
            }
        }
        Request::Delete { path: text, version: expected } => {
            if expected < -1 {
                return Err(bad_version(&text));
            }
            let command = Command::Delete { path: path(&text)?, version: version(expected) };
            let (_, zxid) = service::write_at(coordinator, checked(context, command)).await?;
            Ok((Response::Empty, Some(zxid)))
        }
        Request::SetData { path: text, data, version: expected } => {
            if expected < -1 {
                return Err(bad_version(&text));
            }
            let path = path(&text)?;
            let command = Command::Set { path: path.clone(), data, version: version(expected) };
            match service::write_at(coordinator, checked(context, command)).await? {
                (Outcome::Set { stat: set }, zxid) => {
                    Ok((Response::Stat(stat(&service::with_aversion(coordinator, &path, set))), Some(zxid)))
                }
                (other, _) => Err(ApiError::unexpected(other)),
            }
        }
        Request::Exists { path: text, watch } => {
            match read(ReadOp::Exists(path(&text)?), watched(WatchKind::Data, true, watch))? {
                ReadResult::Exists(Some(found)) => done(Response::Stat(stat(&found))),
                ReadResult::Exists(None) => Err(ApiError::new(ErrorCode::NoNode, format!("no node: {text}"))),
                other => Err(ApiError::unexpected(other)),
            }
        }
        Request::GetData { path: text, watch } => {
            let path = path(&text)?;
            allowed(context, &path, perms::READ)?;
            match read(ReadOp::Get(path), watched(WatchKind::Data, false, watch))? {
                ReadResult::Data { data, stat: found } => done(Response::GetData { data, stat: stat(&found) }),
                other => Err(ApiError::unexpected(other)),
            }
        }
        Request::GetChildren { path: text, watch } => {
            let path = path(&text)?;
            allowed(context, &path, perms::READ)?;
            match read(ReadOp::Children(path), watched(WatchKind::Child, false, watch))? {
                ReadResult::Children { children, .. } => done(Response::GetChildren { children }),
                other => Err(ApiError::unexpected(other)),
            }
        }
        Request::GetChildren2 { path: text, watch } => {
            let path = path(&text)?;
            allowed(context, &path, perms::READ)?;
            match read(ReadOp::Children(path), watched(WatchKind::Child, false, watch))? {
                ReadResult::Children { children, stat: found } => {
                    done(Response::GetChildren2 { children, stat: stat(&found) })
                }
                other => Err(ApiError::unexpected(other)),
            }
        }
        Request::GetAcl { path: text } => {
            let path = path(&text)?;
            allowed(context, &path, perms::READ | perms::ADMIN)?;
            let (acl, found) = coordinator.read_local(|registry| registry.acl(&path))?;
            done(Response::GetAcl { acl: wire_acl(&acl), stat: stat(&found) })
        }
        Request::SetAcl { path: text, acl, version: expected } => {
            if expected < -1 {
                return Err(bad_version(&text));
            }
            let path = path(&text)?;
            let acl = service::fix_up_acl(coordinator, Some(context.caller), &registry_acl(&acl))?;
            let command = checked(context, Command::SetAcl { path: path.clone(), acl, version: version(expected) });
            match service::write_at(coordinator, command).await? {
                (Outcome::Set { stat: set }, zxid) => {
                    Ok((Response::Stat(stat(&service::with_aversion(coordinator, &path, set))), Some(zxid)))
                }
                (other, _) => Err(ApiError::unexpected(other)),
            }
        }
        Request::Sync { path: text } => {
            path(&text)?;
            service::sync(coordinator).await?;
            done(Response::Sync { path: text })
        }
        Request::Check { path: text, version: expected } => match read(ReadOp::Exists(path(&text)?), None)? {
            ReadResult::Exists(Some(_)) if allowed(context, &path(&text)?, perms::READ).is_err() => {
                Err(ApiError::new(ErrorCode::NoAuth, format!("no auth: {text}")))
            }
            ReadResult::Exists(Some(found)) if expected == -1 || version(expected) == Some(found.version) => {
                done(Response::Empty)
            }
            ReadResult::Exists(Some(_)) => Err(ApiError::new(ErrorCode::BadVersion, format!("bad version: {text}"))),
            _ => Err(ApiError::new(ErrorCode::NoNode, format!("no node: {text}"))),
        },
        Request::Multi(ops) => multi(context, ops).await,
        Request::MultiRead(ops) => {
            done(Response::MultiRead(ops.into_iter().map(|op| multi_read(context, op)).collect()))
        }
        Request::GetAllChildrenNumber { path: text } => {
            let path = path(&text)?;
            allowed(context, &path, perms::READ)?;
            let count = service::descendant_count(coordinator, &path)?;
            done(Response::GetAllChildrenNumber { count: i32::try_from(count).unwrap_or(i32::MAX) })
        }
        Request::GetEphemerals { prefix } => {
            let paths = service::session_ephemerals(coordinator, context.session, &prefix);
            done(Response::GetEphemerals { paths: paths.iter().map(ToString::to_string).collect() })
        }
        Request::AddWatch { path: text, mode } => {
            let kind = match mode {
                add_watch_mode::PERSISTENT => WatchKind::Persistent,
                add_watch_mode::PERSISTENT_RECURSIVE => WatchKind::PersistentRecursive,
                _ => return Err(ApiError::bad_arguments(format!("unknown addWatch mode {mode}"))),
            };
            context.watch.add(&path(&text)?, kind)?;
            done(Response::Code { err: code::OK })
        }
        // Answered in `serve`: their refusal, `NoWatcher`, is a code the contract does not have.
        Request::CheckWatches { .. } | Request::RemoveWatches { .. } => unreachable!("answered by serve"),
        Request::SetWatches { relative_zxid, data, exist, child } => {
            restore(context, relative_zxid, data, exist, child, Vec::new(), Vec::new())
        }
        Request::SetWatches2 { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
            restore(context, relative_zxid, data, exist, child, persistent, persistent_recursive)
        }
        Request::WhoAmI => done(Response::WhoAmI { clients: context.identities.to_vec() }),
        Request::Reconfig
        | Request::Sasl
        | Request::DeleteContainer { .. }
        | Request::Auth { .. }
        | Request::CloseSession => Err(ApiError::new(ErrorCode::Unimplemented, "handled by the connection")),
    }
}

/// The watch kinds a `checkWatches`/`removeWatches` type names.
/// `checkWatches` and `removeWatches`: ZooKeeper's `NoWatcher` when the connection holds no watch of
/// the type on the path, a code that exists only on this front end. As in ZooKeeper, removing the data
/// or child type removes only one-shot watches (a persistent one goes only with the `any` type), yet
/// succeeds wherever the type's check would.
fn watches(context: &Context<'_>, text: &str, kind: i32, remove: bool) -> Reply {
    let found = watch_kinds(kind).and_then(|kinds| {
        let path = path(text)?;
        let held = context.watch.holds(&path, kinds);
        if held && remove {
            let removed: &[WatchKind] = match kind {
                watcher_type::CHILDREN => &[WatchKind::Child],
                watcher_type::DATA => &[WatchKind::Data],
                _ => kinds,
            };
            context.watch.remove(&path, removed);
        }
        Ok(held)
    });
    match found {
        Ok(true) => Reply::Body(Response::Empty),
        Ok(false) => Reply::Error(code::NO_WATCHER),
        Err(error) => Reply::from(error),
    }
}

fn watch_kinds(kind: i32) -> Result<&'static [WatchKind], ApiError> {
    // As ZooKeeper files watches: its data watch table also holds persistent and persistent-recursive
    // watches, its child table persistent ones, so checking or removing a type reaches those too.
    match kind {
        watcher_type::CHILDREN => Ok(&[WatchKind::Child, WatchKind::Persistent]),
        watcher_type::DATA => Ok(&[WatchKind::Data, WatchKind::Persistent, WatchKind::PersistentRecursive]),
        watcher_type::ANY => {
            Ok(&[WatchKind::Data, WatchKind::Child, WatchKind::Persistent, WatchKind::PersistentRecursive])
        }
        _ => Err(ApiError::bad_arguments(format!("unknown watcher type {kind}"))),
    }
}

fn restore(
    context: &Context<'_>,
    relative_zxid: i64,
    data: Vec<String>,
    exist: Vec<String>,
    child: Vec<String>,
    persistent: Vec<String>,
    persistent_recursive: Vec<String>,
) -> Result<(Response, Option<u64>), ApiError> {
    let lists = [
        (data, RestoredWatch::Data),
        (exist, RestoredWatch::Exist),
        (child, RestoredWatch::Child),
        (persistent, RestoredWatch::Persistent),
        (persistent_recursive, RestoredWatch::PersistentRecursive),
    ];
    let mut watches = Vec::new();
    for (paths, kind) in lists {
        for text in paths {
            watches.push((path(&text)?, kind));
        }
    }
    let since = u64::try_from(relative_zxid).unwrap_or(0);
    // The missed events go to the watcher's own queue, so they reach the client in order with the rest.
    context.watch.restore(since, &watches)?;
    Ok((Response::Empty, None))
}

fn registry_op(context: &Context<'_>, op: MultiOp) -> Result<(RegistryOp, i32), ApiError> {
    Ok(match op {
        MultiOp::Create { op: op_code, path: text, data, acl, flags, ttl_ms } => {
            let (mode, ttl) = create_mode(flags, ttl_ms, op_code)?;
            if ttl.is_some() {
                return Err(ApiError::new(ErrorCode::Unimplemented, "a TTL node inside a multi"));
            }
            let (parent, name) = child_of(&text, mode)?;
            let acl = service::fix_up_acl(context.coordinator, Some(context.caller), &registry_acl(&acl))?;
            if service::acls_ready(context.coordinator) {
                (RegistryOp::CreateNode { parent, name, data, mode, acl }, op_code)
            } else {
                (RegistryOp::CreateChild { parent, name, data, mode }, op_code)
            }
        }
        MultiOp::Delete { path: text, version: expected } => {
            if expected < -1 {
                return Err(bad_version(&text));
            }
            (RegistryOp::Delete { path: path(&text)?, version: version(expected) }, op::DELETE)
        }
        MultiOp::SetData { path: text, data, version: expected } => {
            if expected < -1 {
                return Err(bad_version(&text));
            }
            (RegistryOp::Set { path: path(&text)?, data, version: version(expected) }, op::SET_DATA)
        }
        MultiOp::Check { path: text, version: expected } => {
            let version = version(expected)
                .ok_or_else(|| ApiError::new(ErrorCode::Unimplemented, "a check of any version (-1) inside a multi"))?;
            (RegistryOp::Check { path: path(&text)?, version }, op::CHECK)
        }
    })
}

/// The answer to a multi that failed at `failed` with ZooKeeper code `error` (see
/// [`MultiResult::failed`]: the ops before it rolled back, the rest not tried).
fn failed_multi(count: usize, failed: usize, error: i32) -> Response {
    Response::Multi(MultiResult::failed(count, failed, error))
}

async fn multi(context: &Context<'_>, ops: Vec<MultiOp>) -> Result<(Response, Option<u64>), ApiError> {
    let count = ops.len();
    let mut steps = Vec::with_capacity(count);
    let mut kinds = Vec::with_capacity(count);
    for (index, op) in ops.into_iter().enumerate() {
        match registry_op(context, op) {
            Ok((step, kind)) => {
                steps.push(step);
                kinds.push(kind);
            }
            Err(error) => {
                return match answer(error.code) {
                    Answer::Code(value) => Ok((failed_multi(count, index, value), None)),
                    Answer::Close => Err(error),
                }
            }
        }
    }
    if steps.is_empty() {
        return Ok((Response::Multi(Vec::new()), None));
    }
    // A set's result relayed from the leader carries no aversion: it is read here, after the write.
    let set_paths: Vec<Option<ZPath>> = steps
        .iter()
        .map(|step| match step {
            RegistryOp::Set { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let command =
        checked(context, Command::MultiOwned { ops: steps, session: context.session, secret: context.secret });
    match service::write_at(context.coordinator, command).await {
        Ok((Outcome::Multi { results }, zxid)) => {
            let results = results
                .into_iter()
                .zip(kinds)
                .zip(set_paths)
                .map(|((outcome, kind), set_path)| match outcome {
                    Outcome::Created { path, .. } if kind == op::CREATE => {
                        MultiResult::Create { path: path.to_string() }
                    }
                    Outcome::Created { path, stat: created } => {
                        MultiResult::Create2 { path: path.to_string(), stat: stat(&created) }
                    }
                    Outcome::Set { stat: set } => {
                        let set = match &set_path {
                            Some(path) => service::with_aversion(context.coordinator, path, set),
                            None => set,
                        };
                        MultiResult::SetData { stat: stat(&set) }
                    }
                    Outcome::Deleted => MultiResult::Delete,
                    _ => MultiResult::Check,
                })
                .collect();
            Ok((Response::Multi(results), Some(zxid)))
        }
        Ok((other, _)) => Err(ApiError::unexpected(other)),
        Err(error) => match (error.failed_op, answer(error.code)) {
            (Some(failed), Answer::Code(value)) => Ok((failed_multi(count, failed, value), None)),
            _ => Err(error),
        },
    }
}

fn multi_read(context: &Context<'_>, op: MultiReadOp) -> MultiReadResult {
    let coordinator = context.coordinator;
    let error = |error: ApiError| match answer(error.code) {
        Answer::Code(value) => MultiReadResult::Error { err: value },
        Answer::Close => MultiReadResult::Error { err: code::SYSTEM_ERROR },
    };
    let result = match op {
        MultiReadOp::GetData { path: text } => {
            path(&text).and_then(|path| match service::read_watched(coordinator, &ReadOp::Get(path.clone()), None)? {
                _ if allowed(context, &path, perms::READ).is_err() => {
                    Err(ApiError::new(ErrorCode::NoAuth, format!("no auth: {path}")))
                }
                (ReadResult::Data { data, stat: found }, _) => {
                    Ok(MultiReadResult::GetData { data, stat: stat(&found) })
                }
                (other, _) => Err(ApiError::unexpected(other)),
            })
        }
        MultiReadOp::GetChildren { path: text } => path(&text).and_then(|path| {
            match service::read_watched(coordinator, &ReadOp::Children(path.clone()), None)? {
                _ if allowed(context, &path, perms::READ).is_err() => {
                    Err(ApiError::new(ErrorCode::NoAuth, format!("no auth: {path}")))
                }
                (ReadResult::Children { children, .. }, _) => Ok(MultiReadResult::GetChildren { children }),
                (other, _) => Err(ApiError::unexpected(other)),
            }
        }),
    };
    result.unwrap_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ZPath {
        ZPath::parse(text).expect("valid")
    }

    #[test]
    fn a_sequential_path_may_end_in_a_slash_and_others_name_a_child() {
        assert_eq!(child_of("/folder/", CreateMode::PersistentSequential), Ok((p("/folder"), String::new())));
        assert_eq!(child_of("/", CreateMode::EphemeralSequential), Ok((ZPath::root(), String::new())));
        assert_eq!(child_of("/a/job-", CreateMode::PersistentSequential), Ok((p("/a"), "job-".to_string())));
        assert_eq!(child_of("/a/b", CreateMode::Persistent), Ok((p("/a"), "b".to_string())));
        assert_eq!(child_of("/a/", CreateMode::Persistent).map_err(|error| error.code), Err(ErrorCode::InvalidPath));
        assert_eq!(child_of("/", CreateMode::Persistent).map_err(|error| error.code), Err(ErrorCode::NodeExists));
    }

    #[test]
    fn flags_ttls_and_acls_follow_zookeepers_rules() {
        assert_eq!(create_mode(3, None, op::CREATE2), Ok((CreateMode::EphemeralSequential, None)));
        assert_eq!(create_mode(5, Some(100), op::CREATE_TTL), Ok((CreateMode::Persistent, Some(100))));
        for (flags, ttl, op_code) in [(5, Some(0), op::CREATE_TTL), (0, Some(5), op::CREATE_TTL), (5, None, op::CREATE)]
        {
            assert_eq!(create_mode(flags, ttl, op_code).map_err(|error| error.code), Err(ErrorCode::BadArguments));
        }
        assert_eq!(create_mode(0, None, op::CREATE_CONTAINER), Ok((CreateMode::Persistent, None)));
        assert_eq!(
            create_mode(5, Some(TTL_MS_MAX + 1), op::CREATE_TTL).map_err(|error| error.code),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(create_mode(9, None, op::CREATE).map_err(|error| error.code), Err(ErrorCode::BadArguments));
    }

    #[test]
    fn watch_types_name_their_kinds() {
        // ZooKeeper's data table holds persistent and recursive watches too, its child table persistent ones.
        assert_eq!(watch_kinds(watcher_type::CHILDREN), Ok(&[WatchKind::Child, WatchKind::Persistent][..]));
        assert_eq!(
            watch_kinds(watcher_type::DATA),
            Ok(&[WatchKind::Data, WatchKind::Persistent, WatchKind::PersistentRecursive][..])
        );
        assert_eq!(watch_kinds(watcher_type::ANY).map(<[WatchKind]>::len), Ok(4));
        assert!(watch_kinds(7).is_err());
    }
}
