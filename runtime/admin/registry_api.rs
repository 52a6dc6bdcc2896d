//! The registry over the admin HTTP API, as JSON: thin routes that parse, authorize, call the
//! service layer (`crate::service::registry`) and answer its errors (see `error.rs`). Who may call
//! what is decided before a route runs (`auth.rs`, `policy.rs`): reads need a reader, writes and
//! sessions an operator (a worker: only its own registration).
//!
//! Errors answer with a status and `{"error": "<name>", "message": "..."}`: 404 `no node`, 409 for the
//! other registry refusals, 400 for bad input, 413 past a size limit, 401 without a credential, 403
//! `no auth` for a role that may not, or when a session's secret is missing or wrong, 503 when no leader is reachable.
//!
//! - `GET /registry/node?path=&consistency=` → data (UTF-8 and hex) and stat; `GET /registry/stat`
//!   → the stat or `null`; `GET /registry/children` → sorted names and the parent's stat. Reads are
//!   `linearizable` by default, `local` on request.
//! - `GET /registry/acl?path=` → the node's ACL, ACL version and stat; `POST /registry/acl`
//!   `{"path", "acl": [{"perms", "scheme", "id"}], "version"}` replaces it.
//! - `GET /registry/watch?path=&kind=&since=` → watch events as newline-delimited JSON.
//! - `POST /registry/create`, `POST /registry/set`, `POST /registry/delete`, `POST /registry/multi`,
//!   `POST /registry/sync`.
//! - `POST /registry/session/open`, `POST /registry/session/keepalive`, `POST /registry/session/close`.
//!
//! Every call is also checked against the nodes' ACLs, as ZooKeeper checks them: the operator is the
//! super user; a worker writes only its own registration (as the cluster does); any other credential
//! NAME is `gridkeeper:NAME` (and `ip:ADDRESS`), so `GET /registry/node` of a node whose ACL does not
//! let it READ answers 403 `no auth`.
//!
//! Sessions belong to their openers: `session/open` answers with the session's `secret` (32 hex
//! characters), returned by no other call, and `session/keepalive`, `session/close` and creates of
//! ephemeral nodes under the session (`create`, `multi`) must present it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;

use super::connection::ClientAddr;
use super::error::HttpError;
use super::http::AdminState;
use crate::api::registry::{
    AclBody, ChildrenBody, CreateBody, CreatedBody, DeleteBody, MultiBody, NodeBody, ReadQuery, SessionBody,
    SetAclBody, SetBody, StatBody, WatchQuery,
};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::Coordinator;
use crate::credentials::{Principal, Role};
use crate::registry::{AuthId, Caller, WatchKind};
use crate::service::registry as service;
use crate::state::Outcome;

/// The registry routes, to merge into the admin router.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/registry/node", get(get_node))
        .route("/registry/stat", get(stat))
        .route("/registry/children", get(children))
        .route("/registry/acl", get(acl).post(set_acl))
        .route("/registry/watch", get(watch))
        .route("/registry/create", post(create))
        .route("/registry/set", post(set))
        .route("/registry/delete", post(delete))
        .route("/registry/multi", post(multi))
        .route("/registry/sync", post(sync))
        .route("/registry/session/open", post(open_session))
        .route("/registry/session/keepalive", post(keepalive))
        .route("/registry/session/close", post(close_session))
}

type ApiResult<T> = Result<Json<T>, HttpError>;

/// This node's coordinator.
///
/// # Errors
/// Unavailable while it is not running (starting, or a joined worker, which runs none).
pub(crate) fn coordinator(state: &AdminState) -> Result<Coordinator, HttpError> {
    state.view.coordinator().ok_or_else(|| HttpError(ApiError::new(ErrorCode::Unavailable, "coordinator not running")))
}

/// The credential a call came with, for the registry's ACL checks.
type Who = Option<Extension<Principal>>;

/// Who `who` is to the registry's ACLs: the operator is the super user; a worker writes its own
/// registration as the cluster does (its policy already confined it to that); any other credential
/// NAME is the identity `gridkeeper:NAME`, plus its address as `ip:ADDRESS`.
fn asker_of(who: &Who, client: &Option<Extension<ClientAddr>>) -> Option<Caller> {
    let Some(Extension(principal)) = who else {
        return Some(Caller::anonymous());
    };
    match principal.role {
        Role::Operator => Some(Caller::superuser()),
        Role::Worker(_) => None,
        Role::Reader | Role::Submitter | Role::Metrics => {
            let mut caller = Caller::anonymous();
            caller.add(AuthId::new("gridkeeper", &principal.name));
            if let Some(Extension(client)) = client {
                caller.add(AuthId::new("ip", &client.0.ip().to_string()));
            }
            Some(caller)
        }
    }
}

async fn get_node(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<NodeBody> {
    let path = service::parse_path(&query.path)?;
    let asker = asker_of(&who, &client);
    Ok(Json(service::get(&coordinator(&state)?, asker.as_ref(), &path, query.consistency).await?))
}

/// A node's ACL, its ACL version and stat (needs READ or ADMIN on it).
async fn acl(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<AclBody> {
    let path = service::parse_path(&query.path)?;
    let asker = asker_of(&who, &client);
    let (acl, stat) = service::acl(&coordinator(&state)?, asker.as_ref(), &path, query.consistency).await?;
    Ok(Json(AclBody { path: path.to_string(), acl, aversion: stat.aversion, stat }))
}

/// Replaces a node's ACL (needs ADMIN on it), if its ACL version is the one given.
async fn set_acl(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<SetAclBody>,
) -> ApiResult<AclBody> {
    let path = service::parse_path(&body.path)?;
    let asker = asker_of(&who, &client);
    let coordinator = coordinator(&state)?;
    let stat = service::set_acl(&coordinator, asker.as_ref(), &path, &body.acl, body.version).await?;
    let (acl, _) = coordinator.read_local(|registry| registry.acl(&path)).unwrap_or((body.acl, stat));
    Ok(Json(AclBody { path: path.to_string(), acl, aversion: stat.aversion, stat }))
}

async fn stat(State(state): State<Arc<AdminState>>, Query(query): Query<ReadQuery>) -> ApiResult<StatBody> {
    let path = service::parse_path(&query.path)?;
    Ok(Json(service::stat(&coordinator(&state)?, &path, query.consistency).await?))
}

async fn children(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<ChildrenBody> {
    let path = service::parse_path(&query.path)?;
    let asker = asker_of(&who, &client);
    Ok(Json(service::children(&coordinator(&state)?, asker.as_ref(), &path, query.consistency).await?))
}

async fn create(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<CreateBody>,
) -> ApiResult<CreatedBody> {
    let asker = asker_of(&who, &client);
    Ok(Json(service::create(&coordinator(&state)?, asker.as_ref(), body).await?))
}

async fn set(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<SetBody>,
) -> ApiResult<StatBody> {
    let asker = asker_of(&who, &client);
    Ok(Json(service::set(&coordinator(&state)?, asker.as_ref(), body).await?))
}

async fn delete(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<DeleteBody>,
) -> ApiResult<serde_json::Value> {
    let asker = asker_of(&who, &client);
    service::delete(&coordinator(&state)?, asker.as_ref(), &body).await?;
    Ok(Json(serde_json::json!({ "deleted": body.path })))
}

async fn multi(
    State(state): State<Arc<AdminState>>,
    who: Who,
    client: Option<Extension<ClientAddr>>,
    Json(body): Json<MultiBody>,
) -> ApiResult<Outcome> {
    let asker = asker_of(&who, &client);
    Ok(Json(service::multi(&coordinator(&state)?, asker.as_ref(), body).await?))
}

async fn sync(State(state): State<Arc<AdminState>>) -> ApiResult<serde_json::Value> {
    let applied_index = service::sync(&coordinator(&state)?).await?;
    Ok(Json(serde_json::json!({ "applied_index": applied_index })))
}

async fn open_session(State(state): State<Arc<AdminState>>, Json(body): Json<SessionBody>) -> ApiResult<SessionBody> {
    Ok(Json(service::open_session(&coordinator(&state)?, body.timeout_ms).await?))
}

/// Keeps a session alive. Needs the session's secret: only its opener can hold its ephemerals and
/// locks.
async fn keepalive(State(state): State<Arc<AdminState>>, Json(body): Json<SessionBody>) -> ApiResult<SessionBody> {
    Ok(Json(service::keepalive(&coordinator(&state)?, &body).await?))
}

async fn close_session(State(state): State<Arc<AdminState>>, Json(body): Json<SessionBody>) -> ApiResult<SessionBody> {
    Ok(Json(service::close_session(&coordinator(&state)?, &body).await?))
}

/// Streams watch events as newline-delimited JSON. A one-shot watch ends the stream after its event;
/// a persistent recursive watch streams until the client disconnects. A client address holds at most
/// `ADMIN_WATCHES_PER_CLIENT_MAX` streams; past it the answer is 429 `too many watches`.
async fn watch(
    State(state): State<Arc<AdminState>>,
    client: Option<axum::Extension<super::connection::ClientAddr>>,
    Query(query): Query<WatchQuery>,
) -> Result<Response, HttpError> {
    let path = service::parse_path(&query.path)?;
    let coordinator = coordinator(&state)?;
    let ticket = client
        .map(|axum::Extension(client)| super::connection::WatchTicket::admit(&state.gate, client.0.ip()))
        .transpose()
        .map_err(|refusal| ApiError::new(ErrorCode::TooManyWatches, refusal))?;
    let watch = service::watch(&coordinator, &path, query.kind, query.since).await?;
    let one_shot = !matches!(query.kind, WatchKind::PersistentRecursive | WatchKind::Persistent);
    let stream = futures_util::stream::unfold((watch, ticket, false), move |(mut watch, ticket, done)| async move {
        if done {
            return None;
        }
        let event = watch.events.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), (watch, ticket, one_shot)))
    });
    Ok(([("content-type", "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::api::registry::{CreateBody, MultiBody, SessionBody, SetBody};
    use crate::api::{ApiError, ErrorCode};
    use crate::consensus::CoordinatorError;
    use crate::registry::{RegistryError, SessionId, SessionSecret};
    use crate::service::registry::session_of;

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<SetBody>(r#"{"path":"/a","data":"x","versoin":3}"#).is_err());
        assert!(serde_json::from_str::<CreateBody>(r#"{"path":"/a","sesion":1}"#).is_err());
        assert!(serde_json::from_str::<MultiBody>(r#"{"ops":[{"check":{"path":"/a","version":1,"x":0}}]}"#).is_err());
        assert!(serde_json::from_str::<SessionBody>(r#"{"session":1,"secrte":"00"}"#).is_err());
        let body: CreateBody = serde_json::from_str(&format!(
            r#"{{"path":"/a","mode":"ephemeral","session":5,"secret":"{}"}}"#,
            "ab".repeat(16)
        ))
        .expect("a create with a secret");
        assert_eq!(body.secret, Some(SessionSecret::from_bytes([0xab; 16])));
    }

    #[test]
    fn a_missing_or_wrong_secret_is_403_no_auth() {
        let body = SessionBody { session: Some(9), timeout_ms: None, alive: None, secret: None };
        let refused = session_of(&body).map(|_| ()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::NoAuth);
        assert_eq!(super::super::error::status(refused.code), StatusCode::FORBIDDEN);
        let refused = ApiError::from(CoordinatorError::Registry(RegistryError::NoAuth { session: SessionId(9) }));
        assert_eq!(super::super::error::status(refused.code), StatusCode::FORBIDDEN);
        let answer = SessionBody { session: Some(9), timeout_ms: None, alive: Some(true), secret: None };
        assert!(!serde_json::to_string(&answer).expect("json").contains("secret"), "no secret unless opening");
    }
}
