//! A member's mesh address as configured: `HOST:PORT`, where the host is an IPv4 address, a bracketed
//! IPv6 literal or a DNS name. Core: parsing and printing only; names are resolved where they are
//! dialed (`connection.rs`), again on every dial, so a peer that comes back at a new address is found.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest DNS name accepted (RFC 1035's 253 characters in text form).
pub const HOST_NAME_BYTES_MAX: usize = 253;
/// Longest label of a DNS name.
const LABEL_BYTES_MAX: usize = 63;

/// The host part of a [`PeerAddr`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An IP address, dialed as it is.
    Ip(IpAddr),
    /// A DNS name (lower-cased, no trailing dot), resolved on every dial.
    Name(String),
}

/// `HOST:PORT` of a member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerAddr {
    /// The host.
    pub host: Host,
    /// The UDP port.
    pub port: u16,
}

/// Why a text is not a `HOST:PORT` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not HOST:PORT (an IPv4 address, a [bracketed] IPv6 address or a DNS name, then a port): {reason}")]
pub struct AddrError {
    /// The text given (cut to a bounded length).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PeerAddr {
    /// The socket address, if the host is an IP address (no resolution needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// The DNS name, if the host is one.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr { host: Host::Ip(addr.ip()), port: addr.port() }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the host is empty");
    }
    if name.len() > HOST_NAME_BYTES_MAX {
        return Err("the name is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the name has an empty label");
        }
        if label.len() > LABEL_BYTES_MAX {
            return Err("a label of the name is longer than 63 characters");
        }
        if !label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
            return Err("a name may hold only letters, digits, '-', '_' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of the name starts or ends with '-'");
        }
    }
    // "1.2.3" or "300.1.1.1" is a mistyped address, not a name (no top-level domain is numeric).
    if name.rsplit('.').next().is_some_and(|last| last.bytes().all(|byte| byte.is_ascii_digit())) {
        return Err("the host is neither a valid IP address nor a name (its last label is numeric)");
    }
    Ok(())
}

impl FromStr for PeerAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<PeerAddr, AddrError> {
        let error = |reason| AddrError { text: text.chars().take(80).collect(), reason };
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| error("no :PORT"))?;
        let port: u16 = port.parse().map_err(|_| error("the port is not a number from 0 to 65535"))?;
        if host.starts_with('[') || host.contains(':') {
            return Err(error("an IPv6 address must be a valid one, in brackets: [::1]:7100"));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        valid_name(&name).map_err(error)?;
        Ok(PeerAddr { host: Host::Name(name), port })
    }
}

impl serde::Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PeerAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeerAddr, &'static str> {
        text.parse::<PeerAddr>().map_err(|error| error.reason)
    }

    #[test]
    fn addresses_and_names_parse_and_print_back() {
        for text in ["127.0.0.1:7100", "[::1]:7100", "[fe80::1]:1", "gk1.example.org:7100", "gridkeeper-0.peers:7100"] {
            assert_eq!(parse(text).expect(text).to_string(), text);
        }
        assert_eq!(parse("GK1.Example.ORG.:7100").expect("a name").to_string(), "gk1.example.org:7100");
        assert_eq!(parse("localhost:9").expect("a name").name(), Some("localhost"));
        assert_eq!(parse("10.0.0.5:7100").expect("an ip").socket_addr(), Some("10.0.0.5:7100".parse().expect("ip")));
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        for text in [
            "",
            "gk1",
            "gk1:",
            "gk1:70000",
            ":7100",
            "::1:7100",
            "[::1:7100",
            "300.1.1.1:7100",
            "1.2.3:7100",
            "-gk.example:1",
            "gk..example:1",
            "gk example:1",
            "gk/1:1",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
        let long = format!("{}.example:1", "a".repeat(64));
        assert!(parse(&long).is_err());
        let too_long = format!("{}example:1", "abcdefgh.".repeat(29));
        assert_eq!(parse(&too_long), Err("the name is longer than 253 characters"));
    }
}
