//! The service layer: every registry and grid operation, once, over one port.
//!
//! Front ends (the admin HTTP API, the Rust `Grid` handle, the CLI through the client, and the
//! ZooKeeper front end to come) parse, authorize, call this layer and map its errors; they decide
//! nothing. The node's own duties live here too: the grid hub (applied effects to the worker, task
//! waits, dispatcher wake-ups), the leader's dispatcher and the node's registration.

pub mod dispatcher;
pub mod grid;
pub mod hub;
pub mod port;
pub mod registration;
pub mod registry;
pub mod tasks;

pub use grid::{Grid, GridApiError, SubmitOptions, TaskHandle};
pub use port::Port;
