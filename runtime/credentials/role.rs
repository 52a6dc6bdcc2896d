//! Who a caller is at the edge: a [`Principal`] (a name and a [`Role`]) read from a client
//! certificate or a bearer token, and the names tokens and client certificates may carry.
//!
//! Core: plain values, no I/O. What each role may do is decided in `admin/policy.rs`.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// What a credential may do at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Status, task queries, registry reads, waits.
    Reader,
    /// A reader that may also submit, cancel and schedule tasks.
    Submitter,
    /// Everything: drain, membership, registry writes, revocations, the audit log.
    Operator,
    /// A joined worker: only its own node's poll and report, its own session and `/grid/nodes/<id>`.
    Worker(NodeId),
    /// `/metrics` only.
    Metrics,
}

impl Role {
    /// The roles a token or a client certificate may be issued with (a worker's role comes from its
    /// node certificate only).
    pub const ISSUABLE: [Role; 4] = [Role::Reader, Role::Submitter, Role::Operator, Role::Metrics];

    /// The role's name (`worker` for every node).
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Worker(_) => "worker",
            Role::Metrics => "metrics",
        }
    }

    /// Parses an issuable role's name.
    ///
    /// # Errors
    /// A message listing the roles, for any other text.
    pub fn parse_issuable(text: &str) -> Result<Role, String> {
        Role::ISSUABLE.into_iter().find(|role| role.name() == text).ok_or_else(|| {
            format!("unknown role {text:?}: one of reader, submitter, operator, metrics (workers use their node certificate)")
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Worker(node) => write!(f, "worker(node {node})"),
            other => f.write_str(other.name()),
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// A client certificate from the cluster CA.
    Certificate,
    /// A bearer token signed with the cluster's token key.
    Token,
    /// The cluster's shared `admin.token` of earlier versions (an operator credential).
    AdminToken,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's name: a token's or client certificate's name, `operator`, `node-<id>`, or
    /// `admin.token`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it proved it.
    pub proof: Proof,
}

impl Principal {
    /// Whether the credential can be revoked by name (tokens and client certificates; not the
    /// operator's certificate, node certificates or the legacy admin token).
    pub fn revocable(&self) -> bool {
        match self.proof {
            Proof::Token => true,
            Proof::Certificate => !matches!(self.role, Role::Worker(_)) && self.name != OPERATOR_PRINCIPAL,
            Proof::AdminToken => false,
        }
    }
}

/// The operator certificate's principal name.
pub const OPERATOR_PRINCIPAL: &str = "operator";
/// The legacy shared admin token's principal name.
pub const ADMIN_TOKEN_PRINCIPAL: &str = "admin.token";

/// Longest credential name: it is a file name, a DNS label and a znode name.
pub const CREDENTIAL_NAME_BYTES_MAX: usize = 63;

/// Checks a token or client certificate name: 1 to 63 of `a-z 0-9 -`, starting with a letter or
/// digit, and not one the cluster uses itself (`operator`, `admin`, `node-*`).
///
/// # Errors
/// A message saying what is wrong.
pub fn check_credential_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= CREDENTIAL_NAME_BYTES_MAX
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(format!(
            "credential name {name:?} must be 1 to {CREDENTIAL_NAME_BYTES_MAX} of a-z, 0-9 and '-', not starting or ending with '-'"
        ));
    }
    if name == OPERATOR_PRINCIPAL || name == "admin" || name.starts_with("node-") {
        return Err(format!("credential name {name:?} is reserved for the cluster's own credentials"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["ci", "grafana-1", "a", &"x".repeat(63)] {
            check_credential_name(good).expect(good);
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a/b", "operator", "admin", "node-1", &"x".repeat(64)] {
            assert!(check_credential_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_parse_and_name() {
        for role in Role::ISSUABLE {
            assert_eq!(Role::parse_issuable(role.name()), Ok(role));
        }
        assert!(Role::parse_issuable("worker").is_err());
        assert!(Role::parse_issuable("root").is_err());
        assert_eq!(Role::Worker(NodeId(4)).to_string(), "worker(node 4)");
    }

    #[test]
    fn only_issued_names_are_revocable() {
        let principal = |name: &str, role, proof| Principal { name: name.into(), role, proof };
        assert!(principal("ci", Role::Reader, Proof::Token).revocable());
        assert!(principal("ci", Role::Reader, Proof::Certificate).revocable());
        assert!(!principal("operator", Role::Operator, Proof::Certificate).revocable());
        assert!(!principal("node-4", Role::Worker(NodeId(4)), Proof::Certificate).revocable());
        assert!(!principal("admin.token", Role::Operator, Proof::AdminToken).revocable());
    }
}
