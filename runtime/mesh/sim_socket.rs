//! quinn over turmoil's simulated UDP, so whole meshes run in one process on a seeded network.
//!
//! Only the socket is swapped: quinn's tokio runtime already reads tokio's (simulated) clock, so
//! timers and timestamps follow simulated time with no further adapter.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};

type Readiness = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A turmoil UDP socket presented to quinn as an [`quinn::AsyncUdpSocket`].
pub struct SimUdpSocket {
    socket: Arc<turmoil::net::UdpSocket>,
    local_addr: SocketAddr,
    /// The pending "socket became readable" wait, kept across polls so the waker stays registered.
    readable: Mutex<Option<Readiness>>,
}

impl fmt::Debug for SimUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUdpSocket").field("local_addr", &self.local_addr).finish()
    }
}

impl SimUdpSocket {
    /// Binds a simulated socket; must run inside a turmoil host.
    ///
    /// # Errors
    /// The simulator's bind error (address in use).
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<SimUdpSocket>> {
        let socket = turmoil::net::UdpSocket::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        Ok(Arc::new(SimUdpSocket { socket: Arc::new(socket), local_addr, readable: Mutex::new(None) }))
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
    // turmoil's UDP has no send-side backpressure: a send either queues or is dropped by the network.
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl quinn::AsyncUdpSocket for SimUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.socket.try_send_to(transmit.contents, transmit.destination).map(|_| ())
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
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    let received = RecvMeta {
                        addr: from,
                        len,
                        stride: len,
                        dst_ip: Some(self.local_addr.ip()),
                        ..RecvMeta::default()
                    };
                    *slot = received;
                    return Poll::Ready(Ok(1));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let mut pending = self.readable.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let socket = self.socket.clone();
                    let wait = pending.get_or_insert_with(|| Box::pin(async move { socket.readable().await }));
                    match wait.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(result) => {
                            *pending = None;
                            result?;
                        }
                    }
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
