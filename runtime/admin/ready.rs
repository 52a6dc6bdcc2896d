//! `GET /ready`: a readiness probe, distinct from `/health` (liveness).
//!
//! 200 `{"ready": true, "reason": null}` when the node knows a leader and its writes make progress;
//! 503 `{"ready": false, "reason": "..."}` otherwise (no leader, a commit index stuck while writes
//! wait, the coordinator not running). Needs no credential: probes cannot present one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::http::AdminState;

/// The `/ready` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyView {
    /// Whether the node is ready.
    pub ready: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

/// The readiness route.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/ready", get(ready))
}

async fn ready(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<ReadyView>) {
    let verdict = match state.view.coordinator() {
        Some(coordinator) => coordinator.readiness().map_err(|reason| reason.to_string()),
        None => Err("coordinator not running".to_string()),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, Json(ReadyView { ready: true, reason: None })),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(ReadyView { ready: false, reason: Some(reason) })),
    }
}
