//! The admin HTTP server: `GET /health`, `GET /metrics`, `GET /status`, and [`serve`], the accept loop
//! that bounds connections (overall and per client address) before any request is read.
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
use super::connection::{refuse_connection, serve_connection, ConnectionTicket, Gate};
use super::status::{MemberView, StatusView};
use super::view::NodeView;
use crate::clock::Clock;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The node's live view.
    pub view: NodeView,
    /// The metrics registry.
    pub prometheus: PrometheusHandle,
    /// Bearer token mutating calls must present.
    pub admin_token: String,
    /// Timeouts and accepted host names.
    pub server: Arc<AdminServerConfig>,
    /// Connections and watch streams held, overall and per client address.
    pub(crate) gate: Gate,
}

impl AdminState {
    /// The state of a node's admin server.
    pub fn new(view: NodeView, prometheus: PrometheusHandle, admin_token: String, server: AdminServerConfig) -> Self {
        AdminState {
            view,
            prometheus,
            admin_token,
            server: Arc::new(server),
            gate: Arc::new(Mutex::new(Default::default())),
        }
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
        match ConnectionTicket::admit(&state.gate, peer.ip()) {
            Ok(ticket) => {
                connections.spawn(serve_connection(stream, peer, app.clone(), state.server.clone(), ticket, clock));
            }
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
        .merge(super::ready::routes())
        .merge(super::registry_api::routes())
        .merge(super::grid_api::routes(state.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::ADMIN_REQUEST_BYTES_MAX))
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render())
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<StatusView> {
    Json(status_view(&state.view))
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
        members,
    }
}
