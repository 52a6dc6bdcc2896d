//! Credentials of the admin edge on disk: each node's HTTPS certificate (`admin-<id>.pem/.key`), the
//! token key (`private/token.key`, and `token.pub` for nodes), tokens (`token-<name>`) and client
//! certificates (`client-<name>.pem/.key`).
//!
//! Invariant: an existing key is never overwritten. Asking for an admin certificate with names its
//! current one lacks moves the current pair aside (`admin-<id>.pem.<ms>.old`, `.key.<ms>.old`) and
//! writes a new pair valid for the old names and the new ones.
//!
//! Invariant: loading what a node needs never reads `private/`.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::authority::{parse_key, Authority};
use super::role::Role;
use super::store::{issue_core, parse_cert, read_text, write_new, write_pair, CredentialFiles, IssueReport};
use super::token::{TokenClaims, TokenSigner, TokenVerifier};
use super::CredentialError;
use crate::ids::NodeId;

/// Names every admin certificate is valid for: loopback, where the admin API listens by default.
pub const ADMIN_NAMES_DEFAULT: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What `gridkeeper certs` is asked to issue.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    /// Nodes to issue mesh and admin certificates for.
    pub nodes: Vec<NodeId>,
    /// Extra names (DNS names or IP addresses) the nodes' admin certificates must be valid for.
    pub sans: Vec<String>,
    /// Tokens to issue: name and role.
    pub tokens: Vec<(String, Role)>,
    /// Client certificates to issue: name and role.
    pub clients: Vec<(String, Role)>,
    /// The issue time written into tokens, Unix milliseconds.
    pub now_ms: u64,
}

/// Issues what `request` asks for into `dir`, creating the CA, the operator certificate, the admin
/// token and the token key if missing, and reusing them otherwise.
///
/// # Errors
/// [`CredentialError`] if the directory cannot be written, a name is invalid, or an existing CA or
/// token key does not load.
pub fn issue(dir: &Path, request: &IssueRequest) -> Result<IssueReport, CredentialError> {
    for name in &request.sans {
        check_san(name)?;
    }
    let mut report = IssueReport::default();
    let authority = issue_core(dir, &request.nodes, &mut report)?;
    let files = CredentialFiles::new(dir);
    let names: Vec<String> =
        ADMIN_NAMES_DEFAULT.iter().map(|name| name.to_string()).chain(request.sans.iter().cloned()).collect();
    // `--san` alone applies to every node that already has an admin certificate here.
    let admin_nodes = if request.nodes.is_empty() && !request.sans.is_empty() {
        existing_admin_nodes(dir)
    } else {
        request.nodes.clone()
    };
    for &node in &admin_nodes {
        issue_admin(&files, &authority, node, &names, request.now_ms, &mut report)?;
    }
    let signer = token_signer(&files, &mut report)?;
    for (name, role) in &request.tokens {
        let path = files.token(name);
        if path.exists() {
            report.kept.push(path);
            continue;
        }
        let claims = TokenClaims { name: name.clone(), role: *role, iat_ms: request.now_ms };
        let token = signer.issue(&claims).map_err(CredentialError::Issue)?;
        write_new(&path, format!("{token}\n").as_bytes(), 0o600)?;
        report.created.push(path);
    }
    for (name, role) in &request.clients {
        write_pair(
            &files.client_cert(name),
            &files.client_key(name),
            || authority.issue_client(name, *role),
            &mut report,
        )?;
    }
    Ok(report)
}

/// The nodes with an `admin-<id>.pem` in `dir`.
fn existing_admin_nodes(dir: &Path) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("admin-")?.strip_suffix(".pem")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

fn check_san(name: &str) -> Result<(), CredentialError> {
    let dns_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'*')
        });
    if name.parse::<IpAddr>().is_ok() || dns_ok {
        Ok(())
    } else {
        Err(CredentialError::Issue(format!("--san {name:?} is neither a DNS name nor an IP address")))
    }
}

/// Writes `admin-<id>.pem/.key` valid for `names`, or keeps the pair there if it already covers them.
fn issue_admin(
    files: &CredentialFiles,
    authority: &Authority,
    node: NodeId,
    names: &[String],
    now_ms: u64,
    report: &mut IssueReport,
) -> Result<(), CredentialError> {
    let (cert, key) = (files.admin_cert(node), files.admin_key(node));
    let mut wanted: BTreeSet<String> = names.iter().map(|name| normalize_name(name)).collect();
    if cert.exists() && key.exists() {
        let held = admin_names(&read_text(&cert)?, &cert.display().to_string())?;
        if wanted.is_subset(&held) {
            report.kept.extend([cert, key]);
            return Ok(());
        }
        wanted.extend(held);
        // The pair in use is moved aside, never overwritten: a node keeps serving it until restarted.
        for path in [&cert, &key] {
            let aside = path.with_file_name(format!(
                "{}.{now_ms}.old",
                path.file_name().and_then(|name| name.to_str()).unwrap_or("admin")
            ));
            fs::rename(path, &aside).map_err(super::store::io_error(path))?;
            report.moved.push((path.clone(), aside));
        }
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    write_pair(&cert, &key, || authority.issue_admin(node, &wanted), report)
}

fn normalize_name(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// The DNS names and IP addresses an admin certificate is valid for.
fn admin_names(pem: &str, origin: &str) -> Result<BTreeSet<String>, CredentialError> {
    let der = parse_cert(pem, origin)?;
    let invalid = |reason: String| CredentialError::Invalid { path: origin.to_string(), reason };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|error| invalid(error.to_string()))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|error| invalid(error.to_string()))?
        .map(|extension| extension.value.general_names.clone())
        .unwrap_or_default();
    Ok(names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// The token key: loaded from `private/token.key`, or created with `token.pub` beside it.
fn token_signer(files: &CredentialFiles, report: &mut IssueReport) -> Result<TokenSigner, CredentialError> {
    let (key, public) = (files.token_key(), files.token_public());
    let signer = if key.exists() {
        let der = PrivateKeyDer::from_pem_slice(read_text(&key)?.as_bytes()).map_err(|error| {
            CredentialError::Invalid { path: key.display().to_string(), reason: format!("not a PEM key: {error}") }
        })?;
        let signer = TokenSigner::from_pkcs8(der.secret_der())
            .map_err(|reason| CredentialError::Invalid { path: key.display().to_string(), reason })?;
        report.kept.push(key);
        signer
    } else {
        if public.exists() {
            return Err(CredentialError::Invalid {
                path: public.display().to_string(),
                reason: "a token public key exists without its private key; refusing to replace it".into(),
            });
        }
        let (signer, pkcs8) = TokenSigner::generate().map_err(CredentialError::Issue)?;
        write_new(&key, pem("PRIVATE KEY", &pkcs8).as_bytes(), 0o600)?;
        report.created.push(key);
        signer
    };
    if public.exists() {
        report.kept.push(public);
    } else {
        write_new(&public, pem("PUBLIC KEY", &signer.public_spki()).as_bytes(), 0o644)?;
        report.created.push(public);
    }
    Ok(signer)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// What a node's admin API serves HTTPS with, and the CA client certificates must chain to.
#[derive(Debug)]
pub struct AdminTlsFiles {
    /// The cluster CA.
    pub ca: CertificateDer<'static>,
    /// The admin certificate.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

/// Loads `node`'s admin certificate and the CA from `dir`.
///
/// # Errors
/// [`CredentialError`] naming the missing or unreadable file, with the command that issues it.
pub fn load_admin_tls(dir: &Path, node: NodeId) -> Result<AdminTlsFiles, CredentialError> {
    let files = CredentialFiles::new(dir);
    let (ca, cert, key) = (files.ca_cert(), files.admin_cert(node), files.admin_key(node));
    for path in [&cert, &key] {
        if !path.exists() {
            return Err(CredentialError::Invalid {
                path: path.display().to_string(),
                reason: format!(
                    "missing: the admin API serves HTTPS with it; `gridkeeper certs --out {} --nodes {node}` adds it \
                     (or run the node with --admin-plaintext on a loopback address)",
                    dir.display()
                ),
            });
        }
    }
    Ok(AdminTlsFiles {
        ca: parse_cert(&read_text(&ca)?, &ca.display().to_string())?,
        cert: parse_cert(&read_text(&cert)?, &cert.display().to_string())?,
        key: parse_key(&read_text(&key)?, &key.display().to_string())?,
    })
}

/// Loads the token key's public half from `dir`.
///
/// # Errors
/// [`CredentialError`] if `token.pub` is missing or not an Ed25519 public key.
pub fn load_token_verifier(dir: &Path) -> Result<TokenVerifier, CredentialError> {
    let path = CredentialFiles::new(dir).token_public();
    let origin = path.display().to_string();
    let text = read_text(&path).map_err(|error| match error {
        CredentialError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            CredentialError::Invalid {
                path,
                reason: "missing: nodes verify tokens with it; `gridkeeper certs --out DIR` adds it".into(),
            }
        }
        other => other,
    })?;
    let der = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(text.as_bytes()).map_err(|error| {
        CredentialError::Invalid { path: origin.clone(), reason: format!("not a PEM public key: {error}") }
    })?;
    TokenVerifier::from_spki(der.as_ref()).map_err(|reason| CredentialError::Invalid { path: origin, reason })
}

/// Reads a token from a file (as `certs --token` writes it).
///
/// # Errors
/// [`CredentialError`] if the file cannot be read or holds no token.
pub fn load_token_file(path: &Path) -> Result<String, CredentialError> {
    let token = read_text(path)?.trim().to_string();
    if token.is_empty() || token.len() > super::token::TOKEN_BYTES_MAX {
        return Err(CredentialError::Invalid {
            path: path.display().to_string(),
            reason: "no token in the file".into(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gk-edge-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn tokens_verify_with_the_public_key_nodes_get() {
        let dir = temp_dir("tokens");
        let request = IssueRequest {
            nodes: vec![NodeId(1)],
            tokens: vec![("ci".into(), Role::Reader)],
            clients: vec![("grafana".into(), Role::Metrics)],
            now_ms: 5,
            ..Default::default()
        };
        let report = issue(&dir, &request).expect("issue");
        let files = CredentialFiles::new(&dir);
        assert!(report.created.contains(&files.token("ci")) && report.created.contains(&files.client_cert("grafana")));
        use std::os::unix::fs::PermissionsExt;
        for secret in [files.token("ci"), files.client_key("grafana"), files.token_key(), files.admin_key(NodeId(1))] {
            assert_eq!(
                fs::metadata(&secret).expect("exists").permissions().mode() & 0o777,
                0o600,
                "{}",
                secret.display()
            );
        }
        let verifier = load_token_verifier(&dir).expect("public key");
        let token = load_token_file(&files.token("ci")).expect("token");
        assert_eq!(verifier.verify(&token).map(|claims| claims.role), Ok(Role::Reader));
        // Issuing again keeps the token and the key.
        let again = issue(&dir, &request).expect("again");
        assert!(again.kept.contains(&files.token("ci")) && again.kept.contains(&files.token_key()));
        assert_eq!(load_token_file(&files.token("ci")).expect("token"), token);
        load_admin_tls(&dir, NodeId(1)).expect("admin certificate");
        assert!(load_admin_tls(&dir, NodeId(2)).is_err());
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn new_admin_names_move_the_old_pair_aside_and_keep_every_name() {
        let dir = temp_dir("sans");
        let files = CredentialFiles::new(&dir);
        issue(&dir, &IssueRequest { nodes: vec![NodeId(1)], now_ms: 1, ..Default::default() }).expect("first");
        let first_key = fs::read(files.admin_key(NodeId(1))).expect("key");
        let request = IssueRequest {
            nodes: vec![NodeId(1)],
            sans: vec!["gk1.example.org".into(), "10.0.0.5".into()],
            now_ms: 2,
            ..Default::default()
        };
        let report = issue(&dir, &request).expect("second");
        let aside = dir.join("admin-1.key.2.old");
        assert!(report.moved.iter().any(|(_, to)| *to == aside));
        assert_eq!(fs::read(&aside).expect("old key kept"), first_key);
        let names = admin_names(&fs::read_to_string(files.admin_cert(NodeId(1))).expect("pem"), "test").expect("names");
        for name in ["localhost", "127.0.0.1", "::1", "gk1.example.org", "10.0.0.5"] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
        // `--san` alone re-issues every node's admin certificate that lacks the name.
        let report =
            issue(&dir, &IssueRequest { sans: vec!["gk.example.org".into()], now_ms: 4, ..Default::default() })
                .expect("sans alone");
        assert!(report.created.contains(&files.admin_cert(NodeId(1))), "{report:?}");
        // The same names again: nothing changes.
        let report = issue(&dir, &IssueRequest { now_ms: 5, ..request }).expect("third");
        assert!(report.moved.is_empty() && report.kept.contains(&files.admin_cert(NodeId(1))));
        assert!(issue(&dir, &IssueRequest { sans: vec!["bad name!".into()], ..Default::default() }).is_err());
        fs::remove_dir_all(&dir).ok();
    }
}
