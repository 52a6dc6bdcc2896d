//! The task grid's deterministic core: tasks and their lifecycle (`task.rs`), dispatch order with
//! priorities, aging and not-before times (`queue.rs`), placement strategies with slot limits
//! (`placement.rs`), and the replicated task table with fencing (`table.rs`).
//!
//! Not yet wired: the table is not yet part of the replicated state machine, and no worker runtime,
//! `Task` trait, `Grid` handle or CLI exists (issue 4 continues). These modules import no I/O and read
//! no clock; every decision is a function of its inputs.

pub mod budget;
pub mod command;
pub mod kinds;
pub mod placement;
pub mod queue;
pub mod schedule;
pub mod settings;
pub mod table;
pub mod task;

pub use command::{GridCommand, GridEffects, GridOutcome, Report};
pub use placement::{NodeLoad, Placement};
pub use queue::ReadyQueue;
pub use settings::{ClusterSettings, GridSettings, RegistrySettings};
pub use table::{GridError, TableLimits, TaskTable};
pub use task::{Attempt, AttemptState, FencingToken, RetryPolicy, Strategy, Task, TaskId, TaskSpec, TaskState};
