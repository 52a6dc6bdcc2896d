//! What hears of every applied entry: the coordinator's own observer (the watch hub, the leader's
//! session clocks, metrics) and, through it, the [`StateObserver`] the layer above injected when the
//! coordinator started. Consensus knows that layer only through this trait.

use std::sync::{Arc, Mutex};

use super::state_machine::ApplyObserver;
use super::watch_hub::WatchHub;
use crate::clock::Clock;
use crate::registry::session::SessionTracker;
use crate::registry::Change;
use crate::state::{Applied, Command, Effects, Outcome, Proposal, ReplicatedState};

/// What the layers above consensus hear of the replicated state: injected when a coordinator
/// starts, so that consensus knows nothing of what they do with it (the service layer's grid hub
/// hands attempts to the worker, wakes task waits and the dispatcher, and exports the grid's gauges).
pub trait StateObserver: Send + Sync + 'static {
    /// An entry was applied, making `changes` in the registry and `effects` beside it; `state` is
    /// after the entry. Called with the state still locked, in log order: it must not block.
    fn on_applied(&self, changes: &[Change], effects: &Effects, state: &ReplicatedState);
    /// The whole state was replaced by a snapshot.
    fn on_reset(&self, state: &ReplicatedState);
    /// Whether [`Self::shape`] may change `command` (cheap, without the state: the coordinator locks
    /// the state for `shape` only then).
    fn shapes(&self, command: &Command) -> bool {
        let _ = command;
        false
    }
    /// On the leader, just before `command` is proposed: the command to propose (`command`, or the
    /// same change shaped from what the leader knows, as a submission with its placement, within the
    /// entry bound), and a guard the coordinator holds until that write returns. `state` is the state
    /// now, locked: this must not block. The default leaves `command` as it is.
    fn shape(&self, command: Command, state: &ReplicatedState) -> (Command, Option<Box<dyn Send>>) {
        let _ = state;
        (command, None)
    }
    /// The coordinator's periodic metrics tick: export gauges of `state`.
    fn on_metrics(&self, state: &ReplicatedState) {
        let _ = state;
    }
    /// The observer itself, for the layer that installed it to find it again
    /// ([`Coordinator::observer`](super::Coordinator::observer)).
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// An observer that hears nothing (a coordinator with no layer above it, as in registry simulations).
#[derive(Debug, Default)]
pub struct NoObserver;

impl StateObserver for NoObserver {
    fn on_applied(&self, _: &[Change], _: &Effects, _: &ReplicatedState) {}
    fn on_reset(&self, _: &ReplicatedState) {}
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Feeds applied changes to the watch hub, the session clocks, metrics, and the injected observer.
pub(super) struct Observer {
    pub(super) hub: Arc<WatchHub>,
    pub(super) above: Arc<dyn StateObserver>,
    pub(super) tracker: Arc<Mutex<SessionTracker>>,
    pub(super) clock: Clock,
}

impl ApplyObserver for Observer {
    fn on_applied(
        &self,
        zxid: u64,
        proposal: &Proposal,
        result: &Applied,
        changes: &[Change],
        effects: &Effects,
        state: &ReplicatedState,
    ) {
        self.hub.on_changes(zxid, changes);
        self.above.on_applied(changes, effects, state);
        let mut tracker = self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match (&proposal.command, result) {
            (
                Command::OpenSession { .. } | Command::OpenSessionSecured { .. },
                Ok(Outcome::SessionOpened { session, timeout_ms }),
            ) => {
                tracker.on_opened(self.clock.now(), *session, *timeout_ms);
            }
            // Only a close that applied ends the clock: a refused one (wrong secret) must not stop
            // the session from expiring.
            (Command::CloseSession { session } | Command::CloseSessionSecured { session, .. }, Ok(_)) => {
                tracker.on_ended(*session)
            }
            (Command::ExpireSessions { sessions }, _) => {
                metrics::counter!("gridkeeper_registry_sessions_expired_total").increment(sessions.len() as u64);
                sessions.iter().for_each(|session| tracker.on_ended(*session));
            }
            _ => {}
        }
    }

    fn on_reset(&self, state: &ReplicatedState) {
        self.hub.on_reset();
        self.above.on_reset(state);
    }
}
