//! The actor host (shell): one per node. It owns this node's activations, their bounded mailboxes and
//! the group commit of durable state, and keeps the rules that make an activation the only one:
//!
//! - It handles a message only while its [`HostLease`] holds (renewed by the registration's
//!   keepalive + linearizable stat); once the lease lapses, every activation stops and is forgotten
//!   (their records stay owned by this node: the next call activates again, with a new token).
//! - It activates an orphan only after the [`Handoff`] wait, by its own clock, counted from when it
//!   applied the orphaning entry (or from its own start or the last snapshot install, for one it did
//!   not hear of).
//! - An applied entry that ends one of its ownerships (`actors_ended` naming this node and the
//!   activation's token) stops that activation at once: the grid hub calls [`ActorHost`]'s listener
//!   in the apply step, before any read can see the change.
//! - A durable actor's reply is held until the `ActorCommit` carrying the state it produced is
//!   committed (`commits.rs` decides the grouping); a refused or failed commit stops the activation.
//!
//! An actor handles one message at a time, in mailbox order: each activation has at most one runner,
//! started while its mailbox has messages and ended when it is empty, so an idle activation costs its
//! state and a map entry, no task. A call to an idle actor on this node is handled in the caller's own
//! task ([`ActorHost::submit_inline`]: no hand-off to another thread and back); what queued behind it,
//! or what is left when that caller gives up, goes on in a runner task on the node's runtime.
//!
//! Lock order: the host's table lock is never held while reading or writing through the coordinator
//! (the apply step calls the host with the replicated state locked).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use super::commits::{CommitQueue, Written};
use super::lease::{Handoff, HostLease, HANDOFF_WAIT_MS};
use super::model::{ActorContext, ActorFactory, ActorKinds, ErasedActor, HandleError};
use super::telemetry::{self, Outcome};
use crate::api::{ApiError, ErrorCode};
use crate::clock::{monotonic, Clock, Instant};
use crate::consensus::Coordinator;
use crate::grid::actors::{ActorId, ActorRefusal};
use crate::grid::task::{Encoding, FencingToken};
use crate::grid::{GridCommand, GridEffects, GridOutcome};
use crate::ids::{Millis, NodeId};
use crate::limits::{ACTOR_MAILBOX_MAX, ACTOR_RECENT_REPLIES_MAX, ACTOR_REPLY_BYTES_MAX, ACTOR_STATE_BYTES_MAX};
use crate::registry::STATE_VERSION_ACTORS;
use crate::state::{Command, Outcome as StateOutcome, ReplicatedState};

/// How often the host loop looks at its lease, its commits and idle activations when nothing wakes it.
const HOST_TICK: Duration = Duration::from_millis(super::lease::HOST_TICK_MS);

/// Messages a runner handles before it yields to other tasks.
const RUN_BATCH: usize = 64;

/// Default idle time before an activation is passivated (`--actor-idle-ms`).
pub const ACTOR_IDLE_MS_DEFAULT: u64 = 300_000;

/// Default bound on activations per node (`--actor-activations-max`).
pub const ACTOR_ACTIVATIONS_MAX_DEFAULT: usize = 100_000;

/// `--actor-idle-ms` may be from a tenth of a second (tests, benches) to a day.
pub const ACTOR_IDLE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=86_400_000;

/// Most `--actor-activations-max` may allow: each activation costs memory and a map entry, and ten
/// million idle ones are already gigabytes.
pub const ACTOR_ACTIVATIONS_MAX_CEILING: usize = 10_000_000;

/// The host's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    /// An activation idle this long is released.
    pub idle_ms: u64,
    /// Activations held at once; past it a new one is refused `quota exceeded`.
    pub activations_max: usize,
    /// Simulation only: the rate of the host's clock (its lease, its handoff waits) against the
    /// monotonic clock, to show that the drift bound the handoff wait assumes is enough
    /// (`tests/sim_actors.rs`). The real rate on a node.
    #[doc(hidden)]
    pub clock_rate: crate::consensus::lease::ClockRate,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            idle_ms: ACTOR_IDLE_MS_DEFAULT,
            activations_max: ACTOR_ACTIVATIONS_MAX_DEFAULT,
            clock_rate: crate::consensus::lease::ClockRate::default(),
        }
    }
}

/// Why a host did not answer a call with the actor's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The contract's code (`misdirected`, `overloaded`, `actor failed`, ...).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// With `misdirected`: the owner this host knows of, if any.
    pub owner: Option<NodeId>,
}

impl Refusal {
    /// A refusal of `code`.
    pub fn new(code: ErrorCode, message: impl ToString) -> Refusal {
        Refusal { code, message: message.to_string(), owner: None }
    }

    /// Not this host's actor: `owner` is who owns it, as far as this host knows.
    pub fn misdirected(owner: Option<NodeId>, message: impl ToString) -> Refusal {
        Refusal { code: ErrorCode::Misdirected, message: message.to_string(), owner }
    }

    /// As the contract's error.
    pub fn into_api(self) -> ApiError {
        ApiError::new(self.code, self.message)
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::new(error.code, error.message)
    }
}

/// A host's answer to one call: the reply's bytes (in the call's encoding) or a refusal.
pub type Answer = Result<Vec<u8>, Refusal>;

/// One call as a host takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The actor.
    pub actor: ActorId,
    /// The message, encoded as `encoding` says.
    pub message: Vec<u8>,
    /// How the message (and so the reply) is encoded.
    pub encoding: Encoding,
    /// Makes a retry safe (see `api::actors`).
    pub idempotency_key: Option<String>,
    /// Answered as soon as the message is queued, with an empty reply.
    pub tell: bool,
}

struct Envelope {
    message: Vec<u8>,
    encoding: Encoding,
    key: Option<String>,
    to: Option<oneshot::Sender<Answer>>,
}

/// A reply held until its actor's state is committed.
struct Held {
    answer: Answer,
    to: Option<oneshot::Sender<Answer>>,
}

fn send(to: Option<oneshot::Sender<Answer>>, answer: Answer) {
    telemetry::answered(Outcome::of(answer.as_ref().err().map(|refusal| refusal.code)));
    if let Some(to) = to {
        let _ = to.send(answer);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Proposing its activation; messages queue.
    Activating,
    /// Active: a runner handles its mailbox while it has messages.
    Ready,
    /// Idle, giving its ownership back; messages queue and activate it again afterwards.
    Releasing,
}

struct Activation {
    generation: u64,
    phase: Phase,
    token: FencingToken,
    durable: bool,
    context: Arc<ActorContext>,
    /// `None` while activating, or while its runner holds it.
    actor: Option<Box<dyn ErasedActor>>,
    running: bool,
    mailbox: VecDeque<Envelope>,
    /// Calls handled and committed or in the commit queue, counted from the record's.
    seq: u64,
    /// Replies by idempotency key, newest last (committed ones and those waiting for their commit).
    recent: VecDeque<(String, Vec<u8>)>,
    last_used: Millis,
    handled: u64,
    /// A cluster singleton: never passivated (only released when its node drains).
    singleton: bool,
}

struct Table {
    lease: HostLease,
    handoff: Handoff,
    /// Bumped on every snapshot install: an activation granted across one waits from the floor.
    resets: u64,
    /// Hashed, not ordered: every call looks its actor up several times, and an ordered map compared
    /// whole ids at each of its levels (about 6% of the CPU of 1,000 actors called at random). Keys
    /// come from callers, so the hasher is std's keyed one. Wherever the order shows (stopping them
    /// all, a snapshot's reset, passivation), the ids are sorted first, so a seed still replays.
    activations: HashMap<ActorId, Activation>,
    commits: CommitQueue<Held>,
    depth: usize,
    stopped: bool,
    /// The node drains: no new activation; idle ones are released at once.
    draining: bool,
}

struct Shared {
    node: NodeId,
    coordinator: Coordinator,
    kinds: ActorKinds,
    config: HostConfig,
    clock: Clock,
    table: Mutex<Table>,
    wake: Notify,
    generations: AtomicU64,
    /// The node's runtime: activations and commits run there, whichever runtime a caller is on.
    runtime: tokio::runtime::Handle,
}

/// This node's actor host. Cheap to clone.
#[derive(Clone)]
pub struct ActorHost {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ActorHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorHost").field("node", &self.shared.node).finish_non_exhaustive()
    }
}

fn answer_all(table: &mut Table, envelopes: impl IntoIterator<Item = Envelope>, refusal: &Refusal) {
    for envelope in envelopes {
        table.depth = table.depth.saturating_sub(1);
        send(envelope.to, Err(refusal.clone()));
    }
}

impl Table {
    /// Stops `actor`'s activation: its queued messages and its held, not yet sent, replies get
    /// `refusal`; a runner holding it finds it gone. A commit already in flight answers its own.
    fn stop(&mut self, actor: &ActorId, refusal: &Refusal) {
        if let Some(activation) = self.activations.remove(actor) {
            answer_all(self, activation.mailbox, refusal);
        }
        for held in self.commits.drop_ready(actor) {
            send(held.to, Err(refusal.clone()));
        }
    }

    /// [`Table::stop`] if `actor`'s activation is the one with `token`.
    fn stop_token(&mut self, actor: &ActorId, token: FencingToken, refusal: &Refusal) {
        if self.activations.get(actor).is_some_and(|activation| activation.token == token) {
            self.stop(actor, refusal);
        }
    }

    fn stop_all(&mut self, refusal: &Refusal) {
        let mut actors: Vec<ActorId> = self.activations.keys().cloned().collect();
        actors.sort_unstable();
        for actor in actors {
            self.stop(&actor, refusal);
        }
    }

    fn current(&mut self, actor: &ActorId, generation: u64) -> Option<&mut Activation> {
        self.activations.get_mut(actor).filter(|activation| activation.generation == generation)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `at` on this host's clock, rounded down (a lease never starts later than its keepalive).
    fn millis_of(&self, at: Instant) -> Millis {
        let ago = monotonic().saturating_duration_since(at).as_millis() as u64;
        Millis(self.clock.now().0.saturating_sub(ago.saturating_add(1)))
    }
}

impl ActorHost {
    /// A host for `coordinator`'s node, running `kinds`; it hears applied entries and its lease
    /// through the node's grid hub once [`ActorHost::start`] runs.
    pub fn new(coordinator: Coordinator, kinds: ActorKinds, config: HostConfig) -> ActorHost {
        telemetry::register(coordinator.node());
        let clock = Clock::start_at_rate(config.clock_rate.ppm());
        ActorHost {
            shared: Arc::new(Shared {
                node: coordinator.node(),
                coordinator,
                kinds,
                config,
                table: Mutex::new(Table {
                    lease: HostLease::new(),
                    handoff: Handoff::new(Millis(0)),
                    resets: 0,
                    activations: HashMap::new(),
                    commits: CommitQueue::new(),
                    depth: 0,
                    stopped: false,
                    draining: false,
                }),
                clock,
                wake: Notify::new(),
                generations: AtomicU64::new(1),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// Runs the host's loop (commits, lease expiry, passivation) until [`ActorHost::stop`]. Call it
    /// once the host hears applied entries (its service attached to the grid hub): the handoff floor is
    /// taken now, so every orphaning it did not hear was applied before.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let started = self.shared.clock.now();
        self.shared.lock().handoff = Handoff::new(started);
        self.shared.runtime.spawn(run(self.shared.clone()))
    }

    /// Stops every activation (their callers told `misdirected`) and the loop.
    pub fn stop(&self) {
        let mut table = self.shared.lock();
        table.stopped = true;
        table.stop_all(&Refusal::misdirected(None, format!("node {} stopped hosting actors", self.shared.node)));
        drop(table);
        self.shared.wake.notify_one();
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// The kinds this host runs.
    pub fn kinds(&self) -> &ActorKinds {
        &self.shared.kinds
    }

    /// Messages handled by each activation this host holds, for listings.
    pub fn handled(&self) -> HashMap<ActorId, u64> {
        let table = self.shared.lock();
        table.activations.iter().map(|(actor, activation)| (actor.clone(), activation.handled)).collect()
    }

    /// Activations held.
    pub fn activations(&self) -> usize {
        self.shared.lock().activations.len()
    }

    /// Takes `call`: queues it on its activation (activating the actor first if this node does not
    /// hold it). The receiver answers once it is handled (and, for a durable actor, committed); a
    /// tell's answers as soon as it is queued. The activation's runner, if this call starts one, runs
    /// on the node's runtime.
    ///
    /// # Errors
    /// `misdirected` (this host's lease does not hold, another node owns the actor, this node does not
    /// run the kind), `overloaded` (mailbox full), `quota exceeded` (activation bound).
    pub fn submit(&self, call: Call) -> Result<oneshot::Receiver<Answer>, Refusal> {
        // Dropped undriven, its runner (if any) is spawned on the node's runtime.
        let Submitted { receiver, handover } = self.submit_inline(call)?;
        drop(handover);
        Ok(receiver)
    }

    /// As [`ActorHost::submit`], but a runner this call starts is handed to the caller, who drives it
    /// in its own task with [`Submitted::answer`] (no hand-off to another thread and back when the
    /// actor is idle; whatever is left of the runner when the answer comes, or when the caller gives
    /// up, goes on on the node's runtime).
    ///
    /// # Errors
    /// As [`ActorHost::submit`].
    pub fn submit_inline(&self, call: Call) -> Result<Submitted, Refusal> {
        let shared = &self.shared;
        let (sender, receiver) = oneshot::channel();
        let (to, told) = if call.tell { (None, Some(sender)) } else { (Some(sender), None) };
        let envelope = Envelope { message: call.message, encoding: call.encoding, key: call.idempotency_key, to };
        let now = shared.clock.now();
        let mut table = shared.lock();
        if table.stopped {
            return Err(Refusal::misdirected(None, format!("node {} hosts no actors now", shared.node)));
        }
        if !table.lease.valid(now) {
            return Err(Refusal::misdirected(None, format!("node {} does not hold its host lease", shared.node)));
        }
        let mut runner: Option<Runner> = None;
        if let Some(activation) = table.activations.get_mut(&call.actor) {
            if activation.mailbox.len() >= ACTOR_MAILBOX_MAX {
                telemetry::answered(Outcome::Refused);
                return Err(Refusal::new(
                    ErrorCode::Overloaded,
                    format!("the mailbox of {} is full (ACTOR_MAILBOX_MAX = {ACTOR_MAILBOX_MAX})", call.actor),
                ));
            }
            activation.mailbox.push_back(envelope);
            let start = activation.phase == Phase::Ready && !activation.running;
            if start {
                activation.running = true;
            }
            let generation = activation.generation;
            table.depth += 1;
            drop(table);
            if start {
                runner = Some(Box::pin(run_first(shared.clone(), call.actor, generation)));
            }
        } else {
            begin(shared, table, call.actor, VecDeque::from([envelope]), now)?;
        }
        if let Some(told) = told {
            let _ = told.send(Ok(Vec::new()));
            // A tell is answered once queued: its caller does not wait for the handling.
            if let Some(runner) = runner.take() {
                shared.runtime.spawn(runner);
            }
        }
        Ok(Submitted { receiver, handover: Handover { runner, runtime: shared.runtime.clone() } })
    }
}

/// An activation's runner, driven by whoever holds it.
type Runner = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A call taken by [`ActorHost::submit_inline`]: its answer, and the runner its caller drives (dropped
/// undriven, the runner goes on on the node's runtime).
pub struct Submitted {
    receiver: oneshot::Receiver<Answer>,
    handover: Handover,
}

/// Spawns what is left of a runner on the node's runtime when dropped before it finished.
struct Handover {
    runner: Option<Runner>,
    runtime: tokio::runtime::Handle,
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some(runner) = self.runner.take() {
            self.runtime.spawn(runner);
        }
    }
}

impl Submitted {
    /// Waits for the answer, first driving the runner (if this call started one): it handles this
    /// call's message (the mailbox was empty), and leaves whatever was queued meanwhile to a runner on
    /// the node's runtime. `Err` if the activation stopped before it answered.
    ///
    /// # Cancel safety
    /// Cancel safe: a runner not finished when this future is dropped goes on on the node's runtime,
    /// so the mailbox is never left without one.
    pub async fn answer(self) -> Result<Answer, oneshot::error::RecvError> {
        let Submitted { receiver, mut handover } = self;
        if let Some(runner) = handover.runner.as_mut() {
            runner.await;
            handover.runner = None;
        }
        receiver.await
    }
}

/// Starts activating `actor` here with `mailbox` queued (the table lock is given up before the
/// activation runs).
fn begin(
    shared: &Arc<Shared>,
    mut table: MutexGuard<'_, Table>,
    actor: ActorId,
    mailbox: VecDeque<Envelope>,
    now: Millis,
) -> Result<(), Refusal> {
    let Some(factory) = shared.kinds.factory(&actor.kind) else {
        return Err(Refusal::misdirected(
            None,
            format!("node {} does not host actor kind {:?}", shared.node, actor.kind),
        ));
    };
    if table.draining {
        return Err(Refusal::misdirected(
            None,
            format!("node {} is draining: it takes no new activation", shared.node),
        ));
    }
    if table.activations.len() >= shared.config.activations_max {
        telemetry::answered(Outcome::Refused);
        return Err(Refusal::new(
            ErrorCode::QuotaExceeded,
            format!(
                "node {} holds its most activations ({}, --actor-activations-max)",
                shared.node, shared.config.activations_max
            ),
        ));
    }
    let generation = shared.generations.fetch_add(1, Ordering::Relaxed);
    let context = Arc::new(ActorContext { key: actor.key.clone(), node: shared.node, token: FencingToken(0) });
    table.depth += mailbox.len();
    table.activations.insert(
        actor.clone(),
        Activation {
            generation,
            phase: Phase::Activating,
            token: FencingToken(0),
            durable: factory.durable(),
            context,
            actor: None,
            running: false,
            mailbox,
            seq: 0,
            recent: VecDeque::new(),
            last_used: now,
            handled: 0,
            singleton: false,
        },
    );
    drop(table);
    shared.runtime.spawn(activate(shared.clone(), actor, generation, factory));
    Ok(())
}

impl ActorHost {
    /// Of `orphans`, those whose handoff wait has passed here now: no activation of the node that lost
    /// them can still handle a message (see `lease.rs`), so their records may go.
    pub fn handed_off(&self, orphans: Vec<(ActorId, u64)>) -> Vec<(ActorId, u64)> {
        let now = self.shared.clock.now();
        let table = self.shared.lock();
        orphans.into_iter().filter(|(actor, _)| table.handoff.may_activate(actor, now)).collect()
    }

    /// Activates `actor` here without a message (a cluster singleton placed on this node), unless it
    /// is active here already.
    ///
    /// # Errors
    /// As [`ActorHost::submit`] for a new activation.
    pub fn ensure(&self, actor: &ActorId) -> Result<(), Refusal> {
        let now = self.shared.clock.now();
        let table = self.shared.lock();
        if table.stopped || !table.lease.valid(now) {
            return Err(Refusal::misdirected(None, format!("node {} hosts no actors now", self.shared.node)));
        }
        if table.activations.contains_key(actor) {
            return Ok(());
        }
        begin(&self.shared, table, actor.clone(), VecDeque::new(), now)
    }

    /// Whether this node drains: it takes no new activation and releases its idle ones at once, so
    /// the next call activates them elsewhere.
    pub fn set_draining(&self, draining: bool) {
        let changed = {
            let mut table = self.shared.lock();
            std::mem::replace(&mut table.draining, draining) != draining
        };
        if changed && draining {
            passivate_idle(&self.shared);
        }
    }
}

/// What the host hears through the grid hub (its service is the hub's actor listener).
impl ActorHost {
    /// An applied entry's effects (called in the apply step, the state locked: it never blocks):
    /// orphanings start their handoff waits, and an ended ownership of this node stops its activation.
    pub fn on_applied(&self, effects: &GridEffects, state: &ReplicatedState) {
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut table = shared.lock();
        for actor in &effects.actors_orphaned {
            table.handoff.orphaned(actor.clone(), now);
        }
        for (actor, node, token) in &effects.actors_ended {
            if *node != shared.node {
                continue;
            }
            let ends = table
                .activations
                .get(actor)
                .is_some_and(|activation| activation.token == *token && activation.phase == Phase::Ready);
            if ends {
                let owner = state.actor(actor).and_then(|record| record.node);
                let refusal =
                    Refusal::misdirected(owner, format!("{actor} is no longer hosted by node {}", shared.node));
                table.stop(actor, &refusal);
            }
        }
    }

    /// The state was replaced by a snapshot: every handoff wait starts again, and activations the
    /// snapshot does not show as this node's stop.
    pub fn on_reset(&self, state: &ReplicatedState) {
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut table = shared.lock();
        table.handoff.reset(now);
        table.resets += 1;
        let mut ended: Vec<(ActorId, Option<NodeId>)> = table
            .activations
            .iter()
            .filter(|(_, activation)| activation.phase == Phase::Ready)
            .filter_map(|(actor, activation)| {
                let record = state.actor(actor);
                let mine =
                    record.is_some_and(|record| record.node == Some(shared.node) && record.token == activation.token);
                (!mine).then(|| (actor.clone(), record.and_then(|record| record.node)))
            })
            .collect();
        ended.sort_unstable();
        for (actor, owner) in ended {
            table.stop(&actor, &Refusal::misdirected(owner, format!("{actor} is no longer hosted here")));
        }
    }

    /// A keepalive sent at `sent_at` was confirmed (renews the lease), or (`None`) the registration
    /// was lost (every activation stops).
    pub fn on_lease(&self, sent_at: Option<Instant>) {
        let shared = &self.shared;
        let mut table = shared.lock();
        match sent_at {
            Some(at) => {
                let at = shared.millis_of(at);
                table.lease.renewed(at);
            }
            None => {
                table.lease.lost();
                let refusal = Refusal::misdirected(None, format!("node {} lost its registration", shared.node));
                table.stop_all(&refusal);
            }
        }
    }
}

/// The refusal for an activation the log refused.
fn refused(actor: &ActorId, node: NodeId, owner: Option<NodeId>, reason: ActorRefusal) -> Refusal {
    match reason {
        ActorRefusal::Owned | ActorRefusal::Stale => {
            Refusal::misdirected(owner, format!("{actor} is hosted elsewhere"))
        }
        ActorRefusal::NotRegistered => Refusal::misdirected(owner, format!("node {node} is not registered")),
        ActorRefusal::TooLarge => Refusal::new(ErrorCode::TooLarge, format!("{actor} exceeds an actor bound")),
        ActorRefusal::TooMany => Refusal::new(
            ErrorCode::QuotaExceeded,
            "the cluster holds its most actor records (ACTOR_RECORDS_MAX) or state bytes",
        ),
        ActorRefusal::NotVersion => Refusal::new(ErrorCode::Unavailable, "a voter runs an older build"),
    }
}

/// What a granted activation starts from.
struct Granted {
    token: FencingToken,
    actor: Box<dyn ErasedActor>,
    seq: u64,
    recent: Vec<(String, Vec<u8>)>,
    moved: bool,
    singleton: bool,
}

/// Waits until `actor` may be activated here, by the handoff rule (`floor`: count unknown orphans from
/// the floor too).
async fn handoff_wait(shared: &Shared, actor: &ActorId, resets_seen: Option<u64>) {
    // Each wait is at most HANDOFF_WAIT_MS, and each round either passes or sleeps what is left.
    for _ in 0..4 {
        let left = {
            let table = shared.lock();
            let now = shared.clock.now();
            match resets_seen {
                Some(seen) if seen == table.resets && !table.handoff.knows(actor) => None,
                _ => table.handoff.wait_left(actor, now),
            }
        };
        match left {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms.min(HANDOFF_WAIT_MS))).await,
            None => return,
        }
    }
}

async fn grant(shared: &Shared, actor: &ActorId, factory: &dyn ActorFactory) -> Result<Granted, Refusal> {
    if !crate::service::registry::cluster_applies(&shared.coordinator, STATE_VERSION_ACTORS) {
        return Err(Refusal::new(
            ErrorCode::Unavailable,
            "actors need every voter on a newer build (a voter runs an older build)",
        ));
    }
    let record = shared
        .coordinator
        .read_state(|state| state.actor(actor).map(|record| (record.node, record.orphaned_zxid, record.singleton)));
    let singleton = record.is_some_and(|(_, _, singleton)| singleton);
    let resets_seen = shared.lock().resets;
    let moved = match record {
        Some((Some(owner), _, _)) if owner != shared.node => {
            return Err(Refusal::misdirected(Some(owner), format!("{actor} is hosted by node {owner}")));
        }
        Some((None, orphaned, _)) if orphaned > 0 => {
            handoff_wait(shared, actor, None).await;
            true
        }
        _ => false,
    };
    let command = GridCommand::ActorActivate { actor: actor.clone(), node: shared.node, durable: factory.durable() };
    let outcome = match shared.coordinator.write_at(Command::App(command)).await {
        Ok((Ok(StateOutcome::App(outcome)), _)) => outcome,
        Ok((Ok(other), _)) => return Err(ApiError::unexpected(other).into()),
        Ok((Err(error), _)) => return Err(ApiError::from(error).into()),
        Err(error) => return Err(ApiError::from(error).into()),
    };
    let (token, state, seq, recent) = match outcome {
        GridOutcome::ActorActivated { token, state, seq, recent } => (token, state, seq, recent),
        GridOutcome::ActorRefused { owner, reason } => return Err(refused(actor, shared.node, owner, reason)),
        other => return Err(ApiError::unexpected(other).into()),
    };
    // An orphaning applied here while the activation was proposed (or a snapshot installed) still
    // holds it back: messages wait for the handoff.
    handoff_wait(shared, actor, Some(resets_seen)).await;
    let still = shared.coordinator.read_state(|state| {
        state.actor(actor).is_some_and(|record| record.node == Some(shared.node) && record.token == token)
    });
    if !still {
        return Err(Refusal::misdirected(None, format!("{actor}'s activation here ended at once")));
    }
    let restored = (seq > 0 || !state.is_empty()).then_some(state.as_slice());
    match factory.activate(&actor.key, restored) {
        Ok(activation) => Ok(Granted { token, actor: activation, seq, recent, moved, singleton }),
        Err(error) => {
            release(shared, actor, token).await;
            Err(Refusal::new(ErrorCode::ActorFailed, format!("{actor} did not activate: {error}")))
        }
    }
}

/// Proposes giving `actor` (activation `token`) back; whatever the outcome, this host no longer
/// handles it (a refused release means the ownership had ended already).
async fn release(shared: &Shared, actor: &ActorId, token: FencingToken) {
    let command = GridCommand::ActorRelease { actor: actor.clone(), token };
    if let Err(error) = crate::service::tasks::write(&shared.coordinator, command).await {
        tracing::debug!(node = %shared.node, %actor, %error, "an actor's release failed; its registration's end frees it");
    }
}

/// Activates `actor` for the activation `generation`, then starts its runner.
async fn activate(shared: Arc<Shared>, actor: ActorId, generation: u64, factory: Arc<dyn ActorFactory>) {
    let granted = grant(&shared, &actor, factory.as_ref()).await;
    let mut granted = match granted {
        Ok(granted) => granted,
        Err(refusal) => {
            let mut table = shared.lock();
            if table.current(&actor, generation).is_some() {
                table.stop(&actor, &refusal);
            }
            return;
        }
    };
    let context = Arc::new(ActorContext { key: actor.key.clone(), node: shared.node, token: granted.token });
    granted.actor.on_start(&context).await;
    let (token, moved) = (granted.token, granted.moved);
    let start = {
        let mut table = shared.lock();
        match table.current(&actor, generation) {
            Some(activation) => {
                activation.phase = Phase::Ready;
                activation.token = granted.token;
                activation.context = context;
                activation.actor = Some(granted.actor);
                activation.seq = granted.seq;
                activation.recent = granted.recent.into();
                activation.singleton = granted.singleton;
                let start = !activation.mailbox.is_empty();
                activation.running = start;
                Some(start)
            }
            None => None,
        }
    };
    let Some(start) = start else {
        // Stopped while it was activating (lease lapsed, host stopped): give the ownership back.
        release(&shared, &actor, token).await;
        return;
    };
    telemetry::activated(moved);
    tracing::debug!(node = %shared.node, %actor, token = token.0, "actor activated");
    if start {
        shared.runtime.clone().spawn(run_mailbox(shared, actor, generation));
    }
}

/// What a runner takes out of the table for one message.
enum Next {
    Handle(Envelope, Box<dyn ErasedActor>, Arc<ActorContext>, bool),
    Done,
}

fn next_message(shared: &Shared, actor: &ActorId, generation: u64) -> Next {
    let now = shared.clock.now();
    let mut table = shared.lock();
    if !table.lease.valid(now) {
        let refusal = Refusal::misdirected(None, format!("node {}'s host lease lapsed", shared.node));
        table.stop_all(&refusal);
        return Next::Done;
    }
    loop {
        let table = &mut *table;
        // By field, not `current`: the activation stays borrowed while `depth` and `commits` change.
        let Some(activation) = table.activations.get_mut(actor).filter(|found| found.generation == generation) else {
            return Next::Done;
        };
        let Some(envelope) = activation.mailbox.pop_front() else {
            activation.running = false;
            return Next::Done;
        };
        table.depth = table.depth.saturating_sub(1);
        activation.last_used = now;
        let recorded = envelope.key.as_ref().and_then(|key| {
            activation.recent.iter().rev().find(|(kept, _)| kept == key).map(|(_, reply)| reply.clone())
        });
        if let Some(reply) = recorded {
            // A retried call: the recorded reply, once what produced it is committed.
            let held = Held { answer: Ok(reply), to: envelope.to };
            if let Err(held) = table.commits.hold(actor, held) {
                send(held.to, held.answer);
            }
            continue;
        }
        let durable = activation.durable;
        let Some(handler) = activation.actor.take() else {
            // Not ready (cannot happen while its runner runs): put it back and stop.
            activation.mailbox.push_front(envelope);
            activation.running = false;
            table.depth += 1;
            return Next::Done;
        };
        return Next::Handle(envelope, handler, activation.context.clone(), durable);
    }
}

/// Handles `actor`'s mailbox, one message at a time, until it is empty or the activation stops.
async fn run_mailbox(shared: Arc<Shared>, actor: ActorId, generation: u64) {
    let mut handled = 0;
    while step(&shared, &actor, generation).await {
        handled += 1;
        if handled % RUN_BATCH == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// A runner its caller drives ([`Submitted::answer`]): handles the next message (the caller's), then
/// ends if the mailbox is empty, or leaves the rest to a runner on the node's runtime.
async fn run_first(shared: Arc<Shared>, actor: ActorId, generation: u64) {
    if step(&shared, &actor, generation).await && more_queued(&shared, &actor, generation) {
        shared.runtime.clone().spawn(run_mailbox(shared, actor, generation));
    }
}

/// Whether the activation's mailbox has messages (its runner goes on); if not, it has no runner now.
fn more_queued(shared: &Shared, actor: &ActorId, generation: u64) -> bool {
    let mut table = shared.lock();
    match table.current(actor, generation) {
        Some(activation) if activation.running && !activation.mailbox.is_empty() => true,
        Some(activation) => {
            activation.running = false;
            false
        }
        None => false,
    }
}

/// Handles the next message of `actor`'s mailbox: `false` if there was none or the activation
/// stopped (the runner ends).
async fn step(shared: &Arc<Shared>, actor: &ActorId, generation: u64) -> bool {
    let (envelope, mut handler, context, durable) = match next_message(shared, actor, generation) {
        Next::Handle(envelope, handler, context, durable) => (envelope, handler, context, durable),
        Next::Done => return false,
    };
    let handling =
        std::panic::AssertUnwindSafe(handler.handle(&envelope.message, envelope.encoding, &context)).catch_unwind();
    let Some(outcome) = within_lease(shared, handling).await else {
        // The lease lapsed mid-message: the handler is dropped at its await point, before another
        // node may activate the actor (the handoff wait outlasts the lease), and the activation
        // stops; what it did is not committed.
        lapsed(shared, envelope);
        return false;
    };
    // A durable actor's snapshot, taken before the table is locked (user code runs unlocked).
    let snapshot = match &outcome {
        Ok(Ok(_)) | Ok(Err(HandleError::Failed(_))) if durable => Some(handler.snapshot()),
        _ => None,
    };
    after_handle(shared, actor, generation, envelope, handler, outcome, snapshot);
    true
}

type Handled = Result<Result<Vec<u8>, HandleError>, Box<dyn std::any::Any + Send>>;

/// Runs `handling` while this host's lease holds: it is dropped (`None`) once the lease's end passes
/// unrenewed, so no handler of this host still runs when another node may activate its actor. The end
/// is looked at again whenever it comes, since keepalives renew it meanwhile. A handler that computes
/// without awaiting cannot be stopped between its awaits (documented on `GridActor::handle`).
async fn within_lease<F: std::future::Future>(shared: &Shared, handling: F) -> Option<F::Output> {
    let mut handling = std::pin::pin!(handling);
    // Most handlers finish without waiting: no timer for them.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(handling.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(output) = first {
        return Some(output);
    }
    loop {
        let end = {
            let now = shared.clock.now();
            let table = shared.lock();
            if !table.lease.valid(now) {
                return None;
            }
            table.lease.expires_at()
        };
        let end = end?;
        tokio::select! {
            biased;
            output = &mut handling => return Some(output),
            () = tokio::time::sleep_until(shared.clock.instant_at(end)) => {}
        }
    }
}

/// A message whose handling the lease's end cut short: every activation stops, its caller hears the
/// outcome is unknown.
fn lapsed(shared: &Shared, envelope: Envelope) {
    let mut table = shared.lock();
    let refusal = Refusal::misdirected(None, format!("node {}'s host lease lapsed", shared.node));
    table.stop_all(&refusal);
    drop(table);
    send(envelope.to, Err(Refusal::new(ErrorCode::OutcomeUnknown, "the host lease lapsed while the call was handled")));
}

fn after_handle(
    shared: &Arc<Shared>,
    actor: &ActorId,
    generation: u64,
    envelope: Envelope,
    handler: Box<dyn ErasedActor>,
    outcome: Handled,
    snapshot: Option<Result<Vec<u8>, super::model::ActorError>>,
) {
    let now = shared.clock.now();
    let mut table = shared.lock();
    let lease_held = table.lease.valid(now);
    let Some(activation) = table.current(actor, generation) else {
        // Stopped while the message was handled: whatever it did is not committed here.
        drop(table);
        send(
            envelope.to,
            Err(Refusal::new(
                ErrorCode::OutcomeUnknown,
                format!("{actor}'s activation stopped while it handled the call"),
            )),
        );
        return;
    };
    if !lease_held {
        activation.running = false;
        let refusal = Refusal::misdirected(None, format!("node {}'s host lease lapsed", shared.node));
        table.stop_all(&refusal);
        drop(table);
        send(
            envelope.to,
            Err(Refusal::new(ErrorCode::OutcomeUnknown, "the host lease lapsed while the call was handled")),
        );
        return;
    }
    let answer: Answer = match outcome {
        Err(_) => {
            activation.running = false;
            let refusal = Refusal::misdirected(None, format!("{actor}'s activation stopped after a panic"));
            let token = activation.token;
            table.stop(actor, &refusal);
            drop(table);
            send(
                envelope.to,
                Err(Refusal::new(ErrorCode::ActorFailed, format!("{actor} panicked handling the message"))),
            );
            let shared = shared.clone();
            let actor = actor.clone();
            shared.runtime.clone().spawn(async move { release(&shared, &actor, token).await });
            return;
        }
        Ok(Err(HandleError::BadMessage { kind, reason })) => {
            // Nothing was handled: no state to commit.
            activation.actor = Some(handler);
            drop(table);
            send(
                envelope.to,
                Err(Refusal::new(ErrorCode::BadArguments, format!("bad message for actor kind {kind}: {reason}"))),
            );
            return;
        }
        Ok(Err(HandleError::Failed(reason))) => Err(Refusal::new(ErrorCode::ActorFailed, reason)),
        Ok(Ok(reply)) if reply.len() > ACTOR_REPLY_BYTES_MAX => Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("a reply of {} bytes exceeds ACTOR_REPLY_BYTES_MAX ({ACTOR_REPLY_BYTES_MAX})", reply.len()),
        )),
        Ok(Ok(reply)) => Ok(reply),
    };
    activation.handled += 1;
    activation.last_used = now;
    let recorded = match (&envelope.key, &answer) {
        (Some(key), Ok(reply)) => {
            activation.recent.retain(|(kept, _)| kept != key);
            activation.recent.push_back((key.clone(), reply.clone()));
            while activation.recent.len() > ACTOR_RECENT_REPLIES_MAX {
                activation.recent.pop_front();
            }
            Some((key.clone(), reply.clone()))
        }
        _ => None,
    };
    let Some(snapshot) = snapshot else {
        // Volatile: answered at once.
        activation.actor = Some(handler);
        drop(table);
        send(envelope.to, answer);
        return;
    };
    let state = match snapshot {
        Ok(state) if state.len() <= ACTOR_STATE_BYTES_MAX => state,
        failed => {
            let reason = match failed {
                Ok(state) => {
                    format!("a state of {} bytes exceeds ACTOR_STATE_BYTES_MAX ({ACTOR_STATE_BYTES_MAX})", state.len())
                }
                Err(error) => format!("its snapshot failed: {error}"),
            };
            activation.running = false;
            let token = activation.token;
            table.stop(actor, &Refusal::misdirected(None, format!("{actor} stopped: {reason}")));
            drop(table);
            send(envelope.to, Err(Refusal::new(ErrorCode::ActorFailed, format!("{actor} stopped: {reason}"))));
            let (shared, actor) = (shared.clone(), actor.clone());
            shared.runtime.clone().spawn(async move { release(&shared, &actor, token).await });
            return;
        }
    };
    activation.seq += 1;
    activation.actor = Some(handler);
    let (token, seq) = (activation.token, activation.seq);
    table.commits.on_handled(actor, token, seq, state, recorded, Held { answer, to: envelope.to });
    drop(table);
    shared.wake.notify_one();
}

/// The host's loop: writes ready commits, stops everything when the lease lapses, passivates idle
/// activations, and exports its gauges.
async fn run(shared: Arc<Shared>) {
    let scan_every = Duration::from_millis((shared.config.idle_ms / 4).clamp(10, 1_000));
    let mut last_scan = monotonic();
    let node_label = telemetry::node_label(shared.node);
    loop {
        let writes = {
            let now = shared.clock.now();
            let mut table = shared.lock();
            if table.stopped {
                return;
            }
            let mut writes = Vec::new();
            if table.lease.valid(now) {
                while let Some(write) = table.commits.poll_write() {
                    writes.push(write);
                }
            } else if !table.activations.is_empty() {
                let refusal = Refusal::misdirected(None, format!("node {}'s host lease lapsed", shared.node));
                table.stop_all(&refusal);
            }
            telemetry::gauges(&node_label, table.activations.len(), table.depth);
            writes
        };
        for (batch, commits) in writes {
            shared.runtime.spawn(write_commits(shared.clone(), batch, commits));
        }
        if last_scan.elapsed() >= scan_every {
            last_scan = monotonic();
            passivate_idle(&shared);
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(HOST_TICK) => {}
        }
    }
}

async fn write_commits(shared: Arc<Shared>, batch: u64, commits: Vec<crate::grid::actors::ActorCommit>) {
    let result = crate::service::tasks::write(&shared.coordinator, GridCommand::ActorCommit { commits }).await;
    let mut table = shared.lock();
    let (written, failure) = match result {
        Ok(GridOutcome::ActorsCommitted { refused }) => (table.commits.on_written(batch, &refused), None),
        Ok(other) => (table.commits.on_failed(batch), Some(ApiError::unexpected(other))),
        Err(error) => (table.commits.on_failed(batch), Some(error)),
    };
    let Written { released, refused, failed } = written;
    for held in released {
        send(held.to, held.answer);
    }
    for (actor, token, waiters) in refused {
        let refusal = Refusal::misdirected(None, format!("{actor}'s commit was refused: its activation here ended"));
        table.stop_token(&actor, token, &refusal);
        for held in waiters {
            send(held.to, Err(refusal.clone()));
        }
    }
    if !failed.is_empty() {
        let error = failure.unwrap_or_else(|| ApiError::new(ErrorCode::OutcomeUnknown, "the commit failed"));
        let code = if error.code.may_have_applied() || error.code == ErrorCode::Internal {
            ErrorCode::OutcomeUnknown
        } else {
            error.code
        };
        let refusal = Refusal::new(code, format!("the actor's commit failed: {}", error.message));
        for (actor, token, waiters) in failed {
            table.stop_token(&actor, token, &Refusal::misdirected(None, format!("{actor} stopped: its commit failed")));
            for held in waiters {
                send(held.to, Err(refusal.clone()));
            }
        }
    }
    drop(table);
    shared.wake.notify_one();
}

/// Releases activations idle for `idle_ms` with nothing queued or uncommitted.
fn passivate_idle(shared: &Arc<Shared>) {
    let now = shared.clock.now();
    let mut table = shared.lock();
    let table = &mut *table;
    let idle_ms = if table.draining { 0 } else { shared.config.idle_ms };
    let mut releasing = Vec::new();
    for (actor, activation) in table.activations.iter_mut() {
        let idle = activation.phase == Phase::Ready
            && (!activation.singleton || table.draining)
            && !activation.running
            && activation.mailbox.is_empty()
            && now.since(activation.last_used) >= idle_ms
            && !table.commits.is_pending(actor);
        if idle {
            activation.phase = Phase::Releasing;
            releasing.push((actor.clone(), activation.generation, activation.token));
        }
    }
    releasing.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (actor, generation, token) in releasing {
        let shared = shared.clone();
        shared.runtime.clone().spawn(async move {
            release(&shared, &actor, token).await;
            telemetry::passivated();
            let again = {
                let mut table = shared.lock();
                match table.current(&actor, generation) {
                    None => false,
                    Some(activation) if activation.mailbox.is_empty() => {
                        table.activations.remove(&actor);
                        false
                    }
                    Some(activation) => {
                        // Messages came meanwhile: activate it again (with a new token) for them.
                        activation.phase = Phase::Activating;
                        activation.actor = None;
                        true
                    }
                }
            };
            if !again {
                return;
            }
            if let Some(factory) = shared.kinds.factory(&actor.kind) {
                activate(shared.clone(), actor, generation, factory).await;
            }
        });
    }
}
