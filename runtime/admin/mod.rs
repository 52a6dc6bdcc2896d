//! The admin surface: an HTTP server on each node (`/health`, `/ready`, `/metrics`, `/status`, and the
//! registry and grid APIs), the client the CLI uses to reach it, and the Prometheus recorder.
//!
//! The API routes are thin: they parse, authorize, call the service layer (`crate::service`) and
//! answer its errors by code (`error.rs`); the operations themselves live there. What it bounds itself (connections overall and per client address,
//! header and idle timeouts, watch streams per client, the `Host:` names it answers) is decided in
//! `admission.rs` and enforced by the connection shell, each refusal counted.

pub mod admission;
pub mod client;
pub mod connection;
pub mod error;
pub mod grid_api;
pub mod http;
pub mod ready;
pub mod registry_api;
pub mod status;
pub mod telemetry;
pub mod view;

pub use status::{MemberView, StatusView};
