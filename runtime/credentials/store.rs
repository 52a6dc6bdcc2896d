//! Credentials on disk: issuing into a directory, loading and checking a node's files.
//!
//! Layout of a credentials directory: `ca.pem`, `private/ca.key`, `node-<id>.pem`, `node-<id>.key`,
//! `operator.pem`, `operator.key`, `admin.token`. Keys and the token are written 0600, `private/` 0700.
//! A node needs only `ca.pem`, its own `node-<id>.pem` and `.key`, and `admin.token`; the CA key stays
//! with the operator, in `private/`, and a `ca.key` left at the top by an earlier version is moved there.
//!
//! Invariant: an existing key file is never overwritten; issuing into a directory that already holds a
//! CA reuses that CA, so nodes that join later are signed by the same authority.
//!
//! Invariant: loading a node's credentials never reads the CA key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::authority::{parse_key, Authority};
use super::identity::node_server_name;
use super::{CredentialError, NodeCredentials};
use crate::ids::NodeId;

/// Bytes of randomness in the admin token.
const ADMIN_TOKEN_BYTES: usize = 32;

/// The files of a credentials directory.
#[derive(Debug, Clone)]
pub struct CredentialFiles {
    dir: PathBuf,
}

impl CredentialFiles {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CredentialFiles { dir: dir.into() }
    }
    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The directory of what stays with the operator (0700): the CA key.
    pub fn private_dir(&self) -> PathBuf {
        self.dir.join("private")
    }
    /// The CA key, kept with the operator and never given to nodes.
    pub fn ca_key(&self) -> PathBuf {
        self.private_dir().join("ca.key")
    }
    /// Where earlier versions kept the CA key, beside the files every node is given.
    pub fn legacy_ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// A node's certificate.
    pub fn node_cert(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("node-{node}.pem"))
    }
    /// A node's key.
    pub fn node_key(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("node-{node}.key"))
    }
    /// The operator's certificate.
    pub fn operator_cert(&self) -> PathBuf {
        self.dir.join("operator.pem")
    }
    /// The operator's key.
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join("operator.key")
    }
    /// The admin token.
    pub fn admin_token(&self) -> PathBuf {
        self.dir.join("admin.token")
    }
    /// The TLS certificate of a node's admin API.
    pub fn admin_cert(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("admin-{node}.pem"))
    }
    /// The key of a node's admin API certificate.
    pub fn admin_key(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("admin-{node}.key"))
    }
    /// The key that signs tokens, kept with the operator.
    pub fn token_key(&self) -> PathBuf {
        self.private_dir().join("token.key")
    }
    /// The public half of the token key, which every node reads.
    pub fn token_public(&self) -> PathBuf {
        self.dir.join("token.pub")
    }
    /// A token issued to `name`.
    pub fn token(&self, name: &str) -> PathBuf {
        self.dir.join(format!("token-{name}"))
    }
    /// A client certificate issued to `name`.
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("client-{name}.pem"))
    }
    /// The key of a client certificate issued to `name`.
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("client-{name}.key"))
    }
    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CredentialError + '_ {
    move |source| CredentialError::Io { path: path.display().to_string(), source }
}

pub(super) fn read_text(path: &Path) -> Result<String, CredentialError> {
    fs::read_to_string(path).map_err(io_error(path))
}

/// Writes `contents` to a new file with `mode`, fsync'd. Fails if the file exists.
pub(super) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CredentialError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// What [`issue_into_dir`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IssueReport {
    /// Files written by this call.
    pub created: Vec<PathBuf>,
    /// Files that existed and were kept as they are.
    pub kept: Vec<PathBuf>,
    /// Files moved, from where to where (a CA key out of the directory nodes are given).
    pub moved: Vec<(PathBuf, PathBuf)>,
}

/// Makes `private/` (0700, also when it already existed) and moves a top-level `ca.key` into it.
fn secure_ca_key(files: &CredentialFiles, report: &mut IssueReport) -> Result<(), CredentialError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = files.private_dir();
    if !private.is_dir() {
        fs::DirBuilder::new().mode(0o700).create(&private).map_err(io_error(&private))?;
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).map_err(io_error(&private))?;
    let (legacy, key) = (files.legacy_ca_key(), files.ca_key());
    if !legacy.exists() {
        return Ok(());
    }
    if key.exists() {
        return Err(CredentialError::Invalid {
            path: legacy.display().to_string(),
            reason: format!("a CA key is also in {}; remove the one that is not the cluster's", key.display()),
        });
    }
    // A rename within one directory tree: atomic, and the key's 0600 mode goes with it.
    fs::rename(&legacy, &key).map_err(io_error(&legacy))?;
    fs::File::open(&private).and_then(|dir| dir.sync_all()).map_err(io_error(&private))?;
    report.moved.push((legacy, key));
    Ok(())
}

/// Issues a CA (or reuses the one in `dir`), certificates for `nodes`, the operator certificate and
/// the admin token, writing only what does not exist yet.
///
/// # Errors
/// [`CredentialError`] if the directory cannot be written, or an existing CA does not load.
pub fn issue_into_dir(dir: &Path, nodes: &[NodeId]) -> Result<IssueReport, CredentialError> {
    super::edge::issue(dir, &super::edge::IssueRequest { nodes: nodes.to_vec(), ..Default::default() })
}

/// The CA and the files every cluster has: node certificates for `nodes`, the operator certificate
/// and the admin token. Returns the CA to issue more with.
pub(super) fn issue_core(dir: &Path, nodes: &[NodeId], report: &mut IssueReport) -> Result<Authority, CredentialError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let files = CredentialFiles::new(dir);
    secure_ca_key(&files, report)?;
    let authority = if files.ca_key().exists() {
        report.kept.extend([files.ca_cert(), files.ca_key()]);
        let (cert, key) = (files.ca_cert(), files.ca_key());
        let (cert_origin, key_origin) = (cert.display().to_string(), key.display().to_string());
        Authority::from_pem(&read_text(&cert)?, &read_text(&key)?, &cert_origin, &key_origin)?
    } else {
        if files.ca_cert().exists() {
            return Err(CredentialError::Invalid {
                path: files.ca_cert().display().to_string(),
                reason: "a CA certificate exists without its key; refusing to replace it".into(),
            });
        }
        let authority = Authority::generate()?;
        write_new(&files.ca_key(), authority.key_pem().as_bytes(), 0o600)?;
        write_new(&files.ca_cert(), authority.cert_pem().as_bytes(), 0o644)?;
        report.created.extend([files.ca_key(), files.ca_cert()]);
        authority
    };
    for &node in nodes {
        write_pair(&files.node_cert(node), &files.node_key(node), || authority.issue_node(node), report)?;
    }
    write_pair(&files.operator_cert(), &files.operator_key(), || authority.issue_operator(), report)?;
    let token_path = files.admin_token();
    if token_path.exists() {
        report.kept.push(token_path);
    } else {
        let token: String = (0..ADMIN_TOKEN_BYTES).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        write_new(&token_path, format!("{token}\n").as_bytes(), 0o600)?;
        report.created.push(token_path);
    }
    Ok(authority)
}

pub(super) fn write_pair(
    cert: &Path,
    key: &Path,
    issue: impl FnOnce() -> Result<super::authority::IssuedPem, CredentialError>,
    report: &mut IssueReport,
) -> Result<(), CredentialError> {
    if key.exists() || cert.exists() {
        report.kept.extend([cert.to_path_buf(), key.to_path_buf()]);
        return Ok(());
    }
    let issued = issue()?;
    write_new(key, issued.key_pem.as_bytes(), 0o600)?;
    write_new(cert, issued.cert_pem.as_bytes(), 0o644)?;
    report.created.extend([cert.to_path_buf(), key.to_path_buf()]);
    Ok(())
}

/// Parses one certificate from PEM.
pub(crate) fn parse_cert(pem: &str, origin: &str) -> Result<CertificateDer<'static>, CredentialError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|error| CredentialError::Invalid {
        path: origin.to_string(),
        reason: format!("not a PEM certificate: {error}"),
    })
}

/// Where each PEM of a node's credentials came from, for error messages.
pub(crate) struct PemOrigins<'a> {
    /// The CA certificate.
    pub ca: &'a str,
    /// The node certificate.
    pub cert: &'a str,
    /// The node key.
    pub key: &'a str,
}

/// Builds node credentials from PEM, checking that the certificate is signed by the CA, names
/// `node`, and matches the key. Each error names the file at fault.
pub(crate) fn credentials_from_pem(
    node: NodeId,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    origins: &PemOrigins<'_>,
) -> Result<NodeCredentials, CredentialError> {
    let ca = parse_cert(ca_pem, origins.ca)?;
    let cert = parse_cert(cert_pem, origins.cert)?;
    let key = parse_key(key_pem, origins.key)?;
    let invalid = |reason: String| CredentialError::Invalid { path: origins.cert.to_string(), reason };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|error| invalid(format!("CA certificate unusable: {error}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| invalid(format!("CA certificate unusable: {error}")))?;
    let name = ServerName::try_from(node_server_name(node)).map_err(|error| invalid(error.to_string()))?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_millis(crate::clock::unix_millis()));
    verifier
        .verify_server_cert(&cert, &[], &name, &[], now)
        .map_err(|error| invalid(format!("certificate is not valid for node {node} under this CA: {error}")))?;
    rustls::sign::CertifiedKey::from_der(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()), &provider)
        .map_err(|error| CredentialError::Invalid {
            path: origins.key.to_string(),
            reason: format!("key does not match certificate {}: {error}", origins.cert),
        })?;
    Ok(NodeCredentials { node, ca, cert, key })
}

/// Loads and checks `node`'s credentials from `dir`.
///
/// # Errors
/// [`CredentialError`] naming the file that is missing, unreadable, or does not match.
pub fn load_node_credentials(dir: &Path, node: NodeId) -> Result<NodeCredentials, CredentialError> {
    let files = CredentialFiles::new(dir);
    let (ca, cert, key) = (files.ca_cert(), files.node_cert(node), files.node_key(node));
    let (ca_origin, cert_origin, key_origin) =
        (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    credentials_from_pem(
        node,
        &read_text(&ca)?,
        &read_text(&cert)?,
        &read_text(&key)?,
        &PemOrigins { ca: &ca_origin, cert: &cert_origin, key: &key_origin },
    )
}

/// Reads the admin token from `dir`, if there is one (a joined worker is not given it).
///
/// # Errors
/// [`CredentialError`] if the file exists but cannot be read or is empty.
pub fn load_admin_token_if_any(dir: &Path) -> Result<Option<String>, CredentialError> {
    if !CredentialFiles::new(dir).admin_token().exists() {
        return Ok(None);
    }
    load_admin_token(dir).map(Some)
}

/// Reads the admin token from `dir`.
///
/// # Errors
/// [`CredentialError`] if the file is missing or empty.
pub fn load_admin_token(dir: &Path) -> Result<String, CredentialError> {
    let path = CredentialFiles::new(dir).admin_token();
    let token = read_text(&path)?.trim().to_string();
    if token.is_empty() {
        return Err(CredentialError::Invalid { path: path.display().to_string(), reason: "empty token".into() });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gk-creds-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn issue_writes_private_keys_0600_and_loads_back() {
        let dir = temp_dir("issue");
        let report = issue_into_dir(&dir, &[NodeId(1), NodeId(2)]).expect("issue");
        assert!(report.kept.is_empty());
        let files = CredentialFiles::new(&dir);
        for key in [files.ca_key(), files.node_key(NodeId(1)), files.operator_key(), files.admin_token()] {
            let mode = fs::metadata(&key).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let loaded = load_node_credentials(&dir, NodeId(2)).expect("node 2 loads");
        assert_eq!(loaded.node, NodeId(2));
        assert_eq!(load_admin_token(&dir).expect("token").len(), 2 * ADMIN_TOKEN_BYTES);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn reissue_reuses_the_ca_and_never_overwrites_keys() {
        let dir = temp_dir("reissue");
        issue_into_dir(&dir, &[NodeId(1)]).expect("first");
        let files = CredentialFiles::new(&dir);
        let ca_before = fs::read(files.ca_cert()).expect("ca");
        let key_before = fs::read(files.node_key(NodeId(1))).expect("key");
        let report = issue_into_dir(&dir, &[NodeId(1), NodeId(4)]).expect("second");
        assert_eq!(fs::read(files.ca_cert()).expect("ca"), ca_before);
        assert_eq!(fs::read(files.node_key(NodeId(1))).expect("key"), key_before);
        assert!(report.created.contains(&files.node_cert(NodeId(4))));
        load_node_credentials(&dir, NodeId(4)).expect("joined node is signed by the same CA");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_certificate_for_another_node_or_ca_is_refused() {
        let dir = temp_dir("mismatch");
        issue_into_dir(&dir, &[NodeId(1), NodeId(2)]).expect("issue");
        let files = CredentialFiles::new(&dir);
        // Node 1's files renamed to node 3: the certificate names node 1, not 3.
        fs::copy(files.node_cert(NodeId(1)), files.node_cert(NodeId(3))).expect("copy");
        fs::copy(files.node_key(NodeId(1)), files.node_key(NodeId(3))).expect("copy");
        let error = load_node_credentials(&dir, NodeId(3)).expect_err("names node 1").to_string();
        assert!(error.contains("not valid for node 3"), "{error}");
        // Node 2's key with node 1's certificate.
        fs::remove_file(files.node_key(NodeId(1))).expect("rm");
        fs::copy(files.node_key(NodeId(2)), files.node_key(NodeId(1))).expect("copy");
        let error = load_node_credentials(&dir, NodeId(1)).expect_err("wrong key").to_string();
        assert!(error.contains("does not match"), "{error}");
        // A certificate from another CA.
        let other = temp_dir("other-ca");
        issue_into_dir(&other, &[NodeId(2)]).expect("other");
        fs::remove_file(files.node_cert(NodeId(2))).expect("rm");
        fs::copy(CredentialFiles::new(&other).node_cert(NodeId(2)), files.node_cert(NodeId(2))).expect("copy");
        assert!(load_node_credentials(&dir, NodeId(2)).is_err());
        fs::remove_dir_all(&dir).ok();
        fs::remove_dir_all(&other).ok();
    }

    #[test]
    fn a_bad_key_is_reported_as_the_key_file() {
        let dir = temp_dir("bad-key");
        issue_into_dir(&dir, &[NodeId(1), NodeId(2)]).expect("issue");
        let files = CredentialFiles::new(&dir);
        let key = files.node_key(NodeId(1)).display().to_string();
        fs::remove_file(files.node_key(NodeId(1))).expect("rm");
        fs::write(files.node_key(NodeId(1)), "not a key").expect("write");
        let error = load_node_credentials(&dir, NodeId(1)).expect_err("garbage key").to_string();
        assert!(error.starts_with(&key) && error.contains("private key"), "{error}");
        // Node 2's key beside node 1's certificate: the key file is named, and the certificate too.
        fs::remove_file(files.node_key(NodeId(1))).expect("rm");
        fs::copy(files.node_key(NodeId(2)), files.node_key(NodeId(1))).expect("copy");
        let error = load_node_credentials(&dir, NodeId(1)).expect_err("wrong key").to_string();
        assert!(error.starts_with(&key) && error.contains("node-1.pem"), "{error}");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_ca_key_stays_private_and_a_node_loads_without_it() {
        let dir = temp_dir("private");
        let report = issue_into_dir(&dir, &[NodeId(1)]).expect("issue");
        let files = CredentialFiles::new(&dir);
        assert!(report.created.contains(&files.ca_key()) && !files.legacy_ca_key().exists());
        assert_eq!(fs::metadata(files.private_dir()).expect("dir").permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(files.ca_key()).expect("key").permissions().mode() & 0o777, 0o600);
        // What a node is given: no CA key anywhere.
        let node_dir = temp_dir("node-only");
        fs::create_dir_all(&node_dir).expect("dir");
        let given = CredentialFiles::new(&node_dir);
        for (from, to) in [
            (files.ca_cert(), given.ca_cert()),
            (files.node_cert(NodeId(1)), given.node_cert(NodeId(1))),
            (files.node_key(NodeId(1)), given.node_key(NodeId(1))),
            (files.admin_token(), given.admin_token()),
        ] {
            fs::copy(from, to).expect("copy");
        }
        load_node_credentials(&node_dir, NodeId(1)).expect("a node needs no CA key");
        load_admin_token(&node_dir).expect("token");
        fs::remove_dir_all(&dir).ok();
        fs::remove_dir_all(&node_dir).ok();
    }

    #[test]
    fn a_top_level_ca_key_is_moved_into_private_and_the_ca_reused() {
        let dir = temp_dir("legacy");
        issue_into_dir(&dir, &[NodeId(1)]).expect("first");
        let files = CredentialFiles::new(&dir);
        // The layout of earlier versions: the CA key beside the node files, no private directory
        // (and no token key).
        fs::rename(files.ca_key(), files.legacy_ca_key()).expect("mv");
        fs::remove_file(files.token_key()).expect("rm");
        fs::remove_file(files.token_public()).expect("rm");
        fs::remove_dir(files.private_dir()).expect("rmdir");
        let ca_key = fs::read(files.legacy_ca_key()).expect("key");
        let ca = fs::read(files.ca_cert()).expect("ca");
        let report = issue_into_dir(&dir, &[NodeId(1), NodeId(2)]).expect("second");
        assert_eq!(report.moved, vec![(files.legacy_ca_key(), files.ca_key())]);
        assert!(!files.legacy_ca_key().exists());
        assert_eq!(fs::read(files.ca_key()).expect("moved"), ca_key);
        assert_eq!(fs::read(files.ca_cert()).expect("ca"), ca);
        assert_eq!(fs::metadata(files.private_dir()).expect("dir").permissions().mode() & 0o777, 0o700);
        load_node_credentials(&dir, NodeId(2)).expect("the new node is signed by the same CA");
        // Both places at once is ambiguous: refused, nothing touched.
        fs::copy(files.ca_key(), files.legacy_ca_key()).expect("copy");
        let error = issue_into_dir(&dir, &[NodeId(3)]).expect_err("two CA keys").to_string();
        assert!(error.contains("also in"), "{error}");
        assert!(!files.node_cert(NodeId(3)).exists());
        fs::remove_dir_all(&dir).ok();
    }
}
