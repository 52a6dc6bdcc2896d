//! The node: configuration, preflight checks, and the supervision tree that runs the mesh and the
//! admin server.
//!
//! `config.rs` parses and validates settings, `preflight.rs` checks the disk, `restart.rs` is the
//! restart-intensity core, `supervisor.rs` holds the ractor actors, and [`run`] ties them to signals.

pub mod config;
pub mod local;
pub mod preflight;
pub(crate) mod restart;
// Public but hidden for the crate's own supervision tests; not supported API.
#[doc(hidden)]
pub mod supervisor;

use std::sync::Arc;

use tracing::info;

use crate::credentials::{load_node_credentials, CredentialError};
use crate::grid::kinds::{Task, TaskKinds};

pub use config::{ConfigError, NodeConfig, NodeSettings};

pub use crate::admin::view::NodeView;
/// The task kinds built into every node (`noop`, `echo`, `sleep`, `spin`, `fail`); add your own
/// with [`TaskKinds::with`](crate::grid::kinds::TaskKinds::with).
pub use crate::worker::builtin;

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Credentials are missing or do not match.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The data directory is unusable.
    #[error(transparent)]
    DataDir(#[from] preflight::DataDirError),
    /// Metrics could not be set up.
    #[error(transparent)]
    Telemetry(#[from] crate::admin::telemetry::TelemetryError),
    /// A child failed to start (address in use, say).
    #[error("{0}")]
    Startup(String),
    /// The supervisor gave up after repeated child failures.
    #[error("{0}")]
    Supervisor(String),
}

/// Raises this process's open-file limit to its hard limit: every client connection is a file, and
/// a node serving ZooKeeper clients holds thousands (the soft limit is often 1,024).
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "the open-file limit could not be raised"),
    }
}

/// Runs a node until SIGTERM or Ctrl-C (clean exit) or until its supervisor gives up (error).
///
/// # Errors
/// [`NodeError`] for every setup problem, with a message naming it.
pub async fn run(mut config: NodeConfig, kinds: TaskKinds) -> Result<(), NodeError> {
    // Handlers first: a SIGTERM that arrives while the node is still starting must still mean a
    // clean shutdown, not the default "die at once".
    let signals = Signals::install()?;
    raise_open_file_limit();
    let prometheus = crate::admin::telemetry::install()?;
    match config.join.clone() {
        Some(member) if config.voter => join_as_voter(&mut config, &member).await?,
        Some(member) => return run_joined(config, kinds, member, signals, prometheus).await,
        None => {}
    }
    let credentials = load_node_credentials(&config.certs, config.id)?;
    let edge = member_edge(&config)?;
    let data_dir = preflight::prepare_data_dir(&config.data_dir)?;
    let view = NodeView::new(config.id);
    let args_view = view.clone();
    let args = Arc::new(supervisor::SupervisorArgs {
        config: config.clone(),
        credentials,
        view,
        prometheus,
        edge,
        instance: String::new(),
        kinds,
        actors: crate::actors::builtin::kinds(),
    });
    let (supervisor, ended) = supervisor::start(args).await?;
    info!(node = %config.id, mesh = %config.listen, admin = %config.admin, data_dir = %data_dir.path().display(), "node running");
    let signal = signals.wait();
    tokio::pin!(ended);
    let view = args_view;
    // A node removed from the cluster (`members remove`) stops once it has applied its removal: the
    // meshes refuse it and its id is retired, so running on would serve nothing.
    let removed = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if view.coordinator().is_some_and(|coordinator| coordinator.is_removed()) {
                return "removed from the cluster";
            }
        }
    };
    tokio::select! {
        reason = removed => {
            info!(node = %config.id, reason, "shutting down");
            supervisor.stop(Some(reason.to_string()));
            let _ = (&mut ended).await;
            Ok(())
        }
        reason = signal => {
            info!(node = %config.id, reason, "shutting down");
            supervisor.stop(Some(reason.to_string()));
            let _ = (&mut ended).await;
            Ok(())
        }
        _ = &mut ended => Err(NodeError::Supervisor("the node supervisor stopped after repeated child failures".into())),
    }
}

/// A member's admin edge: it checks revocations against its own applied state.
pub(crate) fn member_edge(config: &NodeConfig) -> Result<crate::admin::auth::EdgeSetup, NodeError> {
    Ok(crate::admin::auth::EdgeSetup::load(
        &config.certs,
        config.id,
        config.admin_plaintext,
        config.metrics_public,
        crate::admin::auth::Revocations::Applied,
    )?)
}

/// What the ZooKeeper front end accepts as an operator's `addauth`: the credentials the admin edge
/// accepts.
pub(crate) fn zk_auth(edge: &crate::admin::auth::EdgeSetup) -> crate::zk::ZkAuth {
    crate::zk::ZkAuth { verifier: edge.auth.verifier.clone(), admin_token: edge.auth.admin_token.clone() }
}

/// A node started in this process: the library way to run one with your own task kinds.
///
/// ```no_run
/// # async fn example(config: gridkeeper::NodeConfig) -> Result<(), gridkeeper::node::NodeError> {
/// use gridkeeper::node::builtin::Sleep;
/// let node = gridkeeper::Node::builder().config(config).task::<Sleep>().start().await?;
/// let grid = node.grid().expect("running");
/// # let _ = grid; node.stop().await; Ok(()) }
/// ```
pub struct Node {
    view: NodeView,
    supervisor: ractor::ActorRef<()>,
    ended: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Holds the data directory's lock for as long as the node lives.
    _data_dir: preflight::DataDir,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("node", &self.view.node()).finish_non_exhaustive()
    }
}

/// Builds a [`Node`]: its configuration and the task kinds it runs (the built-ins are always there).
#[derive(Debug, Default)]
pub struct NodeBuilder {
    config: Option<NodeConfig>,
    kinds: Option<TaskKinds>,
    actors: Option<crate::actors::ActorKinds>,
}

impl Node {
    /// A builder.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The node's live view.
    pub fn view(&self) -> &NodeView {
        &self.view
    }

    /// The grid through this node (while its coordinator runs).
    pub fn grid(&self) -> Option<crate::service::Grid> {
        self.view.coordinator().map(crate::service::Grid::local)
    }

    /// Stops the node cleanly (peers hear a goodbye) and waits until it has stopped.
    pub async fn stop(self) {
        self.supervisor.stop(Some("stopped by the application".into()));
        self.ended.await;
    }

    /// Resolves when the node stops by itself (its supervisor gave up).
    pub async fn stopped(&mut self) {
        (&mut self.ended).await;
    }
}

impl NodeBuilder {
    /// The validated configuration (see [`NodeSettings::validate`]).
    pub fn config(mut self, config: NodeConfig) -> NodeBuilder {
        self.config = Some(config);
        self
    }

    /// Registers task type `T` (constructed with `Default`).
    pub fn task<T: Task + Default>(self) -> NodeBuilder {
        self.task_with(T::default())
    }

    /// Registers task type `T` with this value (holding the clients or settings it needs).
    pub fn task_with<T: Task>(mut self, task: T) -> NodeBuilder {
        self.kinds = Some(self.kinds.take().unwrap_or_else(crate::worker::builtin::kinds).with(task));
        self
    }

    /// Registers actor type `A` (the built-in `counter` is always there).
    pub fn actor<A: crate::actors::GridActor>(mut self) -> NodeBuilder {
        self.actors = Some(self.actors.take().unwrap_or_else(crate::actors::builtin::kinds).with::<A>());
        self
    }

    /// Starts the node on the current tokio runtime; resolves once it runs.
    ///
    /// # Errors
    /// [`NodeError`] for a missing configuration, credentials, data dir or startup problems.
    pub async fn start(self) -> Result<Node, NodeError> {
        let config = self.config.ok_or_else(|| NodeError::Startup("the node builder needs a configuration".into()))?;
        let credentials = load_node_credentials(&config.certs, config.id)?;
        let edge = member_edge(&config)?;
        let data_dir = preflight::prepare_data_dir(&config.data_dir)?;
        let view = NodeView::new(config.id);
        let args = Arc::new(supervisor::SupervisorArgs {
            credentials,
            prometheus: crate::admin::telemetry::install()?,
            edge,
            instance: String::new(),
            view: view.clone(),
            kinds: self.kinds.unwrap_or_else(crate::worker::builtin::kinds),
            actors: self.actors.unwrap_or_else(crate::actors::builtin::kinds),
            config,
        });
        let (supervisor, ended) = supervisor::start(args).await?;
        Ok(Node { view, supervisor, ended: Box::pin(ended), _data_dir: data_dir })
    }
}

/// Prepares a node started with `--join ADMIN --voter`: on its first start it asks `member` for the
/// members (refused unless an operator added its id) and starts its mesh with them; on a later start
/// its stored Raft state holds the membership, which the coordinator gives the mesh. Either way the
/// leader, not this node, makes it a member: it never initialises a cluster.
async fn join_as_voter(config: &mut NodeConfig, member: &crate::mesh::PeerAddr) -> Result<(), NodeError> {
    let raft_dir = config.data_dir.join("raft");
    let stored = std::fs::read_dir(&raft_dir).is_ok_and(|mut entries| entries.next().is_some());
    if !stored {
        let access = crate::client::Access::node(&config.certs, config.id)
            .map_err(|error| NodeError::Startup(format!("this node's certificate: {error}")))?;
        let (addrs, access) = join_endpoints(config, member, access).await?;
        let refused = |error: crate::client::ClientError| {
            NodeError::Startup(format!("cannot join as a voter through {member}: {error}"))
        };
        let client = connect_worker(&addrs, config.id, access).await.map_err(refused)?;
        let info = client.join_info(config.id.0).await.map_err(refused)?;
        let mut peers = std::collections::BTreeMap::new();
        for (id, addr) in info.members {
            let parsed = addr.parse::<crate::mesh::PeerAddr>();
            let id = id.to_string().parse::<crate::ids::NodeId>();
            if let (Ok(id), Ok(addr)) = (id, parsed) {
                peers.insert(id, addr);
            }
        }
        if !peers.contains_key(&config.id) {
            return Err(NodeError::Startup(format!("node {} is not among the members {member} gave", config.id)));
        }
        info!(node = %config.id, %member, members = peers.len(), "joining as a voter");
        config.peers = peers;
    }
    config.join = None;
    Ok(())
}

/// The addresses to reach `member` at and the access that checks its certificate: an IP address as
/// it is, a name resolved now (every address it gives) and checked against the certificate.
async fn join_endpoints(
    config: &NodeConfig,
    member: &crate::mesh::PeerAddr,
    access: crate::client::Access,
) -> Result<(Vec<std::net::SocketAddr>, crate::client::Access), NodeError> {
    if let Some(addr) = member.socket_addr() {
        return Ok((vec![addr], access));
    }
    let name = member.name().unwrap_or_default().to_string();
    let lookup = tokio::net::lookup_host((name.as_str(), member.port));
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(JOIN_RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| NodeError::Startup(format!("cannot join through {member}: resolving it timed out")))?
        .map_err(|error| NodeError::Startup(format!("cannot join through {member}: {error}")))?
        .take(crate::limits::PEERS_MAX)
        .collect();
    if addrs.is_empty() {
        return Err(NodeError::Startup(format!("cannot join through {member}: the name resolves to nothing")));
    }
    let access = if config.admin_plaintext {
        access
    } else {
        access.with_server_name(&name).map_err(|error| NodeError::Startup(error.to_string()))?
    };
    Ok((addrs, access))
}

/// Runs a worker joined to a running cluster through `member`'s admin API: it registers itself in
/// `/grid/nodes`, asks for the attempts assigned to it, runs them under its worker supervisor, and
/// reports; it serves `/metrics`, `/status` and `/health` like any node. It holds no Raft state.
async fn run_joined(
    config: NodeConfig,
    kinds: TaskKinds,
    member: crate::mesh::PeerAddr,
    signals: Signals,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), NodeError> {
    use crate::worker::{RemoteLink, WorkerArgs, WorkerLink, WorkerSupervisor};
    // A worker proves who it is with its own node certificate: it is never given the operator's.
    let access = if config.admin_plaintext {
        crate::client::Access::plaintext()
    } else {
        crate::client::Access::node(&config.certs, config.id)
            .map_err(|error| NodeError::Startup(format!("this worker's node certificate: {error}")))?
    };
    // A member named by DNS is dialed at the addresses its name resolves to now (the first that
    // answers), and its certificate is checked for the name.
    let (addrs, access) = join_endpoints(&config, &member, access).await?;
    let revoked = Arc::new(std::sync::RwLock::new(None));
    let edge = crate::admin::auth::EdgeSetup::load(
        &config.certs,
        config.id,
        config.admin_plaintext,
        config.metrics_public,
        crate::admin::auth::Revocations::Fetched(revoked.clone()),
    )?;
    let _data_dir = preflight::prepare_data_dir(&config.data_dir)?;
    let view = NodeView::new(config.id);
    let logs = view
        .open_task_logs(&config.data_dir, config.task_logs)
        .map_err(|error| NodeError::Startup(format!("task logs in {}: {error}", config.data_dir.display())))?;
    let connect = || connect_worker(&addrs, config.id, access.clone());
    let unreachable =
        |error: crate::client::ClientError| NodeError::Startup(format!("cannot join through {member}: {error}"));
    let (poll, report, registry) = (
        connect().await.map_err(unreachable)?,
        connect().await.map_err(unreachable)?,
        connect().await.map_err(unreachable)?,
    );
    let session = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gauge = view.worker_gauge();
    let args = WorkerArgs {
        node: config.id,
        link: WorkerLink::Remote(RemoteLink { poll, report, session: session.clone(), draining: draining.clone() }),
        kinds: kinds.clone(),
        threads: (config.slots as usize).clamp(1, config::default_slots() as usize),
        slots: config.slots,
        gauge: view.worker_gauge(),
        logs: Some(logs),
    };
    let name = Some(supervisor::worker_actor_name(config.id, ""));
    let (worker, _) = ractor::Actor::spawn(name, WorkerSupervisor, Arc::new(args))
        .await
        .map_err(|error| NodeError::Startup(format!("worker: {error}")))?;
    let record = crate::state::NodeRecord {
        addr: config.admin.to_string(),
        slots: config.slots,
        prefetch: config.prefetch,
        weight: config.weight,
        kinds: kinds.names(),
        state_version: advertised_state_version(),
        admin: Some(advertised_admin(&config)),
        // A joined worker has no mesh: it hosts no actors.
        actor_kinds: None,
    };
    let on_registered: crate::service::registration::OnRegistered =
        Arc::new(move |id| session.store(id, std::sync::atomic::Ordering::SeqCst));
    let port = crate::service::Port::Remote(registry);
    let registration =
        tokio::spawn(crate::service::registration::keep_registered(port, config.id, record, on_registered));
    let listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .map_err(|error| NodeError::Startup(format!("admin address {} is unavailable: {error}", config.admin)))?;
    let mut state = crate::admin::http::AdminState::new(view, prometheus, edge.auth, config.admin_server.clone())
        .with_audit(&config.data_dir)
        .map_err(|error| NodeError::Startup(format!("audit log in {}: {error}", config.data_dir.display())))?;
    if let Some(tls) = edge.tls {
        state = state.with_tls(tls);
    }
    state.node_access = node_access(&config);
    let state = Arc::new(state);
    let server = tokio::spawn(async move {
        let _ = crate::admin::http::serve(listener, state).await;
    });
    let refresher = tokio::spawn(refresh_revocations(connect().await.map_err(unreachable)?, revoked));
    info!(node = %config.id, %member, admin = %config.admin, "worker joined the cluster");
    // A drained worker leaves once it runs nothing (its session then ends and its shard keys move).
    let drained = async {
        // Two idle looks in a row: one attempt's end and the next one's start are not a gap.
        let mut idle_looks = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let idle = draining.load(std::sync::atomic::Ordering::SeqCst) && gauge.running() == 0;
            idle_looks = if idle { idle_looks + 1 } else { 0 };
            if idle_looks >= 2 {
                return "drained";
            }
        }
    };
    let reason = tokio::select! {
        reason = signals.wait() => reason,
        reason = drained => reason,
    };
    info!(node = %config.id, reason, "worker shutting down");
    registration.abort();
    server.abort();
    refresher.abort();
    let _ = worker.stop_and_wait(Some(reason.to_string()), Some(std::time::Duration::from_secs(2))).await;
    Ok(())
}

/// The admin address other nodes reach this node at, advertised in its registration (for the task
/// logs it keeps): `--admin`, or, when that binds every interface, this node's host in `--peers`
/// (or `--listen`) with the admin port.
pub(crate) fn advertised_admin(config: &NodeConfig) -> String {
    if !config.admin.ip().is_unspecified() {
        return config.admin.to_string();
    }
    let port = config.admin.port();
    match config.peers.get(&config.id) {
        Some(addr) if addr.name().is_some() => format!("{}:{port}", addr.name().unwrap_or_default()),
        Some(addr) => match addr.socket_addr() {
            Some(socket) if !socket.ip().is_unspecified() => std::net::SocketAddr::new(socket.ip(), port).to_string(),
            _ => config.admin.to_string(),
        },
        None => config.admin.to_string(),
    }
}

/// How this node asks another node's admin API (for the task logs it keeps): its own node certificate
/// (a worker principal), or over plain HTTP (`--admin-plaintext`) the legacy admin token if its
/// directory holds one.
pub(crate) fn node_access(config: &NodeConfig) -> Option<crate::client::Access> {
    if config.admin_plaintext {
        let access = crate::client::Access::plaintext();
        return Some(match crate::credentials::load_admin_token_if_any(&config.certs).ok().flatten() {
            Some(token) => access.with_token(token),
            None => access,
        });
    }
    match crate::client::Access::node(&config.certs, config.id) {
        Ok(access) => Some(access),
        Err(error) => {
            tracing::warn!(%error, "this node cannot ask other nodes for task logs: its certificate is unusable");
            None
        }
    }
}

/// Longest a joined worker waits for its member's name to resolve at start.
const JOIN_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest wait between a joined worker's attempts to connect while its credential is refused.
const REFUSED_CONNECT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects a joined worker to `member`. A refused credential (its handshake or its certificate) is
/// said in one line and retried with backoff (the operator may fix the files meanwhile); any other
/// failure is returned.
async fn connect_worker(
    member: &[std::net::SocketAddr],
    node: crate::ids::NodeId,
    access: crate::client::Access,
) -> Result<crate::client::Client, crate::client::ClientError> {
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        match crate::client::Client::connect_any(member, access.clone()).await {
            Err(error) if error.code() == crate::api::ErrorCode::Unauthorized => {
                tracing::warn!(%node, ?member, retry_in_ms = wait.as_millis() as u64, "the cluster refused this worker's credential: {error}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(REFUSED_CONNECT_WAIT_MAX);
            }
            outcome => return outcome,
        }
    }
}

/// How often a joined worker refreshes its copy of the revocation list.
const REVOCATIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps a joined worker's copy of the revocation list fresh, for the credentials its own admin API
/// accepts. Until the first refresh succeeds, revocable credentials are refused.
async fn refresh_revocations(
    client: crate::client::Client,
    revoked: Arc<std::sync::RwLock<Option<std::collections::BTreeSet<String>>>>,
) {
    loop {
        match client.revoked().await {
            Ok(list) => {
                let names = list.into_iter().map(|revocation| revocation.name).collect();
                *revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(names);
            }
            Err(error) => tracing::debug!(%error, "cannot refresh the revocation list"),
        }
        tokio::time::sleep(REVOCATIONS_REFRESH).await;
    }
}

/// SIGTERM and SIGINT, listened to from the start of the process.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, NodeError> {
        use tokio::signal::unix::{signal, SignalKind};
        let install =
            |kind| signal(kind).map_err(|error| NodeError::Startup(format!("cannot listen for signals: {error}")));
        Ok(Signals { terminate: install(SignalKind::terminate())?, interrupt: install(SignalKind::interrupt())? })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "terminate",
            _ = self.interrupt.recv() => "interrupt",
        }
    }
}

/// The state version this process advertises: [`crate::registry::STATE_VERSION`], or less when the
/// `GRIDKEEPER_STATE_VERSION_MAX` environment variable says so (tests use it to stand for a node of
/// an older build in a mixed-version cluster).
pub(crate) fn advertised_state_version() -> u32 {
    std::env::var("GRIDKEEPER_STATE_VERSION_MAX")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .map_or(crate::registry::STATE_VERSION, |max| max.clamp(1, crate::registry::STATE_VERSION))
}
