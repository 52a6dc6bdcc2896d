//! The grid's side of a node's state machine: it hears every applied entry's grid effects and hands
//! them on, without blocking the apply: assignments for this node go to its worker, ended tasks to
//! whoever waits on them, any change wakes the leader's dispatcher, and metrics count it all.
//!
//! Invariant: a worker only hears of assignments made to its own current incarnation (the
//! registration `/grid/nodes/<id>` owned by the session it registered with), so replaying old log
//! entries after a restart never re-runs a previous incarnation's attempts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot, Notify};

use super::command::GridEffects;
use super::replicated::ReplicatedState;
use super::task::{FencingToken, TaskId, TaskSpec, TaskState};
use crate::ids::NodeId;
use crate::registry::ZPath;

/// Distinct tasks awaited at once on one node; more waits are refused.
pub const WAITERS_MAX: usize = 1_000_000;

/// An attempt this node must run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AttemptOrder {
    /// The task.
    pub task: TaskId,
    /// The attempt's fencing token.
    pub token: FencingToken,
    /// 1 for the first attempt.
    pub number: u32,
    /// What to run.
    pub spec: TaskSpec,
}

/// What the hub tells the worker.
#[derive(Debug)]
pub enum WorkerEvent {
    /// Run this attempt.
    Start(Box<AttemptOrder>),
    /// Stop this task's attempt if it runs (cancelled, or lost with this node's session).
    Abort(TaskId),
    /// Stop every attempt: this worker's registration is gone, so all it holds was lost.
    AbortAll,
}

/// Why a wait ended without a terminal state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Too many waits on this node.
    #[error("too many tasks awaited on this node ({0})")]
    TooMany(usize),
    /// The task is not in the table (never accepted, or forgotten by history retention).
    #[error("no task {0:?}")]
    Unknown(TaskId),
    /// The node shut down.
    #[error("the node stopped")]
    Stopped,
}

/// The hub. One per coordinator.
pub struct GridHub {
    node: NodeId,
    /// This incarnation's registration session (0 until registered).
    session: AtomicU64,
    worker: Mutex<Option<mpsc::UnboundedSender<WorkerEvent>>>,
    waiters: Mutex<HashMap<TaskId, Vec<oneshot::Sender<TaskState>>>>,
    wake: Notify,
    /// Bumped on every applied grid change, for any number of watchers (remote workers' polls).
    applied: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for GridHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridHub").field("node", &self.node).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GridHub {
    /// A hub for `node`.
    pub fn new(node: NodeId) -> GridHub {
        GridHub {
            node,
            session: AtomicU64::new(0),
            worker: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            applied: tokio::sync::watch::channel(0).0,
        }
    }

    /// Connects the worker; assignments to this node flow to `events` from now on.
    pub fn attach_worker(&self, events: mpsc::UnboundedSender<WorkerEvent>) {
        *lock(&self.worker) = Some(events);
    }

    /// Disconnects the worker.
    pub fn detach_worker(&self) {
        *lock(&self.worker) = None;
    }

    /// Records the session this incarnation registered with, and hands the worker any attempt already
    /// assigned to it (assignments can commit before the registration call returns).
    pub fn on_registered(&self, session: u64, state: &ReplicatedState) {
        self.session.store(session, Ordering::SeqCst);
        self.resend_held(state);
    }

    /// Resolves once any grid change was applied (the leader's dispatcher waits on this).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// A receiver that changes on every applied grid change (any number may watch).
    pub fn watch_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Wakes the dispatcher (a node joined or left, say).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    fn owns_registration(&self, state: &ReplicatedState) -> bool {
        let session = self.session.load(Ordering::SeqCst);
        if session == 0 {
            return false;
        }
        let path = ZPath::parse(&format!("{}/{}", super::replicated::NODES_PATH, self.node)).expect("a valid path");
        state.registry.exists(&path).is_some_and(|stat| stat.ephemeral_owner == session)
    }

    fn send(&self, event: WorkerEvent) {
        if let Some(worker) = lock(&self.worker).as_ref() {
            let _ = worker.send(event);
        }
    }

    fn order(&self, state: &ReplicatedState, task: TaskId, token: FencingToken) -> Option<WorkerEvent> {
        let entry = state.grid.get(task)?;
        let attempt = entry.current_attempt().filter(|attempt| attempt.token == token)?;
        Some(WorkerEvent::Start(Box::new(AttemptOrder {
            task,
            token,
            number: attempt.number,
            spec: entry.spec.clone(),
        })))
    }

    fn resend_held(&self, state: &ReplicatedState) {
        if !self.owns_registration(state) {
            return;
        }
        for (task, token) in state.grid.held_by(self.node) {
            if let Some(order) = self.order(state, task, token) {
                self.send(order);
            }
        }
    }

    /// One applied entry's effects; `state` is the state right after it.
    pub fn on_applied(&self, effects: &GridEffects, state: &ReplicatedState) {
        if effects.is_empty() {
            return;
        }
        let mine = effects.assigned.iter().any(|(_, node, _)| *node == self.node);
        if mine && self.owns_registration(state) {
            for &(task, node, token) in &effects.assigned {
                if node == self.node {
                    if let Some(order) = self.order(state, task, token) {
                        self.send(order);
                    }
                }
            }
        }
        for &(node, task) in &effects.lost {
            if node == self.node {
                self.send(WorkerEvent::Abort(task));
            }
        }
        if !effects.ended.is_empty() {
            let mut waiters = lock(&self.waiters);
            for &(task, state) in &effects.ended {
                if state == TaskState::Cancelled {
                    self.send(WorkerEvent::Abort(task));
                }
                for waiter in waiters.remove(&task).unwrap_or_default() {
                    let _ = waiter.send(state);
                }
            }
        }
        record_metrics(effects, state);
        self.wake.notify_one();
        self.applied.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// The state was replaced by a snapshot: re-send held attempts and settle waits that ended.
    pub fn on_reset(&self, state: &ReplicatedState) {
        self.resend_held(state);
        let mut waiters = lock(&self.waiters);
        waiters.retain(|task, senders| match state.grid.get(*task).map(|entry| entry.state) {
            Some(task_state) if task_state.is_terminal() => {
                for sender in senders.drain(..) {
                    let _ = sender.send(task_state);
                }
                false
            }
            _ => true,
        });
        self.wake.notify_one();
    }

    /// Registers a wait for `task`'s terminal state. `state` must be read after registering (the
    /// caller checks whether it already ended), so no ending is missed.
    ///
    /// # Errors
    /// [`WaitError::TooMany`] past [`WAITERS_MAX`].
    pub fn wait(&self, task: TaskId) -> Result<oneshot::Receiver<TaskState>, WaitError> {
        let mut waiters = lock(&self.waiters);
        if waiters.len() >= WAITERS_MAX {
            return Err(WaitError::TooMany(WAITERS_MAX));
        }
        let (sender, receiver) = oneshot::channel();
        waiters.entry(task).or_default().push(sender);
        Ok(receiver)
    }

    /// Drops waits whose receivers are gone (callers that gave up).
    pub fn prune_waits(&self) {
        lock(&self.waiters).retain(|_, senders| {
            senders.retain(|sender| !sender.is_closed());
            !senders.is_empty()
        });
    }
}

fn record_metrics(effects: &GridEffects, state: &ReplicatedState) {
    if effects.submitted > 0 {
        metrics::counter!("gridkeeper_grid_submitted_total").increment(u64::from(effects.submitted));
    }
    if !effects.assigned.is_empty() {
        metrics::counter!("gridkeeper_grid_assigned_total").increment(effects.assigned.len() as u64);
    }
    if effects.retried > 0 {
        metrics::counter!("gridkeeper_grid_retries_total").increment(u64::from(effects.retried));
    }
    if !effects.lost.is_empty() {
        metrics::counter!("gridkeeper_grid_reassignments_total").increment(effects.lost.len() as u64);
    }
    if effects.refused > 0 {
        metrics::counter!("gridkeeper_grid_rejected_reports_total").increment(u64::from(effects.refused));
    }
    for &(task, task_state) in &effects.ended {
        let outcome = match task_state {
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::TimedOut => "timed_out",
            _ => "cancelled",
        };
        metrics::counter!("gridkeeper_grid_completed_total", "outcome" => outcome).increment(1);
        let Some(attempt) = state.grid.get(task).and_then(|entry| entry.attempts.last().map(|a| (entry, a))) else {
            continue;
        };
        let (entry, attempt) = attempt;
        if let (Some(started), Some(ended)) = (attempt.started_ms, attempt.ended_ms) {
            let wait = started.saturating_sub(entry.submitted_ms) as f64 / 1e3;
            let run = ended.saturating_sub(started) as f64 / 1e3;
            metrics::histogram!("gridkeeper_grid_wait_seconds").record(wait);
            metrics::histogram!("gridkeeper_grid_run_seconds").record(run);
        }
    }
}
