//! The mesh shell: one quinn endpoint, a connection per peer, the failure detector fed and ticked.
//!
//! Owns the endpoint, the per-peer outbound queues, the inbound queues and the membership event
//! channel. It makes no decision of its own: liveness is `detector.rs`'s, reconnect timing is
//! `backoff.rs`'s; connection handling lives in `connection.rs`.
//!
//! Delivery is at most once and ordered per (peer, traffic class) within one connection; layers
//! above (Raft, task dispatch) retransmit what matters.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::address::PeerAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

use super::detector::{DetectorConfig, FailureDetector, PeerEvent};
use super::handshake::{HandshakeSlots, RefusalLog};
use super::telemetry::{class_index, PeerTelemetry};
use super::tls::{self, TlsConfigError};
use crate::clock::Clock;
use crate::credentials::NodeCredentials;
use crate::ids::NodeId;
use crate::limits::{
    FRAME_BYTES_MAX, HANDSHAKES_IN_FLIGHT_MAX, HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX, HANDSHAKE_REFUSAL_LOG_INTERVAL_MS,
    INBOUND_QUEUE_FRAMES_MAX, PEERS_MAX, PEER_EVENTS_BUFFERED_MAX, PEER_QUEUE_FRAMES_MAX,
};
use crate::wire::{encode_frame, FrameError, Message, Payload, TrafficClass};

/// QUIC application close codes the mesh uses; a peer's logs show them.
pub mod close_code {
    /// The node is shutting down on purpose: peers mark it down at once.
    pub const GOODBYE: u32 = 1;
    /// A newer connection to the same peer replaced this one.
    pub const REPLACED: u32 = 2;
    /// The peer sent a frame that failed validation.
    pub const FRAME_ERROR: u32 = 3;
    /// The peer's identity or protocol was refused.
    pub const REFUSED: u32 = 4;
    /// The peer fell silent and was declared down.
    pub const SILENT: u32 = 5;
    /// The peer broke the stream protocol (wrong class, unexpected message).
    pub const PROTOCOL: u32 = 6;
    /// The peer is no longer in the membership this node follows (which may not be committed yet).
    pub const REMOVED: u32 = 7;
    /// The peer's id is retired in this node's applied (so committed) member records: it is never a
    /// member again. One such close is proof enough for the retired node to stop.
    pub const RETIRED: u32 = 8;
}

/// What a mesh needs to start.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This node.
    pub node: NodeId,
    /// Distinguishes this process from earlier ones with the same id.
    pub incarnation: u64,
    /// Every member and its address (an IP address or a DNS name, resolved on every dial), this
    /// node included.
    pub members: BTreeMap<NodeId, PeerAddr>,
    /// Heartbeat timing.
    pub detector: DetectorConfig,
    /// Largest frame body accepted or sent.
    pub frame_bytes_max: usize,
    /// Whether bulk payloads are handed to the handler given to [`Mesh::handle_bulk`] by the task
    /// reading each peer's bulk stream, instead of going through the bulk channel
    /// ([`Mesh::take_inbound`]): one hand-off between tasks fewer per payload. Until a handler is
    /// given, a bulk stream waits before its first delivery, as it would on a channel nobody reads.
    pub bulk_inline: bool,
}

impl MeshConfig {
    /// A configuration with default detector timing and frame bound.
    pub fn new<A: Into<PeerAddr>>(node: NodeId, members: BTreeMap<NodeId, A>) -> MeshConfig {
        MeshConfig {
            node,
            incarnation: 0,
            members: members.into_iter().map(|(id, addr)| (id, addr.into())).collect(),
            detector: DetectorConfig::default(),
            frame_bytes_max: FRAME_BYTES_MAX,
            bulk_inline: false,
        }
    }
}

/// The socket the endpoint runs on.
pub enum MeshSocket {
    /// A real UDP socket bound to this address.
    Udp(SocketAddr),
    /// Any quinn socket (the simulator's), with a fixed RNG seed for QUIC's own randomness.
    Abstract {
        /// The socket.
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        /// Seed for QUIC's own randomness: connection ids, packet number skips, token keys
        /// ([`super::seeded`]).
        seed: [u8; 32],
    },
}

/// Why a mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The listen address could not be bound.
    #[error("listen address {addr} is unavailable: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The credentials do not make a TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The member list is unusable.
    #[error("invalid mesh configuration: {0}")]
    Config(String),
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination is not a member.
    #[error("node {0} is not a member of the mesh")]
    UnknownPeer(NodeId),
    /// The peer's queue for this class is full; retry later or shed load.
    #[error("queue to node {peer} for {class:?} traffic is full")]
    Overloaded {
        /// The destination.
        peer: NodeId,
        /// The traffic class.
        class: TrafficClass,
    },
    /// The message does not encode within the frame bound.
    #[error(transparent)]
    Encode(#[from] FrameError),
    /// The mesh was shut down.
    #[error("the mesh is shut down")]
    ShutDown,
}

/// A payload that arrived from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The sender.
    pub from: NodeId,
    /// What it sent.
    pub payload: Payload,
}

/// Takes the bulk payloads of [`MeshConfig::bulk_inline`] in the task that read them, one at a
/// time per peer, in the order the peer sent them. It must not block or wait, and it bounds whatever
/// it keeps (the stream reads on as soon as it returns).
pub type InboundHandler = Arc<dyn Fn(Inbound) + Send + Sync>;

/// How the mesh keeps an [`InboundHandler`]: weakly.
pub(super) type WeakHandler = std::sync::Weak<dyn Fn(Inbound) + Send + Sync>;

/// One member as shown by `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its mesh address as configured.
    pub addr: PeerAddr,
    /// Whether it is considered up (this node always is).
    pub alive: bool,
    /// Milliseconds since it was last heard from; `None` if never.
    pub last_seen_ms: Option<u64>,
}

pub(super) struct ClassQueue {
    pub(super) sender: mpsc::Sender<Vec<u8>>,
    /// Held by the writer of the peer's current connection; a newer connection's writer waits for
    /// the older one to end.
    pub(super) receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>>,
}

pub(super) struct PeerLink {
    /// Where it is dialed; changes when the committed membership moves it.
    pub(super) addr: std::sync::RwLock<PeerAddr>,
    pub(super) queues: [ClassQueue; 3],
    pub(super) telemetry: PeerTelemetry,
}

pub(super) struct Shared {
    pub(super) config: MeshConfig,
    pub(super) endpoint: quinn::Endpoint,
    pub(super) client_config: quinn::ClientConfig,
    pub(super) clock: Clock,
    pub(super) detector: Mutex<FailureDetector>,
    pub(super) events: broadcast::Sender<PeerEvent>,
    /// The current peers; [`Mesh::set_members`] adds and removes them.
    pub(super) peers: std::sync::RwLock<BTreeMap<NodeId, Arc<PeerLink>>>,
    /// The dial loop of each peer this node dials (the lower id of a pair dials).
    pub(super) dialers: Mutex<BTreeMap<NodeId, tokio::task::AbortHandle>>,
    /// Retired ids: never admitted, even when they dial in (see [`Mesh::set_refused`]).
    pub(super) refused: std::sync::RwLock<std::collections::BTreeSet<NodeId>>,
    /// Peers that closed a connection with [`close_code::RETIRED`]; never cleared, as retirement is final.
    pub(super) told_retired: Mutex<std::collections::BTreeSet<NodeId>>,
    /// Peers admitted because they dialed in unknown, not (yet) named by [`Mesh::set_members`].
    pub(super) provisional: Mutex<std::collections::BTreeSet<NodeId>>,
    /// Set by shutdown: no dial loop starts after it.
    pub(super) stopped: std::sync::atomic::AtomicBool,
    pub(super) inbound: [mpsc::Sender<Inbound>; 3],
    /// The bulk handler once [`Mesh::handle_bulk`] gave it (with [`MeshConfig::bulk_inline`]); weak,
    /// as the handler holds the mesh.
    pub(super) bulk_handler: watch::Sender<Option<WeakHandler>>,
    pub(super) connections: Mutex<BTreeMap<NodeId, (u64, quinn::Connection)>>,
    pub(super) next_generation: AtomicU64,
    /// Incoming handshakes in flight, overall and per source address.
    pub(super) handshakes: Mutex<HandshakeSlots>,
    /// Rate limiter of refusal warnings.
    pub(super) refusals: Mutex<RefusalLog>,
}

impl PeerLink {
    fn new(peer: NodeId, addr: PeerAddr) -> PeerLink {
        let queues = TrafficClass::ALL.map(|_| {
            let (sender, receiver) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
            ClassQueue { sender, receiver: Arc::new(tokio::sync::Mutex::new(receiver)) }
        });
        PeerLink { addr: std::sync::RwLock::new(addr), queues, telemetry: PeerTelemetry::register(peer) }
    }

    pub(super) fn addr(&self) -> PeerAddr {
        self.addr.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Shared {
    /// The link to `peer`, if it is a member now.
    pub(super) fn link(&self, peer: NodeId) -> Option<Arc<PeerLink>> {
        self.peers_read().get(&peer).cloned()
    }

    pub(super) fn peers_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, Arc<PeerLink>>> {
        self.peers.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn peers_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<NodeId, Arc<PeerLink>>> {
        self.peers.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn lock_detector(&self) -> std::sync::MutexGuard<'_, FailureDetector> {
        self.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_dialers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, tokio::task::AbortHandle>> {
        self.dialers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the dial loop of `peer`. The lower id of a pair dials; the higher dials too, but only
    /// after the pair has had no connection for a while: the lower may not know it yet (a node
    /// whose log predates the membership that added the higher one), and a leader must reach it.
    fn start_dialing(self: &Arc<Self>, peer: NodeId) {
        if peer == self.config.node || self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let task = tokio::spawn(super::connection::dial_loop(self.clone(), peer));
        if let Some(old) = self.lock_dialers().insert(peer, task.abort_handle()) {
            old.abort();
        }
    }

    /// Adds `peer` at `addr` (not yet a peer): watched, dialed.
    fn add_peer(self: &Arc<Self>, peer: NodeId, addr: PeerAddr) {
        {
            let mut peers = self.peers_write();
            if peers.contains_key(&peer) {
                return;
            }
            peers.insert(peer, Arc::new(PeerLink::new(peer, addr)));
        }
        self.lock_detector().on_peer_added(peer);
        self.start_dialing(peer);
    }

    /// Admits a node of this cluster's CA that dialed in without being a peer: a member added by a
    /// membership this node has not learned yet (its leader must reach it to teach it). Refused if
    /// it is a retired id or the peer table is full. It stays a peer until the next membership
    /// change this node follows ([`Mesh::set_members`]).
    pub(super) fn admit_unknown(self: &Arc<Self>, peer: NodeId, remote: SocketAddr) -> Result<Arc<PeerLink>, String> {
        if self.refused_read().contains(&peer) {
            return Err(format!("node {peer} was removed from the cluster"));
        }
        if self.peers_read().len() + 1 >= PEERS_MAX {
            return Err(format!("node {peer} is not a member and the peer table is full"));
        }
        self.add_peer(peer, remote.into());
        self.lock_provisional().insert(peer);
        tracing::info!(node = %self.config.node, %peer, %remote, "admitted a peer this node's membership does not know yet");
        self.link(peer).ok_or_else(|| format!("node {peer} was removed meanwhile"))
    }

    fn told_retired(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<NodeId>> {
        self.told_retired.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn on_told_retired(&self, peer: NodeId) {
        if self.told_retired().insert(peer) {
            tracing::warn!(node = %self.config.node, %peer, "the peer says this node's id is retired");
        }
    }

    fn lock_provisional(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<NodeId>> {
        self.provisional.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn refused_read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeSet<NodeId>> {
        self.refused.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a connection to `peer` is up now.
    pub(super) fn is_connected(&self, peer: NodeId) -> bool {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(&peer)
    }

    /// Forgets `peer`: a final Down if it was up, then its dial loop, connection and queues go.
    fn remove_peer(&self, peer: NodeId) {
        {
            let mut out = Vec::new();
            let mut detector = self.lock_detector();
            detector.on_peer_removed(peer, &mut out);
            self.publish(out);
        }
        self.peers_write().remove(&peer);
        if let Some(dialer) = self.lock_dialers().remove(&peer) {
            dialer.abort();
        }
        if self.refused_read().contains(&peer) {
            self.close_connection(peer, close_code::RETIRED, b"retired");
        } else {
            self.close_connection(peer, close_code::REMOVED, b"not a member");
        }
    }
}

/// A running mesh. Cheap to clone; every clone is the same mesh.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    inbound_receivers: Arc<Mutex<[Option<mpsc::Receiver<Inbound>>; 3]>>,
    /// Set when one of the mesh's long-running tasks ended, which only a bug can cause.
    failure: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    monitor: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("node", &self.shared.config.node).finish_non_exhaustive()
    }
}

fn validate(config: &MeshConfig, credentials: &NodeCredentials) -> Result<(), MeshError> {
    if !config.members.contains_key(&config.node) {
        return Err(MeshError::Config(format!("node {} is not in the member list", config.node)));
    }
    if config.members.len() > PEERS_MAX {
        return Err(MeshError::Config(format!("{} members exceed the limit of {PEERS_MAX}", config.members.len())));
    }
    if credentials.node != config.node {
        return Err(MeshError::Config(format!("credentials are for node {}, not {}", credentials.node, config.node)));
    }
    config.detector.validate().map_err(|error| MeshError::Config(error.to_string()))
}

fn bind_endpoint(socket: MeshSocket, server: quinn::ServerConfig) -> Result<quinn::Endpoint, MeshError> {
    let runtime = Arc::new(quinn::TokioRuntime);
    match socket {
        MeshSocket::Udp(addr) => {
            let udp = std::net::UdpSocket::bind(addr).map_err(|source| MeshError::Bind { addr, source })?;
            quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), udp, runtime)
                .map_err(|source| MeshError::Bind { addr, source })
        }
        MeshSocket::Abstract { socket, seed } => {
            let addr =
                socket.local_addr().map_err(|source| MeshError::Bind { addr: ([0, 0, 0, 0], 0).into(), source })?;
            let server = super::seeded::server_config(server, seed);
            quinn::Endpoint::new_with_abstract_socket(
                super::seeded::endpoint_config(seed),
                Some(server),
                socket,
                runtime,
            )
            .map_err(|source| MeshError::Bind { addr, source })
        }
    }
}

impl Mesh {
    /// Binds the endpoint and starts accepting, dialing and heartbeating.
    ///
    /// Must run inside a tokio runtime; every task it spawns lives until [`Mesh::shutdown`].
    ///
    /// # Errors
    /// [`MeshError`] if the configuration is inconsistent, the TLS setup fails or the address is taken.
    pub fn start(config: MeshConfig, credentials: &NodeCredentials, socket: MeshSocket) -> Result<Mesh, MeshError> {
        validate(&config, credentials)?;
        let mut client_config = tls::client_config(credentials)?;
        if let MeshSocket::Abstract { seed, .. } = &socket {
            client_config = super::seeded::client_config(client_config, *seed);
        }
        let endpoint = bind_endpoint(socket, tls::server_config(credentials)?)?;
        let peer_ids: Vec<NodeId> = config.members.keys().copied().filter(|&peer| peer != config.node).collect();
        let peers =
            peer_ids.iter().map(|&peer| (peer, Arc::new(PeerLink::new(peer, config.members[&peer].clone())))).collect();
        let (events, _) = broadcast::channel(PEER_EVENTS_BUFFERED_MAX);
        let channels = TrafficClass::ALL.map(|_| mpsc::channel(INBOUND_QUEUE_FRAMES_MAX));
        let [(s0, r0), (s1, r1), (s2, r2)] = channels;
        let shared = Arc::new(Shared {
            detector: Mutex::new(FailureDetector::new(config.detector, peer_ids.iter().copied())),
            client_config,
            clock: Clock::start(),
            events,
            peers: std::sync::RwLock::new(peers),
            dialers: Mutex::new(BTreeMap::new()),
            refused: std::sync::RwLock::new(std::collections::BTreeSet::new()),
            provisional: Mutex::new(std::collections::BTreeSet::new()),
            told_retired: Mutex::new(std::collections::BTreeSet::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            inbound: [s0, s1, s2],
            bulk_handler: watch::Sender::new(None),
            connections: Mutex::new(BTreeMap::new()),
            next_generation: AtomicU64::new(1),
            handshakes: Mutex::new(HandshakeSlots::new(HANDSHAKES_IN_FLIGHT_MAX, HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX)),
            refusals: Mutex::new(RefusalLog::new(HANDSHAKE_REFUSAL_LOG_INTERVAL_MS)),
            endpoint,
            config,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(super::connection::accept_loop(shared.clone()));
        tasks.spawn(super::connection::detector_loop(shared.clone()));
        for &peer in &peer_ids {
            shared.start_dialing(peer);
        }
        let (failure_sender, failure) = watch::channel(None);
        let (stop, stop_receiver) = watch::channel(false);
        let monitor = tokio::spawn(monitor_tasks(tasks, failure_sender, stop_receiver));
        Ok(Mesh {
            shared,
            inbound_receivers: Arc::new(Mutex::new([Some(r0), Some(r1), Some(r2)])),
            failure,
            stop,
            monitor: Arc::new(Mutex::new(Some(monitor))),
        })
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.shared.config.node
    }

    /// The address the endpoint is bound to.
    ///
    /// # Errors
    /// The OS error if the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// Queues `message` for `peer` on `class`'s stream.
    ///
    /// # Errors
    /// [`SendError::Overloaded`] when that queue is full; the other variants for bad destinations,
    /// oversized messages, or a stopped mesh.
    pub fn send(&self, peer: NodeId, class: TrafficClass, message: &Message) -> Result<(), SendError> {
        let link = self.shared.link(peer).ok_or(SendError::UnknownPeer(peer))?;
        let frame = encode_frame(message, self.shared.config.frame_bytes_max)?;
        match link.queues[class_index(class)].sender.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                link.telemetry.class(class).send_rejections.increment(1);
                Err(SendError::Overloaded { peer, class })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::ShutDown),
        }
    }

    /// Gives the handler of bulk payloads ([`MeshConfig::bulk_inline`]); every bulk stream delivers
    /// to it from now on, and those that waited for it go on. The mesh keeps it weakly (a handler
    /// usually holds the mesh): its caller keeps it, and once it is dropped a bulk stream ends.
    ///
    /// # Errors
    /// A message if bulk payloads are not handled inline on this mesh, or a handler was given before.
    pub fn handle_bulk(&self, handler: &InboundHandler) -> Result<(), &'static str> {
        if !self.shared.config.bulk_inline {
            return Err("the mesh's bulk payloads go through its channel (bulk_inline is off)");
        }
        let mut handler = Some(Arc::downgrade(handler));
        self.shared.bulk_handler.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = handler.take();
            true
        });
        if handler.is_some() {
            return Err("the mesh's bulk payloads already have a handler");
        }
        Ok(())
    }

    /// A receiver of every liveness change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.shared.events.subscribe()
    }

    /// Takes the receiver of payloads arriving on `class`; there is one per class, so a second call
    /// returns `None`, as does the bulk class when it is handled inline ([`MeshConfig::bulk_inline`]).
    pub fn take_inbound(&self, class: TrafficClass) -> Option<mpsc::Receiver<Inbound>> {
        if class == TrafficClass::Bulk && self.shared.config.bulk_inline {
            return None;
        }
        let mut receivers = self.inbound_receivers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        receivers[class_index(class)].take()
    }

    /// Every member with its liveness, this node first.
    pub fn members(&self) -> Vec<MemberStatus> {
        let now = self.shared.clock.now();
        let config = &self.shared.config;
        let mut members = vec![MemberStatus {
            id: config.node,
            addr: config.members[&config.node].clone(),
            alive: true,
            last_seen_ms: Some(0),
        }];
        let liveness: Vec<_> =
            self.shared.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).peers().collect();
        members.extend(liveness.into_iter().filter_map(|(peer, liveness)| {
            Some(MemberStatus {
                id: peer,
                addr: self.shared.link(peer)?.addr(),
                alive: liveness.alive,
                last_seen_ms: liveness.last_heard.map(|seen| now.since(seen)),
            })
        }));
        members
    }

    /// The peers that closed a connection saying this node's id is retired
    /// ([`close_code::RETIRED`]), in either direction.
    pub fn told_retired_by(&self) -> std::collections::BTreeSet<NodeId> {
        self.shared.told_retired().clone()
    }

    /// The peers (every member but this node) and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, PeerAddr> {
        self.shared.peers_read().iter().map(|(&peer, link)| (peer, link.addr())).collect()
    }

    /// Ids that are never admitted when they dial in without being peers: ids retired from the
    /// cluster. At most [`PEERS_MAX`] times 64 are kept (the lowest; retired ids only grow).
    /// A peer admitted because it dialed in unknown ([`Shared::admit_unknown`]) and now refused is
    /// removed.
    pub fn set_refused(&self, refused: impl IntoIterator<Item = NodeId>) {
        let refused: std::collections::BTreeSet<NodeId> = refused.into_iter().take(PEERS_MAX * 64).collect();
        let admitted: Vec<NodeId> = {
            let provisional = self.shared.lock_provisional();
            provisional.iter().copied().filter(|peer| refused.contains(peer)).collect()
        };
        *self.shared.refused.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = refused;
        for peer in admitted {
            self.shared.lock_provisional().remove(&peer);
            self.shared.remove_peer(peer);
            tracing::info!(node = %self.shared.config.node, %peer, "retired peer removed");
        }
    }

    /// Makes `members` (this node included or not) the set of peers: new ones are dialed (or
    /// awaited, by id order) and watched, removed ones are declared down, their connection closed
    /// and their queues dropped, and a moved one is dialed at its new address from its next dial.
    /// A connection from a node outside the set is refused.
    ///
    /// # Errors
    /// [`MeshError::Config`] if the set exceeds [`PEERS_MAX`] (nothing changes).
    pub fn set_members(&self, members: &BTreeMap<NodeId, PeerAddr>) -> Result<(), MeshError> {
        let me = self.shared.config.node;
        let wanted: BTreeMap<NodeId, PeerAddr> =
            members.iter().filter(|(&id, _)| id != me).map(|(&id, addr)| (id, addr.clone())).collect();
        if wanted.len() + 1 > PEERS_MAX {
            return Err(MeshError::Config(format!("{} members exceed the limit of {PEERS_MAX}", wanted.len() + 1)));
        }
        let current = self.peers();
        self.shared.lock_provisional().clear();
        for (&peer, addr) in &wanted {
            match current.get(&peer) {
                Some(known) if known == addr => {}
                Some(_) => {
                    if let Some(link) = self.shared.link(peer) {
                        *link.addr.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = addr.clone();
                    }
                    tracing::info!(node = %me, %peer, %addr, "peer moved");
                }
                None => {
                    self.shared.add_peer(peer, addr.clone());
                    tracing::info!(node = %me, %peer, %addr, "peer added");
                }
            }
        }
        for &peer in current.keys().filter(|peer| !wanted.contains_key(peer)) {
            self.shared.remove_peer(peer);
            tracing::info!(node = %me, %peer, "peer removed");
        }
        Ok(())
    }

    /// Whether `peer` is currently considered up.
    pub fn is_alive(&self, peer: NodeId) -> bool {
        self.shared.detector.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_alive(peer)
    }

    /// Says goodbye to every peer, waits (bounded) for the goodbyes to leave, and stops every task.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, dialer) in std::mem::take(&mut *self.shared.lock_dialers()) {
            dialer.abort();
        }
        self.shared.endpoint.close(close_code::GOODBYE.into(), b"shutdown");
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), self.shared.endpoint.wait_idle()).await;
        let _ = self.stop.send(true);
        let monitor = self.monitor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(monitor) = monitor {
            let _ = monitor.await;
        }
    }

    /// Resolves when one of the mesh's long-running tasks has ended (a bug: they loop forever),
    /// with the reason, or with `None` once the mesh was shut down without failing. On a failure the
    /// owner should shut the mesh down and start a new one.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn failed(&self) -> Option<String> {
        let mut failure = self.failure.clone();
        let reported = failure.wait_for(Option::is_some).await.map(|reason| reason.clone());
        reported.ok().flatten()
    }
}

/// Owns the mesh's long-running tasks: reports the first to end, and stops them all on request.
async fn monitor_tasks(
    mut tasks: JoinSet<()>,
    failure: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let ended = tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => None,
        Some(ended) = tasks.join_next() => Some(ended),
    };
    if let Some(ended) = ended {
        let reason = match ended {
            Ok(()) => "a mesh task ended unexpectedly".to_string(),
            Err(error) => format!("a mesh task failed: {error}"),
        };
        tracing::error!(%reason, "mesh failure");
        let _ = failure.send(Some(reason));
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
    tasks.shutdown().await;
}
