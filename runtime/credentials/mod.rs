//! Cluster credentials: the CA, per-node certificates with the node id bound in, the operator's
//! client certificate and the admin token.
//!
//! `authority.rs` issues certificates in memory (no I/O); `store.rs` keeps them in a directory and
//! loads and checks them; `identity.rs` reads the node id out of a peer's certificate.
//!
//! Invariant: a node certificate names exactly one node, as the DNS name `node-<id>.gridkeeper`,
//! so that TLS server-name verification alone proves which node a dialed peer is.

pub mod authority;
pub mod identity;
pub mod store;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::ids::NodeId;

pub use authority::Authority;
pub use identity::{node_id_of, node_server_name, IdentityError};
pub use store::{issue_into_dir, load_admin_token, load_node_credentials, CredentialFiles};

/// Why credentials could not be issued, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file's contents are not what they should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("cannot issue certificate: {0}")]
    Issue(String),
}

/// What a node needs for mutual TLS: the cluster CA, its own certificate and its key.
#[derive(Debug)]
pub struct NodeCredentials {
    /// The node these credentials belong to.
    pub node: NodeId,
    /// The cluster CA every peer must be signed by.
    pub ca: CertificateDer<'static>,
    /// The node's own certificate, naming `node`.
    pub cert: CertificateDer<'static>,
    /// The node's private key.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for NodeCredentials {
    fn clone(&self) -> Self {
        NodeCredentials { node: self.node, ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone_key() }
    }
}
