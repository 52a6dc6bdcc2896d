//! The leader's dispatcher: whenever the task table or the set of nodes changes (and on a short
//! tick, for delayed tasks and timeouts), it plans assignments from the committed table and proposes
//! them as one `Assign` entry, then ends overdue attempts. It runs on every node and acts only while
//! its node leads, so a new leader continues from the committed table with nothing to hand over.
//!
//! It also shortens failure detection: when the mesh declares a registered node down, the leader
//! expires that node's session at once (500 ms of silence) rather than waiting out its session
//! timeout; the expiry re-queues the node's attempts in the same committed step.
//!
//! Invariant: one `Assign` proposal is in flight at a time and the next plan is made only after it was
//! applied, so a plan never double-books a task or a slot.

use std::time::Duration;

use crate::clock::unix_millis;
use crate::consensus::Coordinator;
use crate::grid::command::GridCommand;
use crate::grid::placement::Placement;
use crate::grid::schedule::{decide, Zone};
use crate::grid::task::Strategy;
use crate::mesh::PeerEvent;
use crate::registry::{SessionId, ZPath, STATE_VERSION};
use crate::state::replicated::{NodeRecord, NODES_PATH};
use crate::state::Command;

pub use crate::limits::ASSIGN_BATCH_MAX;
/// Longest pause between two dispatch rounds when nothing wakes the dispatcher.
const DISPATCH_TICK: Duration = Duration::from_millis(20);
/// Slower duties (the unplaceable gauge and timeout) run every this many rounds (about a second when
/// idle). Abandoned waits are swept by the hub itself, on every node.
const SLOW_EVERY_ROUNDS: u64 = 50;

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
    let mut placement = Placement::new(strategy, seed);
    let Some(hub) = super::hub::GridHub::of(&coordinator) else {
        tracing::error!("this coordinator has no grid hub: no dispatcher runs on it");
        return;
    };
    let mut peers = coordinator.mesh().subscribe();
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            () = hub.changed() => {}
            () = tokio::time::sleep(DISPATCH_TICK) => {}
            event = peers.recv() => {
                if let Ok(PeerEvent::Down(node)) = event {
                    if coordinator.is_leader() {
                        expire_node(&coordinator, node).await;
                    }
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
            continue;
        }
        commit_settings(&coordinator).await;
        if slow || rounds < SLOW_EVERY_ROUNDS {
            upgrade_state(&coordinator).await;
        }
        dispatch_round(&coordinator, &mut placement).await;
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

/// One round: fire due jobs, assign what can be placed, then time out what overran.
async fn dispatch_round(coordinator: &Coordinator, placement: &mut Placement) {
    fire_jobs(coordinator).await;
    let node = coordinator.node().0;
    loop {
        let now = unix_millis();
        // Stage events for `benches/cycle.rs`; nothing listens at trace level in a node.
        tracing::trace!(target: "gridkeeper::cycle", node, "plan_begin");
        let plan = coordinator.read_state(|state| state.plan(now, placement, ASSIGN_BATCH_MAX));
        if plan.is_empty() {
            break;
        }
        let (tasks, first) = (plan.len(), plan[0].0 .0);
        tracing::trace!(target: "gridkeeper::cycle", node, tasks, first, "plan");
        let full = plan.len() == ASSIGN_BATCH_MAX;
        if let Err(error) = coordinator.write(Command::App(GridCommand::Assign { assignments: plan })).await {
            tracing::debug!(%error, "assignment not committed");
            return;
        }
        tracing::trace!(target: "gridkeeper::cycle", node, tasks, "assign_done");
        if !full {
            break;
        }
    }
    let now = unix_millis();
    let overdue = coordinator.read_state(|state| state.grid.overdue(now));
    if !overdue.is_empty() {
        let _ = coordinator.write(Command::App(GridCommand::TimeOut { attempts: overdue })).await;
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
