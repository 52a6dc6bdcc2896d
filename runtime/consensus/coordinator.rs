//! The coordinator: one openraft instance per node, its storage, its network over the mesh, and
//! the registry API on top (writes, reads at two consistencies, sessions, watches).
//!
//! Followers serve linearizable reads themselves: they ask the leader for a read index and wait
//! until they have applied it. The leader answers from its lease when it holds one (no quorum round,
//! see [`super::lease`]) and with a quorum round (ReadIndex) otherwise; its own reads take the lease
//! directly. A follower that reads often also gets a read lease from the leader with its read index
//! ([`super::follower_lease`]): while it holds one, it serves linearizable reads from its own log
//! with no round trip. Writes and keepalives go to the leader, forwarded transparently; callers
//! never see "not leader".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Config, ReadPolicy, ServerState, SnapshotPolicy};
use tokio::task::JoinSet;

use super::disk::Disk;
use super::follower_lease::held_until;
use super::lease::{ClockRate, Committed, LeaderView, Lease, LeaseRule};
use super::log_store::LogStore;
use super::membership::{self as plan, MemberRecord, MembershipView, RecordState, MEMBERS_PATH};
use super::network::MeshNetwork;
use super::observer::Observer;
pub use super::observer::{NoObserver, StateObserver};
use super::read_batch::{ReadBatch, Round};
use super::read_gate::ReadGate;
use super::request::{Consistency, CoordinatorError, OpenedSession, ReadOp, ReadResult, Replication, Reply, Request};
use super::rpc::{self, decode, encode, RpcClient, RpcKind};
use super::session_draw::SessionRng;
use super::state_machine::StateMachine;
use super::telemetry;
use super::types::{RaftRuntime, TypeConfig};
use super::watch_hub::WatchHub;
use crate::clock::{monotonic, unix_millis, Clock, Stopwatch};
use crate::ids::{Millis, NodeId};
use crate::mesh::{Mesh, PeerAddr};
use crate::registry::session::SessionTracker;
use crate::registry::{Registry, RegistryError, RegistryLimits, SessionId, SessionSecret, WatchKind, WatcherId};
use crate::state::{Applied, ClusterSettings, Command, Outcome, Proposal, ReplicatedState, TableLimits};
use crate::wire::TrafficClass;

/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig, Arc<StateMachine>>;

/// How long a write or read may look for a leader before failing as unavailable.
const LEADER_SEARCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for this node to apply a write the leader reports committed, in `write_at`.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(10);
/// A follower asks for a read lease with its read index only if its previous read-index round began
/// this recently (lease clock): a lone read does not hold the leader's writes back for a lease.
const LEASE_ASK_WITHIN: Duration = Duration::from_secs(1);
/// A follower renews its read lease in the background once this little of it is left.
const LEASE_RENEW_AHEAD: Duration = Duration::from_millis(60);
/// Longest a follower's lease read waits to apply its log's end before it asks the leader instead
/// (an entry of a deposed leader's that will never commit would hold it forever).
const LEASE_READ_WAIT_MAX: Duration = Duration::from_millis(50);
/// How many entries a follower's acknowledged log may lag the committed index and still be granted a
/// read lease (one behind by more is catching up, or installing a snapshot: it would hold writes back).
const LEASE_LAG_MAX: u64 = 1_024;
/// How long a follower stops asking for read leases after the leader could not answer one (a leader
/// of an earlier build, during a rolling upgrade, cannot decode the request).
const LEASE_ASK_BACKOFF: Duration = Duration::from_secs(1);

/// Deadline of one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between attempts while no leader is known.
const LEADER_RETRY_WAIT: Duration = Duration::from_millis(20);
/// A member counts as alive for a membership change only if it acknowledged a leader heartbeat
/// this recently (heartbeats go every 20 ms).
const MEMBER_ACK_FRESH: Duration = Duration::from_millis(150);
/// How often a node rereads the retired ids its mesh refuses, besides on every membership change.
const MEMBERSHIP_RECHECK: Duration = Duration::from_millis(500);
/// Period of the leader's session and TTL checks.
const LEADER_DUTY_INTERVAL: Duration = Duration::from_millis(50);
/// Gauges are refreshed every this many duty ticks (every 500 ms), on every node.
const METRICS_EVERY_TICKS: u32 = 10;
/// TTL nodes expired per proposal.
const TTL_EXPIRIES_PER_PROPOSAL: usize = 256;
/// Draws of a session id per open. Ids are 53 random bits, so even one retry is rare (a collision
/// needs millions of open sessions); the bound only stops a broken generator from looping.
const SESSION_OPEN_ATTEMPTS_MAX: usize = 8;

/// Raft timing.
#[derive(Debug, Clone, Copy)]
pub struct RaftTimings {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
}

impl Default for RaftTimings {
    /// 20 ms heartbeats and 90–180 ms election timeouts: a dead leader is replaced in about 0.3 s
    /// (its lease, the election timeout, then one round of votes), well inside the 0.5 s goal.
    fn default() -> Self {
        RaftTimings { heartbeat_ms: 20, election_min_ms: 90, election_max_ms: 180 }
    }
}

/// What a coordinator needs to start.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// This node.
    pub node: NodeId,
    /// The voters and their mesh addresses (`HOST:PORT`, names kept as names).
    pub voters: BTreeMap<NodeId, crate::mesh::PeerAddr>,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Registry bounds.
    pub limits: RegistryLimits,
    /// Raft timing.
    pub timings: RaftTimings,
    /// Seed of openraft's random choices (election timeouts).
    pub seed: u64,
    /// Commit each write inline instead of through the group committer, and build snapshots inline
    /// (deterministic simulation).
    pub inline_disk: bool,
    /// Log entries since the last snapshot that trigger a new one (and let older entries be purged),
    /// before this node's stagger (a tenth more for each step of its id mod 4).
    pub snapshot_logs: u64,
    /// Task table bounds.
    pub grid_limits: TableLimits,
    /// Seed of the session ids and secrets this node draws, in simulation (so a seed replays the
    /// run); `None` draws them from the operating system, as a real node must.
    pub session_seed: Option<u64>,
    /// Whether this node may initialise a fresh cluster with `voters` (the lowest voter of a first
    /// start does). A node joining a running cluster never does: the leader adds it.
    pub initialize: bool,
}

/// Default of [`CoordinatorConfig::snapshot_logs`]: large enough that snapshots are rare under steady
/// load, small enough that a restarted follower's catch-up and the in-memory log tail stay bounded.
/// ZooKeeper's `snapCount` and etcd's `--snapshot-count` default to the same 100,000. (It was 20,000
/// until the log moved to segment files: at 5,000 single submissions/s a node then snapshotted
/// every 4 s or so, and each snapshot was the tail of submit → start.)
pub const SNAPSHOT_LOGS_DEFAULT: u64 = 100_000;

/// Bytes of log held since the last purge that also make a snapshot due, before this node's stagger
/// (as for the entry count): the in-memory log tail stays near this however large its entries are.
pub const SNAPSHOT_LOG_BYTES: u64 = 64 << 20;

/// How the leader confirmed the read indexes it gave out (for tests and `/metrics`).
#[derive(Debug, Default)]
struct ReadIndexCounters {
    lease: std::sync::atomic::AtomicU64,
    quorum: std::sync::atomic::AtomicU64,
    follower_lease: std::sync::atomic::AtomicU64,
}

/// Read indexes this node gave out as the leader, by how it confirmed its leadership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadIndexCounts {
    /// From its lease, without a quorum round.
    pub lease: u64,
    /// With a quorum round (ReadIndex), the lease not held.
    pub quorum: u64,
    /// Reads this node served as a follower from a read lease the leader granted it: no read index
    /// asked for.
    pub follower_lease: u64,
}

/// The leader's lease as a read found it held.
#[derive(Debug, Clone, Copy)]
struct LeaderLease {
    read_index: u64,
    /// Its end on the lease clock (`None`: a sole voter's, which never ends).
    until: Option<Duration>,
    /// The lease clock when it was checked.
    now: Duration,
    term: u64,
}

/// A read lease this follower holds.
#[derive(Debug, Clone, Copy)]
struct HeldLease {
    /// The reading of this node's lease clock at which it ends.
    until: Duration,
    /// The read index it came with: every read under it waits for this much at least.
    read_index: u64,
}

struct Inner {
    node: NodeId,
    read_index: Arc<ReadBatch>,
    /// The leader lease's parameters.
    lease: LeaseRule,
    /// The follower read leases this node granted as the leader, and its lease clock (whose rate is
    /// always 10⁶ ppm but in simulation, see [`Coordinator::set_lease_clock_rate`]).
    gate: Arc<ReadGate>,
    /// The read lease this node holds as a follower, if any.
    held: Mutex<Option<HeldLease>>,
    /// Lease-clock reading (µs, plus one; 0: never) at which this node last began a read-index round.
    last_round: std::sync::atomic::AtomicU64,
    /// Whether a background renewal of the read lease is out.
    renewing: std::sync::atomic::AtomicBool,
    /// Lease-clock reading (µs) before which this node asks for no read lease ([`LEASE_ASK_BACKOFF`]).
    lease_backoff_until: std::sync::atomic::AtomicU64,
    /// This node's log, for the index of its last entry.
    log: LogStore,
    /// Whether this node restarted with a vote on disk: it grants no vote until
    /// [`LeaseRule::votes_open`] (see [`super::lease`], "Derivation").
    votes_guarded: bool,
    read_counts: ReadIndexCounters,
    raft: Raft,
    machine: Arc<StateMachine>,
    rpc: RpcClient,
    hub: Arc<WatchHub>,
    above: Arc<dyn StateObserver>,
    tracker: Arc<Mutex<SessionTracker>>,
    clock: Clock,
    tasks: Mutex<JoinSet<()>>,
    session_rng: Mutex<SessionRng>,
    progress: Mutex<super::readiness::Progress>,
    /// What this node's flags ask the cluster-wide settings to be (committed only by a cluster's
    /// first leader).
    configured_settings: ClusterSettings,
    /// The members this node was started with: the mesh's peers until a membership is known.
    seeds: BTreeMap<NodeId, PeerAddr>,
    /// Held while the leader carries out a membership change: one at a time.
    membership_lock: Arc<tokio::sync::Mutex<()>>,
    /// Set once this node has applied its own removal.
    removed: std::sync::atomic::AtomicBool,
}

/// A node's coordinator. Cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("node", &self.inner.node).finish_non_exhaustive()
    }
}

/// Consensus health, for `/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConsensusStatus {
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Index of the last entry known committed.
    pub commit_index: u64,
    /// Index of the last entry applied here.
    pub applied_index: u64,
    /// Whether this node leads.
    pub is_leader: bool,
}

/// Why a coordinator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage could not be opened.
    #[error("coordinator storage in {dir}: {reason}")]
    Storage {
        /// The data directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// openraft refused to start.
    #[error("consensus: {0}")]
    Raft(String),
}

/// Entries between this node's snapshots: `snapshot_logs` plus a tenth of it for each step of the
/// node id (mod 4), so the nodes of a cluster do not all encode, write and purge behind a snapshot at
/// the same index at the same moment (on shared disks and cores that stalled every node at once; with
/// one node busy, the other two still make a quorum).
fn staggered_snapshot_logs(snapshot_logs: u64, node: NodeId) -> u64 {
    snapshot_logs.saturating_add(snapshot_logs / 10 * (node.0 % 4))
}

fn raft_config(timings: RaftTimings, snapshot_logs: u64, node: NodeId) -> Result<Config, StartError> {
    Config {
        cluster_name: "gridkeeper".into(),
        heartbeat_interval: timings.heartbeat_ms,
        election_timeout_min: timings.election_min_ms,
        election_timeout_max: timings.election_max_ms,
        max_payload_entries: 1024,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(staggered_snapshot_logs(snapshot_logs, node)),
        max_in_snapshot_log_to_keep: (snapshot_logs / 10).min(2_000),
        purge_batch_size: 256,
        // A restarted leader stands for election like any other node. Restoring its leadership
        // without one would let it answer read-index requests from a committed index that may lag
        // what it acknowledged before the crash (the committed mark is persisted lazily, see
        // `disk::Disk::set_lazily`): a linearizable read would miss acknowledged writes. The new
        // term's blank entry commits everything before it, as standard Raft has it.
        enable_leader_restore: Some(false),
        ..Config::default()
    }
    .validate()
    .map_err(|error| StartError::Raft(error.to_string()))
}

impl Coordinator {
    /// Opens storage, starts openraft over `mesh`, and (on the lowest-id voter of a fresh cluster)
    /// initialises the voter set. `observer` hears of every applied entry (see [`StateObserver`]).
    ///
    /// # Errors
    /// [`StartError`] if storage cannot be opened or openraft refuses to start.
    pub async fn start(
        config: CoordinatorConfig,
        mesh: Mesh,
        observer: Arc<dyn StateObserver>,
    ) -> Result<Coordinator, StartError> {
        let storage_error = |reason: String| StartError::Storage { dir: config.data_dir.display().to_string(), reason };
        let disk = if config.inline_disk { Disk::open_inline(&config.data_dir) } else { Disk::open(&config.data_dir) };
        let disk = disk.map_err(|error| storage_error(error.to_string()))?;
        let log = LogStore::load(disk, staggered_snapshot_logs(SNAPSHOT_LOG_BYTES, config.node))
            .map_err(|error| storage_error(error.to_string()))?;
        // A node that voted or followed before may have acknowledged a leader whose lease counts on
        // it; that stamp died with its process, so it keeps its votes closed for a window.
        let votes_guarded = {
            use openraft::storage::RaftLogReader;
            let mut reader = log.clone();
            reader.read_vote().await.map_err(|error| storage_error(error.to_string()))?.is_some()
        };
        let hub = Arc::new(WatchHub::default());
        let tracker = Arc::new(Mutex::new(SessionTracker::default()));
        let clock = Clock::start();
        let gate = Arc::new(ReadGate::new(clock.instant_at(Millis(0))));
        let above = observer;
        let observer = Arc::new(Observer { hub: hub.clone(), above: above.clone(), tracker: tracker.clone(), clock });
        // Every replica applies with the defaults until the cluster-wide settings are committed, so
        // nodes started with different flags never diverge.
        let machine = StateMachine::open(&config.data_dir, observer, gate.clone(), config.inline_disk)
            .map_err(|error| storage_error(error.to_string()))?;
        if let Some(committed) = machine.read_state(|state| state.settings()) {
            if committed != ClusterSettings::new(config.limits, config.grid_limits) {
                tracing::warn!(
                    ?committed,
                    "this node's limit flags differ from the committed cluster-wide settings, which apply"
                );
            }
        }
        let session_rng = SessionRng::new(config.session_seed, machine.applied_index());
        let rpc = RpcClient::new(mesh.clone());
        let raft_config = Arc::new(raft_config(config.timings, config.snapshot_logs, config.node)?);
        let node = config.node;
        let lease = LeaseRule::new(Duration::from_millis(raft_config.election_timeout_max));
        let raft = RaftRuntime::scope(
            config.seed,
            Raft::new(node.0, raft_config, MeshNetwork::new(rpc.clone(), gate.clone()), log.clone(), machine.clone()),
        )
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;
        if votes_guarded {
            raft.runtime_config().elect(false);
        }
        let inner = Arc::new(Inner {
            node,
            read_index: Arc::default(),
            lease,
            gate,
            held: Mutex::new(None),
            last_round: std::sync::atomic::AtomicU64::new(0),
            renewing: std::sync::atomic::AtomicBool::new(false),
            lease_backoff_until: std::sync::atomic::AtomicU64::new(0),
            log,
            votes_guarded,
            read_counts: ReadIndexCounters::default(),
            raft,
            machine,
            rpc,
            hub,
            above,
            tracker,
            clock,
            tasks: Mutex::new(JoinSet::new()),
            session_rng: Mutex::new(session_rng),
            progress: Mutex::default(),
            configured_settings: ClusterSettings::new(config.limits, config.grid_limits),
            seeds: config.voters.clone(),
            membership_lock: Arc::default(),
            removed: std::sync::atomic::AtomicBool::new(false),
        });
        let coordinator = Coordinator { inner };
        let inbound = mesh
            .take_inbound(TrafficClass::Consensus)
            .ok_or_else(|| StartError::Raft("consensus stream already taken".into()))?;
        {
            let mut tasks = coordinator.tasks();
            let handler = Arc::new(coordinator.clone());
            tasks.spawn(rpc::serve(coordinator.inner.rpc.clone(), inbound, handler));
            tasks.spawn(coordinator.clone().leader_duties());
            tasks.spawn(coordinator.clone().read_index_rounds());
            tasks.spawn(coordinator.clone().announce_lifted_commits());
            tasks.spawn(coordinator.clone().snapshot_large_logs());
            tasks.spawn(coordinator.clone().follow_membership());
            if votes_guarded {
                tasks.spawn(coordinator.clone().open_votes());
            }
        }
        metrics::counter!("gridkeeper_registry_read_index_total", "via" => "lease").increment(0);
        metrics::counter!("gridkeeper_registry_read_index_total", "via" => "quorum").increment(0);
        metrics::counter!("gridkeeper_registry_read_index_total", "via" => "follower_lease").increment(0);
        let lowest = config.voters.keys().next().copied();
        if config.initialize
            && lowest == Some(node)
            && !coordinator.inner.raft.is_initialized().await.map_err(|error| StartError::Raft(error.to_string()))?
        {
            let members: BTreeMap<u64, BasicNode> =
                config.voters.iter().map(|(id, addr)| (id.0, BasicNode::new(addr.to_string()))).collect();
            if let Err(error) = coordinator.inner.raft.initialize(members).await {
                tracing::info!(%node, %error, "cluster already initialised");
            }
        }
        Ok(coordinator)
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.inner.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// The cluster-wide settings this node's flags ask for (see [`crate::state::ClusterSettings`]).
    pub fn configured_settings(&self) -> ClusterSettings {
        self.inner.configured_settings
    }

    /// The local watch hub.
    pub fn watches(&self) -> &Arc<WatchHub> {
        &self.inner.hub
    }

    /// Stops openraft and every coordinator task.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
        let mut tasks = std::mem::take(&mut *self.tasks());
        tasks.shutdown().await;
    }

    /// The openraft handle (tests, tooling).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Consensus health as this node sees it.
    pub fn status(&self) -> ConsensusStatus {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let cut_off = self.cut_off(&metrics);
        ConsensusStatus {
            leader: metrics.current_leader.filter(|_| !cut_off),
            term: metrics.current_term,
            commit_index: metrics.local_committed.map_or(0, |id| id.index),
            applied_index: self.inner.machine.applied_index(),
            is_leader: metrics.state == ServerState::Leader && !cut_off,
        }
    }

    /// The learners (members that replicate the log but do not vote) of the membership this node
    /// knows, with their mesh addresses.
    pub fn learners(&self) -> Vec<(NodeId, String)> {
        self.members_where(false)
    }

    /// The voters (`voters`) or the learners of the membership this node knows, with addresses.
    fn members_where(&self, voters: bool) -> Vec<(NodeId, String)> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let ids: Vec<u64> = if voters { membership.voter_ids().collect() } else { membership.learner_ids().collect() };
        ids.into_iter()
            .map(|id| {
                let addr = membership.get_node(&id).map(|node| node.addr.clone()).unwrap_or_default();
                (NodeId(id), addr)
            })
            .collect()
    }

    /// The leader's replication view (asked of the leader, wherever this runs).
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] if no leader answers.
    pub async fn replication(&self) -> Result<Replication, CoordinatorError> {
        match self.request(Request::Replication).await? {
            Reply::Replication(replication) => Ok(replication),
            other => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
        }
    }

    /// The voters of the committed membership this node knows, with their mesh addresses.
    pub fn voters(&self) -> Vec<(NodeId, String)> {
        self.members_where(true)
    }

    /// Runs `read` on the local registry, as of now (no consistency wait).
    pub fn read_local<T>(&self, read: impl FnOnce(&Registry) -> T) -> T {
        self.inner.machine.read(read)
    }

    /// Runs `read` on the local replicated state (registry and task table), as of now.
    pub fn read_state<T>(&self, read: impl FnOnce(&ReplicatedState) -> T) -> T {
        self.inner.machine.read_state(read)
    }

    /// The observer this coordinator was started with, for the layer that installed it (downcast it
    /// with `Arc::downcast`).
    pub fn observer(&self) -> Arc<dyn std::any::Any + Send + Sync> {
        self.inner.above.clone().into_any()
    }

    /// Whether this node leads now: openraft's leader, and acknowledged by a quorum within its lease
    /// (see [`Self::cut_off`]).
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        metrics.state == ServerState::Leader && !self.cut_off(&metrics)
    }

    /// Whether this node is openraft's leader but no quorum acknowledged it within its lease (the
    /// election timeout): it is cut off, the others have elected a new leader or are about to.
    /// openraft keeps such a leader in its state (it refuses proposals and regains them with the
    /// next quorum acknowledgement); this node then reports no leader (`/status`, `/ready`, the
    /// ZooKeeper port's `srvr`) and runs no leader duty: it has stepped down as far as anyone can
    /// tell, until a quorum answers it again or it learns of the new term.
    fn cut_off(&self, metrics: &openraft::RaftMetrics<TypeConfig>) -> bool {
        if metrics.state != ServerState::Leader {
            return false;
        }
        let membership = metrics.membership_config.membership();
        if membership.voter_ids().all(|voter| voter == self.inner.node.0) {
            return false;
        }
        let lease = Duration::from_millis(self.inner.raft.config().election_timeout_max);
        metrics
            .last_quorum_acked
            .as_ref()
            .is_some_and(|acked| openraft::async_runtime::Instant::elapsed(&**acked) > lease)
    }

    /// The committed index a linearizable read may be served at, if this node leads and holds its
    /// lease ([`LeaseRule::check`]); `None` sends the read to a quorum round. Counted when held.
    fn lease_read_index(&self) -> Option<u64> {
        self.leader_lease().map(|held| held.read_index)
    }

    /// The leader's lease, if this node leads and holds one ([`LeaseRule::check`]). Counted when held.
    fn leader_lease(&self) -> Option<LeaderLease> {
        let rate = self.inner.gate.rate();
        // `now` is read before the acknowledgement's age: a later age only makes `acked` earlier.
        let now = rate.scale(self.since_origin());
        let metrics = self.inner.raft.metrics();
        let view = {
            let metrics = metrics.borrow_watched();
            let me = self.inner.node.0;
            let joint = metrics.membership_config.membership().get_joint_config();
            let sole_voter = joint.len() == 1 && joint[0].len() == 1 && joint[0].contains(&me);
            let acked = metrics
                .last_quorum_acked
                .as_ref()
                .map(|acked| now.saturating_sub(rate.scale(openraft::async_runtime::Instant::elapsed(&**acked))));
            let committed = metrics.local_committed.as_ref().map(|id| Committed {
                // An entry proposed by another node with the same term cannot be committed while
                // this node leads that term; the check costs nothing.
                term: if id.committed_leader_id().node_id == me { id.committed_leader_id().term } else { 0 },
                index: id.index(),
            });
            LeaderView {
                now,
                leading: metrics.state == ServerState::Leader && metrics.current_leader == Some(me),
                term: metrics.current_term,
                sole_voter,
                acked,
                committed,
            }
        };
        match self.inner.lease.check(&view) {
            Lease::Held { read_index, until } => {
                self.inner.read_counts.lease.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::counter!("gridkeeper_registry_read_index_total", "via" => "lease").increment(1);
                Some(LeaderLease { read_index, until, now, term: view.term })
            }
            Lease::NotHeld(_) => None,
        }
    }

    /// As the leader: a read index for follower `from`, with a read lease granted to it when the
    /// leader's own lease can back one (see [`super::follower_lease`]).
    fn read_index_with_lease(&self, from: NodeId) -> Option<Reply> {
        let held = self.leader_lease()?;
        // Only a member the leader replicates to, and one that keeps up with it, may hold writes back.
        let member =
            self.inner.raft.metrics().borrow_watched().membership_config.membership().get_node(&from.0).is_some();
        let floor = held.read_index.saturating_sub(LEASE_LAG_MAX);
        let granted = held
            .until
            .filter(|_| member)
            .and_then(|until| self.inner.gate.grant(held.term, from.0, held.now, until, floor));
        Some(match granted {
            Some(remaining) => Reply::ReadIndexLease {
                index: held.read_index,
                lease_us: u64::try_from(remaining.as_micros()).unwrap_or(u64::MAX),
            },
            None => Reply::ReadIndex(held.read_index),
        })
    }

    /// As a follower: the read index the read lease this node holds lets it serve a read at once, if
    /// it holds one: its log's last index, or the lease's own read index if that is higher. Counted.
    fn follower_lease_index(&self) -> Option<u64> {
        let now = self.inner.gate.now();
        let held = (*self.inner.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))?;
        if now >= held.until {
            return None;
        }
        if held.until.saturating_sub(now) < LEASE_RENEW_AHEAD
            && !self.inner.renewing.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.ask_read_index(true).await;
                this.inner.renewing.store(false, std::sync::atomic::Ordering::SeqCst);
            });
        }
        self.inner.read_counts.follower_lease.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("gridkeeper_registry_read_index_total", "via" => "follower_lease").increment(1);
        Some(self.inner.log.last_index().unwrap_or(0).max(held.read_index))
    }

    /// Asks the leader for a read index, and for a read lease with it if `lease`; keeps a lease the
    /// leader grants. A lease is asked for once, straight from the leader this node knows; if that
    /// leader cannot answer it (an earlier build, or no leader), the read index is asked for alone,
    /// with the usual retries, and no lease for [`LEASE_ASK_BACKOFF`].
    async fn ask_read_index(&self, lease: bool) -> Result<u64, CoordinatorError> {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = self.inner.gate.now();
        let sent_us = u64::try_from(sent.as_micros()).unwrap_or(u64::MAX);
        let leader = self.inner.raft.metrics().borrow_watched().current_leader;
        let asks_lease = lease && sent_us >= self.inner.lease_backoff_until.load(Relaxed);
        if let (true, Some(leader)) = (asks_lease, leader.filter(|&leader| leader != self.inner.node.0)) {
            match self.forward(NodeId(leader), &Request::ReadIndexLease).await {
                Reply::ReadIndexLease { index, lease_us } => {
                    let until = held_until(sent, Duration::from_micros(lease_us));
                    let mut held = self.inner.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if held.is_none_or(|held| held.until < until) {
                        *held = Some(HeldLease { until, read_index: index });
                    }
                    return Ok(index);
                }
                Reply::ReadIndex(index) => return Ok(index),
                _ => {
                    let backoff = u64::try_from(LEASE_ASK_BACKOFF.as_micros()).unwrap_or(u64::MAX);
                    self.inner.lease_backoff_until.store(sent_us.saturating_add(backoff), Relaxed);
                }
            }
        }
        match self.request(Request::ReadIndex).await? {
            Reply::ReadIndex(index) => Ok(index),
            other => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
        }
    }

    /// Re-sends the commit index to followers whenever it had been cut for a lease holder that has
    /// since caught up (openraft sends it again only when it moves).
    async fn announce_lifted_commits(self) {
        loop {
            self.inner.gate.lifted().await;
            if self.inner.raft.trigger().heartbeat().await.is_err() {
                return;
            }
        }
    }

    /// Asks openraft for a snapshot each time the log grows by its byte bound.
    async fn snapshot_large_logs(self) {
        loop {
            self.inner.log.snapshot_due().await;
            if self.inner.raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }

    /// Time on the monotonic clock since this coordinator's origin (taken before openraft started).
    fn since_origin(&self) -> Duration {
        self.inner.gate.since_origin()
    }

    /// Whether this node may grant votes: always, unless it restarted with a vote on disk and its
    /// clock has not yet run a whole lease window since (see [`super::lease`]).
    fn votes_open(&self) -> bool {
        !self.inner.votes_guarded || self.inner.lease.votes_open(Duration::ZERO, self.since_origin())
    }

    /// Turns this node's election timer back on once its votes open (it was off since the start).
    async fn open_votes(self) {
        let at = self.inner.clock.instant_at(Millis(0)) + self.inner.lease.vote_guard() + Duration::from_millis(1);
        tokio::time::sleep_until(at).await;
        self.inner.raft.runtime_config().elect(true);
        tracing::debug!(node = %self.inner.node, "votes open after the restart guard");
    }

    /// Read indexes this node gave out as the leader, by how it confirmed its leadership.
    pub fn read_index_counts(&self) -> ReadIndexCounts {
        let counts = &self.inner.read_counts;
        ReadIndexCounts {
            lease: counts.lease.load(std::sync::atomic::Ordering::Relaxed),
            quorum: counts.quorum.load(std::sync::atomic::Ordering::Relaxed),
            follower_lease: counts.follower_lease.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Simulation only: makes the clock this node's lease reads run at `rate` of the monotonic
    /// clock's rate, to show what the drift bound buys (`tests/sim_lease.rs`). Never set on a real
    /// node.
    #[doc(hidden)]
    pub fn set_lease_clock_rate(&self, rate: ClockRate) {
        self.inner.gate.set_rate(rate);
    }

    /// The mesh this coordinator runs over.
    pub fn mesh(&self) -> &Mesh {
        self.inner.rpc.mesh()
    }

    /// Applies `command` through the leader.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] if no leader is reachable in time (nothing applied);
    /// [`CoordinatorError::OutcomeUnknown`] if it was proposed but the outcome was lost.
    /// The registry's own refusal comes back as `Ok(Err(..))` inside [`Applied`].
    pub async fn write(&self, command: Command) -> Result<Applied, CoordinatorError> {
        super::request::check_entry_size(&command)?;
        let op = telemetry::write_label(&command);
        let started = Stopwatch::start();
        let ticket = self.progress().on_write_started(self.inner.clock.now());
        let waiting = WaitingWrite { coordinator: self, ticket };
        let result = match self.request(Request::Write(command)).await {
            Ok(Reply::Applied(applied)) => Ok(applied),
            Ok(other) => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
            Err(error) => Err(error),
        };
        drop(waiting);
        telemetry::write_done(op, started.elapsed().as_secs_f64());
        result
    }

    /// Applies `command` through the leader and waits until this node has applied it too, so a read
    /// here after the call sees it and its watch events are already queued. Returns the entry's index
    /// (its zxid) with the result.
    ///
    /// # Errors
    /// As [`Self::write`].
    pub async fn write_at(&self, command: Command) -> Result<(Applied, u64), CoordinatorError> {
        super::request::check_entry_size(&command)?;
        let op = telemetry::write_label(&command);
        let started = Stopwatch::start();
        let ticket = self.progress().on_write_started(self.inner.clock.now());
        let waiting = WaitingWrite { coordinator: self, ticket };
        let result = match self.request(Request::WriteIndexed(command)).await {
            Ok(Reply::AppliedAt { index, applied }) => {
                // Committed; a node cut off from the leader right after may not apply it for a while,
                // and its caller must not wait without bound: it learns the outcome elsewhere.
                match tokio::time::timeout(LOCAL_APPLY_WAIT, self.inner.machine.wait_applied(index)).await {
                    Ok(()) => Ok((applied, index)),
                    Err(_) => Err(CoordinatorError::OutcomeUnknown(format!(
                        "entry {index} committed but not applied here within {LOCAL_APPLY_WAIT:?}"
                    ))),
                }
            }
            Ok(other) => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
            Err(error) => Err(error),
        };
        drop(waiting);
        telemetry::write_done(op, started.elapsed().as_secs_f64());
        result
    }

    /// This node's applied index: the zxid of the newest change a read here sees.
    pub fn applied_zxid(&self) -> u64 {
        self.inner.machine.applied_index()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, super::readiness::Progress> {
        self.inner.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this node makes progress now (`GET /ready`): it knows a leader, and no write has waited
    /// on a commit index that does not move.
    ///
    /// # Errors
    /// [`super::readiness::NotReady`] with the reason.
    pub fn readiness(&self) -> Result<(), super::readiness::NotReady> {
        let status = self.status();
        let now = self.inner.clock.now();
        // A leader remembered from before a restart, or one the mesh says is down, is no leader.
        let leader = status
            .leader
            .filter(|&leader| leader == self.inner.node.0 || self.inner.rpc.mesh().is_alive(NodeId(leader)));
        let mut progress = self.progress();
        progress.on_commit_index(now, status.commit_index);
        progress.decide(now, leader)
    }

    /// Reads at the given consistency.
    ///
    /// # Errors
    /// [`CoordinatorError::Registry`] for registry errors (`no node`), [`CoordinatorError::Unavailable`]
    /// if a linearizable read cannot reach a quorum.
    pub async fn read(&self, op: &ReadOp, consistency: Consistency) -> Result<ReadResult, CoordinatorError> {
        telemetry::read_done(consistency == Consistency::Linearizable);
        if consistency == Consistency::Linearizable {
            self.sync().await?;
        }
        self.inner.machine.read(|registry| read_registry(registry, op)).map_err(CoordinatorError::Registry)
    }

    /// Reads and sets a watch in one step, so no change between the two can be missed.
    ///
    /// # Errors
    /// As [`Self::read`], or [`CoordinatorError::Watch`].
    pub async fn read_and_watch(
        &self,
        op: &ReadOp,
        consistency: Consistency,
        watcher: WatcherId,
        kind: WatchKind,
    ) -> Result<ReadResult, CoordinatorError> {
        telemetry::read_done(consistency == Consistency::Linearizable);
        if consistency == Consistency::Linearizable {
            self.sync().await?;
        }
        let path = match op {
            ReadOp::Get(path) | ReadOp::Exists(path) | ReadOp::Children(path) => path.clone(),
        };
        self.inner.machine.read(|registry| {
            let result = read_registry(registry, op);
            // A failed get on a missing node still leaves a watch (for its creation), as `exists` does.
            self.inner
                .hub
                .register(registry, watcher, &path, kind, None)
                .map_err(|error| CoordinatorError::Watch(error.to_string()))?;
            result.map_err(CoordinatorError::Registry)
        })
    }

    /// Waits until this node has applied every write acknowledged before the call (ZooKeeper's `sync`).
    /// The leader holding its lease takes its committed index at once; any other node, or a leader
    /// without its lease, joins the next batch of read-index requests.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] if no quorum confirms a read index in time.
    pub async fn sync(&self) -> Result<(), CoordinatorError> {
        if let Some(index) = self.lease_read_index() {
            self.inner.machine.wait_applied(index).await;
            return Ok(());
        }
        if let Some(index) = self.follower_lease_index() {
            let applied = tokio::time::timeout(LEASE_READ_WAIT_MAX, self.inner.machine.wait_applied(index)).await;
            if applied.is_ok() {
                return Ok(());
            }
        }
        let (receiver, round) = self.inner.read_index.enqueue()?;
        if let Some(round) = round {
            // A round was free: this read runs it here, for every read queued with it.
            self.run_read_round(round).await;
        }
        let index = receiver.await.map_err(|_| CoordinatorError::Unavailable("coordinator stopped".into()))??;
        self.inner.machine.wait_applied(index).await;
        Ok(())
    }

    /// Runs read-index rounds for reads queued while every round was busy; up to
    /// [`super::read_batch::READ_INDEX_ROUNDS_MAX`] rounds overlap (counting those readers run themselves), so batches
    /// grow with load instead of queueing behind one round.
    async fn read_index_rounds(self) {
        loop {
            self.inner.read_index.wake.notified().await;
            while let Some(round) = self.inner.read_index.next_round().await {
                let this = self.clone();
                tokio::spawn(async move { this.run_read_round(round).await });
            }
        }
    }

    /// Asks the leader for a read index (its lease, or a quorum round) and answers every read of `round`.
    async fn run_read_round(&self, round: Round) {
        metrics::histogram!("gridkeeper_registry_read_index_batch").record(round.len() as f64);
        // Ask for a lease too if this node read through a round recently: it reads often.
        let now = u64::try_from(self.inner.gate.now().as_micros()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.inner.last_round.swap(now, std::sync::atomic::Ordering::Relaxed);
        let often = last != 0 && now.saturating_sub(last) < LEASE_ASK_WITHIN.as_micros() as u64;
        let leading = self.inner.raft.metrics().borrow_watched().current_leader == Some(self.inner.node.0);
        round.finish(self.ask_read_index(often && !leading).await);
    }

    /// Opens a session with a random id and secret drawn here (the proposer), drawing again if the
    /// id is taken. Only the caller learns the secret.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] or [`CoordinatorError::OutcomeUnknown`] as for
    /// [`Self::write`]; the registry's refusal (`quota exceeded`) as [`CoordinatorError::Registry`].
    pub async fn open_session(&self, timeout_ms: u64) -> Result<OpenedSession, CoordinatorError> {
        let mut last = CoordinatorError::Unavailable("no session id could be drawn".into());
        for _ in 0..SESSION_OPEN_ATTEMPTS_MAX {
            let drawn = self.inner.session_rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).draw()?;
            let Some((session, secret)) = drawn else { continue };
            match self.write(Command::OpenSessionSecured { session, secret, timeout_ms }).await? {
                Ok(Outcome::SessionOpened { session, timeout_ms }) => {
                    return Ok(OpenedSession { session, secret, timeout_ms })
                }
                Ok(other) => return Err(CoordinatorError::Unavailable(format!("unexpected outcome {other:?}"))),
                Err(error @ RegistryError::SessionExists { .. }) => last = error.into(),
                Err(error) => return Err(error.into()),
            }
        }
        Err(last)
    }

    /// Tells the leader `session`'s client is alive; the leader first checks `secret` against its
    /// replicated state. Returns whether the session is still open.
    ///
    /// # Errors
    /// [`CoordinatorError::Unavailable`] if no leader is reachable; [`RegistryError::NoAuth`] (as
    /// [`CoordinatorError::Registry`]) if the secret is not the session's.
    pub async fn keepalive(&self, session: SessionId, secret: SessionSecret) -> Result<bool, CoordinatorError> {
        match self.request(Request::KeepaliveSecured { session, secret }).await? {
            Reply::Keepalive(alive) => Ok(alive),
            Reply::Refused(error) => Err(CoordinatorError::Registry(error)),
            other => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
        }
    }

    /// The leader's answer to a keepalive: the clock of `session` is refreshed only if `secret` is
    /// its secret, or, with no secret (an earlier version's request), if it is a legacy session.
    fn serve_keepalive(&self, session: SessionId, secret: Option<SessionSecret>) -> Reply {
        if !self.is_leader() {
            return Reply::Unavailable("not the leader".into());
        }
        let checked = self.inner.machine.read(|registry| match secret {
            Some(secret) => registry.check_session_secret(session, &secret),
            None if registry.is_legacy_session(session) => Ok(()),
            None => Err(RegistryError::SessionExpired { session }),
        });
        match checked {
            Ok(()) => {
                let now = self.inner.clock.now();
                let mut tracker = self.inner.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                Reply::Keepalive(tracker.on_heard(now, session))
            }
            Err(RegistryError::SessionExpired { .. }) => Reply::Keepalive(false),
            Err(error) => Reply::Refused(error),
        }
    }

    /// Serves `request` here if this node leads, or forwards it to the leader, retrying while no
    /// leader is known (bounded by [`LEADER_SEARCH_TIMEOUT`]).
    async fn request(&self, request: Request) -> Result<Reply, CoordinatorError> {
        let deadline = monotonic() + LEADER_SEARCH_TIMEOUT;
        loop {
            let leader = self.inner.raft.metrics().borrow_watched().current_leader;
            let attempt = match leader {
                Some(leader) if leader == self.inner.node.0 => self.serve(request.clone()).await,
                Some(leader) => self.forward(NodeId(leader), &request).await,
                None => Reply::Unavailable("no leader".into()),
            };
            match attempt {
                Reply::Unavailable(reason) if monotonic() < deadline => {
                    tracing::debug!(node = %self.inner.node, %reason, "retrying request");
                    tokio::time::sleep(LEADER_RETRY_WAIT).await;
                }
                Reply::Unavailable(reason) => return Err(CoordinatorError::Unavailable(reason)),
                Reply::OutcomeUnknown(reason) => return Err(CoordinatorError::OutcomeUnknown(reason)),
                Reply::EntryTooLarge { bytes, max } => return Err(CoordinatorError::EntryTooLarge { bytes, max }),
                Reply::MembershipRefused(reason) => return Err(CoordinatorError::MembershipRefused(reason)),
                reply => return Ok(reply),
            }
        }
    }

    async fn forward(&self, leader: NodeId, request: &Request) -> Reply {
        if !self.inner.rpc.mesh().is_alive(leader) {
            // Nothing sent yet: safe to retry once a new leader is known.
            return Reply::Unavailable(format!("leader {leader} is down"));
        }
        let body = match encode(request) {
            Ok(body) => body,
            Err(error) => return Reply::Unavailable(error.to_string()),
        };
        let call = self.inner.rpc.call(leader, RpcKind::Forward, body, FORWARD_TIMEOUT);
        let outcome = tokio::select! {
            outcome = call => outcome,
            // A dead or deposed leader will not answer: give up at once rather than wait out the
            // deadline, so clients see a failover in the time it takes to elect, not to time out.
            () = self.leader_lost(leader) => Err(rpc::RpcError::Lost { peer: leader }),
        };
        match outcome {
            Ok(reply) => decode(&reply).unwrap_or_else(|error| Reply::Unavailable(error.to_string())),
            // A write that timed out may have been applied: never retried blindly.
            Err(error @ (rpc::RpcError::Timeout { .. } | rpc::RpcError::Lost { .. }))
                if matches!(
                    request,
                    Request::Write(_)
                        | Request::WriteIndexed(_)
                        | Request::AddMember { .. }
                        | Request::RemoveMember { .. }
                ) =>
            {
                Reply::OutcomeUnknown(error.to_string())
            }
            Err(error) => Reply::Unavailable(error.to_string()),
        }
    }

    /// Resolves once `leader` is no longer this node's view of the leader, or the mesh declares it down.
    async fn leader_lost(&self, leader: NodeId) {
        let mut metrics = self.inner.raft.metrics();
        let mut peers = self.inner.rpc.mesh().subscribe();
        loop {
            if metrics.borrow_watched().current_leader != Some(leader.0) || !self.inner.rpc.mesh().is_alive(leader) {
                return;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                event = peers.recv() => match event {
                    Ok(crate::mesh::PeerEvent::Down(peer)) if peer == leader => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
            }
        }
    }

    /// Serves a request as the leader (or says it is not).
    async fn serve(&self, request: Request) -> Reply {
        let raft = &self.inner.raft;
        match request {
            // The leader checks again what it appends, whoever forwarded it: no entry the consensus
            // stream cannot carry may enter the log.
            Request::Write(command) | Request::WriteIndexed(command)
                if super::request::check_entry_size(&command).is_err() =>
            {
                let bytes = postcard::experimental::serialized_size(&command).unwrap_or(usize::MAX);
                Reply::EntryTooLarge { bytes, max: super::request::PROPOSAL_BYTES_MAX }
            }
            Request::Write(command) => self.propose(command, false).await,
            Request::WriteIndexed(command) => self.propose(command, true).await,
            Request::Keepalive(session) => self.serve_keepalive(session, None),
            Request::KeepaliveSecured { session, secret } => self.serve_keepalive(session, Some(secret)),
            Request::Replication => {
                let metrics = raft.metrics().borrow_watched().clone();
                match (&metrics.replication, metrics.current_leader) {
                    (Some(replication), Some(leader)) if leader == self.inner.node.0 => {
                        Reply::Replication(Replication {
                            leader,
                            last_log_index: metrics.last_log_index.unwrap_or(0),
                            matched: replication
                                .iter()
                                .filter_map(|(&member, matched)| matched.as_ref().map(|id| (member, id.index())))
                                .collect(),
                        })
                    }
                    _ => Reply::Unavailable("not the leader".into()),
                }
            }
            Request::AddMember { id, addr } => self.serve_add_member(id, addr).await,
            Request::RemoveMember { id } => self.serve_remove_member(id).await,
            Request::ReadIndex | Request::ReadIndexLease => {
                if let Some(index) = self.lease_read_index() {
                    return Reply::ReadIndex(index);
                }
                self.inner.read_counts.quorum.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::counter!("gridkeeper_registry_read_index_total", "via" => "quorum").increment(1);
                self.read_index_round().await
            }
        }
    }

    /// A read index confirmed by a quorum round (ReadIndex), for when the lease is not held.
    async fn read_index_round(&self) -> Reply {
        match self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => Reply::ReadIndex(read_log_id.index()),
            // Said in our words: openraft's text lists its internal view of the cluster.
            Err(error) => match error.api_error() {
                Some(openraft::errors::LinearizableReadError::QuorumNotEnough(_)) => {
                    Reply::Unavailable("no quorum confirms this leader: a linearizable read cannot be served".into())
                }
                Some(openraft::errors::LinearizableReadError::ForwardToLeader(_)) => {
                    Reply::Unavailable("not the leader".into())
                }
                None => Reply::Unavailable(error.to_string()),
            },
        }
    }

    /// Proposes `command` as the leader; `indexed` answers with the entry's index.
    async fn propose(&self, command: Command, indexed: bool) -> Reply {
        // The layer above may shape the command from the leader's state; its guard lives as long as
        // the write.
        let above = &self.inner.above;
        let (command, _shaped) = if above.shapes(&command) {
            self.inner.machine.read_state(|state| above.shape(command, state))
        } else {
            (command, None)
        };
        match self.inner.raft.client_write(Proposal { now_ms: unix_millis(), command }).await {
            Ok(response) if indexed => {
                Reply::AppliedAt { index: response.log_id().index(), applied: response.data.result }
            }
            Ok(response) => Reply::Applied(response.data.result),
            Err(error) if error.forward_to_leader().is_some() => {
                if let Some(openraft::errors::ClientWriteError::ForwardToLeader(_)) = error.api_error() {
                    Reply::Unavailable(format!("not the leader: {error}"))
                } else {
                    outcome_unknown(error.to_string())
                }
            }
            Err(error) => outcome_unknown(error.to_string()),
        }
    }

    /// The leader's periodic work: restart session clocks on election, expire silent sessions and
    /// idle TTL nodes. Every node runs it, and refreshes its own gauges from it whether it leads or not.
    async fn leader_duties(self) {
        let mut leading_term = None;
        let mut stepped_down_term = None;
        let mut tick = tokio::time::interval(LEADER_DUTY_INTERVAL);
        let mut ticks: u32 = 0;
        telemetry::register();
        loop {
            tick.tick().await;
            let metrics = self.inner.raft.metrics().borrow_watched().clone();
            let commit_index = metrics.local_committed.map_or(0, |id| id.index);
            self.progress().on_commit_index(self.inner.clock.now(), commit_index);
            // Every node exports its gauges (followers too: a dashboard must see them all).
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(METRICS_EVERY_TICKS) {
                self.record_metrics();
            }
            if metrics.state != ServerState::Leader {
                leading_term = None;
                continue;
            }
            if self.cut_off(&metrics) {
                if stepped_down_term != Some(metrics.current_term) {
                    stepped_down_term = Some(metrics.current_term);
                    tracing::warn!(
                        node = %self.inner.node,
                        term = metrics.current_term,
                        "no quorum acknowledged this leader within its lease: it steps down until one does"
                    );
                }
                leading_term = None;
                continue;
            }
            let now = self.inner.clock.now();
            if leading_term != Some(metrics.current_term) {
                leading_term = Some(metrics.current_term);
                let sessions: Vec<(SessionId, u64)> = self.inner.machine.read(|registry| registry.sessions().collect());
                self.inner.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).on_leadership(now, sessions);
                telemetry::leadership_won();
            }
            let expired = self.inner.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).on_tick(now);
            if !expired.is_empty() {
                let this = self.clone();
                tokio::spawn(async move {
                    let command = Command::ExpireSessions { sessions: expired.clone() };
                    if this.write(command).await.is_err() {
                        this.inner
                            .tracker
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .on_expiry_failed(&expired);
                    }
                });
            }
            let due =
                self.inner.machine.read(|registry| registry.ttl_candidates(unix_millis(), TTL_EXPIRIES_PER_PROPOSAL));
            if !due.is_empty() {
                let _ = self.write(Command::ExpireTtl { paths: due }).await;
            }
            self.membership_duty();
        }
    }

    fn record_metrics(&self) {
        let (znodes, sessions) = self.inner.machine.read(|registry| (registry.znode_count(), registry.session_count()));
        telemetry::record_status(&self.status(), znodes, sessions, self.inner.hub.watch_count());
        self.read_state(|state| self.inner.above.on_metrics(state));
    }
}

/// Membership: the mesh follows it, operators change it, the leader carries changes through.
impl Coordinator {
    /// Adds `id` as a voter at `addr`: the leader records it and adds it as a learner at once; it is
    /// promoted once it is up and caught up ([`plan::next_duty`]). Adding a member already added at
    /// the same address changes nothing.
    ///
    /// # Errors
    /// [`CoordinatorError::MembershipRefused`] (a removed id, a member elsewhere, a full cluster);
    /// unavailable or outcome unknown as for [`Self::write`].
    pub async fn add_member(&self, id: NodeId, addr: &PeerAddr) -> Result<String, CoordinatorError> {
        match self.request(Request::AddMember { id: id.0, addr: addr.to_string() }).await? {
            Reply::MembershipChanged(done) => Ok(done),
            other => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
        }
    }

    /// Removes `id` for good: its record says removed first (so the id is never reused), then it
    /// leaves the voters through a joint configuration.
    ///
    /// # Errors
    /// [`CoordinatorError::MembershipRefused`] if the change would leave no quorum or another is in
    /// flight; unavailable or outcome unknown as for [`Self::write`].
    pub async fn remove_member(&self, id: NodeId) -> Result<String, CoordinatorError> {
        match self.request(Request::RemoveMember { id: id.0 }).await? {
            Reply::MembershipChanged(done) => Ok(done),
            other => Err(CoordinatorError::Unavailable(format!("unexpected reply {other:?}"))),
        }
    }

    /// Whether this node has applied a membership without itself and its own `removed` record: it
    /// is retired for good and should stop.
    pub fn is_removed(&self) -> bool {
        self.inner.removed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The member records this node has applied, by id.
    pub fn member_records(&self) -> BTreeMap<u64, MemberRecord> {
        let Ok(parent) = crate::registry::ZPath::parse(MEMBERS_PATH) else { return BTreeMap::new() };
        self.inner.machine.read(|registry| {
            let Ok((children, _)) = registry.children(&parent) else { return BTreeMap::new() };
            children
                .iter()
                .filter_map(|name| {
                    let id: u64 = name.parse().ok()?;
                    let path = crate::registry::ZPath::parse(&format!("{MEMBERS_PATH}/{name}")).ok()?;
                    let (data, _) = registry.get(&path).ok()?;
                    Some((id, serde_json::from_slice(data).ok()?))
                })
                .collect()
        })
    }

    /// Every member of the membership this node knows (voters, old voters of a joint
    /// configuration, learners) with its mesh address.
    pub fn membership_addrs(&self) -> BTreeMap<NodeId, PeerAddr> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        membership
            .nodes()
            .filter_map(|(&id, node)| match node.addr.parse::<PeerAddr>() {
                Ok(addr) => Some((NodeId(id), addr)),
                Err(error) => {
                    tracing::warn!(member = id, addr = %node.addr, %error, "a member's address does not parse");
                    None
                }
            })
            .collect()
    }

    /// The leader's view for the membership plan.
    fn membership_view(&self) -> MembershipView {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let configs = membership.get_joint_config();
        let voters = configs.last().cloned().unwrap_or_default();
        let joint_old = (configs.len() > 1).then(|| configs[0].clone());
        // Alive: the mesh hears it and, on the leader, it acknowledged a heartbeat just now. The
        // mesh alone takes its silence bound (0.2 s by default) to notice a death, and a removal planned on a
        // dead voter's account would stall in its joint configuration.
        let mesh = self.inner.rpc.mesh();
        let acked_lately = |id: u64| match &metrics.heartbeat {
            Some(heartbeats) => heartbeats
                .get(&id)
                .and_then(Option::as_ref)
                .is_some_and(|acked| openraft::async_runtime::Instant::elapsed(&**acked) <= MEMBER_ACK_FRESH),
            None => true,
        };
        let mut alive: std::collections::BTreeSet<u64> = mesh
            .members()
            .into_iter()
            .filter(|member| member.alive && acked_lately(member.id.0))
            .map(|member| member.id.0)
            .collect();
        alive.insert(self.inner.node.0);
        let matched = metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .filter_map(|(&member, matched)| matched.as_ref().map(|id| (member, id.index())))
                    .collect()
            })
            .unwrap_or_default();
        MembershipView {
            voters,
            joint_old,
            learners: membership.learner_ids().collect(),
            alive,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            matched,
        }
    }

    /// Writes `id`'s record (creating `/gridkeeper/members` first if needed), proposing as the
    /// leader this runs on.
    async fn write_member_record(&self, id: u64, record: &MemberRecord) -> Result<(), CoordinatorError> {
        let path = |text: &str| {
            crate::registry::ZPath::parse(text).map_err(|error| CoordinatorError::Unavailable(error.to_string()))
        };
        let create = |path: crate::registry::ZPath, data: Vec<u8>| Command::Create {
            path,
            data,
            mode: crate::registry::CreateMode::Persistent,
            session: None,
            ttl_ms: None,
        };
        let data = serde_json::to_vec(record).map_err(|error| CoordinatorError::Unavailable(error.to_string()))?;
        let node = path(&format!("{MEMBERS_PATH}/{id}"))?;
        let steps = [
            create(path(plan::CLUSTER_PATH)?, Vec::new()),
            create(path(MEMBERS_PATH)?, Vec::new()),
            create(node.clone(), data.clone()),
        ];
        let mut exists = false;
        for step in steps {
            exists = match self.propose(step, false).await {
                Reply::Applied(Ok(_)) => false,
                Reply::Applied(Err(RegistryError::NodeExists { .. })) => true,
                other => return Err(reply_error(other)),
            };
        }
        if exists {
            match self.propose(Command::Set { path: node, data, version: None }, false).await {
                Reply::Applied(Ok(_)) => {}
                other => return Err(reply_error(other)),
            }
        }
        Ok(())
    }

    async fn serve_add_member(&self, id: u64, addr: String) -> Reply {
        if !self.is_leader() {
            return Reply::Unavailable("not the leader".into());
        }
        let parsed = match addr.parse::<PeerAddr>() {
            Ok(parsed) => parsed,
            Err(error) => return Reply::MembershipRefused(format!("address {addr}: {error}")),
        };
        let _held = self.inner.membership_lock.lock().await;
        let records = self.member_records();
        let view = self.membership_view();
        match plan::check_add(&view, id, &addr, records.get(&id), crate::limits::PEERS_MAX) {
            Err(refusal) => Reply::MembershipRefused(refusal.0),
            Ok(plan::AddPlan::AlreadyMember) => {
                Reply::MembershipChanged(format!("node {id} is already a member at {addr}"))
            }
            Ok(plan::AddPlan::AddLearner) => {
                let record = MemberRecord { state: RecordState::Added, addr: parsed.to_string() };
                if let Err(error) = self.write_member_record(id, &record).await {
                    return error_reply(error);
                }
                match self.inner.raft.add_learner(id, BasicNode::new(parsed.to_string()), false).await {
                    Ok(_) => {
                        tracing::info!(node = %self.inner.node, member = id, %addr, "member added as a learner");
                        Reply::MembershipChanged(format!(
                            "node {id} added at {addr}: it joins as a learner and becomes a voter once caught up"
                        ))
                    }
                    Err(error) => membership_error_reply(error),
                }
            }
        }
    }

    async fn serve_remove_member(&self, id: u64) -> Reply {
        if !self.is_leader() {
            return Reply::Unavailable("not the leader".into());
        }
        let _held = self.inner.membership_lock.lock().await;
        let view = self.membership_view();
        let removal = match plan::check_removal(&view, id) {
            Ok(removal) => removal,
            Err(refusal) => return Reply::MembershipRefused(refusal.0),
        };
        let addr = self.membership_addrs().get(&NodeId(id)).map(ToString::to_string).unwrap_or_default();
        let record = MemberRecord { state: RecordState::Removed, addr };
        if let Err(error) = self.write_member_record(id, &record).await {
            return error_reply(error);
        }
        let changed = match removal {
            plan::RemovalPlan::NotMember => {
                return Reply::MembershipChanged(format!("node {id} is not a member; its id is retired"))
            }
            plan::RemovalPlan::RemoveLearner => {
                self.inner.raft.change_membership(openraft::ChangeMembers::RemoveNodes([id].into()), false).await
            }
            plan::RemovalPlan::RemoveVoter => {
                self.inner.raft.change_membership(openraft::ChangeMembers::RemoveVoters([id].into()), false).await
            }
        };
        match changed {
            Ok(_) => {
                tracing::info!(node = %self.inner.node, member = id, "member removed");
                Reply::MembershipChanged(format!("node {id} removed; its id is never reused"))
            }
            Err(error) => membership_error_reply(error),
        }
    }

    /// The leader's next membership step ([`plan::next_duty`]), carried out in the background
    /// unless a change is already in flight.
    fn membership_duty(&self) {
        let Ok(held) = self.inner.membership_lock.clone().try_lock_owned() else { return };
        let Some(duty) = plan::next_duty(&self.membership_view(), &self.member_records()) else { return };
        let this = self.clone();
        tokio::spawn(async move {
            let raft = &this.inner.raft;
            let outcome = match &duty {
                plan::Duty::Flatten(voters) => {
                    raft.change_membership(openraft::ChangeMembers::ReplaceAllVoters(voters.clone()), false).await
                }
                plan::Duty::RemoveVoter(id) => {
                    raft.change_membership(openraft::ChangeMembers::RemoveVoters([*id].into()), false).await
                }
                plan::Duty::RemoveLearner(id) => {
                    raft.change_membership(openraft::ChangeMembers::RemoveNodes([*id].into()), false).await
                }
                plan::Duty::Promote(id) => {
                    raft.change_membership(openraft::ChangeMembers::AddVoterIds([*id].into()), false).await
                }
            };
            match outcome {
                Ok(_) => tracing::info!(node = %this.inner.node, ?duty, "membership step done"),
                Err(error) => tracing::info!(node = %this.inner.node, ?duty, %error, "membership step not done"),
            }
            drop(held);
        });
    }

    /// Keeps the mesh's peers equal to the membership this node knows (the seeds until it knows
    /// one): a member added is dialed, a member removed is refused.
    async fn follow_membership(self) {
        let mut metrics = self.inner.raft.metrics();
        let mut last = None;
        let mut members = self.inner.seeds.clone();
        loop {
            let current = *metrics.borrow_watched().membership_config.log_id();
            let changed = last.as_ref() != Some(&current);
            if changed {
                members = self.membership_addrs();
                if members.is_empty() {
                    members = self.inner.seeds.clone();
                }
                if let Some(own) = self.inner.seeds.get(&self.inner.node) {
                    members.entry(self.inner.node).or_insert_with(|| own.clone());
                }
                let known = current.is_some() && !self.membership_addrs().is_empty();
                let records = self.member_records();
                let retired =
                    records.get(&self.inner.node.0).is_some_and(|record| record.state == RecordState::Removed);
                if known
                    && retired
                    && !self.membership_addrs().contains_key(&self.inner.node)
                    && !self.inner.removed.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::error!(node = %self.inner.node, "this node was removed from the cluster; its id is retired");
                }
            }
            // Retired ids are refused when they dial in, once this node has applied their records
            // (which may come after the membership entry that removes them is appended); one still
            // in the membership (its removal under way) stays a peer until the membership drops it.
            // Set before the membership below, so that a retired peer it drops is told it is retired.
            let retired: Vec<NodeId> = self
                .member_records()
                .into_iter()
                .filter(|(id, record)| record.state == RecordState::Removed && !members.contains_key(&NodeId(*id)))
                .map(|(id, _)| NodeId(id))
                .collect();
            self.inner.rpc.mesh().set_refused(retired);
            if changed {
                match self.inner.rpc.mesh().set_members(&members) {
                    Ok(()) => last = Some(current),
                    Err(error) => {
                        tracing::warn!(node = %self.inner.node, %error, "the mesh cannot follow the membership")
                    }
                }
            }
            // Removed while cut off, a node may never apply its own retirement nor the membership
            // without it. A peer says so only from its applied (so committed) member records, and a
            // retired id never comes back: one peer's word is proof.
            if !self.inner.removed.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(witness) = self.inner.rpc.mesh().told_retired_by().first().copied() {
                    self.inner.removed.store(true, std::sync::atomic::Ordering::SeqCst);
                    tracing::error!(node = %self.inner.node, %witness, "this node was removed from the cluster; its id is retired");
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(MEMBERSHIP_RECHECK) => {}
            }
        }
    }
}

fn reply_error(reply: Reply) -> CoordinatorError {
    match reply {
        Reply::Applied(Err(error)) => CoordinatorError::Registry(error),
        Reply::OutcomeUnknown(reason) => CoordinatorError::OutcomeUnknown(reason),
        other => CoordinatorError::Unavailable(format!("{other:?}")),
    }
}

fn error_reply(error: CoordinatorError) -> Reply {
    match error {
        CoordinatorError::OutcomeUnknown(reason) => Reply::OutcomeUnknown(reason),
        CoordinatorError::MembershipRefused(reason) => Reply::MembershipRefused(reason),
        other => Reply::Unavailable(other.to_string()),
    }
}

fn membership_error_reply(
    error: openraft::errors::RaftError<TypeConfig, openraft::errors::ClientWriteError<TypeConfig>>,
) -> Reply {
    match error.api_error() {
        Some(openraft::errors::ClientWriteError::ForwardToLeader(_)) => {
            Reply::Unavailable(format!("not the leader: {error}"))
        }
        Some(openraft::errors::ClientWriteError::ChangeMembershipError(change)) => {
            Reply::MembershipRefused(change.to_string())
        }
        _ => Reply::OutcomeUnknown(error.to_string()),
    }
}

/// Marks a write as no longer waiting when its call ends, however it ends (cancellation included).
struct WaitingWrite<'a> {
    coordinator: &'a Coordinator,
    ticket: u64,
}

impl Drop for WaitingWrite<'_> {
    fn drop(&mut self) {
        self.coordinator.progress().on_write_done(self.ticket);
    }
}

fn outcome_unknown(reason: String) -> Reply {
    Reply::OutcomeUnknown(reason)
}

/// Runs a read against a registry.
///
/// # Errors
/// The registry's error (`no node`).
pub fn read_registry(registry: &Registry, op: &ReadOp) -> Result<ReadResult, crate::registry::RegistryError> {
    match op {
        ReadOp::Get(path) => registry.get(path).map(|(data, stat)| ReadResult::Data { data: data.to_vec(), stat }),
        ReadOp::Exists(path) => Ok(ReadResult::Exists(registry.exists(path))),
        ReadOp::Children(path) => {
            registry.children(path).map(|(children, stat)| ReadResult::Children { children, stat })
        }
    }
}

/// A forwarded `Request::ReadIndex` as it travels (postcard: its variant's index).
fn is_read_index(body: &[u8]) -> bool {
    static ENCODED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ENCODED.get_or_init(|| encode(&Request::ReadIndex).unwrap_or_default()) == body
}

/// A forwarded `Request::ReadIndexLease` as it travels.
fn is_read_index_lease(body: &[u8]) -> bool {
    static ENCODED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ENCODED.get_or_init(|| encode(&Request::ReadIndexLease).unwrap_or_default()) == body
}

impl rpc::RpcHandler for Coordinator {
    /// A follower's read index, answered from the lease when this node leads and holds one: nothing
    /// to wait for (a quorum round, when the lease is not held, goes the usual way).
    fn answer_now(&self, from: NodeId, kind: RpcKind, body: &[u8]) -> Option<Result<Vec<u8>, String>> {
        if kind != RpcKind::Forward {
            return None;
        }
        let reply = if is_read_index(body) {
            Reply::ReadIndex(self.lease_read_index()?)
        } else if is_read_index_lease(body) {
            self.read_index_with_lease(from)?
        } else {
            return None;
        };
        Some(encode(&reply).map_err(|error| error.to_string()))
    }

    async fn handle(&self, _from: NodeId, kind: RpcKind, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let raft = &self.inner.raft;
        let text = |error: &dyn std::fmt::Display| error.to_string();
        match kind {
            RpcKind::AppendEntries => {
                let request = decode(&body).map_err(|error| text(&error))?;
                let response = raft.append_entries(request).await.map_err(|error| text(&error))?;
                encode(&response).map_err(|error| text(&error))
            }
            RpcKind::Vote => {
                if !self.votes_open() {
                    return Err("restarted within a lease window: no vote yet".into());
                }
                let request = decode(&body).map_err(|error| text(&error))?;
                let response = raft.vote(request).await.map_err(|error| text(&error))?;
                encode(&response).map_err(|error| text(&error))
            }
            RpcKind::Snapshot => {
                let request: super::network::SnapshotRequest = decode(&body).map_err(|error| text(&error))?;
                let snapshot = super::types::Snapshot { meta: request.meta, snapshot: request.bytes };
                let response =
                    raft.install_full_snapshot(request.vote, snapshot).await.map_err(|error| text(&error))?;
                encode(&response).map_err(|error| text(&error))
            }
            RpcKind::Forward => {
                let request: Request = decode(&body).map_err(|error| text(&error))?;
                encode(&self.serve(request).await).map_err(|error| text(&error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_of_a_cluster_snapshot_at_different_indexes() {
        let at: Vec<u64> = (1..=3).map(|node| staggered_snapshot_logs(20_000, NodeId(node))).collect();
        assert_eq!(at, vec![22_000, 24_000, 26_000]);
        assert_eq!(staggered_snapshot_logs(20_000, NodeId(4)), 20_000);
        assert_eq!(staggered_snapshot_logs(u64::MAX, NodeId(3)), u64::MAX);
        assert_eq!(staggered_snapshot_logs(5, NodeId(2)), 5);
    }
}
