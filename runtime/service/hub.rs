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

use std::sync::Arc;

use crate::api::grid::AttemptOrder;
use crate::clock::unix_millis;
use crate::consensus::{Coordinator, StateObserver};
use crate::grid::command::{GridCommand, GridEffects};
use crate::grid::placement::Placement;
use crate::grid::task::{FencingToken, TaskId, TaskState};
use crate::ids::NodeId;
use crate::registry::{Change, STATE_VERSION_PLACED};
use crate::state::replicated::{InFlight, ReplicatedState, NODES_PATH};
use crate::state::Command;

pub use super::submissions::merged_totals;
pub use crate::limits::WAITERS_MAX;

/// Waits are swept for abandoned ones (a caller that went away) once they double past this.
const PRUNE_FLOOR: usize = 1_024;

/// The waits of one node: senders per task, their number, and when to sweep next.
#[derive(Debug, Default)]
struct Waiters {
    by_task: HashMap<TaskId, Vec<oneshot::Sender<TaskState>>>,
    count: usize,
    prune_at: usize,
}

impl Waiters {
    /// Drops senders whose receiver is gone, for `tasks` or (None) every task.
    fn prune(&mut self, tasks: Option<&[TaskId]>) {
        let mut dropped = 0;
        let mut sweep = |senders: &mut Vec<oneshot::Sender<TaskState>>| {
            let before = senders.len();
            senders.retain(|sender| !sender.is_closed());
            dropped += before - senders.len();
            !senders.is_empty()
        };
        match tasks {
            None => self.by_task.retain(|_, senders| sweep(senders)),
            Some(tasks) => {
                for task in tasks {
                    if let Some(senders) = self.by_task.get_mut(task) {
                        if !sweep(senders) {
                            self.by_task.remove(task);
                        }
                    }
                }
            }
        }
        self.count -= dropped;
        if tasks.is_none() {
            self.prune_at = self.count.saturating_mul(2).max(PRUNE_FLOOR);
        }
    }

    /// Sweeps when the waits doubled since the last sweep: amortized O(1) per wait.
    fn prune_if_grown(&mut self) {
        if self.count >= self.prune_at.max(PRUNE_FLOOR) {
            self.prune(None);
        }
    }
}

/// What the hub tells the worker.
#[derive(Debug)]
pub enum WorkerEvent {
    /// Run this attempt.
    Start(Box<AttemptOrder>),
    /// Stop this task's attempt if it runs (cancelled, lost with this node's session, or moved to
    /// another node by work stealing).
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
    waiters: Mutex<Waiters>,
    wake: Notify,
    /// Bumped on every applied grid change, for any number of watchers (remote workers' polls).
    applied: tokio::sync::watch::Sender<u64>,
    /// The node's actor service, if it hosts actors (see [`ActorListener`]). Weak: the service holds
    /// the coordinator, whose observer this hub is, so a strong reference would keep a node torn down
    /// without an orderly stop (and its mesh socket) alive.
    actors: std::sync::RwLock<Option<std::sync::Weak<dyn ActorListener>>>,
    /// The leader's placement and what it planned that is not applied yet, shared by the dispatcher
    /// (its `Assign` entries) and placed submissions ([`StateObserver::shape`]); `None` until the
    /// dispatcher runs. Locked after the state, never before it.
    planner: Arc<Mutex<Option<Planner>>>,
    /// Small submissions made through this node, merged into shared entries while its slots are busy.
    submissions: super::submissions::Submissions,
}

/// Tasks this process's leaders placed as they were submitted (see [`StateObserver::shape`]), for tests and
/// benchmarks that check the path is taken; nodes export it as
/// `gridkeeper_grid_placed_at_submission_total`.
static PLACED_AT_SUBMISSION: AtomicU64 = AtomicU64::new(0);

/// Tasks placed in their submission's own entry by any node of this process, so far.
pub fn placed_at_submission() -> u64 {
    PLACED_AT_SUBMISSION.load(Ordering::Relaxed)
}

/// What the leader plans with: its placement (whose strategies keep state, such as a round robin's
/// next node) and the assignments it proposed that are not applied yet.
#[derive(Debug)]
pub struct Planner {
    /// Placement.
    pub placement: Placement,
    /// Proposed, not applied.
    pub in_flight: InFlight,
}

/// A placed submission's nodes, counted in flight until its write returns (by then it applied on
/// the leader, and the table counts its attempts; or it never will).
struct PlacedInFlight {
    planner: Arc<Mutex<Option<Planner>>>,
    nodes: Vec<NodeId>,
}

impl Drop for PlacedInFlight {
    fn drop(&mut self) {
        if let Some(planner) = lock(&self.planner).as_mut() {
            planner.in_flight.remove_nodes(&self.nodes);
        }
    }
}

/// What the layer hosting actors (`crate::actors`, which comes after `service` in the folder rule)
/// hears through the hub: applied actor effects, snapshot installs, and this node's registration lease.
/// The hub holds it weakly; `into_any` lets that layer find itself again from a coordinator.
pub trait ActorListener: Send + Sync + 'static {
    /// An applied entry with actor effects; called in the apply step with the state locked: it must
    /// not block.
    fn on_applied(&self, effects: &GridEffects, state: &ReplicatedState);
    /// The state was replaced by a snapshot.
    fn on_reset(&self, state: &ReplicatedState);
    /// This node's registration: a keepalive sent at `sent_at` was confirmed by a linearizable stat
    /// (`Some`), or the registration was lost (`None`).
    fn on_lease(&self, sent_at: Option<crate::clock::Instant>);
    /// The listener itself, for its layer to downcast.
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

impl std::fmt::Debug for GridHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridHub").field("node", &self.node).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateObserver for GridHub {
    fn on_applied(&self, changes: &[Change], effects: &GridEffects, state: &ReplicatedState) {
        GridHub::on_applied(self, effects, state);
        if changes.iter().any(|change| change.path().as_str().starts_with(NODES_PATH)) {
            // A node came or went: placement has new options.
            self.poke();
        }
    }

    fn on_reset(&self, state: &ReplicatedState) {
        GridHub::on_reset(self, state);
    }

    fn on_metrics(&self, state: &ReplicatedState) {
        super::telemetry::record_table(state);
    }

    fn shapes(&self, command: &Command) -> bool {
        matches!(command, Command::App(GridCommand::Submit { .. }))
    }

    /// A submission becomes a placed one (`GridCommand::SubmitPlaced`) when the cluster applies
    /// state version 7, the dispatcher runs here, and some of its tasks find room with no queued
    /// work ahead of them; those start after this one commit.
    fn shape(&self, command: Command, state: &ReplicatedState) -> (Command, Option<Box<dyn Send>>) {
        let Command::App(GridCommand::Submit { tasks }) = command else { return (command, None) };
        if state.registry.version() < STATE_VERSION_PLACED {
            return (Command::App(GridCommand::Submit { tasks }), None);
        }
        let mut planner = lock(&self.planner);
        let Some(nodes) = planner
            .as_mut()
            .and_then(|planner| state.place_new(unix_millis(), &mut planner.placement, &tasks, &planner.in_flight))
        else {
            return (Command::App(GridCommand::Submit { tasks }), None);
        };
        let on: Vec<NodeId> = nodes.iter().flatten().copied().collect();
        let placed = Command::App(GridCommand::SubmitPlaced { tasks, nodes });
        if crate::consensus::request::check_entry_size(&placed).is_err() {
            // Its nodes would take it past the entry bound: it goes as it came.
            return match placed {
                Command::App(GridCommand::SubmitPlaced { tasks, .. }) => {
                    (Command::App(GridCommand::Submit { tasks }), None)
                }
                other => (other, None),
            };
        }
        if let Some(planner) = planner.as_mut() {
            planner.in_flight.add_nodes(&on);
        }
        PLACED_AT_SUBMISSION.fetch_add(on.len() as u64, Ordering::Relaxed);
        metrics::counter!("gridkeeper_grid_placed_at_submission_total").increment(on.len() as u64);
        (placed, Some(Box::new(PlacedInFlight { planner: self.planner.clone(), nodes: on })))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl GridHub {
    /// The hub `coordinator` was started with, if it was started with one (every node is; a bare
    /// registry coordinator in a simulation is not).
    pub fn of(coordinator: &Coordinator) -> Option<Arc<GridHub>> {
        coordinator.observer().downcast::<GridHub>().ok()
    }

    /// A hub for `node`.
    pub fn new(node: NodeId) -> GridHub {
        super::telemetry::register();
        GridHub {
            node,
            session: AtomicU64::new(0),
            worker: Mutex::new(None),
            waiters: Mutex::new(Waiters::default()),
            wake: Notify::new(),
            applied: tokio::sync::watch::channel(0).0,
            actors: std::sync::RwLock::new(None),
            planner: Arc::new(Mutex::new(None)),
            submissions: super::submissions::Submissions::default(),
        }
    }

    /// The merge of small submissions made through this node.
    pub(crate) fn submissions(&self) -> &super::submissions::Submissions {
        &self.submissions
    }

    /// Installs the leader's planner (the dispatcher does, once, as it starts): placed submissions and
    /// `Assign` entries are planned with it from now on.
    pub fn install_planner(&self, placement: Placement) {
        *lock(&self.planner) = Some(Planner { placement, in_flight: InFlight::default() });
    }

    /// Runs `plan` with the planner, if installed. Call it inside a state read when `plan` reads the
    /// state (the state is locked first, then the planner).
    pub fn with_planner<T>(&self, plan: impl FnOnce(&mut Planner) -> T) -> Option<T> {
        lock(&self.planner).as_mut().map(plan)
    }

    /// Connects the node's actor service: actor effects and lease renewals flow to it from now on.
    pub fn attach_actors(&self, listener: Arc<dyn ActorListener>) {
        *self.actors.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::downgrade(&listener));
    }

    /// Disconnects the actor service.
    pub fn detach_actors(&self) {
        *self.actors.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// The attached actor service.
    pub fn actors(&self) -> Option<Arc<dyn ActorListener>> {
        self.actors.read().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref().and_then(std::sync::Weak::upgrade)
    }

    /// Tells the actor service of this node's registration lease (see [`ActorListener::on_lease`]).
    pub fn on_lease(&self, sent_at: Option<crate::clock::Instant>) {
        if let Some(actors) = self.actors() {
            actors.on_lease(sent_at);
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

    /// This incarnation's held attempts, or `None` if it does not own its registration (yet, or any
    /// more).
    fn held(&self, state: &ReplicatedState) -> Option<Vec<(TaskId, FencingToken)>> {
        state.incarnation_attempts(self.node, self.session.load(Ordering::SeqCst), 0)
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
        for (task, token) in self.held(state).unwrap_or_default() {
            if let Some(order) = self.order(state, task, token) {
                self.send(order);
            }
        }
    }

    /// One applied entry's effects; `state` is the state right after it.
    pub fn on_applied(&self, effects: &GridEffects, state: &ReplicatedState) {
        if !(effects.actors_ended.is_empty() && effects.actors_orphaned.is_empty()) {
            if let Some(actors) = self.actors() {
                actors.on_applied(effects, state);
            }
        }
        if effects.is_empty() {
            return;
        }
        // Stage event for `benches/cycle.rs`, which links a task's stages through it (an attempt's
        // token is its Assign entry's index); nothing listens at trace level in a node.
        tracing::trace!(
            target: "gridkeeper::cycle",
            node = self.node.0,
            index = state.registry.last_zxid(),
            submitted = effects.submitted,
            assigned = effects.assigned.len(),
            ended = effects.ended.len(),
            first_assigned = effects.assigned.first().map_or(0, |assigned| assigned.0 .0),
            first_ended = effects.ended.first().map_or(0, |ended| ended.0 .0),
            "applied"
        );
        let mine = effects.assigned.iter().any(|(_, node, _)| *node == self.node);
        if mine && state.registration_zxid(self.node, self.session.load(Ordering::SeqCst)).is_some() {
            if let Some(worker) = lock(&self.worker).as_ref() {
                for &(task, node, token) in &effects.assigned {
                    if node == self.node {
                        if let Some(order) = self.order(state, task, token) {
                            let _ = worker.send(order);
                        }
                    }
                }
            }
        }
        // Attempts lost with this node, or moved away from it by work stealing: the worker drops them
        // (a queued one quietly; one that started meanwhile is stopped, and its reports are refused).
        for &(node, task) in effects.lost.iter().chain(&effects.stolen) {
            if node == self.node {
                self.send(WorkerEvent::Abort(task));
            }
        }
        {
            // Every node settles and sweeps its own waits as it applies, leader or not.
            let mut waiters = lock(&self.waiters);
            for &(task, state) in &effects.ended {
                if state == TaskState::Cancelled {
                    self.send(WorkerEvent::Abort(task));
                }
                let senders = waiters.by_task.remove(&task).unwrap_or_default();
                waiters.count -= senders.len();
                for waiter in senders {
                    let _ = waiter.send(state);
                }
            }
            waiters.prune_if_grown();
        }
        super::telemetry::record_applied(effects, state);
        self.wake.notify_one();
        self.applied.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// The state was replaced by a snapshot: re-send held attempts and settle waits that ended.
    pub fn on_reset(&self, state: &ReplicatedState) {
        if let Some(actors) = self.actors() {
            actors.on_reset(state);
        }
        self.resend_held(state);
        let mut guard = lock(&self.waiters);
        let waiters = &mut *guard;
        let mut settled = 0;
        waiters.by_task.retain(|task, senders| match state.grid.get(*task).map(|entry| entry.state) {
            Some(task_state) if task_state.is_terminal() => {
                settled += senders.len();
                for sender in senders.drain(..) {
                    let _ = sender.send(task_state);
                }
                false
            }
            _ => true,
        });
        waiters.count -= settled;
        waiters.prune(None);
        self.wake.notify_one();
    }

    /// Registers a wait for `task`'s terminal state. The caller registers only for tasks it saw not
    /// ended, then reads the state again (an ending between the two reads is caught by one or the
    /// other), and calls [`GridHub::release`] when it stops waiting.
    ///
    /// # Errors
    /// [`WaitError::TooMany`] past [`WAITERS_MAX`].
    pub fn wait(&self, task: TaskId) -> Result<oneshot::Receiver<TaskState>, WaitError> {
        Ok(self.wait_all(&[task])?.pop().expect("one receiver per task"))
    }

    /// [`GridHub::wait`] for every task in `tasks`, all or none.
    ///
    /// # Errors
    /// [`WaitError::TooMany`] if they do not all fit under [`WAITERS_MAX`].
    pub fn wait_all(&self, tasks: &[TaskId]) -> Result<Vec<oneshot::Receiver<TaskState>>, WaitError> {
        let mut waiters = lock(&self.waiters);
        if waiters.count.saturating_add(tasks.len()) > WAITERS_MAX {
            waiters.prune(None);
        }
        if waiters.count.saturating_add(tasks.len()) > WAITERS_MAX {
            return Err(WaitError::TooMany(WAITERS_MAX));
        }
        let receivers = tasks
            .iter()
            .map(|&task| {
                let (sender, receiver) = oneshot::channel();
                waiters.by_task.entry(task).or_default().push(sender);
                receiver
            })
            .collect();
        waiters.count += tasks.len();
        Ok(receivers)
    }

    /// Forgets the waits on `tasks` whose receivers were dropped: a wait call that returned calls this
    /// with the tasks it registered, after dropping its receivers.
    pub fn release(&self, tasks: &[TaskId]) {
        lock(&self.waiters).prune(Some(tasks));
    }

    /// Waits held on this node.
    pub fn waits(&self) -> usize {
        lock(&self.waiters).count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_call_releases_its_waits_and_abandoned_ones_are_swept() {
        let hub = GridHub::new(NodeId(1));
        let tasks: Vec<TaskId> = (1..=10).map(TaskId).collect();
        let receivers = hub.wait_all(&tasks).expect("room");
        assert_eq!(hub.waits(), 10);
        drop(receivers);
        hub.release(&tasks);
        assert_eq!(hub.waits(), 0, "a returned call leaves nothing behind");
        // Callers that vanish without releasing are swept once the waits double, on any node.
        for round in 0..(4 * PRUNE_FLOOR as u64) {
            drop(hub.wait(TaskId(1_000 + round)).expect("room"));
            lock(&hub.waiters).prune_if_grown();
        }
        assert!(hub.waits() <= 2 * PRUNE_FLOOR, "{}", hub.waits());
    }

    #[test]
    fn waits_past_the_bound_are_refused_all_or_none() {
        let hub = GridHub::new(NodeId(1));
        let held = hub.wait_all(&vec![TaskId(1); WAITERS_MAX - 1]).expect("room");
        assert_eq!(hub.wait_all(&[TaskId(2), TaskId(3)]).map(|_| ()), Err(WaitError::TooMany(WAITERS_MAX)));
        assert_eq!(hub.waits(), WAITERS_MAX - 1);
        drop(held);
        // Abandoned waits are swept before a refusal.
        assert!(hub.wait_all(&[TaskId(2), TaskId(3)]).is_ok());
    }
}
