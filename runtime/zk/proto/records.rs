//! The records both directions share: the connect handshake (`ConnectRequest`,
//! `ConnectResponse`), the request and reply headers, a znode's `Stat`, an `Acl` entry, the
//! `WatcherEvent` of a notification, and the `MultiHeader` framing of multi and multiRead.
//!
//! Like the rest of `proto`, it only turns bytes into values and back: no I/O, no decision.

#[cfg(doc)]
use super::{code, event_type, keeper_state, op, perms, xid, PROTOCOL_VERSION};
use crate::registry;
use crate::zk::frame::framed;
use crate::zk::jute::{JuteError, Reader, Writer};

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
/// The registry's stat as ZooKeeper's (its counters as `int`s, wrapping as ZooKeeper's do).
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
            aversion: stat.aversion as i32,
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

/// What precedes each op and each result of a multi, and ends the list (`MultiHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MultiHeader {
    pub(super) kind: i32,
    pub(super) done: bool,
    pub(super) err: i32,
}

impl MultiHeader {
    /// The header that ends every multi request and reply.
    pub(super) const END: MultiHeader = MultiHeader { kind: -1, done: true, err: -1 };

    pub(super) fn read(r: &mut Reader<'_>) -> Result<MultiHeader, JuteError> {
        Ok(MultiHeader { kind: r.read_int()?, done: r.read_bool()?, err: r.read_int()? })
    }

    pub(super) fn write(&self, w: &mut Writer) {
        w.write_int(self.kind);
        w.write_bool(self.done);
        w.write_int(self.err);
    }
}

/// Reads multi entries until the `done` header, as ZooKeeper does (whatever that header's type).
/// Every entry consumes at least its 9-byte header, so the count is bounded by the bytes.
pub(super) fn read_multi<'a, T>(
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

pub(super) fn read_strings(r: &mut Reader<'_>) -> Result<Vec<String>, JuteError> {
    r.read_vec(Reader::read_ustring)
}

pub(super) fn write_strings(w: &mut Writer, strings: &[String]) {
    w.write_vec(strings, |w, s| w.write_ustring(s));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{body_of, bytes};
    use super::*;
    use proptest::prelude::*;

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
            aversion: 2,
        };
        let jute = Stat::from(&stat);
        assert_eq!((jute.czxid, jute.mzxid, jute.pzxid, jute.ctime, jute.mtime), (1, i64::MAX, 3, 4, 5));
        assert_eq!((jute.version, jute.cversion, jute.aversion), (-1, 7, 2));
        assert_eq!(jute.ephemeral_owner as u64, stat.ephemeral_owner);
        assert_eq!((jute.data_length, jute.num_children), (i32::MAX, 9));
        let mut w = Writer::new();
        jute.write(&mut w);
        assert_eq!(w.len(), 68);
    }

    proptest! {
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
    }
}
