//! A bounded flood of half-open QUIC handshakes, shared by `tests/mesh_flood.rs` and `benches/mesh.rs`
//! (included with `#[path]`).
//!
//! Each handshake is a real quinn client connection from a socket bound to the flood's source address
//! (any 127.0.0.x on Linux), but the socket lets only Retry packets through: the client answers a
//! stateless retry (so its address is validated, the strongest single-host attacker) and then never
//! hears the server's handshake flight, so the server's side stays half-open until it gives up.
//!
//! The flood is bounded in connections and in time and stops by itself; it targets one address.
#![allow(dead_code)]

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What to flood, how hard and for how long.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Address the flood's socket binds to (port chosen by the OS).
    pub source: IpAddr,
    /// The mesh port flooded.
    pub target: SocketAddr,
    /// TLS server name the handshakes ask for.
    pub server_name: String,
    /// Handshakes started per tick.
    pub burst: usize,
    /// Time between ticks.
    pub tick: Duration,
    /// Handshakes started in all; the flood stops after the last.
    pub connections_max: usize,
    /// The flood stops after this long whatever happens.
    pub duration_max: Duration,
    /// How long the client keeps each half-open handshake before dropping it.
    pub linger: Duration,
}

/// A running flood; stops by itself at its bounds, or on [`Flood::stop`].
pub struct Flood {
    started: watch::Receiver<usize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Flood {
    /// Binds the source socket and starts flooding.
    pub fn start(config: FloodConfig, client: quinn::ClientConfig) -> io::Result<Flood> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(config.source, 0))?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(RetryOnlySocket { io: Arc::new(tokio::net::UdpSocket::from_std(socket)?) });
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client);
        let (started_sender, started) = watch::channel(0);
        let (stop, stop_receiver) = watch::channel(false);
        let task = tokio::spawn(run(endpoint, config, started_sender, stop_receiver));
        Ok(Flood { started, stop, task })
    }

    /// Handshakes started so far.
    pub fn started(&self) -> usize {
        *self.started.borrow()
    }

    /// Waits until at least `count` handshakes have started (or the flood ended first).
    pub async fn wait_started(&self, count: usize) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|&started| started >= count).await;
    }

    /// Stops the flood and returns how many handshakes it started.
    pub async fn stop(self) -> usize {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let started = *self.started.borrow();
        started
    }
}

async fn run(
    endpoint: quinn::Endpoint,
    config: FloodConfig,
    started: watch::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempts = JoinSet::new();
    let mut tick = tokio::time::interval(config.tick);
    let deadline = tokio::time::Instant::now() + config.duration_max;
    let mut count = 0;
    while count < config.connections_max && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        while attempts.try_join_next().is_some() {}
        for _ in 0..config.burst.min(config.connections_max - count) {
            if let Ok(connecting) = endpoint.connect(config.target, &config.server_name) {
                let linger = config.linger;
                attempts.spawn(async move {
                    let _ = tokio::time::timeout(linger, connecting).await;
                });
                count += 1;
            }
        }
        started.send_replace(count);
    }
    attempts.shutdown().await;
    endpoint.close(0u32.into(), b"flood over");
}

/// A tokio UDP socket that hands quinn only QUIC Retry packets and drops everything else.
struct RetryOnlySocket {
    io: Arc<tokio::net::UdpSocket>,
}

impl fmt::Debug for RetryOnlySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryOnlySocket").finish_non_exhaustive()
    }
}

/// A QUIC v1 long-header packet of type Retry (RFC 9000 §17.2).
fn is_retry(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|&first| first & 0x80 != 0 && (first >> 4) & 0x03 == 0x03)
}

struct Writable {
    io: Arc<tokio::net::UdpSocket>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writable")
    }
}

impl quinn::UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.io.poll_send_ready(cx)
    }
}

impl quinn::AsyncUdpSocket for RetryOnlySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(Writable { io: self.io.clone() })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.io.try_send_to(transmit.contents, transmit.destination).map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let mut read = tokio::io::ReadBuf::new(buf);
            let from = ready!(self.io.poll_recv_from(cx, &mut read))?;
            let len = read.filled().len();
            if is_retry(read.filled()) {
                *slot = RecvMeta { addr: from, len, stride: len, ..RecvMeta::default() };
                return Poll::Ready(Ok(1));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
