//! Replies: [`Response`] by the shape of its record, the results of a `multi` ([`MultiResult`])
//! and of a `multiRead` ([`MultiReadResult`]), the reply codec [`encode_reply`] / [`decode_reply`],
//! and the watch notification frame ([`encode_watcher_event`] / [`decode_watcher_event`]).
//!
//! Like the rest of `proto`, it only turns bytes into values and back: no I/O, no decision.

use super::records::{read_multi, read_strings, write_strings, MultiHeader};
use super::{code, op, xid, Acl, ReplyHeader, Stat, WatcherEvent};
use crate::zk::frame::framed;
use crate::zk::jute::{JuteError, Reader, Writer};

/// A reply's body, by the shape of its jute record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: delete, ping, auth, setWatches, closeSession, removeWatches, checkWatches,
    /// deleteContainer, and every reply whose header carries an error.
    Empty,
    /// An `ErrorResponse` record: what ZooKeeper answers a successful addWatch with (its code, 0).
    Code {
        /// The code.
        err: i32,
    },
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
            Response::Code { err } => w.write_int(*err),
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
            op::ADD_WATCH => Response::Code { err: r.read_int()? },
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

#[cfg(test)]
mod tests;
