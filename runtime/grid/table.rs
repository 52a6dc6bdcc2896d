//! The task table: the grid's replicated state machine. Every replica applies the same assignment,
//! start, finish, timeout, node-loss and cancel events in log order and reaches the same table; the
//! leader plans assignments from it ([`TaskTable::plan_dispatch`]) and proposes them.
//!
//! Invariant: an attempt's report is recorded only if its fencing token is the task's current
//! assignment, so a completion is recorded exactly once whatever duplicates or zombies report.
//! Invariant: a task in a terminal state never changes again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::budget::TableBytes;
use super::command::{GridCommand, GridEffects, GridOutcome, Job, JobExtras, Report};
use super::placement::{NodeLoad, Placement};
use super::queue::ReadyQueue;
use super::steal::{Backlog, Queued};
use super::task::{Attempt, AttemptState, FencingToken, Task, TaskId, TaskSpec, TaskState};
use crate::ids::NodeId;

/// Bounds on what the table keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLimits {
    /// Tasks held (all states); submissions past it are refused.
    pub tasks_max: usize,
    /// Bytes of a task's input.
    pub input_bytes_max: usize,
    /// Bytes of a stored result; a larger result fails its attempt.
    pub result_bytes_max: usize,
    /// Bytes of a stored error message; longer ones are cut.
    pub error_bytes_max: usize,
    /// Attempts a task may ask for.
    pub attempts_max: u32,
    /// Tasks submitted in one command.
    pub batch_max: usize,
    /// Ended tasks kept for history; past it the oldest ended task is forgotten.
    pub history_max: usize,
    /// Bytes of ended tasks kept for history ([`Task::retained_bytes`]); past it the oldest ended
    /// tasks are forgotten (the newest is always kept). Not stored (see [`TaskTable::set_limits`]).
    #[serde(skip, default = "history_bytes_max_default")]
    pub history_bytes_max: usize,
    /// Input bytes of the tasks that have not ended; a submission past it is refused. Not stored.
    #[serde(skip, default = "pending_input_bytes_max_default")]
    pub pending_input_bytes_max: usize,
}

/// History every node keeps in memory by default. 256 MiB holds 256 tasks with 1 MiB results or about
/// half a million small ones, and keeps a node's table (with [`PENDING_INPUT_BYTES_MAX_DEFAULT`]) under
/// 1 GiB, so that the table and one snapshot's encoding of it fit a 2 GiB node.
pub const HISTORY_BYTES_MAX_DEFAULT: usize = 256 << 20;

/// Inputs of unfinished tasks every node keeps in memory by default: 512 tasks of 1 MiB, or millions
/// of small ones. Work is meant to flow through the table; a backlog beyond this belongs in a queue
/// in front of the grid, and a submitter past it gets a clear refusal instead of a swapping cluster.
pub const PENDING_INPUT_BYTES_MAX_DEFAULT: usize = 512 << 20;

fn history_bytes_max_default() -> usize {
    HISTORY_BYTES_MAX_DEFAULT
}

fn pending_input_bytes_max_default() -> usize {
    PENDING_INPUT_BYTES_MAX_DEFAULT
}

impl Default for TableLimits {
    fn default() -> Self {
        TableLimits {
            tasks_max: 2_000_000,
            input_bytes_max: 1 << 20,
            result_bytes_max: 1 << 20,
            error_bytes_max: 4 << 10,
            attempts_max: 100,
            batch_max: 100_000,
            history_max: 200_000,
            history_bytes_max: HISTORY_BYTES_MAX_DEFAULT,
            pending_input_bytes_max: PENDING_INPUT_BYTES_MAX_DEFAULT,
        }
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum GridError {
    /// No such task.
    #[error("no task {0:?}")]
    UnknownTask(TaskId),
    /// The report is from an attempt that is no longer current (a zombie or a duplicate).
    #[error("stale report for task {task:?}: token {reported:?} is not the current assignment")]
    StaleToken {
        /// The task.
        task: TaskId,
        /// The token reported.
        reported: FencingToken,
    },
    /// The task is not in a state that allows this event.
    #[error("task {task:?} is {state:?}")]
    WrongState {
        /// The task.
        task: TaskId,
        /// Its state.
        state: TaskState,
    },
    /// The submission is invalid or over a bound.
    #[error("task refused: {0}")]
    Refused(String),
    /// Accepting the submission would take the table past one of its byte budgets.
    #[error("task refused: {limit} ({max} bytes) would be exceeded: {held} held, {asked} asked")]
    OverBudget {
        /// The limit's name (`pending_input_bytes_max`).
        limit: String,
        /// Its value.
        max: u64,
        /// Bytes held now.
        held: u64,
        /// Bytes the submission adds.
        asked: u64,
    },
}

/// The replicated table of tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskTable {
    limits: TableLimits,
    /// Each task behind its own `Arc`: a snapshot copies the map, not the tasks, so it holds the
    /// state lock for milliseconds; a task changed meanwhile is copied then (`Arc::make_mut`).
    tasks: imbl::OrdMap<TaskId, std::sync::Arc<Task>>,
    queue: ReadyQueue,
    by_node: BTreeMap<NodeId, BTreeSet<TaskId>>,
    /// The next id a submission gets.
    next_id: u64,
    /// Ended tasks, in the order they ended (history retention forgets from the front).
    ended: VecDeque<TaskId>,
    /// Nodes that take no new work.
    draining: BTreeSet<NodeId>,
    /// Recurring jobs by name.
    #[serde(default)]
    jobs: BTreeMap<String, Job>,
    /// What jobs have beyond [`Job`]: a zone, a pause. Only jobs that differ from the default (UTC, not
    /// paused) have an entry. Not in this type's layout (which format-1 snapshots fix): the snapshot
    /// stores it in `StateExtras4` (see [`TaskTable::restore_job_extras`]).
    #[serde(skip)]
    job_extras: BTreeMap<String, JobExtras>,
    /// Derived byte counts; `None` after a load until first needed (see [`TaskTable::rebuild_derived`]).
    #[serde(skip)]
    bytes: Option<TableBytes>,
}

/// Recurring jobs a cluster holds: each is checked by the leader every dispatch round.
pub const JOBS_MAX: usize = 10_000;

/// Extra time an attempt may wait queued on its node before its timeout starts counting anyway.
pub const UNSTARTED_GRACE_MS: u64 = 10_000;

/// Bytes of a task kind's name and of a shard key.
pub const KIND_BYTES_MAX: usize = 256;

fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

impl TaskTable {
    /// An empty table; waiting tasks gain one priority level per `aging_step_ms`.
    pub fn new(limits: TableLimits, aging_step_ms: u64) -> TaskTable {
        TaskTable {
            limits,
            tasks: imbl::OrdMap::new(),
            queue: ReadyQueue::new(aging_step_ms),
            by_node: BTreeMap::new(),
            next_id: 1,
            ended: VecDeque::new(),
            draining: BTreeSet::new(),
            jobs: BTreeMap::new(),
            job_extras: BTreeMap::new(),
            bytes: Some(TableBytes::default()),
        }
    }

    /// The table's bounds.
    pub fn limits(&self) -> TableLimits {
        self.limits
    }

    /// Tasks held (all states, ended ones still in history included).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the table holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Queued tasks per priority, for metrics.
    pub fn depth_by_priority(&self) -> BTreeMap<i32, usize> {
        self.queue.depth_by_priority()
    }

    /// Nodes that take no new work.
    pub fn draining(&self) -> &BTreeSet<NodeId> {
        &self.draining
    }

    /// Tasks with an id below `before`, newest first (a listing's page continues from its cursor).
    pub fn older_than(&self, before: TaskId) -> impl Iterator<Item = &Task> {
        self.tasks.range(..before).rev().map(|(_, task)| &**task)
    }

    /// Tasks newest first that pass `keep`, at most `limit`.
    pub fn newest(&self, limit: usize, mut keep: impl FnMut(&Task) -> bool) -> Vec<&Task> {
        self.tasks.values().rev().map(|task| &**task).filter(|task| keep(task)).take(limit).collect()
    }

    /// Attempts assigned to `node` that have not ended: (task, token).
    pub fn held_by(&self, node: NodeId) -> Vec<(TaskId, FencingToken)> {
        self.by_node
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|task| Some((*task, self.tasks[task].current_attempt()?.token)))
            .collect()
    }

    /// The earliest time a delayed task becomes ready.
    pub fn next_ready_ms(&self) -> Option<u64> {
        self.queue.next_ready_ms()
    }

    /// Applies one replicated command at `zxid` (proposed at `now_ms`), recording what changed in
    /// `effects`.
    ///
    /// # Errors
    /// [`GridError::Refused`] if a submission breaks a bound (nothing is accepted then). Per-event
    /// refusals of other commands (stale reports) are counted in the outcome, not errors.
    pub fn apply(
        &mut self,
        zxid: u64,
        now_ms: u64,
        command: &GridCommand,
        effects: &mut GridEffects,
    ) -> Result<GridOutcome, GridError> {
        self.on_tick(now_ms);
        let mut applied = 0u32;
        let mut refused = 0u32;
        let mut count = |ok: bool| if ok { applied += 1 } else { refused += 1 };
        match command {
            GridCommand::Submit { tasks } => return self.submit_batch(tasks, None, (zxid, now_ms), effects),
            GridCommand::SubmitPlaced { tasks, nodes } => {
                return self.submit_batch(tasks, Some(nodes), (zxid, now_ms), effects);
            }
            GridCommand::Assign { assignments } => {
                for &(task, node) in assignments {
                    let token = FencingToken(zxid);
                    let ok = self.on_assigned(task, node, token, now_ms).is_ok();
                    if ok {
                        effects.assigned.push((task, node, token));
                    }
                    count(ok);
                }
            }
            GridCommand::Reassign { moves } => {
                for &(task, token, node) in moves {
                    let new_token = FencingToken(zxid);
                    let moved = self.on_reassigned(task, token, node, new_token, now_ms);
                    if let Ok(from) = moved {
                        effects.stolen.push((from, task));
                        effects.assigned.push((task, node, new_token));
                    }
                    count(moved.is_ok());
                }
            }
            GridCommand::Report { reports } => {
                for report in reports {
                    let ok = self.on_report(report, now_ms, effects);
                    if !ok {
                        effects.refused += 1;
                    }
                    count(ok);
                }
            }
            GridCommand::TimeOut { attempts } => {
                for &(task, token) in attempts {
                    let state = self.on_timed_out(task, token, now_ms);
                    count(state.is_ok());
                    if let Ok(state) = state {
                        self.note_state(task, state, effects);
                    }
                }
            }
            GridCommand::Cancel { tasks } => {
                for &task in tasks {
                    let ok = self.on_cancelled(task, now_ms).is_ok();
                    if ok {
                        self.note_state(task, TaskState::Cancelled, effects);
                    }
                    count(ok);
                }
            }
            // Entries of earlier builds: a UTC cron's first due time is computed here, by every replica,
            // with the zone-free arithmetic of `schedule.rs`, exactly as those builds did.
            GridCommand::Schedule { job } => {
                let due_ms = job.cadence.next_after(now_ms);
                return self.schedule(job, due_ms, None).map(|()| GridOutcome::Recorded { applied: 1, refused: 0 });
            }
            GridCommand::ScheduleZoned { job, tz, due_ms } => {
                return self
                    .schedule(job, *due_ms, Some(tz))
                    .map(|()| GridOutcome::Recorded { applied: 1, refused: 0 });
            }
            GridCommand::Unschedule { name } => count(self.unschedule(name)),
            GridCommand::Fire { name, due_ms, fire, skipped, next_due_ms } => {
                let ok = self.on_fire(name, *due_ms, (*fire, *skipped, *next_due_ms), now_ms, effects);
                count(ok);
            }
            GridCommand::Pause { name } => count(self.on_pause(name)),
            GridCommand::Resume { name, due_ms, skipped } => count(self.on_resume(name, *due_ms, *skipped)),
            GridCommand::Trigger { name } => count(self.on_trigger(name, now_ms, effects)?),
            GridCommand::Drain { node, draining } => {
                if *draining {
                    self.draining.insert(*node);
                } else {
                    self.draining.remove(node);
                }
                count(true);
            }
            // Needs the registry to know which kinds are registered: `ReplicatedState::apply` applies
            // it; a table alone treats every kind as registered and refuses it.
            GridCommand::FailUnplaceable { tasks, .. } => {
                return Ok(GridOutcome::Recorded { applied: 0, refused: tasks.len() as u32 });
            }
            // Settings cover the registry too: `ReplicatedState::apply` applies them.
            GridCommand::Configure { .. } => return Ok(GridOutcome::Recorded { applied: 0, refused: 1 }),
            // Actors live beside the table: `ReplicatedState::apply` applies their commands.
            GridCommand::ActorActivate { .. }
            | GridCommand::ActorCommit { .. }
            | GridCommand::ActorRelease { .. }
            | GridCommand::ActorSingleton { .. }
            | GridCommand::ActorForget { .. } => return Ok(GridOutcome::Recorded { applied: 0, refused: 1 }),
        }
        Ok(GridOutcome::Recorded { applied, refused })
    }

    /// Accepts `specs` (all or none), assigning each that `placed` gives a node to that node at once
    /// under the token `zxid` if it is ready now; the others queue.
    fn submit_batch(
        &mut self,
        specs: &[TaskSpec],
        placed: Option<&[Option<NodeId>]>,
        (zxid, now_ms): (u64, u64),
        effects: &mut GridEffects,
    ) -> Result<GridOutcome, GridError> {
        if specs.is_empty() || specs.len() > self.limits.batch_max {
            return Err(GridError::Refused(format!("a batch holds 1..={} tasks", self.limits.batch_max)));
        }
        if placed.is_some_and(|nodes| nodes.len() != specs.len()) {
            return Err(GridError::Refused("a placed submission names one node or none per task".into()));
        }
        if self.tasks.len() + specs.len() > self.limits.tasks_max {
            return Err(GridError::Refused(format!("the table holds {} tasks", self.limits.tasks_max)));
        }
        for spec in specs {
            self.check_spec(spec)?;
        }
        let asked = specs.iter().map(|spec| spec.input.len()).fold(0, usize::saturating_add);
        self.check_pending_budget(asked)?;
        let first = TaskId(self.next_id);
        for (i, spec) in specs.iter().enumerate() {
            let id = TaskId(self.next_id);
            self.next_id += 1;
            let node = placed.and_then(|nodes| nodes[i]).filter(|_| spec.not_before_ms <= now_ms);
            match node {
                // Never queued: assigned as it is accepted.
                Some(node) => {
                    let token = FencingToken(zxid);
                    self.admit(id, spec.clone(), now_ms, Some((node, token)))?;
                    effects.assigned.push((id, node, token));
                }
                None => self.submit(id, spec.clone(), now_ms)?,
            }
        }
        effects.submitted += specs.len() as u32;
        Ok(GridOutcome::Submitted { first, count: specs.len() as u32 })
    }

    /// Records a worker's report. Returns whether it was applied (false: stale or misplaced).
    fn on_report(&mut self, report: &Report, now_ms: u64, effects: &mut GridEffects) -> bool {
        let Report { task, token, started_ms, outcome } = report;
        match outcome {
            None => {
                let ok = self.on_started(*task, *token, *started_ms).is_ok();
                effects.started += u32::from(ok);
                ok
            }
            Some(Ok(result)) if result.len() <= self.limits.result_bytes_max => {
                // The common report, a quick attempt's start and success together: one lookup for
                // both, and the ended task's bytes read from the same entry.
                let Ok(slot) = self.current_slot(*task, *token) else { return false };
                let entry = std::sync::Arc::make_mut(slot);
                let attempt = entry.attempts.last_mut().expect("current_slot() found an attempt");
                if attempt.state == AttemptState::Assigned {
                    attempt.started_ms = Some(*started_ms);
                }
                attempt.state = AttemptState::Succeeded;
                attempt.ended_ms = Some(now_ms);
                let node = attempt.node;
                entry.state = TaskState::Succeeded;
                entry.result = Some(result.clone());
                let ended = std::sync::Arc::clone(slot);
                self.release(node, *task);
                self.bytes_mut().on_close(&ended.spec);
                self.note_ended(*task, TaskState::Succeeded, &ended, effects);
                true
            }
            Some(outcome) => {
                // A quick attempt's start and end arrive in one report.
                if self.on_started(*task, *token, *started_ms).is_err() {
                    return false;
                }
                match self.on_finished(*task, *token, outcome.clone(), now_ms) {
                    Ok(state) => {
                        self.note_state(*task, state, effects);
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Notes a task's new state: ended tasks join the history (and the oldest ones beyond its bound
    /// are forgotten); retried ones are counted.
    fn note_state(&mut self, task: TaskId, state: TaskState, effects: &mut GridEffects) {
        if !state.is_terminal() {
            effects.retried += 1;
            return;
        }
        let Some(entry) = self.tasks.get(&task).cloned() else {
            effects.ended.push((task, state));
            return;
        };
        self.note_ended(task, state, &entry, effects);
    }

    /// Notes that `task` (whose entry is `entry`) ended in `state`: it joins the history, and the
    /// oldest ended tasks beyond the history's bounds are forgotten.
    fn note_ended(&mut self, task: TaskId, state: TaskState, entry: &Task, effects: &mut GridEffects) {
        effects.ended.push((task, state));
        let retained = entry.retained_bytes();
        self.ended.push_back(task);
        let bytes = self.bytes_mut();
        bytes.history = bytes.history.saturating_add(retained);
        self.retain_history();
    }

    /// Node-loss with effects: every attempt `node` held is lost and re-queued.
    pub fn on_node_lost_into(&mut self, node: NodeId, now_ms: u64, effects: &mut GridEffects) {
        for task in self.on_node_lost(node, now_ms) {
            effects.lost.push((node, task));
        }
    }

    /// A task by id.
    pub fn get(&self, task: TaskId) -> Option<&Task> {
        self.tasks.get(&task).map(|task| &**task)
    }

    /// Tasks waiting to be placed.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Attempts assigned to or running on `node`.
    pub fn running_on(&self, node: NodeId) -> u32 {
        self.by_node.get(&node).map_or(0, |tasks| tasks.len() as u32)
    }

    /// Accepts a task at `now_ms`.
    ///
    /// # Errors
    /// [`GridError::Refused`] if the spec breaks a bound or the table is full.
    pub fn submit(&mut self, id: TaskId, spec: TaskSpec, now_ms: u64) -> Result<(), GridError> {
        self.admit(id, spec, now_ms, None)
    }

    /// [`Self::submit`], or with `assigned` the task goes straight to that node under that token
    /// instead of the queue: the same state as a submission followed by [`Self::on_assigned`].
    fn admit(
        &mut self,
        id: TaskId,
        spec: TaskSpec,
        now_ms: u64,
        assigned: Option<(NodeId, FencingToken)>,
    ) -> Result<(), GridError> {
        if self.tasks.len() >= self.limits.tasks_max {
            return Err(GridError::Refused(format!("the table holds {} tasks", self.limits.tasks_max)));
        }
        self.check_spec(&spec)?;
        if self.tasks.contains_key(&id) {
            return Err(GridError::Refused(format!("task {id:?} exists")));
        }
        self.check_pending_budget(spec.input.len())?;
        self.bytes_mut().on_open(&spec);
        let mut task =
            Task { id, spec, state: TaskState::Pending, attempts: Vec::new(), result: None, submitted_ms: now_ms };
        match assigned {
            None => self.queue.push(id, task.spec.priority, now_ms, task.spec.not_before_ms.max(now_ms)),
            Some((node, token)) => {
                task.assign(node, token, now_ms);
                self.by_node.entry(node).or_default().insert(id);
            }
        }
        self.tasks.insert(id, std::sync::Arc::new(task));
        self.next_id = self.next_id.max(id.0 + 1);
        Ok(())
    }

    fn check_spec(&self, spec: &TaskSpec) -> Result<(), GridError> {
        if spec.kind.is_empty() || spec.kind.len() > KIND_BYTES_MAX {
            return Err(GridError::Refused(format!("a task kind has 1..={KIND_BYTES_MAX} bytes")));
        }
        if spec.shard_key.as_ref().is_some_and(|key| key.len() > KIND_BYTES_MAX) {
            return Err(GridError::Refused(format!("a shard key has at most {KIND_BYTES_MAX} bytes")));
        }
        if spec.input.len() > self.limits.input_bytes_max {
            return Err(GridError::Refused(format!(
                "input of {} bytes exceeds {}",
                spec.input.len(),
                self.limits.input_bytes_max
            )));
        }
        if spec.retry.attempts_max == 0 || spec.retry.attempts_max > self.limits.attempts_max {
            return Err(GridError::Refused(format!("attempts must be 1..={}", self.limits.attempts_max)));
        }
        if spec.timeout_ms == 0 {
            return Err(GridError::Refused("a timeout must be positive".into()));
        }
        Ok(())
    }

    /// Releases delayed tasks whose not-before time has come.
    pub fn on_tick(&mut self, now_ms: u64) {
        self.queue.on_tick(now_ms);
    }

    /// The leader's plan: up to `max` (task, node) assignments in dispatch order, never over a node's
    /// slots + prefetch (work re-queued after its node was lost: twice that, see
    /// [`Placement::place_requeued`]). `nodes` (sorted by id) is updated with the planned load.
    /// Changes nothing in the table.
    pub fn plan_dispatch(
        &self,
        now_ms: u64,
        placement: &mut Placement,
        nodes: &mut [NodeLoad],
        max: usize,
    ) -> Vec<(TaskId, NodeId)> {
        self.plan_dispatch_excluding(now_ms, placement, nodes, max, &BTreeSet::new())
    }

    /// [`TaskTable::plan_dispatch`] leaving out `excluded` (tasks whose assignment is proposed and not
    /// yet applied; `nodes` already count them).
    pub fn plan_dispatch_excluding(
        &self,
        now_ms: u64,
        placement: &mut Placement,
        nodes: &mut [NodeLoad],
        max: usize,
        excluded: &BTreeSet<TaskId>,
    ) -> Vec<(TaskId, NodeId)> {
        for load in nodes.iter_mut() {
            load.draining |= self.draining.contains(&load.node);
        }
        let room = |nodes: &[NodeLoad], requeued: bool| -> usize {
            nodes
                .iter()
                .filter(|load| !load.draining)
                .map(|load| load.capacity(requeued).saturating_sub(load.running) as usize)
                .sum()
        };
        // No room anywhere: nothing to plan, and no reason to walk the queue.
        let max = max.min(room(nodes, true));
        if max == 0 {
            return Vec::new();
        }
        let mut open = room(nodes, false);
        let mut plan = Vec::new();
        // Look further than `max` so that tasks no node can take now do not block those behind them.
        for task in self.queue.ordered(now_ms, max.saturating_mul(4).saturating_add(excluded.len())) {
            if plan.len() >= max {
                break;
            }
            if excluded.contains(&task) {
                continue;
            }
            let entry = &self.tasks[&task];
            // Lost work was queued at the front of its priority: once only the room lost work may take
            // is left, nothing behind it can be placed.
            let requeued = entry.attempts.last().is_some_and(|attempt| attempt.state == AttemptState::Lost);
            if !requeued && open == 0 {
                break;
            }
            let placed = if requeued {
                placement.place_requeued(&entry.spec, nodes)
            } else {
                placement.place(&entry.spec, nodes)
            };
            if let Some(node) = placed {
                if let Some(load) = nodes.iter_mut().find(|load| load.node == node) {
                    if load.running < load.capacity(false) {
                        open = open.saturating_sub(1);
                    }
                    load.running += 1;
                }
                plan.push((task, node));
            }
        }
        plan
    }

    /// Nodes for tasks about to be submitted at `now_ms` (a placed submission), against `nodes` as
    /// [`Self::plan_dispatch_excluding`] takes them, whose loads are raised for each task placed: a
    /// node for each task that is ready now and finds room, `None` for the others.
    pub fn place_new(
        &self,
        now_ms: u64,
        placement: &mut Placement,
        nodes: &mut [NodeLoad],
        specs: &[TaskSpec],
    ) -> Vec<Option<NodeId>> {
        for load in nodes.iter_mut() {
            load.draining |= self.draining.contains(&load.node);
        }
        let mut open: usize = nodes
            .iter()
            .filter(|load| !load.draining)
            .map(|load| load.capacity(false).saturating_sub(load.running) as usize)
            .sum();
        specs
            .iter()
            .map(|spec| {
                if open == 0 || spec.not_before_ms > now_ms {
                    return None;
                }
                let node = placement.place(spec, nodes)?;
                let load = nodes.iter_mut().find(|load| load.node == node)?;
                load.running += 1;
                open -= 1;
                Some(node)
            })
            .collect()
    }

    /// What work stealing knows of each node in `nodes` (their loads as the dispatcher counts them):
    /// its attempts queued there and not started that `movable` allows to move (see `grid::steal`).
    ///
    /// A worker reports a start late (batched with its other reports; a quick attempt's start comes
    /// with its end), so the table's "not started" may be running already: a node runs up to its
    /// `slots`, so the unstarted attempts it would start first (highest priority, then lowest task id,
    /// as `worker::slots` starts them), as many as its slots the table does not see running, stay.
    pub fn backlogs(&self, nodes: &[NodeLoad], movable: impl Fn(&TaskSpec) -> bool) -> Vec<Backlog> {
        nodes
            .iter()
            .map(|load| {
                let mut running = 0u32;
                let mut unstarted: Vec<(std::cmp::Reverse<i32>, TaskId, &Task, &Attempt)> = Vec::new();
                for task in self.by_node.get(&load.node).into_iter().flatten() {
                    let entry = &self.tasks[task];
                    let Some(attempt) = entry.current_attempt() else { continue };
                    if attempt.state == AttemptState::Assigned && attempt.started_ms.is_none() {
                        unstarted.push((std::cmp::Reverse(entry.spec.priority), *task, entry, attempt));
                    } else {
                        running += 1;
                    }
                }
                unstarted.sort_unstable_by_key(|(priority, task, _, _)| (*priority, *task));
                let maybe_running = load.slots.saturating_sub(running) as usize;
                let queued = unstarted
                    .into_iter()
                    .skip(maybe_running)
                    .filter(|(_, _, entry, _)| entry.spec.affinity.is_none() && movable(&entry.spec))
                    .map(|(_, task, entry, attempt)| Queued {
                        task,
                        token: attempt.token,
                        assigned_ms: attempt.assigned_ms,
                        kind: entry.spec.kind.clone(),
                    })
                    .collect();
                Backlog {
                    node: load.node,
                    held: load.running,
                    slots: load.slots,
                    prefetch: load.prefetch,
                    kinds: load.kinds.clone(),
                    draining: load.draining || self.draining.contains(&load.node),
                    queued,
                }
            })
            .collect()
    }

    /// Work stealing: moves `task`'s attempt under `token` to `to` under `new_token`. Returns the node
    /// it moved from. The old attempt ends as lost (not the task's fault: it uses up no retry) and a
    /// new one is assigned to `to` at `now_ms`.
    ///
    /// # Errors
    /// [`GridError::StaleToken`] unless `token` is the current attempt's; [`GridError::WrongState`]
    /// if it started, if it is on `to` already, if `to` drains or if the task is pinned elsewhere.
    pub fn on_reassigned(
        &mut self,
        task: TaskId,
        token: FencingToken,
        to: NodeId,
        new_token: FencingToken,
        now_ms: u64,
    ) -> Result<NodeId, GridError> {
        let draining = self.draining.contains(&to);
        let entry = self.current(task, token)?;
        let state = entry.state;
        let pinned = entry.spec.affinity.is_some_and(|node| node != to);
        let attempt = entry.attempts.last_mut().expect("current() found an attempt");
        let from = attempt.node;
        if attempt.state != AttemptState::Assigned || attempt.started_ms.is_some() || from == to || draining || pinned {
            return Err(GridError::WrongState { task, state });
        }
        attempt.state = AttemptState::Lost;
        attempt.ended_ms = Some(now_ms);
        attempt.error = Some(format!("moved from node {from} to node {to} (work stealing)"));
        entry.assign(to, new_token, now_ms);
        self.release(from, task);
        self.by_node.entry(to).or_default().insert(task);
        Ok(from)
    }

    fn task_mut(&mut self, task: TaskId) -> Result<&mut Task, GridError> {
        self.tasks.get_mut(&task).map(std::sync::Arc::make_mut).ok_or(GridError::UnknownTask(task))
    }

    /// Applies an assignment of a pending task to `node`, under `token`.
    ///
    /// # Errors
    /// [`GridError::WrongState`] unless the task is pending and ready.
    pub fn on_assigned(
        &mut self,
        task: TaskId,
        node: NodeId,
        token: FencingToken,
        now_ms: u64,
    ) -> Result<(), GridError> {
        // One lookup: the state is read through the shared pointer, and the task copied (if a
        // snapshot shares it) only once the assignment is known to apply.
        let slot = self.tasks.get_mut(&task).ok_or(GridError::UnknownTask(task))?;
        let state = slot.state;
        if state != TaskState::Pending || !self.queue.remove_ready(task, now_ms) {
            return Err(GridError::WrongState { task, state });
        }
        std::sync::Arc::make_mut(slot).assign(node, token, now_ms);
        self.by_node.entry(node).or_default().insert(task);
        Ok(())
    }

    fn current(&mut self, task: TaskId, token: FencingToken) -> Result<&mut Task, GridError> {
        self.current_slot(task, token).map(std::sync::Arc::make_mut)
    }

    /// The shared entry of `task` if `token` is its current attempt's; not yet copied.
    fn current_slot(&mut self, task: TaskId, token: FencingToken) -> Result<&mut std::sync::Arc<Task>, GridError> {
        let slot = self.tasks.get_mut(&task).ok_or(GridError::UnknownTask(task))?;
        match slot.current_attempt() {
            Some(attempt) if attempt.token == token => Ok(slot),
            _ => Err(GridError::StaleToken { task, reported: token }),
        }
    }

    /// The node reports the attempt started.
    ///
    /// # Errors
    /// [`GridError::StaleToken`] for any report but the current assignment's.
    pub fn on_started(&mut self, task: TaskId, token: FencingToken, now_ms: u64) -> Result<(), GridError> {
        let entry = self.current(task, token)?;
        let attempt = entry.attempts.last_mut().expect("current() found an attempt");
        if attempt.state == AttemptState::Assigned {
            attempt.state = AttemptState::Running;
            attempt.started_ms = Some(now_ms);
            entry.state = TaskState::Running;
        }
        Ok(())
    }

    /// The node reports the attempt finished with `outcome`. Returns the task's new state.
    ///
    /// # Errors
    /// [`GridError::StaleToken`] for any report but the current assignment's: a late duplicate or a
    /// zombie is refused, and the completion is recorded exactly once.
    pub fn on_finished(
        &mut self,
        task: TaskId,
        token: FencingToken,
        outcome: Result<Vec<u8>, String>,
        now_ms: u64,
    ) -> Result<TaskState, GridError> {
        let limits = self.limits;
        let outcome = match outcome {
            Ok(result) if result.len() > limits.result_bytes_max => {
                Err(format!("result of {} bytes exceeds {}", result.len(), limits.result_bytes_max))
            }
            other => other,
        };
        match outcome {
            Ok(result) => {
                let entry = self.current(task, token)?;
                let attempt = entry.attempts.last_mut().expect("current() found an attempt");
                attempt.state = AttemptState::Succeeded;
                attempt.ended_ms = Some(now_ms);
                entry.state = TaskState::Succeeded;
                entry.result = Some(result);
                let node = attempt.node;
                self.release(node, task);
                self.on_closed(task);
                Ok(TaskState::Succeeded)
            }
            Err(error) => self.end_attempt(
                task,
                token,
                AttemptState::Failed,
                Some(bounded(error, limits.error_bytes_max)),
                now_ms,
            ),
        }
    }

    /// The leader found the attempt over its timeout.
    ///
    /// # Errors
    /// [`GridError::StaleToken`] if that attempt already ended.
    pub fn on_timed_out(&mut self, task: TaskId, token: FencingToken, now_ms: u64) -> Result<TaskState, GridError> {
        self.end_attempt(task, token, AttemptState::TimedOut, Some("timed out".into()), now_ms)
    }

    /// Ends the current attempt unsuccessfully and retries per policy, or ends the task.
    fn end_attempt(
        &mut self,
        task: TaskId,
        token: FencingToken,
        how: AttemptState,
        error: Option<String>,
        now_ms: u64,
    ) -> Result<TaskState, GridError> {
        let entry = self.current(task, token)?;
        let attempt = entry.attempts.last_mut().expect("current() found an attempt");
        attempt.state = how;
        attempt.ended_ms = Some(now_ms);
        attempt.error = error;
        let node = attempt.node;
        // Attempts lost with their node are not the task's fault and do not use up its retries.
        let used = entry.attempts.iter().filter(|attempt| attempt.state != AttemptState::Lost).count() as u32;
        let (state, retry_at) = if used < entry.spec.retry.attempts_max {
            (TaskState::Pending, Some(now_ms + entry.spec.retry.backoff_before(used + 1)))
        } else if how == AttemptState::TimedOut {
            (TaskState::TimedOut, None)
        } else {
            (TaskState::Failed, None)
        };
        entry.state = state;
        let priority = entry.spec.priority;
        if let Some(ready_ms) = retry_at {
            self.queue.push(task, priority, now_ms, ready_ms);
        } else {
            self.on_closed(task);
        }
        self.release(node, task);
        Ok(state)
    }

    fn release(&mut self, node: NodeId, task: TaskId) {
        if let Some(tasks) = self.by_node.get_mut(&node) {
            tasks.remove(&task);
            if tasks.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// `node` was declared dead: every attempt it held is lost and its task queued again at once.
    /// Returns the re-queued tasks.
    pub fn on_node_lost(&mut self, node: NodeId, now_ms: u64) -> Vec<TaskId> {
        let held: Vec<TaskId> = self.by_node.remove(&node).map(|tasks| tasks.into_iter().collect()).unwrap_or_default();
        // Pushed to the front newest first, so the oldest lost task ends up at the head.
        for &task in held.iter().rev() {
            let entry = std::sync::Arc::make_mut(self.tasks.get_mut(&task).expect("by_node lists known tasks"));
            let attempt = entry.attempts.last_mut().expect("a held task has an attempt");
            attempt.state = AttemptState::Lost;
            attempt.ended_ms = Some(now_ms);
            attempt.error = Some(format!("node {node} lost"));
            entry.state = TaskState::Pending;
            self.queue.push_front(task, entry.spec.priority, now_ms);
        }
        held
    }

    /// Cancels a task that has not finished.
    ///
    /// # Errors
    /// [`GridError::WrongState`] if it already finished.
    pub fn on_cancelled(&mut self, task: TaskId, now_ms: u64) -> Result<(), GridError> {
        let entry = self.task_mut(task)?;
        if entry.state.is_terminal() {
            return Err(GridError::WrongState { task, state: entry.state });
        }
        entry.state = TaskState::Cancelled;
        let running = entry
            .attempts
            .last_mut()
            .filter(|attempt| matches!(attempt.state, AttemptState::Assigned | AttemptState::Running));
        let node = running.map(|attempt| {
            attempt.state = AttemptState::Cancelled;
            attempt.ended_ms = Some(now_ms);
            attempt.node
        });
        match node {
            Some(node) => self.release(node, task),
            None => {
                self.queue.remove(task);
            }
        }
        self.on_closed(task);
        Ok(())
    }

    /// Attempts past their task's timeout at `now_ms`, for the leader to end: counted from the start
    /// for running attempts, and from the assignment (plus [`UNSTARTED_GRACE_MS`]) for attempts still
    /// queued on their node, so a node that never starts its work does not hold it forever.
    pub fn overdue(&self, now_ms: u64) -> Vec<(TaskId, FencingToken)> {
        self.by_node
            .values()
            .flatten()
            .filter_map(|task| {
                let entry = &self.tasks[task];
                let attempt = entry.current_attempt()?;
                let deadline = match attempt.started_ms {
                    Some(started) => started.saturating_add(entry.spec.timeout_ms),
                    None => {
                        attempt.assigned_ms.saturating_add(entry.spec.timeout_ms).saturating_add(UNSTARTED_GRACE_MS)
                    }
                };
                (now_ms > deadline).then_some((*task, attempt.token))
            })
            .collect()
    }
}

mod jobs;
mod retention;
#[cfg(test)]
mod tests;
