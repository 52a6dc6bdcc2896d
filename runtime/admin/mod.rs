//! The admin surface: an HTTP server on each node (`/health`, `/metrics`, `/status`), the client the
//! CLI uses to reach it, and the Prometheus recorder.
//!
//! The server only reads state owned elsewhere (the mesh's member view, the metrics registry); it
//! decides nothing.

pub mod client;
pub mod grid_api;
pub mod http;
pub mod registry_api;
pub mod status;
pub mod telemetry;

pub use status::{MemberView, StatusView};
