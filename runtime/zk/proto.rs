//! ZooKeeper's client protocol records, as jute (`zookeeper.jute`, ZooKeeper 3.5 to 3.9): the
//! connect handshake, request and reply headers, every client request the server understands, every
//! reply it sends, and watch notifications; plus the protocol's numeric constants.
//!
//! This module turns frame bodies into typed values and values into whole frames. It decides
//! nothing about what a request means (paths are not validated, create flags are not checked, ACLs
//! are carried as sent): the server above does that. It does no I/O.
//!
//! Leniency, on purpose and as ZooKeeper: bytes after a request's record are ignored (ZooKeeper
//! reads every record from the front of its frame and never checks the end, so a newer client may
//! append fields an older server skips), a null `ustring`, `buffer` or `vector` reads as empty, and
//! a connect request may omit its trailing read-only flag (clients up to 3.3). Nothing decided here
//! depends on trailing bytes, so strictness would only refuse clients that work with ZooKeeper.
//!
//! Invariant: decoding never panics and allocates no more than the frame's own bytes justify
//! (see `jute.rs`); every record encoded here decodes back to the same value.

use super::frame::framed;
use super::jute::{JuteError, Reader, Writer};
use crate::registry;

/// The only protocol version there is (ConnectRequest/ConnectResponse `protocolVersion`).
pub const PROTOCOL_VERSION: i32 = 0;

/// Bytes of a session password, as ZooKeeper generates it.
pub const PASSWORD_BYTES: usize = 16;

/// Operation codes (`ZooDefs.OpCode`): a request header's `op`, and a multi header's type.
pub mod op {
    /// A watch notification (never sent as a request).
    pub const NOTIFICATION: i32 = 0;
    /// Create a znode, answered with its path.
    pub const CREATE: i32 = 1;
    /// Delete a znode.
    pub const DELETE: i32 = 2;
    /// A znode's stat, if it exists.
    pub const EXISTS: i32 = 3;
    /// A znode's data and stat.
    pub const GET_DATA: i32 = 4;
    /// Set a znode's data.
    pub const SET_DATA: i32 = 5;
    /// A znode's ACL.
    pub const GET_ACL: i32 = 6;
    /// Set a znode's ACL.
    pub const SET_ACL: i32 = 7;
    /// A znode's children.
    pub const GET_CHILDREN: i32 = 8;
    /// Wait until the server has caught up with the leader.
    pub const SYNC: i32 = 9;
    /// Keep the session alive.
    pub const PING: i32 = 11;
    /// A znode's children and stat.
    pub const GET_CHILDREN2: i32 = 12;
    /// Check a znode's version (inside a multi; standalone since 3.9).
    pub const CHECK: i32 = 13;
    /// An atomic transaction of writes.
    pub const MULTI: i32 = 14;
    /// Create a znode, answered with its path and stat.
    pub const CREATE2: i32 = 15;
    /// Change the ensemble's membership.
    pub const RECONFIG: i32 = 16;
    /// Whether a watch is set.
    pub const CHECK_WATCHES: i32 = 17;
    /// Remove watches.
    pub const REMOVE_WATCHES: i32 = 18;
    /// Create a container znode (answered as create2).
    pub const CREATE_CONTAINER: i32 = 19;
    /// Delete an empty container znode.
    pub const DELETE_CONTAINER: i32 = 20;
    /// Create a znode with a TTL (answered as create2).
    pub const CREATE_TTL: i32 = 21;
    /// A batch of reads, each answered on its own.
    pub const MULTI_READ: i32 = 22;
    /// Add authentication.
    pub const AUTH: i32 = 100;
    /// Re-register watches after a reconnect.
    pub const SET_WATCHES: i32 = 101;
    /// A SASL token.
    pub const SASL: i32 = 102;
    /// The session's ephemeral znodes.
    pub const GET_EPHEMERALS: i32 = 103;
    /// The number of descendants of a znode.
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    /// Re-register watches, persistent ones included.
    pub const SET_WATCHES2: i32 = 105;
    /// Add a persistent (recursive) watch.
    pub const ADD_WATCH: i32 = 106;
    /// The identities the session is authenticated as.
    pub const WHO_AM_I: i32 = 107;
    /// Create a session (the connect handshake, never a request header).
    pub const CREATE_SESSION: i32 = -10;
    /// Close the session.
    pub const CLOSE_SESSION: i32 = -11;
    /// A failed op in a multi reply.
    pub const ERROR: i32 = -1;
}

/// Reserved xids: the requests and replies that are not matched to a client call.
pub mod xid {
    /// A watch notification from the server.
    pub const NOTIFICATION: i32 = -1;
    /// A ping and its reply.
    pub const PING: i32 = -2;
    /// An auth packet and its reply.
    pub const AUTH: i32 = -4;
    /// A set-watches request and its reply.
    pub const SET_WATCHES: i32 = -8;
}

/// Error codes (`KeeperException.Code`): a reply header's `err`.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// A system or server-side error.
    pub const SYSTEM_ERROR: i32 = -1;
    /// A runtime inconsistency (also: a multi op after the one that failed).
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    /// A data inconsistency.
    pub const DATA_INCONSISTENCY: i32 = -3;
    /// Connection to the server lost.
    pub const CONNECTION_LOSS: i32 = -4;
    /// Error while marshalling or unmarshalling data.
    pub const MARSHALLING_ERROR: i32 = -5;
    /// Operation is unimplemented.
    pub const UNIMPLEMENTED: i32 = -6;
    /// Operation timeout.
    pub const OPERATION_TIMEOUT: i32 = -7;
    /// Invalid arguments.
    pub const BAD_ARGUMENTS: i32 = -8;
    /// Unknown session (internal).
    pub const UNKNOWN_SESSION: i32 = -12;
    /// No quorum of the new config is connected and up to date with the leader.
    pub const NEW_CONFIG_NO_QUORUM: i32 = -13;
    /// Another reconfiguration is in progress.
    pub const RECONFIG_IN_PROGRESS: i32 = -14;
    /// An API error (the base of the codes below).
    pub const API_ERROR: i32 = -100;
    /// The znode does not exist.
    pub const NO_NODE: i32 = -101;
    /// Not authorised.
    pub const NO_AUTH: i32 = -102;
    /// Version conflict.
    pub const BAD_VERSION: i32 = -103;
    /// Ephemeral znodes may not have children.
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    /// The znode already exists.
    pub const NODE_EXISTS: i32 = -110;
    /// The znode has children.
    pub const NOT_EMPTY: i32 = -111;
    /// The session has expired.
    pub const SESSION_EXPIRED: i32 = -112;
    /// Invalid callback.
    pub const INVALID_CALLBACK: i32 = -113;
    /// Invalid ACL.
    pub const INVALID_ACL: i32 = -114;
    /// Authentication failed.
    pub const AUTH_FAILED: i32 = -115;
    /// The session moved to another server.
    pub const SESSION_MOVED: i32 = -118;
    /// A state-changing request was sent to a read-only server.
    pub const NOT_READ_ONLY: i32 = -119;
    /// An ephemeral znode was requested on a local session.
    pub const EPHEMERAL_ON_LOCAL_SESSION: i32 = -120;
    /// The watch to remove does not exist.
    pub const NO_WATCHER: i32 = -121;
    /// The request timed out waiting for its reply.
    pub const REQUEST_TIMEOUT: i32 = -122;
    /// Reconfiguration is disabled.
    pub const RECONFIG_DISABLED: i32 = -123;
    /// The session was closed because SASL authentication is required.
    pub const SESSION_CLOSED_REQUIRE_SASL_AUTH: i32 = -124;
    /// A hard quota was exceeded.
    pub const QUOTA_EXCEEDED: i32 = -125;
    /// The request was throttled.
    pub const THROTTLED_OP: i32 = -127;

    /// ZooKeeper's name for a code (`Code.name()`), for logs; `None` for a code it does not define.
    pub fn name(code: i32) -> Option<&'static str> {
        Some(match code {
            OK => "OK",
            SYSTEM_ERROR => "SYSTEMERROR",
            RUNTIME_INCONSISTENCY => "RUNTIMEINCONSISTENCY",
            DATA_INCONSISTENCY => "DATAINCONSISTENCY",
            CONNECTION_LOSS => "CONNECTIONLOSS",
            MARSHALLING_ERROR => "MARSHALLINGERROR",
            UNIMPLEMENTED => "UNIMPLEMENTED",
            OPERATION_TIMEOUT => "OPERATIONTIMEOUT",
            BAD_ARGUMENTS => "BADARGUMENTS",
            UNKNOWN_SESSION => "UNKNOWNSESSION",
            NEW_CONFIG_NO_QUORUM => "NEWCONFIGNOQUORUM",
            RECONFIG_IN_PROGRESS => "RECONFIGINPROGRESS",
            API_ERROR => "APIERROR",
            NO_NODE => "NONODE",
            NO_AUTH => "NOAUTH",
            BAD_VERSION => "BADVERSION",
            NO_CHILDREN_FOR_EPHEMERALS => "NOCHILDRENFOREPHEMERALS",
            NODE_EXISTS => "NODEEXISTS",
            NOT_EMPTY => "NOTEMPTY",
            SESSION_EXPIRED => "SESSIONEXPIRED",
            INVALID_CALLBACK => "INVALIDCALLBACK",
            INVALID_ACL => "INVALIDACL",
            AUTH_FAILED => "AUTHFAILED",
            SESSION_MOVED => "SESSIONMOVED",
            NOT_READ_ONLY => "NOTREADONLY",
            EPHEMERAL_ON_LOCAL_SESSION => "EPHEMERALONLOCALSESSION",
            NO_WATCHER => "NOWATCHER",
            REQUEST_TIMEOUT => "REQUESTTIMEOUT",
            RECONFIG_DISABLED => "RECONFIGDISABLED",
            SESSION_CLOSED_REQUIRE_SASL_AUTH => "SESSIONCLOSEDREQUIRESASLAUTH",
            QUOTA_EXCEEDED => "QUOTAEXCEEDED",
            THROTTLED_OP => "THROTTLEDOP",
            _ => return None,
        })
    }
}

/// Watch event types (`Watcher.Event.EventType`): a notification's `type`.
pub mod event_type {
    /// A change of connection state, not of a znode.
    pub const NONE: i32 = -1;
    /// A watched znode was created.
    pub const NODE_CREATED: i32 = 1;
    /// A watched znode was deleted.
    pub const NODE_DELETED: i32 = 2;
    /// A watched znode's data changed.
    pub const NODE_DATA_CHANGED: i32 = 3;
    /// A watched znode's children changed.
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    /// A data watch was removed.
    pub const DATA_WATCH_REMOVED: i32 = 5;
    /// A child watch was removed.
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    /// A persistent watch was removed.
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
}

/// Session states (`Watcher.Event.KeeperState`): a notification's `state`.
pub mod keeper_state {
    /// Unknown (deprecated).
    pub const UNKNOWN: i32 = -1;
    /// Disconnected.
    pub const DISCONNECTED: i32 = 0;
    /// Not synced (deprecated).
    pub const NO_SYNC_CONNECTED: i32 = 1;
    /// Connected: every notification on a live session carries this.
    pub const SYNC_CONNECTED: i32 = 3;
    /// Authentication failed.
    pub const AUTH_FAILED: i32 = 4;
    /// Connected to a read-only server.
    pub const CONNECTED_READ_ONLY: i32 = 5;
    /// SASL authentication succeeded.
    pub const SASL_AUTHENTICATED: i32 = 6;
    /// The session expired.
    pub const EXPIRED: i32 = -112;
    /// The client closed the session.
    pub const CLOSED: i32 = 7;
}

/// Watch kinds in `checkWatches` and `removeWatches` (`Watcher.WatcherType`).
pub mod watcher_type {
    /// Child watches.
    pub const CHILDREN: i32 = 1;
    /// Data (and exists) watches.
    pub const DATA: i32 = 2;
    /// Any watch.
    pub const ANY: i32 = 3;
    /// Persistent watches.
    pub const PERSISTENT: i32 = 4;
    /// Persistent recursive watches.
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// `addWatch` modes (`ZooDefs.AddWatchModes`).
pub mod add_watch_mode {
    /// Fires on the znode's data and children changes, and stays.
    pub const PERSISTENT: i32 = 0;
    /// Fires on every change to the znode and its descendants, and stays.
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// Create flags (`CreateMode.toFlag`).
pub mod create_flags {
    use crate::registry::CreateMode;

    /// Persistent.
    pub const PERSISTENT: i32 = 0;
    /// Ephemeral.
    pub const EPHEMERAL: i32 = 1;
    /// Persistent and sequential.
    pub const PERSISTENT_SEQUENTIAL: i32 = 2;
    /// Ephemeral and sequential.
    pub const EPHEMERAL_SEQUENTIAL: i32 = 3;
    /// Container.
    pub const CONTAINER: i32 = 4;
    /// Persistent with a TTL.
    pub const PERSISTENT_WITH_TTL: i32 = 5;
    /// Persistent and sequential with a TTL.
    pub const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;

    /// The registry mode for `flags`, a TTL mode as its persistent counterpart (the TTL itself
    /// travels in the request); `None` for flags ZooKeeper does not define.
    pub fn mode(flags: i32) -> Option<CreateMode> {
        Some(match flags {
            PERSISTENT | PERSISTENT_WITH_TTL => CreateMode::Persistent,
            EPHEMERAL => CreateMode::Ephemeral,
            PERSISTENT_SEQUENTIAL | PERSISTENT_SEQUENTIAL_WITH_TTL => CreateMode::PersistentSequential,
            EPHEMERAL_SEQUENTIAL => CreateMode::EphemeralSequential,
            CONTAINER => CreateMode::Container,
            _ => return None,
        })
    }

    /// Whether `flags` is a TTL mode: ZooKeeper requires these, and only these, in a createTTL.
    pub fn has_ttl(flags: i32) -> bool {
        matches!(flags, PERSISTENT_WITH_TTL | PERSISTENT_SEQUENTIAL_WITH_TTL)
    }
}

/// ACL permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read data and list children.
    pub const READ: i32 = 1;
    /// Set data.
    pub const WRITE: i32 = 2;
    /// Create children.
    pub const CREATE: i32 = 4;
    /// Delete children.
    pub const DELETE: i32 = 8;
    /// Set the ACL.
    pub const ADMIN: i32 = 16;
    /// Everything.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// The first frame a client sends (it has no request header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Always [`PROTOCOL_VERSION`].
    pub protocol_version: i32,
    /// The last zxid the client saw; a server behind it must refuse the client.
    pub last_zxid_seen: i64,
    /// The session timeout the client asks for.
    pub timeout_ms: i32,
    /// The session to resume, or 0 for a new one.
    pub session_id: i64,
    /// The session's password when resuming (16 zero bytes otherwise).
    pub password: Vec<u8>,
    /// Whether the client accepts a read-only server; `None` when it omitted the flag (clients up
    /// to 3.3), which must then be answered without it.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    /// Decodes a connect frame's body. Bytes after the read-only flag are ignored.
    ///
    /// # Errors
    /// A [`JuteError`] if a field before the read-only flag is missing or malformed.
    pub fn decode(body: &[u8]) -> Result<ConnectRequest, JuteError> {
        let mut r = Reader::new(body);
        Ok(ConnectRequest {
            protocol_version: r.read_int()?,
            last_zxid_seen: r.read_long()?,
            timeout_ms: r.read_int()?,
            session_id: r.read_long()?,
            password: r.read_buffer()?,
            read_only: if r.is_empty() { None } else { Some(r.read_bool()?) },
        })
    }

    /// Writes the record (the read-only flag only if it is `Some`).
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.protocol_version);
        w.write_long(self.last_zxid_seen);
        w.write_int(self.timeout_ms);
        w.write_long(self.session_id);
        w.write_buffer(&self.password);
        if let Some(read_only) = self.read_only {
            w.write_bool(read_only);
        }
    }

    /// The whole frame a client sends.
    pub fn encode(&self) -> Vec<u8> {
        framed(|w| self.write(w))
    }
}

/// The server's answer to a [`ConnectRequest`] (it has no reply header). A refused or expired
/// session is answered with timeout 0, session 0 and a zero password, then the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Always [`PROTOCOL_VERSION`].
    pub protocol_version: i32,
    /// The negotiated session timeout.
    pub timeout_ms: i32,
    /// The session's id.
    pub session_id: i64,
    /// The session's password, for resuming it elsewhere.
    pub password: Vec<u8>,
    /// Whether this server is read-only; `Some` exactly when the request carried the flag
    /// (answer in kind: a 3.3 client does not expect the byte).
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    /// Decodes a connect reply's body. Bytes after the read-only flag are ignored.
    ///
    /// # Errors
    /// A [`JuteError`] if a field before the read-only flag is missing or malformed.
    pub fn decode(body: &[u8]) -> Result<ConnectResponse, JuteError> {
        let mut r = Reader::new(body);
        Ok(ConnectResponse {
            protocol_version: r.read_int()?,
            timeout_ms: r.read_int()?,
            session_id: r.read_long()?,
            password: r.read_buffer()?,
            read_only: if r.is_empty() { None } else { Some(r.read_bool()?) },
        })
    }

    /// Writes the record (the read-only flag only if it is `Some`).
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.protocol_version);
        w.write_int(self.timeout_ms);
        w.write_long(self.session_id);
        w.write_buffer(&self.password);
        if let Some(read_only) = self.read_only {
            w.write_bool(read_only);
        }
    }
}

/// The whole frame answering a connect request.
pub fn encode_connect_response(response: &ConnectResponse) -> Vec<u8> {
    framed(|w| response.write(w))
}

/// The header of every request after the connect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestHeader {
    /// The client's request number, echoed in the reply (or one of [`xid`]).
    pub xid: i32,
    /// The operation, one of [`op`].
    pub op: i32,
}

impl RequestHeader {
    /// Reads the record.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if fewer than 8 bytes are left.
    pub fn read(r: &mut Reader<'_>) -> Result<RequestHeader, JuteError> {
        Ok(RequestHeader { xid: r.read_int()?, op: r.read_int()? })
    }

    /// Writes the record.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.xid);
        w.write_int(self.op);
    }
}

/// The header of every reply after the connect response, and of every notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReplyHeader {
    /// The request's xid (or one of [`xid`]).
    pub xid: i32,
    /// The last zxid the server has applied.
    pub zxid: i64,
    /// One of [`code`]; a non-zero code means no body follows (except for multi).
    pub err: i32,
}

impl ReplyHeader {
    /// Reads the record.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if fewer than 16 bytes are left.
    pub fn read(r: &mut Reader<'_>) -> Result<ReplyHeader, JuteError> {
        Ok(ReplyHeader { xid: r.read_int()?, zxid: r.read_long()?, err: r.read_int()? })
    }

    /// Writes the record.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.xid);
        w.write_long(self.zxid);
        w.write_int(self.err);
    }
}

/// A znode's stat as jute carries it (68 bytes, in jute's field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stat {
    /// Zxid of the create.
    pub czxid: i64,
    /// Zxid of the last data change.
    pub mzxid: i64,
    /// Creation time, Unix ms.
    pub ctime: i64,
    /// Last data change time, Unix ms.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Number of changes to the children.
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral znode, 0 otherwise.
    pub ephemeral_owner: i64,
    /// Bytes of data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Zxid of the last change to the children.
    pub pzxid: i64,
}

impl Stat {
    /// Reads the record.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if fewer than 68 bytes are left.
    pub fn read(r: &mut Reader<'_>) -> Result<Stat, JuteError> {
        Ok(Stat {
            czxid: r.read_long()?,
            mzxid: r.read_long()?,
            ctime: r.read_long()?,
            mtime: r.read_long()?,
            version: r.read_int()?,
            cversion: r.read_int()?,
            aversion: r.read_int()?,
            ephemeral_owner: r.read_long()?,
            data_length: r.read_int()?,
            num_children: r.read_int()?,
            pzxid: r.read_long()?,
        })
    }

    /// Writes the record.
    pub fn write(&self, w: &mut Writer) {
        w.write_long(self.czxid);
        w.write_long(self.mzxid);
        w.write_long(self.ctime);
        w.write_long(self.mtime);
        w.write_int(self.version);
        w.write_int(self.cversion);
        w.write_int(self.aversion);
        w.write_long(self.ephemeral_owner);
        w.write_int(self.data_length);
        w.write_int(self.num_children);
        w.write_long(self.pzxid);
    }
}

/// A registry stat as ZooKeeper's. Versions and the owner keep their bits (`as`): a version past
/// `i32::MAX` wraps as Java's `int` does, and a client hands it back unchanged for a conditional
/// write, so the server's reverse cast sees the same value; likewise the owner equals the session
/// id the client was given. Zxids, times and counts saturate (they never get near the bound).
/// The registry keeps no ACL version: `aversion` is 0.
impl From<&registry::Stat> for Stat {
    fn from(stat: &registry::Stat) -> Stat {
        let long = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let count = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        Stat {
            czxid: long(stat.czxid),
            mzxid: long(stat.mzxid),
            ctime: long(stat.ctime),
            mtime: long(stat.mtime),
            version: stat.version as i32,
            cversion: stat.cversion as i32,
            aversion: 0,
            ephemeral_owner: stat.ephemeral_owner as i64,
            data_length: count(stat.data_length),
            num_children: count(stat.num_children),
            pzxid: long(stat.pzxid),
        }
    }
}

/// One ACL entry: permissions for an identity (`ACL` with its `Id` inlined).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Acl {
    /// Permission bits, see [`perms`].
    pub perms: i32,
    /// The scheme (`world`, `digest`, `ip`, `auth`, ...).
    pub scheme: String,
    /// The identity within the scheme (`anyone`, `user:hash`, ...).
    pub id: String,
}

impl Acl {
    /// Reads the record.
    ///
    /// # Errors
    /// A [`JuteError`] if a field is missing or malformed.
    pub fn read(r: &mut Reader<'_>) -> Result<Acl, JuteError> {
        Ok(Acl { perms: r.read_int()?, scheme: r.read_ustring()?, id: r.read_ustring()? })
    }

    /// Writes the record.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.perms);
        w.write_ustring(&self.scheme);
        w.write_ustring(&self.id);
    }
}

/// A watch notification's body (`WatcherEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct WatcherEvent {
    /// One of [`event_type`].
    pub kind: i32,
    /// One of [`keeper_state`].
    pub state: i32,
    /// The znode (empty for a state change).
    pub path: String,
}

impl WatcherEvent {
    /// Reads the record.
    ///
    /// # Errors
    /// A [`JuteError`] if a field is missing or malformed.
    pub fn read(r: &mut Reader<'_>) -> Result<WatcherEvent, JuteError> {
        Ok(WatcherEvent { kind: r.read_int()?, state: r.read_int()?, path: r.read_ustring()? })
    }

    /// Writes the record.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.kind);
        w.write_int(self.state);
        w.write_ustring(&self.path);
    }
}

/// The whole frame of a watch notification: header xid -1, `zxid`, err 0, then the event.
pub fn encode_watcher_event(zxid: i64, kind: i32, state: i32, path: &str) -> Vec<u8> {
    framed(|w| {
        ReplyHeader { xid: xid::NOTIFICATION, zxid, err: code::OK }.write(w);
        w.write_int(kind);
        w.write_int(state);
        w.write_ustring(path);
    })
}

/// Decodes a notification frame's body.
///
/// # Errors
/// A [`JuteError`] if the header or the event is missing or malformed.
pub fn decode_watcher_event(body: &[u8]) -> Result<(ReplyHeader, WatcherEvent), JuteError> {
    let mut r = Reader::new(body);
    Ok((ReplyHeader::read(&mut r)?, WatcherEvent::read(&mut r)?))
}

/// What precedes each op and each result of a multi, and ends the list (`MultiHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MultiHeader {
    kind: i32,
    done: bool,
    err: i32,
}

impl MultiHeader {
    /// The header that ends every multi request and reply.
    const END: MultiHeader = MultiHeader { kind: -1, done: true, err: -1 };

    fn read(r: &mut Reader<'_>) -> Result<MultiHeader, JuteError> {
        Ok(MultiHeader { kind: r.read_int()?, done: r.read_bool()?, err: r.read_int()? })
    }

    fn write(&self, w: &mut Writer) {
        w.write_int(self.kind);
        w.write_bool(self.done);
        w.write_int(self.err);
    }
}

/// Reads multi entries until the `done` header, as ZooKeeper does (whatever that header's type).
/// Every entry consumes at least its 9-byte header, so the count is bounded by the bytes.
fn read_multi<'a, T>(
    r: &mut Reader<'a>,
    mut read_entry: impl FnMut(MultiHeader, &mut Reader<'a>) -> Result<T, JuteError>,
) -> Result<Vec<T>, JuteError> {
    let mut entries = Vec::new();
    loop {
        let header = MultiHeader::read(r)?;
        if header.done {
            return Ok(entries);
        }
        entries.push(read_entry(header, r)?);
    }
}

// Requests

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

fn read_strings(r: &mut Reader<'_>) -> Result<Vec<String>, JuteError> {
    r.read_vec(Reader::read_ustring)
}

fn write_strings(w: &mut Writer, strings: &[String]) {
    w.write_vec(strings, |w, s| w.write_ustring(s));
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

// Replies

/// A reply's body, by the shape of its jute record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: delete, ping, auth, setWatches, closeSession, removeWatches, checkWatches,
    /// addWatch, deleteContainer, and every reply whose header carries an error.
    Empty,
    /// `CreateResponse`, for [`op::CREATE`].
    Create {
        /// The znode created (with its sequence number).
        path: String,
    },
    /// `Create2Response`, for create2, createContainer and createTTL.
    Create2 {
        /// The znode created.
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// A lone stat: `ExistsResponse`, `SetDataResponse`, `SetACLResponse`, and a standalone check.
    Stat(Stat),
    /// `GetDataResponse`.
    GetData {
        /// The data.
        data: Vec<u8>,
        /// The znode's stat.
        stat: Stat,
    },
    /// `GetACLResponse`.
    GetAcl {
        /// The ACL.
        acl: Vec<Acl>,
        /// The znode's stat.
        stat: Stat,
    },
    /// `GetChildrenResponse`.
    GetChildren {
        /// The children's names.
        children: Vec<String>,
    },
    /// `GetChildren2Response`.
    GetChildren2 {
        /// The children's names.
        children: Vec<String>,
        /// The parent's stat.
        stat: Stat,
    },
    /// `SyncResponse`.
    Sync {
        /// The path of the request.
        path: String,
    },
    /// A `MultiResponse` to a multi: one result per op, in order.
    Multi(Vec<MultiResult>),
    /// A `MultiResponse` to a multiRead: one result per op, in order.
    MultiRead(Vec<MultiReadResult>),
    /// `GetEphemeralsResponse`.
    GetEphemerals {
        /// The session's ephemeral znodes under the prefix.
        paths: Vec<String>,
    },
    /// `GetAllChildrenNumberResponse`.
    GetAllChildrenNumber {
        /// The number of descendants.
        count: i32,
    },
    /// `WhoAmIResponse`.
    WhoAmI {
        /// The session's identities, as (auth scheme, user) (`ClientInfo`).
        clients: Vec<(String, String)>,
    },
}

/// One op's result in a multi reply.
///
/// A transaction that fails answers every op with [`MultiResult::Error`]: the ops before the
/// failing one with [`code::OK`], the failing one with its code, the ones after it with
/// [`code::RUNTIME_INCONSISTENCY`] (ZooKeeper 3.x: `DataTree.processTxn` and
/// `PrepRequestProcessor`; see [`MultiResult::failed`]). The reply header's `err` stays 0 for a
/// failed transaction (`FinalRequestProcessor` never sets it for multi), and clients only read the
/// results when it is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// A [`op::CREATE`] op's result (`CreateResponse`).
    Create {
        /// The znode created.
        path: String,
    },
    /// A create2, createContainer or createTTL op's result (`Create2Response`).
    Create2 {
        /// The znode created.
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// A delete's result (no record).
    Delete,
    /// A set-data's result (`SetDataResponse`).
    SetData {
        /// The znode's new stat.
        stat: Stat,
    },
    /// A check's result (no record).
    Check,
    /// An op that did not apply (`ErrorResponse`).
    Error {
        /// Why, one of [`code`].
        err: i32,
    },
}

/// One op's result in a multiRead reply; each op succeeds or fails on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiReadResult {
    /// A getData's result (`GetDataResponse`).
    GetData {
        /// The data.
        data: Vec<u8>,
        /// The znode's stat.
        stat: Stat,
    },
    /// A getChildren's result (`GetChildrenResponse`).
    GetChildren {
        /// The children's names.
        children: Vec<String>,
    },
    /// A read that failed (`ErrorResponse`).
    Error {
        /// Why, one of [`code`].
        err: i32,
    },
}

fn write_children_stat(w: &mut Writer, children: &[String], stat: Option<&Stat>) {
    write_strings(w, children);
    if let Some(stat) = stat {
        stat.write(w);
    }
}

impl Response {
    /// Writes the body (without the header).
    pub fn write(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Sync { path } => w.write_ustring(path),
            Response::Create2 { path, stat } => {
                w.write_ustring(path);
                stat.write(w);
            }
            Response::Stat(stat) => stat.write(w),
            Response::GetData { data, stat } => {
                w.write_buffer(data);
                stat.write(w);
            }
            Response::GetAcl { acl, stat } => {
                w.write_vec(acl, |w, entry| entry.write(w));
                stat.write(w);
            }
            Response::GetChildren { children } | Response::GetEphemerals { paths: children } => {
                write_children_stat(w, children, None);
            }
            Response::GetChildren2 { children, stat } => write_children_stat(w, children, Some(stat)),
            Response::Multi(results) => {
                for result in results {
                    MultiHeader { kind: result.op(), done: false, err: result.err() }.write(w);
                    result.write(w);
                }
                MultiHeader::END.write(w);
            }
            Response::MultiRead(results) => {
                for result in results {
                    MultiHeader { kind: result.op(), done: false, err: result.err() }.write(w);
                    result.write(w);
                }
                MultiHeader::END.write(w);
            }
            Response::GetAllChildrenNumber { count } => w.write_int(*count),
            Response::WhoAmI { clients } => w.write_vec(clients, |w, (scheme, user)| {
                w.write_ustring(scheme);
                w.write_ustring(user);
            }),
        }
    }

    /// Reads the body of a successful reply to operation `kind` (as the client remembers it for
    /// the xid). Operations whose reply has no record, and unknown ones, read as
    /// [`Response::Empty`]; bytes after the record are left unread.
    ///
    /// # Errors
    /// A [`JuteError`] if the body is not the record the operation's reply should be.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<Response, JuteError> {
        Ok(match kind {
            op::CREATE => Response::Create { path: r.read_ustring()? },
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                Response::Create2 { path: r.read_ustring()?, stat: Stat::read(r)? }
            }
            op::EXISTS | op::SET_DATA | op::SET_ACL | op::CHECK => Response::Stat(Stat::read(r)?),
            op::GET_DATA | op::RECONFIG => Response::GetData { data: r.read_buffer()?, stat: Stat::read(r)? },
            op::GET_ACL => Response::GetAcl { acl: r.read_vec(Acl::read)?, stat: Stat::read(r)? },
            op::GET_CHILDREN => Response::GetChildren { children: read_strings(r)? },
            op::GET_CHILDREN2 => Response::GetChildren2 { children: read_strings(r)?, stat: Stat::read(r)? },
            op::SYNC => Response::Sync { path: r.read_ustring()? },
            op::MULTI => Response::Multi(read_multi(r, |header, r| MultiResult::read(header.kind, r))?),
            op::MULTI_READ => Response::MultiRead(read_multi(r, |header, r| MultiReadResult::read(header.kind, r))?),
            op::GET_EPHEMERALS => Response::GetEphemerals { paths: read_strings(r)? },
            op::GET_ALL_CHILDREN_NUMBER => Response::GetAllChildrenNumber { count: r.read_int()? },
            op::WHO_AM_I => Response::WhoAmI { clients: r.read_vec(|r| Ok((r.read_ustring()?, r.read_ustring()?)))? },
            _ => Response::Empty,
        })
    }
}

impl MultiResult {
    /// The results of a transaction of `len` ops whose op `failed_at` failed with `err`: `OK`
    /// before it, `RUNTIME_INCONSISTENCY` after it, as ZooKeeper answers.
    pub fn failed(len: usize, failed_at: usize, err: i32) -> Vec<MultiResult> {
        (0..len)
            .map(|index| MultiResult::Error {
                err: match index.cmp(&failed_at) {
                    std::cmp::Ordering::Less => code::OK,
                    std::cmp::Ordering::Equal => err,
                    std::cmp::Ordering::Greater => code::RUNTIME_INCONSISTENCY,
                },
            })
            .collect()
    }

    /// The type of the result's multi header: the op's code, or [`op::ERROR`].
    pub fn op(&self) -> i32 {
        match self {
            MultiResult::Create { .. } => op::CREATE,
            MultiResult::Create2 { .. } => op::CREATE2,
            MultiResult::Delete => op::DELETE,
            MultiResult::SetData { .. } => op::SET_DATA,
            MultiResult::Check => op::CHECK,
            MultiResult::Error { .. } => op::ERROR,
        }
    }

    /// The `err` of the result's multi header: the error's code, 0 otherwise.
    fn err(&self) -> i32 {
        match self {
            MultiResult::Error { err } => *err,
            _ => code::OK,
        }
    }

    /// Reads the record of a result whose multi header has type `kind`.
    ///
    /// # Errors
    /// [`JuteError::UnexpectedValue`] for a type a transaction's reply may not hold; any other
    /// [`JuteError`] if the record is malformed.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<MultiResult, JuteError> {
        Ok(match kind {
            op::CREATE => MultiResult::Create { path: r.read_ustring()? },
            op::CREATE2 => MultiResult::Create2 { path: r.read_ustring()?, stat: Stat::read(r)? },
            op::DELETE => MultiResult::Delete,
            op::SET_DATA => MultiResult::SetData { stat: Stat::read(r)? },
            op::CHECK => MultiResult::Check,
            op::ERROR => MultiResult::Error { err: r.read_int()? },
            _ => return Err(JuteError::UnexpectedValue { field: "result type in a multi", value: kind.into() }),
        })
    }

    /// Writes the result's record (without its multi header).
    pub fn write(&self, w: &mut Writer) {
        match self {
            MultiResult::Create { path } => w.write_ustring(path),
            MultiResult::Create2 { path, stat } => {
                w.write_ustring(path);
                stat.write(w);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData { stat } => stat.write(w),
            MultiResult::Error { err } => w.write_int(*err),
        }
    }
}

impl MultiReadResult {
    /// The type of the result's multi header: the op's code, or [`op::ERROR`].
    pub fn op(&self) -> i32 {
        match self {
            MultiReadResult::GetData { .. } => op::GET_DATA,
            MultiReadResult::GetChildren { .. } => op::GET_CHILDREN,
            MultiReadResult::Error { .. } => op::ERROR,
        }
    }

    fn err(&self) -> i32 {
        match self {
            MultiReadResult::Error { err } => *err,
            _ => code::OK,
        }
    }

    /// Reads the record of a result whose multi header has type `kind`.
    ///
    /// # Errors
    /// [`JuteError::UnexpectedValue`] for a type a multiRead reply may not hold; any other
    /// [`JuteError`] if the record is malformed.
    pub fn read(kind: i32, r: &mut Reader<'_>) -> Result<MultiReadResult, JuteError> {
        Ok(match kind {
            op::GET_DATA => MultiReadResult::GetData { data: r.read_buffer()?, stat: Stat::read(r)? },
            op::GET_CHILDREN => MultiReadResult::GetChildren { children: read_strings(r)? },
            op::ERROR => MultiReadResult::Error { err: r.read_int()? },
            _ => return Err(JuteError::UnexpectedValue { field: "result type in a multiRead", value: kind.into() }),
        })
    }

    /// Writes the result's record (without its multi header).
    pub fn write(&self, w: &mut Writer) {
        match self {
            MultiReadResult::GetData { data, stat } => {
                w.write_buffer(data);
                stat.write(w);
            }
            MultiReadResult::GetChildren { children } => write_strings(w, children),
            MultiReadResult::Error { err } => w.write_int(*err),
        }
    }
}

/// Whether a reply carries its body even when the header reports an error: only multi and
/// multiRead results do (ZooKeeper sends the header alone otherwise, and clients read no body
/// after an error).
fn body_survives_error(body: &Response) -> bool {
    matches!(body, Response::Multi(_) | Response::MultiRead(_))
}

/// The whole frame of a reply: `header`, then `body` unless `header.err` is non-zero (a
/// [`Response::Multi`] or [`Response::MultiRead`] body is always written).
pub fn encode_reply(header: &ReplyHeader, body: &Response) -> Vec<u8> {
    framed(|w| {
        header.write(w);
        if header.err == code::OK || body_survives_error(body) {
            body.write(w);
        }
    })
}

/// Decodes a reply frame's body, given the operation of the request it answers (a client keeps
/// that per xid; a notification, xid -1, is [`decode_watcher_event`]'s). A reply whose header
/// reports an error reads as [`Response::Empty`], except a multi or multiRead reply that still
/// carries results.
///
/// # Errors
/// A [`JuteError`] if the header or the body is malformed.
pub fn decode_reply(body: &[u8], kind: i32) -> Result<(ReplyHeader, Response), JuteError> {
    let mut r = Reader::new(body);
    let header = ReplyHeader::read(&mut r)?;
    let carries_results = matches!(kind, op::MULTI | op::MULTI_READ) && !r.is_empty();
    let response =
        if header.err == code::OK || carries_results { Response::read(kind, &mut r)? } else { Response::Empty };
    Ok((header, response))
}

#[cfg(test)]
mod tests {
    use super::super::frame::next_frame;
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The body of a whole frame, checking that the frame is exactly one.
    fn body_of(frame: &[u8]) -> &[u8] {
        let (used, body) = next_frame(frame, usize::MAX).expect("a valid header").expect("a whole frame");
        assert_eq!(used, frame.len(), "exactly one frame");
        body
    }

    fn ustring(text: &str) -> Vec<u8> {
        let mut bytes = (text.len() as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    /// One request of every kind, with an xid each.
    fn every_request() -> Vec<Request> {
        let acl = vec![Acl { perms: perms::ALL, scheme: "world".into(), id: "anyone".into() }];
        let create = |op, ttl_ms| Request::Create {
            op,
            path: "/a".into(),
            data: b"x".to_vec(),
            acl: acl.clone(),
            flags: create_flags::PERSISTENT_SEQUENTIAL,
            ttl_ms,
        };
        let names = || vec!["/w".to_string(), "/v".to_string()];
        vec![
            create(op::CREATE, None),
            create(op::CREATE2, None),
            create(op::CREATE_CONTAINER, None),
            create(op::CREATE_TTL, Some(60_000)),
            Request::Delete { path: "/a".into(), version: -1 },
            Request::Exists { path: "/a".into(), watch: true },
            Request::GetData { path: "/a".into(), watch: false },
            Request::SetData { path: "/a".into(), data: vec![1, 2], version: 4 },
            Request::GetAcl { path: "/a".into() },
            Request::SetAcl { path: "/a".into(), acl: acl.clone(), version: 0 },
            Request::GetChildren { path: "/".into(), watch: true },
            Request::GetChildren2 { path: "/".into(), watch: false },
            Request::Sync { path: "/".into() },
            Request::Ping,
            Request::Check { path: "/a".into(), version: 2 },
            Request::Multi(vec![
                MultiOp::Create {
                    op: op::CREATE_TTL,
                    path: "/t".into(),
                    data: vec![],
                    acl: acl.clone(),
                    flags: 5,
                    ttl_ms: Some(1),
                },
                MultiOp::Delete { path: "/a".into(), version: 1 },
                MultiOp::SetData { path: "/b".into(), data: vec![9], version: -1 },
                MultiOp::Check { path: "/c".into(), version: 0 },
            ]),
            Request::Multi(vec![]),
            Request::MultiRead(vec![
                MultiReadOp::GetData { path: "/a".into() },
                MultiReadOp::GetChildren { path: "/".into() },
            ]),
            Request::Reconfig,
            Request::CheckWatches { path: "/a".into(), kind: watcher_type::DATA },
            Request::RemoveWatches { path: "/a".into(), kind: watcher_type::ANY },
            Request::DeleteContainer { path: "/c".into() },
            Request::Auth { kind: 0, scheme: "digest".into(), auth: b"u:p".to_vec() },
            Request::SetWatches { relative_zxid: 7, data: names(), exist: vec![], child: names() },
            Request::SetWatches2 {
                relative_zxid: 8,
                data: names(),
                exist: names(),
                child: vec![],
                persistent: names(),
                persistent_recursive: vec!["/r".into()],
            },
            Request::Sasl,
            Request::GetEphemerals { prefix: "/".into() },
            Request::GetAllChildrenNumber { path: "/".into() },
            Request::AddWatch { path: "/a".into(), mode: add_watch_mode::PERSISTENT_RECURSIVE },
            Request::WhoAmI,
            Request::CloseSession,
        ]
    }

    fn sample_stat() -> Stat {
        Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        }
    }

    /// One reply of every shape, each with the op it answers.
    fn every_response() -> Vec<(i32, Response)> {
        let stat = sample_stat();
        let acl = vec![Acl { perms: perms::READ, scheme: "digest".into(), id: "u:h".into() }];
        vec![
            (op::DELETE, Response::Empty),
            (op::CREATE, Response::Create { path: "/a0000000001".into() }),
            (op::CREATE2, Response::Create2 { path: "/a".into(), stat }),
            (op::EXISTS, Response::Stat(stat)),
            (op::GET_DATA, Response::GetData { data: b"hi".to_vec(), stat }),
            (op::GET_ACL, Response::GetAcl { acl, stat }),
            (op::GET_CHILDREN, Response::GetChildren { children: vec!["a".into(), "b".into()] }),
            (op::GET_CHILDREN2, Response::GetChildren2 { children: vec!["a".into()], stat }),
            (op::SYNC, Response::Sync { path: "/".into() }),
            (
                op::MULTI,
                Response::Multi(vec![
                    MultiResult::Create { path: "/a".into() },
                    MultiResult::Create2 { path: "/b".into(), stat },
                    MultiResult::Delete,
                    MultiResult::SetData { stat },
                    MultiResult::Check,
                ]),
            ),
            (op::MULTI, Response::Multi(MultiResult::failed(3, 1, code::NO_NODE))),
            (
                op::MULTI_READ,
                Response::MultiRead(vec![
                    MultiReadResult::GetData { data: vec![1], stat },
                    MultiReadResult::GetChildren { children: vec!["c".into()] },
                    MultiReadResult::Error { err: code::NO_NODE },
                ]),
            ),
            (op::GET_EPHEMERALS, Response::GetEphemerals { paths: vec!["/e".into()] }),
            (op::GET_ALL_CHILDREN_NUMBER, Response::GetAllChildrenNumber { count: 42 }),
            (op::WHO_AM_I, Response::WhoAmI { clients: vec![("ip".into(), "127.0.0.1".into())] }),
        ]
    }

    #[test]
    fn a_connect_request_from_a_3_5_client_has_45_bytes() {
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0x1_0000_0002,
            timeout_ms: 30_000,
            session_id: 0,
            password: vec![0; 16],
            read_only: Some(false),
        };
        let mut golden = vec![0, 0, 0, 45, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0x75, 0x30];
        golden.extend_from_slice(&[0; 8]);
        golden.extend_from_slice(&[0, 0, 0, 16]);
        golden.extend_from_slice(&[0; 16]);
        golden.push(0);
        assert_eq!(request.encode(), golden);
        assert_eq!(ConnectRequest::decode(body_of(&golden)), Ok(request));
    }

    #[test]
    fn an_old_client_omits_read_only_and_is_answered_in_kind() {
        let body = &body_of(&ConnectRequest { password: vec![0; 16], ..ConnectRequest::default() }.encode()).to_vec();
        assert_eq!(body.len(), 44);
        assert_eq!(ConnectRequest::decode(body).map(|r| r.read_only), Ok(None));
        // Shorter is an error, at every length.
        for cut in 0..body.len() {
            assert!(ConnectRequest::decode(&body[..cut]).is_err(), "prefix of {cut} bytes");
        }
        // Bytes after the flag are ignored.
        let mut longer = body.clone();
        longer.extend_from_slice(&[1, 0xaa, 0xbb]);
        assert_eq!(ConnectRequest::decode(&longer).map(|r| r.read_only), Ok(Some(true)));

        let response = ConnectResponse { timeout_ms: 4000, session_id: 5, password: vec![7; 16], ..Default::default() };
        let old = encode_connect_response(&response);
        assert_eq!(old.len(), 4 + 4 + 4 + 8 + 4 + 16);
        let new = encode_connect_response(&ConnectResponse { read_only: Some(false), ..response.clone() });
        assert_eq!(new.len(), old.len() + 1);
        assert_eq!(ConnectResponse::decode(body_of(&old)), Ok(response.clone()));
        assert_eq!(ConnectResponse::decode(body_of(&new)).map(|r| r.read_only), Ok(Some(false)));
    }

    #[test]
    fn golden_requests() {
        let get_data = encode_request(
            &RequestHeader { xid: 1, op: op::GET_DATA },
            &Request::GetData { path: "/a".into(), watch: true },
        );
        assert_eq!(get_data, [0, 0, 0, 15, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2, b'/', b'a', 1]);

        let ping = encode_request(&RequestHeader { xid: xid::PING, op: op::PING }, &Request::Ping);
        assert_eq!(ping, [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);

        // A multi with one check: header {13, false, -1}, CheckVersionRequest, end {-1, true, -1}.
        let multi = encode_request(
            &RequestHeader { xid: 2, op: op::MULTI },
            &Request::Multi(vec![MultiOp::Check { path: "/a".into(), version: 3 }]),
        );
        let mut golden = [[0, 0, 0, 2], [0, 0, 0, 14], [0, 0, 0, 13]].concat();
        golden.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        golden.extend(ustring("/a"));
        golden.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(body_of(&multi), golden);
    }

    #[test]
    fn golden_replies() {
        let event = encode_watcher_event(5, event_type::NODE_DATA_CHANGED, keeper_state::SYNC_CONNECTED, "/a");
        let mut golden = vec![0, 0, 0, 30, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0];
        golden.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 3]);
        golden.extend(ustring("/a"));
        assert_eq!(event, golden);
        let expected = WatcherEvent { kind: 3, state: 3, path: "/a".into() };
        assert_eq!(
            decode_watcher_event(body_of(&event)),
            Ok((ReplyHeader { xid: xid::NOTIFICATION, zxid: 5, err: 0 }, expected))
        );

        // A failed transaction of two ops, the second failing with noNode: header err 0, every
        // result an ErrorResponse, the first with OK.
        let header = ReplyHeader { xid: 7, zxid: 9, err: code::OK };
        let reply = encode_reply(&header, &Response::Multi(MultiResult::failed(2, 1, code::NO_NODE)));
        let mut golden = [[0, 0, 0, 7], [0, 0, 0, 0], [0, 0, 0, 9], [0, 0, 0, 0]].concat();
        golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x9b, 0xff, 0xff, 0xff, 0x9b]);
        golden.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(body_of(&reply), golden);
    }

    #[test]
    fn an_error_reply_is_the_header_alone_except_for_multi() {
        let header = ReplyHeader { xid: 3, zxid: 1, err: code::NO_NODE };
        let reply = encode_reply(&header, &Response::Stat(sample_stat()));
        assert_eq!(body_of(&reply).len(), 16);
        assert_eq!(decode_reply(body_of(&reply), op::EXISTS), Ok((header, Response::Empty)));
        let multi = Response::Multi(vec![MultiResult::Error { err: code::NO_NODE }]);
        let reply = encode_reply(&header, &multi);
        assert_eq!(decode_reply(body_of(&reply), op::MULTI), Ok((header, multi)));
        // A multi refused as a whole (no results) reads as empty.
        let reply = encode_reply(&header, &Response::Empty);
        assert_eq!(decode_reply(body_of(&reply), op::MULTI), Ok((header, Response::Empty)));
    }

    #[test]
    fn failed_multi_results_follow_zookeeper() {
        let err = |err| MultiResult::Error { err };
        assert_eq!(
            MultiResult::failed(4, 1, code::BAD_VERSION),
            [err(code::OK), err(code::BAD_VERSION), err(code::RUNTIME_INCONSISTENCY), err(code::RUNTIME_INCONSISTENCY)]
        );
    }

    #[test]
    fn every_request_round_trips_and_every_prefix_fails() {
        for (index, request) in every_request().into_iter().enumerate() {
            let header = RequestHeader { xid: index as i32, op: request.op() };
            let frame = encode_request(&header, &request);
            let body = body_of(&frame);
            assert_eq!(decode_request(body), Ok((header, request.clone())));
            for cut in 0..body.len() {
                match decode_request(&body[..cut]) {
                    Err(DecodeError::Malformed { xid, error: JuteError::Truncated | JuteError::TooLong { .. } }) => {
                        assert_eq!(xid, (cut >= 8).then_some(header.xid), "{request:?} cut at {cut}");
                    }
                    other => panic!("{request:?} cut at {cut}: {other:?}"),
                }
            }
            // Trailing bytes are ignored.
            let mut longer = body.to_vec();
            longer.extend_from_slice(&[0xde, 0xad]);
            assert_eq!(decode_request(&longer), Ok((header, request)));
        }
    }

    #[test]
    fn every_reply_round_trips_and_every_prefix_fails() {
        for (index, (kind, response)) in every_response().into_iter().enumerate() {
            let header = ReplyHeader { xid: index as i32, zxid: 77, err: code::OK };
            let frame = encode_reply(&header, &response);
            let body = body_of(&frame);
            assert_eq!(decode_reply(body, kind), Ok((header, response.clone())));
            for cut in 0..body.len() {
                assert!(decode_reply(&body[..cut], kind).is_err(), "{response:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn unknown_ops_keep_their_header_and_bad_bodies_their_xid() {
        for unknown in [op::NOTIFICATION, op::CREATE_SESSION, op::ERROR, 10, 23, 99, 108, i32::MIN] {
            let body = [9i32.to_be_bytes(), unknown.to_be_bytes()].concat();
            assert_eq!(
                decode_request(&body),
                Err(DecodeError::UnknownOp { header: RequestHeader { xid: 9, op: unknown } })
            );
        }
        let mut bad_utf8 = [[0, 0, 0, 5], [0, 0, 0, 4], [0, 0, 0, 1]].concat();
        bad_utf8.extend_from_slice(&[0xff, 0]);
        assert_eq!(decode_request(&bad_utf8), Err(DecodeError::Malformed { xid: Some(5), error: JuteError::BadUtf8 }));
        assert_eq!(decode_request(&[0, 0]), Err(DecodeError::Malformed { xid: None, error: JuteError::Truncated }));
        // A read op inside a transaction, and a write inside a multiRead, are refused.
        let read_in_multi = [[0, 0, 0, 1], [0, 0, 0, 14], [0, 0, 0, 4]].concat();
        let mut body = read_in_multi.clone();
        body.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        let expected = JuteError::UnexpectedValue { field: "op type in a multi", value: 4 };
        assert_eq!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(1), error: expected }));
        let mut body = [[0, 0, 0, 1], [0, 0, 0, 22], [0, 0, 0, 2]].concat();
        body.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(1), .. })));
    }

    #[test]
    fn huge_counts_fail_fast() {
        // SetWatches announcing 2^31-1 data watches, with 4 bytes behind the count.
        let mut body = [xid::SET_WATCHES.to_be_bytes(), op::SET_WATCHES.to_be_bytes()].concat();
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        let error = JuteError::TooLong { len: i32::MAX, remaining: 4 };
        assert_eq!(decode_request(&body), Err(DecodeError::Malformed { xid: Some(xid::SET_WATCHES), error }));
        // A create whose ACL count is 2^31-1.
        let mut body = [[0, 0, 0, 1], [0, 0, 0, 1]].concat();
        body.extend(ustring("/a"));
        body.extend_from_slice(&[0, 0, 0, 0]);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_request(&body),
            Err(DecodeError::Malformed { error: JuteError::TooLong { len: i32::MAX, remaining: 0 }, .. })
        ));
        // A data buffer announcing 2 GiB.
        let mut body = [[0, 0, 0, 1], [0, 0, 0, 5]].concat();
        body.extend(ustring("/a"));
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_request(&body), Err(DecodeError::Malformed { error: JuteError::TooLong { .. }, .. })));
    }

    #[test]
    fn registry_stats_convert_keeping_versions_and_owners_bit_for_bit() {
        let stat = registry::Stat {
            czxid: 1,
            mzxid: u64::MAX,
            pzxid: 3,
            ctime: 4,
            mtime: 5,
            version: u32::MAX,
            cversion: 7,
            ephemeral_owner: 0x8000_0000_0000_0001,
            data_length: u32::MAX,
            num_children: 9,
        };
        let jute = Stat::from(&stat);
        assert_eq!((jute.czxid, jute.mzxid, jute.pzxid, jute.ctime, jute.mtime), (1, i64::MAX, 3, 4, 5));
        assert_eq!((jute.version, jute.cversion, jute.aversion), (-1, 7, 0));
        assert_eq!(jute.ephemeral_owner as u64, stat.ephemeral_owner);
        assert_eq!((jute.data_length, jute.num_children), (i32::MAX, 9));
        let mut w = Writer::new();
        jute.write(&mut w);
        assert_eq!(w.len(), 68);
    }

    #[test]
    fn create_flags_map_to_registry_modes() {
        use crate::registry::CreateMode;
        assert_eq!(create_flags::mode(create_flags::EPHEMERAL_SEQUENTIAL), Some(CreateMode::EphemeralSequential));
        assert_eq!(
            create_flags::mode(create_flags::PERSISTENT_SEQUENTIAL_WITH_TTL),
            Some(CreateMode::PersistentSequential)
        );
        assert_eq!(create_flags::mode(create_flags::CONTAINER), Some(CreateMode::Container));
        assert_eq!(create_flags::mode(7), None);
        assert!(create_flags::has_ttl(5) && create_flags::has_ttl(6) && !create_flags::has_ttl(0));
        assert_eq!(code::name(code::NO_NODE), Some("NONODE"));
        assert_eq!(code::name(-9), None);
    }

    fn text() -> impl Strategy<Value = String> {
        ".{0,6}"
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..8)
    }

    fn strings() -> impl Strategy<Value = Vec<String>> {
        vec(text(), 0..4)
    }

    fn acls() -> impl Strategy<Value = Vec<Acl>> {
        vec((any::<i32>(), text(), text()).prop_map(|(perms, scheme, id)| Acl { perms, scheme, id }), 0..3)
    }

    fn stat() -> impl Strategy<Value = Stat> {
        (any::<[i64; 6]>(), any::<[i32; 5]>()).prop_map(|(l, i)| Stat {
            czxid: l[0],
            mzxid: l[1],
            ctime: l[2],
            mtime: l[3],
            version: i[0],
            cversion: i[1],
            aversion: i[2],
            ephemeral_owner: l[4],
            data_length: i[3],
            num_children: i[4],
            pzxid: l[5],
        })
    }

    fn create_op() -> impl Strategy<Value = i32> {
        prop_oneof![Just(op::CREATE), Just(op::CREATE2), Just(op::CREATE_CONTAINER), Just(op::CREATE_TTL)]
    }

    fn multi_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            (create_op(), text(), bytes(), acls(), any::<i32>(), any::<i64>()).prop_map(
                |(op, path, data, acl, flags, ttl)| MultiOp::Create {
                    op,
                    path,
                    data,
                    acl,
                    flags,
                    ttl_ms: (op == op::CREATE_TTL).then_some(ttl)
                }
            ),
            (text(), any::<i32>()).prop_map(|(path, version)| MultiOp::Delete { path, version }),
            (text(), bytes(), any::<i32>()).prop_map(|(path, data, version)| MultiOp::SetData { path, data, version }),
            (text(), any::<i32>()).prop_map(|(path, version)| MultiOp::Check { path, version }),
        ]
    }

    fn multi_read_op() -> impl Strategy<Value = MultiReadOp> {
        prop_oneof![
            text().prop_map(|path| MultiReadOp::GetData { path }),
            text().prop_map(|path| MultiReadOp::GetChildren { path }),
        ]
    }

    fn request() -> impl Strategy<Value = Request> {
        let path_watch = || (text(), any::<bool>());
        let path_int = || (text(), any::<i32>());
        prop_oneof![
            multi_op().prop_map(|entry| match entry {
                MultiOp::Create { op, path, data, acl, flags, ttl_ms } =>
                    Request::Create { op, path, data, acl, flags, ttl_ms },
                MultiOp::Delete { path, version } => Request::Delete { path, version },
                MultiOp::SetData { path, data, version } => Request::SetData { path, data, version },
                MultiOp::Check { path, version } => Request::Check { path, version },
            }),
            path_watch().prop_map(|(path, watch)| Request::Exists { path, watch }),
            path_watch().prop_map(|(path, watch)| Request::GetData { path, watch }),
            path_watch().prop_map(|(path, watch)| Request::GetChildren { path, watch }),
            path_watch().prop_map(|(path, watch)| Request::GetChildren2 { path, watch }),
            text().prop_map(|path| Request::GetAcl { path }),
            (text(), acls(), any::<i32>()).prop_map(|(path, acl, version)| Request::SetAcl { path, acl, version }),
            text().prop_map(|path| Request::Sync { path }),
            vec(multi_op(), 0..4).prop_map(Request::Multi),
            vec(multi_read_op(), 0..4).prop_map(Request::MultiRead),
            path_int().prop_map(|(path, kind)| Request::CheckWatches { path, kind }),
            path_int().prop_map(|(path, kind)| Request::RemoveWatches { path, kind }),
            path_int().prop_map(|(path, mode)| Request::AddWatch { path, mode }),
            text().prop_map(|path| Request::DeleteContainer { path }),
            (any::<i32>(), text(), bytes()).prop_map(|(kind, scheme, auth)| Request::Auth { kind, scheme, auth }),
            (any::<i64>(), strings(), strings(), strings()).prop_map(|(relative_zxid, data, exist, child)| {
                Request::SetWatches { relative_zxid, data, exist, child }
            }),
            (any::<i64>(), strings(), strings(), strings(), strings(), strings()).prop_map(
                |(relative_zxid, data, exist, child, persistent, persistent_recursive)| Request::SetWatches2 {
                    relative_zxid,
                    data,
                    exist,
                    child,
                    persistent,
                    persistent_recursive
                }
            ),
            text().prop_map(|prefix| Request::GetEphemerals { prefix }),
            text().prop_map(|path| Request::GetAllChildrenNumber { path }),
            prop_oneof![
                Just(Request::Ping),
                Just(Request::Reconfig),
                Just(Request::Sasl),
                Just(Request::WhoAmI),
                Just(Request::CloseSession)
            ],
        ]
    }

    fn multi_result() -> impl Strategy<Value = MultiResult> {
        prop_oneof![
            text().prop_map(|path| MultiResult::Create { path }),
            (text(), stat()).prop_map(|(path, stat)| MultiResult::Create2 { path, stat }),
            Just(MultiResult::Delete),
            stat().prop_map(|stat| MultiResult::SetData { stat }),
            Just(MultiResult::Check),
            any::<i32>().prop_map(|err| MultiResult::Error { err }),
        ]
    }

    fn multi_read_result() -> impl Strategy<Value = MultiReadResult> {
        prop_oneof![
            (bytes(), stat()).prop_map(|(data, stat)| MultiReadResult::GetData { data, stat }),
            strings().prop_map(|children| MultiReadResult::GetChildren { children }),
            any::<i32>().prop_map(|err| MultiReadResult::Error { err }),
        ]
    }

    /// A reply with the op it answers.
    fn response() -> impl Strategy<Value = (i32, Response)> {
        prop_oneof![
            Just((op::DELETE, Response::Empty)),
            text().prop_map(|path| (op::CREATE, Response::Create { path })),
            (text(), stat()).prop_map(|(path, stat)| (op::CREATE_TTL, Response::Create2 { path, stat })),
            stat().prop_map(|stat| (op::SET_DATA, Response::Stat(stat))),
            (bytes(), stat()).prop_map(|(data, stat)| (op::GET_DATA, Response::GetData { data, stat })),
            (acls(), stat()).prop_map(|(acl, stat)| (op::GET_ACL, Response::GetAcl { acl, stat })),
            strings().prop_map(|children| (op::GET_CHILDREN, Response::GetChildren { children })),
            (strings(), stat())
                .prop_map(|(children, stat)| (op::GET_CHILDREN2, Response::GetChildren2 { children, stat })),
            text().prop_map(|path| (op::SYNC, Response::Sync { path })),
            vec(multi_result(), 0..4).prop_map(|results| (op::MULTI, Response::Multi(results))),
            vec(multi_read_result(), 0..4).prop_map(|results| (op::MULTI_READ, Response::MultiRead(results))),
            strings().prop_map(|paths| (op::GET_EPHEMERALS, Response::GetEphemerals { paths })),
            any::<i32>().prop_map(|count| (op::GET_ALL_CHILDREN_NUMBER, Response::GetAllChildrenNumber { count })),
            vec((text(), text()), 0..3).prop_map(|clients| (op::WHO_AM_I, Response::WhoAmI { clients })),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(xid in any::<i32>(), request in request()) {
            let header = RequestHeader { xid, op: request.op() };
            let frame = encode_request(&header, &request);
            prop_assert_eq!(decode_request(body_of(&frame)), Ok((header, request)));
        }

        #[test]
        fn replies_round_trip(xid in any::<i32>(), zxid in any::<i64>(), err in any::<i32>(), (kind, response) in response()) {
            let header = ReplyHeader { xid, zxid, err: code::OK };
            let frame = encode_reply(&header, &response);
            prop_assert_eq!(decode_reply(body_of(&frame), kind), Ok((header, response.clone())));
            // With an error, only multi results survive.
            let header = ReplyHeader { err, ..header };
            let frame = encode_reply(&header, &response);
            let survives = err == code::OK || body_survives_error(&response);
            let expected = if survives { response } else { Response::Empty };
            prop_assert_eq!(decode_reply(body_of(&frame), kind), Ok((header, expected)));
        }

        #[test]
        fn connects_round_trip(
            fields in (any::<i32>(), any::<i64>(), any::<i32>(), any::<i64>(), bytes(), any::<Option<bool>>()),
        ) {
            let (protocol_version, last_zxid_seen, timeout_ms, session_id, password, read_only) = fields;
            let request =
                ConnectRequest { protocol_version, last_zxid_seen, timeout_ms, session_id, password: password.clone(), read_only };
            prop_assert_eq!(ConnectRequest::decode(body_of(&request.encode())), Ok(request));
            let response = ConnectResponse { protocol_version, timeout_ms, session_id, password, read_only };
            prop_assert_eq!(ConnectResponse::decode(body_of(&encode_connect_response(&response))), Ok(response));
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..96), kind in -12i32..110) {
            // Start from a valid header half the time so the record decoders get exercised.
            let mut framed_body = [1i32.to_be_bytes(), kind.to_be_bytes()].concat();
            framed_body.extend_from_slice(&body);
            if let Ok((header, request)) = decode_request(&framed_body) {
                let again = encode_request(&header, &request);
                prop_assert_eq!(decode_request(body_of(&again)), Ok((header, request)));
            }
            let _ = decode_request(&body);
            let _ = ConnectRequest::decode(&body);
            let _ = ConnectResponse::decode(&body);
            let _ = decode_reply(&body, kind);
            let _ = decode_watcher_event(&body);
        }
    }
}
