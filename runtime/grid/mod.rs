//! The task grid's deterministic core: tasks and their lifecycle (`task.rs`), dispatch order with
//! priorities, aging and not-before times (`queue.rs`), placement strategies with slot limits
//! (`placement.rs`), the task table with fencing, retries, timeouts, drains and recurring jobs
//! (`table.rs`), its byte budgets (`budget.rs`), cadences (`schedule.rs`), actor ownership records
//! (`actors.rs`), the commands replicated through the log (`command.rs`), the cluster-wide settings (`settings.rs`), the `Task` trait
//! users implement (`kinds.rs`) and the natural batching of small submissions (`merge.rs`).
//!
//! These modules import no I/O and read no clock; every decision is a function of its inputs, the
//! time included. The table is applied beside the registry in `crate::state`; the service layer
//! (`crate::service`) acts on it, and the worker (`crate::worker`) runs its attempts.

pub mod actors;
pub(crate) mod budget;
pub mod command;
pub mod kinds;
pub mod merge;
pub(crate) mod placement;
pub(crate) mod queue;
pub mod schedule;
pub(crate) mod settings;
pub mod steal;
pub mod table;
pub mod task;

pub use actors::{ActorCommit, ActorId, ActorRecord, ActorRefusal, ActorTable};
pub use command::{GridCommand, GridEffects, GridOutcome, Report};
pub use placement::{NodeLoad, Placement};
pub use queue::ReadyQueue;
pub use settings::{ClusterSettings, GridSettings, RegistrySettings};
pub use table::{GridError, TableLimits, TaskTable};
pub use task::{Attempt, AttemptState, FencingToken, RetryPolicy, Strategy, Task, TaskId, TaskSpec, TaskState};
