//! Request/response over the mesh's consensus stream: Raft RPCs and requests forwarded to the leader.
//!
//! Each call is one [`Payload`] frame carrying a postcard-encoded [`Envelope`]; replies carry the same
//! id. An envelope longer than [`RPC_CHUNK_BYTES`] travels as several frames ([`super::chunk`]), so any
//! entry the log holds and any snapshot can cross, whatever the frame limit. Pending calls are bounded,
//! and every call has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};

use super::chunk::{self, Chunk, Reassembler};
use crate::ids::NodeId;
use crate::limits::RPC_CHUNK_BYTES;
use crate::mesh::{Inbound, Mesh};
use crate::wire::{Message, Payload, TrafficClass};

/// Topic of consensus-stream payloads carrying [`Envelope`]s.
pub const TOPIC_RPC: u32 = 0x7261_6674;

/// Topic of consensus-stream payloads carrying one [`Chunk`] of a long [`Envelope`].
pub const TOPIC_RPC_CHUNK: u32 = 0x7261_6675;

/// Numbers chunked messages; unique per process, which is all a receiver needs (a restarted sender's
/// reuse of a number starts a fresh message at piece 0).
static NEXT_CHUNKED_MESSAGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Calls awaiting a reply at once; past this a call fails at once with [`RpcError::Overloaded`].
pub const PENDING_CALLS_MAX: usize = 4096;

/// Raft requests from peers handled at once; further ones wait (and the stream pushes back). Raft
/// handlers never wait on this stream's replies, so waiting here cannot deadlock.
pub const RAFT_HANDLERS_IN_FLIGHT_MAX: usize = 256;

/// Forwarded client requests handled at once. These do wait on replies read by this same loop (a
/// forwarded write needs followers' acknowledgements), so the loop never blocks on them: past the
/// bound a request is refused at once and its sender retries.
pub const FORWARD_HANDLERS_IN_FLIGHT_MAX: usize = 4096;

/// What a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcKind {
    /// Raft AppendEntries.
    AppendEntries,
    /// Raft RequestVote.
    Vote,
    /// Raft snapshot transfer.
    Snapshot,
    /// A client request forwarded to the leader.
    Forward,
}

/// One request or reply on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Matches a reply to its request.
    pub id: u64,
    /// The call.
    pub kind: RpcKind,
    /// `Some` on replies: `Ok(body)` or the handler's error text.
    pub reply: Option<Result<(), String>>,
    /// postcard-encoded request or reply.
    pub body: Vec<u8>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The request could not be queued (peer unknown, queue full, mesh down).
    #[error("cannot send to node {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
    /// No reply before the deadline.
    #[error("node {peer} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        peer: NodeId,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The peer was lost (down, or no longer the leader) while the call was out: no answer will come.
    #[error("node {peer} was lost before it answered")]
    Lost {
        /// The peer.
        peer: NodeId,
    },
    /// Too many calls pending.
    #[error("too many calls in flight")]
    Overloaded,
    /// The peer's handler failed.
    #[error("node {peer} failed the call: {reason}")]
    Remote {
        /// The peer.
        peer: NodeId,
        /// Its error.
        reason: String,
    },
    /// Bytes did not decode.
    #[error("bad encoding: {0}")]
    Codec(String),
}

/// Encodes a value for an envelope body.
///
/// # Errors
/// [`RpcError::Codec`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    postcard::to_stdvec(value).map_err(|error| RpcError::Codec(error.to_string()))
}

/// Decodes an envelope body.
///
/// # Errors
/// [`RpcError::Codec`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, RpcError> {
    postcard::from_bytes(bytes).map_err(|error| RpcError::Codec(error.to_string()))
}

/// Serves requests from peers.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles one request and returns the encoded reply or an error text.
    fn handle(
        &self,
        from: NodeId,
        kind: RpcKind,
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;

    /// The reply to a request that needs no waiting, given on the stream's reading loop itself (no
    /// task is spawned for it, one hand-off fewer); `None` (the default): [`Self::handle`] takes it. It
    /// must not block.
    fn answer_now(&self, from: NodeId, kind: RpcKind, body: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let _ = (from, kind, body);
        None
    }
}

type Pending = Mutex<HashMap<(NodeId, u64), oneshot::Sender<Result<Vec<u8>, String>>>>;

/// Sends calls over the mesh and matches replies.
#[derive(Clone)]
pub struct RpcClient {
    mesh: Mesh,
    pending: Arc<Pending>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

fn send_envelope(mesh: &Mesh, peer: NodeId, envelope: &Envelope) -> Result<(), RpcError> {
    let body = encode(envelope)?;
    let send = |topic: u32, body: Vec<u8>| {
        mesh.send(peer, TrafficClass::Consensus, &Message::Payload(Payload { topic, body }))
            .map_err(|error| RpcError::Unreachable { peer, reason: error.to_string() })
    };
    if !chunk::needs_chunks(body.len()) {
        return send(TOPIC_RPC, body);
    }
    let message = NEXT_CHUNKED_MESSAGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("gridkeeper_rpc_chunked_messages_total").increment(1);
    for piece in chunk::split(message, &body, RPC_CHUNK_BYTES) {
        send(TOPIC_RPC_CHUNK, encode(&piece)?)?;
    }
    Ok(())
}

impl RpcClient {
    /// A client over `mesh`; [`serve`] must run to deliver replies.
    pub fn new(mesh: Mesh) -> RpcClient {
        RpcClient { mesh, pending: Arc::default(), next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)) }
    }

    /// The mesh underneath.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Calls `peer` and waits for its reply, at most `timeout`.
    ///
    /// # Errors
    /// [`RpcError`].
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call's pending slot is removed.
    pub async fn call(
        &self,
        peer: NodeId,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if pending.len() >= PENDING_CALLS_MAX {
                return Err(RpcError::Overloaded);
            }
            pending.insert((peer, id), sender);
        }
        let slot = PendingSlot { pending: &self.pending, key: (peer, id) };
        send_envelope(&self.mesh, peer, &Envelope { id, kind, reply: None, body })?;
        let outcome = tokio::time::timeout(timeout, receiver).await;
        drop(slot);
        match outcome {
            Err(_) => Err(RpcError::Timeout { peer, timeout_ms: timeout.as_millis() as u64 }),
            Ok(Err(_)) => Err(RpcError::Unreachable { peer, reason: "reply channel closed".into() }),
            Ok(Ok(Err(reason))) => Err(RpcError::Remote { peer, reason }),
            Ok(Ok(Ok(body))) => Ok(body),
        }
    }

    fn complete(&self, from: NodeId, envelope: Envelope) {
        let sender = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&(from, envelope.id));
        if let (Some(sender), Some(reply)) = (sender, envelope.reply) {
            let _ = sender.send(reply.map(|()| envelope.body));
        }
    }
}

/// Removes a call's pending slot when the call ends, however it ends.
struct PendingSlot<'a> {
    pending: &'a Pending,
    key: (NodeId, u64),
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.key);
    }
}

/// Reads the consensus stream: completes replies, and runs `handler` on requests (bounded).
pub async fn serve<H: RpcHandler>(
    client: RpcClient,
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    handler: Arc<H>,
) {
    let raft_permits = Arc::new(Semaphore::new(RAFT_HANDLERS_IN_FLIGHT_MAX));
    let forward_permits = Arc::new(Semaphore::new(FORWARD_HANDLERS_IN_FLIGHT_MAX));
    let mut reassembler = Reassembler::default();
    while let Some(Inbound { from, payload }) = inbound.recv().await {
        let body = match payload.topic {
            TOPIC_RPC => payload.body,
            TOPIC_RPC_CHUNK => match reassemble(&mut reassembler, from, &payload.body) {
                Some(body) => body,
                None => continue,
            },
            _ => continue,
        };
        let Ok(envelope) = decode::<Envelope>(&body) else {
            tracing::warn!(%from, "undecodable consensus envelope dropped");
            continue;
        };
        if envelope.reply.is_some() {
            client.complete(from, envelope);
            continue;
        }
        if let Some(reply) = handler.answer_now(from, envelope.kind, &envelope.body) {
            let (reply, body) = match reply {
                Ok(body) => (Ok(()), body),
                Err(reason) => (Err(reason), Vec::new()),
            };
            let _ = send_envelope(
                &client.mesh,
                from,
                &Envelope { id: envelope.id, kind: envelope.kind, reply: Some(reply), body },
            );
            continue;
        }
        let permit = if envelope.kind == RpcKind::Forward {
            match forward_permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let refusal = Envelope {
                        id: envelope.id,
                        kind: envelope.kind,
                        reply: Some(Err("overloaded".into())),
                        body: Vec::new(),
                    };
                    let _ = send_envelope(&client.mesh, from, &refusal);
                    continue;
                }
            }
        } else {
            let Ok(permit) = raft_permits.clone().acquire_owned().await else { return };
            permit
        };
        let (handler, mesh) = (handler.clone(), client.mesh.clone());
        tokio::spawn(async move {
            let result = handler.handle(from, envelope.kind, envelope.body).await;
            let (reply, body) = match result {
                Ok(body) => (Ok(()), body),
                Err(reason) => (Err(reason), Vec::new()),
            };
            let _ = send_envelope(
                &mesh,
                from,
                &Envelope { id: envelope.id, kind: envelope.kind, reply: Some(reply), body },
            );
            drop(permit);
        });
    }
}

/// Feeds one chunk payload to the reassembler; the whole envelope's bytes once complete.
fn reassemble(reassembler: &mut Reassembler, from: NodeId, body: &[u8]) -> Option<Vec<u8>> {
    let piece = match decode::<Chunk>(body) {
        Ok(piece) => piece,
        Err(error) => {
            tracing::warn!(%from, %error, "undecodable consensus chunk dropped");
            return None;
        }
    };
    match reassembler.on_chunk(from, piece) {
        Ok(whole) => whole,
        Err(error) => {
            metrics::counter!("gridkeeper_rpc_chunks_dropped_total").increment(1);
            tracing::debug!(%from, %error, "consensus chunk dropped");
            None
        }
    }
}
