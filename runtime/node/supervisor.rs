//! The supervision tree: a node supervisor over the mesh actor and the admin actor.
//!
//! Actors are adapters: the mesh actor owns a [`Mesh`] and fails when the mesh reports a broken
//! task; the admin actor owns the HTTP server and fails when it stops serving. The supervisor
//! restarts a failed child within its `RestartBudget` and otherwise stops, taking the node down.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{error, warn};

use super::restart::{RestartBudget, RestartDecision};
use super::{NodeConfig, NodeError, NodeView};
use crate::admin::http::{serve, AdminState, METRICS_UPKEEP_INTERVAL};
use crate::clock::Clock;
use crate::consensus::{Coordinator, CoordinatorConfig, RaftTimings};
use crate::credentials::NodeCredentials;
use crate::grid::kinds::TaskKinds;
use crate::limits::{RESTARTS_IN_WINDOW_MAX, RESTART_WINDOW_MS};
use crate::mesh::{Mesh, MeshConfig, MeshSocket};
use crate::service::hub::GridHub;
use crate::state::NodeRecord;
use crate::worker::{WorkerArgs, WorkerMsg, WorkerSupervisor};

/// Everything the tree needs to (re)start its children.
pub struct SupervisorArgs {
    /// Validated configuration.
    pub config: NodeConfig,
    /// Loaded credentials.
    pub credentials: NodeCredentials,
    /// Where children publish what they run.
    pub view: NodeView,
    /// The metrics registry.
    pub prometheus: PrometheusHandle,
    /// The admin edge's credentials and TLS configuration.
    pub edge: crate::admin::auth::EdgeSetup,
    /// Suffix of actor names; empty for a node process.
    pub instance: String,
    /// The task kinds this node runs.
    pub kinds: TaskKinds,
    /// The actor kinds this node hosts.
    pub actors: crate::actors::ActorKinds,
}

/// Tries to rebind a mesh address still held by a mesh that is shutting down.
const REBIND_ATTEMPTS: u32 = 10;
const REBIND_WAIT: Duration = Duration::from_millis(100);

/// Starts the tree; resolves once every child is running.
///
/// # Errors
/// [`NodeError::Startup`] with the failing child's error (address in use, say).
pub async fn start(
    args: Arc<SupervisorArgs>,
) -> Result<(ActorRef<()>, impl std::future::Future<Output = ()>), NodeError> {
    let (supervisor, handle) =
        Actor::spawn(None, NodeSupervisor, args).await.map_err(|error| NodeError::Startup(root_cause(&error)))?;
    Ok((supervisor, async move {
        let _ = handle.await;
    }))
}

/// The first error in the chain that is not actor plumbing: what an operator needs to read.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while current.downcast_ref::<ractor::SpawnErr>().is_some() {
        match current.source() {
            Some(source) => current = source,
            None => break,
        }
    }
    current.to_string()
}

/// Registry name of a node's mesh actor (for operators' tooling and fault-injection tests);
/// `instance` tells apart nodes of the same id started in one process (in-process test clusters).
pub fn mesh_actor_name(node: crate::ids::NodeId, instance: &str) -> String {
    format!("gridkeeper-mesh-{node}{instance}")
}

/// Registry name of a node's admin actor.
pub fn admin_actor_name(node: crate::ids::NodeId, instance: &str) -> String {
    format!("gridkeeper-admin-{node}{instance}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Child {
    Mesh,
    Admin,
}

impl Child {
    fn label(self) -> &'static str {
        match self {
            Child::Mesh => "mesh",
            Child::Admin => "admin",
        }
    }
}

/// The node's root actor.
pub struct NodeSupervisor;

/// The supervisor's state.
pub struct SupervisorState {
    args: Arc<SupervisorArgs>,
    children: Vec<(Child, ActorCell)>,
    budget: RestartBudget,
    clock: Clock,
}

async fn spawn_child(
    child: Child,
    args: Arc<SupervisorArgs>,
    supervisor: ActorCell,
) -> Result<ActorCell, ActorProcessingErr> {
    let spawned = match child {
        Child::Mesh => {
            let name = Some(mesh_actor_name(args.config.id, &args.instance));
            Actor::spawn_linked(name, MeshActor, args, supervisor).await.map(|(actor, _)| actor.get_cell())
        }
        Child::Admin => {
            let name = Some(admin_actor_name(args.config.id, &args.instance));
            Actor::spawn_linked(name, AdminActor, args, supervisor).await.map(|(actor, _)| actor.get_cell())
        }
    };
    spawned.map_err(|error| root_cause(&error).into())
}

impl Actor for NodeSupervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = Arc<SupervisorArgs>;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: Arc<SupervisorArgs>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = Vec::new();
        for child in [Child::Mesh, Child::Admin] {
            // At zero from the start, so alerts on `increase()` see the first restart.
            metrics::counter!("gridkeeper_supervisor_child_failures_total", "child" => child.label()).increment(0);
            metrics::counter!("gridkeeper_supervisor_restarts_total", "child" => child.label()).increment(0);
            children.push((child, spawn_child(child, args.clone(), myself.get_cell()).await?));
        }
        Ok(SupervisorState {
            args,
            children,
            budget: RestartBudget::new(RESTARTS_IN_WINDOW_MAX, RESTART_WINDOW_MS),
            clock: Clock::start(),
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.unwrap_or_else(|| "stopped".into())),
            _ => return Ok(()),
        };
        let Some(position) = state.children.iter().position(|(_, child)| child.get_id() == cell.get_id()) else {
            return Ok(());
        };
        let (child, _) = state.children.remove(position);
        let mut reason = reason;
        loop {
            metrics::counter!("gridkeeper_supervisor_child_failures_total", "child" => child.label()).increment(1);
            if state.budget.on_failure(state.clock.now()) == RestartDecision::GiveUp {
                error!(child = child.label(), %reason, "restart intensity exceeded; stopping the node");
                return Err(format!("{} child failed too often: {reason}", child.label()).into());
            }
            warn!(child = child.label(), %reason, "child stopped; restarting");
            metrics::counter!("gridkeeper_supervisor_restarts_total", "child" => child.label()).increment(1);
            match spawn_child(child, state.args.clone(), myself.get_cell()).await {
                Ok(cell) => {
                    state.children.push((child, cell));
                    return Ok(());
                }
                // A child that cannot even start counts as failing again, within the same budget.
                Err(error) => {
                    reason = error.to_string();
                    tokio::time::sleep(REBIND_WAIT).await;
                }
            }
        }
    }

    async fn post_stop(&self, _myself: ActorRef<()>, state: &mut SupervisorState) -> Result<(), ActorProcessingErr> {
        // Children stop before the supervisor reports stopped, so that the mesh says goodbye.
        for (_, child) in state.children.drain(..) {
            child.unlink(_myself.get_cell());
            let _ = child.stop_and_wait(Some("node shutdown".into()), Some(Duration::from_secs(2))).await;
        }
        Ok(())
    }
}

/// Owns the mesh.
pub struct MeshActor;

/// The mesh actor's messages.
pub enum MeshMsg {
    /// The mesh reported a broken task.
    Failed(String),
}

/// The mesh actor's state: the mesh, the coordinator running over it, the node's registration, the
/// leader's dispatcher, and the worker supervisor (a linked child: its failure or stop restarts this actor).
pub struct MeshActorState {
    mesh: Mesh,
    coordinator: Coordinator,
    registration: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
    worker: ActorRef<WorkerMsg>,
    /// The actor host and its service (stopped before the coordinator).
    actors: Option<crate::actors::ActorService>,
    view: NodeView,
    /// The mesh actor itself: the worker's supervisor.
    myself: ActorCell,
    /// The ZooKeeper front end, if it is on; taken when the mesh stops.
    zk: tokio::sync::Mutex<Option<crate::zk::ZkServer>>,
}

/// Registry name of a node's worker supervisor.
pub fn worker_actor_name(node: crate::ids::NodeId, instance: &str) -> String {
    format!("gridkeeper-worker-{node}{instance}")
}

/// How long the mesh actor waits for its worker supervisor to stop. The worker's stop only detaches
/// it from the hub and aborts its tasks, so it takes milliseconds unless the worker is stuck.
const WORKER_STOP_WAIT: Duration = Duration::from_secs(2);

/// Stops `child`, a linked child of `owner`, on purpose. It is unlinked from `owner` first, so its end
/// is not reported to `owner` as a child's exit (the owner treats any such report as the child lost),
/// and it is killed if it has not stopped within `bound`: once unlinked, nothing else would end a
/// stuck child, which would then outlive its owner and keep its registered name.
async fn stop_child(owner: &ActorCell, child: &ActorCell, reason: &str, bound: Duration) {
    child.unlink(owner.clone());
    if child.stop_and_wait(Some(reason.into()), Some(bound)).await.is_err() {
        let _ = child.kill_and_wait(Some(bound)).await;
    }
}

impl MeshActorState {
    async fn stop_mesh(&self) {
        if let Some(zk) = self.zk.lock().await.take() {
            zk.shutdown().await;
        }
        self.view.set_coordinator(None);
        self.view.set_mesh(None);
        self.registration.abort();
        self.dispatcher.abort();
        if let Some(actors) = &self.actors {
            actors.stop();
        }
        stop_child(&self.myself, &self.worker.get_cell(), "mesh stopping", WORKER_STOP_WAIT).await;
        self.coordinator.shutdown().await;
        self.mesh.shutdown().await;
    }
}

impl Actor for MeshActor {
    type Msg = MeshMsg;
    type State = MeshActorState;
    type Arguments = Arc<SupervisorArgs>;

    async fn pre_start(
        &self,
        myself: ActorRef<MeshMsg>,
        args: Arc<SupervisorArgs>,
    ) -> Result<MeshActorState, ActorProcessingErr> {
        let config = &args.config;
        let logs = args
            .view
            .open_task_logs(&config.data_dir, config.task_logs)
            .map_err(|error| format!("task logs in {}: {error}", config.data_dir.display()))?;
        let mut mesh_config = MeshConfig::new(config.id, config.peers.clone());
        mesh_config.detector = config.detector;
        mesh_config.bulk_inline = true;
        mesh_config.incarnation = crate::clock::unix_millis();
        // A first start reports a taken address at once; a restart may find the old mesh's socket
        // still closing, so it retries briefly.
        let attempts = if args.view.has_started() { REBIND_ATTEMPTS } else { 1 };
        let mut outcome = Mesh::start(mesh_config.clone(), &args.credentials, MeshSocket::Udp(config.listen));
        for _ in 1..attempts {
            if outcome.is_ok() {
                break;
            }
            tokio::time::sleep(REBIND_WAIT).await;
            outcome = Mesh::start(mesh_config.clone(), &args.credentials, MeshSocket::Udp(config.listen));
        }
        let mesh = outcome.map_err(Box::new)?;
        let coordinator_config = CoordinatorConfig {
            node: config.id,
            voters: config.peers.clone(),
            data_dir: config.data_dir.join("raft"),
            limits: config.registry,
            timings: RaftTimings::default(),
            seed: config.id.0 ^ crate::clock::unix_millis(),
            inline_disk: false,
            snapshot_logs: crate::consensus::coordinator::SNAPSHOT_LOGS_DEFAULT,
            grid_limits: crate::grid::TableLimits::default(),
            session_seed: None,
            // A node that joined as a voter is added by the leader; it never starts a cluster.
            initialize: !config.voter,
        };
        let coordinator =
            match Coordinator::start(coordinator_config, mesh.clone(), Arc::new(GridHub::new(config.id))).await {
                Ok(coordinator) => coordinator,
                Err(error) => {
                    mesh.shutdown().await;
                    return Err(Box::new(error));
                }
            };
        let worker_args = Arc::new(WorkerArgs {
            node: config.id,
            link: crate::worker::WorkerLink::Local(coordinator.clone()),
            kinds: args.kinds.clone(),
            threads: (config.slots as usize).clamp(1, crate::node::config::default_slots() as usize),
            slots: config.slots,
            gauge: args.view.worker_gauge(),
            logs: Some(logs),
        });
        let worker = match Actor::spawn_linked(
            Some(worker_actor_name(config.id, &args.instance)),
            WorkerSupervisor,
            worker_args,
            myself.get_cell(),
        )
        .await
        {
            Ok((worker, _)) => worker,
            Err(error) => {
                coordinator.shutdown().await;
                mesh.shutdown().await;
                return Err(root_cause(&error).into());
            }
        };
        let dispatcher = tokio::spawn(crate::service::dispatcher::run_with(
            coordinator.clone(),
            config.placement,
            config.id.0 ^ crate::clock::unix_millis(),
            crate::service::dispatcher::DispatchOptions { unplaceable_timeout_ms: config.unplaceable_timeout_ms },
        ));
        // The actor host runs next to the worker; its kinds are advertised in the registration.
        let actors = match crate::actors::ActorService::start(&coordinator, args.actors.clone(), config.actors) {
            Ok(actors) => Some(actors),
            Err(error) => {
                tracing::warn!(node = %config.id, %error, "this node hosts no actors");
                None
            }
        };
        let record = NodeRecord {
            addr: config.listen.to_string(),
            slots: config.slots,
            prefetch: config.prefetch,
            weight: config.weight,
            kinds: args.kinds.names(),
            state_version: super::advertised_state_version(),
            admin: Some(super::advertised_admin(config)),
            actor_kinds: actors.as_ref().map(|actors| actors.host().kinds().names()),
        };
        let zk = match &config.zk {
            Some(zk) => match crate::zk::ZkServer::start(zk.clone(), coordinator.clone(), super::zk_auth(&args.edge))
                .await
            {
                Ok(server) => Some(server),
                Err(error) => {
                    dispatcher.abort();
                    if let Some(actors) = &actors {
                        actors.stop();
                    }
                    stop_child(&myself.get_cell(), &worker.get_cell(), "ZooKeeper port unavailable", WORKER_STOP_WAIT)
                        .await;
                    coordinator.shutdown().await;
                    mesh.shutdown().await;
                    return Err(format!("ZooKeeper client port {}: {error}", zk.listen).into());
                }
            },
            None => None,
        };
        let registration =
            tokio::spawn(crate::service::registration::keep_registered_local(coordinator.clone(), config.id, record));
        args.view.set_mesh(Some(mesh.clone()));
        args.view.set_coordinator(Some(coordinator.clone()));
        let watched = mesh.clone();
        let cell = myself.get_cell();
        tokio::spawn(async move {
            if let Some(reason) = watched.failed().await {
                let _ = myself.send_message(MeshMsg::Failed(reason));
            }
        });
        Ok(MeshActorState {
            zk: tokio::sync::Mutex::new(zk),
            mesh,
            coordinator,
            registration,
            dispatcher,
            worker,
            actors,
            view: args.view.clone(),
            myself: cell,
        })
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<MeshMsg>,
        event: SupervisionEvent,
        state: &mut MeshActorState,
    ) -> Result<(), ActorProcessingErr> {
        // The worker supervisor is the only linked child, and `stop_mesh` unlinks it before stopping
        // it: any end of it reported here, a failure or a stop, leaves the node without a worker, so
        // the node's services restart.
        match event {
            SupervisionEvent::ActorFailed(cell, error) if cell.get_id() == state.worker.get_id() => {
                state.stop_mesh().await;
                Err(format!("worker failed: {error}").into())
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) if cell.get_id() == state.worker.get_id() => {
                state.stop_mesh().await;
                Err(format!("worker stopped: {}", reason.as_deref().unwrap_or("no reason given")).into())
            }
            _ => Ok(()),
        }
    }

    async fn handle(
        &self,
        _myself: ActorRef<MeshMsg>,
        message: MeshMsg,
        state: &mut MeshActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MeshMsg::Failed(reason) => {
                state.stop_mesh().await;
                Err(reason.into())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MeshMsg>,
        state: &mut MeshActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_mesh().await;
        Ok(())
    }
}

/// Owns the admin HTTP server.
pub struct AdminActor;

/// The admin actor's messages.
pub enum AdminMsg {
    /// The server stopped serving.
    Stopped(String),
}

/// The admin actor's state: the server task and the metrics upkeep task.
pub struct AdminTasks {
    server: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
}

impl Actor for AdminActor {
    type Msg = AdminMsg;
    type State = AdminTasks;
    type Arguments = Arc<SupervisorArgs>;

    async fn pre_start(
        &self,
        myself: ActorRef<AdminMsg>,
        args: Arc<SupervisorArgs>,
    ) -> Result<AdminTasks, ActorProcessingErr> {
        let addr = args.config.admin;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| format!("admin address {addr} is unavailable: {error}"))?;
        let mut state = AdminState::new(
            args.view.clone(),
            args.prometheus.clone(),
            args.edge.auth.clone(),
            args.config.admin_server.clone(),
        )
        .with_audit(&args.config.data_dir)
        .map_err(|error| format!("audit log in {} cannot be opened: {error}", args.config.data_dir.display()))?;
        if let Some(tls) = &args.edge.tls {
            state = state.with_tls(tls.clone());
        }
        state.node_access = super::node_access(&args.config);
        let state = Arc::new(state);
        let server = tokio::spawn(async move {
            let reason = match serve(listener, state).await {
                Ok(()) => "admin server stopped".to_string(),
                Err(error) => format!("admin server failed: {error}"),
            };
            let _ = myself.send_message(AdminMsg::Stopped(reason));
        });
        let prometheus = args.prometheus.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                prometheus.run_upkeep();
            }
        });
        Ok(AdminTasks { server, upkeep })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AdminMsg>,
        message: AdminMsg,
        _tasks: &mut AdminTasks,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AdminMsg::Stopped(reason) => {
                stop_tasks(_tasks).await;
                Err(reason.into())
            }
        }
    }

    async fn post_stop(&self, _myself: ActorRef<AdminMsg>, tasks: &mut AdminTasks) -> Result<(), ActorProcessingErr> {
        stop_tasks(tasks).await;
        Ok(())
    }
}

/// Stops the admin tasks and waits until they are gone, so the listener is closed before a restarted
/// actor binds the same address.
async fn stop_tasks(tasks: &mut AdminTasks) {
    tasks.server.abort();
    tasks.upkeep.abort();
    let _ = (&mut tasks.server).await;
    let _ = (&mut tasks.upkeep).await;
}

#[cfg(test)]
mod tests;
