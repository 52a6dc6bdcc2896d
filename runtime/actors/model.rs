//! The actor programming model: the [`GridActor`] trait users implement, [`ActorContext`], and
//! [`ActorKinds`], the actor kinds a node hosts (registered on the node builder and advertised in its
//! registration), with their codecs erased like [`TaskKinds`](crate::grid::kinds::TaskKinds) erases
//! tasks'.
//!
//! Messages and replies are rkyv archives from Rust callers (validated on receipt: a bad archive is a
//! `bad arguments` refusal, never a panic) and JSON from the admin API and the CLI, so both traits are
//! required of them.
//!
//! This module decides nothing about placement, mailboxes or commits: that is the host's
//! (`host.rs`). It only turns bytes into calls of the user's code and the answers back into bytes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::grid::kinds::{Decode, Encode};
use crate::grid::task::{Encoding, FencingToken};
use crate::ids::NodeId;

/// Why an actor refused a message (or could not start): the caller gets
/// [`ErrorCode::ActorFailed`](crate::ErrorCode::ActorFailed) with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActorError(pub String);

impl ActorError {
    /// An error with `message`.
    pub fn new(message: impl std::fmt::Display) -> ActorError {
        ActorError(message.to_string())
    }
}

/// What an activation knows of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorContext {
    /// The actor's key.
    pub key: String,
    /// The node hosting this activation.
    pub node: NodeId,
    /// The activation's fencing token (the zxid of the entry that activated it): pass it to external
    /// systems to fence a zombie's side effects there too.
    pub token: FencingToken,
}

/// An actor type: long-lived, addressed by key, handling one message at a time. Register it on the
/// node builder ([`NodeBuilder::actor`](crate::NodeBuilder::actor)) and call it through
/// [`GridActors::actor`](crate::GridActors::actor).
///
/// A durable actor (`DURABLE = true`) has its [`GridActor::snapshot`] committed through the log after
/// every message it handles, before the caller hears the reply; when its node dies it is activated
/// elsewhere from its last committed snapshot. A volatile one commits nothing and restarts empty.
pub trait GridActor: Send + 'static + Sized {
    /// The registered kind (unique in the cluster).
    const KIND: &'static str;
    /// Whether its state is committed after every message.
    const DURABLE: bool = false;
    /// What it is sent.
    type Message: Decode + Encode + serde::de::DeserializeOwned + Send + 'static;
    /// What it answers.
    type Reply: Decode + Encode + serde::Serialize + Send + 'static;

    /// A fresh activation (`state` is `None`) or one restored from its last committed snapshot.
    ///
    /// # Errors
    /// An [`ActorError`] refuses the activation (the call that caused it fails with it).
    fn activate(key: &str, state: Option<&[u8]>) -> Result<Self, ActorError>;

    /// Runs once per activation, before its first message.
    fn on_start(&mut self, ctx: &ActorContext) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Handles one message.
    ///
    /// It runs only while its node holds its host lease: if the lease lapses unrenewed mid-message
    /// (the node cut off from the cluster), the future is dropped at its next `.await`, the caller
    /// hears the outcome is unknown and nothing it did is committed. That is what keeps two
    /// activations of a key from handling messages at once; code that computes for a long time
    /// without awaiting cannot be stopped between its awaits, so yield (`tokio::task::yield_now`) in
    /// long loops.
    ///
    /// # Errors
    /// An [`ActorError`] is the caller's answer (a durable actor's state is still committed, since
    /// the handler may have changed it before it failed).
    fn handle(
        &mut self,
        message: Self::Message,
        ctx: &ActorContext,
    ) -> impl Future<Output = Result<Self::Reply, ActorError>> + Send;

    /// The state to commit (a durable actor's): at most
    /// [`ACTOR_STATE_BYTES_MAX`](crate::limits::ACTOR_STATE_BYTES_MAX) bytes.
    ///
    /// # Errors
    /// An [`ActorError`] stops the activation (its uncommitted change is lost, its caller told).
    fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
        Ok(Vec::new())
    }
}

/// A boxed future borrowing an activation.
pub type ActorFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a message got no reply from the actor's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The message did not decode as the kind's message type: nothing was handled.
    #[error("bad message for actor kind {kind}: {reason}")]
    BadMessage {
        /// The kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The handler failed (its error, or a reply that did not encode).
    #[error("{0}")]
    Failed(String),
}

/// One activation with its codec erased.
pub trait ErasedActor: Send + 'static {
    /// The start hook.
    fn on_start<'a>(&'a mut self, ctx: &'a ActorContext) -> ActorFuture<'a, ()>;
    /// Decodes `message` as `encoding`, handles it, encodes the reply the same way.
    fn handle<'a>(
        &'a mut self,
        message: &'a [u8],
        encoding: Encoding,
        ctx: &'a ActorContext,
    ) -> ActorFuture<'a, Result<Vec<u8>, HandleError>>;
    /// The state to commit.
    ///
    /// # Errors
    /// The actor's.
    fn snapshot(&self) -> Result<Vec<u8>, ActorError>;
}

struct Erased<A>(A);

impl<A: GridActor> ErasedActor for Erased<A> {
    fn on_start<'a>(&'a mut self, ctx: &'a ActorContext) -> ActorFuture<'a, ()> {
        Box::pin(self.0.on_start(ctx))
    }

    fn handle<'a>(
        &'a mut self,
        message: &'a [u8],
        encoding: Encoding,
        ctx: &'a ActorContext,
    ) -> ActorFuture<'a, Result<Vec<u8>, HandleError>> {
        let decoded = match encoding {
            Encoding::Rkyv => A::Message::decode(message),
            Encoding::Json => serde_json::from_slice(message).map_err(|error| error.to_string()),
        };
        Box::pin(async move {
            let message = decoded.map_err(|reason| HandleError::BadMessage { kind: A::KIND, reason })?;
            let reply = self.0.handle(message, ctx).await.map_err(|error| HandleError::Failed(error.0))?;
            let encoded = match encoding {
                Encoding::Rkyv => reply.encode(),
                Encoding::Json => serde_json::to_vec(&reply).map_err(|error| error.to_string()),
            };
            encoded.map_err(|reason| HandleError::Failed(format!("the reply did not encode: {reason}")))
        })
    }

    fn snapshot(&self) -> Result<Vec<u8>, ActorError> {
        self.0.snapshot()
    }
}

/// A registered actor kind, with its type erased.
pub trait ActorFactory: Send + Sync + 'static {
    /// The kind's name.
    fn kind(&self) -> &'static str;
    /// Whether it is durable.
    fn durable(&self) -> bool;
    /// A new activation of `key`, from `state` if it has committed one.
    ///
    /// # Errors
    /// The actor's refusal.
    fn activate(&self, key: &str, state: Option<&[u8]>) -> Result<Box<dyn ErasedActor>, ActorError>;
}

struct Factory<A>(std::marker::PhantomData<fn() -> A>);

impl<A: GridActor> ActorFactory for Factory<A> {
    fn kind(&self) -> &'static str {
        A::KIND
    }

    fn durable(&self) -> bool {
        A::DURABLE
    }

    fn activate(&self, key: &str, state: Option<&[u8]>) -> Result<Box<dyn ErasedActor>, ActorError> {
        Ok(Box::new(Erased(A::activate(key, state)?)))
    }
}

/// The actor kinds a node hosts.
#[derive(Clone, Default)]
pub struct ActorKinds {
    kinds: BTreeMap<String, Arc<dyn ActorFactory>>,
}

impl std::fmt::Debug for ActorKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds.keys()).finish()
    }
}

impl ActorKinds {
    /// No kinds.
    pub fn new() -> ActorKinds {
        ActorKinds::default()
    }

    /// Adds `A` under `A::KIND` (replacing a kind of that name).
    pub fn with<A: GridActor>(mut self) -> ActorKinds {
        self.kinds.insert(A::KIND.to_string(), Arc::new(Factory::<A>(std::marker::PhantomData)));
        self
    }

    /// The factory of `kind`.
    pub fn factory(&self, kind: &str) -> Option<Arc<dyn ActorFactory>> {
        self.kinds.get(kind).cloned()
    }

    /// The names, sorted.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.kinds.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_kind_decodes_both_encodings_and_refuses_bad_bytes() {
        let kinds = ActorKinds::new().with::<super::super::builtin::Counter>();
        let factory = kinds.factory("counter").expect("registered");
        assert!(factory.durable());
        let mut actor = factory.activate("k", None).expect("activates");
        let ctx = ActorContext { key: "k".into(), node: NodeId(1), token: FencingToken(7) };
        let reply = actor.handle(br#"{"add": 2}"#, Encoding::Json, &ctx).now_or_never().expect("ready");
        assert_eq!(reply, Ok(br#"{"total":2}"#.to_vec()));
        let message = super::super::builtin::Add { add: 3 }.encode().expect("encodes");
        let reply = actor.handle(&message, Encoding::Rkyv, &ctx).now_or_never().expect("ready").expect("handled");
        assert_eq!(super::super::builtin::Total::decode(&reply).map(|total| total.total), Ok(5));
        let bad = actor.handle(b"\x01", Encoding::Rkyv, &ctx).now_or_never().expect("ready");
        assert!(matches!(bad, Err(HandleError::BadMessage { kind: "counter", .. })), "{bad:?}");
        // Restored from its snapshot, it goes on from the committed total.
        let state = actor.snapshot().expect("snapshot");
        let mut restored = factory.activate("k", Some(&state)).expect("restores");
        let reply = restored.handle(br#"{"add": 1}"#, Encoding::Json, &ctx).now_or_never().expect("ready");
        assert_eq!(reply, Ok(br#"{"total":6}"#.to_vec()));
    }
}
