//! What a ZooKeeper client is told for each of the contract's error codes.
//!
//! Invariant: every [`ErrorCode`] has one answer here, so a new code cannot reach a ZooKeeper client
//! as anything but a deliberate choice (the match has no wildcard).

use crate::api::ErrorCode;

use super::proto::code;

/// How a failed request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// With this ZooKeeper error code in the reply header.
    Code(i32),
    /// By closing the connection: nothing is known to the client but that it lost it, which is
    /// ZooKeeper's own answer when a server loses its quorum or a write's outcome is unknown (the
    /// client reconnects, to this node or another, and resolves it as after any connection loss).
    Close,
}

/// The answer for `error`.
pub fn answer(error: ErrorCode) -> Answer {
    Answer::Code(match error {
        ErrorCode::NoNode => code::NO_NODE,
        ErrorCode::NodeExists => code::NODE_EXISTS,
        ErrorCode::BadVersion => code::BAD_VERSION,
        ErrorCode::NotEmpty => code::NOT_EMPTY,
        ErrorCode::NoChildrenForEphemerals => code::NO_CHILDREN_FOR_EPHEMERALS,
        ErrorCode::SessionExpired => code::SESSION_EXPIRED,
        ErrorCode::NoAuth => code::NO_AUTH,
        ErrorCode::InvalidAcl => code::INVALID_ACL,
        ErrorCode::AuthFailed => code::AUTH_FAILED,
        // ZooKeeper refuses a bad path, and data over its bound, as bad arguments.
        ErrorCode::BadArguments | ErrorCode::InvalidPath | ErrorCode::TooLarge => code::BAD_ARGUMENTS,
        ErrorCode::Unimplemented => code::UNIMPLEMENTED,
        ErrorCode::QuotaExceeded | ErrorCode::WatchLimit | ErrorCode::TooManyWatches => code::QUOTA_EXCEEDED,
        ErrorCode::TooManyWaits => code::THROTTLED_OP,
        ErrorCode::Unavailable | ErrorCode::OutcomeUnknown => return Answer::Close,
        // Codes of the grid and the HTTP edge, and bugs: no ZooKeeper request can earn them.
        ErrorCode::SessionExists
        | ErrorCode::NoTask
        | ErrorCode::NoJob
        | ErrorCode::JobRunning
        | ErrorCode::Unauthorized
        | ErrorCode::Misdirected
        | ErrorCode::MembershipRefused
        | ErrorCode::Overloaded
        | ErrorCode::ActorFailed
        | ErrorCode::Internal => code::SYSTEM_ERROR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_codes_keep_their_zookeeper_numbers_and_lost_quorum_closes() {
        assert_eq!(answer(ErrorCode::NoNode), Answer::Code(-101));
        assert_eq!(answer(ErrorCode::NodeExists), Answer::Code(-110));
        assert_eq!(answer(ErrorCode::BadVersion), Answer::Code(-103));
        assert_eq!(answer(ErrorCode::NotEmpty), Answer::Code(-111));
        assert_eq!(answer(ErrorCode::SessionExpired), Answer::Code(-112));
        assert_eq!(answer(ErrorCode::InvalidPath), Answer::Code(-8));
        assert_eq!(answer(ErrorCode::Unavailable), Answer::Close);
        assert_eq!(answer(ErrorCode::OutcomeUnknown), Answer::Close);
        for &error in ErrorCode::ALL {
            if let Answer::Code(value) = answer(error) {
                assert!(value < 0, "{error:?} must be an error");
            }
        }
    }
}
