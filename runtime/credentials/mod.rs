//! Cluster credentials: the CA, per-node certificates with the node id bound in, the operator's
//! client certificate and the admin token.
//!
//! `authority.rs` issues certificates in memory (no I/O); `store.rs` keeps the mesh's in a directory
//! and loads and checks them; `edge.rs` does the same for the admin edge (HTTPS certificates, the
//! token key, tokens, client certificates); `identity.rs` reads the node id or the [`Principal`] out
//! of a certificate; `role.rs` and `token.rs` are the edge's roles and signed tokens (core, no I/O).
//!
//! Invariant: a node certificate names exactly one node, as the DNS name `node-<id>.gridkeeper`,
//! so that TLS server-name verification alone proves which node a dialed peer is.

pub mod authority;
pub mod edge;
pub mod identity;
pub mod role;
pub mod store;
pub mod token;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::ids::NodeId;

pub use authority::Authority;
pub use edge::{issue, load_admin_tls, load_token_file, load_token_verifier, AdminTlsFiles, IssueRequest};
pub use identity::{node_id_of, node_server_name, principal_of, IdentityError};
pub use role::{Principal, Proof, Role};
pub use store::{issue_into_dir, load_admin_token, load_admin_token_if_any, load_node_credentials, CredentialFiles};
pub use token::{TokenSigner, TokenVerifier};

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
