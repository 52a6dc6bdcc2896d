//! Tasks as the grid's replicated table sees them: what was asked (`TaskSpec`), each attempt, and the
//! lifecycle. Plain data; the decisions live in `table.rs`, `queue.rs` and `placement.rs`.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// A task's id: the zxid of the entry that accepted it (unique, deterministic on every replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

/// Identifies one assignment of a task to a node. A report carrying any other token is stale (a zombie
/// attempt, a duplicate) and is refused. It is the zxid of the assignment, so it only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

/// How the grid picks a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest running attempts per slot (ties: lowest id).
    #[default]
    LeastLoaded,
    /// Each eligible node in turn.
    RoundRobin,
    /// Uniformly at random (seeded: replicas and simulations agree).
    Random,
    /// At random in proportion to each node's weight.
    Weighted,
    /// Rendezvous hashing on the shard key: a key stays on its node while that node is healthy, and a
    /// membership change moves only the keys of the nodes that came or went.
    ConsistentHash,
}

/// Retries of failed or timed-out attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts_max: u32,
    /// Wait before the second attempt; doubles for each later one, capped at [`RETRY_BACKOFF_MS_MAX`].
    pub backoff_ms: u64,
}

/// Longest wait between two attempts.
pub const RETRY_BACKOFF_MS_MAX: u64 = 60_000;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts_max: 3, backoff_ms: 100 }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `next` (2 for the first retry).
    pub fn backoff_before(&self, next: u32) -> u64 {
        let doublings = next.saturating_sub(2).min(20);
        self.backoff_ms.saturating_mul(1 << doublings).min(RETRY_BACKOFF_MS_MAX)
    }
}

/// How a task's input (and so its result) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// An rkyv archive of the task type's input (the Rust API).
    #[default]
    Rkyv,
    /// JSON (the CLI and the HTTP API).
    Json,
}

/// What a submitter asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The registered task type.
    pub kind: String,
    /// Its encoded input.
    pub input: Vec<u8>,
    /// How `input` is encoded; the result is encoded the same way.
    #[serde(default)]
    pub encoding: Encoding,
    /// Higher runs first.
    pub priority: i32,
    /// Not to start before this Unix ms (0: at once).
    pub not_before_ms: u64,
    /// Longest an attempt may run.
    pub timeout_ms: u64,
    /// Retries.
    pub retry: RetryPolicy,
    /// Key for consistent-hash placement.
    pub shard_key: Option<String>,
    /// Overrides the cluster's strategy.
    pub strategy: Option<Strategy>,
    /// Runs only on this node.
    pub affinity: Option<NodeId>,
}

impl TaskSpec {
    /// A spec with defaults: priority 0, at once, 30 s timeout, 3 attempts.
    pub fn new(kind: impl Into<String>, input: Vec<u8>) -> TaskSpec {
        TaskSpec {
            kind: kind.into(),
            input,
            encoding: Encoding::Rkyv,
            priority: 0,
            not_before_ms: 0,
            timeout_ms: 30_000,
            retry: RetryPolicy::default(),
            shard_key: None,
            strategy: None,
            affinity: None,
        }
    }

    /// Bytes of this spec's postcard encoding (as it travels in a submission's log entry), counted
    /// without encoding it, so a submission can be sized before a single copy of its tasks exists.
    pub fn encoded_bytes(&self) -> usize {
        // Counting cannot fail: a spec has no map or sequence of unknown length.
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }
}

/// What one task costs the table beyond its input, result and error texts: the structs, the id in
/// the ordered maps, a few attempts. An estimate, used only to count history in bytes; being a
/// function of the task alone, every replica counts the same.
pub const TASK_FIXED_BYTES: usize = 256;

/// What one attempt adds to its task beyond its error text.
pub const ATTEMPT_FIXED_BYTES: usize = 64;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be placed (possibly until its not-before time).
    Pending,
    /// Given to a node, not yet reported started.
    Assigned,
    /// The node reported the attempt started.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// The last attempt ran out of time and no attempt is left.
    TimedOut,
    /// Cancelled before finishing.
    Cancelled,
}

impl TaskState {
    /// Whether the task will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::TimedOut | TaskState::Cancelled)
    }
}

/// How one attempt ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Assigned, not started.
    Assigned,
    /// Running.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Returned an error or panicked.
    Failed,
    /// Ran out of time.
    TimedOut,
    /// Its node was declared dead; the work was handed to another attempt.
    Lost,
    /// The task was cancelled while it ran.
    Cancelled,
}

/// One attempt, as kept in the task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Where it ran.
    pub node: NodeId,
    /// Its fencing token.
    pub token: FencingToken,
    /// How it stands.
    pub state: AttemptState,
    /// When it was assigned (Unix ms).
    pub assigned_ms: u64,
    /// When the node reported it started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// Why it failed, if it did (bounded).
    pub error: Option<String>,
}

/// A task and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What was asked.
    pub spec: TaskSpec,
    /// Where it is.
    pub state: TaskState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// The result of the successful attempt (bounded).
    pub result: Option<Vec<u8>>,
    /// When it was accepted (Unix ms).
    pub submitted_ms: u64,
}

impl Task {
    /// Starts a new attempt on `node` under `token` at `now_ms`: assigned, not started yet.
    pub fn assign(&mut self, node: NodeId, token: FencingToken, now_ms: u64) {
        // Most tasks run once: room for exactly one attempt, not the four a first push reserves.
        if self.attempts.capacity() == 0 {
            self.attempts.reserve_exact(1);
        }
        self.attempts.push(Attempt {
            number: self.attempts.len() as u32 + 1,
            node,
            token,
            state: AttemptState::Assigned,
            assigned_ms: now_ms,
            started_ms: None,
            ended_ms: None,
            error: None,
        });
        self.state = TaskState::Assigned;
    }

    /// The attempt in progress, if any.
    pub fn current_attempt(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|attempt| matches!(attempt.state, AttemptState::Assigned | AttemptState::Running))
    }

    /// The bytes this task holds in the table, as history retention counts them: its spec, result and
    /// attempts with their errors. Deterministic: a function of the task alone.
    pub fn retained_bytes(&self) -> usize {
        let attempts: usize = self
            .attempts
            .iter()
            .map(|attempt| ATTEMPT_FIXED_BYTES.saturating_add(attempt.error.as_ref().map_or(0, String::len)))
            .fold(0, usize::saturating_add);
        let result = self.result.as_ref().map_or(0, Vec::len);
        self.spec.encoded_bytes().saturating_add(TASK_FIXED_BYTES).saturating_add(result).saturating_add(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_bytes_counts_the_encoding() {
        let mut spec = TaskSpec::new("echo", vec![7; 1000]);
        spec.priority = i32::MIN;
        spec.not_before_ms = u64::MAX;
        spec.retry = RetryPolicy { attempts_max: u32::MAX, backoff_ms: u64::MAX };
        spec.shard_key = Some("k".repeat(300));
        spec.affinity = Some(NodeId(u64::MAX));
        for spec in [spec, TaskSpec::new("noop", vec![])] {
            assert_eq!(postcard::to_stdvec(&spec).expect("encodes").len(), spec.encoded_bytes());
        }
    }
}
