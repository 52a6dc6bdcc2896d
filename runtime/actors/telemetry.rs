//! The actor host's metrics. Labels are bounded: a call's outcome is one of [`Outcome`]'s names; a
//! gauge's node is the host's own.

use crate::ids::NodeId;

/// A finished call as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the actor.
    Ok,
    /// The actor's handler failed (`actor failed`).
    Failed,
    /// Refused before handling: mailbox full, activation bound, bad message.
    Refused,
    /// Not this host's (misdirected): the caller refreshes and retries.
    Misdirected,
    /// Its fate is unknown (commit lost, lease lapsed mid-call).
    Unknown,
}

/// Every outcome, in the order of [`Outcome`]'s discriminants.
const OUTCOMES: [Outcome; 5] = [Outcome::Ok, Outcome::Failed, Outcome::Refused, Outcome::Misdirected, Outcome::Unknown];

/// The calls counter of each outcome, looked up once (every call is counted: a lookup per call built
/// its labelled key, hashed and locked the registry). Made by [`register`], which a host runs once the
/// node installed its recorder; handles made before a recorder exists count nowhere, as any would.
static CALLS: std::sync::OnceLock<[metrics::Counter; 5]> = std::sync::OnceLock::new();

fn calls() -> &'static [metrics::Counter; 5] {
    CALLS.get_or_init(|| {
        OUTCOMES.map(|outcome| metrics::counter!("gridkeeper_actor_calls_total", "outcome" => outcome.label()))
    })
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Misdirected => "misdirected",
            Outcome::Unknown => "unknown",
        }
    }

    /// The outcome of an answer with `code`.
    pub fn of(code: Option<crate::api::ErrorCode>) -> Outcome {
        use crate::api::ErrorCode;
        match code {
            None => Outcome::Ok,
            Some(ErrorCode::ActorFailed) => Outcome::Failed,
            Some(ErrorCode::Misdirected) => Outcome::Misdirected,
            Some(ErrorCode::OutcomeUnknown) => Outcome::Unknown,
            Some(_) => Outcome::Refused,
        }
    }
}

/// Registers every series at zero, so dashboards see them before the first actor; the gauges of
/// `node` (gauges carry a `node` label: nodes that share a process, as in `LocalCluster`, each keep
/// their own; counters count for the whole process, which for a node's process is the node).
pub fn register(node: NodeId) {
    metrics::describe_gauge!("gridkeeper_actor_activations", "Actor activations the node hosts.");
    metrics::describe_counter!("gridkeeper_actor_activations_total", "Actor activations started on this node.");
    metrics::describe_counter!("gridkeeper_actor_passivations_total", "Idle actor activations released by this node.");
    metrics::describe_counter!("gridkeeper_actor_moves_total", "Activations of orphans (actors whose host died) here.");
    metrics::describe_counter!("gridkeeper_actor_calls_total", "Actor calls answered by this node's host, by outcome.");
    metrics::describe_gauge!("gridkeeper_actor_mailbox_depth", "Messages waiting in the node's actor mailboxes.");
    metrics::counter!("gridkeeper_actor_activations_total").increment(0);
    metrics::counter!("gridkeeper_actor_passivations_total").increment(0);
    metrics::counter!("gridkeeper_actor_moves_total").increment(0);
    metrics::describe_counter!(
        "gridkeeper_actor_inline_pauses_total",
        "Times a mesh call handled in its stream's reading task took over INLINE_HANDLING_US_MAX, pausing inline handling.",
    );
    metrics::counter!("gridkeeper_actor_inline_pauses_total").increment(0);
    for counter in calls() {
        counter.increment(0);
    }
    gauges(&node_label(node), 0, 0);
}

/// The value of the `node` label of `node`'s gauges (made once, cloned cheaply).
pub fn node_label(node: NodeId) -> metrics::SharedString {
    metrics::SharedString::from_owned(node.0.to_string())
}

/// The gauges of a host, labelled with [`node_label`].
pub fn gauges(node: &metrics::SharedString, activations: usize, mailbox_depth: usize) {
    metrics::gauge!("gridkeeper_actor_activations", "node" => node.clone()).set(activations as f64);
    metrics::gauge!("gridkeeper_actor_mailbox_depth", "node" => node.clone()).set(mailbox_depth as f64);
}

/// An activation started (`moved`: of an orphan).
pub fn activated(moved: bool) {
    metrics::counter!("gridkeeper_actor_activations_total").increment(1);
    if moved {
        metrics::counter!("gridkeeper_actor_moves_total").increment(1);
    }
}

/// An idle activation was released.
pub fn passivated() {
    metrics::counter!("gridkeeper_actor_passivations_total").increment(1);
}

/// A call was answered.
pub fn answered(outcome: Outcome) {
    calls()[outcome as usize].increment(1);
}

/// A slow inline handling paused inline handling.
pub fn inline_paused() {
    metrics::counter!("gridkeeper_actor_inline_pauses_total").increment(1);
}
