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
//!
//! The records shared by both directions (the connect handshake, headers, `Stat`, `Acl`, the
//! watch event) are in `records.rs`, the requests in `request.rs`, the replies and notifications
//! in `response.rs`; this file holds the protocol's numeric constants and re-exports the rest, so
//! every item is `zk::proto::X`.

mod records;
mod request;
mod response;

pub use records::{
    encode_connect_response, Acl, ConnectRequest, ConnectResponse, ReplyHeader, RequestHeader, Stat, WatcherEvent,
};
pub use request::{decode_request, encode_request, DecodeError, MultiOp, MultiReadOp, Request};
pub use response::{
    decode_reply, decode_watcher_event, encode_reply, encode_watcher_event, MultiReadResult, MultiResult, Response,
};

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

#[cfg(test)]
mod tests;
