//! Credentials and the audit log: revocations and audit records, as the admin API, the client and
//! the CLI exchange them.

use serde::{Deserialize, Serialize};

/// One revocation, as kept in its znode and listed by `GET /auth/revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked name.
    pub name: String,
    /// When it was revoked, Unix milliseconds (the revoking node's clock).
    pub ts_ms: u64,
    /// Who revoked it.
    pub by: String,
}

/// `POST /auth/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The name to revoke.
    pub name: String,
}

/// `GET /auth/revoked`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedResponse {
    /// Every revocation.
    pub revoked: Vec<Revocation>,
}

/// `GET /audit`'s query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only records at or after this time, Unix milliseconds.
    #[serde(default)]
    pub since_ms: u64,
    /// At most this many (the newest), up to 10,000.
    pub limit: Option<usize>,
}

/// One audited call, as the audit log keeps it (one JSON object a line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it was answered, Unix milliseconds.
    pub ts_ms: u64,
    /// The credential's name, or `anonymous`.
    pub who: String,
    /// Its role, or `none`.
    pub role: String,
    /// The client's address.
    pub from: String,
    /// The call, as `area.operation` (`grid.submit`, `registry.create`, `auth.revoke`).
    pub action: String,
    /// What it named (a path, a node, a job, task ids), cut to 256 bytes.
    pub target: String,
    /// `ok`, or the error code's name (`unauthorized`, `no auth`, `node exists`, ...).
    pub outcome: String,
}

/// `GET /audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditResponse {
    /// The records, oldest first.
    pub records: Vec<AuditRecord>,
}
