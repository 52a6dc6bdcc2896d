//! gridkeeper: an actor-based task grid runtime.
//!
//! Nodes launched with a peer list form a QUIC mesh with mutual TLS ([`mesh`]), exchange validated
//! rkyv frames ([`wire`]), run under a ractor supervision tree ([`node`]), and serve health, status
//! and Prometheus metrics ([`admin`]). See `runtime/ARCHITECTURE.md` for the map and invariants.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod cli;
pub mod client;
pub mod clock;
pub mod consensus;
pub mod credentials;
pub mod grid;
pub mod ids;
pub mod limits;
pub mod mesh;
pub mod node;
pub mod recipes;
pub mod registry;
pub mod service;
pub mod sim;
pub mod state;
pub mod wire;
pub mod worker;

pub use ids::{Millis, NodeId};
