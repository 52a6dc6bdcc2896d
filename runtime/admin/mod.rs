//! The admin surface: an HTTPS server on each node (`/health`, `/ready`, `/metrics`, `/status`, and the
//! registry and grid APIs, and the web console under `/ui`), the client the CLI uses to reach it, and
//! the Prometheus recorder.
//!
//! Every request is authenticated (a client certificate or a bearer token), authorized by role and
//! audited (`auth.rs`, deciding with the core `policy.rs`) before a route runs.
//! The API routes are thin: they parse, call the service layer (`crate::service`) and
//! answer its errors by code (`error.rs`); the operations themselves live there. What it bounds itself (connections overall and per client address,
//! header and idle timeouts, watch streams per client, the `Host:` names it answers) is decided in
//! `admission.rs` and enforced by the connection shell, each refusal counted.

pub mod actors_api;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod auth_api;
pub mod client;
pub mod connection;
pub mod console;
pub mod error;
pub mod grid_api;
pub mod http;
pub mod logs_api;
pub mod members_api;
pub mod policy;
pub mod ready;
pub mod registry_api;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod view;

pub use status::{MemberView, StatusView};
