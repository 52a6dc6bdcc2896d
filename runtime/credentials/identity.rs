//! Reading a node id out of a certificate, and the name a node's certificate must carry.

use x509_parser::extensions::GeneralName;

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
}
