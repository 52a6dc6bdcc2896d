//! Consensus: openraft behind one module, with its storage (segment files, group commit), its network (the
//! mesh's consensus stream), the registry state machine, and the [`Coordinator`] API on top.
//!
//! `types.rs` (openraft type config), `disk.rs` (the group committer), `wal.rs` (the log's segment files), `log_store.rs`,
//! `state_machine.rs`, `network.rs`, `rpc.rs` (request/response over the mesh), `chunk.rs` (long
//! messages in frame-sized pieces), `request.rs` (client
//! requests), `watch_hub.rs` (watch delivery), `lease.rs` (core: when the leader's lease serves a
//! linearizable read), `follower_lease.rs` (core: when a follower's read lease serves one) and
//! `read_gate.rs` (its shell), `read_batch.rs` (reads waiting for a read index, batched into rounds), `coordinator.rs` (the API).

pub mod chunk;
pub mod coordinator;
pub mod disk;
pub mod follower_lease;
pub mod lease;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod observer;
mod read_batch;
pub mod read_gate;
pub mod readiness;
pub mod request;
pub mod rpc;
mod session_draw;
pub mod state_machine;
pub mod telemetry;
pub mod types;
pub mod wal;
pub mod watch_hub;

pub use coordinator::{
    ConsensusStatus, Coordinator, CoordinatorConfig, NoObserver, RaftTimings, ReadIndexCounts, StateObserver,
};
pub use request::{Consistency, CoordinatorError, ReadOp, ReadResult, Replication, Reply, Request};
