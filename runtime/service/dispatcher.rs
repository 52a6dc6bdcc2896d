//! The leader's dispatcher: whenever the task table or the set of nodes changes (and on a short
//! tick, for delayed tasks and timeouts), it plans assignments and proposes them as `Assign` entries,
//! moves queued work from overloaded nodes to idle ones (work stealing, `Reassign` entries), and ends
//! overdue attempts. It runs on every node and acts only while its node leads, so a new leader
//! continues from the committed table with nothing to hand over.
//!
//! It also shortens failure detection: when the mesh declares a registered node down, the leader
//! expires that node's session at once (200 ms of silence by default) rather than waiting out its
//! session timeout; the expiry re-queues the node's attempts in the same committed step. A node that
//! becomes leader does the same at once for every peer it saw go down and has not heard since (one
//! that died with the old leader).
//!
//! Invariant: up to [`ASSIGN_IN_FLIGHT_MAX`] `Assign` proposals are in flight at once, and each plan is
//! made against the committed table plus every assignment still in flight (the hub's `InFlight`: their
//! tasks left out, their nodes' loads raised; placed submissions count there too, see
//! `GridHub::shape`), so no plan double-books a task or a slot. A plan is counted in flight in the
//! same step it is made, under the state's lock and then the planner's. An assignment leaves
//! the in-flight set only once its entry was applied (then the table holds it) or its proposal failed;
//! either way apply re-checks every assignment (task still pending and ready, node still registered),
//! so a proposal whose fate was unknown and that commits later changes nothing it should not.
//! At most one `Reassign` is in flight, planned only while no other is, with the same loads.
//!
//! Cheap rounds stay cheap: a round with nothing to plan reads the table's node loads and the queue's
//! head; the timeout scan runs every [`TIMEOUT_SCAN_MS`] and work stealing every [`STEAL_EVERY_MS`], each
//! over the attempts nodes hold (bounded by their slots + prefetch), never over the pending queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::hub::GridHub;
use crate::clock::unix_millis;
use crate::consensus::Coordinator;
use crate::grid::command::GridCommand;
use crate::grid::placement::Placement;
use crate::grid::schedule::{decide, Zone};
use crate::grid::steal::STEAL_BATCH_MAX;
use crate::grid::task::Strategy;
use crate::grid::task::TaskId;
use crate::ids::NodeId;
use crate::mesh::PeerEvent;
use crate::registry::{SessionId, ZPath, STATE_VERSION, STATE_VERSION_STEAL};
use crate::state::replicated::{NodeRecord, NODES_PATH};
use crate::state::Command;

pub use crate::limits::ASSIGN_BATCH_MAX;
/// Longest pause between two dispatch rounds when nothing wakes the dispatcher.
const DISPATCH_TICK: Duration = Duration::from_millis(20);
/// Slower duties (the unplaceable gauge and timeout) run every this many rounds (about a second when
/// idle). Abandoned waits are swept by the hub itself, on every node.
const SLOW_EVERY_ROUNDS: u64 = 50;
/// `Assign` proposals in flight at once. One would leave the table's freed slots unplanned for a whole
/// commit round (fsyncs on two nodes, a mesh round trip) after every report; a few overlap those.
pub const ASSIGN_IN_FLIGHT_MAX: usize = 4;
/// Overdue attempts are looked for at most this often (a timeout is noticed this much late at most).
pub const TIMEOUT_SCAN_MS: u64 = 50;
/// Work stealing looks for moves at most this often.
pub const STEAL_EVERY_MS: u64 = 100;

/// What one proposal in flight carries.
enum Proposed {
    Assign(Vec<(TaskId, NodeId)>),
    Reassign,
}

/// The leader's pipeline: proposals in flight and what they will change (their assignments are
/// counted in the hub's planner, with placed submissions', until their writes return).
struct Pipeline {
    hub: Arc<GridHub>,
    /// The proposals' writes (each answers whether it was committed), and what each carries.
    proposals: JoinSet<bool>,
    carried: HashMap<tokio::task::Id, Proposed>,
    /// Assign proposals in flight.
    assigns: usize,
    /// Whether a `Reassign` is in flight.
    reassigning: bool,
    next_timeout_scan_ms: u64,
    next_steal_ms: u64,
}

impl Pipeline {
    fn new(hub: Arc<GridHub>) -> Pipeline {
        Pipeline {
            hub,
            proposals: JoinSet::new(),
            carried: HashMap::new(),
            assigns: 0,
            reassigning: false,
            next_timeout_scan_ms: 0,
            next_steal_ms: 0,
        }
    }

    /// The write `id` returned (however: committed, refused, failed, or its task ended): what it
    /// carried is applied, or never will be, or will be re-checked by apply if it commits after all.
    fn returned(&mut self, id: tokio::task::Id) {
        match self.carried.remove(&id) {
            Some(Proposed::Assign(plan)) => {
                self.hub.with_planner(|planner| planner.in_flight.remove(&plan));
                self.assigns -= 1;
            }
            Some(Proposed::Reassign) => self.reassigning = false,
            None => {}
        }
    }

    /// Proposes `command`; an `Assign`'s plan was counted in flight as it was made.
    fn propose(&mut self, coordinator: &Coordinator, proposed: Proposed, command: GridCommand) {
        match &proposed {
            Proposed::Assign(_) => self.assigns += 1,
            Proposed::Reassign => self.reassigning = true,
        }
        let coordinator = coordinator.clone();
        let handle = self.proposals.spawn(async move {
            let result = coordinator.write(Command::App(command)).await;
            if let Err(error) = &result {
                tracing::debug!(%error, "proposal not committed");
            }
            result.is_ok()
        });
        self.carried.insert(handle.id(), proposed);
    }
}

/// The dispatcher's node-local settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchOptions {
    /// Fail a pending task whose kind no registered node runs after it waited this long (`None`: it
    /// waits, shown as unplaceable).
    pub unplaceable_timeout_ms: Option<u64>,
}

/// Runs the dispatcher for as long as the coordinator runs, with default options.
pub async fn run(coordinator: Coordinator, strategy: Strategy, seed: u64) {
    run_with(coordinator, strategy, seed, DispatchOptions::default()).await;
}

/// Runs the dispatcher for as long as the coordinator runs.
pub async fn run_with(coordinator: Coordinator, strategy: Strategy, seed: u64, options: DispatchOptions) {
    let Some(hub) = GridHub::of(&coordinator) else {
        tracing::error!("this coordinator has no grid hub: no dispatcher runs on it");
        return;
    };
    hub.install_planner(Placement::new(strategy, seed));
    let mut peers = coordinator.mesh().subscribe();
    let mut rounds = 0u64;
    let mut pipeline = Pipeline::new(hub.clone());
    // Peers the mesh declared down and has not heard since, and whether this node led last round.
    let mut down = std::collections::BTreeSet::new();
    let mut leading = false;
    loop {
        tokio::select! {
            Some(joined) = pipeline.proposals.join_next_with_id(), if !pipeline.proposals.is_empty() => {
                let committed = match joined {
                    Ok((id, committed)) => {
                        pipeline.returned(id);
                        committed
                    }
                    Err(error) => {
                        pipeline.returned(error.id());
                        false
                    }
                };
                if !committed {
                    // Not committed (leadership lost, most likely): plan again on the next wake.
                    continue;
                }
            }
            () = hub.changed() => {}
            () = tokio::time::sleep(DISPATCH_TICK) => {}
            event = peers.recv() => {
                match event {
                    Ok(PeerEvent::Down(node)) => {
                        down.insert(node);
                        if coordinator.is_leader() {
                            expire_node(&coordinator, node).await;
                        }
                    }
                    Ok(PeerEvent::Up(node)) => {
                        down.remove(&node);
                    }
                    Err(_) => {}
                }
                continue;
            }
        }
        rounds += 1;
        let slow = rounds.is_multiple_of(SLOW_EVERY_ROUNDS);
        if slow {
            record_table_gauges(&coordinator);
        }
        if !coordinator.is_leader() {
            leading = false;
            continue;
        }
        if !leading {
            leading = true;
            // A node that died with the old leader was declared down while no one could expire its
            // session; do it now rather than wait out its session timeout, which a new leader
            // restarts.
            for node in down.clone() {
                if !coordinator.mesh().is_alive(node) {
                    expire_node(&coordinator, node).await;
                }
            }
        }
        commit_settings(&coordinator).await;
        if slow || rounds < SLOW_EVERY_ROUNDS {
            upgrade_state(&coordinator).await;
        }
        dispatch_round(&coordinator, &mut pipeline).await;
        if let Some(after_ms) = options.unplaceable_timeout_ms.filter(|_| slow) {
            fail_unplaceable(&coordinator, after_ms).await;
        }
    }
}

/// What the table holds, on every node: tasks no registered node can run, and its byte budgets' use.
fn record_table_gauges(coordinator: &Coordinator) {
    let (unplaceable, bytes) =
        coordinator.read_state(|state| (state.unplaceable_count(), state.grid.bytes().into_owned()));
    metrics::gauge!("gridkeeper_grid_unplaceable_tasks").set(unplaceable as f64);
    metrics::gauge!("gridkeeper_grid_history_bytes").set(bytes.history as f64);
    metrics::gauge!("gridkeeper_grid_pending_input_bytes").set(bytes.pending_input as f64);
}

/// Proposes failing the tasks that waited `after_ms` for a kind no registered node runs; apply checks
/// again, so a decision made from a stale view changes nothing.
async fn fail_unplaceable(coordinator: &Coordinator, after_ms: u64) {
    let now = unix_millis();
    let tasks = coordinator.read_state(|state| {
        let kinds = state.registered_kinds();
        state.grid.unplaceable_overdue(now, after_ms, |kind| kinds.contains(kind), ASSIGN_BATCH_MAX)
    });
    if tasks.is_empty() {
        return;
    }
    tracing::info!(tasks = tasks.len(), "failing tasks no registered node can run");
    if let Err(error) = coordinator.write(Command::App(GridCommand::FailUnplaceable { tasks, after_ms })).await {
        tracing::debug!(%error, "unplaceable decision not committed");
    }
}

/// Commits this node's configured settings if the cluster has none yet (its first leader does this
/// once; every later leader finds them committed). Until then every replica applies the defaults.
async fn commit_settings(coordinator: &Coordinator) {
    if coordinator.read_state(|state| state.settings().is_some()) {
        return;
    }
    let settings = coordinator.configured_settings();
    match coordinator.write(Command::App(GridCommand::Configure { settings })).await {
        Ok(_) => tracing::info!(?settings, "cluster-wide settings committed"),
        Err(error) => tracing::warn!(%error, "cluster-wide settings not committed yet"),
    }
}

/// Raises the committed state version to this build's ([`STATE_VERSION`]) once every voter's
/// registration advertises it, so that no replica is handed a command it cannot apply as the others
/// do. A voter that is down or runs an older build holds the cluster at its version.
async fn upgrade_state(coordinator: &Coordinator) {
    if coordinator.read_local(|registry| registry.version()) >= STATE_VERSION {
        return;
    }
    let voters = coordinator.voters();
    let ready = coordinator.read_state(|state| {
        voters.iter().all(|(node, _)| {
            let Ok(path) = ZPath::parse(&format!("{NODES_PATH}/{node}")) else { return false };
            state
                .registry
                .get(&path)
                .ok()
                .and_then(|(data, _)| serde_json::from_slice::<NodeRecord>(data).ok())
                .is_some_and(|record| record.state_version >= STATE_VERSION)
        })
    });
    if !ready || voters.is_empty() {
        return;
    }
    let zookeeper_config = zookeeper_config(&voters);
    match coordinator.write(Command::Upgrade { version: STATE_VERSION, zookeeper_config }).await {
        Ok(_) => tracing::info!(version = STATE_VERSION, "state version raised"),
        Err(error) => tracing::debug!(%error, "state version not raised yet"),
    }
}

/// `/zookeeper/config` for `voters`, as a ZooKeeper ensemble with a static configuration shows it:
/// one `server.ID=HOST:PORT:PORT:participant` line per voter (the mesh port serves both of
/// ZooKeeper's quorum and election roles), then `version=0`.
fn zookeeper_config(voters: &[(crate::ids::NodeId, String)]) -> String {
    let mut text = String::new();
    for (node, addr) in voters {
        text.push_str(&format!("server.{node}={addr}:{}:participant\n", addr.rsplit(':').next().unwrap_or_default()));
    }
    text.push_str("version=0");
    text
}

/// A due job's run counts as on time if it fires within this much of its due time; later, the
/// job's misfire policy decides.
const JOB_GRACE_MS: u64 = 1_000;

/// Decides every due recurring job and proposes the decisions. The leader alone reads time-zone data
/// here: each decision carries the next due time as a number, which every replica applies.
async fn fire_jobs(coordinator: &Coordinator) {
    let now = unix_millis();
    let decisions: Vec<GridCommand> = coordinator.read_state(|state| {
        state
            .grid
            .due_jobs(now)
            .into_iter()
            .filter_map(|(job, running)| {
                let due_ms = job.due_ms?;
                let zone = match state.grid.job_extras(&job.spec.name).tz {
                    None => Zone::utc(),
                    Some(name) => match Zone::parse(&name) {
                        Ok(zone) => zone,
                        Err(error) => {
                            // A zone a newer build's database has and this one's lacks: leave the job
                            // due for a leader that knows it rather than fire it at a wrong time.
                            tracing::debug!(job = %job.spec.name, %error, "job not decided: its zone is unknown here");
                            return None;
                        }
                    },
                };
                // Without overlap, a fire time that comes while the last run is going is skipped.
                let decision = decide(
                    &job.spec.cadence,
                    &zone,
                    job.spec.misfire,
                    due_ms,
                    now,
                    (running, job.spec.overlap),
                    JOB_GRACE_MS,
                );
                Some(GridCommand::Fire {
                    name: job.spec.name.clone(),
                    due_ms,
                    fire: decision.fire,
                    skipped: decision.skipped,
                    next_due_ms: decision.next_due_ms,
                })
            })
            .collect()
    });
    for command in decisions {
        if let Err(error) = coordinator.write(Command::App(command)).await {
            tracing::debug!(%error, "job decision not committed");
            return;
        }
    }
}

/// One round: fire due jobs, assign what can be placed (up to [`ASSIGN_IN_FLIGHT_MAX`] proposals in
/// flight), move queued work between nodes, then time out what overran.
async fn dispatch_round(coordinator: &Coordinator, pipeline: &mut Pipeline) {
    fire_jobs(coordinator).await;
    let node = coordinator.node().0;
    while pipeline.assigns < ASSIGN_IN_FLIGHT_MAX {
        let now = unix_millis();
        // Stage events for `benches/cycle.rs`; nothing listens at trace level in a node.
        tracing::trace!(target: "gridkeeper::cycle", node, "plan_begin");
        // Planned and counted in flight in one step, so no placed submission takes the same room.
        let hub = &pipeline.hub;
        let plan = coordinator.read_state(|state| {
            hub.with_planner(|planner| {
                let plan = state.plan_after(now, &mut planner.placement, ASSIGN_BATCH_MAX, &planner.in_flight);
                planner.in_flight.add(&plan);
                plan
            })
        });
        let plan = plan.unwrap_or_default();
        if plan.is_empty() {
            break;
        }
        let (tasks, first) = (plan.len(), plan[0].0 .0);
        tracing::trace!(target: "gridkeeper::cycle", node, tasks, first, "plan");
        let full = plan.len() == ASSIGN_BATCH_MAX;
        pipeline.propose(coordinator, Proposed::Assign(plan.clone()), GridCommand::Assign { assignments: plan });
        if !full {
            break;
        }
    }
    let now = unix_millis();
    if now >= pipeline.next_steal_ms && !pipeline.reassigning {
        pipeline.next_steal_ms = now + STEAL_EVERY_MS;
        if super::registry::cluster_applies(coordinator, STATE_VERSION_STEAL) {
            let hub = &pipeline.hub;
            let moves = coordinator.read_state(|state| {
                hub.with_planner(|planner| {
                    state.plan_steals(now, &planner.placement, STEAL_BATCH_MAX, &planner.in_flight)
                })
            });
            let moves = moves.unwrap_or_default();
            if !moves.is_empty() {
                tracing::debug!(moves = moves.len(), "moving queued attempts to idle nodes");
                pipeline.propose(coordinator, Proposed::Reassign, GridCommand::Reassign { moves });
            }
        }
    }
    if now >= pipeline.next_timeout_scan_ms {
        pipeline.next_timeout_scan_ms = now + TIMEOUT_SCAN_MS;
        let overdue = coordinator.read_state(|state| state.grid.overdue(now));
        if !overdue.is_empty() {
            let _ = coordinator.write(Command::App(GridCommand::TimeOut { attempts: overdue })).await;
        }
    }
}

/// Expires the session owning `node`'s registration, if any.
async fn expire_node(coordinator: &Coordinator, node: crate::ids::NodeId) {
    let Ok(path) = ZPath::parse(&format!("{NODES_PATH}/{node}")) else { return };
    let owner = coordinator.read_local(|registry| registry.exists(&path).map(|stat| stat.ephemeral_owner));
    if let Some(owner) = owner.filter(|owner| *owner != 0) {
        tracing::info!(%node, "node down on the mesh; expiring its session");
        let _ = coordinator.write(Command::ExpireSessions { sessions: vec![SessionId(owner)] }).await;
    }
}
