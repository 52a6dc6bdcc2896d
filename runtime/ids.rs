//! Identifier and time newtypes shared by every module.
//!
//! Ids and times never cross a module boundary as a bare `u64`: a `NodeId` cannot be passed where a
//! duration is expected, and `Millis` always means "milliseconds on this node's monotonic clock".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A cluster member's id, as given in `--peers` and bound into its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a node id string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected a whole number from 1 to 2^63")]
pub struct NodeIdError(pub String);

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().parse::<u64>() {
            // Zero is reserved so that "no node" never aliases a real member in wire formats.
            Ok(id) if id >= 1 && id <= i64::MAX as u64 => Ok(NodeId(id)),
            _ => Err(NodeIdError(text.to_string())),
        }
    }
}

/// A point on a monotonic clock, in milliseconds since an arbitrary origin (the node's start, or the
/// simulation's). Core modules take it as an input and never read a clock themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This point moved `ms` milliseconds later, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_parses_only_positive_numbers() {
        assert_eq!("7".parse::<NodeId>(), Ok(NodeId(7)));
        assert_eq!(" 12 ".parse::<NodeId>(), Ok(NodeId(12)));
        for bad in ["0", "-1", "x", "", "18446744073709551615"] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn millis_arithmetic_saturates() {
        assert_eq!(Millis(5).since(Millis(9)), 0);
        assert_eq!(Millis(9).since(Millis(5)), 4);
        assert_eq!(Millis(u64::MAX).plus(1), Millis(u64::MAX));
    }
}
