//! HTTPS for the admin API: the server's TLS configuration, from the node's admin certificate, and
//! the principal a connection's client certificate names.
//!
//! Client certificates are optional (a bearer token may authenticate instead) but, when presented,
//! must chain to the cluster CA: a certificate from anywhere else fails the handshake.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::credentials::{principal_of, AdminTlsFiles, Principal};

/// The admin server's TLS configuration: its certificate, and client certificates verified
/// against the cluster CA when offered.
///
/// # Errors
/// A message if the CA, certificate or key is unusable.
pub fn server_config(files: AdminTlsFiles) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(files.ca).map_err(|error| format!("cluster CA unusable: {error}"))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| format!("cluster CA unusable: {error}"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![files.cert], PrivateKeyDer::Pkcs8(files.key))
        .map_err(|error| format!("admin certificate and key do not go together: {error}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The principal the client certificate of an established connection names, if it sent one.
pub fn peer_principal(certificates: Option<&[CertificateDer<'_>]>) -> Option<Principal> {
    certificates.and_then(|chain| chain.first()).and_then(|leaf| principal_of(leaf.as_ref()))
}
