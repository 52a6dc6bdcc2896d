//! The task grid on a simulated node: the same parts a real node runs beside its coordinator (the
//! leader's dispatcher, the node's registration, the worker supervisor with one actor per attempt,
//! and, when asked, the actor host with its service), started on the simulated host, so their timers
//! run on simulated time and replay from the seed.
//!
//! It differs from a real node in one way: attempts run on the host's own runtime (worker threads
//! 0), because every task of a simulated host must run on it for the simulation to drive it.

use std::sync::Arc;

use ractor::ActorRef;

use super::{locked, Shared};
use crate::actors::{ActorKinds, ActorService, HostConfig};
use crate::consensus::Coordinator;
use crate::grid::kinds::TaskKinds;
use crate::grid::task::Strategy;
use crate::ids::NodeId;
use crate::state::NodeRecord;
use crate::worker::{WorkerArgs, WorkerGauge, WorkerLink, WorkerMsg, WorkerSupervisor};

/// The grid each simulated node runs.
#[derive(Clone, Debug)]
pub struct SimGrid {
    /// Attempts each node runs at once.
    pub slots: u32,
    /// Attempts each node accepts queued beyond its slots.
    pub prefetch: u32,
    /// The task kinds every node runs.
    pub kinds: TaskKinds,
    /// The cluster's placement strategy.
    pub strategy: Strategy,
    /// The grid actor kinds every node hosts (its `ActorService` started next to the worker, as a
    /// node's supervisor does), with the host's settings; `None`: no actor host.
    pub actors: Option<(ActorKinds, HostConfig)>,
}

impl SimGrid {
    /// Two slots, four prefetched, the built-in kinds, least-loaded placement, no actor host.
    pub fn new() -> SimGrid {
        SimGrid {
            slots: 2,
            prefetch: 4,
            kinds: crate::worker::builtin::kinds(),
            strategy: Strategy::LeastLoaded,
            actors: None,
        }
    }
}

impl Default for SimGrid {
    fn default() -> Self {
        SimGrid::new()
    }
}

/// Starts the dispatcher, the actor host (with [`SimGrid::actors`]), the registration and the worker
/// supervisor of `node`; the worker's running-attempt gauge is kept in `gauges` (one per
/// incarnation). Returns the worker, which lives as long as the host (the actor service is found
/// through the coordinator: `ActorService::of`).
pub(super) async fn start(
    grid: &SimGrid,
    node: NodeId,
    coordinator: &Coordinator,
    seed: u64,
    clock_rate: crate::consensus::lease::ClockRate,
    gauges: &Shared<Vec<(NodeId, WorkerGauge)>>,
) -> Result<ActorRef<WorkerMsg>, ractor::SpawnErr> {
    tokio::spawn(crate::service::dispatcher::run(coordinator.clone(), grid.strategy, seed ^ node.0));
    // Before the registration, as on a node: its keepalives renew the host's lease.
    let actors = match &grid.actors {
        Some((kinds, config)) => {
            match ActorService::start(coordinator, kinds.clone(), HostConfig { clock_rate, ..*config }) {
                Ok(service) => Some(service.host().kinds().names()),
                Err(error) => {
                    tracing::warn!(%node, %error, "this simulated node hosts no actors");
                    None
                }
            }
        }
        None => None,
    };
    let record = NodeRecord {
        addr: super::host_name(node),
        slots: grid.slots,
        prefetch: grid.prefetch,
        weight: 1,
        kinds: grid.kinds.names(),
        state_version: crate::registry::STATE_VERSION,
        admin: None,
        actor_kinds: actors,
    };
    tokio::spawn(crate::service::registration::keep_registered_local(coordinator.clone(), node, record));
    let gauge = WorkerGauge::default();
    locked(gauges).push((node, gauge.clone()));
    let args = WorkerArgs {
        node,
        link: WorkerLink::Local(coordinator.clone()),
        kinds: grid.kinds.clone(),
        threads: 0,
        slots: grid.slots,
        gauge,
        logs: None,
    };
    let (worker, _) = ractor::Actor::spawn(None, WorkerSupervisor, Arc::new(args)).await?;
    Ok(worker)
}
