//! The QUIC mesh: mutual-TLS connections between members, framed streams per traffic class, and
//! liveness of every peer.
//!
//! Core (no I/O): `address.rs` (`HOST:PORT` with names), `detector.rs` (failure detector), `backoff.rs` (redial timing), `handshake.rs`
//! (handshake slots per source, refusal log summaries).
//! Shell: `endpoint.rs` (the [`Mesh`] handle), `connection.rs` (dial, accept, stream tasks),
//! `stream.rs` (frames over quinn streams), `tls.rs` (rustls/quinn configs), `telemetry.rs` (metric
//! handles), `sim_socket.rs` (quinn over turmoil's simulated UDP).

pub mod address;
pub mod backoff;
mod connection;
pub mod detector;
pub mod endpoint;
pub mod handshake;
pub mod seeded;
pub mod sim_socket;
pub mod stream;
pub mod telemetry;
pub mod tls;

pub use address::{Host, PeerAddr};
pub use detector::{DetectorConfig, FailureDetector, PeerEvent};
pub use endpoint::{Inbound, InboundHandler, MemberStatus, Mesh, MeshConfig, MeshError, MeshSocket, SendError};
