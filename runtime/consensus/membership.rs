//! Membership changes: what may be added or removed, and the leader's next step.
//!
//! Core: plain values, no I/O, no clock. The coordinator (`coordinator.rs`) builds a
//! [`MembershipView`] from openraft's metrics and the mesh's liveness, reads the member records
//! (`/gridkeeper/members/<id>`), asks [`check_add`], [`check_removal`] and [`next_duty`], and carries
//! out the answer through openraft's membership API (joint consensus).
//!
//! Invariants:
//! - an id, once removed, is never a member again: its record says `removed` for good, and the
//!   record is written before the membership change that removes it;
//! - a removal is proposed only if both the old and the new voter sets have a live majority, so the
//!   joint configuration it passes through can commit;
//! - at most one change is in flight: nothing is proposed while the configuration is joint, except
//!   the step that flattens it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The cluster's own subtree (`crate::service::credentials::RESERVED_PATH`).
pub const CLUSTER_PATH: &str = "/gridkeeper";
/// Where member records are kept, one znode per id ever added.
pub const MEMBERS_PATH: &str = "/gridkeeper/members";

/// A learner whose log is this close to the leader's is caught up and may be promoted.
pub const CATCH_UP_LAG_MAX: u64 = 64;

/// What the cluster recorded about an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Added by an operator: it joins as a learner and is promoted once caught up.
    Added,
    /// Removed by an operator: never a member again.
    Removed,
}

/// The record of one id (the data of `/gridkeeper/members/<id>`, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Added or removed.
    pub state: RecordState,
    /// Its mesh address (`HOST:PORT`) as added.
    pub addr: String,
}

/// The membership as the leader sees it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// Voters of the newest configuration (of its last set, if it is joint).
    pub voters: BTreeSet<u64>,
    /// Voters of the older set while the configuration is joint.
    pub joint_old: Option<BTreeSet<u64>>,
    /// Members that replicate but do not vote.
    pub learners: BTreeSet<u64>,
    /// Members the leader hears from (itself included).
    pub alive: BTreeSet<u64>,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// Per member, the last index known to match the leader's log.
    pub matched: BTreeMap<u64, u64>,
}

impl MembershipView {
    /// Whether `id` votes or learns.
    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id)
            || self.learners.contains(&id)
            || self.joint_old.as_ref().is_some_and(|old| old.contains(&id))
    }

    fn live_majority(&self, set: &BTreeSet<u64>) -> bool {
        !set.is_empty() && set.iter().filter(|id| self.alive.contains(id)).count() > set.len() / 2
    }
}

/// Why a change was refused: a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What adding an id takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddPlan {
    /// Record it and add it as a learner.
    AddLearner,
    /// It is already a member at that address: nothing to do.
    AlreadyMember,
}

/// Whether `id` may be added at `addr`, given its record and the membership.
///
/// # Errors
/// [`Refusal`] if the id was removed before, is a member at another address, or the membership is
/// full.
pub fn check_add(
    view: &MembershipView,
    id: u64,
    addr: &str,
    record: Option<&MemberRecord>,
    members_max: usize,
) -> Result<AddPlan, Refusal> {
    if record.is_some_and(|record| record.state == RecordState::Removed) {
        return Err(Refusal(format!(
            "node {id} was removed from the cluster; ids are never reused: add it under a new id"
        )));
    }
    if view.contains(id) {
        return match record {
            Some(record) if record.addr == addr => Ok(AddPlan::AlreadyMember),
            Some(record) => Err(Refusal(format!("node {id} is already a member at {}", record.addr))),
            // A member of the first --peers list has no record: it is a member all the same.
            None => Err(Refusal(format!("node {id} is already a member"))),
        };
    }
    let members = view.voters.len() + view.learners.len();
    if members >= members_max {
        return Err(Refusal(format!("the cluster has {members} members, the most it may have")));
    }
    Ok(AddPlan::AddLearner)
}

/// What removing an id takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalPlan {
    /// Record the removal, then take it out of the voters (through a joint configuration).
    RemoveVoter,
    /// Record the removal, then drop the learner.
    RemoveLearner,
    /// It is not a member (anymore): record the removal, so the id is never reused.
    NotMember,
}

/// Whether `id` may be removed now.
///
/// # Errors
/// [`Refusal`] if a change is in flight, if no voter would be left, or if the old or the new voter
/// set lacks a live majority (the change could not commit, or would leave no quorum).
pub fn check_removal(view: &MembershipView, id: u64) -> Result<RemovalPlan, Refusal> {
    if view.joint_old.is_some() {
        return Err(Refusal("a membership change is in progress; try again once it completes".into()));
    }
    if view.learners.contains(&id) {
        return Ok(RemovalPlan::RemoveLearner);
    }
    if !view.voters.contains(&id) {
        return Ok(RemovalPlan::NotMember);
    }
    let remaining: BTreeSet<u64> = view.voters.iter().copied().filter(|&voter| voter != id).collect();
    if remaining.is_empty() {
        return Err(Refusal(format!("node {id} is the last voter: removing it would leave no quorum")));
    }
    let alive = |set: &BTreeSet<u64>| set.iter().filter(|voter| view.alive.contains(voter)).count();
    if !view.live_majority(&view.voters) {
        return Err(Refusal(format!(
            "only {} of {} voters are up: no quorum can commit the change; bring voters back first",
            alive(&view.voters),
            view.voters.len()
        )));
    }
    if !view.live_majority(&remaining) {
        return Err(Refusal(format!(
            "removing node {id} would leave {} of {} remaining voters up, no quorum",
            alive(&remaining),
            remaining.len()
        )));
    }
    Ok(RemovalPlan::RemoveVoter)
}

/// One step the leader takes toward the recorded membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty {
    /// Leave a joint configuration left by a leader that stopped mid-change: these voters.
    Flatten(BTreeSet<u64>),
    /// Finish the removal of a recorded-removed voter.
    RemoveVoter(u64),
    /// Drop a recorded-removed learner.
    RemoveLearner(u64),
    /// Promote a caught-up, live learner that was added.
    Promote(u64),
}

/// The leader's next step, if any: one per call, the most urgent first.
pub fn next_duty(view: &MembershipView, records: &BTreeMap<u64, MemberRecord>) -> Option<Duty> {
    if view.joint_old.is_some() {
        return Some(Duty::Flatten(view.voters.clone()));
    }
    let removed = |id: &u64| records.get(id).is_some_and(|record| record.state == RecordState::Removed);
    if let Some(&id) = view.learners.iter().find(|id| removed(id)) {
        return Some(Duty::RemoveLearner(id));
    }
    if let Some(&id) = view.voters.iter().find(|id| removed(id)) {
        if check_removal(view, id).is_ok() {
            return Some(Duty::RemoveVoter(id));
        }
    }
    view.learners
        .iter()
        .copied()
        .filter(|id| records.get(id).is_some_and(|record| record.state == RecordState::Added))
        .filter(|id| view.alive.contains(id))
        .find(|id| view.matched.get(id).is_some_and(|&matched| matched + CATCH_UP_LAG_MAX >= view.last_log_index))
        .map(Duty::Promote)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn view(voters: &[u64], learners: &[u64], alive: &[u64]) -> MembershipView {
        MembershipView {
            voters: set(voters),
            learners: set(learners),
            alive: set(alive),
            last_log_index: 100,
            ..MembershipView::default()
        }
    }

    fn added(addr: &str) -> MemberRecord {
        MemberRecord { state: RecordState::Added, addr: addr.into() }
    }

    fn removed() -> MemberRecord {
        MemberRecord { state: RecordState::Removed, addr: "h:1".into() }
    }

    #[test]
    fn a_dead_voter_of_three_may_be_removed_but_not_a_live_one_while_another_is_dead() {
        let three = view(&[1, 2, 3], &[], &[1, 2]);
        assert_eq!(check_removal(&three, 3), Ok(RemovalPlan::RemoveVoter));
        let refusal = check_removal(&three, 2).expect_err("would leave {1, 3} with one live voter");
        assert!(refusal.0.contains("no quorum"), "{refusal}");
    }

    #[test]
    fn removal_needs_a_live_majority_of_the_old_set_and_leaves_a_voter() {
        let refusal = check_removal(&view(&[1, 2, 3], &[], &[1]), 3).expect_err("one of three up");
        assert!(refusal.0.contains("only 1 of 3"), "{refusal}");
        let refusal = check_removal(&view(&[1], &[], &[1]), 1).expect_err("last voter");
        assert!(refusal.0.contains("last voter"), "{refusal}");
        assert_eq!(check_removal(&view(&[1, 2], &[], &[1, 2]), 2), Ok(RemovalPlan::RemoveVoter));
    }

    #[test]
    fn nothing_is_removed_while_a_change_is_in_flight() {
        let mut joint = view(&[1, 2, 4], &[], &[1, 2, 3, 4]);
        joint.joint_old = Some(set(&[1, 2, 3]));
        assert!(check_removal(&joint, 2).is_err());
        assert_eq!(next_duty(&joint, &BTreeMap::new()), Some(Duty::Flatten(set(&[1, 2, 4]))));
    }

    #[test]
    fn learners_and_strangers_are_removed_without_a_quorum_check() {
        assert_eq!(check_removal(&view(&[1, 2, 3], &[4], &[1]), 4), Ok(RemovalPlan::RemoveLearner));
        assert_eq!(check_removal(&view(&[1, 2, 3], &[], &[1]), 9), Ok(RemovalPlan::NotMember));
    }

    #[test]
    fn removed_ids_are_never_added_again() {
        let members = view(&[1, 2, 3], &[], &[1, 2, 3]);
        let refusal = check_add(&members, 4, "h:4", Some(&removed()), 64).expect_err("removed before");
        assert!(refusal.0.contains("never reused"), "{refusal}");
        assert_eq!(check_add(&members, 4, "h:4", None, 64), Ok(AddPlan::AddLearner));
        assert!(check_add(&members, 3, "h:3", None, 64).is_err(), "a first member has no record but is a member");
        let learning = view(&[1, 2, 3], &[4], &[1, 2, 3]);
        assert_eq!(check_add(&learning, 4, "h:4", Some(&added("h:4")), 64), Ok(AddPlan::AlreadyMember));
        assert!(check_add(&learning, 4, "h:5", Some(&added("h:4")), 64).is_err());
        assert!(check_add(&members, 5, "h:5", None, 3).is_err(), "full");
    }

    #[test]
    fn a_learner_is_promoted_once_alive_and_caught_up() {
        let records = BTreeMap::from([(4, added("h:4"))]);
        let mut learning = view(&[1, 2, 3], &[4], &[1, 2, 3]);
        assert_eq!(next_duty(&learning, &records), None, "not heard from");
        learning.alive.insert(4);
        learning.matched.insert(4, 10);
        assert_eq!(next_duty(&learning, &records), None, "behind");
        learning.matched.insert(4, 100 - CATCH_UP_LAG_MAX);
        assert_eq!(next_duty(&learning, &records), Some(Duty::Promote(4)));
        assert_eq!(next_duty(&learning, &BTreeMap::new()), None, "a learner nobody added is not promoted");
    }

    #[test]
    fn a_removal_left_half_done_is_finished_when_it_can_commit() {
        let records = BTreeMap::from([(3, removed())]);
        assert_eq!(next_duty(&view(&[1, 2, 3], &[], &[1, 2]), &records), Some(Duty::RemoveVoter(3)));
        assert_eq!(next_duty(&view(&[1, 2, 3], &[], &[1]), &records), None, "no quorum for it");
        assert_eq!(next_duty(&view(&[1, 2], &[3], &[1, 2]), &records), Some(Duty::RemoveLearner(3)));
    }
}
