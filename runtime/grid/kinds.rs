//! The programming model: the [`Task`] trait users implement, and [`TaskKinds`], the task types a node
//! can run (registered on the node builder and advertised in its registration).
//!
//! A task's input and output are rkyv archives when submitted from Rust, and JSON when submitted from
//! the CLI or HTTP, so both traits are required of them. Decoding happens on the worker, from bytes
//! that came through the log: it is validated (`rkyv::from_bytes` checks the archive) and a bad input
//! fails the attempt with a clear error, never a panic.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::task::{Encoding, FencingToken, TaskId};
use crate::ids::NodeId;

/// An rkyv-encodable value.
pub trait Encode {
    /// The archive's bytes.
    ///
    /// # Errors
    /// The serializer's message.
    fn encode(&self) -> Result<Vec<u8>, String>;
}

impl<T> Encode for T
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    fn encode(&self) -> Result<Vec<u8>, String> {
        rkyv::to_bytes::<rancor::Error>(self).map(|bytes| bytes.to_vec()).map_err(|error| error.to_string())
    }
}

/// An rkyv-decodable value; decoding validates the archive first.
pub trait Decode: Sized {
    /// The value, from bytes of any alignment.
    ///
    /// # Errors
    /// Why the bytes are not a valid archive of `Self`.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

impl<T> Decode for T
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        // Bytes out of the log carry no alignment; the archive needs its own.
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|error| error.to_string())
    }
}

/// Why an attempt failed, as the task reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

impl TaskError {
    /// An error with `message`.
    pub fn new(message: impl std::fmt::Display) -> TaskError {
        TaskError(message.to_string())
    }
}

/// What an attempt knows of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptInfo {
    /// The task.
    pub task: TaskId,
    /// 1 for the first attempt.
    pub number: u32,
    /// Its fencing token (pass it to external systems to fence a zombie's side effects there too).
    pub token: FencingToken,
    /// The node running it.
    pub node: NodeId,
}

/// A task type. Implement it for a type holding whatever the task needs (clients, config), register
/// it on the node builder, and submit inputs through a [`Grid`](crate::Grid).
///
/// Each attempt runs in its own actor on the node's worker runtime, apart from the threads that run
/// heartbeats and consensus. A returned error or a panic fails the attempt (retried per the task's
/// policy); the node keeps running.
pub trait Task: Send + Sync + 'static {
    /// The registered name (unique in the cluster).
    const NAME: &'static str;
    /// The input.
    type Input: Decode + Encode + serde::de::DeserializeOwned + Send + 'static;
    /// The output.
    type Output: Decode + Encode + serde::Serialize + Send + 'static;

    /// Runs one attempt.
    fn run(
        &self,
        input: Self::Input,
        attempt: AttemptInfo,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// A boxed attempt future.
pub type AttemptFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// A registered kind, with its codec erased.
pub trait Runner: Send + Sync + 'static {
    /// Decodes `input`, runs the attempt, and encodes its output the same way.
    fn start(&self, input: &[u8], encoding: Encoding, attempt: AttemptInfo) -> AttemptFuture;
}

struct Typed<T>(Arc<T>);

impl<T: Task> Runner for Typed<T> {
    fn start(&self, input: &[u8], encoding: Encoding, attempt: AttemptInfo) -> AttemptFuture {
        let decoded = match encoding {
            Encoding::Rkyv => T::Input::decode(input),
            Encoding::Json => serde_json::from_slice(input).map_err(|error| error.to_string()),
        };
        let task = self.0.clone();
        Box::pin(async move {
            let input = decoded.map_err(|error| format!("bad input for {}: {error}", T::NAME))?;
            let output = task.run(input, attempt).await.map_err(|error| error.0)?;
            match encoding {
                Encoding::Rkyv => output.encode(),
                Encoding::Json => serde_json::to_vec(&output).map_err(|error| error.to_string()),
            }
        })
    }
}

/// The task kinds a node runs.
#[derive(Clone, Default)]
pub struct TaskKinds {
    kinds: BTreeMap<String, Arc<dyn Runner>>,
}

impl std::fmt::Debug for TaskKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds.keys()).finish()
    }
}

impl TaskKinds {
    /// No kinds.
    pub fn new() -> TaskKinds {
        TaskKinds::default()
    }

    /// Adds `task` under `T::NAME` (replacing a kind of that name).
    pub fn with<T: Task>(mut self, task: T) -> TaskKinds {
        self.kinds.insert(T::NAME.to_string(), Arc::new(Typed(Arc::new(task))));
        self
    }

    /// The runner of `kind`.
    pub fn runner(&self, kind: &str) -> Option<Arc<dyn Runner>> {
        self.kinds.get(kind).cloned()
    }

    /// The names, sorted.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.kinds.keys().cloned().collect()
    }
}
