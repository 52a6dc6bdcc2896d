//! Fault schedules: which faults a simulated cluster suffers, and when, drawn from a seed.
//!
//! A schedule is data made before the run ([`FaultSchedule`]: simulated times and [`Fault`]s), so a
//! seed names it and a failing run can print it. [`SimCluster::run_schedule`](super::SimCluster::run_schedule)
//! plays it; a fault that names a role rather than a node (the leader, the node down longest) is
//! resolved when it comes due, and what was done is logged as [`Inflicted`] entries.
//!
//! Every random schedule crashes the leader and restarts it, and cuts a link and repairs it; on top
//! come random extra crashes and restarts, partitions, held links (long delays) and failing links.
//! It does not heal at its end: [`SimCluster::heal`](super::SimCluster::heal) does, when the test is
//! ready to check liveness.

use rand::{Rng, SeedableRng};

use crate::ids::NodeId;

/// One fault in a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Kill the node leading at that moment (`otherwise` if no running node knows a leader). If as
    /// many nodes are down as the cluster may lose, the one down longest is restarted first, so the
    /// leader's crash always happens.
    CrashLeader {
        /// The node killed when no leader is known.
        otherwise: NodeId,
    },
    /// Kill this node, unless it is down already or as many nodes are down as the cluster may lose.
    Crash(NodeId),
    /// Restart the node that has been down longest (nothing if none is).
    RestartOldest,
    /// Cut the link between two nodes, both ways.
    Partition(NodeId, NodeId),
    /// Repair every cut link.
    RepairAll,
    /// Hold every datagram between two nodes, both ways, until released: a long delay.
    Hold(NodeId, NodeId),
    /// Deliver what every held link holds, and let traffic flow again.
    ReleaseAll,
    /// Set the probability, per simulated millisecond, that a link starts dropping everything (0 stops
    /// new failures; failed links recover at the cluster's repair rate).
    FailLinks(f64),
}

/// What playing a fault did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inflicted {
    /// A node was killed; `leader` if it led at that moment.
    Crashed {
        /// The node.
        node: NodeId,
        /// Whether it was the leader.
        leader: bool,
    },
    /// A node came back.
    Restarted(NodeId),
    /// A link was cut.
    Partitioned(NodeId, NodeId),
    /// Every cut link was repaired.
    Repaired,
    /// A link was held.
    Held(NodeId, NodeId),
    /// Every held link was released.
    Released,
    /// The link failure rate was set.
    LinksFailing(f64),
    /// The fault was not applicable when it came due (the node was down, too many were down).
    Skipped(Fault),
}

/// What a schedule did, in order, with the simulated millisecond of each step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultLog {
    /// (simulated ms since the start, what was done).
    pub entries: Vec<(u64, Inflicted)>,
}

impl FaultLog {
    /// Nodes killed.
    pub fn crashes(&self) -> usize {
        self.count(|inflicted| matches!(inflicted, Inflicted::Crashed { .. }))
    }

    /// Leaders killed.
    pub fn leader_crashes(&self) -> usize {
        self.count(|inflicted| matches!(inflicted, Inflicted::Crashed { leader: true, .. }))
    }

    /// Nodes restarted.
    pub fn restarts(&self) -> usize {
        self.count(|inflicted| matches!(inflicted, Inflicted::Restarted(_)))
    }

    /// Links cut.
    pub fn partitions(&self) -> usize {
        self.count(|inflicted| matches!(inflicted, Inflicted::Partitioned(..)))
    }

    /// Faults that did something (everything but skips, repairs and releases).
    pub fn faults(&self) -> usize {
        self.count(|inflicted| !matches!(inflicted, Inflicted::Skipped(_) | Inflicted::Repaired | Inflicted::Released))
    }

    fn count(&self, pick: impl Fn(&Inflicted) -> bool) -> usize {
        self.entries.iter().filter(|(_, inflicted)| pick(inflicted)).count()
    }
}

/// Faults at simulated times, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSchedule {
    /// (simulated ms since the start, fault), sorted by time.
    pub faults: Vec<(u64, Fault)>,
    /// When the schedule ends; the run is stepped until then even if the last fault comes earlier.
    pub until_ms: u64,
}

/// Extra random faults in a schedule, beyond the leader crash and the partition every schedule has.
const EXTRA_FAULTS_MAX: u32 = 6;

impl FaultSchedule {
    /// A random schedule for nodes `1..=nodes` over `chaos_ms` simulated milliseconds, drawn from
    /// `seed`: the leader crashes within the first half and restarts later, a link is cut within the
    /// first two thirds and repaired later, and up to `EXTRA_FAULTS_MAX` more faults of every kind
    /// come at random times.
    ///
    /// # Panics
    /// If `nodes < 2` (no link to cut) or `chaos_ms < 100`.
    pub fn random(seed: u64, nodes: u64, chaos_ms: u64) -> FaultSchedule {
        assert!(nodes >= 2 && chaos_ms >= 100, "a schedule needs two nodes and 100 ms");
        // A stream of its own, so the schedule does not move when a test draws from the same seed.
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed_fa17_5eed_fa17);
        let node = |rng: &mut rand::rngs::SmallRng| NodeId(rng.random_range(1..=nodes));
        let pair = |rng: &mut rand::rngs::SmallRng| {
            let a = rng.random_range(1..=nodes);
            let b = (a + rng.random_range(1..nodes) - 1) % nodes + 1;
            (NodeId(a), NodeId(b))
        };
        let mut faults = Vec::new();
        let crash_at = rng.random_range(chaos_ms / 10..chaos_ms / 2);
        faults.push((crash_at, Fault::CrashLeader { otherwise: node(&mut rng) }));
        faults.push((rng.random_range(crash_at + chaos_ms / 10..chaos_ms), Fault::RestartOldest));
        let cut_at = rng.random_range(0..chaos_ms * 2 / 3);
        let (a, b) = pair(&mut rng);
        faults.push((cut_at, Fault::Partition(a, b)));
        faults.push((rng.random_range(cut_at + chaos_ms / 10..chaos_ms), Fault::RepairAll));
        for _ in 0..rng.random_range(0..=EXTRA_FAULTS_MAX) {
            let at = rng.random_range(0..chaos_ms);
            let until = rng.random_range(at..chaos_ms);
            match rng.random_range(0..5) {
                0 => {
                    faults.push((at, Fault::Crash(node(&mut rng))));
                    faults.push((until, Fault::RestartOldest));
                }
                1 => {
                    let (a, b) = pair(&mut rng);
                    faults.push((at, Fault::Partition(a, b)));
                    faults.push((until, Fault::RepairAll));
                }
                2 => {
                    let (a, b) = pair(&mut rng);
                    faults.push((at, Fault::Hold(a, b)));
                    faults.push((until, Fault::ReleaseAll));
                }
                3 => {
                    faults.push((at, Fault::FailLinks(0.002)));
                    faults.push((until, Fault::FailLinks(0.0)));
                }
                _ => faults.push((at, Fault::CrashLeader { otherwise: node(&mut rng) })),
            }
        }
        // Stable: a restart drawn for the same millisecond as its crash still comes after it.
        faults.sort_by_key(|&(at, _)| at);
        FaultSchedule { faults, until_ms: chaos_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_crashes_the_leader_and_cuts_a_link_then_undoes_both() {
        for seed in 0..500 {
            let schedule = FaultSchedule::random(seed, 3, 2_000);
            let first = |pick: &dyn Fn(&Fault) -> bool| schedule.faults.iter().position(|(_, fault)| pick(fault));
            let crash = first(&|fault| matches!(fault, Fault::CrashLeader { .. })).expect("a leader crash");
            let cut = first(&|fault| matches!(fault, Fault::Partition(..))).expect("a partition");
            assert!(schedule.faults[crash..].iter().any(|(_, fault)| *fault == Fault::RestartOldest));
            assert!(schedule.faults[cut..].iter().any(|(_, fault)| *fault == Fault::RepairAll));
            assert!(schedule.faults.windows(2).all(|pair| pair[0].0 <= pair[1].0), "sorted by time");
            assert!(schedule.faults.iter().all(|(at, _)| *at < schedule.until_ms));
            for (_, fault) in &schedule.faults {
                if let Fault::Partition(a, b) | Fault::Hold(a, b) = fault {
                    assert_ne!(a, b, "seed {seed}: a link joins two nodes");
                    assert!((1..=3).contains(&a.0) && (1..=3).contains(&b.0));
                }
            }
        }
    }

    #[test]
    fn a_seed_names_one_schedule() {
        assert_eq!(FaultSchedule::random(7, 5, 3_000), FaultSchedule::random(7, 5, 3_000));
        assert_ne!(FaultSchedule::random(7, 5, 3_000), FaultSchedule::random(8, 5, 3_000));
    }
}
