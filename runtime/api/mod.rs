//! The contract: every request, answer and error that crosses a process boundary, in one place.
//!
//! The admin HTTP API, the Rust client, the CLI and the ZooKeeper front end to come all speak these
//! types, and the service layer (`crate::service`) answers in them, so the local and remote paths
//! cannot drift. Serde only: no clock, no I/O, no decisions.
//!
//! - [`error`]: [`ErrorCode`] (ZooKeeper's codes and gridkeeper's) and [`ApiError`]; callers branch
//!   on the code and its [`ErrorCode::is_retryable`], never on text.
//! - [`registry`]: znode reads, writes, sessions and watches.
//! - [`auth`]: revocations and audit records.
//! - [`membership`]: adding and removing members, and what a joining voter starts with.
//! - [`grid`]: submit, query, wait, cancel, drain, schedule, and a joined worker's poll and report.
//! - [`actors`]: a call to a grid actor, and the listing of actors.

pub mod actors;
pub mod auth;
pub mod error;
pub mod grid;
pub mod membership;
pub mod registry;

pub use error::{ApiError, ErrorCode};
