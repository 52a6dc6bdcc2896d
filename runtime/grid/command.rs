//! What the grid's replicated state takes (commands, through the log) and gives back (outcomes for
//! the proposer, effects for the node that applied them).
//!
//! Commands are batches: one log entry submits, assigns or records many tasks, so the cost of a
//! commit (an fsync and a quorum round) is shared by every task in it.
//!
//! Compatibility: commands are stored postcard-encoded in the log, where postcard names a variant by
//! its index and a struct's fields by their order. A variant or a stored struct is never changed; new
//! commands are appended at the end of [`GridCommand`] (`ScheduleZoned` and after came with time zones
//! and pausing), so every entry an earlier build wrote still decodes as it did.

use serde::{Deserialize, Serialize};

use super::actors::{ActorCommit, ActorId, ActorRefusal};
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
    /// Creates or replaces a recurring job whose cron is read in an IANA time zone. The node that took
    /// the request computed the first due time; replicas apply that number and never read zone data.
    ScheduleZoned {
        /// What to run and when.
        job: Box<JobSpec>,
        /// The zone's IANA name (canonical spelling).
        tz: String,
        /// The first due time (Unix ms), as the proposer computed it.
        due_ms: Option<u64>,
    },
    /// Pauses a job: it keeps its place in the table and fires nothing until resumed.
    Pause {
        /// The job.
        name: String,
    },
    /// Resumes a paused job from the numbers its proposer computed: the fire times that passed while it
    /// was paused are skipped, and it is next due at the first fire time after the resume.
    Resume {
        /// The job.
        name: String,
        /// The next due time (Unix ms; `None`: its cadence has no more).
        due_ms: Option<u64>,
        /// Fire times that passed while it was paused.
        skipped: u64,
    },
    /// Submits one run of a job now, leaving its cadence as it is. Refused while its last run is still
    /// going and the job does not allow overlap.
    Trigger {
        /// The job.
        name: String,
    },
    /// Work stealing: queued attempts move to another node (see `grid::steal`). Each move names the
    /// attempt by its token; apply checks it is still current and not started and that the new node is
    /// registered and not draining, or refuses that move. A moved attempt ends (its old node is told
    /// to drop it, and its late reports are refused as stale) and a new attempt takes its place on the
    /// new node with this entry's zxid as its token. Written only once every voter's build applies
    /// state version 4.
    Reassign {
        /// (task, token of the attempt that moves, the node it moves to).
        moves: Vec<(TaskId, FencingToken, NodeId)>,
    },
    /// `node` asks to host `actor` (see `grid::actors`): granted only if nobody else owns it and `node`
    /// is registered; the token is this entry's zxid. Written only once every voter's build applies
    /// state version 5, like the three commands after it.
    ActorActivate {
        /// The actor.
        actor: ActorId,
        /// The node that would host it (the proposer).
        node: NodeId,
        /// Whether its state is committed through the log.
        durable: bool,
    },
    /// Durable actors' states and recorded replies, each applied only with its actor's current token.
    ActorCommit {
        /// The commits, at most one group per host write.
        commits: Vec<ActorCommit>,
    },
    /// An activation gives its actor back (passivation, drain).
    ActorRelease {
        /// The actor.
        actor: ActorId,
        /// The activation's token.
        token: FencingToken,
    },
    /// Declares a cluster singleton (`start`), or removes one.
    ActorSingleton {
        /// The actor.
        actor: ActorId,
        /// Whether its state is committed through the log.
        durable: bool,
        /// Declare (`true`) or remove (`false`).
        start: bool,
    },
    /// Removes the records of volatile actors that their node's lost registration left unowned, each
    /// once the proposer's handoff wait for it passed (so no old activation can still handle a
    /// message): (actor, the zxid of the entry that orphaned it). A record goes only if it is still
    /// that orphan (unowned, volatile, no singleton, the same orphaning). At most
    /// `ACTOR_FORGET_BATCH_MAX` actors. Written only once every voter's build applies state version 6.
    ActorForget {
        /// The orphans.
        actors: Vec<(ActorId, u64)>,
    },
    /// Accepts tasks, as `Submit` does, with the leader's placement for those it could place at once:
    /// `nodes[i]` is task i's node (`None`: it queues as a `Submit`'s would). Each placed task is
    /// assigned in the same step with this entry's zxid as its token, so a task that finds room starts
    /// after one commit instead of two (`Submit`, then `Assign`). Apply refuses the whole entry unless
    /// `nodes` has one slot per task, and leaves queued, as `Assign` would, a placed task whose node is
    /// not registered or that is not ready yet. Written only once every voter's build applies state
    /// version 7; the leader shapes a `Submit` into it (see `service::dispatcher`).
    SubmitPlaced {
        /// The tasks.
        tasks: Vec<TaskSpec>,
        /// Each task's node, in the same order.
        nodes: Vec<Option<NodeId>>,
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

/// What the table keeps of a job beyond [`Job`] (whose layout format-1 to format-3 snapshots fix): its
/// zone and whether it is paused. Stored in the snapshot's `StateExtras4`; a job without an entry is a
/// UTC job that is not paused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobExtras {
    /// The IANA zone its cron is read in; `None`: UTC.
    pub tz: Option<String>,
    /// Whether it is paused.
    pub paused: bool,
}

impl JobExtras {
    /// Whether this is what a job without an entry has.
    pub fn is_default(&self) -> bool {
        *self == JobExtras::default()
    }
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
    /// An actor activation was granted.
    ActorActivated {
        /// The activation's fencing token.
        token: FencingToken,
        /// The actor's last committed state (empty if none).
        state: Vec<u8>,
        /// Calls committed.
        seq: u64,
        /// Its recorded replies by idempotency key, oldest first.
        recent: Vec<(String, Vec<u8>)>,
    },
    /// An actor command was refused (not an error: callers branch on it).
    ActorRefused {
        /// The actor's owner, if it has one.
        owner: Option<NodeId>,
        /// Why.
        reason: ActorRefusal,
    },
    /// An `ActorCommit` was applied, except the commits named here.
    ActorsCommitted {
        /// Indexes into the command's `commits` that were refused.
        refused: Vec<u32>,
    },
}

impl GridOutcome {
    /// The ids a [`GridOutcome::Submitted`] names.
    pub fn ids(&self) -> Vec<TaskId> {
        match self {
            GridOutcome::Submitted { first, count } => (0..u64::from(*count)).map(|i| TaskId(first.0 + i)).collect(),
            GridOutcome::Recorded { .. }
            | GridOutcome::ActorActivated { .. }
            | GridOutcome::ActorRefused { .. }
            | GridOutcome::ActorsCommitted { .. } => Vec::new(),
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
    /// Attempts moved away from a node by work stealing (the new attempts are in `assigned`): (the
    /// node that held them, task). That node drops them.
    pub stolen: Vec<(NodeId, TaskId)>,
    /// Reports refused as stale (zombies, duplicates).
    pub refused: u32,
    /// Actor activations granted: (actor, node, token).
    pub actors_activated: Vec<(ActorId, NodeId, FencingToken)>,
    /// Actor ownerships that ended (released, orphaned, replaced, singleton removed): (actor, the node
    /// that owned it, its token). That node stops the activation at once.
    pub actors_ended: Vec<(ActorId, NodeId, FencingToken)>,
    /// Actors orphaned by their node's lost registration (also in `actors_ended`).
    pub actors_orphaned: Vec<ActorId>,
}

impl GridEffects {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == GridEffects::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_earlier_builds_keep_their_encoding_and_new_commands_come_after_them() {
        // postcard names a variant by its index: the commands earlier builds wrote keep theirs, and the
        // ones this build adds are appended (11 onward, after `Configure`, 10), so every stored entry decodes as it did.
        let cases: Vec<(GridCommand, Vec<u8>)> = vec![
            (GridCommand::Cancel { tasks: vec![TaskId(7)] }, vec![4, 1, 7]),
            (GridCommand::Unschedule { name: "a".into() }, vec![6, 1, b'a']),
            (
                GridCommand::Fire { name: "a".into(), due_ms: 1, fire: true, skipped: 2, next_due_ms: Some(3) },
                vec![7, 1, b'a', 1, 1, 2, 1, 3],
            ),
            (GridCommand::Drain { node: NodeId(1), draining: true }, vec![8, 1, 1]),
            (GridCommand::Pause { name: "a".into() }, vec![12, 1, b'a']),
            (GridCommand::Resume { name: "a".into(), due_ms: None, skipped: 5 }, vec![13, 1, b'a', 0, 5]),
            (GridCommand::Trigger { name: "a".into() }, vec![14, 1, b'a']),
        ];
        for (command, bytes) in cases {
            assert_eq!(postcard::to_stdvec(&command).expect("encodes"), bytes, "{command:?}");
            assert_eq!(postcard::from_bytes::<GridCommand>(&bytes).expect("decodes"), command);
        }
        let zoned = GridCommand::ScheduleZoned {
            job: Box::new(JobSpec {
                name: "a".into(),
                task: TaskSpec::new("noop", vec![]),
                cadence: Cadence::interval(1_000, 0).expect("valid"),
                misfire: Misfire::Skip,
                overlap: false,
            }),
            tz: "Europe/Berlin".into(),
            due_ms: Some(1),
        };
        assert_eq!(postcard::to_stdvec(&zoned).expect("encodes")[0], 11);
        // Work stealing (state version 4) comes after the job controls.
        let reassign = GridCommand::Reassign { moves: vec![(TaskId(7), FencingToken(9), NodeId(2))] };
        let bytes = vec![15, 1, 7, 9, 2];
        assert_eq!(postcard::to_stdvec(&reassign).expect("encodes"), bytes);
        assert_eq!(postcard::from_bytes::<GridCommand>(&bytes).expect("decodes"), reassign);
        // Grid actors (state version 5) come after work stealing, 16 to 19.
        let actor = ActorId::new("c", "k").expect("valid");
        let commit = ActorCommit {
            actor: actor.clone(),
            token: FencingToken(9),
            seq: 3,
            state: vec![7],
            replies: vec![("i".into(), vec![8])],
        };
        let cases: Vec<(GridCommand, Vec<u8>)> = vec![
            (
                GridCommand::ActorActivate { actor: actor.clone(), node: NodeId(2), durable: true },
                vec![16, 1, b'c', 1, b'k', 2, 1],
            ),
            (
                GridCommand::ActorCommit { commits: vec![commit] },
                vec![17, 1, 1, b'c', 1, b'k', 9, 3, 1, 7, 1, 1, b'i', 1, 8],
            ),
            (GridCommand::ActorRelease { actor: actor.clone(), token: FencingToken(9) }, vec![18, 1, b'c', 1, b'k', 9]),
            (
                GridCommand::ActorSingleton { actor: actor.clone(), durable: false, start: true },
                vec![19, 1, b'c', 1, b'k', 0, 1],
            ),
            // Forgetting volatile orphans (state version 6) comes next.
            (GridCommand::ActorForget { actors: vec![(actor, 300)] }, vec![20, 1, 1, b'c', 1, b'k', 0xac, 2]),
        ];
        for (command, bytes) in cases {
            assert_eq!(postcard::to_stdvec(&command).expect("encodes"), bytes, "{command:?}");
            assert_eq!(postcard::from_bytes::<GridCommand>(&bytes).expect("decodes"), command);
        }
        // Placed submissions (state version 7) come next: the tasks as `Submit` encodes them, then the
        // nodes.
        let tasks = vec![TaskSpec::new("noop", vec![]), TaskSpec::new("noop", vec![])];
        let submit = postcard::to_stdvec(&GridCommand::Submit { tasks: tasks.clone() }).expect("encodes");
        let mut bytes = vec![21];
        bytes.extend_from_slice(&submit[1..]);
        bytes.extend_from_slice(&[2, 1, 3, 0]);
        let cases = vec![(GridCommand::SubmitPlaced { tasks, nodes: vec![Some(NodeId(3)), None] }, bytes)];
        for (command, bytes) in cases {
            assert_eq!(postcard::to_stdvec(&command).expect("encodes"), bytes, "{command:?}");
            assert_eq!(postcard::from_bytes::<GridCommand>(&bytes).expect("decodes"), command);
        }
    }
}
