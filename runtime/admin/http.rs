//! The admin HTTPS server: `GET /health`, `GET /metrics`, `GET /status`, `GET /members`, and [`serve`], the accept
//! loop that bounds connections (overall and per client address) before any byte is read, then
//! completes the TLS handshake within the header timeout (plain HTTP only with `--admin-plaintext`).
//!
//! Connections past a bound are answered 503 and closed at once; each admitted connection is served
//! by `admin/connection.rs` with its header and idle timeouts. Dropping [`serve`] ends every
//! connection it accepted, so a restarted admin server starts from nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::warn;

use super::admission::AdminServerConfig;
use super::audit::AuditLog;
use super::auth::{EdgeAuth, PeerCertificate};
use super::connection::{refuse_connection, serve_connection, ConnectionTicket, Gate};
use super::status::{MemberRole, MemberRow, MemberView, MembersView, StatusView};
use super::tls::peer_principal;
use super::view::NodeView;
use crate::clock::Clock;
use tokio_rustls::TlsAcceptor;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The node's live view.
    pub view: NodeView,
    /// The metrics registry.
    pub prometheus: PrometheusHandle,
    /// The credentials accepted.
    pub auth: EdgeAuth,
    /// Timeouts and accepted host names.
    pub server: Arc<AdminServerConfig>,
    /// HTTPS, unless the node was started with `--admin-plaintext`.
    pub tls: Option<TlsAcceptor>,
    /// Where audited calls go, if this node keeps an audit log.
    pub audit: Option<AuditLog>,
    /// The directory of the audit log, to read it back.
    pub audit_dir: Option<std::path::PathBuf>,
    /// Connections and watch streams held, overall and per client address.
    pub(crate) gate: Gate,
    /// How this node asks another node's admin API for the task logs that node keeps (its node
    /// certificate); `None` when it cannot (then those logs are unavailable through this node).
    pub node_access: Option<crate::client::Access>,
}

impl AdminState {
    /// The state of a node's admin server: plaintext and keeping no audit log until
    /// [`AdminState::with_tls`] and [`AdminState::with_audit`].
    pub fn new(view: NodeView, prometheus: PrometheusHandle, auth: EdgeAuth, server: AdminServerConfig) -> Self {
        AdminState {
            view,
            prometheus,
            auth,
            server: Arc::new(server),
            tls: None,
            audit: None,
            audit_dir: None,
            gate: Arc::new(Mutex::new(Default::default())),
            node_access: None,
        }
    }

    /// Serves HTTPS with `config`.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }

    /// Appends audited calls to the log in `data_dir`.
    ///
    /// # Errors
    /// The I/O error if the log cannot be opened.
    pub fn with_audit(mut self, data_dir: &std::path::Path) -> std::io::Result<Self> {
        self.audit = Some(AuditLog::start(data_dir)?);
        self.audit_dir = Some(data_dir.to_path_buf());
        Ok(self)
    }
}

/// Pause after a failed accept that may pass (out of descriptors or memory), so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Serves the admin API on `listener`: admits each connection within the connection bounds and serves
/// it with the timeouts of `state.server`.
///
/// # Errors
/// The listener's error when it can no longer accept (never for a failure of one connection, nor for
/// running out of descriptors, which passes).
///
/// # Cancel safety
/// Dropping the future closes the listener and every connection it accepted.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) -> std::io::Result<()> {
    let app = router(state.clone());
    let clock = Clock::start();
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if accept_error_passes(&error) => {
                warn!(%error, "admin server cannot accept a connection");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let _ = stream.set_nodelay(true);
        match ConnectionTicket::admit(&state.gate, peer.ip()) {
            Ok(ticket) => {
                let (app, server, tls) = (app.clone(), state.server.clone(), state.tls.clone());
                connections.spawn(async move {
                    let Some(tls) = tls else {
                        return serve_connection(stream, peer, None, app, server, ticket, clock).await;
                    };
                    // The handshake counts against the header timeout: a client that opens a
                    // connection and stalls its handshake holds it no longer than one that stalls
                    // its request head.
                    let handshake = Duration::from_millis(server.header_timeout_ms);
                    match tokio::time::timeout(handshake, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let principal = peer_principal(stream.get_ref().1.peer_certificates());
                            let peer_cert = Some(PeerCertificate(principal));
                            serve_connection(stream, peer, peer_cert, app, server, ticket, clock).await;
                        }
                        Ok(Err(error)) => {
                            super::telemetry::tls_refused();
                            tracing::debug!(%peer, %error, "admin TLS handshake failed");
                        }
                        Err(_) => super::telemetry::refused(super::admission::Refusal::HeaderTimeout),
                    }
                });
            }
            // A client refused for room gets the 503 in plaintext: nothing is spent on a handshake
            // for it, and a TLS client sees the connection close.
            Err(refusal) => refuse_connection(stream, refusal),
        }
    }
}

/// Whether a failed accept concerns one connection or a passing shortage, not the listener itself.
fn accept_error_passes(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// How often histogram and summary buffers are drained even if nobody scrapes.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/members", get(members))
        .merge(super::ready::routes())
        .merge(super::registry_api::routes())
        .merge(super::grid_api::routes())
        .merge(super::actors_api::routes())
        .merge(super::console::routes())
        .merge(super::logs_api::routes())
        .merge(super::auth_api::routes())
        .merge(super::members_api::routes())
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::ADMIN_REQUEST_BYTES_MAX))
        // Outermost: no route (nor the fallback for unknown ones) runs before the caller is allowed.
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::authenticate))
        .with_state(state)
}

async fn health(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.view.mesh().is_some() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "mesh not running\n")
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::telemetry::render(&state.prometheus))
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<StatusView> {
    Json(status_view(&state.view))
}

async fn members(State(state): State<Arc<AdminState>>) -> Result<Json<MembersView>, super::error::HttpError> {
    let coordinator = super::registry_api::coordinator(&state)?;
    Ok(Json(members_view(&state.view, &coordinator).await))
}

/// The `/members` document: the membership this node knows, the mesh's liveness, the registered
/// workers, and the lags the leader reports (asked of it over the mesh).
pub async fn members_view(view: &NodeView, coordinator: &crate::consensus::Coordinator) -> MembersView {
    let replication = coordinator.replication().await.ok();
    let alive = |id: u64| id == view.node().0 || view.mesh().is_some_and(|mesh| mesh.is_alive(crate::ids::NodeId(id)));
    let lag = |id: u64| {
        let replication = replication.as_ref()?;
        if id == replication.leader {
            return Some(0);
        }
        let matched = replication.matched.iter().find(|(member, _)| *member == id)?.1;
        Some(replication.last_log_index.saturating_sub(matched))
    };
    let mut members = Vec::new();
    for (role, list) in [(MemberRole::Voter, coordinator.voters()), (MemberRole::Learner, coordinator.learners())] {
        for (id, addr) in list {
            members.push(MemberRow { id: id.0, addr, role, alive: alive(id.0), lag: lag(id.0) });
        }
    }
    for (id, record) in coordinator.read_state(|state| state.nodes()) {
        if members.iter().any(|member| member.id == id.0) {
            continue;
        }
        members.push(MemberRow { id: id.0, addr: record.addr, role: MemberRole::Worker, alive: true, lag: None });
    }
    MembersView { node: view.node().0, leader: replication.map(|replication| replication.leader), members }
}

/// The `/status` document for `view`.
pub fn status_view(view: &NodeView) -> StatusView {
    let loads = view.coordinator().map(|coordinator| coordinator.read_state(|state| state.loads())).unwrap_or_default();
    let members = view
        .mesh()
        .map(|mesh| {
            mesh.members()
                .into_iter()
                .map(|member| {
                    let load = loads.iter().find(|load| load.node == member.id);
                    MemberView {
                        id: member.id.0,
                        addr: member.addr.to_string(),
                        alive: member.alive,
                        last_seen_ms: member.last_seen_ms,
                        running: load.map(|load| load.running),
                        slots: load.map(|load| load.slots),
                        load: load.map(|load| f64::from(load.running) / f64::from(load.slots.max(1))),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut members: Vec<MemberView> = members;
    // Workers joined through the admin API are in the registry but not in the mesh.
    let registered =
        view.coordinator().map(|coordinator| coordinator.read_state(|state| state.nodes())).unwrap_or_default();
    for (node, record) in registered {
        if members.iter().any(|member| member.id == node.0) {
            continue;
        }
        let load = loads.iter().find(|load| load.node == node);
        members.push(MemberView {
            id: node.0,
            addr: record.addr,
            alive: true,
            last_seen_ms: None,
            running: load.map(|load| load.running),
            slots: Some(record.slots),
            load: load.map(|load| f64::from(load.running) / f64::from(load.slots.max(1))),
        });
    }
    let consensus = view.coordinator().map(|coordinator| coordinator.status());
    StatusView {
        node: view.node().0,
        leader: consensus.and_then(|status| status.leader),
        term: consensus.map(|status| status.term),
        commit_index: consensus.map(|status| status.commit_index),
        applied_index: consensus.map(|status| status.applied_index),
        state_version: view.coordinator().map(|coordinator| coordinator.read_local(|registry| registry.version())),
        members,
    }
}
