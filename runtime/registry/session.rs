//! The leader's session clocks: which sessions have gone silent for longer than their timeout.
//!
//! Deterministic: time is an input. Only the leader runs one; a new leader starts every clock afresh
//! from its election (as ZooKeeper does), so a leader change never expires a live session.

use std::collections::{BTreeMap, BTreeSet};

use super::command::SessionId;
use crate::ids::Millis;

/// Silence tracking for every open session.
#[derive(Debug, Default, Clone)]
pub struct SessionTracker {
    clocks: BTreeMap<SessionId, (u64, Millis)>,
    /// Sessions proposed for expiry whose expiry has not been applied yet; not proposed again.
    expiring: BTreeSet<SessionId>,
}

impl SessionTracker {
    /// Restarts tracking after winning an election: every open session gets a full timeout from `now`.
    pub fn on_leadership(&mut self, now: Millis, sessions: impl IntoIterator<Item = (SessionId, u64)>) {
        self.clocks = sessions.into_iter().map(|(session, timeout)| (session, (timeout, now))).collect();
        self.expiring.clear();
    }

    /// A session was opened (applied) with `timeout_ms`.
    pub fn on_opened(&mut self, now: Millis, session: SessionId, timeout_ms: u64) {
        self.clocks.insert(session, (timeout_ms, now));
    }

    /// The session's client was heard from. Returns whether the session is known and not expiring.
    pub fn on_heard(&mut self, now: Millis, session: SessionId) -> bool {
        if self.expiring.contains(&session) {
            return false;
        }
        match self.clocks.get_mut(&session) {
            Some((_, last)) => {
                *last = (*last).max(now);
                true
            }
            None => false,
        }
    }

    /// A session ended (closed or expired, applied).
    pub fn on_ended(&mut self, session: SessionId) {
        self.clocks.remove(&session);
        self.expiring.remove(&session);
    }

    /// Sessions silent past their timeout at `now`, not already being expired. The caller proposes
    /// their expiry; they are not returned again unless [`Self::on_expiry_failed`] is called.
    pub fn on_tick(&mut self, now: Millis) -> Vec<SessionId> {
        let due: Vec<SessionId> = self
            .clocks
            .iter()
            .filter(|(session, (timeout, last))| now.since(*last) > *timeout && !self.expiring.contains(session))
            .map(|(&session, _)| session)
            .collect();
        self.expiring.extend(due.iter().copied());
        due
    }

    /// The expiry proposal for `sessions` failed (lost leadership, say); they may be proposed again.
    pub fn on_expiry_failed(&mut self, sessions: &[SessionId]) {
        for session in sessions {
            self.expiring.remove(session);
        }
    }

    /// Sessions tracked.
    pub fn len(&self) -> usize {
        self.clocks.len()
    }

    /// Whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.clocks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SessionId = SessionId(7);

    #[test]
    fn a_silent_session_expires_once() {
        let mut tracker = SessionTracker::default();
        tracker.on_opened(Millis(0), S, 1000);
        assert!(tracker.on_tick(Millis(1000)).is_empty());
        assert_eq!(tracker.on_tick(Millis(1001)), vec![S]);
        assert!(tracker.on_tick(Millis(5000)).is_empty(), "proposed once");
        assert!(!tracker.on_heard(Millis(5000), S), "an expiring session cannot be revived");
        tracker.on_expiry_failed(&[S]);
        assert_eq!(tracker.on_tick(Millis(5001)), vec![S]);
        tracker.on_ended(S);
        assert!(tracker.is_empty());
    }

    #[test]
    fn keepalives_hold_off_expiry() {
        let mut tracker = SessionTracker::default();
        tracker.on_opened(Millis(0), S, 1000);
        for now in (0..10_000).step_by(300) {
            assert!(tracker.on_heard(Millis(now), S));
            assert!(tracker.on_tick(Millis(now + 100)).is_empty());
        }
    }

    #[test]
    fn a_new_leader_restarts_every_clock() {
        let mut tracker = SessionTracker::default();
        tracker.on_leadership(Millis(50_000), [(S, 1000)]);
        assert!(tracker.on_tick(Millis(50_900)).is_empty(), "no expiry right after an election");
        assert_eq!(tracker.on_tick(Millis(51_001)), vec![S]);
    }
}
