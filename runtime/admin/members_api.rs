//! Membership changes over the admin API: thin routes over `crate::service::membership` (see
//! `crate::api::membership` for the contract).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::api::membership::{AddMemberRequest, JoinInfo, JoinRequest, MemberChange, RemoveMemberRequest};
use crate::service::membership as service;

/// The membership routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/members/add", post(add))
        .route("/members/remove", post(remove))
        .route("/members/join", post(join))
}

async fn add(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<AddMemberRequest>,
) -> Result<Json<MemberChange>, HttpError> {
    Ok(Json(service::add(&coordinator(&state)?, request.id, &request.addr).await?))
}

async fn remove(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<RemoveMemberRequest>,
) -> Result<Json<MemberChange>, HttpError> {
    Ok(Json(service::remove(&coordinator(&state)?, request.id).await?))
}

async fn join(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<JoinRequest>,
) -> Result<Json<JoinInfo>, HttpError> {
    Ok(Json(service::join(&coordinator(&state)?, request.node).await?))
}
