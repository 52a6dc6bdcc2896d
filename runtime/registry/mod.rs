//! The registry: a ZooKeeper-like tree of znodes with sessions and watches, as deterministic core
//! modules. `path.rs` validates paths, `command.rs` holds the replicated commands and their results,
//! `tree.rs` is the state machine, `secret.rs` session ids and secrets, `session.rs` the leader's
//! session clocks, `watch.rs` the local watch table. Replication (openraft) and I/O live in
//! `consensus/`.

pub mod acl;
pub mod command;
pub mod path;
pub mod secret;
// The leader's session clocks: an internal of the coordinator, hidden; not supported API.
#[doc(hidden)]
pub mod session;
pub mod tree;
pub mod watch;

pub use acl::{Acl, AuthId, Caller};
pub use command::{
    Applied, Change, Command, CreateMode, MultiOp, Outcome, Proposal, RegistryError, SessionId, Stat, STATE_VERSION,
    STATE_VERSION_ACLS, STATE_VERSION_ACTORS, STATE_VERSION_ACTOR_FORGET, STATE_VERSION_JOB_CONTROL,
    STATE_VERSION_PLACED, STATE_VERSION_STEAL,
};
pub use path::{PathError, ZPath};
pub use secret::{SessionSecret, SESSION_ID_MAX};
pub use tree::{Registry, RegistryLimits};
pub use watch::{WatchEvent, WatchKind, WatchTable, WatcherId};
