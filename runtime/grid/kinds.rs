//! The programming model: the [`Task`] trait users implement, and [`TaskKinds`], the task types a node
//! can run (registered on the node builder and advertised in its registration).
//!
//! A task's input and output are rkyv archives when submitted from Rust, and JSON when submitted from
//! the CLI or HTTP, so both traits are required of them. Decoding happens on the worker, from bytes
//! that came through the log: it is validated (`rkyv::from_bytes` checks the archive) and a bad input
//! fails the attempt with a clear error, never a panic.
//!
//! An attempt logs through [`AttemptInfo::log`]. `AttemptInfo` stays a `Copy` value users can build
//! in their own tests; the worker wraps each attempt's future with [`with_attempt_log`], which sets a
//! thread-local scope around every poll, and `log()` finds its attempt's logger there (or logs
//! nowhere). Where the lines go is the worker's business (`worker/logs.rs`), behind [`LogSink`].

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

impl AttemptInfo {
    /// This attempt's logger: lines go to the node that runs it, are kept there (the last 64 KiB of
    /// each attempt) and are read with `gridkeeper logs --id N` or `GET /grid/logs` from any node.
    /// `tracing` events emitted inside [`Task::run`] (level info and above) are kept the same way.
    ///
    /// Call it inside `run` (the logger it returns may be kept and moved into tasks `run` spawns).
    /// Outside a worker (a unit test calling `run` directly), or for another attempt's info, it logs
    /// nowhere.
    pub fn log(&self) -> AttemptLog {
        ATTEMPT_SCOPE.with(|scope| match &*scope.borrow() {
            Some((task, token, log)) if *task == self.task && *token == self.token => log.clone(),
            _ => AttemptLog::nowhere(),
        })
    }
}

/// How much a log line matters, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// What the task is doing.
    Info,
    /// Detail for debugging.
    Debug,
    /// Finer detail still.
    Trace,
}

impl LogLevel {
    /// The level's name as the API writes it (`"info"`).
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Where an attempt's log lines go (the worker's task-log store); a node implements it, a task never
/// needs to.
pub trait LogSink: Send + Sync + 'static {
    /// Keeps one line (the sink bounds its length and its rate; it never blocks on disk).
    fn line(&self, level: LogLevel, text: &str);
}

/// An attempt's logger, from [`AttemptInfo::log`]: cheap to clone, and each call returns at once
/// (lines are written by the node in the background; a task that logs faster than the node writes
/// loses lines, and a marker line says how many).
#[derive(Clone, Default)]
pub struct AttemptLog {
    sink: Option<Arc<dyn LogSink>>,
}

impl std::fmt::Debug for AttemptLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptLog").field("kept", &self.sink.is_some()).finish()
    }
}

impl AttemptLog {
    /// A logger writing to `sink` (the worker makes one per attempt).
    pub fn to(sink: Arc<dyn LogSink>) -> AttemptLog {
        AttemptLog { sink: Some(sink) }
    }

    /// A logger that keeps nothing.
    pub fn nowhere() -> AttemptLog {
        AttemptLog { sink: None }
    }

    /// Whether lines go anywhere.
    pub fn is_kept(&self) -> bool {
        self.sink.is_some()
    }

    /// Logs `text` at `level`.
    pub fn line(&self, level: LogLevel, text: impl std::fmt::Display) {
        if let Some(sink) = &self.sink {
            sink.line(level, &text.to_string());
        }
    }

    /// Logs `text` at level error.
    pub fn error(&self, text: impl std::fmt::Display) {
        self.line(LogLevel::Error, text);
    }

    /// Logs `text` at level warn.
    pub fn warn(&self, text: impl std::fmt::Display) {
        self.line(LogLevel::Warn, text);
    }

    /// Logs `text` at level info.
    pub fn info(&self, text: impl std::fmt::Display) {
        self.line(LogLevel::Info, text);
    }

    /// Logs `text` at level debug.
    pub fn debug(&self, text: impl std::fmt::Display) {
        self.line(LogLevel::Debug, text);
    }
}

thread_local! {
    /// The attempt whose future this thread is polling, with its logger: set around each poll by
    /// [`with_attempt_log`], so [`AttemptInfo::log`] (and the worker's `tracing` capture) find it
    /// while `AttemptInfo` stays a plain `Copy` value.
    static ATTEMPT_SCOPE: std::cell::RefCell<Option<(TaskId, FencingToken, AttemptLog)>> =
        const { std::cell::RefCell::new(None) };
}

/// The logger of the attempt being polled on this thread, if any.
pub fn current_attempt_log() -> Option<AttemptLog> {
    ATTEMPT_SCOPE.with(|scope| scope.borrow().as_ref().map(|(_, _, log)| log.clone()))
}

/// `future` with `log` as the logger of `attempt` during every poll (nested scopes are restored,
/// a panic included).
pub fn with_attempt_log(attempt: AttemptInfo, log: AttemptLog, future: AttemptFuture) -> AttemptFuture {
    Box::pin(Scoped { scope: Some((attempt.task, attempt.token, log)), future })
}

struct Scoped {
    scope: Option<(TaskId, FencingToken, AttemptLog)>,
    future: AttemptFuture,
}

/// Puts the previous scope back when a poll returns or unwinds.
struct Restore(Option<(TaskId, FencingToken, AttemptLog)>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        ATTEMPT_SCOPE.with(|scope| *scope.borrow_mut() = previous);
    }
}

impl Future for Scoped {
    type Output = Result<Vec<u8>, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let previous = ATTEMPT_SCOPE.with(|scope| scope.replace(this.scope.clone()));
        let _restore = Restore(previous);
        this.future.as_mut().poll(cx)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[derive(Default)]
    struct Lines(std::sync::Mutex<Vec<(LogLevel, String)>>);

    impl LogSink for Lines {
        fn line(&self, level: LogLevel, text: &str) {
            self.0.lock().expect("lines").push((level, text.to_string()));
        }
    }

    fn info(task: u64, token: u64) -> AttemptInfo {
        AttemptInfo { task: TaskId(task), number: 1, token: FencingToken(token), node: NodeId(1) }
    }

    #[test]
    fn an_attempt_finds_its_logger_only_while_its_future_is_polled() {
        let attempt = info(5, 9);
        attempt.log().info("nowhere: outside a worker");
        assert!(!attempt.log().is_kept() && current_attempt_log().is_none());
        let lines = Arc::new(Lines::default());
        let run: AttemptFuture = Box::pin(async move {
            attempt.log().info("one");
            attempt.log().line(LogLevel::Debug, format_args!("two {}", 2));
            // Another attempt's info (a stale copy, say) finds no logger here.
            info(5, 8).log().error("not mine");
            assert!(current_attempt_log().is_some());
            Ok(Vec::new())
        });
        let outcome = with_attempt_log(attempt, AttemptLog::to(lines.clone()), run).now_or_never();
        assert_eq!(outcome, Some(Ok(Vec::new())));
        let kept = lines.0.lock().expect("lines").clone();
        assert_eq!(kept, [(LogLevel::Info, "one".to_string()), (LogLevel::Debug, "two 2".to_string())]);
        assert!(current_attempt_log().is_none(), "the scope ends with the poll");
        // A panic inside the attempt restores the scope too.
        let panicking: AttemptFuture = Box::pin(async { panic!("boom") });
        let scoped = with_attempt_log(attempt, AttemptLog::to(lines.clone()), panicking);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scoped.now_or_never())).is_err());
        assert!(current_attempt_log().is_none());
    }
}
