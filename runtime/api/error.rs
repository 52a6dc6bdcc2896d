//! One error contract for every front end: an [`ErrorCode`] that callers branch on, and a message
//! for people. Nothing outside this module looks at an error's text.
//!
//! The codes cover ZooKeeper's (`NoNode`, `NodeExists`, `BadVersion`, `NotEmpty`, `NoAuth`,
//! `InvalidAcl`, `SessionExpired`, ...) so that a ZooKeeper front end maps them one to one, and add
//! what a replicated service needs beyond them (`Unavailable` versus `OutcomeUnknown`, limits).
//!
//! On the wire (the admin API's JSON) an error is `{"error": "<name>", "message": "..."}`, `name` being
//! [`ErrorCode::name`]; a name this build does not know decodes as [`ErrorCode::Internal`] with the
//! message kept.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::consensus::CoordinatorError;
use crate::registry::RegistryError;

macro_rules! codes {
    ($($(#[$doc:meta])* $code:ident => $name:literal,)*) => {
        /// What went wrong, as a caller branches on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code,)*];

            /// The short name people and the wire see (`no node`, `bad version`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $name,)*
                }
            }

            /// The code of a wire name, if this build knows it.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name {
                    $($name => Some(ErrorCode::$code),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // ZooKeeper's codes.
    /// The node (or, for a create, its parent) does not exist.
    NoNode => "no node",
    /// The node already exists.
    NodeExists => "node exists",
    /// A conditional change named a version the node is not at.
    BadVersion => "bad version",
    /// A node with children cannot be deleted.
    NotEmpty => "not empty",
    /// Ephemeral nodes cannot have children.
    NoChildrenForEphemerals => "no children for ephemerals",
    /// The session has expired; its ephemerals are gone.
    SessionExpired => "session expired",
    /// The caller's credential does not allow this (a session secret missing or wrong).
    NoAuth => "no auth",
    /// An access control list is malformed.
    InvalidAcl => "invalid acl",
    /// Authentication failed.
    AuthFailed => "auth failed",
    /// The request's arguments are wrong (out of range, missing, contradictory).
    BadArguments => "bad arguments",
    /// The operation is not implemented by this server.
    Unimplemented => "unimplemented",
    // gridkeeper's.
    /// A path is not a valid registry path.
    InvalidPath => "invalid path",
    /// A value, request or log entry exceeds its size limit; sending it again cannot succeed.
    TooLarge => "too large",
    /// A count limit of the replicated state is reached (znodes, sessions, tasks, bytes held).
    QuotaExceeded => "quota exceeded",
    /// A session id is taken (its proposer draws another).
    SessionExists => "session exists",
    /// No such task (never accepted, or forgotten by history retention).
    NoTask => "no task",
    /// No recurring job of that name.
    NoJob => "no job",
    /// A job's run was refused because its last run is still going and the job does not allow overlap.
    JobRunning => "job running",
    /// The call needs a credential it did not present (the admin token).
    Unauthorized => "unauthorized",
    /// Nothing was applied: no leader or quorum could be reached in time. Retrying may succeed.
    Unavailable => "unavailable",
    /// A change was proposed and its outcome was lost (the leader changed or went silent): it may or
    /// may not have been applied, as ZooKeeper's connection loss. Only an idempotent call may be sent
    /// again.
    OutcomeUnknown => "outcome unknown",
    /// This node's watch table is full.
    WatchLimit => "watch limit",
    /// This client address holds as many watch streams as it may.
    TooManyWatches => "too many watches",
    /// This node holds as many task waits as it may.
    TooManyWaits => "too many waits",
    /// The request named a host this server does not answer for.
    Misdirected => "misdirected",
    /// A membership change was refused: it would leave no quorum, the id was removed before, or
    /// another change is in progress. Nothing changed.
    MembershipRefused => "membership refused",
    /// A bug: the server answered something it should not have.
    Internal => "internal",
    /// The target is too busy to take the call now (an actor's mailbox is full, or as many
    /// submissions wait for an entry on the node as it holds). Nothing was applied; sending it again
    /// later may succeed.
    Overloaded => "overloaded",
    /// The actor's handler refused the message with an error of its own. Sending the same message
    /// again gives the same answer.
    ActorFailed => "actor failed",
}

impl ErrorCode {
    /// Whether sending the same call again can do no harm and may succeed: nothing was applied and
    /// the refusal was about the moment (no leader, a full table of waits), not the call.
    /// [`ErrorCode::OutcomeUnknown`] is not: see [`ErrorCode::may_have_applied`].
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::WatchLimit
                | ErrorCode::TooManyWatches
                | ErrorCode::TooManyWaits
                | ErrorCode::Overloaded
        )
    }

    /// Whether the change may have been applied although the call failed. An idempotent call (a
    /// fenced report, a read) may be sent again; a submission must be looked up first.
    pub fn may_have_applied(self) -> bool {
        self == ErrorCode::OutcomeUnknown
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(ErrorCode::from_name(&name).unwrap_or(ErrorCode::Internal))
    }
}

/// An error as every front end reports it: a code to branch on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong.
    #[serde(rename = "error")]
    pub code: ErrorCode,
    /// The full message, for people; never matched by a program.
    pub message: String,
    /// For a multi that failed, the index of its failing op (the others were not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_op: Option<usize>,
}

impl ApiError {
    /// An error of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl ToString) -> ApiError {
        ApiError { code, message: message.to_string(), failed_op: None }
    }

    /// A [`ErrorCode::BadArguments`] error.
    pub fn bad_arguments(message: impl ToString) -> ApiError {
        ApiError::new(ErrorCode::BadArguments, message)
    }

    /// An [`ErrorCode::Internal`] error for an answer of the wrong kind.
    pub fn unexpected(answer: impl std::fmt::Debug) -> ApiError {
        ApiError::new(ErrorCode::Internal, format!("unexpected {answer:?}"))
    }

    /// See [`ErrorCode::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.code.is_retryable()
    }
}

impl RegistryError {
    /// This error's code. A failed multi reports its failing op's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::NoNode { .. } => ErrorCode::NoNode,
            RegistryError::NodeExists { .. } => ErrorCode::NodeExists,
            RegistryError::BadVersion { .. } => ErrorCode::BadVersion,
            RegistryError::NotEmpty { .. } => ErrorCode::NotEmpty,
            RegistryError::NoChildrenForEphemerals { .. } => ErrorCode::NoChildrenForEphemerals,
            RegistryError::InvalidPath { .. } => ErrorCode::InvalidPath,
            RegistryError::TooLarge { .. } => ErrorCode::TooLarge,
            RegistryError::SessionExpired { .. } => ErrorCode::SessionExpired,
            RegistryError::BadArguments { .. } => ErrorCode::BadArguments,
            RegistryError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            RegistryError::MultiFailed { cause, .. } => cause.code(),
            RegistryError::NoAuth { .. } => ErrorCode::NoAuth,
            RegistryError::SessionExists { .. } => ErrorCode::SessionExists,
            RegistryError::Denied { .. } => ErrorCode::NoAuth,
            RegistryError::InvalidAcl { .. } => ErrorCode::InvalidAcl,
        }
    }
}

impl CoordinatorError {
    /// This error's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoordinatorError::Unavailable(_) => ErrorCode::Unavailable,
            CoordinatorError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            CoordinatorError::Registry(error) => error.code(),
            CoordinatorError::Watch(_) => ErrorCode::WatchLimit,
            CoordinatorError::EntryTooLarge { .. } => ErrorCode::TooLarge,
            CoordinatorError::MembershipRefused(_) => ErrorCode::MembershipRefused,
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let failed_op = match &error {
            RegistryError::MultiFailed { index, .. } => Some(*index),
            _ => None,
        };
        ApiError { failed_op, ..ApiError::new(error.code(), &error) }
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(error: CoordinatorError) -> Self {
        match error {
            CoordinatorError::Registry(error) => error.into(),
            other => ApiError::new(other.code(), &other),
        }
    }
}

impl From<crate::registry::PathError> for ApiError {
    fn from(error: crate::registry::PathError) -> Self {
        RegistryError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_distinct_and_round_trips() {
        let mut names = std::collections::BTreeSet::new();
        for &code in ErrorCode::ALL {
            assert!(names.insert(code.name()), "{code:?} shares its name");
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
            let json = serde_json::to_string(&ApiError::new(code, "m")).expect("json");
            assert_eq!(serde_json::from_str::<ApiError>(&json).expect("decode").code, code);
        }
    }

    #[test]
    fn an_unknown_name_decodes_as_internal_keeping_the_message() {
        let decoded: ApiError =
            serde_json::from_str(r#"{"error":"from a newer build","message":"m"}"#).expect("decode");
        assert_eq!(decoded, ApiError::new(ErrorCode::Internal, "m"));
    }

    #[test]
    fn only_moment_refusals_are_retryable() {
        assert!(ErrorCode::Unavailable.is_retryable());
        assert!(!ErrorCode::OutcomeUnknown.is_retryable(), "it may have applied");
        assert!(ErrorCode::OutcomeUnknown.may_have_applied());
        assert!(!ErrorCode::NoNode.is_retryable());
        assert!(!ErrorCode::TooLarge.is_retryable(), "sending it again cannot succeed");
        assert!(ErrorCode::Overloaded.is_retryable(), "a full mailbox took nothing");
        assert!(!ErrorCode::Overloaded.may_have_applied());
        assert!(!ErrorCode::ActorFailed.is_retryable(), "the handler answers the same again");
        assert!(!ErrorCode::ActorFailed.may_have_applied());
    }

    #[test]
    fn a_failed_multi_reports_its_cause() {
        let cause = RegistryError::BadVersion { path: "/a".into(), expected: 1, actual: 2 };
        let multi = RegistryError::MultiFailed { index: 0, cause: Box::new(cause) };
        assert_eq!(multi.code(), ErrorCode::BadVersion);
    }
}
