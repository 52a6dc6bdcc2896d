//! Access control lists, as ZooKeeper has them: each znode carries a list of `(perms, scheme, id)`
//! entries, and a caller may do what any entry matching one of its identities allows.
//!
//! Core: no I/O, no clock. The edges turn a connection's credentials into a [`Caller`]; the tree
//! checks every write against the ACLs at apply time (so a check and the write it guards see the
//! same state), and the service layer checks reads against the serving node's state.
//!
//! Schemes:
//! - `world:anyone`: everyone.
//! - `digest:NAME:HASH`: a caller that ran `addauth digest NAME:PASSWORD` where HASH is
//!   base64(SHA-1("NAME:PASSWORD")), ZooKeeper's digest (see [`digest_id`]).
//! - `ip:ADDRESS[/BITS]`: a caller connecting from that address or network.
//! - `gridkeeper:NAME`: a caller holding gridkeeper credential NAME (a client certificate or token
//!   of the HTTPS edge, or `addauth digest NAME:TOKEN` on the ZooKeeper port).
//! - `auth`: at create and setACL, every authenticated identity of the caller (digest and
//!   gridkeeper), with the entry's perms; refused with `InvalidAcl` for a caller with none.
//!
//! The super user (the operator's credentials) passes every check.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Permission bits, ZooKeeper's values.
pub mod perms {
    /// Read data and list children.
    pub const READ: u32 = 1;
    /// Set data.
    pub const WRITE: u32 = 1 << 1;
    /// Create children.
    pub const CREATE: u32 = 1 << 2;
    /// Delete children.
    pub const DELETE: u32 = 1 << 3;
    /// Set the ACL.
    pub const ADMIN: u32 = 1 << 4;
    /// Everything.
    pub const ALL: u32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// Most entries in one ACL. ZooKeeper bounds them only by its 1 MiB packets; this bound keeps the
/// per-node cost small and the check loop short.
pub const ACL_ENTRIES_MAX: usize = 64;
/// Longest scheme or id in an entry, in bytes.
pub const ACL_ID_BYTES_MAX: usize = 1024;
/// Most identities one caller holds (one per `addauth`, plus its address and credential).
pub const CALLER_IDS_MAX: usize = 32;

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    /// [`perms`] bits.
    pub perms: u32,
    /// `world`, `digest`, `ip`, `gridkeeper` (or `auth`, expanded before storing).
    pub scheme: String,
    /// The identity within the scheme.
    pub id: String,
}

impl Acl {
    /// An entry.
    pub fn new(perms: u32, scheme: &str, id: &str) -> Acl {
        Acl { perms, scheme: scheme.to_string(), id: id.to_string() }
    }

    /// `world:anyone` with `perms`.
    pub fn world(perms: u32) -> Acl {
        Acl::new(perms, "world", "anyone")
    }
}

/// `world:anyone` with every permission: what a node without an ACL of its own has.
pub fn open() -> Vec<Acl> {
    vec![Acl::world(perms::ALL)]
}

/// `world:anyone` with read only: the ACL of the cluster's own subtrees (`/grid`, `/gridkeeper`).
pub fn read_only() -> Vec<Acl> {
    vec![Acl::world(perms::READ)]
}

/// A znode's ACL: `None` is [`open`], shared so that equal lists cost one allocation.
pub type NodeAcl = Option<Arc<[Acl]>>;

/// The list a [`NodeAcl`] stands for.
pub fn entries(acl: &NodeAcl) -> Vec<Acl> {
    match acl {
        None => open(),
        Some(list) => list.to_vec(),
    }
}

/// The [`NodeAcl`] for `list` (`None` when it is exactly [`open`]).
pub fn node_acl(list: Vec<Acl>) -> NodeAcl {
    if list == open() {
        None
    } else {
        Some(Arc::from(list))
    }
}

/// One identity a caller proved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuthId {
    /// `digest`, `ip` or `gridkeeper`.
    pub scheme: String,
    /// The identity.
    pub id: String,
}

impl AuthId {
    /// An identity.
    pub fn new(scheme: &str, id: &str) -> AuthId {
        AuthId { scheme: scheme.to_string(), id: id.to_string() }
    }

    /// Whether `auth` ACL entries expand to it (ZooKeeper's "authenticated" providers).
    fn is_authenticated(&self) -> bool {
        matches!(self.scheme.as_str(), "digest" | "gridkeeper")
    }
}

/// Who is asking: the identities a connection or request proved, and whether it is the super user.
/// Carried in every write command an edge proposes, so the check happens at apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Caller {
    /// The identities, at most [`CALLER_IDS_MAX`].
    pub ids: Vec<AuthId>,
    /// The super user passes every check.
    pub superuser: bool,
}

impl Caller {
    /// The super user.
    pub fn superuser() -> Caller {
        Caller { ids: Vec::new(), superuser: true }
    }

    /// A caller with no identity but `world:anyone`.
    pub fn anonymous() -> Caller {
        Caller::default()
    }

    /// Adds an identity (ignored past [`CALLER_IDS_MAX`] or when already held).
    pub fn add(&mut self, id: AuthId) {
        if self.ids.len() < CALLER_IDS_MAX && !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }

    /// Whether `acl` grants this caller any of `wanted`.
    pub fn may(&self, acl: &NodeAcl, wanted: u32) -> bool {
        if self.superuser {
            return true;
        }
        match acl {
            None => true,
            Some(list) => list.iter().any(|entry| entry.perms & wanted != 0 && self.matches(entry)),
        }
    }

    fn matches(&self, entry: &Acl) -> bool {
        match entry.scheme.as_str() {
            "world" => entry.id == "anyone",
            "ip" => self.ids.iter().any(|held| held.scheme == "ip" && ip_matches(&entry.id, &held.id)),
            _ => self.ids.iter().any(|held| held.scheme == entry.scheme && held.id == entry.id),
        }
    }
}

/// Why an ACL was refused (ZooKeeper's `InvalidACL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ACL: {0}")]
pub struct AclError(pub String);

/// The ACL to store for `given`, as ZooKeeper's `fixupACL` makes it: not empty, every scheme known and
/// every id valid for it, `auth` entries expanded to the caller's authenticated identities, and
/// duplicates dropped (first kept).
///
/// # Errors
/// [`AclError`] for an empty list, an unknown scheme, an invalid id, `auth` from a caller with no
/// authenticated identity, or a list past [`ACL_ENTRIES_MAX`].
pub fn fix_up(given: &[Acl], caller: &Caller) -> Result<Vec<Acl>, AclError> {
    if given.is_empty() {
        return Err(AclError("an ACL needs at least one entry".into()));
    }
    let mut fixed: Vec<Acl> = Vec::with_capacity(given.len());
    let mut push = |entry: Acl| {
        if !fixed.contains(&entry) {
            fixed.push(entry);
        }
    };
    for entry in given {
        if entry.scheme.len() > ACL_ID_BYTES_MAX || entry.id.len() > ACL_ID_BYTES_MAX {
            return Err(AclError(format!("a scheme or id is longer than {ACL_ID_BYTES_MAX} bytes")));
        }
        match entry.scheme.as_str() {
            "world" if entry.id == "anyone" => push(entry.clone()),
            "world" => return Err(AclError(format!("world has only the id anyone, not {:?}", entry.id))),
            "auth" => {
                let mut any = false;
                for held in caller.ids.iter().filter(|held| held.is_authenticated()) {
                    any = true;
                    push(Acl { perms: entry.perms, scheme: held.scheme.clone(), id: held.id.clone() });
                }
                if !any {
                    return Err(AclError("the auth scheme needs an authenticated caller (addauth first)".into()));
                }
            }
            "digest" if valid_digest(&entry.id) => push(entry.clone()),
            "ip" if parse_network(&entry.id).is_some() => push(entry.clone()),
            "gridkeeper" if valid_credential_name(&entry.id) => push(entry.clone()),
            "digest" | "ip" | "gridkeeper" => {
                return Err(AclError(format!("{:?} is not a valid {} id", entry.id, entry.scheme)))
            }
            other => return Err(AclError(format!("unknown scheme {other:?}"))),
        }
    }
    if fixed.len() > ACL_ENTRIES_MAX {
        return Err(AclError(format!("more than {ACL_ENTRIES_MAX} entries")));
    }
    Ok(fixed)
}

/// ZooKeeper's digest id check: `NAME:HASH`, one colon.
fn valid_digest(id: &str) -> bool {
    id.split(':').count() == 2
}

fn valid_credential_name(id: &str) -> bool {
    !id.is_empty() && id.len() <= 63 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `ADDRESS[/BITS]` as an address and prefix length.
fn parse_network(text: &str) -> Option<(IpAddr, u32)> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits.parse::<u32>().ok().filter(|&bits| bits <= width)?,
        None => width,
    };
    Some((address, bits))
}

/// Whether address `held` lies in network `entry`.
fn ip_matches(entry: &str, held: &str) -> bool {
    let (Some((network, bits)), Ok(address)) = (parse_network(entry), held.parse::<IpAddr>()) else {
        return false;
    };
    let (network, address, width) = match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) => {
            (u128::from(network.to_bits()), u128::from(address.to_bits()), 32)
        }
        (IpAddr::V6(network), IpAddr::V6(address)) => (network.to_bits(), address.to_bits(), 128),
        _ => return false,
    };
    let shift = width - bits;
    shift >= width || (network >> shift) == (address >> shift)
}

/// ZooKeeper's digest identity for `name` and `password`: `name:base64(SHA-1("name:password"))`.
pub fn digest_id(name: &str, password: &str) -> String {
    use base64::Engine as _;
    let hash = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{name}:{password}").as_bytes());
    format!("{name}:{}", base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_caller(name: &str, password: &str) -> Caller {
        let mut caller = Caller::anonymous();
        caller.add(AuthId::new("digest", &digest_id(name, password)));
        caller
    }

    #[test]
    fn digest_matches_zookeepers() {
        // The id ZooKeeper 3.8 stores for `addauth digest alice:secret`, read back from a real
        // ensemble by the differential run.
        assert_eq!(digest_id("alice", "secret"), "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=");
    }

    #[test]
    fn checks_follow_entries() {
        let acl = node_acl(vec![Acl::new(perms::READ, "digest", &digest_id("bob", "pw")), Acl::world(perms::CREATE)]);
        let bob = digest_caller("bob", "pw");
        let stranger = Caller::anonymous();
        assert!(bob.may(&acl, perms::READ));
        assert!(!bob.may(&acl, perms::WRITE));
        assert!(bob.may(&acl, perms::CREATE));
        assert!(!stranger.may(&acl, perms::READ));
        assert!(stranger.may(&acl, perms::CREATE));
        assert!(Caller::superuser().may(&acl, perms::ADMIN));
        assert!(stranger.may(&None, perms::ALL));
        assert!(stranger.may(&acl, perms::READ | perms::CREATE), "any of the wanted bits");
    }

    #[test]
    fn ip_entries_match_networks() {
        let mut caller = Caller::anonymous();
        caller.add(AuthId::new("ip", "10.1.2.3"));
        for (entry, expected) in [
            ("10.1.2.3", true),
            ("10.1.2.4", false),
            ("10.1.0.0/16", true),
            ("10.2.0.0/16", false),
            ("0.0.0.0/0", true),
            ("::1", false),
        ] {
            let acl = node_acl(vec![Acl::new(perms::ALL, "ip", entry)]);
            assert_eq!(caller.may(&acl, perms::READ), expected, "{entry}");
        }
    }

    #[test]
    fn fix_up_refuses_and_expands_like_zookeeper() {
        let anonymous = Caller::anonymous();
        assert!(fix_up(&[], &anonymous).is_err());
        assert!(fix_up(&[Acl::new(perms::ALL, "auth", "")], &anonymous).is_err());
        assert!(fix_up(&[Acl::new(perms::ALL, "nope", "x")], &anonymous).is_err());
        assert!(fix_up(&[Acl::new(perms::ALL, "world", "someone")], &anonymous).is_err());
        assert!(fix_up(&[Acl::new(perms::ALL, "digest", "no-colon")], &anonymous).is_err());
        assert!(fix_up(&[Acl::new(perms::ALL, "ip", "10.0.0.0/33")], &anonymous).is_err());
        let mut alice = digest_caller("alice", "a");
        alice.add(AuthId::new("digest", &digest_id("alice", "b")));
        alice.add(AuthId::new("ip", "127.0.0.1"));
        let fixed =
            fix_up(&[Acl::new(perms::ALL, "auth", ""), Acl::world(perms::READ), Acl::world(perms::READ)], &alice)
                .expect("valid");
        assert_eq!(
            fixed,
            vec![
                Acl::new(perms::ALL, "digest", &digest_id("alice", "a")),
                Acl::new(perms::ALL, "digest", &digest_id("alice", "b")),
                Acl::world(perms::READ),
            ],
            "auth expands to authenticated ids only (not ip), duplicates dropped"
        );
        let many: Vec<Acl> =
            (0..=ACL_ENTRIES_MAX).map(|i| Acl::new(perms::READ, "ip", &format!("10.0.0.{i}"))).collect();
        assert!(fix_up(&many, &anonymous).is_err());
    }
}
