//! The live parts of a node that the admin surfaces read: its mesh and coordinator (swapped in and
//! out as the supervisor's actors start and restart) and its worker gauge. The node publishes into
//! it; the admin server only reads.

use std::sync::{Arc, RwLock};

use crate::consensus::Coordinator;
use crate::ids::NodeId;
use crate::mesh::Mesh;
use crate::worker::WorkerGauge;

/// The live parts of a node that read-only surfaces (admin, status) look at. The supervisor swaps
/// the mesh in and out as its actor starts and restarts.
#[derive(Clone, Debug)]
pub struct NodeView {
    node: NodeId,
    mesh: Arc<RwLock<Option<Mesh>>>,
    coordinator: Arc<RwLock<Option<Coordinator>>>,
    started: Arc<std::sync::atomic::AtomicBool>,
    worker: WorkerGauge,
    /// The node's task logs, opened once by whichever of its parts starts first and kept for the
    /// process's life (a restarted mesh actor keeps writing to the same store).
    task_logs: Arc<std::sync::OnceLock<crate::worker::logs::TaskLogs>>,
}

impl NodeView {
    /// A view of `node` with nothing running yet.
    pub fn new(node: NodeId) -> NodeView {
        NodeView {
            node,
            mesh: Arc::default(),
            coordinator: Arc::default(),
            started: Arc::default(),
            worker: WorkerGauge::default(),
            task_logs: Arc::default(),
        }
    }

    /// The gauge of attempts running on this node.
    pub fn worker_gauge(&self) -> WorkerGauge {
        self.worker.clone()
    }

    /// The node's task logs, once opened.
    pub fn task_logs(&self) -> Option<crate::worker::logs::TaskLogs> {
        self.task_logs.get().cloned()
    }

    /// The node's task logs: opened in `data_dir` with `config` on the first call, the same store
    /// after.
    ///
    /// # Errors
    /// The I/O error if the store cannot be opened.
    pub fn open_task_logs(
        &self,
        data_dir: &std::path::Path,
        config: crate::worker::logs::TaskLogsConfig,
    ) -> std::io::Result<crate::worker::logs::TaskLogs> {
        if let Some(logs) = self.task_logs.get() {
            return Ok(logs.clone());
        }
        let opened = crate::worker::logs::TaskLogs::open(data_dir, config, self.node)?;
        Ok(self.task_logs.get_or_init(|| opened).clone())
    }

    /// The node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The running mesh, if any.
    pub fn mesh(&self) -> Option<Mesh> {
        self.mesh.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The running coordinator, if any.
    pub fn coordinator(&self) -> Option<Coordinator> {
        self.coordinator.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Publishes (or withdraws) the running coordinator.
    pub fn set_coordinator(&self, coordinator: Option<Coordinator>) {
        *self.coordinator.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = coordinator;
    }

    /// Whether a mesh was ever published: later starts are restarts.
    pub fn has_started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes (or withdraws) the running mesh.
    pub fn set_mesh(&self, mesh: Option<Mesh>) {
        if mesh.is_some() {
            self.started.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        *self.mesh.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = mesh;
    }
}
