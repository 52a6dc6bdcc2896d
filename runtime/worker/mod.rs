//! The worker: runs the attempts assigned to this node and reports on them.
//!
//! The decisions live in a core with no I/O: [`slots::Slots`] (which attempts run, which wait by
//! priority, fencing by token, the ended set, timeouts, when a start is worth reporting) over
//! [`reports::ReportQueue`] (report batches cut by count and bytes, at most two writes out, retries).
//! This file is its shell: an engine (the core and the handles of what it started, behind a mutex)
//! takes orders from the grid hub (or a joined worker's poll loop), attempts' ends, report-write
//! outcomes and timer ticks as the core's inputs, with the time from `clock.rs`, and executes the
//! actions the core returns: spawn or abort an attempt, write a batch of reports. A ractor
//! `WorkerSupervisor` owns the engine and the work runtime and takes what comes back later (write
//! outcomes, ticks); orders and ends go into the engine from the task that has them, so an attempt
//! that ends starts the next queued one from its own thread. A slot turns over without a thread
//! wake-up: through the supervisor's mailbox it took two (about 90 us on this project's machine),
//! which bounded a node with two slots near 22,000 no-op attempts per second.
//!
//! Each attempt runs as one tokio task on a dedicated `gk-work` runtime, apart from the threads that
//! carry heartbeats and consensus, so a busy task cannot make its node look dead. It is supervised
//! without an actor of its own (an actor per attempt cost about a tenth of a loaded node's CPU): its
//! future runs under `catch_unwind`, and an `EndNotice` it owns gives the engine its end exactly once,
//! with its outcome, or, if the task is dropped unfinished (a panic outside the guarded run, the
//! runtime going down), as a failure sent to the supervisor. A returned error or a panic ends the
//! attempt as failed and is reported; the node keeps running. An attempt the core stops is aborted; the
//! notice its drop sends is for an attempt the core no longer runs, so it is ignored.
//!
//! Each attempt logs into the node's task logs (`logs.rs`, over the `logs_book.rs` core): the
//! attempt's future runs inside its logger's scope (`grid::kinds::with_attempt_log`) and under a
//! `tracing` dispatcher that keeps its events too (`logs_capture.rs`); its log is opened by its first
//! line (an attempt that logs nothing costs the log writer nothing) and closed when its task ends,
//! however it ends.
//!
//! Invariant: at most one attempt per task runs or waits here (a newer token replaces an older one),
//! and at most `slots` run at once; the leader may assign up to `slots + prefetch`, and the rest wait
//! here in priority order, so no slot idles while the next assignment commits (see `slots.rs`).

pub mod builtin;
pub mod logs;
pub mod logs_book;
mod logs_capture;
pub mod reports;
pub mod slots;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

use crate::api::grid::{AttemptOrder, PollRequest, PollResponse};
use crate::client::Client;
use crate::clock::{unix_millis, Clock};
use crate::consensus::Coordinator;
use crate::grid::command::Report;
use crate::grid::kinds::{AttemptInfo, TaskKinds};
use crate::grid::task::{FencingToken, TaskId};
use crate::ids::{Millis, NodeId};
use crate::service::hub::WorkerEvent;

use reports::ReportWrite;
pub use reports::{REPORT_BATCH_BYTES_MAX, REPORT_BATCH_MAX, REPORT_RESULT_BYTES_MAX};
use slots::{Action, Order, Slots, SlotsConfig};

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

/// Most hub events the forwarder feeds the engine under one lock (one applied `Assign` entry's orders
/// for this node usually come in together).
const EVENTS_PER_LOCK: usize = 1_024;

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
    /// Where attempts' log lines are kept; `None` keeps none (deterministic simulation).
    pub logs: Option<logs::TaskLogs>,
}

/// The worker supervisor's messages.
pub enum WorkerMsg {
    /// An order, as the hub (or a joined worker's poll loop) gives it; they usually go straight into
    /// the engine instead.
    Event(WorkerEvent),
    /// An attempt ended with a result or an error.
    Ended {
        /// The task.
        task: TaskId,
        /// Its token.
        token: FencingToken,
        /// Its outcome.
        outcome: Result<Vec<u8>, String>,
    },
    /// A report write returned.
    ReportsWritten {
        /// The batch the write carried.
        batch: Vec<Report>,
        /// How it went.
        written: ReportWrite,
    },
    /// The core's deadline (an attempt's timeout, a report retry) has come.
    Tick(Millis),
}

/// The worker supervisor's state: the engine, shared with the attempts' end notices, and the tasks that
/// feed it.
pub struct WorkerState {
    engine: Arc<Mutex<Engine>>,
    /// The work runtime, owned here so stopping the supervisor stops every attempt.
    work: WorkRuntime,
    forwarder: tokio::task::JoinHandle<()>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

/// The core and handles on what it started. Behind a mutex shared by the supervisor (orders, ticks,
/// write outcomes) and the attempts' tasks: an attempt that ends feeds its end to the core from its
/// own thread and starts the next queued attempt from there, so a slot turns over without a hop to
/// the supervisor and back (two thread wake-ups, about 90 us, which bounded a node at about
/// `slots` / 90 us attempts per second). Nothing awaits while holding it.
struct Engine {
    args: Arc<WorkerArgs>,
    clock: Clock,
    slots: Slots,
    /// The supervisor, for what comes back later (write outcomes, timer ticks, unsent notices).
    myself: ActorRef<WorkerMsg>,
    /// This engine, for the notices of the attempts it starts.
    this: Weak<Mutex<Engine>>,
    /// Where attempts run (`None`: on the control runtime, as in simulation).
    work: Option<tokio::runtime::Handle>,
    /// Where report writes and timers run: the control runtime, whatever thread feeds the engine.
    control: tokio::runtime::Handle,
    /// The tasks of running attempts, until they end or are stopped.
    attempts: HashMap<(TaskId, FencingToken), tokio::task::AbortHandle>,
    /// The timer for the core's next deadline, and that deadline.
    tick: Option<(Millis, tokio::task::JoinHandle<()>)>,
    /// The report writes that are out (and some that returned, until the next write).
    writers: Vec<tokio::task::JoinHandle<()>>,
    /// The worker's gauges, looked up once (the recorder is installed before any node starts).
    running_gauge: metrics::Gauge,
    queued_gauge: metrics::Gauge,
    /// The `tracing` dispatcher attempts run under (with task logs only).
    capture: Option<tracing::Dispatch>,
}

/// Locks the engine; a panic while it was held (a bug in the core) leaves its state as it was.
fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The node's worker supervisor.
pub struct WorkerSupervisor;

/// The runtime user code runs on. Dropped without blocking: a node torn down abruptly (in-process
/// clusters) drops it from wherever its owner goes, and its attempts must simply stop.
struct WorkRuntime(Option<tokio::runtime::Runtime>);

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Engine {
    /// Feeds an order from the hub (or a joined worker's poll loop) to the core and executes what
    /// follows.
    fn event(&mut self, event: WorkerEvent) {
        self.events(std::iter::once(event));
    }

    /// Feeds the hub's events to the core in order, then executes what they asked for in one go (one
    /// pass over the actions, one report poll and one gauge update for all of them).
    fn events(&mut self, events: impl IntoIterator<Item = WorkerEvent>) {
        let now = self.clock.now();
        let mut out = Vec::new();
        for event in events {
            match event {
                WorkerEvent::Start(order) => self.slots.handle_order(now, order_of(*order), &mut out),
                WorkerEvent::Abort(task) => self.slots.handle_abort(now, task, &mut out),
                WorkerEvent::AbortAll => self.slots.handle_abort_all(&mut out),
            }
        }
        self.execute(now, out);
    }

    /// Feeds an attempt's end to the core and executes what follows (the next queued attempt starts
    /// from here). Called from the attempt's own task, or by the supervisor for an unsent notice.
    fn ended(&mut self, task: TaskId, token: FencingToken, outcome: Result<Vec<u8>, String>) {
        tracing::trace!(target: "gridkeeper::cycle", node = self.args.node.0, task = task.0, token = token.0, "ended");
        let now = self.clock.now();
        let mut out = Vec::new();
        // Its task has returned (or is gone); the end of one the core stopped is ignored there.
        self.attempts.remove(&(task, token));
        self.slots.on_ended(now, task, token, outcome, &mut out);
        self.execute(now, out);
    }

    /// Executes the core's actions in order, feeding back what executing them tells it, then the next
    /// report batch; then updates the gauges and the timer.
    fn execute(&mut self, now: Millis, mut actions: Vec<Action>) {
        loop {
            // In order; what executing an action asks for comes after the actions already asked for.
            let mut more = Vec::new();
            for action in actions.drain(..) {
                match action {
                    Action::Start(order) => self.start(now, *order, &mut more),
                    Action::Stop { task, token } => {
                        if let Some(attempt) = self.attempts.remove(&(task, token)) {
                            attempt.abort();
                        }
                    }
                    Action::WriteReports(batch) => self.write(batch),
                }
            }
            if more.is_empty() {
                // Polled once every input of this message is in, so one batch carries them all.
                self.slots.poll_reports(now, &mut more);
                if more.is_empty() {
                    break;
                }
            }
            actions = more;
        }
        self.set_gauges();
        self.schedule_tick();
    }

    fn set_gauges(&self) {
        let running = self.slots.running();
        self.args.gauge.set(running as u32);
        self.running_gauge.set(running as f64);
        self.queued_gauge.set(self.slots.queued() as f64);
    }

    /// Starts an attempt's task on the work runtime; an attempt of a kind this node lacks ends at once.
    fn start(&mut self, now: Millis, order: Order, out: &mut Vec<Action>) {
        let Order { task, token, number, spec } = order;
        // Stage events for `benches/cycle.rs`; nothing listens at trace level in a node.
        tracing::trace!(target: "gridkeeper::cycle", node = self.args.node.0, task = task.0, token = token.0, "start");
        self.slots.on_started(now, task, token, unix_millis());
        let Some(runner) = self.args.kinds.runner(&spec.kind) else {
            // Placement only sends kinds this node advertises; a kind removed by a restart lands here.
            let outcome = Err(format!("this node cannot run tasks of kind {}", spec.kind));
            self.slots.on_ended(now, task, token, outcome, out);
            return;
        };
        let info = AttemptInfo { task, number, token, node: self.args.node };
        let mut run = runner.start(&spec.input, spec.encoding, info);
        let mut log = None;
        if let (Some(logs), Some(capture)) = (&self.args.logs, &self.capture) {
            let guard = logs.attempt(logs::AttemptKey { task, number });
            run = Box::pin(tracing::instrument::WithSubscriber::with_subscriber(
                crate::grid::kinds::with_attempt_log(info, guard.log(), run),
                capture.clone(),
            ));
            log = Some(guard);
        }
        let notice = EndNotice { engine: Some(self.this.clone()), supervisor: Some(self.myself.clone()), task, token };
        let attempt = run_attempt(run, log, notice);
        // Spawned under the lock: an attempt that ends at once on another thread waits for it, so its
        // handle is in `attempts` before its end removes it. Spawning never polls the task here.
        let handle = match &self.work {
            Some(work) => work.spawn(attempt),
            None => self.control.spawn(attempt),
        };
        self.attempts.insert((task, token), handle.abort_handle());
    }

    /// Sends a batch of reports; the outcome comes back as [`WorkerMsg::ReportsWritten`].
    fn write(&mut self, batch: Vec<Report>) {
        // At most `REPORT_WRITES_MAX` of these are unfinished; the finished ones go here.
        self.writers.retain(|writer| !writer.is_finished());
        let (link, myself, node) = (self.args.link.clone(), self.myself.clone(), self.args.node.0);
        tracing::trace!(
            target: "gridkeeper::cycle",
            node,
            reports = batch.len(),
            first_end = batch.iter().find(|report| report.outcome.is_some()).map_or(0, |report| report.task.0),
            "report_batch"
        );
        self.writers.push(self.control.spawn(async move {
            let written = write_reports(&link, &batch).await;
            tracing::trace!(target: "gridkeeper::cycle", node, reports = batch.len(), "report_written");
            let _ = myself.send_message(WorkerMsg::ReportsWritten { batch, written });
        }));
    }

    /// Keeps one timer set for the core's earliest deadline.
    fn schedule_tick(&mut self) {
        let Some(deadline) = self.slots.next_deadline() else { return };
        if self.tick.as_ref().is_some_and(|(scheduled, _)| *scheduled <= deadline) {
            return;
        }
        if let Some((_, timer)) = self.tick.take() {
            timer.abort();
        }
        let (myself, at) = (self.myself.clone(), self.clock.instant_at(deadline));
        let timer = self.control.spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = myself.send_message(WorkerMsg::Tick(deadline));
        });
        self.tick = Some((deadline, timer));
    }
}

/// The core's view of an order from the hub or a poll.
fn order_of(order: AttemptOrder) -> Order {
    let AttemptOrder { task, token, number, spec } = order;
    Order { task, token, number, spec }
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
        // Attempts' events go to the node's log as before, and to their attempt's log.
        let capture = args.logs.as_ref().map(|_| logs_capture::capture_default());
        let work_handle = work.as_ref().map(|runtime| runtime.handle().clone());
        let engine = Arc::new_cyclic(|this| {
            Mutex::new(Engine {
                slots: Slots::new(SlotsConfig::new(args.slots)),
                args: args.clone(),
                clock: Clock::start(),
                myself: myself.clone(),
                this: this.clone(),
                work: work_handle,
                control: tokio::runtime::Handle::current(),
                attempts: HashMap::new(),
                tick: None,
                writers: Vec::new(),
                running_gauge: metrics::gauge!("gridkeeper_grid_running"),
                queued_gauge: metrics::gauge!("gridkeeper_grid_worker_queued"),
                capture,
            })
        });
        // Unbounded by type, bounded by use: one order per committed assignment to this node (at most
        // `slots + prefetch` open at once), an abort per ended one, and a re-send of what it holds after a
        // snapshot.
        let (events, mut incoming) = mpsc::unbounded_channel();
        let poller = match &args.link {
            WorkerLink::Local(coordinator) => {
                if let Some(hub) = crate::service::hub::GridHub::of(coordinator) {
                    hub.attach_worker(events);
                }
                None
            }
            WorkerLink::Remote(link) => Some(tokio::spawn(poll_loop(args.node, link.clone(), events))),
        };
        // Orders go straight into the engine (no hop through the supervisor's mailbox), every order
        // that has come in one lock.
        let orders = engine.clone();
        let forwarder = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(EVENTS_PER_LOCK);
            while incoming.recv_many(&mut batch, EVENTS_PER_LOCK).await > 0 {
                lock(&orders).events(batch.drain(..));
            }
        });
        Ok(WorkerState { engine, work: WorkRuntime(work), forwarder, poller })
    }

    async fn handle(
        &self,
        _myself: ActorRef<WorkerMsg>,
        message: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        let mut engine = lock(&state.engine);
        let now = engine.clock.now();
        let mut out = Vec::new();
        match message {
            WorkerMsg::Event(event) => {
                engine.event(event);
                return Ok(());
            }
            WorkerMsg::Ended { task, token, outcome } => {
                engine.ended(task, token, outcome);
                return Ok(());
            }
            WorkerMsg::ReportsWritten { batch, written } => engine.slots.on_reports_written(now, batch, written),
            WorkerMsg::Tick(deadline) => {
                if engine.tick.as_ref().is_some_and(|(scheduled, _)| *scheduled == deadline) {
                    engine.tick = None;
                }
                engine.slots.on_tick(now, &mut out);
            }
        }
        engine.execute(now, out);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<WorkerMsg>,
        _event: SupervisionEvent,
        _state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        // It links no child actor (attempts are tasks that report their own end), so there is nothing
        // to supervise here; ractor's default would stop the worker on any linked actor's exit.
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<WorkerMsg>, state: &mut WorkerState) -> Result<(), ActorProcessingErr> {
        if let Some(poller) = state.poller.take() {
            poller.abort();
        }
        state.forwarder.abort();
        {
            let mut engine = lock(&state.engine);
            if let WorkerLink::Local(coordinator) = &engine.args.link {
                if let Some(hub) = crate::service::hub::GridHub::of(coordinator) {
                    hub.detach_worker();
                }
            }
            for writer in engine.writers.drain(..) {
                writer.abort();
            }
            if let Some((_, timer)) = engine.tick.take() {
                timer.abort();
            }
            for (_, attempt) in engine.attempts.drain() {
                attempt.abort();
            }
        }
        // Inside an async context a runtime cannot block on its own shutdown. Not under the lock: the
        // attempts it drops send their notices.
        drop(std::mem::replace(&mut state.work, WorkRuntime(None)));
        Ok(())
    }
}

/// Tells the worker how an attempt ended, exactly once: with its outcome ([`EndNotice::send`], fed to
/// the engine from the attempt's own task), or, if dropped unsent (its task was aborted, or dropped by
/// a panic outside the guarded run or by the runtime going down), as a failure sent to the supervisor,
/// so no attempt's end is ever lost. A drop never takes the engine's lock: it may run inside a spawn or
/// an abort that holds it.
struct EndNotice {
    engine: Option<Weak<Mutex<Engine>>>,
    supervisor: Option<ActorRef<WorkerMsg>>,
    task: TaskId,
    token: FencingToken,
}

impl EndNotice {
    fn send(mut self, outcome: Result<Vec<u8>, String>) {
        if let Some(engine) = self.engine.take().and_then(|engine| engine.upgrade()) {
            self.supervisor = None;
            lock(&engine).ended(self.task, self.token, outcome);
        } else if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.send_message(WorkerMsg::Ended { task: self.task, token: self.token, outcome });
        }
    }
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            let outcome = Err("the attempt's task ended without an outcome (aborted or torn down)".to_string());
            let _ = supervisor.send_message(WorkerMsg::Ended { task: self.task, token: self.token, outcome });
        }
    }
}

/// One attempt, as a task: runs the task's future once, panics caught, closes its log, then reports.
/// Its timeout is the core's: the supervisor aborts it at the deadline.
async fn run_attempt(run: crate::grid::kinds::AttemptFuture, log: Option<logs::AttemptLogGuard>, notice: EndNotice) {
    let outcome = match AssertUnwindSafe(run).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    // Its log is complete before anyone hears it ended.
    drop(log);
    notice.send(outcome);
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

/// Writes one batch and classifies the outcome for the core.
async fn write_reports(link: &WorkerLink, batch: &[Report]) -> ReportWrite {
    match send_reports(link, batch).await {
        Ok(()) => ReportWrite::Applied,
        Err(ReportError::Retry(reason)) => {
            tracing::debug!(%reason, reports = batch.len(), "report write failed; retrying");
            ReportWrite::Retry
        }
        Err(ReportError::Refused(reason)) => {
            tracing::warn!(%reason, reports = batch.len(), "reports refused");
            ReportWrite::Refused
        }
    }
}

enum ReportError {
    /// Nothing or maybe something was recorded: send again (reports are idempotent).
    Retry(String),
    /// Refused as a whole.
    Refused(String),
}

/// Sends one batch through the worker's port. Local and remote links answer alike (see
/// [`crate::service::Port`]); the error's code decides, never its text.
async fn send_reports(link: &WorkerLink, batch: &[Report]) -> Result<(), ReportError> {
    let port = match link {
        WorkerLink::Local(coordinator) => crate::service::Port::Local(coordinator.clone()),
        WorkerLink::Remote(remote) => crate::service::Port::Remote(remote.report.clone()),
    };
    match port.report(batch.to_vec()).await {
        Ok(_) => Ok(()),
        // Reports are fenced by token, so a batch that may have applied is sent again harmlessly.
        Err(error) if error.is_retryable() || error.code.may_have_applied() => Err(ReportError::Retry(error.message)),
        Err(error) => Err(ReportError::Refused(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ends = mpsc::UnboundedSender<(TaskId, FencingToken, Result<Vec<u8>, String>)>;

    /// Stands in for the supervisor: passes on the ends it hears.
    struct Supervisor;

    impl Actor for Supervisor {
        type Msg = WorkerMsg;
        type State = Ends;
        type Arguments = Ends;

        async fn pre_start(&self, _: ActorRef<WorkerMsg>, ends: Ends) -> Result<Ends, ActorProcessingErr> {
            Ok(ends)
        }

        async fn handle(
            &self,
            _: ActorRef<WorkerMsg>,
            message: WorkerMsg,
            ends: &mut Ends,
        ) -> Result<(), ActorProcessingErr> {
            if let WorkerMsg::Ended { task, token, outcome } = message {
                let _ = ends.send((task, token, outcome));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_attempt_task_reports_its_end_once_whether_it_returns_panics_or_is_aborted() {
        let (ends, mut heard) = mpsc::unbounded_channel();
        let (supervisor, _) = Actor::spawn(None, Supervisor, ends).await.expect("spawn");
        let notice = |task| EndNotice {
            engine: None,
            supervisor: Some(supervisor.clone()),
            task: TaskId(task),
            token: FencingToken(7),
        };
        let wait = Duration::from_secs(10);
        // Ends arrive in order (one mailbox), so a second end of any attempt would come before the next.
        macro_rules! next {
            () => {
                tokio::time::timeout(wait, heard.recv()).await.expect("an end in time").expect("an end")
            };
        }
        // Returns: its outcome.
        tokio::spawn(run_attempt(Box::pin(async { Ok(vec![1]) }), None, notice(1)));
        assert_eq!(next!(), (TaskId(1), FencingToken(7), Ok(vec![1])));
        // Panics: a failure that says so.
        tokio::spawn(run_attempt(Box::pin(async { panic!("boom") }), None, notice(2)));
        assert_eq!(next!(), (TaskId(2), FencingToken(7), Err("panicked: boom".into())));
        // Aborted (stopped by the core, or dropped with its runtime): a failure, which the core ignores
        // for an attempt it no longer runs.
        let stuck = tokio::spawn(run_attempt(Box::pin(std::future::pending()), None, notice(3)));
        stuck.abort();
        let (task, _, outcome) = next!();
        assert_eq!(task, TaskId(3));
        assert!(outcome.is_err_and(|error| error.contains("without an outcome")), "aborted");
        tokio::spawn(run_attempt(Box::pin(async { Ok(Vec::new()) }), None, notice(4)));
        assert_eq!(next!().0, TaskId(4), "no attempt's end was heard twice");
        supervisor.stop(None);
    }

    #[test]
    fn a_full_batch_of_the_largest_results_fits_one_entry() {
        let batch: Vec<Report> = (0..REPORT_BATCH_BYTES_MAX / REPORT_RESULT_BYTES_MAX)
            .map(|_| Report {
                task: TaskId(1),
                token: FencingToken(7),
                started_ms: 0,
                outcome: Some(Ok(vec![1; REPORT_RESULT_BYTES_MAX - 64])),
            })
            .collect();
        assert!(batch.iter().map(reports::report_bytes).sum::<usize>() <= REPORT_BATCH_BYTES_MAX);
        let command = crate::state::Command::App(crate::grid::GridCommand::Report { reports: batch });
        assert!(crate::consensus::request::check_entry_size(&command).is_ok());
    }
}
