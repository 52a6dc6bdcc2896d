//! Actor calls between nodes over the mesh's bulk stream ([`TrafficClass::Bulk`]), straight to the
//! hosting node, never through Raft.
//!
//! Each call is one [`Payload`] frame (topic [`TOPIC_ACTOR`]) carrying a postcard-encoded [`Frame`];
//! the answer carries the same id. The mesh delivers frames in order per peer and class, and the
//! receiving side queues calls on their mailboxes in the order it reads them, so calls from one node
//! to one actor are handled in the order they were sent.
//!
//! A call whose actor is idle is handled in the stream's reading task when its handler finishes at
//! once (no task spawned, no hand-off to another thread); one that waits (a durable actor's commit)
//! goes on in its own task. A handler that computes for long would hold up the stream meanwhile, so
//! one inline handling longer than [`INLINE_HANDLING_US_MAX`] stops inline handling on this node for
//! [`INLINE_PAUSE_MS`]: at most one such hold-up per pause.
//!
//! Bounds: calls awaiting an answer ([`ACTOR_PENDING_CALLS_MAX`]), calls taken from peers and not yet
//! answered ([`ACTOR_INBOUND_CALLS_MAX`]; past it a call is refused `overloaded`), a message's size
//! ([`ACTOR_MESSAGE_BYTES_MAX`]) and every call's deadline. A peer the mesh declares down fails its
//! pending calls at once with `outcome unknown`: they were sent and may have been handled.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};

use super::host::{ActorHost, Answer, Call, Refusal};
use crate::api::ErrorCode;
use crate::ids::NodeId;
use crate::limits::{ACTOR_MESSAGE_BYTES_MAX, ACTOR_REPLY_BYTES_MAX};
use crate::mesh::{Inbound, InboundHandler, Mesh, PeerEvent, SendError};
use crate::wire::{Message, Payload, TrafficClass};

/// Topic of bulk-stream payloads carrying actor [`Frame`]s.
pub const TOPIC_ACTOR: u32 = 0x6163_746f;

/// Calls this node awaits answers to at once; past it a call fails at once `overloaded`.
pub const ACTOR_PENDING_CALLS_MAX: usize = 65_536;

/// Calls from peers this node has taken and not yet answered; past it a call is refused `overloaded`
/// (every mailbox is bounded too; this bounds the answers waiting across all of them).
pub const ACTOR_INBOUND_CALLS_MAX: usize = 65_536;

/// An inline handling longer than this (in the stream's reading task) pauses inline handling. It is
/// wall time, so a thread preempted mid-handling looks slow too: with three nodes' threads on two
/// cores, a bound of 200 µs paused often enough to lose the whole gain (no more calls/s than spawning
/// every call), while 5 ms, about one scheduler timeslice, seldom trips on a fast handler and still
/// limits a computing one to one hold-up of the stream per [`INLINE_PAUSE_MS`].
pub const INLINE_HANDLING_US_MAX: u64 = 5_000;

/// How long inline handling pauses after a slow one; then one call is tried inline again.
pub const INLINE_PAUSE_MS: u64 = 1_000;

/// Whether calls may be handled in the stream's reading task (core: times come in as values).
#[derive(Debug, Default)]
pub struct InlineGate {
    /// Inline handling resumes at this time (microseconds on the caller's clock); 0: not paused.
    paused_until_us: AtomicU64,
}

impl InlineGate {
    /// Whether a call arriving at `now_us` may be handled inline.
    pub fn allows(&self, now_us: u64) -> bool {
        now_us >= self.paused_until_us.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An inline handling that started at `started_us` ended at `now_us`: `true` if it was slow
    /// (inline handling pauses).
    pub fn on_handled(&self, started_us: u64, now_us: u64) -> bool {
        let slow = now_us.saturating_sub(started_us) > INLINE_HANDLING_US_MAX;
        if slow {
            let until = now_us.saturating_add(INLINE_PAUSE_MS * 1_000);
            self.paused_until_us.fetch_max(until, std::sync::atomic::Ordering::Relaxed);
        }
        slow
    }
}

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// A call.
    Call {
        /// Matches the answer to the call.
        id: u64,
        /// The call.
        call: Call,
    },
    /// The answer to call `id`.
    Answer {
        /// The call's id.
        id: u64,
        /// The reply or the refusal.
        answer: Answer,
    },
}

/// A [`Frame`] as it is sent: borrowed, so a call or an answer is encoded without a copy. The same
/// variants with the same fields in the same order, so it encodes exactly as [`Frame`] does (a test
/// pins it).
#[derive(Serialize)]
enum FrameOut<'a> {
    Call { id: u64, call: &'a Call },
    Answer { id: u64, answer: &'a Answer },
}

// Ordered (not hashed): failing a peer's calls answers them in an order a seed replays.
type Pending = Mutex<BTreeMap<u64, (NodeId, oneshot::Sender<Answer>)>>;

/// Sends calls to peers' hosts and matches their answers. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    mesh: Mesh,
    pending: Arc<Pending>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("node", &self.mesh.node()).finish_non_exhaustive()
    }
}

fn encode(frame: &FrameOut<'_>) -> Result<Vec<u8>, Refusal> {
    postcard::to_stdvec(frame).map_err(|error| Refusal::new(ErrorCode::Internal, format!("an actor frame: {error}")))
}

fn send_frame(mesh: &Mesh, peer: NodeId, frame: &FrameOut<'_>) -> Result<(), Refusal> {
    let body = encode(frame)?;
    mesh.send(peer, TrafficClass::Bulk, &Message::Payload(Payload { topic: TOPIC_ACTOR, body })).map_err(|error| {
        match error {
            SendError::Overloaded { .. } => {
                Refusal::new(ErrorCode::Overloaded, format!("the queue to node {peer} is full: {error}"))
            }
            SendError::Encode(_) => Refusal::new(ErrorCode::TooLarge, error.to_string()),
            SendError::UnknownPeer(_) | SendError::ShutDown => Refusal::new(ErrorCode::Unavailable, error.to_string()),
        }
    })
}

/// Removes a call's pending slot however the call ends.
struct Slot<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
    }
}

impl Transport {
    /// A transport over `mesh`; its [`handler`] must take the bulk stream to deliver answers, and
    /// [`watch_peers`] run to fail the calls of peers that go down.
    pub fn new(mesh: Mesh) -> Transport {
        Transport { mesh, pending: Arc::default(), next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Whether the mesh takes `peer` for alive.
    pub fn is_alive(&self, peer: NodeId) -> bool {
        self.mesh.is_alive(peer)
    }

    /// Sends `call` to `peer`'s host and waits for its answer, at most `timeout`.
    ///
    /// # Errors
    /// The host's refusal; `unavailable` if it could not be sent (nothing was); `overloaded` past the
    /// pending bound or a full queue; `outcome unknown` if it was sent and no answer came (deadline,
    /// peer down).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call's slot is removed (its answer, if any, is dropped).
    pub async fn call(&self, peer: NodeId, call: &Call, timeout: Duration) -> Answer {
        if call.message.len() > ACTOR_MESSAGE_BYTES_MAX {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("a message of {} bytes exceeds ACTOR_MESSAGE_BYTES_MAX", call.message.len()),
            ));
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if pending.len() >= ACTOR_PENDING_CALLS_MAX {
                return Err(Refusal::new(
                    ErrorCode::Overloaded,
                    "too many actor calls in flight (ACTOR_PENDING_CALLS_MAX)",
                ));
            }
            pending.insert(id, (peer, sender));
        }
        let _slot = Slot { pending: &self.pending, id };
        send_frame(&self.mesh, peer, &FrameOut::Call { id, call })?;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                Err(Refusal::new(ErrorCode::OutcomeUnknown, format!("node {peer} was lost before it answered")))
            }
            Err(_) => Err(Refusal::new(
                ErrorCode::OutcomeUnknown,
                format!("node {peer} did not answer within {} ms", timeout.as_millis()),
            )),
        }
    }

    fn complete(&self, from: NodeId, id: u64, answer: Answer) {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the node called may answer a call.
        if pending.get(&id).is_some_and(|(peer, _)| *peer == from) {
            if let Some((_, sender)) = pending.remove(&id) {
                let _ = sender.send(answer);
            }
        }
    }

    /// Fails every call pending on `peer` (it went down): dropping the senders answers them
    /// `outcome unknown`.
    fn lost(&self, peer: NodeId) {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, (to, _)| *to != peer);
    }
}

/// The mesh's bulk handler ([`Mesh::handle_bulk`]): completes answers and hands calls to `host`
/// (bounded), answering each when its host does. It runs in the task reading each peer's stream,
/// so a call reaches its mailbox with no hand-off, in the order its peer sent it.
pub fn handler(transport: Transport, host: ActorHost) -> InboundHandler {
    let permits = Arc::new(Semaphore::new(ACTOR_INBOUND_CALLS_MAX));
    let inline = Inline { gate: InlineGate::default(), clock: crate::clock::Clock::start() };
    Arc::new(move |Inbound { from, payload }| {
        if payload.topic != TOPIC_ACTOR {
            return;
        }
        match postcard::from_bytes::<Frame>(&payload.body) {
            Ok(Frame::Answer { id, answer }) => transport.complete(from, id, answer),
            Ok(Frame::Call { id, call }) => take_call(&transport, &host, &permits, &inline, from, id, call),
            Err(error) => tracing::warn!(%from, %error, "undecodable actor frame dropped"),
        }
    })
}

/// Fails the pending calls of every peer the mesh declares down, until the mesh stops.
pub async fn watch_peers(transport: Transport) {
    let mut events = transport.mesh.subscribe();
    loop {
        match events.recv().await {
            Ok(PeerEvent::Down(peer)) => transport.lost(peer),
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The inline gate and the clock it is read with.
struct Inline {
    gate: InlineGate,
    clock: crate::clock::Clock,
}

impl Inline {
    fn now_us(&self) -> u64 {
        self.clock.micros()
    }
}

/// The answer to send for a handled call.
fn answer_of(handled: Result<Answer, oneshot::error::RecvError>) -> Answer {
    match handled {
        Ok(Ok(reply)) if reply.len() > ACTOR_REPLY_BYTES_MAX => {
            Err(Refusal::new(ErrorCode::TooLarge, "a reply exceeds ACTOR_REPLY_BYTES_MAX"))
        }
        Ok(answer) => answer,
        Err(_) => Err(Refusal::new(ErrorCode::OutcomeUnknown, "the activation stopped before it answered")),
    }
}

fn take_call(
    transport: &Transport,
    host: &ActorHost,
    permits: &Arc<Semaphore>,
    inline: &Inline,
    from: NodeId,
    id: u64,
    call: Call,
) {
    let answer_now = |answer: Answer| {
        let _ = send_frame(&transport.mesh, from, &FrameOut::Answer { id, answer: &answer });
    };
    if call.message.len() > ACTOR_MESSAGE_BYTES_MAX {
        return answer_now(Err(Refusal::new(ErrorCode::TooLarge, "a message exceeds ACTOR_MESSAGE_BYTES_MAX")));
    }
    if let Err(error) = call.actor.check() {
        return answer_now(Err(Refusal::new(ErrorCode::BadArguments, error)));
    }
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        return answer_now(Err(Refusal::new(
            ErrorCode::Overloaded,
            "too many actor calls taken (ACTOR_INBOUND_CALLS_MAX)",
        )));
    };
    let submitted = match host.submit_inline(call) {
        Err(refusal) => return answer_now(Err(refusal)),
        Ok(submitted) => submitted,
    };
    let mut answering = Box::pin(submitted.answer());
    let started_us = inline.now_us();
    if inline.gate.allows(started_us) {
        // One poll: an idle actor whose handler does not wait answers here. Whatever it has not
        // finished goes on in its own task below.
        let handled = futures_util::FutureExt::now_or_never(&mut answering);
        if inline.gate.on_handled(started_us, inline.now_us()) {
            super::telemetry::inline_paused();
        }
        if let Some(handled) = handled {
            drop(permit);
            return answer_now(answer_of(handled));
        }
    }
    let mesh = transport.mesh.clone();
    // One task waits for the answer (a commit, a busy actor) and sends it.
    tokio::spawn(async move {
        let answer = answer_of(answering.await);
        let _ = send_frame(&mesh, from, &FrameOut::Answer { id, answer: &answer });
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::actors::ActorId;
    use crate::grid::task::Encoding;

    #[test]
    fn a_slow_inline_handling_pauses_inline_handling() {
        let gate = InlineGate::default();
        assert!(gate.allows(0));
        assert!(!gate.on_handled(10, 10 + INLINE_HANDLING_US_MAX));
        assert!(gate.allows(10 + INLINE_HANDLING_US_MAX), "a handling at the bound is not slow");
        let ended = 1_000_000;
        assert!(gate.on_handled(ended - INLINE_HANDLING_US_MAX - 1, ended));
        assert!(!gate.allows(ended));
        assert!(!gate.allows(ended + INLINE_PAUSE_MS * 1_000 - 1));
        assert!(gate.allows(ended + INLINE_PAUSE_MS * 1_000));
        // A fast one during a pause (it cannot happen inline, but a late report) does not end it.
        assert!(!gate.on_handled(ended + 5, ended + 6));
        assert!(!gate.allows(ended + 10));
    }

    #[test]
    fn a_frame_is_sent_exactly_as_it_is_read() {
        let call = Call {
            actor: ActorId::new("counter", "k-1").expect("an actor id"),
            message: b"{\"add\":1}".to_vec(),
            encoding: Encoding::Json,
            idempotency_key: Some("once".into()),
            tell: false,
        };
        let sent = encode(&FrameOut::Call { id: 7, call: &call }).expect("encodes");
        assert_eq!(sent, postcard::to_stdvec(&Frame::Call { id: 7, call: call.clone() }).expect("encodes"));
        assert_eq!(postcard::from_bytes::<Frame>(&sent).expect("decodes"), Frame::Call { id: 7, call });
        for answer in [Ok(b"{\"total\":3}".to_vec()), Err(Refusal::new(ErrorCode::Misdirected, "not here"))] {
            let sent = encode(&FrameOut::Answer { id: 9, answer: &answer }).expect("encodes");
            assert_eq!(postcard::from_bytes::<Frame>(&sent).expect("decodes"), Frame::Answer { id: 9, answer });
        }
    }
}
