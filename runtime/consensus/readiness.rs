//! Whether a node can serve writes now: the decision behind `GET /ready`.
//!
//! `/health` says the process is alive; `/ready` says the coordinator makes progress. A node is not
//! ready when it knows no leader, or when writes have been waiting longer than
//! [`READY_STALL_MS`] while its commit index has not moved for as long: the signature of a wedged log.
//!
//! Core: no I/O, no clock. [`Progress`] is fed observations with the time; [`Progress::decide`] answers.

use std::collections::BTreeMap;

use crate::ids::Millis;

/// How long writes may wait with no commit before the node reports itself not ready. An election takes
/// about 0.3 s and a loaded fsync tens of ms, so 3 s of no progress under waiting writes is a fault.
pub const READY_STALL_MS: u64 = 3_000;

/// Why a node is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// No leader is known (no quorum, or an election is under way).
    #[error("no leader known")]
    NoLeader,
    /// Writes wait, and the commit index has not advanced.
    #[error("commit index stuck at {commit_index} for {stalled_ms} ms while {waiting} writes wait")]
    Stalled {
        /// The commit index that does not move.
        commit_index: u64,
        /// How long it has not moved.
        stalled_ms: u64,
        /// Writes waiting.
        waiting: usize,
    },
}

/// What the node has seen of its commit index and its waiting writes.
#[derive(Debug, Default)]
pub struct Progress {
    commit_index: u64,
    commit_changed_at: Millis,
    waiting: BTreeMap<u64, Millis>,
    next_write: u64,
}

impl Progress {
    /// The commit index is `index` at `now`.
    pub fn on_commit_index(&mut self, now: Millis, index: u64) {
        if index != self.commit_index {
            self.commit_index = index;
            self.commit_changed_at = now;
        }
    }

    /// A write starts waiting at `now`; returns its ticket for [`Self::on_write_done`].
    pub fn on_write_started(&mut self, now: Millis) -> u64 {
        let ticket = self.next_write;
        self.next_write += 1;
        self.waiting.insert(ticket, now);
        ticket
    }

    /// The write with `ticket` finished, however it finished.
    pub fn on_write_done(&mut self, ticket: u64) {
        self.waiting.remove(&ticket);
    }

    /// Writes waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The verdict at `now`, given the leader this node knows.
    ///
    /// # Errors
    /// [`NotReady`] with the reason.
    pub fn decide(&self, now: Millis, leader: Option<u64>) -> Result<(), NotReady> {
        if leader.is_none() {
            return Err(NotReady::NoLeader);
        }
        let Some(&oldest) = self.waiting.values().min() else { return Ok(()) };
        let stalled_ms = now.since(self.commit_changed_at);
        if now.since(oldest) >= READY_STALL_MS && stalled_ms >= READY_STALL_MS {
            return Err(NotReady::Stalled { commit_index: self.commit_index, stalled_ms, waiting: self.waiting.len() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_leader_is_not_ready() {
        assert_eq!(Progress::default().decide(Millis(0), None), Err(NotReady::NoLeader));
    }

    #[test]
    fn idle_node_with_a_leader_is_ready_however_old_its_commit() {
        let mut progress = Progress::default();
        progress.on_commit_index(Millis(0), 5);
        assert_eq!(progress.decide(Millis(1_000_000), Some(1)), Ok(()));
    }

    #[test]
    fn a_write_waiting_on_a_stuck_commit_index_is_a_stall() {
        let mut progress = Progress::default();
        progress.on_commit_index(Millis(100), 7);
        let ticket = progress.on_write_started(Millis(200));
        assert_eq!(progress.decide(Millis(200 + READY_STALL_MS - 1), Some(1)), Ok(()));
        assert_eq!(
            progress.decide(Millis(200 + READY_STALL_MS), Some(1)),
            Err(NotReady::Stalled { commit_index: 7, stalled_ms: READY_STALL_MS + 100, waiting: 1 })
        );
        progress.on_write_done(ticket);
        assert_eq!(progress.decide(Millis(200 + READY_STALL_MS), Some(1)), Ok(()));
    }

    #[test]
    fn commits_moving_under_a_long_write_are_progress() {
        let mut progress = Progress::default();
        progress.on_write_started(Millis(0));
        progress.on_commit_index(Millis(READY_STALL_MS + 500), 9);
        assert_eq!(progress.decide(Millis(READY_STALL_MS + 1_000), Some(1)), Ok(()));
    }
}
