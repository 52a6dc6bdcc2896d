//! The ZooKeeper front end's listener: accepts connections within the node's and each client
//! address's bounds, and serves each in a task of its own (`connection.rs`).
//!
//! Invariant: the server holds at most `connections_max` connections, at most
//! `connections_per_client_max` from one IP address; a connection past either is closed at once and
//! counted in `gridkeeper_zk_refusals_total{reason}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::consensus::Coordinator;

use super::config::ZkConfig;
use super::proto::op;

/// What the listener and its connections share.
pub(super) struct Shared {
    pub(super) coordinator: Coordinator,
    pub(super) config: ZkConfig,
    pub(super) auth: ZkAuth,
    pub(super) stats: ServerStats,
    /// Every open connection's counters, for `cons` and `stat`.
    pub(super) connections: DashMap<u64, Arc<ConnectionStats>>,
}

/// The cluster credentials `addauth` can prove: an operator's makes the connection the super user.
#[derive(Debug, Clone, Default)]
pub struct ZkAuth {
    /// Verifies tokens (the token key's public half).
    pub verifier: Option<crate::credentials::TokenVerifier>,
    /// The legacy shared admin token (an operator credential).
    pub admin_token: Option<String>,
}

impl ZkAuth {
    /// The role `user:password` proves, if it is a credential of the cluster: an unrevoked token
    /// named `user` (its role), or the legacy admin token (operator, any user name).
    pub fn role_of(&self, coordinator: &Coordinator, user: &str, password: &str) -> Option<crate::credentials::Role> {
        if let Some(admin_token) = &self.admin_token {
            if crate::credentials::token::constant_time_eq(password.as_bytes(), admin_token.as_bytes()) {
                return Some(crate::credentials::Role::Operator);
            }
        }
        let claims = self.verifier.as_ref().and_then(|verifier| verifier.verify(password).ok())?;
        (claims.name == user && !crate::service::credentials::is_revoked(coordinator, &claims.name))
            .then_some(claims.role)
    }
}

/// Counters of the whole front end, for the four-letter words.
#[derive(Default)]
pub(super) struct ServerStats {
    latency_us_min: AtomicU64,
    latency_us_max: AtomicU64,
    latency_us_total: AtomicU64,
    requests: AtomicU64,
}

impl ServerStats {
    pub(super) fn on_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency_us_total.fetch_add(micros, Ordering::Relaxed);
        self.latency_us_max.fetch_max(micros, Ordering::Relaxed);
        let _ = self.latency_us_min.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |min| {
            (min == 0 || micros < min).then_some(micros.max(1))
        });
    }

    /// Latency (min, average, max) in ms, as ZooKeeper prints it.
    pub(super) fn latency_ms(&self) -> (f64, f64, f64) {
        let requests = self.requests.load(Ordering::Relaxed);
        let total = self.latency_us_total.load(Ordering::Relaxed) as f64;
        let average = if requests == 0 { 0.0 } else { total / requests as f64 / 1000.0 };
        let ms = |us: u64| us as f64 / 1000.0;
        (ms(self.latency_us_min.load(Ordering::Relaxed)), average, ms(self.latency_us_max.load(Ordering::Relaxed)))
    }
}

/// One connection's counters.
pub(super) struct ConnectionStats {
    pub(super) peer: SocketAddr,
    pub(super) session: AtomicU64,
    pub(super) timeout_ms: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) opened_ms: u64,
}

/// Counts a refused connection or request by reason.
pub(super) fn refused(reason: &'static str) {
    metrics::counter!("gridkeeper_zk_refusals_total", "reason" => reason).increment(1);
}

/// ZooKeeper's name for an opcode, for metrics and `cons`.
pub(super) fn op_name(code: i32) -> &'static str {
    match code {
        op::CREATE => "create",
        op::DELETE => "delete",
        op::EXISTS => "exists",
        op::GET_DATA => "getData",
        op::SET_DATA => "setData",
        op::GET_ACL => "getACL",
        op::SET_ACL => "setACL",
        op::GET_CHILDREN => "getChildren",
        op::SYNC => "sync",
        op::PING => "ping",
        op::GET_CHILDREN2 => "getChildren2",
        op::CHECK => "check",
        op::MULTI => "multi",
        op::CREATE2 => "create2",
        op::RECONFIG => "reconfig",
        op::CHECK_WATCHES => "checkWatches",
        op::REMOVE_WATCHES => "removeWatches",
        op::CREATE_CONTAINER => "createContainer",
        op::DELETE_CONTAINER => "deleteContainer",
        op::CREATE_TTL => "createTTL",
        op::MULTI_READ => "multiRead",
        op::AUTH => "auth",
        op::SET_WATCHES => "setWatches",
        op::SASL => "sasl",
        op::GET_EPHEMERALS => "getEphemerals",
        op::GET_ALL_CHILDREN_NUMBER => "getAllChildrenNumber",
        op::SET_WATCHES2 => "setWatches2",
        op::ADD_WATCH => "addWatch",
        op::WHO_AM_I => "whoAmI",
        op::CLOSE_SESSION => "closeSession",
        _ => "unknown",
    }
}

/// Where connections come from: a TCP listener, or a simulated one (turmoil's) in the simulation.
pub trait Listener: Send + 'static {
    /// A connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and its peer's address.
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Replies are small and each is flushed when the queue empties: send them at once.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

impl Listener for turmoil::net::TcpListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        turmoil::net::TcpListener::accept(self).await
    }
}

/// A running front end; dropping it (or [`ZkServer::shutdown`]) closes the listener and every
/// connection.
pub struct ZkServer {
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl ZkServer {
    /// Binds `config.listen` and serves ZooKeeper clients from `coordinator`.
    ///
    /// # Errors
    /// The bind's error (address in use, say).
    pub async fn start(config: ZkConfig, coordinator: Coordinator, auth: ZkAuth) -> std::io::Result<ZkServer> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        Ok(ZkServer::serve(listener, local, config, coordinator, auth))
    }

    /// Serves ZooKeeper clients from `coordinator` on connections `listener` accepts (bound to
    /// `local`); `config.listen` is only reported.
    pub fn serve<L: Listener>(
        listener: L,
        local: SocketAddr,
        config: ZkConfig,
        coordinator: Coordinator,
        auth: ZkAuth,
    ) -> ZkServer {
        let shared =
            Arc::new(Shared { coordinator, config, auth, stats: ServerStats::default(), connections: DashMap::new() });
        let accepting = tokio::spawn(accept(listener, shared));
        ZkServer { local, accepting }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening and closes every connection (their sessions live on until they expire or
    /// their clients resume them elsewhere).
    pub async fn shutdown(mut self) {
        self.accepting.abort();
        let _ = (&mut self.accepting).await;
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Connections per client address, released as their tasks end.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// Accepts until aborted; the connections' tasks live in a set this task owns, so aborting it ends
/// them all.
async fn accept<L: Listener>(listener: L, shared: Arc<Shared>) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    // Each task's connection and address, released however the task ends (a panic included).
    let mut owners: HashMap<tokio::task::Id, (u64, IpAddr)> = HashMap::new();
    let per_client = PerClient::default();
    let clock = Clock::start();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a moment rather than spin.
                        tracing::warn!(%error, "ZooKeeper accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tasks.len() >= shared.config.connections_max {
                    refused("connections");
                    continue;
                }
                if !per_client.admit(peer.ip(), shared.config.connections_per_client_max) {
                    refused("per_client");
                    continue;
                }
                next_id += 1;
                let id = next_id;
                let stats = Arc::new(ConnectionStats {
                    peer,
                    session: AtomicU64::new(0),
                    timeout_ms: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                    sent: AtomicU64::new(0),
                    opened_ms: clock.now().0,
                });
                shared.connections.insert(id, stats.clone());
                metrics::counter!("gridkeeper_zk_connections_accepted_total").increment(1);
                metrics::gauge!("gridkeeper_zk_connections").set(tasks.len() as f64 + 1.0);
                let shared = shared.clone();
                let task = tasks.spawn(super::connection::serve(shared, stream, peer, stats));
                owners.insert(task.id(), (id, peer.ip()));
            }
            Some(ended) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let task = match ended {
                    Ok((task, ())) => task,
                    Err(error) => error.id(),
                };
                if let Some((id, ip)) = owners.remove(&task) {
                    shared.connections.remove(&id);
                    per_client.release(ip);
                }
                metrics::gauge!("gridkeeper_zk_connections").set(tasks.len() as f64);
            }
        }
    }
}
