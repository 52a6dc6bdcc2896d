//! Deterministic simulation harness: whole meshes in one process over turmoil's simulated network.
//!
//! Every node is a turmoil host running a real [`Mesh`] (real quinn, real rustls) over
//! [`SimUdpSocket`]. The network's latency, loss, partitions and crashes come from one seed, and so do
//! quinn's own random choices, so a seed replays the same run. The coordinator and the grid build
//! their simulations on this harness.
//!
//! Time is the simulator's too: tokio's clock on every host, and Unix time (`clock::unix_millis`)
//! from a fixed epoch, so grid timeouts, backoff, not-before times, TTLs and cron replay from the seed.
//! [`faults`] draws fault schedules from a seed and [`SimCluster::run_schedule`] plays them;
//! [`swarm`] runs many seeds per test; [`SimGrid`] puts the task grid (and, if asked, the actor host)
//! on every node.

pub mod faults;
mod grid;
pub mod swarm;

pub use faults::{Fault, FaultLog, FaultSchedule, Inflicted};
pub use grid::SimGrid;
pub use swarm::{Swarm, SwarmReport};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::consensus::lease::ClockRate;
use crate::consensus::{Coordinator, CoordinatorConfig, RaftTimings};
use crate::credentials::{Authority, NodeCredentials};
use crate::ids::NodeId;
use crate::mesh::sim_socket::SimUdpSocket;
use crate::mesh::{DetectorConfig, MemberStatus, Mesh, MeshConfig, MeshSocket, PeerEvent};
use crate::worker::WorkerGauge;

/// Whether this build replays a seed exactly. Tokio picks among ready `select!` branches at random,
/// from a generator it seeds itself unless built with `--cfg tokio_unstable`, which lets turmoil seed
/// every host's runtime from the simulation's seed. Without it a seed still names its faults, its
/// workload and its network, but about one run in ten drifts by a few simulated milliseconds.
// `tokio_unstable` is tokio's own cfg, set by RUSTFLAGS, not one this crate declares.
#[allow(unexpected_cfgs)]
pub const REPLAYS_EXACTLY: bool = cfg!(tokio_unstable);

/// Port every simulated node listens on (each has its own simulated IP).
const SIM_PORT: u16 = 7000;

/// Simulated milliseconds a leader crash waits for a leader to be elected, when none is known as it
/// comes due. Several election timeouts: only a cluster that cannot elect waits it out.
const LEADER_WAIT_MS: u64 = 3_000;

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
    /// How many of them (the lowest ids) form the cluster at first; the others start as spares,
    /// knowing the founders, and join only once a member adds them (`Coordinator::add_member`).
    /// `None`: every node is a founder.
    pub founders: Option<u64>,
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
    /// Run the task grid (dispatcher, registration, worker) on every node (needs `registry_dir`).
    pub grid: Option<SimGrid>,
    /// The rate of the clock each node's leases read (its leader lease; its actor host's lease and
    /// handoff waits), against simulated time (nodes not listed: the true rate): a drifting clock,
    /// within the drift bound or far beyond it (`tests/sim_lease.rs`, `tests/sim_actors.rs`).
    pub lease_clock_rates: BTreeMap<NodeId, ClockRate>,
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
            founders: None,
            detector: DetectorConfig::default(),
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            fail_rate: 0.0,
            repair_rate: 0.0,
            registry_dir: None,
            workload: None,
            snapshot_logs: crate::consensus::coordinator::SNAPSHOT_LOGS_DEFAULT,
            grid: None,
            lease_clock_rates: BTreeMap::new(),
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
    /// Which run of the observer (0 until its first restart): each run's detector starts afresh.
    pub incarnation: u32,
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
    nodes: u64,
    trace: Shared<Vec<TraceEntry>>,
    meshes: Shared<BTreeMap<NodeId, Mesh>>,
    coordinators: Shared<BTreeMap<NodeId, Coordinator>>,
    gauges: Shared<Vec<(NodeId, WorkerGauge)>>,
    damage: Shared<Damage>,
}

/// The faults in force, for [`SimCluster::heal`] to undo.
#[derive(Debug, Default)]
struct Damage {
    /// Crashed nodes, the one down longest first.
    down: Vec<NodeId>,
    /// Cut links.
    cut: Vec<(NodeId, NodeId)>,
    /// Held links.
    held: Vec<(NodeId, NodeId)>,
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
    grid: Option<SimGrid>,
    lease_clock_rate: Option<ClockRate>,
    trace: Shared<Vec<TraceEntry>>,
    meshes: Shared<BTreeMap<NodeId, Mesh>>,
    coordinators: Shared<BTreeMap<NodeId, Coordinator>>,
    gauges: Shared<Vec<(NodeId, WorkerGauge)>>,
    /// Whether this host founds the cluster (a spare waits to be added).
    founder: bool,
    /// Runs of this host started so far.
    starts: Shared<u32>,
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
            .epoch(crate::clock::sim_epoch())
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
        let gauges: Shared<Vec<(NodeId, WorkerGauge)>> = Arc::default();
        let founders = config.founders.unwrap_or(config.nodes);
        for &id in &ids {
            // A founder knows the founders; a spare knows them and itself.
            let known: BTreeMap<NodeId, SocketAddr> = members
                .iter()
                .filter(|(&member, _)| member.0 <= founders || member == id)
                .map(|(&k, &v)| (k, v))
                .collect();
            let mut mesh = MeshConfig::new(id, known);
            mesh.detector = config.detector;
            mesh.bulk_inline = true;
            mesh.incarnation = config.seed;
            let plan = HostPlan {
                mesh,
                credentials: authority.node_credentials(id)?,
                seed: config.seed,
                registry_dir: config.registry_dir.clone(),
                workload: config.workload.clone(),
                snapshot_logs: config.snapshot_logs,
                grid: config.grid.clone(),
                lease_clock_rate: config.lease_clock_rates.get(&id).copied(),
                trace: trace.clone(),
                meshes: meshes.clone(),
                coordinators: coordinators.clone(),
                gauges: gauges.clone(),
                founder: id.0 <= founders,
                starts: Arc::default(),
            };
            sim.host(host_name(id), move || run_host(plan.clone()));
        }
        Ok(SimCluster { sim, nodes: config.nodes, trace, meshes, coordinators, gauges, damage: Arc::default() })
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
        locked(&self.damage).cut.push((a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn repair(&self, a: NodeId, b: NodeId) {
        self.sim.repair(host_name(a), host_name(b));
        locked(&self.damage).cut.retain(|&link| link != (a, b) && link != (b, a));
    }

    /// Holds every datagram between `a` and `b` (both ways) until [`Self::release`]: a long delay.
    pub fn hold(&self, a: NodeId, b: NodeId) {
        self.sim.hold(host_name(a), host_name(b));
        locked(&self.damage).held.push((a, b));
    }

    /// Delivers what [`Self::hold`] held, and lets traffic flow again.
    pub fn release(&self, a: NodeId, b: NodeId) {
        self.sim.release(host_name(a), host_name(b));
        locked(&self.damage).held.retain(|&link| link != (a, b) && link != (b, a));
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
        if let Some(coordinator) = locked(&self.coordinators).remove(&node) {
            stop_actors(&coordinator);
        }
        self.sim.crash(host_name(node));
        let mut damage = locked(&self.damage);
        if !damage.down.contains(&node) {
            damage.down.push(node);
        }
    }

    /// Restarts a crashed `node` from scratch.
    pub fn restart(&mut self, node: NodeId) {
        self.sim.bounce(host_name(node));
        locked(&self.damage).down.retain(|&down| down != node);
    }

    /// How many coordinators run.
    pub fn coordinators_running(&self) -> usize {
        locked(&self.coordinators).len()
    }

    /// The crashed nodes, the one down longest first.
    pub fn down(&self) -> Vec<NodeId> {
        locked(&self.damage).down.clone()
    }

    /// The leader as the running coordinators know it: the one that says it leads in the highest
    /// term, else the leader the highest term names, if that node runs.
    pub fn leader(&self) -> Option<NodeId> {
        let statuses: Vec<(NodeId, crate::consensus::ConsensusStatus)> =
            locked(&self.coordinators).iter().map(|(&id, coordinator)| (id, coordinator.status())).collect();
        let leading = statuses.iter().filter(|(_, status)| status.is_leader).max_by_key(|(_, status)| status.term);
        if let Some((id, _)) = leading {
            return Some(*id);
        }
        let named = statuses.iter().filter(|(_, status)| status.leader.is_some()).max_by_key(|(_, status)| status.term);
        named
            .and_then(|(_, status)| status.leader)
            .map(NodeId)
            .filter(|id| statuses.iter().any(|(running, _)| running == id))
    }

    /// The most attempts each worker incarnation ran at once, per node, in start order (with
    /// [`SimConfig::grid`]).
    pub fn worker_peaks(&self) -> Vec<(NodeId, u32)> {
        locked(&self.gauges).iter().map(|(node, gauge)| (*node, gauge.peak())).collect()
    }

    /// Plays `schedule` from now, stepping the simulation to each fault's time (counted from the
    /// start of the simulation) and then to its end. At most `(nodes - 1) / 2` nodes are down at
    /// once, so a majority can always make progress.
    ///
    /// # Errors
    /// [`SimError::Run`] if a host failed.
    pub fn run_schedule(&mut self, schedule: &FaultSchedule) -> Result<FaultLog, SimError> {
        let mut log = FaultLog::default();
        for &(at_ms, fault) in &schedule.faults {
            self.run_for(at_ms.saturating_sub(self.elapsed_ms()))?;
            if matches!(fault, Fault::CrashLeader { .. }) {
                // Mid-election there is no leader to crash: wait (bounded) for one.
                self.run_until(LEADER_WAIT_MS, |cluster| {
                    cluster.coordinators_running() == 0 || cluster.leader().is_some()
                })?;
            }
            for inflicted in self.inflict(fault) {
                log.entries.push((self.elapsed_ms(), inflicted));
            }
        }
        self.run_for(schedule.until_ms.saturating_sub(self.elapsed_ms()))?;
        Ok(log)
    }

    /// Applies one fault now; returns what it did.
    pub fn inflict(&mut self, fault: Fault) -> Vec<Inflicted> {
        let down_max = ((self.nodes.saturating_sub(1)) / 2) as usize;
        let mut done = Vec::new();
        match fault {
            Fault::CrashLeader { otherwise } => {
                if self.down().len() >= down_max.max(1) {
                    if let Some(&oldest) = self.down().first() {
                        self.restart(oldest);
                        done.push(Inflicted::Restarted(oldest));
                    }
                }
                let leader = self.leader();
                let victim = leader.unwrap_or(otherwise);
                if self.down().contains(&victim) || down_max == 0 {
                    done.push(Inflicted::Skipped(fault));
                } else {
                    self.crash(victim);
                    done.push(Inflicted::Crashed { node: victim, leader: leader == Some(victim) });
                }
            }
            Fault::Crash(node) => {
                if self.down().contains(&node) || self.down().len() >= down_max {
                    done.push(Inflicted::Skipped(fault));
                } else {
                    let leader = self.leader() == Some(node);
                    self.crash(node);
                    done.push(Inflicted::Crashed { node, leader });
                }
            }
            Fault::RestartOldest => match self.down().first() {
                Some(&node) => {
                    self.restart(node);
                    done.push(Inflicted::Restarted(node));
                }
                None => done.push(Inflicted::Skipped(fault)),
            },
            Fault::Partition(a, b) => {
                self.partition(a, b);
                done.push(Inflicted::Partitioned(a, b));
            }
            Fault::RepairAll => {
                let cut = std::mem::take(&mut locked(&self.damage).cut);
                for (a, b) in cut {
                    self.sim.repair(host_name(a), host_name(b));
                }
                done.push(Inflicted::Repaired);
            }
            Fault::Hold(a, b) => {
                self.hold(a, b);
                done.push(Inflicted::Held(a, b));
            }
            Fault::ReleaseAll => {
                let held = std::mem::take(&mut locked(&self.damage).held);
                for (a, b) in held {
                    self.sim.release(host_name(a), host_name(b));
                }
                done.push(Inflicted::Released);
            }
            Fault::FailLinks(rate) => {
                self.set_fail_rate(rate);
                done.push(Inflicted::LinksFailing(rate));
            }
        }
        done
    }

    /// Undoes every fault: links repaired and released, link failures stopped, crashed nodes
    /// restarted. Links that failed at random recover at the configured repair rate.
    pub fn heal(&mut self) {
        self.set_fail_rate(0.0);
        let Damage { down, cut, held } = std::mem::take(&mut *locked(&self.damage));
        for (a, b) in cut {
            self.sim.repair(host_name(a), host_name(b));
        }
        for (a, b) in held {
            self.sim.release(host_name(a), host_name(b));
        }
        for node in down {
            self.sim.bounce(host_name(node));
        }
    }
}

/// Stops `coordinator`'s actor service, if it runs one: its host and the grid hub hold each other, so
/// without this a crashed node's coordinator (and its socket) would outlive its host. It sends and
/// proposes nothing, so a crash stays a kill -9.
fn stop_actors(coordinator: &Coordinator) {
    if let Some(service) = crate::actors::ActorService::of(coordinator) {
        service.stop();
    }
}

impl Drop for SimCluster<'_> {
    fn drop(&mut self) {
        for coordinator in locked(&self.coordinators).values() {
            stop_actors(coordinator);
        }
    }
}

async fn run_host(plan: HostPlan) -> turmoil::Result {
    let node = plan.mesh.node;
    let incarnation = {
        let mut starts = locked(&plan.starts);
        *starts += 1;
        *starts - 1
    };
    let socket = SimUdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SIM_PORT)).await?;
    let mut quinn_seed = [0u8; 32];
    quinn_seed[..8].copy_from_slice(&plan.seed.to_le_bytes());
    quinn_seed[8..16].copy_from_slice(&node.0.to_le_bytes());
    // A restarted node issues new connection ids and keys, as a real one would: peers may still
    // hold the old run's.
    quinn_seed[16..20].copy_from_slice(&incarnation.to_le_bytes());
    let members = plan.mesh.members.clone();
    let mesh = Mesh::start(plan.mesh, &plan.credentials, MeshSocket::Abstract { socket, seed: quinn_seed })?;
    let mut events = mesh.subscribe();
    locked(&plan.meshes).insert(node, mesh.clone());
    let mut _worker = None;
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
            initialize: plan.founder,
        };
        let coordinator =
            Coordinator::start(config, mesh, std::sync::Arc::new(crate::service::hub::GridHub::new(node))).await?;
        if let Some(rate) = plan.lease_clock_rate {
            coordinator.set_lease_clock_rate(rate);
        }
        locked(&plan.coordinators).insert(node, coordinator.clone());
        if let Some(grid) = &plan.grid {
            // Held for as long as this host runs.
            let rate = plan.lease_clock_rate.unwrap_or_default();
            _worker = Some(grid::start(grid, node, &coordinator, plan.seed, rate, &plan.gauges).await?);
        }
        if let Some(workload) = &plan.workload {
            tokio::spawn(workload(node, coordinator));
        }
    }
    loop {
        match events.recv().await {
            Ok(event) => {
                let at_ms = crate::clock::unix_millis().saturating_sub(crate::clock::SIM_EPOCH_MS);
                locked(&plan.trace).push(TraceEntry { at_ms, observer: node, incarnation, event });
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// Creates the persistent node `path` with `data` through `coordinator`, retrying every 50 ms until
/// it is created or found to exist (a client's setup in simulated workloads, which run through
/// faults).
pub async fn create_until_present(coordinator: &Coordinator, path: crate::registry::ZPath, data: &[u8]) {
    loop {
        let create = crate::state::Command::Create {
            path: path.clone(),
            data: data.to_vec(),
            mode: crate::registry::CreateMode::Persistent,
            session: None,
            ttl_ms: None,
        };
        match coordinator.write(create).await {
            Ok(Ok(_)) | Ok(Err(crate::registry::RegistryError::NodeExists { .. })) => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A simulated run's data directory (for [`SimConfig::registry_dir`]): its own for every run, since
/// runs of one seed may overlap (a swarm thread and a replay test); on tmpfs when there is one (fsync
/// costs nothing there, and simulated time does not move during it anyway); removed when dropped,
/// a failing run's too.
pub struct RunDir(PathBuf);

impl RunDir {
    /// A fresh, empty directory for a run of test `label` with `seed`.
    pub fn new(label: &str, seed: u64) -> RunDir {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("gk-sim-{label}-{}-{run}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        RunDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
