//! Issuing certificates in memory with rcgen. No files, no clock beyond rcgen's defaults.
//!
//! Mesh keys (the CA's and the nodes') are Ed25519: small, fast, and deterministic signatures keep
//! simulated handshakes the same size from run to run. Keys used at the admin edge (its HTTPS
//! certificates, the operator's and clients' certificates) are ECDSA P-256, which every TLS client
//! (curl and OpenSSL 3.0, Prometheus, browsers) reads and offers.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::identity::{client_cert_name, node_server_name};
use super::role::{check_credential_name, Role};
use super::{CredentialError, NodeCredentials};
use crate::ids::NodeId;

/// DNS name in the operator's client certificate; it names no node, so the mesh refuses it.
pub const OPERATOR_NAME: &str = "operator.gridkeeper";

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// A cluster certificate authority able to sign node and operator certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn issue_error(error: rcgen::Error) -> CredentialError {
    CredentialError::Issue(error.to_string())
}

impl Authority {
    /// A new CA with a fresh key.
    ///
    /// # Errors
    /// [`CredentialError::Issue`] if rcgen fails.
    pub fn generate() -> Result<Authority, CredentialError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(issue_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue_error)?;
        params.distinguished_name.push(DnType::CommonName, "gridkeeper cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(issue_error)?;
        Ok(Authority { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA described by an existing certificate and key, to sign more certificates with.
    ///
    /// # Errors
    /// [`CredentialError::Invalid`] if either PEM does not parse.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_origin: &str,
        key_origin: &str,
    ) -> Result<Authority, CredentialError> {
        let invalid = |origin: &str, reason: String| CredentialError::Invalid { path: origin.to_string(), reason };
        let key = KeyPair::from_pem(key_pem).map_err(|error| invalid(key_origin, format!("CA key: {error}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|error| invalid(cert_origin, format!("CA certificate (or a key that is not its own): {error}")))?;
        Ok(Authority { issuer, cert_pem: cert_pem.to_string() })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key as PEM, to store beside the certificate.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `node`, usable as TLS server and client, naming `node-<id>.gridkeeper`.
    ///
    /// # Errors
    /// [`CredentialError::Issue`] if rcgen fails.
    pub fn issue_node(&self, node: NodeId) -> Result<IssuedPem, CredentialError> {
        self.issue(
            node_server_name(node),
            format!("gridkeeper node {node}"),
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The operator's client certificate, for the CLI and the tools an operator points at the admin
    /// API (curl, Prometheus).
    ///
    /// # Errors
    /// [`CredentialError::Issue`] if rcgen fails.
    pub fn issue_operator(&self) -> Result<IssuedPem, CredentialError> {
        self.issue_names(
            vec![OPERATOR_NAME.to_string()],
            "gridkeeper operator".to_string(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
    }

    /// A client certificate for the admin API naming `name` with `role`
    /// (`<name>.<role>.client.gridkeeper`).
    ///
    /// # Errors
    /// [`CredentialError::Issue`] for a bad name, a worker role, or if rcgen fails.
    pub fn issue_client(&self, name: &str, role: Role) -> Result<IssuedPem, CredentialError> {
        check_credential_name(name).map_err(CredentialError::Issue)?;
        if matches!(role, Role::Worker(_)) {
            return Err(CredentialError::Issue("a worker authenticates with its node certificate".into()));
        }
        self.issue_names(
            vec![client_cert_name(name, role)],
            format!("gridkeeper {role} {name}"),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
    }

    /// The TLS server certificate of `node`'s admin API, valid for `names` (DNS names and IP
    /// addresses, as clients will dial it).
    ///
    /// # Errors
    /// [`CredentialError::Issue`] for a name that is neither, or if rcgen fails.
    pub fn issue_admin(&self, node: NodeId, names: &[String]) -> Result<IssuedPem, CredentialError> {
        self.issue_names(
            names.to_vec(),
            format!("gridkeeper admin API of node {node}"),
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
    }

    fn issue(
        &self,
        dns_name: String,
        common_name: String,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedPem, CredentialError> {
        self.issue_names(vec![dns_name], common_name, usages, &rcgen::PKCS_ED25519)
    }

    fn issue_names(
        &self,
        names: Vec<String>,
        common_name: String,
        usages: Vec<ExtendedKeyUsagePurpose>,
        algorithm: &'static rcgen::SignatureAlgorithm,
    ) -> Result<IssuedPem, CredentialError> {
        let key = KeyPair::generate_for(algorithm).map_err(issue_error)?;
        // rcgen takes a name that parses as an IP address as an IP address SAN.
        let mut params = CertificateParams::new(names).map_err(issue_error)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.serial_number = Some(serial_number());
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_error)?;
        Ok(IssuedPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// In-memory credentials for `node`, for simulations and tests that need no files.
    ///
    /// # Errors
    /// [`CredentialError::Issue`] if rcgen fails.
    pub fn node_credentials(&self, node: NodeId) -> Result<NodeCredentials, CredentialError> {
        let issued = self.issue_node(node)?;
        let origins = super::store::PemOrigins { ca: "memory: CA", cert: "memory: certificate", key: "memory: key" };
        super::store::credentials_from_pem(node, &self.cert_pem, &issued.cert_pem, &issued.key_pem, &origins)
    }

    /// The CA certificate as DER.
    ///
    /// # Errors
    /// [`CredentialError::Invalid`] if the stored PEM is not a certificate.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CredentialError> {
        super::store::parse_cert(&self.cert_pem, "CA")
    }
}

/// A random 16-byte serial whose DER encoding always has the same length (first byte nonzero, high
/// bit clear), so certificates of a kind are the same size and simulated handshakes replay exactly.
fn serial_number() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Parses a PKCS#8 key from PEM.
pub(crate) fn parse_key(pem: &str, origin: &str) -> Result<PrivatePkcs8KeyDer<'static>, CredentialError> {
    use rustls::pki_types::pem::PemObject;
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| CredentialError::Invalid {
        path: origin.to_string(),
        reason: format!("not a PKCS#8 private key: {error}"),
    })
}
