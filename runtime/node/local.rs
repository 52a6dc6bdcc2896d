//! An in-process cluster of real nodes (real QUIC, real disk, real Raft) for examples, benchmarks
//! and tests. Each node runs its own supervision tree on its own tokio runtime; killing a node tears
//! its runtime down without a goodbye, which peers see as they would see kill -9.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::supervisor::{start, SupervisorArgs};
use super::{NodeConfig, NodeError, NodeView};
use crate::credentials::{issue_into_dir, load_admin_token, load_node_credentials};
use crate::grid::kinds::TaskKinds;
use crate::grid::Strategy;
use crate::ids::NodeId;
use crate::mesh::DetectorConfig;

/// Distinguishes actor names of every node started in this process.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How long a killed node's runtime gets to drop its tasks (and release its sockets and files).
const TEARDOWN_WAIT: Duration = Duration::from_secs(5);

struct RunningNode {
    runtime: tokio::runtime::Runtime,
    view: NodeView,
}

/// A local cluster of nodes in this process.
pub struct LocalCluster {
    dir: PathBuf,
    peers: BTreeMap<NodeId, SocketAddr>,
    admins: BTreeMap<NodeId, SocketAddr>,
    zk: BTreeMap<NodeId, SocketAddr>,
    token: String,
    running: BTreeMap<NodeId, RunningNode>,
    options: LocalOptions,
}

/// What every node of a local cluster runs with.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Task kinds (the built-ins by default).
    pub kinds: TaskKinds,
    /// Slots per node (default: the machine's cores).
    pub slots: u32,
    /// Placement strategy.
    pub placement: Strategy,
    /// Attempts queued per node beyond its slots (default: 256 per slot).
    pub prefetch: Option<u32>,
    /// Serve ZooKeeper clients, each node on a free port ([`LocalCluster::zk`]); off by default.
    pub zookeeper: bool,
    /// Actor kinds (the built-ins by default).
    pub actors: crate::actors::ActorKinds,
    /// The actor host's idle time and activation bound.
    pub actor_host: crate::actors::HostConfig,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            kinds: crate::worker::builtin::kinds(),
            slots: crate::node::config::default_slots(),
            placement: Strategy::default(),
            prefetch: None,
            zookeeper: false,
            actors: crate::actors::builtin::kinds(),
            actor_host: crate::actors::HostConfig::default(),
        }
    }
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster").field("dir", &self.dir).field("peers", &self.peers).finish_non_exhaustive()
    }
}

/// Times a local cluster is started on fresh ports when one it picked was taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

fn free_port(udp: bool) -> Result<u16, NodeError> {
    let port = if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.local_addr())
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|socket| socket.local_addr())
    };
    port.map(|addr| addr.port()).map_err(|error| NodeError::Startup(format!("no free port: {error}")))
}

impl LocalCluster {
    /// Issues credentials under `dir` and starts nodes `1..=size` on free loopback ports.
    ///
    /// # Errors
    /// [`NodeError`] if credentials, ports or a node fail.
    pub fn start(size: u64, dir: &Path) -> Result<LocalCluster, NodeError> {
        LocalCluster::start_with(size, dir, LocalOptions::default())
    }

    /// As [`LocalCluster::start`], with task kinds, slots and placement of your choice.
    ///
    /// # Errors
    /// [`NodeError`] if credentials, ports or a node fail.
    pub fn start_with(size: u64, dir: &Path, options: LocalOptions) -> Result<LocalCluster, NodeError> {
        let ids: Vec<NodeId> = (1..=size).map(NodeId).collect();
        issue_into_dir(&dir.join("certs"), &ids)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match LocalCluster::start_on_free_ports(&ids, dir, options.clone()) {
                // A port found free was taken before a node bound it (by another process, or a client
                // connection's own port): start afresh on other ports, with empty data directories,
                // since the first nodes' logs name the old addresses.
                Err(NodeError::Startup(reason)) if reason.contains("is unavailable") && attempts < PORT_ATTEMPTS => {
                    tracing::debug!(%reason, "a port was taken; starting the local cluster on others");
                    for id in &ids {
                        let _ = std::fs::remove_dir_all(dir.join(format!("data-{id}")));
                    }
                }
                outcome => return outcome,
            }
        }
    }

    fn start_on_free_ports(ids: &[NodeId], dir: &Path, options: LocalOptions) -> Result<LocalCluster, NodeError> {
        let mut peers = BTreeMap::new();
        let mut admins = BTreeMap::new();
        let mut zk = BTreeMap::new();
        for &id in ids {
            peers.insert(id, SocketAddr::from(([127, 0, 0, 1], free_port(true)?)));
            admins.insert(id, SocketAddr::from(([127, 0, 0, 1], free_port(false)?)));
            if options.zookeeper {
                zk.insert(id, SocketAddr::from(([127, 0, 0, 1], free_port(false)?)));
            }
        }
        let token = load_admin_token(&dir.join("certs"))?;
        let mut cluster =
            LocalCluster { dir: dir.to_path_buf(), peers, admins, zk, token, running: BTreeMap::new(), options };
        for &id in ids {
            // On an error the cluster is dropped, which stops the nodes already started.
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    /// The credentials directory.
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The legacy shared admin token (an operator credential).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How a client reaches this cluster's admin APIs: HTTPS as the operator.
    ///
    /// # Errors
    /// [`ClientError`](crate::client::ClientError) if the credentials cannot be read.
    pub fn access(&self) -> Result<crate::client::Access, crate::client::ClientError> {
        crate::client::Access::from_certs(&self.certs())
    }

    /// Every node's admin address.
    pub fn admins(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.admins
    }

    /// A node's ZooKeeper client address, if the cluster serves ZooKeeper clients
    /// ([`LocalOptions::zookeeper`]).
    pub fn zk(&self, id: NodeId) -> Option<SocketAddr> {
        self.zk.get(&id).copied()
    }

    /// A node's admin address.
    ///
    /// # Panics
    /// If `id` is not a member.
    pub fn admin(&self, id: NodeId) -> SocketAddr {
        self.admins[&id]
    }

    /// The running node's live view (mesh, coordinator).
    pub fn view(&self, id: NodeId) -> Option<NodeView> {
        self.running.get(&id).map(|node| node.view.clone())
    }

    /// Starts (or restarts) node `id`.
    ///
    /// # Errors
    /// [`NodeError`] if it fails to start.
    pub fn start_node(&mut self, id: NodeId) -> Result<(), NodeError> {
        let config = NodeConfig {
            id,
            peers: self.peers.iter().map(|(&node, &addr)| (node, addr.into())).collect(),
            listen: self.peers[&id],
            certs: self.certs(),
            data_dir: self.dir.join(format!("data-{id}")),
            admin: self.admins[&id],
            detector: DetectorConfig::default(),
            registry: crate::registry::RegistryLimits::default(),
            admin_server: Default::default(),
            admin_plaintext: false,
            metrics_public: false,
            slots: self.options.slots,
            weight: 1,
            prefetch: self
                .options
                .prefetch
                .unwrap_or(self.options.slots * crate::node::config::PREFETCH_PER_SLOT_DEFAULT),
            placement: self.options.placement,
            join: None,
            voter: false,
            unplaceable_timeout_ms: None,
            zk: self.zk.get(&id).and_then(|listen| {
                let settings = crate::zk::ZkSettings { listen: Some(listen.to_string()), ..Default::default() };
                settings.validate(id.0).ok().flatten()
            }),
            task_logs: Default::default(),
            actors: self.options.actor_host,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("gk-node-{id}"))
            .enable_all()
            .build()
            .map_err(|error| NodeError::Startup(error.to_string()))?;
        let view = NodeView::new(id);
        let args = Arc::new(SupervisorArgs {
            credentials: load_node_credentials(&config.certs, id)?,
            prometheus: crate::admin::telemetry::install()?,
            edge: super::member_edge(&config)?,
            instance: format!("-local{}", INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            view: view.clone(),
            config,
            kinds: self.options.kinds.clone(),
            actors: self.options.actors.clone(),
        });
        // The supervisor runs on the node runtime until it is torn down; its handle is not needed.
        let _supervisor = runtime.block_on(start(args))?;
        self.running.insert(id, RunningNode { runtime, view });
        Ok(())
    }

    /// Kills node `id` abruptly: no goodbye, no flush beyond what was already fsync'd.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(node) = self.running.remove(&id) {
            node.runtime.shutdown_timeout(TEARDOWN_WAIT);
        }
    }

    /// The leader every running node agrees on, if any.
    pub fn leader(&self) -> Option<NodeId> {
        let mut leaders = self.running.values().map(|node| node.view.coordinator().and_then(|c| c.status().leader));
        let first = leaders.next()??;
        leaders
            .all(|other| other == Some(first))
            .then_some(NodeId(first))
            .filter(|leader| self.running.contains_key(leader))
    }

    /// Waits (bounded) until the running nodes agree on a leader.
    pub fn wait_for_leader(&self, limit: Duration) -> Option<NodeId> {
        let deadline = crate::clock::OsDeadline::after(limit);
        while !deadline.passed() {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.running.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}
