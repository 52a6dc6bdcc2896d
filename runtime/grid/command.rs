//! What the grid's replicated state takes (commands, through the log) and gives back (outcomes for
//! the proposer, effects for the node that applied them).
//!
//! Commands are batches: one log entry submits, assigns or records many tasks, so the cost of a
//! commit (an fsync and a quorum round) is shared by every task in it.

use serde::{Deserialize, Serialize};

use super::schedule::{Cadence, Misfire};
use super::task::{FencingToken, TaskId, TaskSpec, TaskState};
use crate::ids::NodeId;

/// One worker's report on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The task.
    pub task: TaskId,
    /// The attempt's fencing token, as it was dispatched.
    pub token: FencingToken,
    /// When the attempt started, by the worker's clock (Unix ms).
    pub started_ms: u64,
    /// `None`: the attempt started. `Some`: it ended with a result or an error.
    pub outcome: Option<Result<Vec<u8>, String>>,
}

/// A change to the task table, as replicated through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GridCommand {
    /// Accepts tasks; all or none. Their ids are consecutive, from the table's counter.
    Submit {
        /// The tasks.
        tasks: Vec<TaskSpec>,
    },
    /// The leader's placement decisions; each assignment's fencing token is this entry's zxid.
    Assign {
        /// (task, node) pairs.
        assignments: Vec<(TaskId, NodeId)>,
    },
    /// Workers' reports; stale ones (fenced) are counted and dropped.
    Report {
        /// The reports.
        reports: Vec<Report>,
    },
    /// Attempts the leader found over their timeout.
    TimeOut {
        /// (task, token of the overdue attempt).
        attempts: Vec<(TaskId, FencingToken)>,
    },
    /// Cancels tasks that have not finished.
    Cancel {
        /// The tasks.
        tasks: Vec<TaskId>,
    },
    /// Creates or replaces a recurring job.
    Schedule {
        /// What to run and when (boxed: it is much larger than the other commands).
        job: Box<JobSpec>,
    },
    /// Deletes a recurring job (its runs already submitted go on).
    Unschedule {
        /// The job.
        name: String,
    },
    /// The leader's decision for a due job: submit a run (or not), and the next due time.
    Fire {
        /// The job.
        name: String,
        /// The due time this decision is about; a decision for another due time is stale.
        due_ms: u64,
        /// Whether a run is submitted.
        fire: bool,
        /// Fire times passed over (misfire, or a run still in progress).
        skipped: u64,
        /// The next due time (`None`: the cadence has no more).
        next_due_ms: Option<u64>,
    },
    /// Starts or stops draining a node: a draining node gets no new work.
    Drain {
        /// The node.
        node: NodeId,
        /// Whether it drains.
        draining: bool,
    },
    /// The leader found tasks of a kind no registered node runs, pending for `after_ms`: they fail.
    /// Apply checks all three again (pending, kind unregistered, waited long enough), so a decision
    /// made from an older state or repeated by a new leader changes nothing it should not.
    FailUnplaceable {
        /// The tasks.
        tasks: Vec<TaskId>,
        /// How long they must have waited (the leader's `--unplaceable-timeout-ms`).
        after_ms: u64,
    },
    /// Commits the cluster-wide settings (every limit the apply step enforces). Proposed by the first
    /// leader of a cluster that has none committed; `ReplicatedState::apply` applies it.
    Configure {
        /// The settings.
        settings: super::settings::ClusterSettings,
    },
}

/// A recurring job as its owner asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique name.
    pub name: String,
    /// The task each run submits.
    pub task: TaskSpec,
    /// When it runs.
    pub cadence: Cadence,
    /// What to do with fire times missed while no leader could fire them.
    #[serde(default)]
    pub misfire: Misfire,
    /// Whether a run may start while the previous one has not ended.
    #[serde(default)]
    pub overlap: bool,
}

/// A recurring job as the table keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// What was asked.
    pub spec: JobSpec,
    /// The next time it is due (Unix ms), if any.
    pub due_ms: Option<u64>,
    /// The last run's task.
    pub last_task: Option<TaskId>,
    /// Runs submitted.
    pub runs: u64,
    /// Fire times passed over.
    pub skipped: u64,
}

/// What a grid command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridOutcome {
    /// Tasks accepted, with ids `first .. first + count`.
    Submitted {
        /// The first id.
        first: TaskId,
        /// How many.
        count: u32,
    },
    /// Events applied, and events refused as stale or out of place.
    Recorded {
        /// Applied.
        applied: u32,
        /// Refused (a zombie's report, a duplicate, a task already ended).
        refused: u32,
    },
}

impl GridOutcome {
    /// The ids a [`GridOutcome::Submitted`] names.
    pub fn ids(&self) -> Vec<TaskId> {
        match self {
            GridOutcome::Submitted { first, count } => (0..u64::from(*count)).map(|i| TaskId(first.0 + i)).collect(),
            GridOutcome::Recorded { .. } => Vec::new(),
        }
    }
}

/// What applying one entry changed, for the applying node's shell: its worker starts the attempts
/// assigned to it, waiters hear of ended tasks, metrics count the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GridEffects {
    /// Tasks accepted.
    pub submitted: u32,
    /// New attempts: (task, node, token).
    pub assigned: Vec<(TaskId, NodeId, FencingToken)>,
    /// Attempts that started.
    pub started: u32,
    /// Tasks that reached a terminal state: (task, state, ms from submission to the end).
    pub ended: Vec<(TaskId, TaskState)>,
    /// Attempts that ended without ending their task (failed or timed out, retried).
    pub retried: u32,
    /// Attempts lost with a node, re-queued: (node, task).
    pub lost: Vec<(NodeId, TaskId)>,
    /// Reports refused as stale (zombies, duplicates).
    pub refused: u32,
}

impl GridEffects {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == GridEffects::default()
    }
}
