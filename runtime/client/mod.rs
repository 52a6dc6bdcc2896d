//! A registry client for other processes: the admin HTTP API over a small pool of kept-alive
//! connections, with sessions that keep themselves alive and watches as async streams.
//!
//! Clones of a [`Client`] share its pool: each call takes a connection of its own for its length
//! and gives it back after, so a long `wait` on one clone never holds up another clone's call. No
//! lock is held across a network round trip.
//!
//! A [`Session`] holds the secret its open returned; keepalives, its close and ephemeral creates under
//! it present that secret, so only this client can hold the session's ephemerals.
//!
//! Any node serves any call: followers forward writes and serve linearizable reads themselves, so a
//! client never sees "not leader".

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::api::actors::{ActorCallAnswer, ActorCallRequest, ActorToldAnswer, ActorsAnswer, ActorsQuery};
use crate::api::grid::{
    DrainRequest, IdsRequest, JobView, JobsResponse, NameRequest, NodeStatus, RecordedResponse, ScheduleRequest,
    SubmitRequest, SubmitResponse, TaskView, TasksQuery, TasksResponse, WaitRequest, WaitResponse,
};
use crate::api::registry::{
    ChildrenBody, CreateBody, CreatedBody, DeleteBody, MultiBody, NodeBody, SessionBody, SetBody, StatBody,
};
use crate::api::{ApiError, ErrorCode};
use crate::consensus::Consistency;
use crate::limits::ADMIN_RESPONSE_BYTES_MAX;
use crate::registry::{CreateMode, SessionSecret, Stat, WatchEvent, WatchKind};

/// Deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Events buffered per watch stream in the client.
const WATCH_BUFFER: usize = 256;
/// Bytes of one watch event line.
const WATCH_LINE_BYTES_MAX: usize = 64 << 10;

pub use crate::limits::CLIENT_CONNECTIONS_MAX;

mod access;
pub use access::Access;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error; its code says what happened (the same codes a local
    /// caller gets, see [`crate::api::ErrorCode`]).
    #[error("{}", api_message(.0))]
    Api(ApiError),
    /// No node could be reached, or one answered with garbage. Nothing is known to have been
    /// applied; a write whose node died after it was sent is not sent again.
    #[error("transport: {0}")]
    Transport(String),
}

impl ClientError {
    /// The error's code: the cluster's, or [`ErrorCode::Unavailable`] when no node answered.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Api(error) => error.code,
            ClientError::Transport(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Api(error) => error,
            transport @ ClientError::Transport(_) => ApiError::new(ErrorCode::Unavailable, transport),
        }
    }
}

/// The error an answer with a failure status carries: the contract's error, decoded by its code, or
/// a transport error for a body that is not one (a proxy's page, say).
pub fn error_from_answer(status: hyper::StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(error) => ClientError::Api(error),
        Err(_) => ClientError::Transport(format!("HTTP {status}: {}", String::from_utf8_lossy(body))),
    }
}

/// The message, led by the code's name unless it already is.
fn api_message(error: &ApiError) -> String {
    let name = error.code.name();
    if error.message.starts_with(name) {
        error.message.clone()
    } else {
        format!("{name}: {}", error.message)
    }
}

fn transport(error: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(error.to_string())
}

/// A connection to the registry through one node's admin API at a time, failing over to the next
/// listed node when the current one cannot be reached (as ZooKeeper clients do with a connect string).
#[derive(Clone)]
pub struct Client {
    nodes: Arc<[SocketAddr]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    access: Access,
    pool: Arc<Pool>,
}

/// A kept-alive connection and the index of the node it goes to.
type Connection = (usize, SendRequest<Full<Bytes>>);

/// The connections a client's clones share. Its lock is held only to take or give back an idle
/// connection, never across an await, so no call waits on another call's round trip.
struct Pool {
    /// Idle connections, at most [`CLIENT_CONNECTIONS_MAX`].
    idle: std::sync::Mutex<Vec<Connection>>,
    /// One permit per call in flight, each of which holds one connection.
    calls: Semaphore,
}

impl Pool {
    fn new() -> Pool {
        Pool { idle: std::sync::Mutex::new(Vec::new()), calls: Semaphore::new(CLIENT_CONNECTIONS_MAX) }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding the lock, and a list of connections has no invariant to break.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection to node `index` that is still open. Idle connections to other nodes (left
    /// from before a failover) and closed ones are dropped on the way.
    fn take(&self, index: usize) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle();
        while let Some((to, sender)) = idle.pop() {
            if to == index && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange completed for the next call.
    fn give_back(&self, connection: Connection) {
        let mut idle = self.idle();
        if idle.len() < CLIENT_CONNECTIONS_MAX {
            idle.push(connection);
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("nodes", &self.nodes).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the node whose admin API is at `admin`, with `access` (see [`Access`]: usually
    /// [`Access::from_certs`] on a credentials directory).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the node cannot be reached or its certificate does not verify.
    pub async fn connect(admin: SocketAddr, access: Access) -> Result<Client, ClientError> {
        Client::connect_any(&[admin], access).await
    }

    /// Connects to the first reachable node of `admins`; later calls fail over along the list.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if no node can be reached (or the list is empty).
    pub async fn connect_any(admins: &[SocketAddr], access: Access) -> Result<Client, ClientError> {
        let client = Client { nodes: Arc::from(admins), current: Arc::default(), access, pool: Arc::new(Pool::new()) };
        let mut last = ClientError::Transport("no admin address given".into());
        for (index, &admin) in admins.iter().enumerate() {
            match client.access.dial(admin).await {
                Ok(sender) => {
                    client.current.store(index, std::sync::atomic::Ordering::Relaxed);
                    client.pool.give_back((index, sender));
                    return Ok(client);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The node currently used.
    pub fn current_node(&self) -> SocketAddr {
        self.nodes[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.nodes.len()]
    }

    fn fail_over(&self, from: usize) {
        let next = (from + 1) % self.nodes.len();
        let _ = self.current.compare_exchange(
            from,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Connects as the operator whose certificate is in a credentials directory
    /// ([`Access::from_certs`]).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the files cannot be read or the node reached.
    pub async fn connect_with_certs(admin: SocketAddr, certs: &Path) -> Result<Client, ClientError> {
        Client::connect(admin, Access::from_certs(certs)?).await
    }

    fn request(&self, method: hyper::Method, uri: &str, admin: SocketAddr) -> hyper::http::request::Builder {
        let mut request =
            hyper::Request::builder().method(method).uri(uri).header(hyper::header::HOST, admin.to_string());
        if let Some(authorization) = self.access.authorization() {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        request
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        uri: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, uri, body))
            .await
            .unwrap_or_else(|_| Err(ClientError::Transport("call timed out".into())))
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        uri: String,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        // Waits only while every connection is busy with another call; the permit goes back when this
        // call ends, however it ends (its deadline or its caller dropping it included).
        let _permit = self.pool.calls.acquire().await.map_err(transport)?;
        let mut last = ClientError::Transport("no node reachable".into());
        for _ in 0..self.nodes.len() {
            let index = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.nodes.len();
            let mut sender = match self.pool.take(index) {
                Some(sender) => sender,
                None => match self.access.dial(self.nodes[index]).await {
                    Ok(sender) => sender,
                    // Nothing was sent: the next node may serve it.
                    Err(error) => {
                        self.fail_over(index);
                        last = error;
                        continue;
                    }
                },
            };
            let admin = self.nodes[index];
            let mut request = self.request(method.clone(), &uri, admin);
            if body.is_some() {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let request = request.body(Full::new(Bytes::from(body.clone().unwrap_or_default()))).map_err(transport)?;
            let answer = async {
                sender.ready().await.map_err(transport)?;
                let response = sender.send_request(request).await.map_err(transport)?;
                let status = response.status();
                let bytes = Limited::new(response.into_body(), ADMIN_RESPONSE_BYTES_MAX)
                    .collect()
                    .await
                    .map_err(transport)?
                    .to_bytes();
                Ok::<_, ClientError>((status, bytes))
            }
            .await;
            let (status, bytes) = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    self.fail_over(index);
                    // A read can be asked again elsewhere; a write may have been applied, so its
                    // caller decides.
                    if method == hyper::Method::GET {
                        last = error;
                        continue;
                    }
                    return Err(error);
                }
            };
            // Only a connection whose exchange completed goes back: one dropped mid-call (cancelled)
            // may still carry a response nobody will read.
            self.pool.give_back((index, sender));
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(transport);
            }
            return Err(error_from_answer(status, &bytes));
        }
        Err(last)
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(transport)?;
        self.call(hyper::Method::POST, path.to_string(), Some(body)).await
    }

    /// `GET uri` (a route of the admin API with its query), its JSON answer decoded; failing over
    /// like every read. For the command line's documents that are not part of the client's API
    /// (`/status`, `/members`).
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.call(hyper::Method::GET, uri.to_string(), None).await
    }

    fn read_uri(route: &str, path: &str, consistency: Consistency) -> String {
        let consistency = match consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Local => "local",
        };
        format!("/registry/{route}?path={}&consistency={consistency}", encode_query(path))
    }

    /// Data and stat of `path`.
    ///
    /// # Errors
    /// [`ClientError`]; `no node` if it does not exist.
    pub async fn get(&self, path: &str, consistency: Consistency) -> Result<NodeBody, ClientError> {
        self.call(hyper::Method::GET, Self::read_uri("node", path, consistency), None).await
    }

    /// Stat of `path`, or `None`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn exists(&self, path: &str, consistency: Consistency) -> Result<Option<Stat>, ClientError> {
        let body: StatBody = self.call(hyper::Method::GET, Self::read_uri("stat", path, consistency), None).await?;
        Ok(body.stat)
    }

    /// Sorted children of `path`.
    ///
    /// # Errors
    /// [`ClientError`]; `no node` if it does not exist.
    pub async fn children(&self, path: &str, consistency: Consistency) -> Result<ChildrenBody, ClientError> {
        self.call(hyper::Method::GET, Self::read_uri("children", path, consistency), None).await
    }

    /// Creates `path` and returns its final path (with the sequential suffix, if any) and stat.
    /// Ephemeral modes need the owning `session` (opened by this client).
    ///
    /// # Errors
    /// [`ClientError`]; `node exists`, `no node` (parent missing), `session expired`, ...
    pub async fn create(
        &self,
        path: &str,
        data: &str,
        mode: CreateMode,
        session: Option<&Session>,
    ) -> Result<CreatedBody, ClientError> {
        let body = CreateBody {
            path: path.into(),
            data: data.into(),
            mode,
            session: session.map(Session::id),
            secret: session.map(Session::secret),
            ttl_ms: None,
            acl: None,
        };
        self.post("/registry/create", &body).await
    }

    /// Creates a persistent node with a time to live.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn create_with_ttl(&self, path: &str, data: &str, ttl_ms: u64) -> Result<CreatedBody, ClientError> {
        let body = CreateBody {
            path: path.into(),
            data: data.into(),
            mode: CreateMode::Persistent,
            session: None,
            secret: None,
            ttl_ms: Some(ttl_ms),
            acl: None,
        };
        self.post("/registry/create", &body).await
    }

    /// Replaces the data of `path`, if its version is `version` (or any).
    ///
    /// # Errors
    /// [`ClientError`]; `bad version`, `no node`.
    pub async fn set(&self, path: &str, data: &str, version: Option<u32>) -> Result<Stat, ClientError> {
        let body: StatBody =
            self.post("/registry/set", &SetBody { path: path.into(), data: data.into(), version }).await?;
        body.stat.ok_or_else(|| ClientError::Transport("set answered without a stat".into()))
    }

    /// Deletes `path`, if its version is `version` (or any).
    ///
    /// # Errors
    /// [`ClientError`]; `not empty`, `bad version`, `no node`.
    pub async fn delete(&self, path: &str, version: Option<u32>) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/registry/delete", &DeleteBody { path: path.into(), version }).await?;
        Ok(())
    }

    /// An atomic batch; its ephemeral creates belong to `session`.
    ///
    /// # Errors
    /// [`ClientError`] naming the first failing op's error; nothing is applied then.
    pub async fn multi(
        &self,
        ops: Vec<crate::registry::MultiOp>,
        session: Option<&Session>,
    ) -> Result<crate::state::Outcome, ClientError> {
        let body = MultiBody { ops, session: session.map(Session::id), secret: session.map(Session::secret) };
        self.post("/registry/multi", &body).await
    }

    /// Waits until the node has applied every write acknowledged before the call.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn sync(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/registry/sync", &serde_json::json!({})).await?;
        Ok(())
    }

    /// Opens a session that this client keeps alive until [`Session::close`] or drop.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn open_session(&self, timeout_ms: u64) -> Result<Session, ClientError> {
        let request = SessionBody { session: None, timeout_ms: Some(timeout_ms), alive: None, secret: None };
        let opened: SessionBody = self.post("/registry/session/open", &request).await?;
        let id = opened.session.ok_or_else(|| ClientError::Transport("no session id".into()))?;
        let secret = opened.secret.ok_or_else(|| ClientError::Transport("no session secret".into()))?;
        let granted = opened.timeout_ms.unwrap_or(timeout_ms);
        let keeper = self.clone();
        let keepalive = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis((granted / 4).max(50)));
            loop {
                tick.tick().await;
                let body = SessionBody { session: Some(id), timeout_ms: None, alive: None, secret: Some(secret) };
                match keeper.post::<_, SessionBody>("/registry/session/keepalive", &body).await {
                    // Gone, or (never, for its own secret) refused: nothing left to keep alive.
                    Ok(SessionBody { alive: Some(false), .. }) => return,
                    Err(error) if error.code() == ErrorCode::NoAuth => return,
                    _ => {}
                }
            }
        });
        Ok(Session { id, secret, timeout_ms: granted, client: self.clone(), keepalive })
    }

    /// Sets a watch and returns its events. A data or child watch yields one event and ends; a
    /// persistent recursive one streams until dropped. With `since` (the last zxid seen), changes
    /// missed since then are reported at once.
    ///
    /// # Errors
    /// [`ClientError`] if the watch cannot be set.
    pub async fn watch(
        &self,
        path: &str,
        kind: WatchKind,
        since: Option<u64>,
    ) -> Result<mpsc::Receiver<WatchEvent>, ClientError> {
        let kind = match kind {
            WatchKind::Data => "data",
            WatchKind::Child => "child",
            WatchKind::PersistentRecursive => "persistent_recursive",
            WatchKind::Persistent => "persistent",
        };
        let mut uri = format!("/registry/watch?path={}&kind={kind}", encode_query(path));
        if let Some(since) = since {
            uri.push_str(&format!("&since={since}"));
        }
        let admin = self.current_node();
        let mut sender = self.access.dial(admin).await?;
        let request = self.request(hyper::Method::GET, &uri, admin).body(Full::new(Bytes::new())).map_err(transport)?;
        let response = sender.send_request(request).await.map_err(transport)?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = Limited::new(response.into_body(), ADMIN_RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(transport)?
                .to_bytes();
            return Err(error_from_answer(status, &bytes));
        }
        let (events, receiver) = mpsc::channel(WATCH_BUFFER);
        let mut body = response.into_body();
        tokio::spawn(async move {
            let _sender = sender;
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(chunk) = frame.into_data() else { continue };
                pending.extend_from_slice(&chunk);
                if pending.len() > WATCH_LINE_BYTES_MAX {
                    return;
                }
                while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<WatchEvent>(&line) else { return };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }
}

fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// An open session, kept alive in the background. `Debug` does not show its secret.
#[derive(Debug)]
pub struct Session {
    id: u64,
    secret: SessionSecret,
    timeout_ms: u64,
    client: Client,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Session {
    /// The session id (an ephemeral node's `ephemeral_owner`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The session's secret, as its open returned it: what proves this client owns the session (the
    /// ZooKeeper session password). Keep it private.
    pub fn secret(&self) -> SessionSecret {
        self.secret
    }

    /// The granted timeout.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Closes the session: its ephemeral nodes are deleted at once.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn close(self) -> Result<(), ClientError> {
        self.keepalive.abort();
        let _: SessionBody = self
            .client
            .post(
                "/registry/session/close",
                &SessionBody { session: Some(self.id), timeout_ms: None, alive: None, secret: Some(self.secret) },
            )
            .await?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Without keepalives the session expires after its timeout, taking its ephemerals with it.
        self.keepalive.abort();
    }
}

/// Membership, credentials and the audit log through the admin API.
impl Client {
    /// Adds member `id` at mesh address `addr` (operator): a learner until it has caught up.
    ///
    /// # Errors
    /// [`ClientError`]; `membership refused` (409) for a retired id or a member elsewhere.
    pub async fn add_member(&self, id: u64, addr: &str) -> Result<crate::api::membership::MemberChange, ClientError> {
        self.post("/members/add", &crate::api::membership::AddMemberRequest { id, addr: addr.to_string() }).await
    }

    /// Removes member `id` for good (operator); refused if it would leave no quorum.
    ///
    /// # Errors
    /// [`ClientError`]; `membership refused` (409) with the reason.
    pub async fn remove_member(&self, id: u64) -> Result<crate::api::membership::MemberChange, ClientError> {
        self.post("/members/remove", &crate::api::membership::RemoveMemberRequest { id }).await
    }

    /// The members a joining voter `node` starts with (its own node certificate).
    ///
    /// # Errors
    /// [`ClientError`]; `membership refused` (409) if it was not added.
    pub async fn join_info(&self, node: u64) -> Result<crate::api::membership::JoinInfo, ClientError> {
        self.post("/members/join", &crate::api::membership::JoinRequest { node }).await
    }

    /// Revokes `name` on every node (operator).
    ///
    /// # Errors
    /// [`ClientError`]; `bad arguments` for a name no credential carries.
    pub async fn revoke(&self, name: &str) -> Result<crate::api::auth::Revocation, ClientError> {
        self.post("/auth/revoke", &crate::api::auth::RevokeRequest { name: name.to_string() }).await
    }

    /// Every revoked name.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn revoked(&self) -> Result<Vec<crate::api::auth::Revocation>, ClientError> {
        let response: crate::api::auth::RevokedResponse =
            self.call(hyper::Method::GET, "/auth/revoked".to_string(), None).await?;
        Ok(response.revoked)
    }

    /// The node's newest audit records at or after `since_ms` (at most `limit`), oldest first
    /// (operator).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn audit(
        &self,
        since_ms: u64,
        limit: Option<usize>,
    ) -> Result<Vec<crate::api::auth::AuditRecord>, ClientError> {
        let mut uri = format!("/audit?since_ms={since_ms}");
        if let Some(limit) = limit {
            uri.push_str(&format!("&limit={limit}"));
        }
        let response: crate::api::auth::AuditResponse = self.call(hyper::Method::GET, uri, None).await?;
        Ok(response.records)
    }
}

/// The task grid through the admin API.
impl Client {
    /// Submits tasks; returns their ids once committed.
    ///
    /// # Errors
    /// [`ClientError`]; a refused submission (bad input, a full table) names why.
    pub async fn submit(&self, request: &SubmitRequest) -> Result<Vec<u64>, ClientError> {
        let response: SubmitResponse = self.post("/grid/submit", request).await?;
        Ok(response.ids)
    }

    /// The first page of tasks matching `query`, newest first (see [`Client::tasks_page`] for more).
    ///
    /// # Errors
    /// [`ClientError`]; `no task` for an unknown `id`.
    pub async fn tasks(&self, query: &TasksQuery) -> Result<Vec<TaskView>, ClientError> {
        Ok(self.tasks_page(query).await?.tasks)
    }

    /// One page of tasks matching `query`, newest first, with the cursor of the next page.
    ///
    /// # Errors
    /// [`ClientError`]; `no task` for an unknown `id`.
    pub async fn tasks_page(&self, query: &TasksQuery) -> Result<TasksResponse, ClientError> {
        let mut parts = Vec::new();
        if let Some(id) = query.id {
            parts.push(format!("id={id}"));
        }
        if let Some(state) = query.state {
            parts.push(format!("state={}", crate::api::grid::state_name(state)));
        }
        if let Some(node) = query.node {
            parts.push(format!("node={node}"));
        }
        if let Some(kind) = &query.kind {
            parts.push(format!("kind={}", encode_query(kind)));
        }
        if let Some(since) = query.since_ms {
            parts.push(format!("since_ms={since}"));
        }
        if let Some(until) = query.until_ms {
            parts.push(format!("until_ms={until}"));
        }
        if let Some(limit) = query.limit {
            parts.push(format!("limit={limit}"));
        }
        if query.local {
            parts.push("local=true".into());
        }
        if let Some(cursor) = query.cursor {
            parts.push(format!("cursor={cursor}"));
        }
        if query.results {
            parts.push("results=true".into());
        }
        self.call(hyper::Method::GET, format!("/grid/tasks?{}", parts.join("&")), None).await
    }

    /// Waits up to `timeout_ms` (at most a minute per call) until every task in `ids` is terminal.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn wait_tasks(&self, ids: &[u64], timeout_ms: u64) -> Result<WaitResponse, ClientError> {
        self.post("/grid/wait", &WaitRequest { ids: ids.to_vec(), timeout_ms }).await
    }

    /// Cancels tasks that have not ended.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn cancel(&self, ids: &[u64]) -> Result<RecordedResponse, ClientError> {
        self.post("/grid/cancel", &IdsRequest { ids: ids.to_vec() }).await
    }

    /// Creates or replaces a recurring job.
    ///
    /// # Errors
    /// [`ClientError`]; a bad cadence or task names why.
    pub async fn schedule(&self, request: &ScheduleRequest) -> Result<RecordedResponse, ClientError> {
        self.post("/grid/schedule", request).await
    }

    /// Deletes a recurring job.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn unschedule(&self, name: &str) -> Result<RecordedResponse, ClientError> {
        self.post("/grid/unschedule", &NameRequest { name: name.to_string() }).await
    }

    /// Every recurring job.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        let response: JobsResponse = self.call(hyper::Method::GET, "/grid/jobs".to_string(), None).await?;
        Ok(response.jobs)
    }

    /// `node` as the task table sees it: registered, draining, and the attempts it holds.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn node_status(&self, node: u64) -> Result<NodeStatus, ClientError> {
        self.call(hyper::Method::GET, format!("/grid/node?node={node}"), None).await
    }

    /// Starts (or stops) draining `node`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn drain(&self, node: u64, draining: bool) -> Result<RecordedResponse, ClientError> {
        self.post("/grid/drain", &DrainRequest { node, draining }).await
    }
}

/// Grid actors through the admin API.
impl Client {
    /// Sends `request`'s message to its actor (activated on first call, wherever it is hosted) and
    /// returns its reply. Never sent again on failure: a call that failed with `outcome unknown`, or
    /// whose node was lost mid-call ([`ClientError::Transport`]), may have been handled; send it again
    /// only with an `idempotency_key`, which makes the repeat answer with the recorded reply.
    ///
    /// # Errors
    /// [`ClientError`]; `overloaded` (a full mailbox; nothing applied), `actor failed` (the handler's
    /// own error), `outcome unknown`, `unavailable`, `bad arguments`, `too large`.
    pub async fn actor_call(&self, request: &ActorCallRequest) -> Result<ActorCallAnswer, ClientError> {
        self.post("/grid/actors/call", request).await
    }

    /// Sends `request`'s message to its actor without waiting for the reply: returns once its host
    /// queued it. Tells from one caller are handled in the order sent. Not sent again on failure
    /// (see [`Client::actor_call`]).
    ///
    /// # Errors
    /// As [`Client::actor_call`].
    pub async fn actor_tell(&self, request: &ActorCallRequest) -> Result<ActorToldAnswer, ClientError> {
        self.post("/grid/actors/tell", request).await
    }

    /// The actors the replicated state knows (of `query.kind`, if given), in (kind, key) order.
    ///
    /// # Errors
    /// [`ClientError`]; `bad arguments` for a kind no actor can have.
    pub async fn actors(&self, query: &ActorsQuery) -> Result<ActorsAnswer, ClientError> {
        let uri = match &query.kind {
            Some(kind) => format!("/grid/actors?kind={}", encode_query(kind)),
            None => "/grid/actors".to_string(),
        };
        self.call(hyper::Method::GET, uri, None).await
    }
}
