//! Placement: which node runs a task. Deterministic: random strategies draw from a seeded generator
//! held here, so every replica and every simulation replay makes the same choices.
//!
//! Invariant: a task is only placed on a node that advertises its kind, is not draining, and has room
//! (attempts assigned < slots + prefetch; for work re-queued after its node was lost,
//! [`Placement::place_requeued`], < 2 × (slots + prefetch) on a node that queues work at all). The worker runs at most `slots` at once and
//! queues the prefetched rest, so the commit round trip between one attempt's end and the next one's
//! assignment does not leave slots idle. The worker starts its queue lowest task id first (within a
//! priority), so lost work placed over a full queue starts before the work queued there after it.

use std::collections::BTreeSet;

use super::task::{Strategy, TaskSpec};
use crate::ids::NodeId;

/// What placement knows of a node (from its registration and heartbeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    /// The node.
    pub node: NodeId,
    /// Attempts assigned to it and not ended (running or queued there).
    pub running: u32,
    /// Attempts it may run at once.
    pub slots: u32,
    /// Attempts it may hold queued beyond its slots.
    pub prefetch: u32,
    /// Relative share for the weighted strategy.
    pub weight: u32,
    /// Task kinds it can run.
    pub kinds: BTreeSet<String>,
    /// Takes no new work.
    pub draining: bool,
}

impl NodeLoad {
    /// Attempts it may hold: slots + prefetch; for work re-queued after its node was lost, twice that
    /// (a whole lost node's worth more) if it queues work at all (prefetch > 0).
    pub fn capacity(&self, requeued: bool) -> u32 {
        let capacity = self.slots.saturating_add(self.prefetch);
        if requeued && self.prefetch > 0 {
            capacity.saturating_mul(2)
        } else {
            capacity
        }
    }

    fn can_take(&self, spec: &TaskSpec, requeued: bool) -> bool {
        !self.draining && self.running < self.capacity(requeued) && self.kinds.contains(&spec.kind)
    }
}

/// Placement state: the round-robin cursor and the seeded generator.
#[derive(Debug, Clone)]
pub struct Placement {
    default_strategy: Strategy,
    cursor: u64,
    rng: u64,
}

/// splitmix64: a small, well-mixed, seedable generator and hash finaliser.
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

fn hash_key(key: &str) -> u64 {
    // FNV-1a: stable across versions and platforms (unlike std's hasher).
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

impl Placement {
    /// Placement with a cluster-wide default strategy and a seed.
    pub fn new(default_strategy: Strategy, seed: u64) -> Placement {
        Placement { default_strategy, cursor: 0, rng: seed }
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(1);
        mix(self.rng)
    }

    /// The node that should run `spec`, or `None` if no eligible node has a free slot now (the task
    /// waits). `nodes` must be sorted by id.
    pub fn place(&mut self, spec: &TaskSpec, nodes: &[NodeLoad]) -> Option<NodeId> {
        self.place_with(spec, nodes, false)
    }

    /// [`Placement::place`] for a task re-queued because its node was lost: it may fill a node that
    /// queues work up to twice its slots + prefetch ([`NodeLoad::capacity`]), so it need not wait for
    /// room behind work queued after it (the worker starts lower task ids first).
    pub fn place_requeued(&mut self, spec: &TaskSpec, nodes: &[NodeLoad]) -> Option<NodeId> {
        self.place_with(spec, nodes, true)
    }

    /// The node `key` hashes to among `nodes` (rendezvous hashing, as `consistent_hash` places a
    /// shard key): it moves only when that node leaves or a node that outranks it for `key` joins.
    /// Grid actors are placed with it.
    pub fn rendezvous(key: &str, nodes: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
        let hash = hash_key(key);
        nodes.into_iter().max_by_key(|node| (mix(hash ^ mix(node.0)), *node))
    }

    /// The cluster-wide default strategy (a task's own overrides it).
    pub fn default_strategy(&self) -> Strategy {
        self.default_strategy
    }

    fn place_with(&mut self, spec: &TaskSpec, nodes: &[NodeLoad], requeued: bool) -> Option<NodeId> {
        let strategy = spec.strategy.unwrap_or(self.default_strategy);
        let capable: Vec<&NodeLoad> = nodes
            .iter()
            .filter(|load| spec.affinity.is_none_or(|node| node == load.node))
            .filter(|load| !load.draining && load.kinds.contains(&spec.kind))
            .collect();
        if strategy == Strategy::ConsistentHash {
            // The key's node is chosen among capable nodes regardless of their load, so the key does
            // not wander when its node is busy: the task waits for a slot there.
            let key = spec.shard_key.as_deref().unwrap_or(&spec.kind);
            let owner = capable.iter().max_by_key(|load| (mix(hash_key(key) ^ mix(load.node.0)), load.node))?;
            return owner.can_take(spec, requeued).then_some(owner.node);
        }
        let free: Vec<&NodeLoad> = capable.into_iter().filter(|load| load.can_take(spec, requeued)).collect();
        if free.is_empty() {
            return None;
        }
        let chosen = match strategy {
            Strategy::LeastLoaded => free
                .iter()
                // running/slots compared exactly as fractions (cross-multiplied).
                .min_by(|a, b| {
                    (u64::from(a.running) * u64::from(b.slots))
                        .cmp(&(u64::from(b.running) * u64::from(a.slots)))
                        .then(a.node.cmp(&b.node))
                })
                .map(|load| load.node),
            Strategy::RoundRobin => {
                let index = (self.cursor % free.len() as u64) as usize;
                self.cursor = self.cursor.wrapping_add(1);
                Some(free[index].node)
            }
            Strategy::Random => {
                let index = (self.next_random() % free.len() as u64) as usize;
                Some(free[index].node)
            }
            Strategy::Weighted => {
                let total: u64 = free.iter().map(|load| u64::from(load.weight.max(1))).sum();
                let mut ticket = self.next_random() % total;
                free.iter()
                    .find(|load| {
                        let weight = u64::from(load.weight.max(1));
                        if ticket < weight {
                            return true;
                        }
                        ticket -= weight;
                        false
                    })
                    .map(|load| load.node)
            }
            Strategy::ConsistentHash => unreachable!("handled above"),
        };
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(id: u64, running: u32, slots: u32) -> NodeLoad {
        NodeLoad {
            node: NodeId(id),
            running,
            slots,
            prefetch: 0,
            weight: 1,
            kinds: BTreeSet::from(["noop".to_string()]),
            draining: false,
        }
    }

    fn spec(strategy: Strategy) -> TaskSpec {
        let mut spec = TaskSpec::new("noop", vec![]);
        spec.strategy = Some(strategy);
        spec
    }

    #[test]
    fn least_loaded_balances_and_respects_slots() {
        let mut placement = Placement::new(Strategy::LeastLoaded, 1);
        let mut nodes = vec![node(1, 0, 2), node(2, 0, 2), node(3, 0, 4)];
        let mut placed = Vec::new();
        while let Some(chosen) = placement.place(&spec(Strategy::LeastLoaded), &nodes) {
            placed.push(chosen.0);
            nodes.iter_mut().find(|load| load.node == chosen).expect("known").running += 1;
        }
        assert_eq!(placed.len(), 8, "exactly the free slots are used: {placed:?}");
        assert!(nodes.iter().all(|load| load.running == load.slots));
        assert_eq!(&placed[..3], &[1, 2, 3], "ties go to the lowest id, then the emptiest");
    }

    #[test]
    fn only_capable_live_nodes_are_chosen() {
        let mut placement = Placement::new(Strategy::LeastLoaded, 1);
        let mut other = node(1, 0, 8);
        other.kinds = BTreeSet::from(["resize".to_string()]);
        let mut draining = node(2, 0, 8);
        draining.draining = true;
        let nodes = vec![other, draining, node(3, 8, 8), node(4, 1, 8)];
        assert_eq!(placement.place(&spec(Strategy::LeastLoaded), &nodes), Some(NodeId(4)));
        let mut pinned = spec(Strategy::LeastLoaded);
        pinned.affinity = Some(NodeId(3));
        assert_eq!(placement.place(&pinned, &nodes), None, "the pinned node is full: wait");
    }

    #[test]
    fn round_robin_and_random_spread_evenly() {
        let nodes = vec![node(1, 0, 1_000), node(2, 0, 1_000), node(3, 0, 1_000)];
        for strategy in [Strategy::RoundRobin, Strategy::Random] {
            let mut placement = Placement::new(strategy, 7);
            let mut counts = BTreeMap::new();
            for _ in 0..3_000 {
                *counts.entry(placement.place(&spec(strategy), &nodes).expect("room")).or_insert(0) += 1;
            }
            assert!(counts.values().all(|&count| (800..=1_200).contains(&count)), "{strategy:?}: {counts:?}");
        }
    }

    #[test]
    fn weighted_follows_weights() {
        let mut nodes = vec![node(1, 0, 10_000), node(2, 0, 10_000)];
        nodes[1].weight = 3;
        let mut placement = Placement::new(Strategy::Weighted, 3);
        let twos = (0..4_000).filter(|_| placement.place(&spec(Strategy::Weighted), &nodes) == Some(NodeId(2))).count();
        assert!((2_700..=3_300).contains(&twos), "node 2 should get about 3/4: {twos}");
    }

    #[test]
    fn consistent_hash_keeps_keys_and_moves_only_what_it_must() {
        let mut placement = Placement::new(Strategy::ConsistentHash, 0);
        let owners = |placement: &mut Placement, nodes: &[NodeLoad]| -> Vec<Option<NodeId>> {
            (0..1_000)
                .map(|key| {
                    let mut spec = spec(Strategy::ConsistentHash);
                    spec.shard_key = Some(format!("key-{key}"));
                    placement.place(&spec, nodes)
                })
                .collect()
        };
        let four: Vec<NodeLoad> = (1..=4).map(|id| node(id, 0, 1_000_000)).collect();
        let before = owners(&mut placement, &four);
        assert_eq!(before, owners(&mut placement, &four), "the same key lands on the same node");
        let three: Vec<NodeLoad> = four.iter().filter(|load| load.node != NodeId(4)).cloned().collect();
        let after = owners(&mut placement, &three);
        for (was, now) in before.iter().zip(&after) {
            if *was != Some(NodeId(4)) {
                assert_eq!(was, now, "keys of surviving nodes must not move");
            }
        }
        let moved = before.iter().filter(|owner| **owner == Some(NodeId(4))).count();
        assert!((150..=350).contains(&moved), "about a quarter of the keys lived on node 4: {moved}");
        // A busy owner keeps its keys: the task waits rather than moving.
        let mut busy = four.clone();
        let owner = before[0].expect("owned");
        busy.iter_mut().find(|load| load.node == owner).expect("known").running = 1_000_000;
        let mut first = spec(Strategy::ConsistentHash);
        first.shard_key = Some("key-0".into());
        assert_eq!(placement.place(&first, &busy), None);
    }
}
