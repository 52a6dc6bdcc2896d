//! Grid actors over the admin HTTP API, as JSON: thin routes that parse, call the actor service
//! (`crate::actors::service::ActorService`) and answer its errors (see `error.rs`). Who may call is
//! decided before a route runs (`auth.rs`, `policy.rs`): a call needs a submitter and is audited, a
//! listing needs a reader. The bodies are the contract's (`crate::api::actors`).
//!
//! - `POST /grid/actors/call` `{"kind", "key", "message", "idempotency_key", "timeout_ms"}` →
//!   `{"kind", "key", "node", "reply"}`: the message goes to the actor wherever it is hosted (activated
//!   on first call), the reply comes back as JSON. Bounds are checked where the body is parsed (400
//!   `bad arguments`, 413 `too large`); 429 `overloaded` for a full mailbox, 422 `actor failed` for a
//!   handler's error, 503 `outcome unknown` when the host was lost mid-call (never retried here).
//! - `POST /grid/actors/tell`, the same body → `{"kind", "key", "node"}` once the message is queued on
//!   its host (its reply is not waited for; 429 `overloaded` for a full mailbox).
//! - `GET /grid/actors?kind=` → `{"actors": [ActorView, ...], "truncated"}`, in (kind, key) order, at
//!   most `ACTORS_LIST_MAX`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::HttpError;
use super::http::AdminState;
use super::registry_api::coordinator;
use crate::actors::service::{ActorService, CallAnswer, CallOptions};
use crate::api::actors::{ActorCallAnswer, ActorCallRequest, ActorToldAnswer, ActorsAnswer, ActorsQuery};
use crate::api::{ApiError, ErrorCode};
use crate::grid::actors::ActorId;
use crate::grid::task::Encoding;

type ApiResult<T> = Result<Json<T>, HttpError>;

/// The actor routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/grid/actors/call", post(call))
        .route("/grid/actors/tell", post(tell))
        .route("/grid/actors", get(actors))
}

fn service(state: &AdminState) -> Result<ActorService, HttpError> {
    ActorService::of(&coordinator(state)?)
        .ok_or_else(|| HttpError(ApiError::new(ErrorCode::Unavailable, "this node's actor host is not running")))
}

async fn call(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<ActorCallRequest>,
) -> ApiResult<ActorCallAnswer> {
    let (actor, answer) = send(&state, request, false).await?;
    Ok(Json(ActorCallAnswer::of(actor, answer.node, &answer.reply)?))
}

async fn tell(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<ActorCallRequest>,
) -> ApiResult<ActorToldAnswer> {
    let (actor, answer) = send(&state, request, true).await?;
    Ok(Json(ActorToldAnswer { kind: actor.kind, key: actor.key, node: answer.node }))
}

/// Parses a call's body and sends it through the actor service, as a call or (`tell`) a tell.
async fn send(state: &AdminState, request: ActorCallRequest, tell: bool) -> Result<(ActorId, CallAnswer), HttpError> {
    let call = request.parse()?;
    let options = CallOptions { idempotency_key: call.idempotency_key, timeout_ms: call.timeout_ms, tell };
    let answer = service(state)?.call(call.actor.clone(), call.message, Encoding::Json, options).await?;
    Ok((call.actor, answer))
}

async fn actors(State(state): State<Arc<AdminState>>, Query(query): Query<ActorsQuery>) -> ApiResult<ActorsAnswer> {
    let kind = query.kind()?;
    let views = service(&state)?.list(kind).await?;
    Ok(Json(ActorsAnswer::of(views)))
}
