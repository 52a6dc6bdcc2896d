//! Credentials and the audit log over the admin API: thin routes over `crate::service::credentials`
//! and `admin/audit.rs`.
//!
//! - `POST /auth/revoke` `{"name"}` → the [`Revocation`] committed (operator). Every node refuses the
//!   name's tokens and client certificates once it has applied it.
//! - `GET /auth/revoked` → `{"revoked": [Revocation, ...]}` (any credential: a joined worker refreshes
//!   its copy from it).
//! - `GET /audit?since_ms=&limit=` → `{"records": [AuditRecord, ...]}`, this node's newest records,
//!   oldest first (operator).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::audit::{read_since, AUDIT_READ_RECORDS_MAX};
use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::api::auth::{AuditQuery, AuditResponse, Revocation, RevokeRequest, RevokedResponse};
use crate::api::{ApiError, ErrorCode};
use crate::credentials::Principal;
use crate::service::credentials as service;

/// The credential routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/auth/revoke", post(revoke)).route("/auth/revoked", get(revoked)).route("/audit", get(audit))
}

async fn revoke(
    State(state): State<Arc<AdminState>>,
    caller: Option<Extension<Principal>>,
    Json(request): Json<RevokeRequest>,
) -> Result<Json<Revocation>, HttpError> {
    let by = caller.map(|Extension(principal)| principal.name).unwrap_or_default();
    let revocation = service::revoke(&coordinator(&state)?, &request.name, &by, crate::clock::unix_millis()).await?;
    Ok(Json(revocation))
}

async fn revoked(State(state): State<Arc<AdminState>>) -> Result<Json<RevokedResponse>, HttpError> {
    Ok(Json(RevokedResponse { revoked: service::revoked(&coordinator(&state)?).await? }))
}

async fn audit(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditResponse>, HttpError> {
    let Some(dir) = state.audit_dir.clone() else {
        return Err(HttpError(ApiError::new(ErrorCode::Unavailable, "this node keeps no audit log")));
    };
    let limit = query.limit.unwrap_or(AUDIT_READ_RECORDS_MAX);
    let records = tokio::task::spawn_blocking(move || read_since(&dir, query.since_ms, limit))
        .await
        .map_err(|error| ApiError::new(ErrorCode::Internal, error))?
        .map_err(|error| ApiError::new(ErrorCode::Internal, format!("cannot read the audit log: {error}")))?;
    Ok(Json(AuditResponse { records }))
}
