//! rustls and quinn configuration for mutual TLS between nodes.
//!
//! Both directions verify against the cluster CA only. The dialer checks the acceptor's certificate
//! names the node it dialed (TLS server-name verification); the acceptor reads the dialer's node id
//! from its client certificate and compares it with the dialer's `Hello` in `endpoint.rs`.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::PrivateKeyDer;

use crate::credentials::NodeCredentials;

/// ALPN protocol id of the mesh; a connection that negotiates anything else is refused by rustls.
pub const MESH_ALPN: &[u8] = b"gridkeeper-mesh/1";

/// A connection silent this long is closed by QUIC itself. Heartbeats keep healthy connections busy
/// far more often; this only reclaims connections to peers that vanished.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Round-trip estimate before the first measurement.
const INITIAL_RTT: Duration = Duration::from_millis(25);

/// Ack-eliciting packets a peer may receive before it must acknowledge them (it acknowledges the
/// next one at once). 8 sent 23% fewer datagrams per call in `cargo bench --bench mesh -- --only
/// ceiling`, for 7–16% more calls/s; QUIC's default is 1.
const ACK_ELICITING_THRESHOLD: u32 = 8;

/// Longest a peer holds back an acknowledgement below the threshold. Part of QUIC's probe timeout, so
/// kept short: a lost packet is still found within milliseconds on a LAN (QUIC's default is 25 ms).
const ACK_DELAY_MAX: Duration = Duration::from_millis(2);

/// Uni streams a peer may open at once: one per traffic class, with room for a reconnect overlap.
const PEER_UNI_STREAMS_MAX: u32 = 8;

/// Why TLS configuration could not be built from credentials.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn rustls_error(error: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::Rustls(error.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(credentials: &NodeCredentials) -> Result<Arc<rustls::RootCertStore>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(credentials.ca.clone()).map_err(rustls_error)?;
    Ok(Arc::new(roots))
}

/// Transport settings shared by both directions.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    // The conversion cannot fail: 5 s is far below QUIC's 2^62 ms limit.
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("5 s is a valid idle timeout")));
    transport.max_concurrent_uni_streams(PEER_UNI_STREAMS_MAX.into());
    transport.max_concurrent_bidi_streams(0u32.into());
    // quinn's default initial RTT (333 ms) makes a lost first handshake packet (a peer still
    // starting) cost a full second; cluster members sit on a LAN, so start from a LAN guess.
    transport.initial_rtt(INITIAL_RTT);
    // Asks the peer (QUIC's ACK frequency extension) to acknowledge every ACK_ELICITING_THRESHOLD + 1
    // packets, or within ACK_DELAY_MAX, rather than every second packet. Without it a busy stream
    // sent an ACK-only datagram for about every other data one it received, each a syscall and a
    // wake-up of the peer.
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into());
    ack.max_ack_delay(Some(ACK_DELAY_MAX));
    transport.ack_frequency_config(Some(ack));
    Arc::new(transport)
}

/// The acceptor side: requires a client certificate signed by the cluster CA.
///
/// # Errors
/// [`TlsConfigError`] if rustls refuses the credentials.
pub fn server_config(credentials: &NodeCredentials) -> Result<quinn::ServerConfig, TlsConfigError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(credentials)?, provider())
        .build()
        .map_err(rustls_error)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![credentials.cert.clone()], PrivateKeyDer::Pkcs8(credentials.key.clone_key()))
        .map_err(rustls_error)?;
    tls.alpn_protocols = vec![MESH_ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(rustls_error)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// The dialer side: verifies the acceptor against the cluster CA and presents our certificate.
///
/// # Errors
/// [`TlsConfigError`] if rustls refuses the credentials.
pub fn client_config(credentials: &NodeCredentials) -> Result<quinn::ClientConfig, TlsConfigError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error)?
        .with_root_certificates(roots(credentials)?)
        .with_client_auth_cert(vec![credentials.cert.clone()], PrivateKeyDer::Pkcs8(credentials.key.clone_key()))
        .map_err(rustls_error)?;
    tls.alpn_protocols = vec![MESH_ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(rustls_error)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}
