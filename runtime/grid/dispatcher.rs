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

use super::command::GridCommand;
use super::placement::Placement;
use super::replicated::NODES_PATH;
use super::schedule::decide;
use super::task::Strategy;
use crate::clock::unix_millis;
use crate::consensus::Coordinator;
use crate::mesh::PeerEvent;
use crate::registry::{Command, SessionId, ZPath};

/// Assignments proposed in one entry at most.
pub const ASSIGN_BATCH_MAX: usize = 8_192;
/// Longest pause between two dispatch rounds when nothing wakes the dispatcher.
const DISPATCH_TICK: Duration = Duration::from_millis(20);
/// Abandoned task waits are dropped every this many rounds (about a second when idle).
const PRUNE_EVERY_ROUNDS: u64 = 50;

/// Runs the dispatcher for as long as the coordinator runs.
pub async fn run(coordinator: Coordinator, strategy: Strategy, seed: u64) {
    let mut placement = Placement::new(strategy, seed);
    let hub = coordinator.grid_hub().clone();
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
        if !coordinator.is_leader() {
            continue;
        }
        dispatch_round(&coordinator, &mut placement).await;
        rounds += 1;
        if rounds.is_multiple_of(PRUNE_EVERY_ROUNDS) {
            coordinator.grid_hub().prune_waits();
        }
    }
}

/// A due job's run counts as on time if it fires within this much of its due time; later, the
/// job's misfire policy decides.
const JOB_GRACE_MS: u64 = 1_000;

/// Decides every due recurring job and proposes the decisions.
async fn fire_jobs(coordinator: &Coordinator) {
    let now = unix_millis();
    let decisions: Vec<GridCommand> = coordinator.read_state(|state| {
        state
            .grid
            .due_jobs(now)
            .into_iter()
            .filter_map(|(job, running)| {
                let due_ms = job.due_ms?;
                // Without overlap, a fire time that comes while the last run is going is skipped.
                let decision =
                    decide(&job.spec.cadence, job.spec.misfire, due_ms, now, running, job.spec.overlap, JOB_GRACE_MS);
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
        if let Err(error) = coordinator.write(Command::Grid(command)).await {
            tracing::debug!(%error, "job decision not committed");
            return;
        }
    }
}

/// One round: fire due jobs, assign what can be placed, then time out what overran.
async fn dispatch_round(coordinator: &Coordinator, placement: &mut Placement) {
    fire_jobs(coordinator).await;
    loop {
        let now = unix_millis();
        let plan = coordinator.read_state(|state| state.plan(now, placement, ASSIGN_BATCH_MAX));
        if plan.is_empty() {
            break;
        }
        let full = plan.len() == ASSIGN_BATCH_MAX;
        if let Err(error) = coordinator.write(Command::Grid(GridCommand::Assign { assignments: plan })).await {
            tracing::debug!(%error, "assignment not committed");
            return;
        }
        if !full {
            break;
        }
    }
    let now = unix_millis();
    let overdue = coordinator.read_state(|state| state.grid.overdue(now));
    if !overdue.is_empty() {
        let _ = coordinator.write(Command::Grid(GridCommand::TimeOut { attempts: overdue })).await;
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
