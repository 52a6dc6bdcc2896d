//! The worker: runs the attempts assigned to this node and reports on them.
//!
//! A ractor `WorkerSupervisor` receives attempt orders from the grid hub (one per committed
//! assignment to this node's current incarnation) and runs each attempt as its own `AttemptActor`,
//! linked to it. User code runs on a dedicated `gk-work` runtime, apart from the threads that carry
//! heartbeats and consensus, so a busy task cannot make its node look dead. A returned error, a panic,
//! or an actor failure ends the attempt as failed and is reported; the node keeps running.
//!
//! Reports (started, finished) are batched by one reporter task: one write in flight at a time, all
//! reports queued meanwhile in the next, so the batch grows with load. A write that fails is retried:
//! reports are idempotent because the table fences them by token.
//!
//! Invariant: at most one attempt per task runs or waits here (a newer token replaces an older one),
//! and at most `slots` run at once; the leader may assign up to `slots + prefetch`, and the rest wait
//! here in priority order, so no slot idles while the next assignment commits.

pub mod builtin;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

use crate::admin::grid_api::{PollRequest, PollResponse, RecordedResponse, ReportRequest};
use crate::client::{Client, ClientError};
use crate::clock::unix_millis;
use crate::consensus::{Coordinator, CoordinatorError};
use crate::grid::command::{GridCommand, Report};
use crate::grid::kinds::{AttemptInfo, TaskKinds};
use crate::grid::task::{FencingToken, TaskId};
use crate::ids::NodeId;
use crate::service::hub::{AttemptOrder, WorkerEvent};
use crate::state::Command;

/// Reports sent in one write at most.
pub const REPORT_BATCH_MAX: usize = 8_192;
/// Wait before retrying a report write that failed.
const REPORT_RETRY_WAIT: Duration = Duration::from_millis(20);
/// Attempts remembered after they ended, so a re-sent order (after a snapshot) does not run twice.
const ENDED_REMEMBERED_MAX: usize = 65_536;
/// Extra time an attempt gets past its timeout before the worker stops it (the leader records the
/// timeout; the grace lets that record land first).
const TIMEOUT_GRACE: Duration = Duration::from_millis(100);

/// Attempts running on this node now, and the most ever run at once (for `/status` and tests).
#[derive(Debug, Clone, Default)]
pub struct WorkerGauge(Arc<(AtomicU32, AtomicU32)>);

impl WorkerGauge {
    /// Attempts running now.
    pub fn running(&self) -> u32 {
        self.0 .0.load(Ordering::Relaxed)
    }

    /// The most attempts that ever ran here at once.
    pub fn peak(&self) -> u32 {
        self.0 .1.load(Ordering::Relaxed)
    }

    fn set(&self, running: u32) {
        self.0 .0.store(running, Ordering::Relaxed);
        self.0 .1.fetch_max(running, Ordering::Relaxed);
    }
}

/// Where a worker gets its orders and sends its reports.
#[derive(Clone, Debug)]
pub enum WorkerLink {
    /// A member node's worker: its coordinator's hub and write path.
    Local(Coordinator),
    /// A joined worker (`gridkeeper node --join`): a member's admin API, like an ElasticJob executor
    /// talking to ZooKeeper. It adds no load to consensus and needs no place in the Raft group.
    Remote(RemoteLink),
}

/// A joined worker's connections (one each, so a long poll never delays a report or a keepalive).
#[derive(Clone, Debug)]
pub struct RemoteLink {
    /// For long polls of new attempts.
    pub poll: Client,
    /// For reports.
    pub report: Client,
    /// The session owning this worker's registration (0 until registered).
    pub session: Arc<std::sync::atomic::AtomicU64>,
    /// Set once the cluster drains this worker.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Longest a joined worker's poll waits on the server.
const POLL_WAIT_MS: u64 = 2_000;
/// Pause after a failed poll or while unregistered.
const POLL_RETRY_WAIT: Duration = Duration::from_millis(50);

/// Feeds a joined worker's orders from its member's admin API.
async fn poll_loop(node: NodeId, link: RemoteLink, events: mpsc::UnboundedSender<WorkerEvent>) {
    let mut after_token = 0;
    let mut session_seen = 0;
    loop {
        let session = link.session.load(Ordering::SeqCst);
        if session == 0 {
            tokio::time::sleep(POLL_RETRY_WAIT).await;
            continue;
        }
        if session != session_seen {
            // A new registration: the one this worker ran under is gone, so everything it held was
            // re-queued elsewhere; stop it. Assignments to the new one start above its own zxid.
            if session_seen != 0 && events.send(WorkerEvent::AbortAll).is_err() {
                return;
            }
            session_seen = session;
            after_token = 0;
        }
        let request = PollRequest { node: node.0, session, after_token, wait_ms: POLL_WAIT_MS };
        match link.poll.post::<_, PollResponse>("/grid/worker/poll", &request).await {
            Ok(PollResponse { attempts, registered: true, draining }) => {
                link.draining.store(draining, Ordering::SeqCst);
                if draining && attempts.is_empty() {
                    // Nothing new will come; do not spin on the server's immediate answers.
                    tokio::time::sleep(Duration::from_millis(POLL_WAIT_MS / 10)).await;
                }
                for order in attempts {
                    after_token = after_token.max(order.token.0);
                    if events.send(WorkerEvent::Start(Box::new(order))).is_err() {
                        return;
                    }
                }
            }
            Ok(_) | Err(_) => tokio::time::sleep(POLL_RETRY_WAIT).await,
        }
    }
}

/// What the worker supervisor is started with.
pub struct WorkerArgs {
    /// This node.
    pub node: NodeId,
    /// Where orders come from and reports go.
    pub link: WorkerLink,
    /// The kinds this node runs.
    pub kinds: TaskKinds,
    /// Threads of the worker runtime; 0 runs attempts on the caller's runtime (deterministic
    /// simulation, where every task must run on the simulated host).
    pub threads: usize,
    /// Attempts run at once; the rest of what is assigned here waits in a local queue.
    pub slots: u32,
    /// Running-attempt gauge shared with the status API.
    pub gauge: WorkerGauge,
}

/// The worker supervisor's messages.
pub enum WorkerMsg {
    /// From the hub.
    Event(WorkerEvent),
    /// An attempt actor is up.
    Spawned {
        /// The task.
        task: TaskId,
        /// Its token.
        token: FencingToken,
        /// The actor.
        cell: ActorCell,
    },
    /// An attempt ended (`None`: stopped without a result to report, e.g. past its timeout).
    Ended {
        /// The task.
        task: TaskId,
        /// Its token.
        token: FencingToken,
        /// When it started.
        started_ms: u64,
        /// Its outcome.
        outcome: Option<Result<Vec<u8>, String>>,
    },
}

struct Running {
    token: FencingToken,
    cell: Option<ActorCell>,
    started_ms: u64,
}

/// The worker supervisor's state.
pub struct WorkerState {
    args: Arc<WorkerArgs>,
    work: WorkRuntime,
    running: HashMap<TaskId, Running>,
    /// Assigned here, waiting for a slot: highest priority first, then oldest task.
    queued: BTreeMap<(std::cmp::Reverse<i32>, TaskId), AttemptOrder>,
    queued_tokens: HashMap<TaskId, FencingToken>,
    ended: HashSet<(TaskId, FencingToken)>,
    ended_order: VecDeque<(TaskId, FencingToken)>,
    reports: mpsc::UnboundedSender<Report>,
    reporter: tokio::task::JoinHandle<()>,
    forwarder: tokio::task::JoinHandle<()>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

/// The node's worker supervisor.
pub struct WorkerSupervisor;

/// The runtime user code runs on. Dropped without blocking: a node torn down abruptly (in-process
/// clusters) drops it from wherever its owner goes, and its attempts must simply stop.
struct WorkRuntime(Option<tokio::runtime::Runtime>);

impl WorkRuntime {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl WorkerState {
    fn remember_ended(&mut self, task: TaskId, token: FencingToken) {
        if self.ended.insert((task, token)) {
            self.ended_order.push_back((task, token));
        }
        while self.ended_order.len() > ENDED_REMEMBERED_MAX {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn set_gauge(&self) {
        self.args.gauge.set(self.running.len() as u32);
        metrics::gauge!("gridkeeper_grid_running").set(self.running.len() as f64);
    }

    /// Takes an order: runs it now if a slot is free, or queues it.
    fn accept(&mut self, myself: &ActorRef<WorkerMsg>, order: AttemptOrder) {
        let (task, token) = (order.task, order.token);
        if self.ended.contains(&(task, token)) {
            return;
        }
        let known = self.running.get(&task).map(|running| running.token).or(self.queued_tokens.get(&task).copied());
        if known.is_some_and(|known| known >= token) {
            return;
        }
        // A newer assignment of the same task: the older attempt is fenced; stop it.
        self.abort(task);
        if self.running.len() < self.args.slots as usize {
            self.start(myself, order);
        } else {
            self.queued_tokens.insert(task, token);
            self.queued.insert((std::cmp::Reverse(order.spec.priority), task), order);
            metrics::gauge!("gridkeeper_grid_worker_queued").set(self.queued.len() as f64);
        }
    }

    /// Starts queued attempts while slots are free.
    fn fill_slots(&mut self, myself: &ActorRef<WorkerMsg>) {
        while self.running.len() < self.args.slots as usize {
            let Some((_, order)) = self.queued.pop_first() else { break };
            self.queued_tokens.remove(&order.task);
            self.start(myself, order);
        }
        metrics::gauge!("gridkeeper_grid_worker_queued").set(self.queued.len() as f64);
    }

    fn start(&mut self, myself: &ActorRef<WorkerMsg>, order: AttemptOrder) {
        let AttemptOrder { task, token, number, spec } = order;
        let started_ms = unix_millis();
        self.running.insert(task, Running { token, cell: None, started_ms });
        self.set_gauge();
        let Some(runner) = self.args.kinds.runner(&spec.kind) else {
            // Placement only sends kinds this node advertises; a kind removed by a restart lands here.
            let outcome = Some(Err(format!("this node cannot run tasks of kind {}", spec.kind)));
            let _ = myself.send_message(WorkerMsg::Ended { task, token, started_ms, outcome });
            return;
        };
        let _ = self.reports.send(Report { task, token, started_ms, outcome: None });
        let info = AttemptInfo { task, number, token, node: self.args.node };
        let attempt = AttemptArgs {
            supervisor: myself.clone(),
            info,
            started_ms,
            timeout: Duration::from_millis(spec.timeout_ms) + TIMEOUT_GRACE,
            run: Some(runner.start(&spec.input, spec.encoding, info)),
        };
        let supervisor = myself.get_cell();
        let spawn = async move {
            let supervisor_ref = attempt.supervisor.clone();
            if let Err(error) = Actor::spawn_linked(None, AttemptActor, attempt, supervisor).await {
                let outcome = Some(Err(format!("attempt actor did not start: {error}")));
                let _ = supervisor_ref.send_message(WorkerMsg::Ended { task, token, started_ms, outcome });
            }
        };
        match self.work.handle() {
            Some(work) => drop(work.spawn(spawn)),
            None => drop(tokio::spawn(spawn)),
        }
    }

    fn abort(&mut self, task: TaskId) {
        if let Some(token) = self.queued_tokens.remove(&task) {
            self.queued.retain(|(_, queued), _| *queued != task);
            self.remember_ended(task, token);
        }
        if let Some(running) = self.running.remove(&task) {
            if let Some(cell) = running.cell {
                cell.kill();
            }
            self.remember_ended(task, running.token);
            self.set_gauge();
        }
    }
}

impl Actor for WorkerSupervisor {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = Arc<WorkerArgs>;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: Arc<WorkerArgs>,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let work = if args.threads == 0 {
            None
        } else {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads)
                .thread_name(format!("gk-work-{}", args.node))
                .enable_all()
                .build()
                .map_err(|error| format!("worker runtime: {error}"))?;
            Some(runtime)
        };
        // Unbounded by type, bounded by use: each attempt sends at most two reports, and a node holds at
        // most `slots + prefetch` attempts (placement's bound), whose reports the reporter drains.
        let (reports, queued) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report_loop(args.link.clone(), queued));
        // Bounded by use too: one order per committed assignment to this node (at most `slots + prefetch`
        // open at once), an abort per ended one, and a re-send of what it holds after a snapshot.
        let (events, mut incoming) = mpsc::unbounded_channel();
        let poller = match &args.link {
            WorkerLink::Local(coordinator) => {
                coordinator.grid_hub().attach_worker(events);
                None
            }
            WorkerLink::Remote(link) => Some(tokio::spawn(poll_loop(args.node, link.clone(), events))),
        };
        let forward_to = myself.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(event) = incoming.recv().await {
                if forward_to.send_message(WorkerMsg::Event(event)).is_err() {
                    return;
                }
            }
        });
        Ok(WorkerState {
            args,
            work: WorkRuntime(work),
            running: HashMap::new(),
            queued: BTreeMap::new(),
            queued_tokens: HashMap::new(),
            ended: HashSet::new(),
            ended_order: VecDeque::new(),
            reports,
            reporter,
            forwarder,
            poller,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        message: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Event(WorkerEvent::Start(order)) => state.accept(&myself, *order),
            WorkerMsg::Event(WorkerEvent::Abort(task)) => {
                state.abort(task);
                state.fill_slots(&myself);
            }
            WorkerMsg::Event(WorkerEvent::AbortAll) => {
                let held: Vec<TaskId> = state.running.keys().chain(state.queued_tokens.keys()).copied().collect();
                for task in held {
                    state.abort(task);
                }
            }
            WorkerMsg::Spawned { task, token, cell } => match state.running.get_mut(&task) {
                Some(running) if running.token == token => running.cell = Some(cell),
                // Aborted or replaced while it started.
                _ => cell.kill(),
            },
            WorkerMsg::Ended { task, token, started_ms, outcome } => {
                if state.running.get(&task).is_some_and(|running| running.token == token) {
                    state.running.remove(&task);
                    state.remember_ended(task, token);
                    state.set_gauge();
                    if let Some(outcome) = outcome {
                        let _ = state.reports.send(Report { task, token, started_ms, outcome: Some(outcome) });
                    }
                    state.fill_slots(&myself);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<WorkerMsg>,
        event: SupervisionEvent,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        // An attempt actor that failed outside the guarded run (it should not): fail its attempt.
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let found = state
                .running
                .iter()
                .find(|(_, running)| running.cell.as_ref().is_some_and(|known| known.get_id() == cell.get_id()))
                .map(|(task, running)| (*task, running.token, running.started_ms));
            if let Some((task, token, started_ms)) = found {
                let outcome = Some(Err(format!("attempt actor failed: {error}")));
                let _ = myself.send_message(WorkerMsg::Ended { task, token, started_ms, outcome });
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<WorkerMsg>, state: &mut WorkerState) -> Result<(), ActorProcessingErr> {
        if let WorkerLink::Local(coordinator) = &state.args.link {
            coordinator.grid_hub().detach_worker();
        }
        if let Some(poller) = state.poller.take() {
            poller.abort();
        }
        state.forwarder.abort();
        state.reporter.abort();
        for (_, running) in state.running.drain() {
            if let Some(cell) = running.cell {
                cell.kill();
            }
        }
        // Inside an async context a runtime cannot block on its own shutdown.
        drop(std::mem::replace(&mut state.work, WorkRuntime(None)));
        Ok(())
    }
}

struct AttemptArgs {
    supervisor: ActorRef<WorkerMsg>,
    info: AttemptInfo,
    started_ms: u64,
    timeout: Duration,
    run: Option<crate::grid::kinds::AttemptFuture>,
}

/// One attempt, as an actor: runs the task's future once, reports, and stops.
struct AttemptActor;

impl Actor for AttemptActor {
    type Msg = ();
    type State = AttemptArgs;
    type Arguments = AttemptArgs;

    async fn pre_start(&self, myself: ActorRef<()>, args: AttemptArgs) -> Result<AttemptArgs, ActorProcessingErr> {
        let spawned = WorkerMsg::Spawned { task: args.info.task, token: args.info.token, cell: myself.get_cell() };
        let _ = args.supervisor.send_message(spawned);
        myself.send_message(())?;
        Ok(args)
    }

    async fn handle(&self, myself: ActorRef<()>, _: (), args: &mut AttemptArgs) -> Result<(), ActorProcessingErr> {
        let Some(run) = args.run.take() else { return Ok(()) };
        let guarded = AssertUnwindSafe(run).catch_unwind();
        let outcome = match tokio::time::timeout(args.timeout, guarded).await {
            Ok(Ok(outcome)) => Some(outcome),
            Ok(Err(panic)) => Some(Err(format!("panicked: {}", panic_message(panic.as_ref())))),
            Err(_) => None,
        };
        let AttemptInfo { task, token, .. } = args.info;
        let _ = args.supervisor.send_message(WorkerMsg::Ended { task, token, started_ms: args.started_ms, outcome });
        myself.stop(None);
        Ok(())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic".into()
    }
}

/// Sends queued reports in batches, one write at a time, retrying failed writes.
async fn report_loop(link: WorkerLink, mut queued: mpsc::UnboundedReceiver<Report>) {
    let mut batch: Vec<Report> = Vec::new();
    // A report taken from the queue that did not fit the last batch's bytes: it opens the next one.
    let mut carried: Option<Report> = None;
    loop {
        if batch.is_empty() {
            let next = match carried.take() {
                Some(report) => Some(report),
                None => queued.recv().await,
            };
            match next {
                Some(report) => batch.push(bounded_report(report)),
                None => return,
            }
        }
        let mut bytes: usize = batch.iter().map(report_bytes).sum();
        while batch.len() < REPORT_BATCH_MAX && carried.is_none() {
            match queued.try_recv() {
                Ok(report) => {
                    let report = bounded_report(report);
                    // One entry carries the batch: it must stay within the entry limit.
                    if bytes + report_bytes(&report) > REPORT_BATCH_BYTES_MAX {
                        carried = Some(report);
                    } else {
                        bytes += report_bytes(&report);
                        batch.push(report);
                    }
                }
                Err(_) => break,
            }
        }
        drop_starts_of_finished(&mut batch);
        match send_reports(&link, &batch).await {
            // Applied, or refused as a whole (then retrying cannot help).
            Ok(()) => batch.clear(),
            Err(ReportError::Retry(reason)) => {
                tracing::debug!(%reason, reports = batch.len(), "report write failed; retrying");
                tokio::time::sleep(REPORT_RETRY_WAIT).await;
            }
            Err(ReportError::Refused(reason)) => {
                tracing::warn!(%reason, reports = batch.len(), "reports refused");
                batch.clear();
            }
        }
    }
}

/// Bytes of reports in one batch (one log entry) at most: half the entry limit, so a batch and the
/// entry around it always fit.
pub const REPORT_BATCH_BYTES_MAX: usize = crate::limits::ENTRY_BYTES_MAX / 2;

/// The largest result a report carries. A larger one could not travel in one entry; the attempt fails
/// with an error saying so instead (the table's own `result_bytes_max`, at most this, applies after).
pub const REPORT_RESULT_BYTES_MAX: usize = REPORT_BATCH_BYTES_MAX / 2;

/// What a report adds to an entry, about: its result or error and its fixed fields.
fn report_bytes(report: &Report) -> usize {
    let outcome = match &report.outcome {
        Some(Ok(result)) => result.len(),
        Some(Err(error)) => error.len(),
        None => 0,
    };
    outcome + 64
}

/// A report whose result is too large to travel becomes a failure that says so.
fn bounded_report(mut report: Report) -> Report {
    let too_large = match &report.outcome {
        Some(Ok(result)) if result.len() > REPORT_RESULT_BYTES_MAX => Some(result.len()),
        _ => None,
    };
    if let Some(bytes) = too_large {
        report.outcome = Some(Err(format!(
            "result of {bytes} bytes exceeds the limit of {REPORT_RESULT_BYTES_MAX} bytes (REPORT_RESULT_BYTES_MAX)"
        )));
    }
    if let Some(Err(error)) = &mut report.outcome {
        // The table keeps only the first `error_bytes_max` bytes anyway.
        if error.len() > REPORT_RESULT_BYTES_MAX {
            let mut cut = REPORT_RESULT_BYTES_MAX;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
    }
    report
}

enum ReportError {
    /// Nothing or maybe something was recorded: send again (reports are idempotent).
    Retry(String),
    /// Refused as a whole.
    Refused(String),
}

async fn send_reports(link: &WorkerLink, batch: &[Report]) -> Result<(), ReportError> {
    match link {
        WorkerLink::Local(coordinator) => {
            let command = Command::App(GridCommand::Report { reports: batch.to_vec() });
            match coordinator.write(command).await {
                Ok(_) => Ok(()),
                Err(CoordinatorError::Unavailable(reason) | CoordinatorError::OutcomeUnknown(reason)) => {
                    Err(ReportError::Retry(reason))
                }
                Err(error) => Err(ReportError::Refused(error.to_string())),
            }
        }
        WorkerLink::Remote(remote) => {
            let request = ReportRequest { reports: batch.to_vec() };
            match remote.report.post::<_, RecordedResponse>("/grid/worker/report", &request).await {
                Ok(_) => Ok(()),
                Err(ClientError::Registry { name, message }) if name != "unavailable" => {
                    Err(ReportError::Refused(format!("{name}: {message}")))
                }
                Err(error) => Err(ReportError::Retry(error.to_string())),
            }
        }
    }
}

/// A start report is redundant when the same batch carries the attempt's end (which records its
/// start time too).
fn drop_starts_of_finished(batch: &mut Vec<Report>) {
    let finished: HashSet<(TaskId, FencingToken)> =
        batch.iter().filter(|report| report.outcome.is_some()).map(|report| (report.task, report.token)).collect();
    if finished.is_empty() {
        return;
    }
    batch.retain(|report| report.outcome.is_some() || !finished.contains(&(report.task, report.token)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(result_bytes: usize) -> Report {
        Report { task: TaskId(1), token: FencingToken(7), started_ms: 0, outcome: Some(Ok(vec![1; result_bytes])) }
    }

    #[test]
    fn a_result_too_large_for_an_entry_becomes_a_failure_that_says_so() {
        let report = bounded_report(finished(REPORT_RESULT_BYTES_MAX + 1));
        match report.outcome {
            Some(Err(error)) => assert!(error.contains("REPORT_RESULT_BYTES_MAX"), "{error}"),
            other => panic!("not failed: {other:?}"),
        }
        assert_eq!(bounded_report(finished(10)).outcome, Some(Ok(vec![1; 10])));
    }

    #[test]
    fn a_huge_error_is_cut_to_fit() {
        let mut report = finished(0);
        report.outcome = Some(Err("é".repeat(REPORT_RESULT_BYTES_MAX)));
        match bounded_report(report).outcome {
            Some(Err(error)) => assert!(error.len() <= REPORT_RESULT_BYTES_MAX),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn a_full_batch_of_the_largest_results_fits_one_entry() {
        let batch: Vec<Report> = (0..REPORT_BATCH_BYTES_MAX / REPORT_RESULT_BYTES_MAX)
            .map(|_| finished(REPORT_RESULT_BYTES_MAX - 64))
            .collect();
        assert!(batch.iter().map(report_bytes).sum::<usize>() <= REPORT_BATCH_BYTES_MAX);
        let command = Command::App(GridCommand::Report { reports: batch });
        assert!(crate::consensus::request::check_entry_size(&command).is_ok());
    }
}
