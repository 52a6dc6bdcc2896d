//! Client requests: [`Request`] by operation, the ops of a `multi` ([`MultiOp`]) and of a
//! `multiRead` ([`MultiReadOp`]), and the frame codec [`decode_request`] / [`encode_request`] with
//! its [`DecodeError`].
//!
//! Like the rest of `proto`, it only turns bytes into values and back: no I/O, no decision.

use super::records::{read_multi, read_strings, write_strings, MultiHeader};
#[cfg(doc)]
use super::{add_watch_mode, code, create_flags, watcher_type, xid, MultiResult, Response};
use super::{op, Acl, RequestHeader};
use crate::zk::frame::framed;
use crate::zk::jute::{JuteError, Reader, Writer};

/// A client request's body, by operation. Field names follow the jute records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `create`, `create2`, `createContainer` or `createTTL` (`CreateRequest`, or
    /// `CreateTTLRequest` for createTTL). `ttl_ms` is `Some` exactly when `op` is createTTL.
    Create {
        /// Which create: [`op::CREATE`] is answered with the path only, the others with path and
        /// stat ([`Response::Create2`]).
        op: i32,
        /// The znode (or the prefix of a sequential one).
        path: String,
        /// Its data.
        data: Vec<u8>,
        /// Its ACL.
        acl: Vec<Acl>,
        /// One of [`create_flags`].
        flags: i32,
        /// The TTL of a createTTL.
        ttl_ms: Option<i64>,
    },
    /// `delete` (`DeleteRequest`).
    Delete {
        /// The znode.
        path: String,
        /// The expected version, -1 for any.
        version: i32,
    },
    /// `exists` (`ExistsRequest`).
    Exists {
        /// The znode.
        path: String,
        /// Whether to leave a data (or exists) watch.
        watch: bool,
    },
    /// `getData` (`GetDataRequest`).
    GetData {
        /// The znode.
        path: String,
        /// Whether to leave a data watch.
        watch: bool,
    },
    /// `setData` (`SetDataRequest`).
    SetData {
        /// The znode.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The expected version, -1 for any.
        version: i32,
    },
    /// `getACL` (`GetACLRequest`).
    GetAcl {
        /// The znode.
        path: String,
    },
    /// `setACL` (`SetACLRequest`).
    SetAcl {
        /// The znode.
        path: String,
        /// The new ACL.
        acl: Vec<Acl>,
        /// The expected ACL version, -1 for any.
        version: i32,
    },
    /// `getChildren` (`GetChildrenRequest`).
    GetChildren {
        /// The znode.
        path: String,
        /// Whether to leave a child watch.
        watch: bool,
    },
    /// `getChildren2` (`GetChildren2Request`): children and the parent's stat.
    GetChildren2 {
        /// The znode.
        path: String,
        /// Whether to leave a child watch.
        watch: bool,
    },
    /// `sync` (`SyncRequest`).
    Sync {
        /// The znode (echoed in the reply).
        path: String,
    },
    /// `ping` (no body).
    Ping,
    /// A standalone `check` (`CheckVersionRequest`, ZooKeeper 3.9).
    Check {
        /// The znode.
        path: String,
        /// The expected version.
        version: i32,
    },
    /// `multi`: an atomic transaction.
    Multi(Vec<MultiOp>),
    /// `multiRead`: reads, each answered on its own.
    MultiRead(Vec<MultiReadOp>),
    /// `reconfig`: recognised only; its body (`ReconfigRequest`) is not read.
    Reconfig,
    /// `checkWatches` (`CheckWatchesRequest`).
    CheckWatches {
        /// The znode.
        path: String,
        /// One of [`watcher_type`].
        kind: i32,
    },
    /// `removeWatches` (`RemoveWatchesRequest`).
    RemoveWatches {
        /// The znode.
        path: String,
        /// One of [`watcher_type`].
        kind: i32,
    },
    /// `deleteContainer` (the path as a `buffer`, which is a `ustring` on the wire).
    DeleteContainer {
        /// The znode.
        path: String,
    },
    /// `auth` (`AuthPacket`), sent with xid [`xid::AUTH`].
    Auth {
        /// Unused by ZooKeeper (0).
        kind: i32,
        /// The scheme (`digest`, ...).
        scheme: String,
        /// The credentials (`user:password` for digest).
        auth: Vec<u8>,
    },
    /// `setWatches` (`SetWatches`), sent with xid [`xid::SET_WATCHES`] after a reconnect.
    SetWatches {
        /// The last zxid the client saw: watches fire for changes after it.
        relative_zxid: i64,
        /// Data watches.
        data: Vec<String>,
        /// Exists watches.
        exist: Vec<String>,
        /// Child watches.
        child: Vec<String>,
    },
    /// `setWatches2` (`SetWatches2`), with persistent watches.
    SetWatches2 {
        /// The last zxid the client saw.
        relative_zxid: i64,
        /// Data watches.
        data: Vec<String>,
        /// Exists watches.
        exist: Vec<String>,
        /// Child watches.
        child: Vec<String>,
        /// Persistent watches.
        persistent: Vec<String>,
        /// Persistent recursive watches.
        persistent_recursive: Vec<String>,
    },
    /// `sasl`: recognised only (unsupported); its body is not read.
    Sasl,
    /// `getEphemerals` (`GetEphemeralsRequest`).
    GetEphemerals {
        /// Only ephemerals under this prefix (`/` for all).
        prefix: String,
    },
    /// `getAllChildrenNumber` (`GetAllChildrenNumberRequest`).
    GetAllChildrenNumber {
        /// The znode.
        path: String,
    },
    /// `addWatch` (`AddWatchRequest`).
    AddWatch {
        /// The znode.
        path: String,
        /// One of [`add_watch_mode`].
        mode: i32,
    },
    /// `whoAmI` (no body).
    WhoAmI,
    /// `closeSession` (no body).
    CloseSession,
}

/// One op of a `multi` request. ZooKeeper allows only these in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// A create of any kind, as [`Request::Create`]. Its result is [`MultiResult::Create`] for
    /// [`op::CREATE`] and [`MultiResult::Create2`] for the others.
    Create {
        /// Which create (its multi header's type).
        op: i32,
        /// The znode.
        path: String,
        /// Its data.
        data: Vec<u8>,
        /// Its ACL.
        acl: Vec<Acl>,
        /// One of [`create_flags`].
        flags: i32,
        /// The TTL, `Some` exactly when `op` is createTTL.
        ttl_ms: Option<i64>,
    },
    /// A delete.
    Delete {
        /// The znode.
        path: String,
        /// The expected version, -1 for any.
        version: i32,
    },
    /// A set-data.
    SetData {
        /// The znode.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The expected version, -1 for any.
        version: i32,
    },
    /// A version check.
    Check {
        /// The znode.
        path: String,
        /// The expected version.
        version: i32,
    },
}

/// One op of a `multiRead` request. The watch flag of the jute record is read and dropped, as
/// ZooKeeper drops it: multiRead leaves no watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiReadOp {
    /// A getData (`GetDataRequest`).
    GetData {
        /// The znode.
        path: String,
    },
    /// A getChildren (`GetChildrenRequest`).
    GetChildren {
        /// The znode.
        path: String,
    },
}

/// Why a request frame did not decode. The server answers [`DecodeError::UnknownOp`] with
/// [`code::UNIMPLEMENTED`] for its xid and carries on; after [`DecodeError::Malformed`] it closes
/// the connection (or, with the xid known, may answer [`code::MARSHALLING_ERROR`] first, as
/// ZooKeeper does for a bad body; the framing is intact either way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A readable header with an operation this codec does not know.
    #[error("unsupported operation {} (xid {})", header.op, header.xid)]
    UnknownOp {
        /// The request's header.
        header: RequestHeader,
    },
    /// Bytes that are not the record they claim to be.
    #[error("malformed request (xid {xid:?}): {error}")]
    Malformed {
        /// The request's xid, if its header was readable.
        xid: Option<i32>,
        /// What was wrong.
        error: JuteError,
    },
}

/// A create's fields, shared by [`Request::Create`] and [`MultiOp::Create`].
struct CreateFields {
    path: String,
    data: Vec<u8>,
    acl: Vec<Acl>,
    flags: i32,
    ttl_ms: Option<i64>,
}

fn is_create(kind: i32) -> bool {
    matches!(kind, op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL)
}

fn read_create(kind: i32, r: &mut Reader<'_>) -> Result<CreateFields, JuteError> {
    Ok(CreateFields {
        path: r.read_ustring()?,
        data: r.read_buffer()?,
        acl: r.read_vec(Acl::read)?,
        flags: r.read_int()?,
        ttl_ms: if kind == op::CREATE_TTL { Some(r.read_long()?) } else { None },
    })
}

/// Writes a `CreateRequest`, or a `CreateTTLRequest` when `kind` is createTTL (with the TTL, or 0
/// if it is missing, which servers refuse).
fn write_create(w: &mut Writer, kind: i32, path: &str, data: &[u8], acl: &[Acl], flags: i32, ttl_ms: Option<i64>) {
    w.write_ustring(path);
    w.write_buffer(data);
    w.write_vec(acl, |w, entry| entry.write(w));
    w.write_int(flags);
    if kind == op::CREATE_TTL {
        w.write_long(ttl_ms.unwrap_or(0));
    }
}

/// A path and a boolean watch flag, the shape of five request records.
fn read_path_watch(r: &mut Reader<'_>) -> Result<(String, bool), JuteError> {
    Ok((r.read_ustring()?, r.read_bool()?))
}

/// A path and an int, the shape of six request records.
fn read_path_int(r: &mut Reader<'_>) -> Result<(String, i32), JuteError> {
    Ok((r.read_ustring()?, r.read_int()?))
}

impl Request {
    /// The operation code this request is sent with.
    pub fn op(&self) -> i32 {
        match self {
            Request::Create { op, .. } => *op,
            Request::Delete { .. } => op::DELETE,
            Request::Exists { .. } => op::EXISTS,
            Request::GetData { .. } => op::GET_DATA,
            Request::SetData { .. } => op::SET_DATA,
            Request::GetAcl { .. } => op::GET_ACL,
            Request::SetAcl { .. } => op::SET_ACL,
            Request::GetChildren { .. } => op::GET_CHILDREN,
            Request::GetChildren2 { .. } => op::GET_CHILDREN2,
            Request::Sync { .. } => op::SYNC,
            Request::Ping => op::PING,
            Request::Check { .. } => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::Reconfig => op::RECONFIG,
            Request::CheckWatches { .. } => op::CHECK_WATCHES,
            Request::RemoveWatches { .. } => op::REMOVE_WATCHES,
            Request::DeleteContainer { .. } => op::DELETE_CONTAINER,
            Request::Auth { .. } => op::AUTH,
            Request::SetWatches { .. } => op::SET_WATCHES,
            Request::SetWatches2 { .. } => op::SET_WATCHES2,
            Request::Sasl => op::SASL,
            Request::GetEphemerals { .. } => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
            Request::AddWatch { .. } => op::ADD_WATCH,
            Request::WhoAmI => op::WHO_AM_I,
            Request::CloseSession => op::CLOSE_SESSION,
        }
    }

    /// Reads the body of a request with operation `kind`; `Ok(None)` for an operation this codec
    /// does not know. Bytes after the record are left unread.
    ///
    /// # Errors
    /// A [`JuteError`] if the body is not the operation's record.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<Option<Request>, JuteError> {
        let request = match kind {
            _ if is_create(kind) => {
                let CreateFields { path, data, acl, flags, ttl_ms } = read_create(kind, r)?;
                Request::Create { op: kind, path, data, acl, flags, ttl_ms }
            }
            op::DELETE => read_path_int(r).map(|(path, version)| Request::Delete { path, version })?,
            op::EXISTS => read_path_watch(r).map(|(path, watch)| Request::Exists { path, watch })?,
            op::GET_DATA => read_path_watch(r).map(|(path, watch)| Request::GetData { path, watch })?,
            op::SET_DATA => {
                Request::SetData { path: r.read_ustring()?, data: r.read_buffer()?, version: r.read_int()? }
            }
            op::GET_ACL => Request::GetAcl { path: r.read_ustring()? },
            op::SET_ACL => {
                Request::SetAcl { path: r.read_ustring()?, acl: r.read_vec(Acl::read)?, version: r.read_int()? }
            }
            op::GET_CHILDREN => read_path_watch(r).map(|(path, watch)| Request::GetChildren { path, watch })?,
            op::GET_CHILDREN2 => read_path_watch(r).map(|(path, watch)| Request::GetChildren2 { path, watch })?,
            op::SYNC => Request::Sync { path: r.read_ustring()? },
            op::PING => Request::Ping,
            op::CHECK => read_path_int(r).map(|(path, version)| Request::Check { path, version })?,
            op::MULTI => Request::Multi(read_multi(r, |header, r| MultiOp::read(header.kind, r))?),
            op::MULTI_READ => Request::MultiRead(read_multi(r, |header, r| MultiReadOp::read(header.kind, r))?),
            op::RECONFIG => Request::Reconfig,
            op::CHECK_WATCHES => read_path_int(r).map(|(path, kind)| Request::CheckWatches { path, kind })?,
            op::REMOVE_WATCHES => read_path_int(r).map(|(path, kind)| Request::RemoveWatches { path, kind })?,
            op::DELETE_CONTAINER => Request::DeleteContainer { path: r.read_ustring()? },
            op::AUTH => Request::Auth { kind: r.read_int()?, scheme: r.read_ustring()?, auth: r.read_buffer()? },
            op::SET_WATCHES => Request::SetWatches {
                relative_zxid: r.read_long()?,
                data: read_strings(r)?,
                exist: read_strings(r)?,
                child: read_strings(r)?,
            },
            op::SET_WATCHES2 => Request::SetWatches2 {
                relative_zxid: r.read_long()?,
                data: read_strings(r)?,
                exist: read_strings(r)?,
                child: read_strings(r)?,
                persistent: read_strings(r)?,
                persistent_recursive: read_strings(r)?,
            },
            op::SASL => Request::Sasl,
            op::GET_EPHEMERALS => Request::GetEphemerals { prefix: r.read_ustring()? },
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.read_ustring()? },
            op::ADD_WATCH => read_path_int(r).map(|(path, mode)| Request::AddWatch { path, mode })?,
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            _ => return Ok(None),
        };
        Ok(Some(request))
    }

    /// Writes the body (without the header). [`Request::Reconfig`] and [`Request::Sasl`] write
    /// nothing: this codec never sends them for real.
    pub fn write(&self, w: &mut Writer) {
        match self {
            Request::Create { op, path, data, acl, flags, ttl_ms } => {
                write_create(w, *op, path, data, acl, *flags, *ttl_ms)
            }
            Request::Delete { path, version } | Request::Check { path, version } => {
                w.write_ustring(path);
                w.write_int(*version);
            }
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch }
            | Request::GetChildren2 { path, watch } => {
                w.write_ustring(path);
                w.write_bool(*watch);
            }
            Request::SetData { path, data, version } => {
                w.write_ustring(path);
                w.write_buffer(data);
                w.write_int(*version);
            }
            Request::GetAcl { path }
            | Request::Sync { path }
            | Request::DeleteContainer { path }
            | Request::GetAllChildrenNumber { path }
            | Request::GetEphemerals { prefix: path } => w.write_ustring(path),
            Request::SetAcl { path, acl, version } => {
                w.write_ustring(path);
                w.write_vec(acl, |w, entry| entry.write(w));
                w.write_int(*version);
            }
            Request::Multi(ops) => {
                for entry in ops {
                    MultiHeader { kind: entry.op(), done: false, err: -1 }.write(w);
                    entry.write(w);
                }
                MultiHeader::END.write(w);
            }
            Request::MultiRead(ops) => {
                for entry in ops {
                    MultiHeader { kind: entry.op(), done: false, err: -1 }.write(w);
                    entry.write(w);
                }
                MultiHeader::END.write(w);
            }
            Request::CheckWatches { path, kind: value }
            | Request::RemoveWatches { path, kind: value }
            | Request::AddWatch { path, mode: value } => {
                w.write_ustring(path);
                w.write_int(*value);
            }
            Request::Auth { kind, scheme, auth } => {
                w.write_int(*kind);
                w.write_ustring(scheme);
                w.write_buffer(auth);
            }
            Request::SetWatches { relative_zxid, data, exist, child } => {
                w.write_long(*relative_zxid);
                for list in [data, exist, child] {
                    write_strings(w, list);
                }
            }
            Request::SetWatches2 { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
                w.write_long(*relative_zxid);
                for list in [data, exist, child, persistent, persistent_recursive] {
                    write_strings(w, list);
                }
            }
            Request::Ping | Request::Reconfig | Request::Sasl | Request::WhoAmI | Request::CloseSession => {}
        }
    }
}

impl MultiOp {
    /// The operation code of the op's multi header.
    pub fn op(&self) -> i32 {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::Delete { .. } => op::DELETE,
            MultiOp::SetData { .. } => op::SET_DATA,
            MultiOp::Check { .. } => op::CHECK,
        }
    }

    /// Reads the record of an op whose multi header has type `kind`.
    ///
    /// # Errors
    /// [`JuteError::UnexpectedValue`] for a type a transaction may not hold; any other
    /// [`JuteError`] if the record is malformed.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<MultiOp, JuteError> {
        Ok(match kind {
            _ if is_create(kind) => {
                let CreateFields { path, data, acl, flags, ttl_ms } = read_create(kind, r)?;
                MultiOp::Create { op: kind, path, data, acl, flags, ttl_ms }
            }
            op::DELETE => read_path_int(r).map(|(path, version)| MultiOp::Delete { path, version })?,
            op::SET_DATA => {
                MultiOp::SetData { path: r.read_ustring()?, data: r.read_buffer()?, version: r.read_int()? }
            }
            op::CHECK => read_path_int(r).map(|(path, version)| MultiOp::Check { path, version })?,
            _ => return Err(JuteError::UnexpectedValue { field: "op type in a multi", value: kind.into() }),
        })
    }

    /// Writes the op's record (without its multi header).
    pub fn write(&self, w: &mut Writer) {
        match self {
            MultiOp::Create { op, path, data, acl, flags, ttl_ms } => {
                write_create(w, *op, path, data, acl, *flags, *ttl_ms)
            }
            MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                w.write_ustring(path);
                w.write_int(*version);
            }
            MultiOp::SetData { path, data, version } => {
                w.write_ustring(path);
                w.write_buffer(data);
                w.write_int(*version);
            }
        }
    }
}

impl MultiReadOp {
    /// The operation code of the op's multi header.
    pub fn op(&self) -> i32 {
        match self {
            MultiReadOp::GetData { .. } => op::GET_DATA,
            MultiReadOp::GetChildren { .. } => op::GET_CHILDREN,
        }
    }

    /// Reads the record of an op whose multi header has type `kind`.
    ///
    /// # Errors
    /// [`JuteError::UnexpectedValue`] for a type other than getData and getChildren; any other
    /// [`JuteError`] if the record is malformed.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<MultiReadOp, JuteError> {
        let (path, _watch) = match kind {
            op::GET_DATA | op::GET_CHILDREN => read_path_watch(r)?,
            _ => return Err(JuteError::UnexpectedValue { field: "op type in a multiRead", value: kind.into() }),
        };
        Ok(if kind == op::GET_DATA { MultiReadOp::GetData { path } } else { MultiReadOp::GetChildren { path } })
    }

    /// Writes the op's record (without its multi header), with the watch flag false.
    pub fn write(&self, w: &mut Writer) {
        let (MultiReadOp::GetData { path } | MultiReadOp::GetChildren { path }) = self;
        w.write_ustring(path);
        w.write_bool(false);
    }
}

/// Decodes a request frame's body (everything after the connect request): its header, then the
/// record its operation calls for. Bytes after the record are ignored (see the module docs).
///
/// # Errors
/// [`DecodeError::UnknownOp`] for an operation this codec does not know (the header is intact);
/// [`DecodeError::Malformed`] if the header or the record is not what it should be.
pub fn decode_request(body: &[u8]) -> Result<(RequestHeader, Request), DecodeError> {
    let mut r = Reader::new(body);
    let header = RequestHeader::read(&mut r).map_err(|error| DecodeError::Malformed { xid: None, error })?;
    match Request::read(header.op, &mut r) {
        Ok(Some(request)) => Ok((header, request)),
        Ok(None) => Err(DecodeError::UnknownOp { header }),
        Err(error) => Err(DecodeError::Malformed { xid: Some(header.xid), error }),
    }
}

/// The whole frame of a request, as a client sends it: `header` as given (normally with
/// `op == request.op()`), then the request's record.
pub fn encode_request(header: &RequestHeader, request: &Request) -> Vec<u8> {
    framed(|w| {
        header.write(w);
        request.write(w);
    })
}

#[cfg(test)]
mod tests;
