//! The service layer: every registry and grid operation, once, over one port.
//!
//! Front ends (the admin HTTP API, the Rust `Grid` handle, the CLI through the client, and the
//! ZooKeeper front end to come) parse, authorize, call this layer and map its errors; they decide
//! nothing. The node's own duties live here too: the grid hub (applied effects to the worker, task
//! waits, dispatcher wake-ups), the leader's dispatcher and the node's registration.

// The supported API is the re-exports below. `hub` and `registration` stay public but hidden for
// the crate's own tests; they carry no stability promise.
pub mod credentials;
pub(crate) mod dispatcher;
pub(crate) mod grid;
#[doc(hidden)]
pub mod hub;
pub mod membership;
pub(crate) mod port;
#[doc(hidden)]
pub mod registration;
pub(crate) mod registry;
pub(crate) mod submissions;
pub(crate) mod tasks;
pub mod telemetry;

pub use grid::{Grid, GridApiError, SubmitOptions, TaskHandle};
pub use port::Port;
