//! One admin HTTP connection, served with its timeouts and its `Host:` check.
//!
//! The shell around [`super::admission`]: it tells a connection's [`Liveness`] what the socket and
//! the handlers do (bytes read, a request started, a response finished, a write or a request body
//! stalled) and closes the connection when the deadline the core names has passed. Tickets hold a
//! connection's and a watch stream's place in the [`Admission`] counts and give it back on drop,
//! however the connection or the stream ends.
//!
//! Invariant: a request is in flight from its parsed head until its response body is finished or
//! dropped, so the idle timeout never cuts a long poll or a watch stream.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::debug;

use super::admission::{host_allowed, AdminServerConfig, Admission, Liveness, Refusal};
use super::auth::PeerCertificate;
use super::error::HttpError;
use super::telemetry;
use crate::api::{ApiError, ErrorCode};
use crate::clock::Clock;
use crate::ids::Millis;

/// The server's admission counts, shared by the accept loop, the connections and the watch route.
pub(crate) type Gate = Arc<Mutex<Admission>>;

fn lock(gate: &Gate) -> MutexGuard<'_, Admission> {
    gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The address of the client that sent a request, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A connection's place in the admission counts, given back on drop.
pub(crate) struct ConnectionTicket {
    gate: Gate,
    client: IpAddr,
}

impl ConnectionTicket {
    /// Takes a place for a connection from `client`, or says why there is none.
    pub(crate) fn admit(gate: &Gate, client: IpAddr) -> Result<ConnectionTicket, Refusal> {
        let mut admission = lock(gate);
        admission.admit_connection(client)?;
        telemetry::connections_open(admission.connections());
        Ok(ConnectionTicket { gate: gate.clone(), client })
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        let mut admission = lock(&self.gate);
        admission.release_connection(self.client);
        telemetry::connections_open(admission.connections());
    }
}

/// A watch stream's place in the admission counts, given back on drop.
pub(crate) struct WatchTicket {
    gate: Gate,
    client: IpAddr,
}

impl WatchTicket {
    /// Takes a place for a watch stream from `client`, or says why there is none (counted).
    pub(crate) fn admit(gate: &Gate, client: IpAddr) -> Result<WatchTicket, Refusal> {
        lock(gate).admit_watch(client).inspect_err(|&refusal| telemetry::refused(refusal))?;
        Ok(WatchTicket { gate: gate.clone(), client })
    }
}

impl Drop for WatchTicket {
    fn drop(&mut self) {
        lock(&self.gate).release_watch(self.client);
    }
}

/// A connection's liveness, shared by its socket, its requests and its watchdog.
struct Activity {
    liveness: Mutex<Liveness>,
    /// Woken when the deadline may have moved earlier.
    moved: Notify,
    clock: Clock,
}

impl Activity {
    /// Feeds the liveness an input; `update` says whether the deadline changed.
    fn on(&self, update: impl FnOnce(&mut Liveness, Millis) -> bool) {
        let changed =
            update(&mut self.liveness.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), self.clock.now());
        if changed {
            self.moved.notify_one();
        }
    }

    fn read<T>(&self, read: impl FnOnce(&Liveness) -> T) -> T {
        read(&self.liveness.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Resolves with the reason once the connection's deadline has passed.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads the liveness and sleeps.
    async fn expired(&self) -> Refusal {
        loop {
            match self.read(Liveness::next_deadline) {
                None => self.moved.notified().await,
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(self.clock.instant_at(at)) => {
                        if let Some(reason) = self.read(|liveness| liveness.expired(self.clock.now())) {
                            return reason;
                        }
                    }
                    () = self.moved.notified() => {}
                },
            }
        }
    }
}

/// The socket (or the TLS stream over it), reporting reads and stalled writes to the connection's
/// liveness.
struct WatchedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on(Liveness::on_read);
        }
        result
    }
}

impl<S> WatchedIo<S> {
    fn on_write<T>(&self, result: &Poll<std::io::Result<T>>) {
        match result {
            Poll::Pending => self.activity.on(Liveness::on_write_blocked),
            Poll::Ready(_) => self.activity.on(|liveness, _| {
                liveness.on_write_progress();
                false
            }),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks one request in flight; its drop (with the response body, or with the abandoned handler)
/// ends it.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.on(|liveness, _| {
            liveness.on_request();
            false
        });
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.on(Liveness::on_response_done);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that reports when a handler waits on a client that does not send.
struct TimedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let result = Pin::new(&mut self.inner).poll_frame(cx);
        match result {
            Poll::Pending => self.activity.on(Liveness::on_body_wait),
            Poll::Ready(_) => self.activity.on(|liveness, _| {
                liveness.on_body_progress();
                false
            }),
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // A handler that stops reading a body no longer waits on the client.
        self.activity.on(|liveness, _| {
            liveness.on_body_progress();
            false
        });
    }
}

/// The host a request names: its URI's authority (absolute form) or its `Host:` header. A header
/// that is not text names no acceptable host.
fn named_host(request: &Request<Incoming>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    request.headers().get(header::HOST).map(|value| value.to_str().unwrap_or(""))
}

fn misdirected(host: &str) -> Response<Body> {
    telemetry::refused(Refusal::Host);
    let message = format!(
        "host {host:?} is not served here: use an IP address, localhost, or a name given to the node with --admin-host"
    );
    HttpError(ApiError::new(ErrorCode::Misdirected, message)).into_response()
}

/// Serves one accepted connection (plain, or TLS after its handshake, with the principal its client
/// certificate names) until the client leaves or a timeout closes it.
pub(crate) async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    peer_cert: Option<PeerCertificate>,
    app: Router,
    config: Arc<AdminServerConfig>,
    ticket: ConnectionTicket,
    clock: Clock,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ticket = ticket;
    let activity =
        Arc::new(Activity { liveness: Mutex::new(Liveness::new(&config, clock.now())), moved: Notify::new(), clock });
    let io = TokioIo::new(WatchedIo { inner: stream, activity: activity.clone() });
    let app = TowerToHyperService::new(app);
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::start(&service_activity);
        let refused = named_host(&request).filter(|host| !host_allowed(Some(host), &config.hosts)).map(misdirected);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ClientAddr(peer));
        if let Some(peer_cert) = &peer_cert {
            parts.extensions.insert(peer_cert.clone());
        }
        let request =
            Request::from_parts(parts, Body::new(TimedBody { inner: body, activity: service_activity.clone() }));
        let answer = refused.ok_or_else(|| hyper::service::Service::call(&app, request));
        async move {
            let response = match answer {
                Ok(refused) => refused,
                Err(routed) => routed.await.unwrap_or_else(|never: Infallible| match never {}),
            };
            Ok::<_, Infallible>(response.map(|inner| Body::new(TrackedBody { inner, _in_flight: in_flight })))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    // The connection goes first: a head already received is served rather than timed out.
    tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%peer, %error, "admin connection ended");
            }
        }
        reason = activity.expired() => {
            telemetry::refused(reason);
            debug!(%peer, %reason, "admin connection closed");
        }
    }
}

/// Answers a connection the server has no room for with 503 and closes it. Best effort and never
/// waits: a fresh socket's send buffer takes the few bytes at once, and nothing is read.
pub(crate) fn refuse_connection(stream: TcpStream, refusal: Refusal) {
    telemetry::refused(refusal);
    let body = serde_json::json!({ "error": "too many connections", "message": refusal.to_string() }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}
