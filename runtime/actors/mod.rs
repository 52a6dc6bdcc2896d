//! Grid actors: long-lived, addressable, stateful actors that the grid places by key, and moves when
//! their node dies.
//!
//! # The model
//!
//! - An actor type implements [`GridActor`]: a `KIND`, typed messages and replies (rkyv from Rust
//!   callers, validated on receipt; serde for the admin API and the CLI), `activate` (from nothing, or
//!   from its last committed snapshot), an optional `on_start`, `handle`, and `snapshot`. Register it
//!   on every node that may host it ([`NodeBuilder::actor`](crate::NodeBuilder::actor),
//!   [`LocalOptions::actors`](crate::LocalOptions::actors)).
//! - An actor is named by its kind and a key, and is *virtual*: `grid.actor::<A>(key)` is only a
//!   handle ([`ActorRef`]); the first call activates the actor on the node a rendezvous hash of its key
//!   picks among the live members that host its kind (not draining). The ownership record, with a
//!   fencing token, is replicated through the log; the calls themselves go over the mesh straight to
//!   the host, never through Raft. An activation handles one message at a time, and one caller's
//!   messages in the order sent.
//! - **Exactly one activation**: a host handles messages only while its host lease holds (renewed by
//!   its registration's keepalive and confirmed by a linearizable stat of that registration); when the
//!   registration is deleted its actors are orphaned in the same entry, and another node activates one
//!   only after a handoff wait longer than the lease (see `lease.rs`). Every commit carries the
//!   activation's token and the log refuses a stale one, so a host that lost its lease never writes.
//! - **Durable** actors (`DURABLE = true`) have their snapshot committed through the log after every
//!   message, grouped, before the caller hears the reply; after their node dies they resume elsewhere
//!   from it. Volatile actors commit nothing and restart empty after a move.
//! - An idle activation is passivated after `--actor-idle-ms` (its durable state stays in its
//!   record); a node holds at most `--actor-activations-max` activations (then `quota exceeded`); a
//!   mailbox holds [`ACTOR_MAILBOX_MAX`](crate::limits::ACTOR_MAILBOX_MAX) messages (then
//!   `overloaded`). A draining node gives its actors up, and the next call activates them elsewhere.
//!
//! What a caller sees across a move: a call whose host died before it answered fails with
//! `outcome unknown` (it may have been applied) and is never sent again on its behalf; a call carrying
//! an idempotency key may be sent again safely (a durable actor answers a repeat with the reply it
//! recorded: its last [`ACTOR_RECENT_REPLIES_MAX`](crate::limits::ACTOR_RECENT_REPLIES_MAX) keyed
//! replies move with its state; an `actor failed` error is not recorded, so a refusal a retry must
//! see again belongs in the reply); `overloaded` and `unavailable` took nothing and may be sent again.
//! `examples/actors.rs` transfers money between accounts this way while a node is killed.
//!
//! An actor is plain async code, so it can be tested without a cluster (the crate root shows one
//! called on a cluster):
//!
//! ```
//! use gridkeeper::{grid::FencingToken, ActorContext, ActorError, GridActor, NodeId};
//!
//! /// A durable tally per key.
//! struct Tally {
//!     total: u64,
//! }
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize)]
//! struct Add(u64);
//!
//! impl GridActor for Tally {
//!     const KIND: &'static str = "tally";
//!     const DURABLE: bool = true;
//!     type Message = Add;
//!     type Reply = u64;
//!
//!     fn activate(_key: &str, state: Option<&[u8]>) -> Result<Tally, ActorError> {
//!         let total = match state {
//!             None => 0,
//!             Some(bytes) => u64::from_le_bytes(bytes.try_into().map_err(|_| ActorError::new("not 8 bytes"))?),
//!         };
//!         Ok(Tally { total })
//!     }
//!
//!     async fn handle(&mut self, add: Add, _ctx: &ActorContext) -> Result<u64, ActorError> {
//!         // An error is the caller's answer (`actor failed`).
//!         self.total = self.total.checked_add(add.0).ok_or_else(|| ActorError::new("overflow"))?;
//!         Ok(self.total)
//!     }
//!
//!     fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
//!         Ok(self.total.to_le_bytes().to_vec())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ActorError> {
//! // Driven by hand as its host would: a fresh activation, a message, then a move.
//! let ctx = ActorContext { key: "k".into(), node: NodeId(1), token: FencingToken(7) };
//! let mut tally = Tally::activate("k", None)?;
//! assert_eq!(tally.handle(Add(2), &ctx).await?, 2);
//! let committed = tally.snapshot()?;
//! let mut moved = Tally::activate("k", Some(&committed))?;
//! assert_eq!(moved.handle(Add(1), &ctx).await?, 3);
//! # Ok(()) }
//! ```
//!
//! # This folder
//!
//! - `model.rs`: the [`GridActor`] trait users implement, [`ActorKinds`] (the kinds a node hosts).
//! - `builtin.rs`: the durable `counter` every node hosts.
//! - `lease.rs` (core): the host lease and the handoff wait that keep one activation per actor.
//! - `commits.rs` (core): group commit of durable state, replies held until committed.
//! - `host.rs`: [`ActorHost`](host::ActorHost), a node's activations, mailboxes and commits.
//! - `transport.rs`: calls between nodes over the mesh's bulk stream.
//! - `service.rs`: [`ActorService`], routing and the surface the admin API uses.
//! - `telemetry.rs`: the host's metrics.
//!
//! The ownership records themselves live in the replicated state (`grid::actors`); this folder
//! proposes the commands and acts on their effects. `service` comes before this folder in the
//! dependency rule, so [`Grid::actor`](GridActors::actor) is an extension trait here, implemented for
//! [`Grid`]: `use gridkeeper::GridActors` brings it in.

pub mod builtin;
pub mod commits;
pub mod host;
pub mod lease;
pub mod model;
pub mod service;
pub mod telemetry;
pub mod transport;

use std::marker::PhantomData;

pub use host::HostConfig;
pub use model::{ActorContext, ActorError, ActorKinds, GridActor};
pub use service::{ActorService, CallAnswer, CallOptions};

use crate::api::actors::ActorCallRequest;
use crate::api::{ApiError, ErrorCode};
use crate::grid::actors::ActorId;
use crate::grid::kinds::{Decode, Encode};
use crate::grid::task::Encoding;
use crate::service::{Grid, GridApiError, Port};

/// A handle on the actor of type `A` with one key: cheap to clone; clones call concurrently.
pub struct ActorRef<A> {
    grid: Grid,
    id: ActorId,
    options: CallOptions,
    actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef { grid: self.grid.clone(), id: self.id.clone(), options: self.options.clone(), actor: PhantomData }
    }
}

impl<A> std::fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ActorRef").field(&self.id).finish()
    }
}

/// `Grid::actor`: the actor extension of [`Grid`].
pub trait GridActors {
    /// The actor of type `A` with `key` (activated by its first call). A key that is not a valid
    /// actor key (empty, too long, control characters) makes every call fail `bad arguments`.
    fn actor<A: GridActor>(&self, key: &str) -> ActorRef<A>;
}

impl GridActors for Grid {
    fn actor<A: GridActor>(&self, key: &str) -> ActorRef<A> {
        let id = ActorId { kind: A::KIND.to_string(), key: key.to_string() };
        ActorRef { grid: self.clone(), id, options: CallOptions::default(), actor: PhantomData }
    }
}

impl<A: GridActor> ActorRef<A> {
    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// This handle with every call carrying `key` (a durable actor answers a repeat with the reply it
    /// recorded, so the call may be sent again safely).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> ActorRef<A> {
        self.options.idempotency_key = Some(key.into());
        self
    }

    /// This handle with calls waiting at most `timeout` (default 5 s, at most 10 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> ActorRef<A> {
        self.options.timeout_ms = (timeout.as_millis() as u64).max(1);
        self
    }

    /// Sends `message` and waits for the reply. On a member the call goes over the mesh straight to
    /// the actor's host; through [`Grid::remote`] it goes through the admin API as JSON (which is why
    /// the message must serialize and the reply deserialize).
    ///
    /// # Errors
    /// [`GridApiError::Api`] with the codes of [`ActorService::call`].
    pub async fn call(&self, message: A::Message) -> Result<A::Reply, GridApiError>
    where
        A::Message: serde::Serialize,
        A::Reply: serde::de::DeserializeOwned,
    {
        match self.grid.port() {
            Port::Local(coordinator) => {
                let answer = self.send_local(coordinator, &message, false).await?;
                A::Reply::decode(&answer.reply).map_err(|reason| {
                    GridApiError::Api(ApiError::new(ErrorCode::Internal, format!("a reply of {}: {reason}", self.id)))
                })
            }
            Port::Remote(client) => {
                let answer = client.actor_call(&self.request(&message)?).await.map_err(ApiError::from)?;
                serde_json::from_value(answer.reply).map_err(|error| {
                    GridApiError::Api(ApiError::new(ErrorCode::Internal, format!("a reply of {}: {error}", self.id)))
                })
            }
        }
    }

    /// Sends `message` without waiting for the reply: returns once the actor's host queued it (on a
    /// member over the mesh; through [`Grid::remote`] with the admin API's `POST /grid/actors/tell`).
    /// Messages told by one caller are handled in the order told.
    ///
    /// # Errors
    /// [`GridApiError::Api`]: `overloaded` (its mailbox is full), and the codes of
    /// [`ActorService::call`] for routing.
    pub async fn tell(&self, message: A::Message) -> Result<(), GridApiError>
    where
        A::Message: serde::Serialize,
        A::Reply: serde::de::DeserializeOwned,
    {
        match self.grid.port() {
            Port::Local(coordinator) => self.send_local(coordinator, &message, true).await.map(|_| ()),
            Port::Remote(client) => {
                client.actor_tell(&self.request(&message)?).await.map_err(ApiError::from)?;
                Ok(())
            }
        }
    }

    /// `message` through this member's actor service, rkyv-encoded, as a call or a tell.
    async fn send_local(
        &self,
        coordinator: &crate::consensus::Coordinator,
        message: &A::Message,
        tell: bool,
    ) -> Result<CallAnswer, GridApiError> {
        let service = service_of(coordinator)?;
        let bytes = message.encode().map_err(ApiError::bad_arguments)?;
        let options = CallOptions { tell, ..self.options.clone() };
        Ok(service.call(self.id.clone(), bytes, Encoding::Rkyv, options).await?)
    }

    /// The admin API's request for `message`, as JSON, with this handle's options.
    fn request(&self, message: &A::Message) -> Result<ActorCallRequest, GridApiError>
    where
        A::Message: serde::Serialize,
    {
        let value = serde_json::to_value(message).map_err(ApiError::bad_arguments)?;
        let mut request = ActorCallRequest::new(&self.id, value);
        request.idempotency_key.clone_from(&self.options.idempotency_key);
        request.timeout_ms = (self.options.timeout_ms > 0).then_some(self.options.timeout_ms);
        Ok(request)
    }
}

fn service_of(coordinator: &crate::consensus::Coordinator) -> Result<ActorService, GridApiError> {
    ActorService::of(coordinator)
        .ok_or_else(|| GridApiError::Api(ApiError::new(ErrorCode::Unavailable, "this node hosts no actors")))
}
