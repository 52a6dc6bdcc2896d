//! Reading who a certificate names: a node id out of a node certificate, the [`Principal`] of a
//! client certificate at the admin edge, and the names these certificates carry.

use x509_parser::extensions::GeneralName;

use super::authority::OPERATOR_NAME;
use super::role::{check_credential_name, Principal, Proof, Role, OPERATOR_PRINCIPAL};
use crate::ids::NodeId;

const NODE_NAME_PREFIX: &str = "node-";
const NODE_NAME_SUFFIX: &str = ".gridkeeper";

/// The DNS name bound into `node`'s certificate, and the TLS server name used to dial it.
pub fn node_server_name(node: NodeId) -> String {
    format!("{NODE_NAME_PREFIX}{node}{NODE_NAME_SUFFIX}")
}

/// Why no node id could be read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not an X.509 certificate.
    #[error("peer certificate does not parse: {0}")]
    Unparsable(String),
    /// The certificate names no node (an operator certificate, say).
    #[error("peer certificate names no node")]
    NoNodeName,
    /// The certificate names more than one node.
    #[error("peer certificate names several nodes")]
    SeveralNodeNames,
}

/// The node id named by a DER certificate's `node-<id>.gridkeeper` DNS name.
///
/// # Errors
/// An [`IdentityError`] if the certificate does not parse or does not name exactly one node.
pub fn node_id_of(cert_der: &[u8]) -> Result<NodeId, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|error| IdentityError::Unparsable(error.to_string()))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|error| IdentityError::Unparsable(error.to_string()))?
        .map(|extension| extension.value.general_names.clone())
        .unwrap_or_default();
    let mut nodes = names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => node_id_from_name(dns),
        _ => None,
    });
    match (nodes.next(), nodes.next()) {
        (Some(node), None) => Ok(node),
        (None, _) => Err(IdentityError::NoNodeName),
        (Some(_), Some(_)) => Err(IdentityError::SeveralNodeNames),
    }
}

/// The DNS name bound into a client certificate issued to `name` with `role`:
/// `<name>.<role>.client.gridkeeper`.
pub fn client_cert_name(name: &str, role: Role) -> String {
    format!("{name}.{}{CLIENT_NAME_SUFFIX}", role.name())
}

const CLIENT_NAME_SUFFIX: &str = ".client.gridkeeper";

/// Who a client certificate (already verified against the cluster CA) names: the operator, a node
/// (a worker, for its own node only), or an issued client with its role. `None` for a certificate
/// that names none of these, or more than one.
pub fn principal_of(cert_der: &[u8]) -> Option<Principal> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let names = cert.subject_alternative_name().ok()??.value.general_names.clone();
    let mut found = names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => principal_from_name(dns),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(principal), None) => Some(principal),
        _ => None,
    }
}

fn principal_from_name(dns: &str) -> Option<Principal> {
    if dns == OPERATOR_NAME {
        return Some(Principal { name: OPERATOR_PRINCIPAL.into(), role: Role::Operator, proof: Proof::Certificate });
    }
    if let Some(node) = node_id_from_name(dns) {
        return Some(Principal { name: format!("node-{node}"), role: Role::Worker(node), proof: Proof::Certificate });
    }
    let (name, role) = dns.strip_suffix(CLIENT_NAME_SUFFIX)?.split_once('.')?;
    check_credential_name(name).ok()?;
    let role = Role::parse_issuable(role).ok()?;
    Some(Principal { name: name.into(), role, proof: Proof::Certificate })
}

fn node_id_from_name(dns: &str) -> Option<NodeId> {
    dns.strip_prefix(NODE_NAME_PREFIX)?.strip_suffix(NODE_NAME_SUFFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Authority;

    #[test]
    fn node_names_round_trip() {
        assert_eq!(node_id_from_name(&node_server_name(NodeId(42))), Some(NodeId(42)));
        assert_eq!(node_id_from_name("node-0.gridkeeper"), None);
        assert_eq!(node_id_from_name("node-x.gridkeeper"), None);
        assert_eq!(node_id_from_name("operator.gridkeeper"), None);
    }

    #[test]
    fn issued_certificates_carry_their_node_id() {
        let authority = Authority::generate().expect("CA");
        let credentials = authority.node_credentials(NodeId(7)).expect("node 7");
        assert_eq!(node_id_of(credentials.cert.as_ref()), Ok(NodeId(7)));
        let operator = authority.issue_operator().expect("operator");
        let operator_der = crate::credentials::store::parse_cert(&operator.cert_pem, "operator").expect("pem");
        assert_eq!(node_id_of(operator_der.as_ref()), Err(IdentityError::NoNodeName));
        assert!(matches!(node_id_of(b"not a certificate"), Err(IdentityError::Unparsable(_))));
    }

    #[test]
    fn client_certificates_name_their_principal() {
        let authority = Authority::generate().expect("CA");
        let der = |pem: &str| crate::credentials::store::parse_cert(pem, "test").expect("pem");
        let operator = der(&authority.issue_operator().expect("operator").cert_pem);
        assert_eq!(
            principal_of(operator.as_ref()).map(|p| (p.name, p.role)),
            Some(("operator".into(), Role::Operator))
        );
        let node = authority.node_credentials(NodeId(4)).expect("node");
        assert_eq!(principal_of(node.cert.as_ref()).map(|p| p.role), Some(Role::Worker(NodeId(4))));
        let client = der(&authority.issue_client("grafana", Role::Metrics).expect("client").cert_pem);
        assert_eq!(
            principal_of(client.as_ref()),
            Some(Principal { name: "grafana".into(), role: Role::Metrics, proof: Proof::Certificate })
        );
        assert_eq!(principal_from_name("x.root.client.gridkeeper"), None);
        assert_eq!(principal_from_name("node-1.operator.client.gridkeeper"), None);
        assert_eq!(principal_of(b"garbage"), None);
    }
}
