//! The registry's contract: the requests and answers of every registry operation, as the admin API
//! carries them (JSON) and the Rust client and the CLI use them. Serde only: no clock, no I/O.
//!
//! Request bodies refuse unknown fields (a misspelt `version` must not turn a conditional write into
//! an unconditional one).

use serde::{Deserialize, Serialize};

pub use crate::consensus::{Consistency, ReadOp, ReadResult};
use crate::registry::{Acl, CreateMode, MultiOp, SessionSecret, Stat, WatchKind};

/// Query of the read routes.
#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    /// The node.
    pub path: String,
    /// How fresh the answer must be.
    #[serde(default)]
    pub consistency: Consistency,
}

/// A node's data and stat.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeBody {
    /// The path.
    pub path: String,
    /// The data as UTF-8 (lossy for binary data; `data_hex` is exact).
    pub data: String,
    /// The data in hex.
    pub data_hex: String,
    /// The stat.
    pub stat: Stat,
}

/// `data` in lowercase hex. Every read answers with it, so it writes into one buffer rather than
/// formatting byte by byte (which took about 5% of a loaded node's CPU on reads of 256 bytes).
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(data.len() * 2);
    for &byte in data {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// A stat answer (`stat` is `null` when the node does not exist).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatBody {
    /// The path.
    pub path: String,
    /// The stat, if the node exists.
    pub stat: Option<Stat>,
}

/// A children answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildrenBody {
    /// The parent.
    pub path: String,
    /// Child names, sorted.
    pub children: Vec<String>,
    /// The parent's stat.
    pub stat: Stat,
}

/// A create request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The path (a prefix for sequential modes).
    pub path: String,
    /// UTF-8 data.
    #[serde(default)]
    pub data: String,
    /// The mode.
    #[serde(default)]
    pub mode: CreateMode,
    /// Owner session for ephemeral modes.
    #[serde(default)]
    pub session: Option<u64>,
    /// The owner session's secret, as `session/open` gave it (needed for ephemeral modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
    /// Time to live for persistent modes.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// The node's ACL (default: open to everyone). `auth` entries stand for the caller's credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<Acl>>,
}

/// A node's ACL (`GET /registry/acl`), or the answer to setting one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBody {
    /// The node.
    pub path: String,
    /// Its entries.
    pub acl: Vec<Acl>,
    /// Its ACL version.
    pub aversion: u32,
    /// Its stat.
    pub stat: Stat,
}

/// A request to replace a node's ACL (`POST /registry/acl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAclBody {
    /// The node.
    pub path: String,
    /// The new entries.
    pub acl: Vec<Acl>,
    /// Expected ACL version, or any.
    #[serde(default)]
    pub version: Option<u32>,
}

/// A create answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedBody {
    /// The final path.
    pub path: String,
    /// Its stat.
    pub stat: Stat,
}

/// A set request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// The path.
    pub path: String,
    /// New UTF-8 data.
    pub data: String,
    /// Expected version.
    #[serde(default)]
    pub version: Option<u32>,
}

/// A delete request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteBody {
    /// The path.
    pub path: String,
    /// Expected version.
    #[serde(default)]
    pub version: Option<u32>,
}

/// A multi request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiBody {
    /// The ops.
    pub ops: Vec<MultiOp>,
    /// Owner session for ephemeral creates.
    #[serde(default)]
    pub session: Option<u64>,
    /// The owner session's secret (needed for ephemeral creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
}

/// A session request/answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    /// The session (absent when opening).
    #[serde(default)]
    pub session: Option<u64>,
    /// Timeout (when opening; the granted one in answers).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Whether it is alive (keepalive answers).
    #[serde(default)]
    pub alive: Option<bool>,
    /// The session's secret: in the open's answer only, and required by keepalive and close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SessionSecret>,
}

/// Query of the watch route.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    /// The node (or subtree, for a persistent recursive watch).
    pub path: String,
    /// What to watch.
    #[serde(default = "default_kind")]
    pub kind: WatchKind,
    /// The last zxid the client saw: changes after it are reported at once.
    #[serde(default)]
    pub since: Option<u64>,
}

fn default_kind() -> WatchKind {
    WatchKind::Data
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        let every: Vec<u8> = (0..=255).collect();
        let expected: String = every.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(super::hex(&every), expected);
        assert_eq!(super::hex(&[]), "");
    }
}
