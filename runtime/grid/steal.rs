//! Work stealing: which queued attempts move from a node with a long queue to one with room.
//! Deterministic: no I/O, no clock (the time is an input), ties broken by node and task id.
//!
//! A node's load is what it holds (attempts assigned to it and not ended, running or queued there)
//! per slot, as least-loaded placement counts it. A node holding far more per slot than a peer (at
//! least twice the peer's load plus one full round of its slots) gives the peer the attempts that
//! waited longest, as many as evens the two loads out and the peer has room for. Only attempts queued
//! on their node, not started there and assigned at least [`STEAL_GRACE_MS`] ago, may move, and only
//! those the peer runs (its kind) that no node or shard key ties to their node (affinity, consistent
//! hashing). A worker reports a start late (batched; a quick attempt's start comes with its end), so
//! the table builds each node's candidates without the unstarted attempts its free slots would have
//! started first (`TaskTable::backlogs`); a move that still catches a running attempt stops it there
//! and runs it again on the peer (its report is refused: completion stays exactly once).
//!
//! Invariant: a plan never moves an attempt to the node that holds it, to a draining node or past a
//! node's room (slots + prefetch), and evening out never reverses: after a move the target's load per
//! slot is at most the source's, so no later plan moves work back and forth between two nodes.
//! The plan is a proposal: `Reassign`'s apply checks every move again (`TaskTable::on_reassigned`).

use std::collections::BTreeSet;

use super::task::{FencingToken, TaskId};
use crate::ids::NodeId;

/// An attempt must have waited this long on its node, unstarted, before it may move. Workers report
/// a start a little late (batched with other reports), so the table's "not started" is only trusted
/// past this.
pub const STEAL_GRACE_MS: u64 = 250;

/// Moves in one `Reassign` entry at most.
pub const STEAL_BATCH_MAX: usize = 1_024;

/// An attempt that may move: queued on its node, not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The task.
    pub task: TaskId,
    /// The attempt's token.
    pub token: FencingToken,
    /// When it was assigned (Unix ms).
    pub assigned_ms: u64,
    /// Its kind (a target must run it).
    pub kind: String,
}

/// What stealing knows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The node.
    pub node: NodeId,
    /// Attempts it holds (assigned and not ended, including assignments still in flight).
    pub held: u32,
    /// Attempts it runs at once.
    pub slots: u32,
    /// Attempts it may hold queued beyond its slots.
    pub prefetch: u32,
    /// Kinds it runs.
    pub kinds: BTreeSet<String>,
    /// Takes no new work.
    pub draining: bool,
    /// Its attempts that may move (not started, not tied to it), in any order.
    pub queued: Vec<Queued>,
}

impl Backlog {
    fn room(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.slots.saturating_add(self.prefetch).saturating_sub(self.held)
    }

    fn per_slot(&self) -> (u64, u64) {
        (u64::from(self.held), u64::from(self.slots.max(1)))
    }
}

/// Whether `source` holds far more per slot than `target`: source/ss ≥ 2 × target/ts + 1.
fn far_longer(source: &Backlog, target: &Backlog) -> bool {
    let ((sh, ss), (th, ts)) = (source.per_slot(), target.per_slot());
    sh * ts >= (2 * th + ts) * ss
}

/// How many attempts even out `source` and `target` per slot (rounded down, so the target never ends
/// up above the source).
fn evening(source: &Backlog, target: &Backlog) -> u64 {
    let ((sh, ss), (th, ts)) = (source.per_slot(), target.per_slot());
    (sh * ts).saturating_sub(th * ss) / (ss + ts)
}

/// Compares loads per slot exactly (cross-multiplied).
fn load_cmp(a: &Backlog, b: &Backlog) -> std::cmp::Ordering {
    let ((ah, as_), (bh, bs)) = (a.per_slot(), b.per_slot());
    (ah * bs).cmp(&(bh * as_))
}

/// The moves to make at `now_ms`, at most `max`: (task, the attempt's token, the node it moves to).
/// `nodes` are the registered nodes; see the module docs for the policy.
pub fn plan(nodes: &[Backlog], now_ms: u64, max: usize) -> Vec<(TaskId, FencingToken, NodeId)> {
    let mut nodes: Vec<Backlog> = nodes.to_vec();
    for node in &mut nodes {
        // Longest waiting first; then lowest task id.
        node.queued.retain(|queued| queued.assigned_ms.saturating_add(STEAL_GRACE_MS) <= now_ms);
        node.queued.sort_by_key(|queued| (queued.assigned_ms, queued.task));
    }
    let mut moves = Vec::new();
    let mut done: BTreeSet<NodeId> = BTreeSet::new();
    while moves.len() < max {
        // The most loaded source that still has attempts to give.
        let Some(source) = (0..nodes.len())
            .filter(|&i| !done.contains(&nodes[i].node) && !nodes[i].queued.is_empty())
            .max_by(|&a, &b| load_cmp(&nodes[a], &nodes[b]).then(nodes[b].node.cmp(&nodes[a].node)))
        else {
            break;
        };
        // The least loaded target far below it with room that runs at least one of them.
        let target = (0..nodes.len())
            .filter(|&i| i != source && nodes[i].room() > 0 && far_longer(&nodes[source], &nodes[i]))
            .filter(|&i| nodes[source].queued.iter().any(|queued| nodes[i].kinds.contains(&queued.kind)))
            .min_by(|&a, &b| load_cmp(&nodes[a], &nodes[b]).then(nodes[a].node.cmp(&nodes[b].node)));
        let Some(target) = target else {
            done.insert(nodes[source].node);
            continue;
        };
        let wanted = evening(&nodes[source], &nodes[target])
            .min(u64::from(nodes[target].room()))
            .min((max - moves.len()) as u64) as usize;
        let to = nodes[target].node;
        let mut taken = 0;
        let mut kept = Vec::new();
        for queued in std::mem::take(&mut nodes[source].queued) {
            if taken < wanted && nodes[target].kinds.contains(&queued.kind) {
                moves.push((queued.task, queued.token, to));
                taken += 1;
            } else {
                kept.push(queued);
            }
        }
        nodes[source].queued = kept;
        if taken == 0 {
            done.insert(nodes[source].node);
            continue;
        }
        nodes[source].held -= taken as u32;
        nodes[target].held += taken as u32;
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, held: u32, slots: u32, queued: &[(u64, u64)]) -> Backlog {
        Backlog {
            node: NodeId(id),
            held,
            slots,
            prefetch: 256,
            kinds: BTreeSet::from(["noop".to_string()]),
            draining: false,
            queued: queued
                .iter()
                .map(|&(task, assigned_ms)| Queued {
                    task: TaskId(task),
                    token: FencingToken(task * 10),
                    assigned_ms,
                    kind: "noop".into(),
                })
                .collect(),
        }
    }

    fn backlog(id: u64, slots: u32, first_task: u64, count: u64, assigned_ms: u64) -> Backlog {
        let queued: Vec<(u64, u64)> = (0..count).map(|i| (first_task + i, assigned_ms)).collect();
        node(id, slots + count as u32, slots, &queued)
    }

    fn moved_to(moves: &[(TaskId, FencingToken, NodeId)], to: u64) -> usize {
        moves.iter().filter(|(_, _, node)| *node == NodeId(to)).count()
    }

    #[test]
    fn a_long_queue_is_shared_with_idle_peers_oldest_first() {
        // Node 1 runs 2 and has 12 queued; nodes 2 and 3 are idle.
        let nodes = [backlog(1, 2, 100, 12, 1_000), node(2, 0, 2, &[]), node(3, 0, 2, &[])];
        let moves = plan(&nodes, 2_000, 100);
        // 14 held on 2 slots against 0: 7 move to node 2; then 7 against 0: 3 to node 3.
        assert_eq!((moved_to(&moves, 2), moved_to(&moves, 3)), (7, 3));
        let tasks: Vec<u64> = moves.iter().map(|(task, _, _)| task.0).collect();
        assert_eq!(tasks, (100..110).collect::<Vec<_>>(), "the longest waiting go, in order");
        assert!(moves.iter().all(|(task, token, _)| token.0 == task.0 * 10), "each move names its attempt");
    }

    #[test]
    fn balanced_or_barely_longer_queues_are_left_alone() {
        let nodes = [backlog(1, 2, 100, 6, 0), backlog(2, 2, 200, 4, 0), backlog(3, 2, 300, 2, 0)];
        assert_eq!(plan(&nodes, 10_000, 100), vec![], "8 vs 4: not twice plus one round (2 × 4 + 2 = 10)");
        // Far longer: 12 vs 4 (≥ 10): evened out by (12 − 4) / 2 = 4.
        let nodes = [backlog(1, 2, 100, 10, 0), backlog(2, 2, 200, 2, 0)];
        let moves = plan(&nodes, 10_000, 100);
        assert_eq!(moved_to(&moves, 2), 4);
        // After the move the loads are 8 and 8: nothing moves back.
        let after = [backlog(1, 2, 104, 6, 0), backlog(2, 2, 200, 6, 10_000)];
        assert_eq!(plan(&after, 20_000, 100), vec![]);
    }

    #[test]
    fn only_attempts_past_the_grace_move() {
        let queued: Vec<(u64, u64)> = (0..10).map(|i| (100 + i, if i < 3 { 0 } else { 900 })).collect();
        let nodes = [node(1, 12, 2, &queued), node(2, 0, 2, &[])];
        let moves = plan(&nodes, STEAL_GRACE_MS + 100, 100);
        assert_eq!(moves.len(), 3, "only the three assigned at 0 waited {STEAL_GRACE_MS} ms");
        assert_eq!(plan(&nodes, STEAL_GRACE_MS - 1, 100), vec![]);
    }

    #[test]
    fn targets_must_have_room_run_the_kind_and_not_drain() {
        let mut full = node(2, 258, 2, &[]);
        full.held = full.slots + full.prefetch;
        let mut draining = node(3, 0, 2, &[]);
        draining.draining = true;
        let mut other_kind = node(4, 0, 2, &[]);
        other_kind.kinds = BTreeSet::from(["resize".to_string()]);
        let nodes = [backlog(1, 2, 100, 20, 0), full, draining, other_kind];
        assert_eq!(plan(&nodes, 10_000, 100), vec![]);
        // Room for 3 only: 3 move.
        let mut small = node(5, 0, 2, &[]);
        small.prefetch = 1;
        let nodes = [backlog(1, 2, 100, 20, 0), small];
        assert_eq!(plan(&nodes, 10_000, 100).len(), 3);
    }

    #[test]
    fn loads_are_compared_per_slot_and_the_batch_is_bounded() {
        // 40 held on 8 slots (5 per slot) is not far longer than 3 held on 1 slot (2 × 3 + 1 = 7).
        let nodes = [backlog(1, 8, 100, 32, 0), backlog(2, 1, 200, 2, 0)];
        assert_eq!(plan(&nodes, 10_000, 100), vec![]);
        // 40 on 1 slot against 0 on 8 slots: (40 × 8 − 0) / 9 = 35 move.
        let nodes = [backlog(1, 1, 100, 39, 0), node(2, 0, 8, &[])];
        assert_eq!(plan(&nodes, 10_000, 100).len(), 35);
        assert_eq!(plan(&nodes, 10_000, 10).len(), 10, "bounded by max");
    }

    #[test]
    fn the_plan_is_deterministic() {
        let nodes = [backlog(3, 2, 300, 30, 5), backlog(1, 2, 100, 30, 5), node(2, 0, 2, &[]), node(4, 1, 2, &[])];
        let first = plan(&nodes, 1_000, 100);
        assert!(!first.is_empty());
        assert_eq!(first, plan(&nodes, 1_000, 100));
        // Ties between equally loaded sources go to the lower id.
        assert_eq!(first[0].0, TaskId(100));
    }
}
