//! The admin HTTP server: `GET /health`, `GET /metrics`, `GET /status`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use super::status::{MemberView, StatusView};
use crate::node::NodeView;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The node's live view.
    pub view: NodeView,
    /// The metrics registry.
    pub prometheus: PrometheusHandle,
    /// Bearer token mutating calls must present.
    pub admin_token: String,
}

/// How often histogram and summary buffers are drained even if nobody scrapes.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .merge(super::registry_api::routes())
        .merge(super::grid_api::routes())
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
