//! How a client reaches a node's admin API and proves who it is: HTTPS verified against the cluster
//! CA, with a client certificate, a bearer token, or both (the token then decides the role).
//!
//! The server is verified by the address dialed: its admin certificate must name that IP address
//! (`gridkeeper certs --san` adds addresses and names besides loopback's).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::ClientError;
use crate::credentials::{CredentialError, CredentialFiles};
use crate::ids::NodeId;

/// A client's way into the admin API: TLS settings and an optional bearer token.
#[derive(Clone)]
pub struct Access {
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<Arc<str>>,
    /// The DNS name the node's certificate is checked for (else the IP address dialed).
    server_name: Option<Arc<str>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("Access").field("tls", &self.tls.is_some()).field("token", &self.token.is_some()).finish()
    }
}

fn credential_error(error: CredentialError) -> ClientError {
    ClientError::Transport(error.to_string())
}

fn read(path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|error| ClientError::Transport(format!("{}: {error}", path.display())))
}

/// Longest a TCP connect, and then a TLS handshake, to a node may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Access {
    /// Plain HTTP, for a node started with `--admin-plaintext`: no server verification, and only a
    /// token (see [`Access::with_token`]) to prove who the client is.
    pub fn plaintext() -> Access {
        Access { tls: None, token: None, server_name: None }
    }

    /// HTTPS verified against the CA in `certs`, presenting the operator certificate found there
    /// (`operator.pem`/`.key`) if there is one.
    ///
    /// # Errors
    /// [`ClientError::Transport`] naming an unreadable or invalid file.
    pub fn from_certs(certs: &Path) -> Result<Access, ClientError> {
        let files = CredentialFiles::new(certs);
        if files.operator_cert().exists() && files.operator_key().exists() {
            Access::with_certificate(certs, &files.operator_cert(), &files.operator_key())
        } else {
            Access::ca_only(certs)
        }
    }

    /// HTTPS verified against the CA in `certs`, presenting no certificate (add a token).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the CA cannot be read.
    pub fn ca_only(certs: &Path) -> Result<Access, ClientError> {
        let config = tls_config(certs, None)?;
        Ok(Access { tls: Some(config), token: None, server_name: None })
    }

    /// HTTPS verified against the CA in `certs`, presenting the certificate `cert` with its `key`
    /// (a `certs --client` certificate, or a node's).
    ///
    /// # Errors
    /// [`ClientError::Transport`] naming an unreadable or invalid file.
    pub fn with_certificate(certs: &Path, cert: &Path, key: &Path) -> Result<Access, ClientError> {
        let chain = vec![crate::credentials::store::parse_cert(&read(cert)?, &cert.display().to_string())
            .map_err(credential_error)?];
        let key = crate::credentials::authority::parse_key(&read(key)?, &key.display().to_string())
            .map_err(credential_error)?;
        let config = tls_config(certs, Some((chain, PrivateKeyDer::Pkcs8(key))))?;
        Ok(Access { tls: Some(config), token: None, server_name: None })
    }

    /// A joined worker's access: its own node certificate.
    ///
    /// # Errors
    /// [`ClientError::Transport`] naming an unreadable or invalid file.
    pub fn node(certs: &Path, node: NodeId) -> Result<Access, ClientError> {
        let files = CredentialFiles::new(certs);
        Access::with_certificate(certs, &files.node_cert(node), &files.node_key(node))
    }

    /// The same, presenting `token` as `Authorization: Bearer` (it decides the role).
    pub fn with_token(mut self, token: impl Into<String>) -> Access {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// The same, checking the node's certificate for the DNS name `name` (the name the address was
    /// resolved from: `certs --san NAME` puts it in the admin certificate) instead of the IP address.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if `name` is not a valid DNS name.
    pub fn with_server_name(mut self, name: &str) -> Result<Access, ClientError> {
        ServerName::try_from(name.to_string())
            .map_err(|error| ClientError::Transport(format!("{name:?} is not a valid server name: {error}")))?;
        self.server_name = Some(Arc::from(name));
        Ok(self)
    }

    /// Whether the client speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The `Authorization` header value, if a token is presented.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// Opens an HTTP/1.1 connection to `admin` (TLS when configured), each step within 5 s
    /// (`CONNECT_TIMEOUT`).
    pub async fn dial<B>(&self, admin: SocketAddr) -> Result<SendRequest<B>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let transport = |error: &dyn std::fmt::Display| ClientError::Transport(format!("{admin}: {error}"));
        // Bounded: a node cut off by a partition answers nothing, and the caller should hear so soon.
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(admin))
            .await
            .map_err(|_| transport(&format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|error| transport(&error))?;
        stream.set_nodelay(true).map_err(|error| transport(&error))?;
        let Some(tls) = &self.tls else {
            return handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|error| transport(&error));
        };
        let name = match &self.server_name {
            Some(name) => ServerName::try_from(name.to_string()).map_err(|error| transport(&error))?,
            None => ServerName::IpAddress(admin.ip().into()),
        };
        // A refused handshake (a certificate from another CA, on either side) is a refused credential,
        // not a passing failure: retrying with the same files cannot help.
        // A connection that died under the handshake (the node stopped or restarted) is a passing
        // failure like any other lost connection.
        let connecting = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| transport(&format!("no TLS handshake within {CONNECT_TIMEOUT:?}")))?;
        let stream = stream.map_err(|error| {
            use std::io::ErrorKind;
            if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe)
            {
                return transport(&format!("the connection was lost during the TLS handshake: {error}"));
            }
            ClientError::Api(crate::api::ApiError::new(
                crate::api::ErrorCode::Unauthorized,
                format!("{admin}: the TLS handshake failed (a certificate not from this cluster's CA?): {error}"),
            ))
        })?;
        handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|error| transport(&error))
    }
}

async fn handshake<I, B>(io: I) -> Result<SendRequest<B>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    Ok(sender)
}

type ClientCertificate = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn tls_config(certs: &Path, client: Option<ClientCertificate>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let ca_path = CredentialFiles::new(certs).ca_cert();
    let ca = crate::credentials::store::parse_cert(&read(&ca_path)?, &ca_path.display().to_string())
        .map_err(credential_error)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|error| ClientError::Transport(format!("{}: {error}", ca_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Transport(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| ClientError::Transport(format!("client certificate unusable: {error}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
