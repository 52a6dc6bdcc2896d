//! Deterministic simulation of the mesh: real quinn and rustls over turmoil's seeded network.
//!
//! A failure prints its seed; `GK_SIM_SEED=<seed> cargo test --test sim_mesh <test>` replays it. The
//! swarm runs a few hundred random fault schedules per `cargo test` (see `gridkeeper::sim::swarm` for
//! `GK_SIM_SCHEDULES` and `GK_SIM_SECONDS`) and prints the command that replays a failing one.

use gridkeeper::ids::NodeId;
use gridkeeper::mesh::PeerEvent;
use gridkeeper::sim::{FaultSchedule, SimCluster, SimConfig, Swarm, TraceEntry};

/// Simulated milliseconds (1 ms ticks) allowed for three nodes to find each other.
const FORM_STEPS_MAX: u64 = 10_000;
/// Simulated milliseconds allowed for a partition or a heal to be noticed.
const NOTICE_STEPS_MAX: u64 = 10_000;

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const ALL: [NodeId; 3] = [N1, N2, N3];

/// Simulated milliseconds of faults in a swarm schedule.
const CHAOS_MS: u64 = 3_000;
/// Schedules the swarm runs per `cargo test`.
const SCHEDULES: u64 = 200;

fn seeds() -> Vec<u64> {
    match gridkeeper::sim::swarm::seed_from_env() {
        Some(seed) => vec![seed],
        None => (1..=16).collect(),
    }
}

fn all_see_each_other(cluster: &SimCluster<'_>) -> bool {
    ALL.iter().all(|&a| ALL.iter().all(|&b| a == b || cluster.sees_alive(a, b)))
}

/// Forms the mesh, partitions node 1 from the others, heals, and returns the liveness trace.
fn partition_and_heal(seed: u64) -> Vec<TraceEntry> {
    let mut cluster = SimCluster::new(SimConfig::new(seed, 3)).expect("cluster builds");
    assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
    let formed_at = cluster.trace().len();

    cluster.partition(N1, N2);
    cluster.partition(N1, N3);
    let isolated = cluster
        .run_until(NOTICE_STEPS_MAX, |c| {
            !c.sees_alive(N1, N2) && !c.sees_alive(N1, N3) && !c.sees_alive(N2, N1) && !c.sees_alive(N3, N1)
        })
        .expect("runs");
    assert!(isolated, "seed {seed}: the partition was not noticed on both sides");
    assert!(
        cluster.sees_alive(N2, N3) && cluster.sees_alive(N3, N2),
        "seed {seed}: the majority side must stay connected"
    );
    let downs: Vec<_> = cluster.trace()[formed_at..]
        .iter()
        .filter(|entry| matches!(entry.event, PeerEvent::Down(_)))
        .copied()
        .collect();
    for (observer, peer) in [(N1, N2), (N1, N3), (N2, N1), (N3, N1)] {
        assert!(
            downs.iter().any(|entry| entry.observer == observer && entry.event == PeerEvent::Down(peer)),
            "seed {seed}: node {observer} never reported node {peer} down: {downs:?}"
        );
    }

    cluster.repair(N1, N2);
    cluster.repair(N1, N3);
    let healed = cluster.run_until(NOTICE_STEPS_MAX, all_see_each_other).expect("runs");
    assert!(healed, "seed {seed}: the mesh did not heal");
    if std::env::var_os("GRIDKEEPER_SIM_TRACE").is_some() {
        eprintln!("seed {seed}: healed at {} ms; trace: {:?}", cluster.elapsed_ms(), cluster.trace());
    }
    cluster.trace()
}

#[test]
fn partition_produces_downs_on_both_sides_and_healing_brings_them_back() {
    for seed in seeds() {
        assert_alternating(seed, &partition_and_heal(seed));
    }
}

/// Every observer's events about every peer alternate Up, Down, Up, ..., starting with Up, in each run
/// of the observer (a restarted node's detector starts afresh).
fn assert_alternating(seed: u64, trace: &[TraceEntry]) {
    let runs: std::collections::BTreeSet<(NodeId, u32)> =
        trace.iter().map(|entry| (entry.observer, entry.incarnation)).collect();
    for (observer, incarnation) in runs {
        for peer in ALL.iter().copied().filter(|&peer| peer != observer) {
            let events: Vec<_> = trace
                .iter()
                .filter(|e| e.observer == observer && e.incarnation == incarnation && e.event.peer() == peer)
                .map(|e| e.event)
                .collect();
            for (index, event) in events.iter().enumerate() {
                let expected = if index % 2 == 0 { PeerEvent::Up(peer) } else { PeerEvent::Down(peer) };
                assert_eq!(*event, expected, "seed {seed}: node {observer} saw {events:?} about node {peer}");
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let seed = seeds()[0];
    let first = partition_and_heal(seed);
    let second = partition_and_heal(seed);
    assert_eq!(first, second, "seed {seed}: two runs of the same seed diverged");
}

#[test]
fn a_crashed_node_is_reported_down_and_rejoins_after_restart() {
    for seed in seeds() {
        let mut cluster = SimCluster::new(SimConfig::new(seed, 3)).expect("cluster builds");
        assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
        let crashed_at = cluster.elapsed_ms();
        cluster.crash(N3);
        let noticed =
            cluster.run_until(NOTICE_STEPS_MAX, |c| !c.sees_alive(N1, N3) && !c.sees_alive(N2, N3)).expect("runs");
        assert!(noticed, "seed {seed}: the crash was not noticed");
        let detection_ms = cluster.elapsed_ms() - crashed_at;
        assert!(detection_ms < 1_000, "seed {seed}: a crash took {detection_ms} simulated ms to notice");
        cluster.restart(N3);
        let rejoined = cluster.run_until(NOTICE_STEPS_MAX, all_see_each_other).expect("runs");
        assert!(rejoined, "seed {seed}: the restarted node did not rejoin");
    }
}

#[test]
fn delay_below_the_silence_limit_causes_no_false_down() {
    for seed in seeds() {
        let mut cluster = SimCluster::new(SimConfig::new(seed, 3)).expect("cluster builds");
        assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
        let before = cluster.trace().len();
        // Up to half the silence one way: heartbeats arrive late and out of step, but a gap between
        // two never reaches the silence.
        let silence_ms = gridkeeper::mesh::DetectorConfig::default().peer_silence_max_ms;
        cluster.set_latency_max(std::time::Duration::from_millis(silence_ms / 2));
        cluster.run_for(5_000).expect("runs");
        let downs: Vec<_> = cluster.trace()[before..].to_vec();
        assert!(downs.is_empty(), "seed {seed}: delay alone produced events: {downs:?}");
    }
}

#[test]
fn a_held_link_is_declared_down_and_recovers_when_released() {
    for seed in seeds() {
        let mut cluster = SimCluster::new(SimConfig::new(seed, 3)).expect("cluster builds");
        assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
        cluster.hold(N2, N3);
        let noticed =
            cluster.run_until(NOTICE_STEPS_MAX, |c| !c.sees_alive(N2, N3) && !c.sees_alive(N3, N2)).expect("runs");
        assert!(noticed, "seed {seed}: a held link was never declared down");
        assert!(cluster.sees_alive(N1, N2) && cluster.sees_alive(N1, N3), "seed {seed}: other links must stay up");
        cluster.release(N2, N3);
        assert!(
            cluster.run_until(NOTICE_STEPS_MAX, all_see_each_other).expect("runs"),
            "seed {seed}: no recovery after release"
        );
    }
}

#[test]
fn flapping_links_keep_events_alternating_and_the_mesh_heals_after() {
    let mut downs_seen = 0;
    for seed in seeds() {
        let mut config = SimConfig::new(seed, 3);
        config.repair_rate = 0.05;
        let mut cluster = SimCluster::new(config).expect("cluster builds");
        assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
        cluster.set_fail_rate(0.002);
        cluster.run_for(5_000).expect("runs");
        cluster.set_fail_rate(0.0);
        assert!(
            cluster.run_until(3 * NOTICE_STEPS_MAX, all_see_each_other).expect("runs"),
            "seed {seed}: no heal after flapping"
        );
        let trace = cluster.trace();
        downs_seen += trace.iter().filter(|entry| matches!(entry.event, PeerEvent::Down(_))).count();
        assert_alternating(seed, &trace);
    }
    assert!(downs_seen > 0, "flapping never took a link down: the scenario tests nothing");
}

/// One random fault schedule (crashes, restarts, partitions, held and failing links), then healing:
/// events stay alternating and every node sees every other again.
fn fault_schedule(seed: u64) -> Vec<TraceEntry> {
    let mut config = SimConfig::new(seed, 3);
    config.repair_rate = 0.05;
    let mut cluster = SimCluster::new(config).expect("cluster builds");
    assert!(cluster.run_until(FORM_STEPS_MAX, all_see_each_other).expect("runs"), "seed {seed}: mesh never formed");
    let faults = cluster.run_schedule(&FaultSchedule::random(seed, 3, CHAOS_MS)).expect("runs");
    assert!(faults.crashes() >= 1 && faults.partitions() >= 1, "seed {seed}: no crash or no cut: {faults:?}");
    cluster.heal();
    let healed = cluster.run_until(3 * NOTICE_STEPS_MAX, all_see_each_other).expect("runs");
    assert!(healed, "seed {seed}: the mesh did not heal after {faults:?}");
    let trace = cluster.trace();
    assert_alternating(seed, &trace);
    trace
}

#[test]
fn a_swarm_of_fault_schedules_keeps_events_alternating_and_heals() {
    Swarm::new("sim_mesh", "a_swarm_of_fault_schedules", SCHEDULES, 1).replay_every(20).run(fault_schedule);
}
