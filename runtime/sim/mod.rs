//! Deterministic simulation harness: whole meshes in one process over turmoil's simulated network.
//!
//! Every node is a turmoil host running a real [`Mesh`] (real quinn, real rustls) over
//! [`SimUdpSocket`]. The network's latency, loss, partitions and crashes come from one seed, and so do
//! quinn's own random choices, so a seed replays the same run. The coordinator and the grid build
//! their simulations on this harness.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::consensus::{Coordinator, CoordinatorConfig, RaftTimings};
use crate::credentials::{Authority, NodeCredentials};
use crate::ids::NodeId;
use crate::mesh::sim_socket::SimUdpSocket;
use crate::mesh::{DetectorConfig, MemberStatus, Mesh, MeshConfig, MeshSocket, PeerEvent};

/// Port every simulated node listens on (each has its own simulated IP).
const SIM_PORT: u16 = 7000;

/// Client work a simulated node runs against its own coordinator, started with the node (and again
/// after each restart).
pub type Workload = Arc<dyn Fn(NodeId, Coordinator) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How a simulated cluster is set up.
#[derive(Clone)]
pub struct SimConfig {
    /// Seed of everything random in the run.
    pub seed: u64,
    /// Number of nodes, with ids 1..=nodes.
    pub nodes: u64,
    /// Detector timing on every node.
    pub detector: DetectorConfig,
    /// Shortest one-way delay of a datagram.
    pub latency_min: Duration,
    /// Longest one-way delay of a datagram.
    pub latency_max: Duration,
    /// Probability a link starts failing at each step (turmoil's random link failure).
    pub fail_rate: f64,
    /// Probability a failed link is repaired at each step.
    pub repair_rate: f64,
    /// Run a coordinator on every node, with its storage under this directory.
    pub registry_dir: Option<PathBuf>,
    /// Client work each node runs (needs `registry_dir`).
    pub workload: Option<Workload>,
    /// Log entries between snapshots.
    pub snapshot_logs: u64,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig").field("seed", &self.seed).field("nodes", &self.nodes).finish_non_exhaustive()
    }
}

impl SimConfig {
    /// `nodes` nodes on a loopback-like network (0.1 to 1 ms one way) with no random failures.
    pub fn new(seed: u64, nodes: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            detector: DetectorConfig::default(),
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            fail_rate: 0.0,
            repair_rate: 0.0,
            registry_dir: None,
            workload: None,
            snapshot_logs: crate::consensus::coordinator::SNAPSHOT_LOGS_DEFAULT,
        }
    }
}

/// One liveness change as observed by one node, at simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceEntry {
    /// Milliseconds of simulated time since the start.
    pub at_ms: u64,
    /// The node that observed the change.
    pub observer: NodeId,
    /// The change.
    pub event: PeerEvent,
}

/// Why the harness could not set up or run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Credentials could not be issued.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    /// A host failed.
    #[error("simulation failed: {0}")]
    Run(String),
}

type Shared<T> = Arc<Mutex<T>>;

fn locked<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A simulated cluster of meshes.
pub struct SimCluster<'a> {
    sim: turmoil::Sim<'a>,
    trace: Shared<Vec<TraceEntry>>,
    meshes: Shared<BTreeMap<NodeId, Mesh>>,
    coordinators: Shared<BTreeMap<NodeId, Coordinator>>,
}

/// What each simulated host runs.
#[derive(Clone)]
struct HostPlan {
    mesh: MeshConfig,
    credentials: NodeCredentials,
    seed: u64,
    registry_dir: Option<PathBuf>,
    workload: Option<Workload>,
    snapshot_logs: u64,
    trace: Shared<Vec<TraceEntry>>,
    meshes: Shared<BTreeMap<NodeId, Mesh>>,
    coordinators: Shared<BTreeMap<NodeId, Coordinator>>,
}

/// Host name of a node in the simulation.
pub fn host_name(node: NodeId) -> String {
    format!("node{node}")
}

impl<'a> SimCluster<'a> {
    /// Builds the cluster; nothing runs until the first step.
    ///
    /// # Errors
    /// [`SimError::Credentials`] if certificates cannot be issued.
    pub fn new(config: SimConfig) -> Result<SimCluster<'a>, SimError> {
        let mut sim = turmoil::Builder::new()
            .rng_seed(config.seed)
            .simulation_duration(Duration::from_secs(24 * 3600))
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(config.latency_min)
            .max_message_latency(config.latency_max)
            .fail_rate(config.fail_rate)
            .repair_rate(config.repair_rate)
            .build();
        let ids: Vec<NodeId> = (1..=config.nodes).map(NodeId).collect();
        let members: BTreeMap<NodeId, SocketAddr> =
            ids.iter().map(|&id| (id, SocketAddr::new(sim.lookup(host_name(id)), SIM_PORT))).collect();
        let authority = Authority::generate()?;
        let trace: Shared<Vec<TraceEntry>> = Arc::default();
        let meshes: Shared<BTreeMap<NodeId, Mesh>> = Arc::default();
        let coordinators: Shared<BTreeMap<NodeId, Coordinator>> = Arc::default();
        for &id in &ids {
            let mut mesh = MeshConfig::new(id, members.clone());
            mesh.detector = config.detector;
            mesh.incarnation = config.seed;
            let plan = HostPlan {
                mesh,
                credentials: authority.node_credentials(id)?,
                seed: config.seed,
                registry_dir: config.registry_dir.clone(),
                workload: config.workload.clone(),
                snapshot_logs: config.snapshot_logs,
                trace: trace.clone(),
                meshes: meshes.clone(),
                coordinators: coordinators.clone(),
            };
            sim.host(host_name(id), move || run_host(plan.clone()));
        }
        Ok(SimCluster { sim, trace, meshes, coordinators })
    }

    /// Advances simulated time by one tick. Returns `true` once every client finished (never, here:
    /// hosts run forever).
    ///
    /// # Errors
    /// [`SimError::Run`] if a host returned an error or panicked.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.sim.step().map_err(|error| SimError::Run(error.to_string()))
    }

    /// Steps until `done` holds, at most `steps_max` ticks. Returns whether `done` held.
    ///
    /// # Errors
    /// [`SimError::Run`] if a host failed.
    pub fn run_until(
        &mut self,
        steps_max: u64,
        mut done: impl FnMut(&SimCluster<'a>) -> bool,
    ) -> Result<bool, SimError> {
        for _ in 0..steps_max {
            if done(self) {
                return Ok(true);
            }
            self.step()?;
        }
        Ok(done(self))
    }

    /// Steps `steps` ticks unconditionally.
    ///
    /// # Errors
    /// [`SimError::Run`] if a host failed.
    pub fn run_for(&mut self, steps: u64) -> Result<(), SimError> {
        for _ in 0..steps {
            self.step()?;
        }
        Ok(())
    }

    /// Simulated milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.sim.elapsed().as_millis() as u64
    }

    /// Every liveness change observed so far, in the order observed.
    pub fn trace(&self) -> Vec<TraceEntry> {
        locked(&self.trace).clone()
    }

    /// `observer`'s current view of the members, if it is running.
    pub fn members(&self, observer: NodeId) -> Option<Vec<MemberStatus>> {
        locked(&self.meshes).get(&observer).map(Mesh::members)
    }

    /// Whether `observer` currently considers `peer` up.
    pub fn sees_alive(&self, observer: NodeId, peer: NodeId) -> bool {
        locked(&self.meshes).get(&observer).is_some_and(|mesh| mesh.is_alive(peer))
    }

    /// The running mesh of `node`, to send through it.
    pub fn mesh(&self, node: NodeId) -> Option<Mesh> {
        locked(&self.meshes).get(&node).cloned()
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.sim.partition(host_name(a), host_name(b));
    }

    /// Restores the link between `a` and `b`.
    pub fn repair(&self, a: NodeId, b: NodeId) {
        self.sim.repair(host_name(a), host_name(b));
    }

    /// Holds every datagram between `a` and `b` (both ways) until [`Self::release`]: a long delay.
    pub fn hold(&self, a: NodeId, b: NodeId) {
        self.sim.hold(host_name(a), host_name(b));
    }

    /// Delivers what [`Self::hold`] held, and lets traffic flow again.
    pub fn release(&self, a: NodeId, b: NodeId) {
        self.sim.release(host_name(a), host_name(b));
    }

    /// Sets the longest one-way delay of every datagram from now on.
    pub fn set_latency_max(&self, latency: Duration) {
        self.sim.set_max_message_latency(latency);
    }

    /// Sets the probability, per step, that a link starts dropping everything (turmoil's link
    /// failure; links recover at the configured repair rate).
    pub fn set_fail_rate(&mut self, rate: f64) {
        self.sim.set_fail_rate(rate);
    }

    /// The running coordinator of `node`.
    pub fn coordinator(&self, node: NodeId) -> Option<Coordinator> {
        locked(&self.coordinators).get(&node).cloned()
    }

    /// Kills `node` as kill -9 would: its tasks stop, its sockets vanish, nothing is said.
    pub fn crash(&mut self, node: NodeId) {
        locked(&self.meshes).remove(&node);
        locked(&self.coordinators).remove(&node);
        self.sim.crash(host_name(node));
    }

    /// Restarts a crashed `node` from scratch.
    pub fn restart(&mut self, node: NodeId) {
        self.sim.bounce(host_name(node));
    }
}

async fn run_host(plan: HostPlan) -> turmoil::Result {
    let node = plan.mesh.node;
    let socket = SimUdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SIM_PORT)).await?;
    let mut quinn_seed = [0u8; 32];
    quinn_seed[..8].copy_from_slice(&plan.seed.to_le_bytes());
    quinn_seed[8..16].copy_from_slice(&node.0.to_le_bytes());
    let members = plan.mesh.members.clone();
    let mesh = Mesh::start(plan.mesh, &plan.credentials, MeshSocket::Abstract { socket, seed: quinn_seed })?;
    let mut events = mesh.subscribe();
    locked(&plan.meshes).insert(node, mesh.clone());
    if let Some(dir) = &plan.registry_dir {
        let config = CoordinatorConfig {
            node,
            voters: members,
            data_dir: dir.join(format!("node-{node}")),
            limits: crate::registry::RegistryLimits::default(),
            timings: RaftTimings::default(),
            seed: plan.seed ^ node.0.rotate_left(17),
            inline_disk: true,
            snapshot_logs: plan.snapshot_logs,
            grid_limits: crate::grid::TableLimits::default(),
            // Session ids and secrets replay from the seed too.
            session_seed: Some(plan.seed ^ node.0.rotate_left(29)),
        };
        let coordinator = Coordinator::start(config, mesh).await?;
        locked(&plan.coordinators).insert(node, coordinator.clone());
        if let Some(workload) = &plan.workload {
            tokio::spawn(workload(node, coordinator));
        }
    }
    loop {
        match events.recv().await {
            Ok(event) => {
                let at_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
                locked(&plan.trace).push(TraceEntry { at_ms, observer: node, event });
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}
