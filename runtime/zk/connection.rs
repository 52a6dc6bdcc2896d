//! One ZooKeeper client connection: the handshake (a new session, or an existing one resumed on this
//! node), then requests answered strictly in the order they arrived, with the connection's watch
//! events written before the reply that reveals their change.
//!
//! A reader task reads and decodes frames into a bounded queue; this connection's task takes them
//! one at a time, so a read waits behind the same session's earlier writes, and writes keep the
//! client's order in the log. What a request may cost is bounded before it is queued: a frame by
//! the configured size, the queue by [`ZK_OUTSTANDING_REQUESTS_MAX`] requests and
//! [`ZK_OUTSTANDING_BYTES_MAX`] bytes (past either, requests are answered with ZooKeeper's
//! `throttled` error), and the connection's watches by the watch hub's per-watcher bound.
//!
//! Invariant: every reply leaves in request order, and every watch event queued when a reply is
//! written leaves before it.

use crate::credentials::Role;
use crate::registry::acl::digest_id;
use crate::registry::{AuthId, Caller};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::api::{ApiError, ErrorCode};
use crate::clock::{Clock, Stopwatch};
use crate::limits::{
    ZK_HANDSHAKE_TIMEOUT_MS, ZK_OUTSTANDING_BYTES_MAX, ZK_OUTSTANDING_REQUESTS_MAX, ZK_WRITE_BUFFER_BYTES,
};
use crate::registry::secret::SESSION_SECRET_BYTES;
use crate::registry::{Change, SessionId, SessionSecret, WatchEvent};
use crate::service::registry::{self as service, Watch};
use crate::state::Command;

use super::frame::{next_frame, FourLetterWord, FrameError};
use super::ops::{self, Context, Reply};
use super::proto::{
    self, code, event_type, keeper_state, ConnectRequest, ConnectResponse, DecodeError, ReplyHeader, Request,
    RequestHeader, Response,
};
use super::server::{refused, ConnectionStats, Shared};

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// Reads length-prefixed frames, holding at most one frame and one read's bytes.
struct FrameReader<S> {
    half: ReadHalf<S>,
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// What a connection opens with.
enum First {
    Word(FourLetterWord),
    Frame(Vec<u8>),
    Closed,
}

impl<S: AsyncRead> FrameReader<S> {
    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, ReadError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK_BYTES);
        Ok(self.half.read_buf(&mut self.buf).await? > 0)
    }

    /// The connection's first four bytes as a four-letter word, or its first frame.
    async fn first(&mut self) -> Result<First, ReadError> {
        while self.buf.len() < 4 {
            if !self.fill().await? {
                return Ok(First::Closed);
            }
        }
        let head = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        if let Some(word) = FourLetterWord::parse(head) {
            return Ok(First::Word(word));
        }
        Ok(self.next().await?.map_or(First::Closed, First::Frame))
    }

    /// The next frame's body; `None` at the end of the stream (a partial frame is dropped).
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some((used, body)) = next_frame(&self.buf[self.start..], self.max)? {
                let body = body.to_vec();
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(Some(body));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

/// Answers buffered for the client; every write is bounded by the session timeout, so a client that
/// stops reading loses its connection instead of holding this task.
struct Out<S> {
    writer: BufWriter<WriteHalf<S>>,
    timeout: Duration,
    stats: Arc<ConnectionStats>,
}

impl<S: AsyncWrite> Out<S> {
    async fn send(&mut self, frame: &[u8]) -> bool {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        matches!(tokio::time::timeout(self.timeout, self.writer.write_all(frame)).await, Ok(Ok(())))
    }

    async fn flush(&mut self) -> bool {
        matches!(tokio::time::timeout(self.timeout, self.writer.flush()).await, Ok(Ok(())))
    }
}

/// A request as the reader queued it.
enum Incoming {
    Request { header: RequestHeader, request: Request, bytes: usize },
    Throttled { header: RequestHeader },
    Unknown { header: RequestHeader },
    Malformed { xid: Option<i32> },
}

/// What the reader has queued and the task has not answered yet.
#[derive(Default)]
struct Outstanding {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

impl Outstanding {
    fn admit(&self, bytes: usize) -> bool {
        if self.requests.load(Ordering::Relaxed) >= ZK_OUTSTANDING_REQUESTS_MAX
            || self.bytes.load(Ordering::Relaxed) + bytes > ZK_OUTSTANDING_BYTES_MAX
        {
            return false;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    fn release(&self, bytes: usize) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A session this connection serves.
struct Session {
    id: SessionId,
    secret: SessionSecret,
    timeout: Duration,
}

/// Serves one accepted connection until it ends.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    stats: Arc<ConnectionStats>,
) {
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = FrameReader { half: read_half, buf: Vec::new(), start: 0, max: shared.config.frame_bytes_max };
    let mut out = Out {
        writer: BufWriter::with_capacity(ZK_WRITE_BUFFER_BYTES, write_half),
        timeout: Duration::from_millis(ZK_HANDSHAKE_TIMEOUT_MS),
        stats: stats.clone(),
    };
    let handshake = Duration::from_millis(ZK_HANDSHAKE_TIMEOUT_MS);
    let body = match tokio::time::timeout(handshake, reader.first()).await {
        Err(_) => return refused("handshake_timeout"),
        Ok(Err(_)) => return refused("frame"),
        Ok(Ok(First::Closed)) => return,
        Ok(Ok(First::Word(word))) => {
            let text = super::words::answer(&shared, word);
            let _ = out.send(text.as_bytes()).await;
            let _ = out.flush().await;
            let _ = out.writer.shutdown().await;
            return;
        }
        Ok(Ok(First::Frame(body))) => body,
    };
    let Ok(connect) = ConnectRequest::decode(&body) else { return refused("handshake") };
    let Some(session) = open(&shared, &connect, &mut out).await else { return };
    stats.session.store(session.id.0, Ordering::Relaxed);
    stats.timeout_ms.store(session.timeout.as_millis() as u64, Ordering::Relaxed);
    out.timeout = session.timeout;
    let watch = match service::open_watcher(&shared.coordinator) {
        Ok(watch) => watch,
        Err(_) => return refused("watchers"),
    };
    let _established = Established::new();
    let clock = Clock::start();
    let heard = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(Outstanding::default());
    let (queue, requests) = mpsc::channel(2 * ZK_OUTSTANDING_REQUESTS_MAX);
    let reading = tokio::spawn(read_requests(reader, queue, heard.clone(), clock, outstanding.clone(), stats.clone()));
    let identities = vec![("ip".to_string(), peer.ip().to_string())];
    let mut caller = Caller::anonymous();
    caller.add(AuthId::new("ip", &peer.ip().to_string()));
    let mut connection = Connection {
        shared,
        session,
        watch,
        out,
        identities,
        superuser: false,
        caller,
        requests,
        outstanding,
        heard,
        clock,
    };
    connection.run().await;
    reading.abort();
}

/// Counts an established session for as long as it is served here.
struct Established;

impl Established {
    fn new() -> Established {
        metrics::gauge!("gridkeeper_zk_sessions").increment(1.0);
        Established
    }
}

impl Drop for Established {
    fn drop(&mut self) {
        metrics::gauge!("gridkeeper_zk_sessions").decrement(1.0);
    }
}

/// Answers the handshake: a new session, or `connect`'s session resumed here. `None` if the
/// connection ends instead (refused, or told its session expired).
async fn open<S: AsyncWrite>(shared: &Shared, connect: &ConnectRequest, out: &mut Out<S>) -> Option<Session> {
    let coordinator = &shared.coordinator;
    // A client that saw a newer state than this node's must not read an older one here: closing
    // makes it try another node (ZooKeeper does the same).
    if connect.last_zxid_seen > 0 && connect.last_zxid_seen as u64 > service::applied_zxid(coordinator) {
        refused("zxid");
        return None;
    }
    let (low, high) = service::session_timeout_bounds(coordinator);
    let asked = u64::try_from(connect.timeout_ms).unwrap_or(0).clamp(low, high);
    let opened = if connect.session_id == 0 {
        service::open_session_for(coordinator, asked).await.map(|opened| Session {
            id: opened.session,
            secret: opened.secret,
            timeout: Duration::from_millis(opened.timeout_ms),
        })
    } else {
        let id = SessionId(connect.session_id as u64);
        match <[u8; SESSION_SECRET_BYTES]>::try_from(connect.password.as_slice()) {
            Ok(bytes) => {
                let secret = SessionSecret::from_bytes(bytes);
                service::resume_session(coordinator, id, secret).await.map(|timeout_ms| Session {
                    id,
                    secret,
                    timeout: Duration::from_millis(timeout_ms),
                })
            }
            Err(_) => Err(ApiError::new(ErrorCode::NoAuth, "a session password is 16 bytes")),
        }
    };
    let read_only = connect.read_only.map(|_| false);
    match opened {
        Ok(session) => {
            let response = ConnectResponse {
                protocol_version: proto::PROTOCOL_VERSION,
                timeout_ms: i32::try_from(session.timeout.as_millis()).unwrap_or(i32::MAX),
                session_id: session.id.0 as i64,
                password: session.secret.as_bytes().to_vec(),
                read_only,
            };
            (out.send(&proto::encode_connect_response(&response)).await && out.flush().await).then_some(session)
        }
        // A wrong password, or a session that ended: ZooKeeper's answer is a zero timeout and id, which
        // the client reports as an expired session.
        Err(error) if matches!(error.code, ErrorCode::SessionExpired | ErrorCode::NoAuth) => {
            refused("expired");
            let response = ConnectResponse {
                protocol_version: proto::PROTOCOL_VERSION,
                timeout_ms: 0,
                session_id: 0,
                password: vec![0; SESSION_SECRET_BYTES],
                read_only,
            };
            let _ = out.send(&proto::encode_connect_response(&response)).await && out.flush().await;
            None
        }
        Err(_) => {
            refused("unavailable");
            None
        }
    }
}

/// Reads frames into the queue until the stream ends or breaks.
async fn read_requests<S: AsyncRead>(
    mut reader: FrameReader<S>,
    queue: mpsc::Sender<Incoming>,
    heard: Arc<AtomicU64>,
    clock: Clock,
    outstanding: Arc<Outstanding>,
    stats: Arc<ConnectionStats>,
) {
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Frame(_)) => return refused("frame"),
        };
        heard.store(clock.now().0, Ordering::Relaxed);
        stats.received.fetch_add(1, Ordering::Relaxed);
        let bytes = frame.len();
        let incoming = match proto::decode_request(&frame) {
            Ok((header, request)) if outstanding.admit(bytes) => Incoming::Request { header, request, bytes },
            Ok((header, _)) => {
                refused("throttled");
                Incoming::Throttled { header }
            }
            Err(DecodeError::UnknownOp { header }) => Incoming::Unknown { header },
            Err(DecodeError::Malformed { xid, .. }) => {
                refused("malformed");
                let _ = queue.send(Incoming::Malformed { xid }).await;
                return;
            }
        };
        if queue.send(incoming).await.is_err() {
            return;
        }
    }
}

struct Connection<S> {
    shared: Arc<Shared>,
    session: Session,
    watch: Watch,
    out: Out<S>,
    identities: Vec<(String, String)>,
    /// Whether `addauth` proved an operator credential.
    superuser: bool,
    /// Who the connection is to the registry's ACLs.
    caller: Caller,
    requests: mpsc::Receiver<Incoming>,
    outstanding: Arc<Outstanding>,
    heard: Arc<AtomicU64>,
    clock: Clock,
}

/// Whether the connection goes on after a step.
#[derive(PartialEq, Eq)]
enum Step {
    Continue,
    Close,
}

impl<S: AsyncWrite> Connection<S> {
    async fn run(&mut self) {
        // Tells the leader the client is alive a few times per timeout while it is heard from, as
        // its pings arrive; the session ends if the leader says it has.
        let mut keepalive = tokio::time::interval(self.session.timeout / 3);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut touched = 0;
        let mut touching: Option<tokio::task::JoinHandle<Result<(), ApiError>>> = None;
        loop {
            let step = tokio::select! {
                biased;
                incoming = self.requests.recv() => match incoming {
                    Some(incoming) => self.on_incoming(incoming).await,
                    None => Step::Close,
                },
                event = self.watch.events.recv() => match event {
                    Some(event) => self.on_event(&event).await,
                    // Cut off for falling behind: the client reconnects and sets its watches again.
                    None => Step::Close,
                },
                _ = keepalive.tick() => {
                    let heard = self.heard.load(Ordering::Relaxed);
                    if self.clock.now().0.saturating_sub(heard) > self.session.timeout.as_millis() as u64 {
                        refused("silent");
                        Step::Close
                    } else {
                        let step = match touching.take() {
                            Some(task) if task.is_finished() => match task.await {
                                Ok(Err(error)) if matches!(error.code, ErrorCode::SessionExpired | ErrorCode::NoAuth) => {
                                    Step::Close
                                }
                                _ => Step::Continue,
                            },
                            running => {
                                touching = running;
                                Step::Continue
                            }
                        };
                        // One keepalive in flight at most, and only for a client heard since the last.
                        if step == Step::Continue && touching.is_none() && heard > touched {
                            touched = heard;
                            let coordinator = self.shared.coordinator.clone();
                            let (id, secret) = (self.session.id, self.session.secret);
                            touching =
                                Some(tokio::spawn(async move { service::touch_session(&coordinator, id, secret).await }));
                        }
                        step
                    }
                }
            };
            if step == Step::Close {
                break;
            }
            if self.requests.is_empty() && !self.out.flush().await {
                break;
            }
        }
        if let Some(task) = touching {
            task.abort();
        }
        let _ = self.out.flush().await;
    }

    /// Writes every event queued for this connection.
    async fn drain_events(&mut self) -> Step {
        loop {
            match self.watch.events.try_recv() {
                Ok(event) => {
                    if self.on_event(&event).await == Step::Close {
                        return Step::Close;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => return Step::Continue,
                Err(mpsc::error::TryRecvError::Disconnected) => return Step::Close,
            }
        }
    }

    async fn on_event(&mut self, event: &WatchEvent) -> Step {
        let (kind, path) = match &event.change {
            Change::NodeCreated { path } => (event_type::NODE_CREATED, path),
            Change::NodeDeleted { path } => (event_type::NODE_DELETED, path),
            Change::NodeDataChanged { path } => (event_type::NODE_DATA_CHANGED, path),
            Change::NodeChildrenChanged { path } => (event_type::NODE_CHILDREN_CHANGED, path),
        };
        metrics::counter!("gridkeeper_zk_watch_events_total").increment(1);
        let frame = proto::encode_watcher_event(event.zxid as i64, kind, keeper_state::SYNC_CONNECTED, path.as_str());
        if self.out.send(&frame).await {
            Step::Continue
        } else {
            Step::Close
        }
    }

    /// Sends a reply after the events queued before it.
    async fn reply(&mut self, xid: i32, zxid: u64, err: i32, body: &Response) -> Step {
        if self.drain_events().await == Step::Close {
            return Step::Close;
        }
        let header = ReplyHeader { xid, zxid: zxid as i64, err };
        if self.out.send(&proto::encode_reply(&header, body)).await {
            Step::Continue
        } else {
            Step::Close
        }
    }

    fn zxid(&self) -> u64 {
        service::applied_zxid(&self.shared.coordinator)
    }

    async fn on_incoming(&mut self, incoming: Incoming) -> Step {
        match incoming {
            Incoming::Request { header, request, bytes } => {
                let step = self.on_request(header, request).await;
                self.outstanding.release(bytes);
                step
            }
            Incoming::Throttled { header } => {
                self.reply(header.xid, self.zxid(), code::THROTTLED_OP, &Response::Empty).await
            }
            Incoming::Unknown { header } => {
                self.reply(header.xid, self.zxid(), code::UNIMPLEMENTED, &Response::Empty).await
            }
            Incoming::Malformed { xid: Some(xid) } => {
                let _ = self.reply(xid, self.zxid(), code::MARSHALLING_ERROR, &Response::Empty).await;
                Step::Close
            }
            Incoming::Malformed { xid: None } => Step::Close,
        }
    }

    async fn on_request(&mut self, header: RequestHeader, request: Request) -> Step {
        let started = Stopwatch::start();
        let name = super::server::op_name(header.op);
        metrics::counter!("gridkeeper_zk_requests_total", "op" => name).increment(1);
        let step = match request {
            Request::CloseSession => {
                let command = Command::CloseSessionSecured { session: self.session.id, secret: self.session.secret };
                match service::write_at(&self.shared.coordinator, command).await {
                    Ok((_, zxid)) => {
                        let _ = self.reply(header.xid, zxid, code::OK, &Response::Empty).await;
                    }
                    Err(error) => tracing::debug!(%error, "closeSession failed"),
                }
                Step::Close
            }
            Request::Auth { scheme, auth, .. } => self.on_auth(header, &scheme, &auth).await,
            Request::Sasl | Request::DeleteContainer { .. } => {
                self.reply(header.xid, self.zxid(), code::UNIMPLEMENTED, &Response::Empty).await
            }
            // Membership changes through ZooKeeper's reconfig are not offered: ZooKeeper's answer when
            // it is turned off.
            Request::Reconfig => self.reply(header.xid, self.zxid(), code::RECONFIG_DISABLED, &Response::Empty).await,
            request => {
                let context = Context {
                    coordinator: &self.shared.coordinator,
                    session: self.session.id,
                    secret: self.session.secret,
                    watch: &self.watch,
                    identities: &self.identities,
                    superuser: self.superuser,
                    caller: &self.caller,
                    extended_types: self.shared.config.extended_types,
                };
                match ops::serve(&context, request).await {
                    (Reply::Body(body), zxid) => {
                        let zxid = zxid.unwrap_or_else(|| self.zxid());
                        self.reply(header.xid, zxid, code::OK, &body).await
                    }
                    (Reply::Error(err), _) => {
                        if err == code::QUOTA_EXCEEDED {
                            refused("quota");
                        }
                        self.reply(header.xid, self.zxid(), err, &Response::Empty).await
                    }
                    (Reply::Close, _) => {
                        refused("unavailable");
                        Step::Close
                    }
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("gridkeeper_zk_request_seconds", "op" => name).record(seconds);
        self.shared.stats.on_latency(started.elapsed());
        step
    }

    /// `addauth digest NAME:PASSWORD`: the connection gains ZooKeeper's digest identity
    /// `digest:NAME:base64(sha1(NAME:PASSWORD))`, matched by digest ACLs. A password that is a
    /// gridkeeper token named NAME also gives `gridkeeper:NAME` (the identity that credential has on
    /// the HTTPS edge), and an operator credential (an operator token, or the legacy admin token)
    /// makes the connection the super user. Any other scheme fails, and ZooKeeper then closes the
    /// connection.
    async fn on_auth(&mut self, header: RequestHeader, scheme: &str, auth: &[u8]) -> Step {
        let text = String::from_utf8_lossy(auth);
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        let user = user.to_string();
        if scheme == "digest" && !user.is_empty() && self.identities.len() < AUTH_IDENTITIES_MAX {
            match self.shared.auth.role_of(&self.shared.coordinator, &user, password) {
                Some(Role::Operator) => self.superuser = true,
                Some(_) => self.caller.add(AuthId::new("gridkeeper", &user)),
                None => {}
            }
            self.caller.superuser = self.superuser;
            self.caller.add(AuthId::new("digest", &digest_id(&user, password)));
            self.identities.push(("digest".to_string(), user));
            // ZooKeeper echoes the request's xid (-4 from the Java client and kazoo; some clients number it).
            return self.reply(header.xid, self.zxid(), code::OK, &Response::Empty).await;
        }
        refused("auth");
        let _ = self.reply(header.xid, self.zxid(), code::AUTH_FAILED, &Response::Empty).await;
        Step::Close
    }
}

/// Identities one connection may add with `addauth`.
const AUTH_IDENTITIES_MAX: usize = 16;
