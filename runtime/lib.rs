//! gridkeeper: one binary and one library that run a task grid on a small cluster of your own nodes.
//!
//! Every node is the same process. Nodes join a **QUIC mesh with mutual TLS** (a certificate per
//! node, bound to its id, from the cluster's own CA). Over the mesh they replicate, with Raft, a
//! **ZooKeeper-like registry**: znodes (persistent, ephemeral, sequential, container, TTL), versions,
//! multi, sessions and watches, served by any node ([`registry`], [`client`], [`recipes`]). In the
//! same replicated state lives the **task grid**: tasks you submit are accepted once committed,
//! placed by the leader on nodes that run their kind, and run there as **supervised task actors**;
//! a node's death re-queues what it held, and fencing tokens record each task's completion exactly
//! once ([`grid`], [`service`], [`node`]). Beside tasks live **grid actors**: stateful, addressed by
//! key, placed by the grid, and moved with their committed state when their node dies ([`actors`]).
//!
//! The supported API is what this page lists: the modules below and the re-exports at the root.
//! `runtime/ARCHITECTURE.md` is the map of the code, its invariants and its flows.
//!
//! # A task
//!
//! A task type names itself, declares its input and output (rkyv for Rust callers, serde for the
//! CLI and HTTP), and runs one attempt at a time. It is plain async code, so it can be tested
//! without a cluster.
//!
//! ```
//! use gridkeeper::{grid::FencingToken, AttemptInfo, NodeId, Task, TaskError, TaskId};
//!
//! /// Doubles a number.
//! struct Double;
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize)]
//! struct Number(u64);
//!
//! impl Task for Double {
//!     const NAME: &'static str = "double";
//!     type Input = Number;
//!     type Output = Number;
//!
//!     async fn run(&self, input: Number, _attempt: AttemptInfo) -> Result<Number, TaskError> {
//!         // An error (or a panic) fails this attempt; the task's retry policy decides what next.
//!         input.0.checked_mul(2).map(Number).ok_or_else(|| TaskError::new("too large to double"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // One attempt by hand, as a unit test would run it:
//! let attempt = AttemptInfo { task: TaskId(1), number: 1, token: FencingToken(1), node: NodeId(1) };
//! assert_eq!(Double.run(Number(21), attempt).await.map(|n| n.0), Ok(42));
//! assert!(Double.run(Number(u64::MAX), attempt).await.is_err());
//! # }
//! ```
//!
//! # A node
//!
//! A deployment runs the `gridkeeper node` binary, or [`Node::builder`] in your own process to add
//! your task types. [`LocalCluster`] starts real nodes (real QUIC, real disk, real Raft) inside one
//! process, with their own CA, data directories and loopback ports: the way examples and tests run.
//!
//! ```
//! # struct Double;
//! # #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize)]
//! # struct Number(u64);
//! # impl gridkeeper::Task for Double {
//! #     const NAME: &'static str = "double";
//! #     type Input = Number;
//! #     type Output = Number;
//! #     async fn run(&self, n: Number, _: gridkeeper::AttemptInfo) -> Result<Number, gridkeeper::TaskError> {
//! #         Ok(Number(2 * n.0))
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use gridkeeper::{node::builtin, LocalCluster, LocalOptions, NodeId};
//!
//! # let dir = std::env::temp_dir().join(format!("gridkeeper-doc-node-{}", std::process::id()));
//! // The node runs the built-in kinds (`noop`, `echo`, `sleep`, ...) and `Double`.
//! let options = LocalOptions { kinds: builtin::kinds().with(Double), ..LocalOptions::default() };
//! let cluster = LocalCluster::start_with(1, &dir, options)?;
//! let leader = cluster.wait_for_leader(Duration::from_secs(10)).ok_or("no leader elected")?;
//! assert_eq!(leader, NodeId(1));
//! println!("node 1 leads; its admin API is at {}", cluster.admin(leader));
//! # drop(cluster);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # A submit
//!
//! A [`Grid`] submits tasks and awaits them: `node.grid()` from a [`Node`] in this process, or
//! [`Grid::remote`] over any node's admin API from anywhere else. Both answer alike.
//!
//! ```
//! # struct Double;
//! # #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize)]
//! # struct Number(u64);
//! # impl gridkeeper::Task for Double {
//! #     const NAME: &'static str = "double";
//! #     type Input = Number;
//! #     type Output = Number;
//! #     async fn run(&self, n: Number, _: gridkeeper::AttemptInfo) -> Result<Number, gridkeeper::TaskError> {
//! #         Ok(Number(2 * n.0))
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use gridkeeper::{Client, Grid, NodeId, SubmitOptions};
//!
//! # let dir = std::env::temp_dir().join(format!("gridkeeper-doc-submit-{}", std::process::id()));
//! # let options = gridkeeper::LocalOptions {
//! #     kinds: gridkeeper::node::builtin::kinds().with(Double),
//! #     ..Default::default()
//! # };
//! # let cluster = gridkeeper::LocalCluster::start_with(1, &dir, options)?;
//! # cluster.wait_for_leader(Duration::from_secs(10)).ok_or("no leader elected")?;
//! # let (admin, certs) = (cluster.admin(NodeId(1)), cluster.certs());
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     // Any node's admin address, and a credentials directory from `gridkeeper certs`: its CA
//!     // verifies the node's HTTPS certificate, its operator certificate is the credential.
//!     let grid = Grid::remote(Client::connect(admin, gridkeeper::Access::from_certs(&certs)?).await?);
//!     let task = grid.submit::<Double>(&Number(21), &SubmitOptions::default()).await?;
//!     assert_eq!(task.result(Duration::from_secs(10)).await?.0, 42);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # drop(runtime);
//! # drop(cluster);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # An actor
//!
//! Tasks run and end; a grid **actor** lives on, keeps state and answers messages addressed by a key
//! ([`actors`] teaches the model). Its first call activates it on a node; later calls go straight to
//! that node. A durable actor commits its state through the log before it answers, and is activated
//! elsewhere from that state when its node dies.
//!
//! ```
//! # use gridkeeper::{ActorContext, ActorError, GridActor};
//! # /// A durable tally per key.
//! # struct Tally(u64);
//! # #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize)]
//! # struct Add(u64);
//! # impl GridActor for Tally {
//! #     const KIND: &'static str = "tally";
//! #     const DURABLE: bool = true;
//! #     type Message = Add;
//! #     type Reply = u64;
//! #     fn activate(_key: &str, state: Option<&[u8]>) -> Result<Tally, ActorError> {
//! #         let bytes = state.map(<[u8; 8]>::try_from).transpose().map_err(|_| ActorError::new("not 8 bytes"))?;
//! #         Ok(Tally(bytes.map_or(0, u64::from_le_bytes)))
//! #     }
//! #     async fn handle(&mut self, add: Add, _ctx: &ActorContext) -> Result<u64, ActorError> {
//! #         self.0 += add.0;
//! #         Ok(self.0)
//! #     }
//! #     fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
//! #         Ok(self.0.to_le_bytes().to_vec())
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use gridkeeper::{actors::builtin, Client, Grid, GridActors, LocalCluster, LocalOptions, NodeId};
//!
//! # let dir = std::env::temp_dir().join(format!("gridkeeper-doc-actor-{}", std::process::id()));
//! // The nodes host the built-in `counter` and `Tally` (`Node::builder().actor::<Tally>()` in a node
//! // of your own).
//! let options = LocalOptions { actors: builtin::kinds().with::<Tally>(), ..LocalOptions::default() };
//! let cluster = LocalCluster::start_with(1, &dir, options)?;
//! cluster.wait_for_leader(Duration::from_secs(10)).ok_or("no leader elected")?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let grid = Grid::remote(Client::connect(cluster.admin(NodeId(1)), cluster.access()?).await?);
//!     let visits = grid.actor::<Tally>("visits");
//!     // `unavailable` took nothing (here: the node has not registered its kinds yet): send it again.
//!     let mut tries = 0;
//!     let total = loop {
//!         match visits.call(Add(2)).await {
//!             Err(error) if error.code().is_retryable() && tries < 200 => tries += 1,
//!             answer => break answer?,
//!         }
//!         tokio::time::sleep(Duration::from_millis(50)).await;
//!     };
//!     assert_eq!(total, 2);
//!     // With an idempotency key a call may be sent again: the repeat gets the recorded reply.
//!     let keyed = visits.clone().with_idempotency_key("visit-42");
//!     assert_eq!(keyed.call(Add(1)).await?, 3);
//!     assert_eq!(keyed.call(Add(1)).await?, 3);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # drop(runtime);
//! # drop(cluster);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # A registry lock
//!
//! The [`recipes`] are ZooKeeper's, over a [`Client`]: a lock, an election, a barrier, a queue and
//! service discovery. Each ties its membership to a [`Session`], so a holder that dies releases what
//! it held when its session expires.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gridkeeper::{recipes::lock, Client, NodeId};
//!
//! # let dir = std::env::temp_dir().join(format!("gridkeeper-doc-lock-{}", std::process::id()));
//! # let cluster = gridkeeper::LocalCluster::start(1, &dir)?;
//! # cluster.wait_for_leader(std::time::Duration::from_secs(10)).ok_or("no leader elected")?;
//! # let (admin, certs) = (cluster.admin(NodeId(1)), cluster.certs());
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     // Any node's admin address, and the operator's credentials (a token with a role would do:
//!     // `Access::ca_only(&certs)?.with_token(token)`).
//!     let client = Client::connect(admin, gridkeeper::Access::from_certs(&certs)?).await?;
//!     let session = client.open_session(5_000).await?;
//!     let held = lock::acquire(&client, &session, "/locks/nightly-report").await?;
//!     // Only one holder at a time in the whole cluster gets here.
//!     held.release().await?;
//!     session.close().await?;
//!     Ok::<_, gridkeeper::ClientError>(())
//! })?;
//! # drop(runtime);
//! # drop(cluster);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod actors;
pub mod api;
pub mod client;
pub mod credentials;
pub mod grid;
pub mod ids;
pub mod limits;
pub mod node;
pub mod recipes;
pub mod registry;
pub mod service;
pub mod sim;

// Internals. The binary (`runtime/main.rs` calls `cli::main`) and the crate's own integration tests,
// benchmarks and fuzz targets reach into these, so they stay `pub`; they are hidden from the docs
// because they are not part of the supported API and carry no stability promise. Write against the
// documented modules and the re-exports below.
#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod clock;
#[doc(hidden)]
pub mod consensus;
#[doc(hidden)]
pub mod mesh;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod wire;
#[doc(hidden)]
pub mod worker;
#[doc(hidden)]
pub mod zk;

pub use actors::{ActorContext, ActorError, ActorRef, GridActor, GridActors};
pub use api::{ApiError, ErrorCode};
pub use client::{Access, Client, ClientError, Session};
pub use consensus::Consistency;
pub use grid::kinds::{AttemptInfo, AttemptLog, LogLevel, Task, TaskError};
pub use grid::task::TaskId;
pub use ids::{Millis, NodeId};
pub use node::local::{LocalCluster, LocalOptions};
pub use node::{Node, NodeBuilder, NodeConfig};
pub use recipes::election::Leadership;
pub use recipes::lock::LockGuard;
pub use service::{Grid, GridApiError, SubmitOptions, TaskHandle};
